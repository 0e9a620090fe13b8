"""Command line: ``python -m app`` (or ``omnilingo``) starts the web UI."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import MutableMapping
from dataclasses import fields

from backend.settings import Settings

log = logging.getLogger("omnilingo")


def build_parser() -> argparse.ArgumentParser:
    env = {f.name: Settings.env_name(f.name) for f in fields(Settings)}
    parser = argparse.ArgumentParser(
        prog="omnilingo",
        description="Omnilingo: an assistant you can type, show pictures or talk to, in your own language. "
        "Every option can also be set with the environment variable shown.",
    )
    defaults = Settings()

    def add(flag: str, field: str, help_text: str, **kwargs) -> None:
        default = getattr(defaults, field)
        shown = f" (default: {default})" if default is not None else ""
        parser.add_argument(flag, dest=field, default=None, help=f"{help_text} [env {env[field]}]{shown}", **kwargs)

    add("--model", "model", "hub id or local folder of the omni model; default google/gemma-4-E4B-it on a "
        "GPU, google/gemma-4-E2B-it on CPU", metavar="ID_OR_PATH")
    add("--device", "device", "auto, cpu, cuda or cuda:N")
    add("--quantization", "quantization", "auto (4-bit nf4 on CUDA), nf4, or none", choices=["auto", "nf4", "none"])
    add("--dtype", "dtype", "weights dtype when not quantized: auto, float32, bfloat16",
        choices=["auto", "float32", "bfloat16", "float16"])
    add("--engine", "engine", "local (transformers), llamacpp (GGUF weights with llama.cpp: fast on a CPU; "
        "pip install \"omnilingo[llamacpp]\") or openai (an OpenAI-compatible server such as vLLM)",
        choices=["local", "llamacpp", "openai"])
    add("--mmproj", "mmproj", "the projector GGUF (pictures and sound) for --engine llamacpp, when it is not "
        "beside the model", metavar="PATH")
    add("--threads", "threads", "CPU threads for --engine llamacpp (default: one per physical core; fewer when "
        "other programs keep the CPU busy)", type=int)
    add("--base-url", "base_url", "URL of the OpenAI-compatible server, for --engine openai", metavar="URL")
    add("--api-key", "api_key", "API key for --engine openai (never logged)", metavar="KEY")
    add("--asr-model", "asr_model", "Whisper hub id or local folder for speech input, or off; default "
        "openai/whisper-large-v3-turbo on a GPU, Systran/faster-whisper-small on CPU", metavar="ID_OR_PATH")
    add("--asr-engine", "asr_engine", "speech recognition engine: auto (faster-whisper for a CTranslate2 model "
        "and on CPU, transformers otherwise), transformers, faster-whisper",
        choices=["auto", "transformers", "faster-whisper"])
    add("--asr-threads", "asr_threads", "CPU threads for faster-whisper (default: the cores this process may "
        "use, at most 8)", type=int)
    add("--tts", "tts_engine", "voice engine: auto (a Piper voice where one exists, else espeak-ng), piper, "
        "espeak (fast, offline, every language), mms, off", choices=["auto", "piper", "espeak", "mms", "off"])
    add("--piper-voices", "piper_voices", "folder of installed Piper voices (<voice>.onnx + .onnx.json + "
        "MODEL_CARD), used before any download", metavar="DIR")
    add("--end-of-turn", "end_of_turn", "voice mode: smart (a trained end-of-turn model and the last word "
        "heard decide at each short pause) or silence (half a second of silence ends the turn)",
        choices=["smart", "silence"])
    parser.add_argument("--allow-noncommercial-voices", dest="allow_noncommercial_voices", action="store_const",
                        const=True, default=None,
                        help="also use MMS-TTS voices (1,100+ languages; CC-BY-NC: not for commercial use) "
                        f"[env {env['allow_noncommercial_voices']}]")
    add("--host", "host", "address to listen on; 0.0.0.0 makes the app reachable from other machines")
    add("--port", "port", "port to listen on", type=int)
    parser.add_argument("--share", dest="share", action="store_const", const=True, default=None,
                        help=f"create a public Gradio share link [env {env['share']}]")
    parser.add_argument("--no-browser", dest="inbrowser", action="store_const", const=False, default=None,
                        help=f"do not open the browser [env {env['inbrowser']}=0]")
    parser.add_argument("--window", dest="window", action="store_const", const=True, default=None,
                        help=f"open in a native window (needs pywebview) [env {env['window']}]")
    add("--auth", "auth", "require a login, as user:password", metavar="USER:PASS")
    add("--max-upload-mb", "max_upload_mb", "largest file a user may upload, in MB", type=int)
    add("--max-images", "max_images_per_turn", "most images in one message", type=int)
    add("--max-audio-seconds", "max_audio_seconds", "longest recording or video accepted", type=int)
    add("--video-frames", "video_frames", "most frames the model sees of one video", type=int)
    add("--camera-frames", "camera_frames", "camera pictures sent with each spoken turn in voice mode", type=int)
    add("--max-new-tokens", "max_new_tokens", "longest answer, in tokens", type=int)
    add("--concurrency", "concurrency", "UI events served at once", type=int)
    parser.add_argument("--auto-retry-language", dest="auto_retry_language", action="store_const", const=True,
                        default=None, help="when an answer comes in another language than asked, ask again once "
                        f"with a firmer instruction [env {env['auto_retry_language']}]")
    parser.add_argument("--trust-remote-code", dest="trust_remote_code", action="store_const", const=True,
                        default=None, help="run Python code shipped with the model (only for models you trust)")
    parser.add_argument("--log-level", default=os.environ.get("OMNILINGO_LOG_LEVEL", "INFO"))
    return parser


def settings_from_args(argv: list[str] | None = None) -> tuple[Settings, argparse.Namespace]:
    args = build_parser().parse_args(argv)
    overrides = {f.name: getattr(args, f.name) for f in fields(Settings) if hasattr(args, f.name)}
    return Settings.from_env(**overrides), args


def warn_if_exposed(settings: Settings) -> None:
    if settings.host not in {"127.0.0.1", "localhost", "::1"}:
        log.warning("Listening on %s: anyone who can reach this machine can use the app%s.",
                    settings.host, "" if settings.auth else " (add --auth user:pass to require a login)")
    if settings.share:
        log.warning("--share makes the app reachable by anyone with the link.")
    if settings.trust_remote_code:
        log.warning("--trust-remote-code runs Python code that comes with the model. Use it only for models you trust.")


def quiet_idle_threads(settings: Settings, environ: MutableMapping[str, str] = os.environ) -> None:
    """Beside llama.cpp, OpenMP threads sleep once their work is done (a user's own setting stands).

    llama.cpp's OpenMP threads and CTranslate2's (its own copy, for Whisper) share the cores with the
    browser: with them spinning for more work, Whisper on 4 s of speech took 5.1-5.7 s in voice mode
    (bench/voice_browser.py), and 2.4-3.3 s with OMP_WAIT_POLICY=PASSIVE. Beside transformers it was no
    clear gain (Whisper 2.4-2.6 s with it, 2.7-3.0 s without, within the day's spread; a barge-in paused
    the answer after 0.90-1.0 s with it, 0.42 s without), so OpenMP's default stays there.
    It is read when each runtime loads: set before any model library is imported.
    """
    if settings.engine == "llamacpp":
        environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main(argv: list[str] | None = None) -> int:
    settings, args = settings_from_args(argv)
    quiet_idle_threads(settings)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    warn_if_exposed(settings)

    from app.server import serve

    def interrupted(signum, frame):  # Ctrl-C: leave through the normal shutdown path
        raise KeyboardInterrupt

    # SIGINT too: a process started in the background of a script inherits it ignored, and Python then
    # leaves it so, so that Ctrl-C (or kill -INT) would not stop the app.
    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)
    return serve(settings)


if __name__ == "__main__":
    sys.exit(main())
