"""What the app holds while it runs: settings, the engine (loaded in the background), the sessions.

A load that fails for a reason that passes (the model server is not up yet, a download was
cut off) is tried again in the background with a growing delay, and at once when a message
arrives; the load status says so meanwhile ("retrying", with the seconds left)."""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from backend import media
from backend.audio.turn_end import smart_turn
from backend.conversation.camera import CameraFeed
from backend.conversation.turns import Conversation, SessionRegistry
from backend.conversation.voice import VoiceSession
from backend.errors import UserFacingError
from backend.language import words
from backend.models import zerogpu
from backend.models.asr import SpeechRecognizer, open_recognizer
from backend.models.engine import Engine, LocalEngine, resolve_device
from backend.settings import Settings

log = logging.getLogger(__name__)


# Failures worth trying again: the server is not up (yet), overloaded or restarting, or the
# download broke off. A wrong URL, key, model name or damaged weights will not fix themselves.
TRANSIENT_LOAD_ERRORS = {
    "remote.unreachable", "remote.timeout", "remote.server_error", "remote.disconnected", "model.download_failed",
}
RETRY_FIRST_S = 2.0
RETRY_MAX_S = 60.0
# How long a message waits for the attempt it triggers (a refused connection answers at once).
RETRY_ON_MESSAGE_S = 5.0


@dataclass
class LoadStatus:
    state: str  # "loading" | "retrying" | "ready" | "failed"
    message: str
    elapsed_s: float
    key: str = "model.loading"
    params: dict = field(default_factory=dict)
    retry_in_s: float | None = None  # for "retrying": seconds to the next attempt

    @property
    def waiting(self) -> bool:
        """The model is not there yet but may come: loading, or retrying after a passing failure."""
        return self.state in {"loading", "retrying"}


def build_engine(settings: Settings) -> Engine:
    if settings.engine == "openai":
        from backend.models.remote import RemoteEngine

        return RemoteEngine(base_url=settings.base_url, model=settings.model, api_key=settings.api_key,
                            concurrency=settings.concurrency)
    if settings.engine == "llamacpp":
        from backend.models.llamacpp import LlamaCppEngine

        return LlamaCppEngine(model=settings.model, mmproj=settings.mmproj, device=settings.device,
                              threads=settings.threads)
    # On a ZeroGPU Space each answer runs in a lent GPU worker; elsewhere this is the engine itself.
    return zerogpu.wrap(LocalEngine(
        model=settings.model,
        device=settings.device,
        quantization=settings.quantization,
        dtype=settings.dtype,
        trust_remote_code=settings.trust_remote_code,
    ))


class Runtime:
    """Owns the model and the per-session conversations of one running app."""

    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        self.settings = settings
        self.engine = engine or build_engine(settings)
        self.limits = media.MediaLimits(
            max_image_pixels=settings.max_image_megapixels * 1_000_000,
            max_images_per_turn=settings.max_images_per_turn,
            max_file_bytes=settings.max_upload_mb * 2**20,
            max_audio_seconds=float(settings.max_audio_seconds),
        )
        self.asr = self._build_asr(settings)
        self.voice_download = ""  # the last progress line of a voice download
        self.tts = self._build_tts(settings, self._voice_progress)
        self.work_dir = Path(tempfile.mkdtemp(prefix="omnilingo-"))
        idle_s = settings.session_idle_minutes * 60 if settings.session_idle_minutes > 0 else None
        self.sessions = SessionRegistry(self._new_conversation, idle_s=idle_s, on_evict=self._forget_voice)
        self._voices: dict[str, VoiceSession] = {}
        self._cameras: dict[str, CameraFeed] = {}
        self._voices_lock = threading.Lock()
        self._status = LoadStatus("loading", f"Starting {self.engine.name}…", 0.0)
        self._started = time.monotonic()
        self._ready = threading.Event()  # the first load attempt is over
        self._changed = threading.Condition()  # notified after every load attempt
        self._attempts = 0
        self._wake = threading.Event()  # try again now
        self._closing = threading.Event()
        self._retry_at: float | None = None
        self.retry_first_s = RETRY_FIRST_S
        self.retry_max_s = RETRY_MAX_S
        self._loader: threading.Thread | None = None
        self.asr_error: UserFacingError | None = None

    @property
    def model_concurrency(self) -> int:
        """Answers generated at once, as the engine declares (one per local device, many on a server)."""
        return max(1, int(getattr(self.engine, "concurrency", 1)))

    @staticmethod
    def _build_asr(settings: Settings) -> SpeechRecognizer | None:
        if settings.asr_model == "off":
            return None
        device = resolve_device(settings.device)
        return open_recognizer(settings.asr_model, engine=settings.asr_engine, device=device,
                               cpu_threads=settings.asr_threads)

    @staticmethod
    def _build_tts(settings: Settings, progress=None):
        if settings.tts_engine == "off":
            return None
        from backend.models.tts import SpeechRouter

        preferred = None if settings.tts_engine == "auto" else settings.tts_engine
        return SpeechRouter(preferred_engine=preferred, allow_noncommercial=settings.allow_noncommercial_voices,
                            piper_voices=settings.piper_voices, progress=progress)

    def _voice_progress(self, message: str) -> None:
        self.voice_download = message
        log.info(message)

    def new_conversation(self) -> Conversation:
        # The folder is named by the system, never by anything the client sent.
        folder = Path(tempfile.mkdtemp(prefix="session-", dir=self.work_dir))
        return Conversation(self.engine, folder, self.limits, self.settings.max_new_tokens, asr=self.asr,
                            video_frames=self.settings.video_frames)

    def _new_conversation(self, session_id: str) -> Conversation:
        return self.new_conversation()

    # -- model loading -------------------------------------------------------------------
    def start_loading(self) -> None:
        if self._loader is None:
            # transformers' lazy modules fail ("partially initialized module") when two threads import
            # them at once, as the loader and the page's language table would: import it here, once.
            import transformers  # noqa: F401
            self._loader = threading.Thread(target=self.load, name="omnilingo-load", daemon=True)
            self._loader.start()
            # the word lists for short messages and the readers of files load beside the model, not on the
            # first message
            threading.Thread(target=_warm_up, name="omnilingo-warm-up", daemon=True).start()
            if zerogpu.enabled():
                # ZeroGPU packs the CUDA weights when the app launches: load them before that.
                self._loader.join()

    def load(self) -> None:
        """Load the engine, trying again after passing failures until it works or the app closes."""
        def progress(message: str) -> None:
            self._status = LoadStatus("loading", message, time.monotonic() - self._started)
            log.info(message)

        delay = self.retry_first_s
        asr_loaded = False
        while not self._closing.is_set():
            retry = self._load_once(progress, delay)
            with self._changed:
                self._attempts += 1
                self._changed.notify_all()
            self._ready.set()
            if not retry:
                break
            if not asr_loaded:  # speech recognition need not wait for the model server
                self._load_asr()
                asr_loaded = True
            self._wake.wait(max(0.0, (self._retry_at or 0) - time.monotonic()))
            self._wake.clear()
            delay = min(delay * 2, self.retry_max_s)
        if not asr_loaded:
            self._load_asr()

    def _load_once(self, progress: Callable[[str], None], delay: float) -> bool:
        """One attempt; True when it failed in a way worth trying again after ``delay`` seconds."""
        try:
            self.engine.load(progress)
        except UserFacingError as err:
            elapsed = time.monotonic() - self._started
            if err.key in TRANSIENT_LOAD_ERRORS and not self._closing.is_set():
                self._retry_at = time.monotonic() + delay
                self._status = LoadStatus("retrying", err.message, elapsed, "model.retrying",
                                          {"detail": err.message, "cause": err.key})
                log.warning("%s Trying again in %.0f s.", err.message, delay)
                return True
            self._status = LoadStatus("failed", err.message, elapsed, err.key, err.params)
            log.error(err.message)
        except Exception as err:  # unexpected: keep serving, say so plainly
            log.exception("model load failed")
            self._status = LoadStatus(
                "failed", f"The model could not be loaded ({type(err).__name__}). See the server log.",
                time.monotonic() - self._started, "model.broken",
            )
        else:
            self._retry_at = None
            self._status = LoadStatus("ready", f"{self.engine.name} is ready.", time.monotonic() - self._started,
                                      "model.ready")
        return False

    def retry_now(self, timeout: float = RETRY_ON_MESSAGE_S) -> LoadStatus:
        """While retrying: try again at once and wait up to ``timeout`` for that attempt."""
        with self._changed:
            if self._status.state != "retrying":
                return self.status()
            attempts = self._attempts
            self._wake.set()
            self._changed.wait_for(lambda: self._attempts > attempts, timeout)
        return self.status()

    def _load_asr(self) -> None:
        """Speech recognition loads after the model; when it cannot, typing still works."""
        if self.asr is None:
            return
        if self.settings.end_of_turn == "smart":
            # Now, not when voice mode starts: the browser starts recording then, on the same cores.
            try:
                smart_turn().warm_up()  # or the first pause of the first voice turn pays for it
            except Exception:  # noqa: BLE001 - voice mode then ends turns by the silence rule
                log.warning("the end-of-turn model could not be loaded", exc_info=True)
        try:
            self.asr.load()
        except UserFacingError as err:
            self.asr_error = err
            log.warning("speech input unavailable: %s", err.message)
        except Exception as err:  # keep serving text
            log.exception("speech recognition failed to load")
            self.asr_error = UserFacingError(f"Speech input is not available ({type(err).__name__}).",
                                             key="asr.unavailable")

    def status(self) -> LoadStatus:
        status = self._status
        if status.state == "loading":
            status = LoadStatus(status.state, status.message, time.monotonic() - self._started, status.key,
                                status.params)
        elif status.state == "retrying":
            seconds = max(0, round((self._retry_at or 0) - time.monotonic()))
            status = LoadStatus(
                status.state, f"{status.params.get('detail', '')} Trying again in {seconds} s.",
                time.monotonic() - self._started, status.key, {**status.params, "seconds": seconds},
                retry_in_s=float(seconds),
            )
        return status

    def wait_until_loaded(self, timeout: float | None = None) -> LoadStatus:
        self.start_loading()
        self._ready.wait(timeout)
        return self.status()

    def require_model(self, wait_s: float = 0.0) -> None:
        """Raise a plain message when the model is not there to answer.

        While a passing failure is being retried, a message triggers an attempt at once."""
        if wait_s:
            self._ready.wait(wait_s)
        status = self.status()
        if status.state == "retrying":
            status = self.retry_now(max(RETRY_ON_MESSAGE_S, min(wait_s, 60.0)))
        if status.state in {"failed", "retrying"}:
            raise UserFacingError(status.message, key=status.key, **status.params)
        if status.state == "loading":
            raise UserFacingError(
                "The model is still loading. Your message is kept: send it again in a moment.",
                key="model.still_loading",
            )

    def voice_session(self, session_id: str) -> VoiceSession:
        """The voice mode of a session (made on first use, bound to that session's conversation)."""
        with self._voices_lock:
            voice = self._voices.get(session_id)
            if voice is None:
                voice = self._voices[session_id] = VoiceSession(
                    self.sessions.get(session_id), end_of_turn=self.settings.end_of_turn
                )
            return voice

    def active_voice(self, session_id: str) -> VoiceSession | None:
        """A session's voice mode while it is on; None otherwise (nothing is made for a closed tab)."""
        with self._voices_lock:
            voice = self._voices.get(session_id)
        return voice if voice is not None and voice.active else None

    def camera(self, session_id: str) -> CameraFeed:
        """A session's camera for voice mode (off until the visitor turns it on)."""
        with self._voices_lock:
            feed = self._cameras.get(session_id)
            if feed is None:
                feed = self._cameras[session_id] = CameraFeed(keep=self.settings.camera_frames)
            return feed

    def _forget_voice(self, session_id: str) -> None:
        """A session's voice mode and camera pictures go with it."""
        with self._voices_lock:
            voice = self._voices.pop(session_id, None)
            self._cameras.pop(session_id, None)
        if voice is not None:
            voice.stop()

    def drop_session(self, session_id: str) -> None:
        """A tab went away: free its conversation, files, audio buffers and events."""
        self._forget_voice(session_id)
        self.sessions.drop(session_id)

    def close(self) -> None:
        self._closing.set()
        self._wake.set()
        with self._voices_lock:
            self._voices.clear()
            self._cameras.clear()
        self.sessions.close_all()
        self.engine.close()
        shutil.rmtree(self.work_dir, ignore_errors=True)


def _warm_up() -> None:
    """What the first message would otherwise load: the word lists, the readers of files."""
    words.warm_up()
    media.warm_up()
