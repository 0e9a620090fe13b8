"""Soak: many turns against one launched app; does resident memory keep growing?

Launches the app in this process on 127.0.0.1 (tiny or real model), drives it through
gradio_client as the page does (/send_message, /stream_answer, /new_conversation) from a few
sessions in turn, with a picture every few turns, new conversations now and then, and tabs that
close (their heartbeat ends) and reopen. Resident memory is read after the warm-up and at the end.

    python bench/soak.py --model /path/to/tiny-or-real-model            # 500 turns
    python bench/soak.py --model PATH --quick                            # 60 turns

Prints JSON: turns, sessions, rss_mb_start (after warm-up), rss_mb_end, growth_pct, ...
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

MESSAGES = [
    "Bonjour, pouvez-vous m'expliquer comment les abeilles fabriquent le miel ?",
    "Guten Tag, können Sie mir erklären, wie Bienen den Honig herstellen?",
    "Hola, ¿puedes explicarme cómo fabrican la miel las abejas?",
    "Hello, could you explain how bees make honey?",
    "Здравствуйте, объясните, пожалуйста, как пчёлы делают мёд?",
    "こんにちは、ミツバチはどうやって蜂蜜を作るのですか？",
]


def rss_mb() -> float:
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def close_tab(url: str, session_hash: str) -> None:
    """What a closing tab does: its heartbeat connection ends, and the app frees the session."""
    import httpx

    with httpx.stream("GET", f"{url}gradio_api/heartbeat/{session_hash}", timeout=10) as response:
        next(response.iter_bytes(), None)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model folder or hub id (a tiny one for CI)")
    parser.add_argument("--turns", type=int, default=500)
    parser.add_argument("--quick", action="store_true", help="60 turns")
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=12)
    parser.add_argument("--reset-every", type=int, default=20, help="turns per session before a new conversation")
    parser.add_argument("--reopen-every", type=int, default=50, help="turns per session before its tab closes")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    turns = 60 if args.quick else args.turns
    warmup = max(10, turns // 10)

    from gradio_client import Client, handle_file
    from PIL import Image

    from app.server import create_app
    from app.ui import launch_kwargs
    from backend.settings import Settings

    settings = Settings(model=args.model, device=args.device, port=free_port(), inbrowser=False,
                        max_new_tokens=args.max_new_tokens, tts_engine="off", asr_model="off")
    demo, runtime = create_app(settings)
    demo.launch(**launch_kwargs(runtime), prevent_thread_lock=True, quiet=True)
    url = f"http://127.0.0.1:{settings.port}/"
    status = runtime.wait_until_loaded(600)
    if status.state != "ready":
        raise SystemExit(status.message)

    scratch = Path(tempfile.mkdtemp(prefix="omnilingo-soak-"))
    picture = scratch / "picture.png"
    Image.new("RGB", (320, 240), (30, 120, 200)).save(picture)
    clients = [Client(url, verbose=False) for _ in range(args.sessions)]
    per_session = [0] * args.sessions
    errors = reopened = 0
    rss_start = None
    started = time.perf_counter()
    for number in range(turns):
        index = number % args.sessions
        client = clients[index]
        files = [handle_file(str(picture))] if number % 10 == 3 else []
        try:
            client.predict({"text": f"{MESSAGES[number % len(MESSAGES)]} ({number})", "files": files}, "auto",
                           api_name="/send_message")
            list(client.submit(False, api_name="/stream_answer"))
        except Exception:  # noqa: BLE001 - counted, the soak goes on
            errors += 1
        per_session[index] += 1
        if per_session[index] % args.reopen_every == 0:
            close_tab(url, client.session_hash)
            clients[index] = Client(url, verbose=False)
            reopened += 1
        elif per_session[index] % args.reset_every == 0:
            client.predict(api_name="/new_conversation")
        if number + 1 == warmup:
            gc.collect()
            rss_start = rss_mb()
    gc.collect()
    time.sleep(0.5)
    rss_end = rss_mb()
    elapsed = time.perf_counter() - started
    result = {
        "turns": turns,
        "sessions": args.sessions,
        "warmup_turns": warmup,
        "rss_mb_start": round(rss_start, 1),
        "rss_mb_end": round(rss_end, 1),
        "growth_pct": round(100 * (rss_end - rss_start) / rss_start, 2),
        "goal_pct": 5.0,
        "errors": errors,
        "tabs_closed_and_reopened": reopened,
        "sessions_alive_at_end": len(runtime.sessions),
        "session_folders_at_end": sum(1 for _ in runtime.work_dir.iterdir()),
        "seconds": round(elapsed, 1),
        "seconds_per_turn": round(elapsed / turns, 3),
        "model": args.model,
        "max_new_tokens": args.max_new_tokens,
    }
    for client in clients:
        close_tab(url, client.session_hash)
    demo.close()
    runtime.close()
    for child in scratch.iterdir():
        child.unlink()
    scratch.rmdir()
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
