"""One settings object for the whole app: CLI flags > environment variables > defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


def _env_bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass
class Settings:
    """Every knob a user can turn; ``env_name`` gives the environment variable of each field."""

    model: str | None = None  # hub id or local folder; None = the default for the device
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    quantization: str = "auto"  # auto (nf4 on CUDA) | nf4 | none
    dtype: str = "auto"  # auto | float32 | bfloat16
    engine: str = "local"  # local | openai | llamacpp
    mmproj: str | None = None  # the projector GGUF (pictures, sound) for engine=llamacpp, when not beside the model
    threads: int | None = None  # CPU threads for engine=llamacpp; None = one per physical core
    base_url: str | None = None  # OpenAI-compatible server, for engine=openai
    api_key: str | None = field(default=None, repr=False)  # never logged or shown
    asr_model: str | None = None  # hub id or folder; None = the default of the engine; "off" = no speech input
    asr_engine: str = "auto"  # auto | transformers | faster-whisper (backend.models.asr.choose_asr_engine)
    asr_threads: int | None = None  # CPU threads for faster-whisper; None = see whisper_ctranslate2.default_cpu_threads
    tts_engine: str = "auto"  # auto | piper | espeak | mms | off
    allow_noncommercial_voices: bool = False
    piper_voices: str | None = None  # folder of installed Piper voices (offline use)
    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False
    inbrowser: bool = True
    window: bool = False
    auth: str | None = field(default=None, repr=False)  # "user:pass"
    max_upload_mb: int = 50
    max_images_per_turn: int = 8
    max_image_megapixels: int = 40
    max_audio_seconds: int = 600  # recordings and videos
    video_frames: int = 8  # most frames the model sees of one video (fewer for short clips)
    camera_frames: int = 1  # camera pictures sent with each spoken turn in voice mode
    max_new_tokens: int = 1024
    concurrency: int = 8  # UI events served at once, and answers asked of a model server at once
    state_secret: str | None = field(default=None, repr=False)  # signs the conversation kept in the browser
    session_idle_minutes: int = 120  # a session idle this long is closed, its files deleted
    auto_retry_language: bool = False
    end_of_turn: str = "smart"  # voice mode: smart (Smart Turn + the last word) | silence (0.5 s)
    trust_remote_code: bool = False

    # Each field's environment variable: OMNILINGO_<FIELD>, but for these shorter names.
    ENV_SHORT = {"tts_engine": "OMNILINGO_TTS", "max_images_per_turn": "OMNILINGO_MAX_IMAGES"}
    # Names that hosting platforms already set (Gradio's own variables).
    ENV_ALIASES = {"host": "GRADIO_SERVER_NAME", "port": "GRADIO_SERVER_PORT"}

    @classmethod
    def env_name(cls, field_name: str) -> str:
        return cls.ENV_SHORT.get(field_name, f"OMNILINGO_{field_name.upper()}")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
        environ = dict(os.environ if environ is None else environ)
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(cls.env_name(f.name))
            if raw is None and f.name in cls.ENV_ALIASES:
                raw = environ.get(cls.ENV_ALIASES[f.name])
            if raw is None or raw == "":
                continue
            values[f.name] = _convert(f.type, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def public_dict(self) -> dict[str, Any]:
        """Settings safe to print or show: secrets masked."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in {"api_key", "auth", "state_secret"} and value:
                value = "***"
            out[f.name] = value
        return out


def state_secret(settings: Settings) -> str:
    """The key that signs the conversation kept in the browser.

    Set OMNILINGO_STATE_SECRET on servers; otherwise a random key is made once and kept in the
    user's cache folder, so a reload and a restart of the app on this machine both find the
    saved conversation again."""
    if settings.state_secret:
        return settings.state_secret
    import secrets

    folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "omnilingo"
    path = folder / "state-secret"
    try:
        return path.read_text().strip() or _new_secret(path, secrets.token_hex(32))
    except OSError:
        return _new_secret(path, secrets.token_hex(32))


def _new_secret(path: Path, value: str) -> str:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value)
        path.chmod(0o600)
    except OSError:  # a read-only home: the key then lasts as long as the process
        pass
    return value


def _convert(type_name: Any, raw: str) -> Any:
    text = str(type_name)
    if text.startswith("bool"):
        return _env_bool(raw)
    if text.startswith("int"):
        return int(raw)
    return raw
