"""Voice mode as the user meets it: Chromium's fake microphone talking to the launched app.

The app runs as ``python -m app`` in a subprocess (any ``--model``/``--engine``/``--asr-model``;
``--serve FOLDER`` also starts ``transformers serve`` for ``--engine openai``). Headless Debian
chromium plays a WAV through its fake microphone (``--use-file-for-fake-audio-capture``): a
question, then silence. The voice button is pressed as a user would.

Clocks: every time is wall-clock epoch, on one machine. The page taps the microphone's own
stream (an AudioContext on the MediaStream the page records from) and timestamps the level of
each 1024-sample buffer, so the end of the user's speech is when the page's microphone stopped
carrying it (the last buffer above 5 % of the question's peak level; about 20-40 ms later than
the true end, which makes every figure slightly smaller). The page also records when the
answer's bubble first shows words, when the answer's audio element fires ``playing``, and when it
sent each microphone chunk (``page_chunk_sent``: the third after the end of speech, the one that
carries the 0.2 s pause). ``first_chunk_after_press_s``: from the press of the voice button to the
microphone's first chunk (assets/mic_stream.js; ``--keep`` lists every chunk's send time). The
server logs one line per answered turn with the time of each stage (``turn N timings {...}``):
the mic chunk in which the VAD ended the turn, the turn added, the answer handler started, ASR
start/end, first token, first sentence, first TTS chunk, first text and first audio handed to
Gradio.

Modes
-----
latency:  end of speech -> end of turn (VAD decision), first text in the page, first audio playing.
barge-in: the question, a pause long enough for the answer to play, then phrases (the question
          again, unless --phrase), each spoken over the answer then playing (each phrase is also the
          next question). For each: onset of the phrase in the page's microphone -> the answer's
          audio paused (``pause`` on #answer-player: the speech candidate's pause, else the barge-in's).

Prints one JSON object; ``--out FILE`` also writes it (bench/results/voice_browser*.json).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import report  # noqa: E402
from tests import browser_helpers as bh  # noqa: E402
from tests.support import CORPUS, free_port  # noqa: E402

# Taps the microphone stream the page records from, and timestamps the answer's bubble and player.
PAGE_PROBE_JS = r"""
(() => {
  const now = () => performance.timeOrigin + performance.now();
  window.__tap = [];
  window.__marks = {bot: [], media: []};
  const original = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = async (constraints) => {
    const stream = await original(constraints);
    if (constraints && constraints.audio && !window.__tapping) {
      window.__tapping = true;
      const ctx = new AudioContext();
      const source = ctx.createMediaStreamSource(stream);
      const node = ctx.createScriptProcessor(1024, 1, 1);
      const mute = ctx.createGain();
      mute.gain.value = 0;
      node.onaudioprocess = (e) => {
        const x = e.inputBuffer.getChannelData(0);
        let sum = 0;
        for (let i = 0; i < x.length; i++) { sum += x[i] * x[i]; }
        window.__tap.push([now(), Math.sqrt(sum / x.length)]);
      };
      source.connect(node); node.connect(mute); mute.connect(ctx.destination);
    }
    return stream;
  };
  // The answer's sentences as the page's player receives them (assets/answer_player.js).
  window.__marks.chunks = [];
  const wrap = () => {
    const player = window.omnilingoPlayer;
    if (!player) { setTimeout(wrap, 50); return; }
    const feed = player.feed.bind(player);
    player.feed = (value) => {
      if (value && value.chunks) { window.__marks.chunks.push({t: now(), id: value.id, n: value.chunks.length}); }
      return feed(value);
    };
  };
  wrap();
  window.__marks.clicks = [];
  document.addEventListener('click', (e) => {
    if (e.target.closest && e.target.closest('#voice-toggle')) { window.__marks.clicks.push(now()); }
  }, true);
  // Every microphone chunk the page sends (assets/mic_stream.js: binary WebSocket messages).
  window.__marks.streams = [];
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    if (data instanceof ArrayBuffer) { window.__marks.streams.push(now()); }
    return send.call(this, data);
  };
  const mine = (el) => el && el.closest && el.closest('#answer-player');
  for (const kind of ['play', 'playing', 'pause', 'ended']) {
    document.addEventListener(kind, (e) => {
      if (mine(e.target)) { window.__marks.media.push({kind, t: now()}); }
    }, true);
  }
  const watch = () => {
    const chat = document.querySelector('#chat');
    if (!chat) { setTimeout(watch, 100); return; }
    let seen = '';
    new MutationObserver(() => {
      const bots = chat.querySelectorAll("[data-testid='bot']");
      const last = bots.length ? bots[bots.length - 1].innerText.trim() : '';
      const key = bots.length + ':' + (last && last !== '…' ? 'words' : 'empty');
      if (key !== seen) { seen = key; window.__marks.bot.push({t: now(), n: bots.length, words: key.endsWith('words')}); }
    }).observe(chat, {childList: true, subtree: true, characterData: true});
  };
  watch();
})();
"""
TIMINGS_LINE = re.compile(r"turn (\d+) timings (\{.*\})")
BARGE_LINE = re.compile(r"barge-in timings (\{.*\})")
PAUSE_LINE = re.compile(r"pause timings (\{.*\})")
LEVEL = 0.05  # of the question's peak buffer level: above it the microphone carries speech


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return round(ordered[k], 3)


def summary(values: list[float]) -> dict:
    return {"n": len(values), "median": round(statistics.median(values), 3) if values else None,
            "p95": pct(values, 95), "values": [round(v, 3) for v in values]}


# --------------------------------------------------------------------------- processes


def start_serve(folder: str, home: Path) -> tuple[subprocess.Popen, str]:
    """``transformers serve FOLDER`` on a free loopback port, as tests/test_remote.py starts it."""
    import httpx

    port = free_port()
    (home / "hub").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub"), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "NO_PROXY": "*"}
    log = home / "serve.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "transformers.cli.transformers", "serve", folder, "--host", "127.0.0.1",
         "--port", str(port), "--device", "cpu"], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"transformers serve exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2, trust_env=False).status_code == 200:
                return process, f"http://127.0.0.1:{port}/v1"
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.kill()
    raise RuntimeError("transformers serve did not start")


def start_app(args, base_url: str | None, log_path: Path) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    command = [sys.executable, "-m", "app", "--no-browser", "--port", str(port), "--tts", args.tts,
               "--max-new-tokens", str(args.max_new_tokens), "--log-level", args.app_log_level]
    for flag, value in (("--model", args.model), ("--engine", args.engine), ("--asr-model", args.asr_model),
                        ("--asr-engine", args.asr_engine), ("--device", "cpu"), ("--base-url", base_url)):
        if value:
            command += [flag, value]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_PROXY": "*",
           **dict(item.split("=", 1) for item in args.app_env)}
    process = subprocess.Popen(command, cwd=args.app_dir, env=env, stdout=log_path.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the app exited: {log_path.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2, trust_env=False).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.kill()
    raise RuntimeError("the app did not start")


def stop(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def server_lines(log_path: Path, since: float) -> tuple[list[dict], list[dict], list[dict]]:
    """(turn timings, barge-in timings, pause timings) logged after ``since`` (epoch seconds)."""
    turns, barges, pauses = [], [], []
    for line in log_path.read_text(errors="replace").splitlines():
        if m := TIMINGS_LINE.search(line):
            marks = json.loads(m.group(2))
            if min(marks.values()) >= since:
                turns.append({"turn": int(m.group(1)), **marks})
        elif m := BARGE_LINE.search(line):
            marks = json.loads(m.group(1))
            if marks["barge_in"] >= since:
                barges.append(marks)
        elif m := PAUSE_LINE.search(line):
            marks = json.loads(m.group(1))
            if marks["pause"] >= since:
                pauses.append(marks)
    return turns, barges, pauses


# --------------------------------------------------------------------------- the page


def speech_in_file(path: Path) -> list[tuple[float, float]]:
    """[(onset, end)] seconds of speech in a WAV: 30 ms frames above 5 % of its loudest frame, gaps under
    0.6 s bridged."""
    import numpy as np
    import soundfile as sf

    samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    samples = samples.mean(axis=1)
    hop = int(rate * 0.03)
    frames = samples[: len(samples) // hop * hop].reshape(-1, hop)
    rms = np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1))
    loud = np.flatnonzero(rms > LEVEL * rms.max()) * 0.03
    spans: list[list[float]] = []
    for t in loud:
        if spans and t - spans[-1][1] <= 0.6:
            spans[-1][1] = t + 0.03
        else:
            spans.append([t, t + 0.03])
    return [(float(a), float(b)) for a, b in spans if b - a >= 0.2]


def duration(path: Path) -> float:
    import soundfile as sf

    return float(sf.info(str(path)).duration)


def first_sound(path: Path) -> float:
    """Seconds before the first non-zero sample (the fake microphone's file starts with digital silence)."""
    import numpy as np
    import soundfile as sf

    samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return float(np.flatnonzero(np.abs(samples).max(axis=1) > 1e-4)[0]) / rate


def wall_clock_of_file(tap: list[list[float]], path: Path) -> float | None:
    """Epoch seconds of the file's time 0 in the page: its first sound is the first tap buffer with any
    level (the buffer's timestamp is its end: up to 21 ms after the sound, so figures read slightly low)."""
    onset = next((t / 1000 for t, level in tap if level > 1e-4), None)
    return None if onset is None else onset - first_sound(path)


def voice_page(browser, url: str, language: str | None):
    context = browser.new_context(permissions=["microphone"], locale="en-US",
                                  extra_http_headers={"Accept-Language": "en-US"})
    page = context.new_page()
    page.add_init_script(PAGE_PROBE_JS)
    page.goto(url)
    page.wait_for_selector("#message textarea")
    page.wait_for_function("() => { const t = document.querySelector('#model-status')?.innerText || '';"
                           " return t.trim() !== '' && !t.includes('⏳'); }", timeout=300_000)
    status = page.inner_text("#model-status")
    if "⚠" in status:
        raise RuntimeError(f"the app's model failed: {status}")
    if language:
        bh.choose_language(page, language)
    page.click("#voice-toggle")
    return page


def page_marks(page) -> tuple[list, dict]:
    return page.evaluate("() => window.__tap"), page.evaluate("() => window.__marks")


def first_chunk_after_press(marks: dict) -> float | None:
    """Seconds from the press of the voice button to the first microphone chunk the page sent."""
    presses = marks.get("clicks", [])
    chunks = marks.get("streams", [])
    return round((min(chunks) - presses[0]) / 1000, 3) if presses and chunks else None


def latency_run(playwright, url: str, wav: Path, args, log_path: Path) -> dict:
    browser = bh.launch_browser(playwright, wav)
    try:
        started = time.time()
        page = voice_page(browser, url, args.language)
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            _, marks = page_marks(page)
            if any(m["kind"] == "playing" for m in marks["media"]):
                break
            time.sleep(0.2)
        time.sleep(0.5)
        tap, marks = page_marks(page)
        page.click("#voice-toggle")
        page.click("#stop")  # the next run starts with the model free
        time.sleep(2.0)
        page.context.close()
    finally:
        browser.close()
    origin = wall_clock_of_file(tap, wav)
    if origin is None:
        return {"error": "the page's microphone carried no sound", "load": load_average()}
    speech_end = origin + speech_in_file(wav)[0][1]
    turns, _, _ = server_lines(log_path, started)
    server = next((t for t in turns if t.get("mic_chunk_in", 0) >= speech_end), turns[0] if turns else {})
    text_at = next((m["t"] / 1000 for m in marks["bot"] if m["words"] and m["t"] / 1000 > speech_end), None)
    playing = next((m["t"] / 1000 for m in marks["media"] if m["kind"] == "playing" and m["t"] / 1000 > speech_end),
                   None)

    def after(t: float | None) -> float | None:
        return None if t is None else round(t - speech_end, 3)

    stages = {name: after(t) for name, t in sorted(server.items(), key=lambda kv: kv[1]) if name != "turn"}
    stages["page_first_text"] = after(text_at)
    chunks = [c for c in marks.get("chunks", []) if c["t"] / 1000 > speech_end]
    stages["page_first_chunk"] = after(chunks[0]["t"] / 1000) if chunks else None
    stages["page_playing"] = after(playing)
    sent = [t for t in marks.get("streams", []) if t / 1000 > speech_end]
    stages["page_chunk_sent"] = after(sent[2] / 1000) if len(sent) > 2 else None  # the chunk after the 0.2 s pause
    return {
        "end_of_turn_s": stages.get("turn_judged", stages.get("mic_chunk_in")),
        "first_text_s": after(text_at),
        "first_audio_s": after(playing),
        "stages": stages,
        "speech_s": round(speech_in_file(wav)[0][1] - speech_in_file(wav)[0][0], 3),
        "first_chunk_after_press_s": first_chunk_after_press(marks),
        "load": load_average(),
        **({"page": {"speech_end": speech_end, "origin": origin, "streams": marks.get("streams"),
                     "clicks": marks.get("clicks")}} if args.keep else {}),
    }


def barge_in_run(playwright, url: str, wav: Path, args, log_path: Path) -> dict:
    browser = bh.launch_browser(playwright, wav)
    try:
        started = time.time()
        page = voice_page(browser, url, args.language)
        time.sleep(args.barge_total_s)
        tap, marks = page_marks(page)
        page.click("#voice-toggle")
        page.context.close()
    finally:
        browser.close()
    origin = wall_clock_of_file(tap, wav)
    if origin is None:
        return {"error": "the page's microphone carried no sound", "load": load_average()}
    turns, barges, pauses = server_lines(log_path, started)
    trials = []
    playing_since: float | None = None
    media = [(m["t"] / 1000, m["kind"]) for m in marks["media"]]
    for onset in (origin + t for t in args.phrase_onsets):
        # was the answer audible when the phrase began? the last play/pause event before it says so
        before = [(t, kind) for t, kind in media if t <= onset and kind in ("playing", "pause", "ended")]
        playing_since = before[-1][0] if before and before[-1][1] == "playing" else None
        # the page's next word on the answer after the phrase began: a pause, or its end if it ended by itself
        after = next(((t, kind) for t, kind in media if t > onset and kind in ("pause", "ended", "play")), None)
        paused = after[0] if after is not None and after[1] == "pause" else None
        detected = next((b["barge_in"] for b in barges if b["barge_in"] > onset), None)
        # the chunk that brought the pause reached the server here; the page holds its answer later, after the
        # reply's way to it (and says where, for the echo guard)
        chunk_in = next((p["mic_chunk_in"] for p in pauses if p["pause"] > onset and "mic_chunk_in" in p), None)
        trial = {"onset": round(onset, 3), "playing": playing_since is not None}
        if after is not None and after[1] == "ended":
            trial["ended_by_itself_s"] = round(after[0] - onset, 3)
        if playing_since is not None and paused is not None:
            trial["paused_s"] = round(paused - onset, 3)
            if chunk_in is not None and chunk_in <= paused:
                trial["page_paused_after_chunk_s"] = round(paused - chunk_in, 3)
        if detected is not None:
            trial["server_barge_in_s"] = round(detected - onset, 3)
        trials.append(trial)
    heard = [t["paused_s"] for t in trials if "paused_s" in t]
    server = [t["server_barge_in_s"] for t in trials if "server_barge_in_s" in t and t["playing"]]
    page_lag = [t["page_paused_after_chunk_s"] for t in trials if "page_paused_after_chunk_s" in t]
    media_after = [{"kind": kind, "t": round(t - origin, 3)} for t, kind in media]
    return {"trials": trials, "paused_s": heard, "server_barge_in_s": server, "page_paused_after_chunk_s": page_lag,
            "load": load_average(),
            "first_chunk_after_press_s": first_chunk_after_press(marks),
            # on the fake microphone file's clock, to read a run that caught no answer playing
            "page_media": media_after[:20], "server_turns": len(turns), "server_barge_ins": len(barges)}


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=["latency", "barge-in"], default="latency")
    parser.add_argument("--model", help="the app's --model")
    parser.add_argument("--engine", help="the app's --engine (local, openai)")
    parser.add_argument("--serve", metavar="FOLDER", help="start transformers serve on FOLDER for --engine openai")
    parser.add_argument("--base-url", help="an OpenAI-compatible server already running")
    parser.add_argument("--asr-model", help="the app's --asr-model")
    parser.add_argument("--asr-engine", help="the app's --asr-engine (where it has one)")
    parser.add_argument("--tts", default="espeak")
    parser.add_argument("--max-new-tokens", type=int, default=200)
    # One sentence of real speech with no pause the VAD would end a turn at.
    parser.add_argument("--question", type=Path, default=CORPUS / "speech" / "silero_en.wav")
    parser.add_argument("--question-span", type=float, nargs=2, default=[2.5, 7.0], metavar=("START", "END"),
                        help="the seconds of --question that are said (default: one sentence of silero_en.wav)")
    parser.add_argument("--phrase", type=Path, default=None,
                        help="what the user says over the answer (barge-in mode; default: the question again, whose "
                             "answer is long enough to be playing when the next phrase comes)")
    parser.add_argument("--language", help="the page's language entry, e.g. 'English'; default: detected")
    parser.add_argument("--runs", type=int, default=3, help="latency mode: questions, each in a fresh browser")
    parser.add_argument("--phrases", type=int, default=4, help="barge-in mode: phrases over the answer")
    parser.add_argument("--gap-s", type=float, default=12.0,
                        help="barge-in mode: silence before each phrase (the answer must be playing by then)")
    parser.add_argument("--timeout", type=float, default=90.0)
    parser.add_argument("--app-env", action="append", default=[], metavar="NAME=VALUE",
                        help="environment of the app's process (e.g. OMP_NUM_THREADS=1)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--keep", action="store_true",
                        help="keep the app's log and the microphone files; each run also lists the page's chunk requests")
    parser.add_argument("--app-log-level", default="INFO", help="DEBUG logs every microphone chunk the app hears")
    parser.add_argument("--app-dir", type=Path, default=ROOT, help="the checkout whose app runs (to compare versions)")
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="voice-browser-"))
    serve_process = app_process = None
    result: dict = {"mode": args.mode, "config": {k: (str(v) if isinstance(v, Path) else v)
                                                   for k, v in vars(args).items() if k != "out"},
                    "load_before": load_average()}
    try:
        base_url = args.base_url
        if args.serve:
            serve_process, base_url = start_serve(args.serve, work / "serve")
            args.model = args.model or args.serve  # the served model's name is its folder
        log_path = work / "app.log"
        question = work / "question-said.wav"
        start, end = args.question_span
        subprocess.run(["sox", str(args.question), str(question), "trim", str(start), f"={end}"], check=True)
        args.question = question
        app_process, url = start_app(args, base_url, log_path)
        with sync_playwright() as playwright:
            if args.mode == "latency":
                wav = bh.mic_wav(work / "question.wav", [0.5, args.question, args.timeout + 30])
                runs = [latency_run(playwright, url, wav, args, log_path) for _ in range(args.runs)]
                good = [r for r in runs if "error" not in r]
                result["runs"] = runs
                for key in ("end_of_turn_s", "first_text_s", "first_audio_s"):
                    values = [r[key] for r in good if r.get(key) is not None]
                    result[key] = statistics.median(values) if values else None
                names = {n for r in good for n in r["stages"]}
                result["stages"] = {n: statistics.median(vals) for n in sorted(names)
                                    if (vals := [r["stages"][n] for r in good if r["stages"].get(n) is not None])}
                result["stages"] = dict(sorted(result["stages"].items(), key=lambda kv: kv[1]))
            else:
                parts: list = [0.5, args.question]
                phrase = work / "phrase.wav"
                subprocess.run(["sox", str(args.phrase or args.question), "-r", str(bh.MIC_RATE), str(phrase)], check=True)
                at = 0.5 + duration(args.question)
                args.phrase_onsets = []
                for _ in range(args.phrases):
                    parts += [args.gap_s, phrase]
                    args.phrase_onsets.append(at + args.gap_s + speech_in_file(phrase)[0][0])
                    at += args.gap_s + duration(phrase)
                parts.append(args.gap_s + 30)
                wav = bh.mic_wav(work / "barge.wav", parts)
                args.barge_total_s = 0.5 + (args.phrases + 1) * (args.gap_s + 4) + 5
                run = barge_in_run(playwright, url, wav, args, log_path)
                result.update(run)
                result["paused_after_onset_s"] = summary(run["paused_s"])
                result["server_barge_in_after_onset_s"] = summary(run["server_barge_in_s"])
                result["page_paused_after_chunk_s"] = summary(run["page_paused_after_chunk_s"])
    finally:
        stop(app_process)
        stop(serve_process)
        if args.keep:
            print(f"app log and microphone files kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    result["load_after"] = load_average()
    report(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
