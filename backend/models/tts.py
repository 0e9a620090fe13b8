"""Text to speech in the answer's language, sentence by sentence.

Engines behind one small interface (``TTSEngine``):

* ``EspeakEngine`` — espeak-ng run as a separate process; about 130 languages,
  offline, 20-50 ms a sentence. The voice of last resort for every language it has.
* ``PiperEngine`` (backend/models/piper.py) — Piper voices through onnxruntime, about 40
  languages, downloaded per language on first use or read from a local folder.
* ``VitsEngine`` — MMS-TTS (facebook/mms-tts-<iso639-3>, transformers ``VitsModel``),
  1,100+ languages with a more natural voice. Its weights are licensed for
  NON-COMMERCIAL use only, so it stays off unless the user allows that explicitly.

``SpeechRouter`` picks the best available voice per language (a neural voice where
one exists, espeak-ng otherwise; overridable), splits the text into sentences and
yields one ``AudioChunk`` per sentence. When the chosen voice fails (offline, a failed
download, a licence that needs the non-commercial switch) the next voice speaks and the
chunk carries a ``note`` saying why. A language without any voice gets ``None``
from ``voice_for``; a missing or crashing engine surfaces as a ``UserFacingError``
from ``speak`` (shown as a note), never as an exception in the text path.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import logging
import os
import re
import shutil
import subprocess
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np

from backend.errors import UserFacingError
from backend.language.sentences import split_sentences
from backend.language.tags import UNKNOWN, lookup_keys, normalize_tag

log = logging.getLogger(__name__)

ESPEAK = "espeak-ng"
MMS = "mms-tts"
PIPER = "piper"
# Better voices first; espeak-ng is the fallback for every language it knows.
ENGINE_QUALITY = [PIPER, MMS, ESPEAK]
# --tts values and the engine each names
ENGINE_CHOICES = {"piper": PIPER, "espeak": ESPEAK, "mms": MMS}
# AudioChunk.note values: why another voice than the chosen one speaks (turn.notes keys)
NOTE_FALLBACK = "voice_fallback"
NOTE_NONCOMMERCIAL = "voice_noncommercial"
SYNTH_TIMEOUT_S = 60


@dataclass(frozen=True)
class Voice:
    engine: str
    voice_id: str
    language: str
    label: str


@dataclass
class AudioChunk:
    samples: np.ndarray  # float32 mono
    sample_rate: int
    text: str
    note: str | None = None  # NOTE_FALLBACK / NOTE_NONCOMMERCIAL when a fallback voice spoke

    @property
    def duration_s(self) -> float:
        return len(self.samples) / float(self.sample_rate) if self.sample_rate else 0.0

    def wav_bytes(self) -> bytes:
        """16-bit PCM WAV, as the browser plays it."""
        import soundfile as sf

        buffer = io.BytesIO()
        sf.write(buffer, np.clip(self.samples, -1.0, 1.0), self.sample_rate, format="WAV", subtype="PCM_16")
        return buffer.getvalue()


@runtime_checkable
class TTSEngine(Protocol):
    name: str

    def voices(self) -> list[Voice]: ...

    def synthesize(self, text: str, voice: Voice) -> AudioChunk: ...


# --------------------------------------------------------------------------- language tags


def _iso639_3(tag: str) -> str | None:
    """ISO 639-3 code of the language as written (MMS-TTS names a voice by it), not folded."""
    try:
        import langcodes

        return langcodes.Language.get(tag).to_alpha3()
    except Exception:  # noqa: BLE001
        return None


# --------------------------------------------------------------------------- text clean-up


_CODE_BLOCK = re.compile(r"```.*?```", re.S)
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_URL = re.compile(r"https?://\S+")
_MARKUP = re.compile(r"[*_`#>|~]+")


def speakable(text: str) -> str:
    """What should be read aloud: no markdown marks, code blocks, URLs or emoji."""
    text = _CODE_BLOCK.sub(" ", text)
    text = _LINK.sub(r"\1", text)
    text = _URL.sub(" ", text)
    text = _MARKUP.sub("", text)
    text = "".join(ch for ch in text if unicodedata.category(ch) not in ("So", "Cs", "Co", "Cc") or ch in "\n\t")
    return " ".join(text.split())


# --------------------------------------------------------------------------- espeak-ng


_VOICE_LINE = re.compile(r"^\s*(\d+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s*(.*)$")
_OTHER_LANG = re.compile(r"\(([^\s()]+)\s+(\d+)\)")


class EspeakListing(NamedTuple):
    """One row of ``espeak-ng --voices``: the voice's language, and the others it reads."""

    priority: int
    language: str  # lower case, as espeak-ng names it: en-gb, cmn, vi-vn-x-central
    name: str
    file: str
    others: tuple[tuple[str, int], ...]  # (language, priority)


def parse_espeak_voices(listing: str) -> list[EspeakListing]:
    """The rows of ``espeak-ng --voices`` output, without MBROLA voices (they need extra packages)."""
    rows = []
    for line in listing.splitlines()[1:]:
        m = _VOICE_LINE.match(line)
        if m and not m.group(5).startswith("mb/"):
            others = tuple((k.lower(), int(p)) for k, p in _OTHER_LANG.findall(m.group(6)))
            rows.append(EspeakListing(int(m.group(1)), m.group(2).lower(), m.group(4), m.group(5), others))
    return rows


@functools.lru_cache(maxsize=4)
def _espeak_listing(binary: str) -> tuple[EspeakListing, ...]:
    """espeak-ng's voices, asked once a process; () when espeak-ng cannot run."""
    try:
        out = subprocess.run(
            [binary, "--voices"], capture_output=True, text=True, timeout=15, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        log.info("espeak-ng is not available: %s", exc)
        return ()
    return tuple(parse_espeak_voices(out))


@functools.lru_cache(maxsize=4)
def _espeak_table(binary: str) -> tuple[tuple[Voice, ...], dict[str, tuple[int, str]]]:
    """espeak-ng's voices and a language key -> (priority, voice_id) index."""
    rows = _espeak_listing(binary)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.language] = counts.get(row.language, 0) + 1
    voices: list[Voice] = []
    index: dict[str, tuple[int, str]] = {}
    for row in rows:
        # the language name selects a voice; where two voices share it, the file does
        voice_id = row.language if counts[row.language] == 1 else row.file
        if any(v.voice_id == voice_id for v in voices):
            continue
        voices.append(Voice(ESPEAK, voice_id, row.language, row.name.replace("_", " ")))
        for key, prio in [(row.language, row.priority), *row.others]:
            if key not in index or prio < index[key][0]:
                index[key] = (prio, voice_id)
    return tuple(voices), index


# Region subtags that mean another spoken language than espeak's default for the base tag;
# Nynorsk is read by the Norwegian voice (espeak-ng has one for both written standards).
_ESPEAK_SPECIAL = {"zh-hk": "yue", "zh-mo": "yue", "zh-yue": "yue", "no": "nb", "nn": "nb"}


class EspeakEngine:
    """espeak-ng as a subprocess: WAV on stdout, text on stdin (never a shell, never an option)."""

    name = ESPEAK

    def __init__(self, binary: str | None = None) -> None:
        self.binary = binary or shutil.which(ESPEAK) or ESPEAK

    @property
    def available(self) -> bool:
        return bool(self._table()[0])

    def _table(self):
        return _espeak_table(self.binary)

    def voices(self) -> list[Voice]:
        return list(self._table()[0])

    def voice_id_for(self, tag: str) -> str | None:
        voices, index = self._table()
        if not voices:
            return None
        for key in lookup_keys(tag):
            key = _ESPEAK_SPECIAL.get(key, key)
            if key in index:
                return index[key][1]
        return None

    def voices_for(self, tag: str) -> list[Voice]:
        voice_id = self.voice_id_for(tag)
        if voice_id is None:
            return []
        voice = next(v for v in self._table()[0] if v.voice_id == voice_id)
        return [Voice(ESPEAK, voice.voice_id, tag, voice.label)]

    def synthesize(self, text: str, voice: Voice) -> AudioChunk:
        samples, rate = self._synthesize(text, voice.voice_id)
        return AudioChunk(samples=samples, sample_rate=rate, text=text)

    def _synthesize(self, text: str, voice_id: str) -> tuple[np.ndarray, int]:
        import soundfile as sf

        try:
            proc = subprocess.run(
                [self.binary, "-v", voice_id, "-b", "1", "--stdout", "--stdin"],
                input=text.encode("utf-8"),
                capture_output=True,
                timeout=SYNTH_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise _engine_failed(self.name, str(exc)) from exc
        words = text.split()
        if proc.returncode < 0 and len(words) > 1:
            # espeak-ng 1.51 aborts ("buffer overflow") on some long clauses without
            # punctuation (Burmese UDHR text, from about 60 characters): say the halves.
            half = len(words) // 2
            first, rate = self._synthesize(" ".join(words[:half]), voice_id)
            second, _ = self._synthesize(" ".join(words[half:]), voice_id)
            return np.concatenate([first, second]), rate
        if proc.returncode != 0 or len(proc.stdout) <= 44:
            raise _engine_failed(self.name, proc.stderr.decode("utf-8", "replace").strip() or f"exit {proc.returncode}")
        try:
            samples, rate = sf.read(io.BytesIO(proc.stdout), dtype="float32", always_2d=True)
        except Exception as exc:  # noqa: BLE001 - unreadable output is an engine failure
            raise _engine_failed(self.name, f"unreadable audio: {exc}") from exc
        return np.ascontiguousarray(samples.mean(axis=1), dtype=np.float32), int(rate)


def _engine_failed(engine: str, detail: str) -> UserFacingError:
    return UserFacingError(
        f"The voice ({engine}) failed, so this answer is shown as text only.",
        key="tts.engine_failed",
        engine=engine,
        detail=detail[:300],
    )


# --------------------------------------------------------------------------- MMS-TTS (VITS)


NONCOMMERCIAL_NOTE = (
    "MMS-TTS voices (facebook/mms-tts-*) are licensed CC-BY-NC 4.0: non-commercial use only."
)


class VitsEngine:
    """MMS-TTS through transformers' VitsModel, from the hub or local folders.

    ``models`` maps language tags to a hub id or a folder; with ``use_hub`` every
    other language is tried as facebook/mms-tts-<iso639-3>. Nothing is imported or
    loaded before the first sentence.
    """

    name = MMS
    HUB_PATTERN = "facebook/mms-tts-{iso3}"

    def __init__(
        self,
        allow_noncommercial: bool = False,
        models: dict[str, str] | None = None,
        device: str = "cpu",
        use_hub: bool = True,
        max_loaded: int = 2,
    ) -> None:
        self.allow_noncommercial = allow_noncommercial
        self.models = {k.lower(): str(v) for k, v in (models or {}).items()}
        self.device = device
        self.use_hub = use_hub
        self.max_loaded = max_loaded
        self._loaded: OrderedDict[str, tuple[object, object]] = OrderedDict()
        self._lock = threading.Lock()

    def _source_for(self, tag: str) -> str | None:
        for key in lookup_keys(tag):
            if key in self.models:
                return self.models[key]
        if not self.use_hub:
            return None
        iso3 = _iso639_3(tag)
        if not iso3:
            return None
        repo = self.HUB_PATTERN.format(iso3=iso3)
        return repo if _hub_reachable_or_cached(repo) else None

    def voices(self) -> list[Voice]:
        if not self.allow_noncommercial:
            return []
        return [Voice(MMS, src, tag, f"MMS-TTS {tag} (non-commercial)") for tag, src in self.models.items()]

    def voices_for(self, tag: str) -> list[Voice]:
        if not self.allow_noncommercial:
            return []
        source = self._source_for(tag)
        return [Voice(MMS, source, tag, f"MMS-TTS {tag} (non-commercial)")] if source else []

    def load(self, voice_id: str):
        """The (model, tokenizer) for a hub id or folder; a few stay loaded, least recent dropped."""
        if not self.allow_noncommercial:
            raise UserFacingError(
                f"{NONCOMMERCIAL_NOTE} Enable non-commercial voices in the settings to use them.",
                key="tts.noncommercial_disabled",
                engine=self.name,
            )
        with self._lock:
            if voice_id in self._loaded:
                self._loaded.move_to_end(voice_id)
                return self._loaded[voice_id]
            try:
                from transformers import AutoTokenizer, VitsModel

                tokenizer = AutoTokenizer.from_pretrained(voice_id)
                model = VitsModel.from_pretrained(voice_id).to(self.device).eval()
            except Exception as exc:  # noqa: BLE001 - missing weights, broken folder, no network
                raise UserFacingError(
                    f"The MMS-TTS voice {voice_id!r} could not be loaded; using another voice or text only.",
                    key="tts.voice_unavailable",
                    engine=self.name,
                    voice=voice_id,
                    detail=f"{type(exc).__name__}: {exc}"[:300],
                ) from exc
            self._loaded[voice_id] = (model, tokenizer)
            while len(self._loaded) > self.max_loaded:
                self._loaded.popitem(last=False)
            return model, tokenizer

    def synthesize(self, text: str, voice: Voice) -> AudioChunk:
        import torch

        model, tokenizer = self.load(voice.voice_id)
        inputs = tokenizer(text, return_tensors="pt")
        if inputs["input_ids"].shape[-1] == 0 or not bool((inputs["input_ids"] != tokenizer.pad_token_id).any()):
            # characters outside the voice's alphabet (e.g. another script): nothing to say
            raise UserFacingError(
                "This voice cannot read this text.", key="tts.unsupported_text", engine=self.name, voice=voice.voice_id
            )
        try:
            with torch.inference_mode():
                wave = model(**{k: v.to(self.device) for k, v in inputs.items()}).waveform[0]
        except Exception as exc:  # noqa: BLE001 - out of memory or an unexpected input
            raise _engine_failed(self.name, f"{type(exc).__name__}: {exc}") from exc
        return AudioChunk(samples=wave.float().cpu().numpy().astype(np.float32), sample_rate=int(model.config.sampling_rate), text=text)


def _hub_reachable_or_cached(repo: str) -> bool:
    """Offline, only voices already in the local cache count; online, any may be downloaded."""
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    if not offline:
        return True
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo, "config.json"), str)
    except Exception:  # noqa: BLE001
        return False


# --------------------------------------------------------------------------- router


# Failures that will not go away by trying the same voice again in this process.
_NONCOMMERCIAL_KEYS = {"tts.noncommercial_disabled", "tts.voice_noncommercial"}
_BROKEN_VOICE_KEYS = {"tts.voice_unavailable", "tts.piper_unavailable"} | _NONCOMMERCIAL_KEYS


class SpeechRouter:
    """Best voice per language, with fallbacks; speaks text sentence by sentence."""

    def __init__(
        self,
        preferred_engine: str | None = None,
        allow_noncommercial: bool = False,
        engines: list[TTSEngine] | None = None,
        vits_models: dict[str, str] | None = None,
        overrides: dict[str, Voice] | None = None,
        device: str = "cpu",
        piper_voices: str | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        if engines is None:
            from backend.models.piper import PiperEngine

            engines = [PiperEngine(voices_dir=piper_voices, allow_noncommercial=allow_noncommercial,
                                   progress=progress), EspeakEngine()]
            if allow_noncommercial:
                engines.insert(1, VitsEngine(allow_noncommercial=True, models=vits_models, device=device))
        self.engines = {e.name: e for e in engines}
        self.preferred_engine = ENGINE_CHOICES.get(preferred_engine or "", preferred_engine)
        self.allow_noncommercial = allow_noncommercial
        self.overrides: dict[str, Voice] = {k.lower(): v for k, v in (overrides or {}).items()}
        # voices that failed to load, with the note a fallback carries: not tried again
        self._broken: dict[tuple[str, str], str] = {}

    def _engine_order(self) -> list[str]:
        order = [n for n in ENGINE_QUALITY if n in self.engines] + [n for n in self.engines if n not in ENGINE_QUALITY]
        if self.preferred_engine in self.engines:
            order.remove(self.preferred_engine)
            order.insert(0, self.preferred_engine)
        return order

    def available(self) -> bool:
        """Whether any engine can speak at all (espeak-ng installed, or a neural voice configured)."""
        for engine in self.engines.values():
            try:
                if engine.voices():
                    return True
            except Exception:  # noqa: BLE001 - a broken engine counts as absent
                log.debug("TTS engine %s failed to list voices", engine.name, exc_info=True)
                continue
        return False

    def voices_for(self, language: str) -> list[Voice]:
        """Every usable voice for the language, best first."""
        found: list[Voice] = []
        for name in self._engine_order():
            engine = self.engines[name]
            if name == MMS and not self.allow_noncommercial:
                continue
            try:
                lookup = getattr(engine, "voices_for", None)
                if lookup is not None:
                    voices = lookup(language)
                else:
                    keys = set(lookup_keys(language))
                    voices = [v for v in engine.voices() if v.language.lower() in keys]
            except Exception:  # noqa: BLE001 - a broken engine offers no voices
                log.warning("TTS engine %s failed to list voices", name, exc_info=True)
                continue
            found += voices
        return found

    def voice_for(self, language: str) -> Voice | None:
        """The voice that is meant to speak the language (it may still fall back when it fails)."""
        for key in lookup_keys(language):
            if key in self.overrides:
                return self.overrides[key]
        voices = self.voices_for(language)
        return voices[0] if voices else None

    def prepare(self, language: str, voice: Voice | None = None) -> None:
        """Load (or download) the language's voice now, so the first sentence does not wait for it.

        Meant for a background thread while the model writes; a failure is remembered like one in ``say``."""
        voice = voice or self.voice_for(language)
        engine = self.engines.get(voice.engine) if voice is not None else None
        load = getattr(engine, "load", None)
        if voice is None or load is None or (voice.engine, voice.voice_id) in self._broken:
            return
        try:
            load(voice.voice_id)
        except UserFacingError as exc:
            if exc.key in _BROKEN_VOICE_KEYS:
                reason = NOTE_NONCOMMERCIAL if exc.key in _NONCOMMERCIAL_KEYS else NOTE_FALLBACK
                self._broken[(voice.engine, voice.voice_id)] = reason
        except Exception:  # noqa: BLE001 - say() reports it when the sentence comes
            log.debug("preparing voice %s/%s failed", voice.engine, voice.voice_id, exc_info=True)

    def describe(self, language: str) -> VoiceDescription | None:
        """The voice that will speak the language, neural or not, and its licence (for the settings)."""
        voice = self.voice_for(language)
        instead_of = None
        if voice is not None and (voice.engine, voice.voice_id) in self._broken:
            # it failed here already (offline, refused licence): say which voice really speaks
            instead_of = describe_voice(voice.engine, voice.voice_id).label
            voice = next((v for v in self.voices_for(language) if (v.engine, v.voice_id) not in self._broken), None)
        if voice is None:
            return None
        engine = self.engines.get(voice.engine)
        licence_of = getattr(engine, "licence", None)
        licence = licence_of(voice.voice_id) if licence_of is not None else None
        return dataclasses.replace(describe_voice(voice.engine, voice.voice_id, licence), instead_of=instead_of)

    def speak(
        self,
        text: str,
        language: str,
        voice: Voice | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Iterator[AudioChunk]:
        """One AudioChunk per sentence. Raises UserFacingError (tts.*) when no voice can speak it."""
        first = voice or self.voice_for(language)
        if first is None and not self.available():
            raise UserFacingError(
                "Speech output is not available on this computer (espeak-ng is not installed); "
                "answers are shown as text only.",
                key="tts.engine_missing",
                engine=ESPEAK,
            )
        if first is None:
            raise UserFacingError(
                f"There is no voice for {language!r}; the answer is shown as text only.",
                key="tts.no_voice",
                language=language,
            )
        for sentence in split_sentences(speakable(text), language):
            if should_stop is not None and should_stop():
                return
            yield self.say(sentence, language, first)

    def say(self, sentence: str, language: str, voice: Voice | None = None) -> AudioChunk:
        """One sentence, trying the chosen voice first and the others after it."""
        candidates = [voice] if voice else []
        candidates += [v for v in self.voices_for(language) if v != voice]
        if not candidates:
            raise UserFacingError(
                f"There is no voice for {language!r}; the answer is shown as text only.",
                key="tts.no_voice",
                language=language,
            )
        last: UserFacingError | None = None
        note: str | None = None  # set once a voice meant to speak could not
        for cand in candidates:
            engine = self.engines.get(cand.engine)
            if engine is None:
                continue
            if (cand.engine, cand.voice_id) in self._broken:
                note = note or self._broken[(cand.engine, cand.voice_id)]
                continue
            try:
                chunk = engine.synthesize(sentence, cand)
            except UserFacingError as exc:
                last = exc
                if exc.key in _BROKEN_VOICE_KEYS:  # not for one sentence a voice could not read
                    reason = NOTE_NONCOMMERCIAL if exc.key in _NONCOMMERCIAL_KEYS else NOTE_FALLBACK
                    note = note or reason
                    self._broken[(cand.engine, cand.voice_id)] = reason
                log.warning("voice %s/%s failed: %s", cand.engine, cand.voice_id, exc.params.get("detail", exc.message))
                continue
            except Exception as exc:  # noqa: BLE001 - a third-party engine must not break the answer
                last = _engine_failed(cand.engine, f"{type(exc).__name__}: {exc}")
                note = note or NOTE_FALLBACK
                self._broken[(cand.engine, cand.voice_id)] = NOTE_FALLBACK
                log.warning("voice %s/%s crashed", cand.engine, cand.voice_id, exc_info=True)
                continue
            chunk.note = note
            return chunk
        raise last or _engine_failed("tts", "no voice could speak")


# --------------------------------------------------------------------------- language table helper


def voices_for(tag: str, include_noncommercial: bool = False) -> list[tuple[str, str]]:
    """[(engine, voice_id)] for the language table, best first; fast (no download, espeak-ng's list read once)."""
    from backend.models.piper import catalogue_voice_for

    found: list[tuple[str, str]] = []
    piper = catalogue_voice_for(tag)
    if piper is not None and (include_noncommercial or not _piper_forbids(piper.licence)):
        found.append((PIPER, piper.key))
    if include_noncommercial:
        iso3 = _iso639_3(tag)
        if iso3:
            found.append((MMS, VitsEngine.HUB_PATTERN.format(iso3=iso3)))
    voice_id = EspeakEngine().voice_id_for(tag)
    if voice_id:
        found.append((ESPEAK, voice_id))
    return found


def _piper_forbids(licence: str | None) -> bool:
    from backend.models.piper import forbids_commercial

    return forbids_commercial(licence)


# Licences of the engines whose voices all share one; Piper voices each have their own.
ENGINE_LICENCE = {ESPEAK: "GPL-3.0, a separate program", MMS: "CC-BY-NC-4.0, non-commercial"}


@dataclass(frozen=True)
class VoiceDescription:
    """What the settings and the language table say about the voice that will speak."""

    engine: str
    voice_id: str
    label: str
    neural: bool
    licence: str | None  # None: not known before the voice is downloaded
    instead_of: str | None = None  # the voice meant to speak, when it failed here (offline, licence)


def describe_voice(engine: str, voice_id: str, licence: str | None = None) -> VoiceDescription:
    if engine == PIPER and licence is None:
        from backend.models.piper import catalogue

        entry = next((v for v in catalogue()["voices"].values() if v["key"] == voice_id), None)
        licence = entry.get("licence") if entry else None
    label = voice_id.rsplit("/", 1)[-1].removesuffix(".onnx") if engine == PIPER else voice_id
    return VoiceDescription(engine, voice_id, f"{engine} {label}", engine != ESPEAK,
                            licence or ENGINE_LICENCE.get(engine))


def voice_table_cell(engine: str, voice_id: str) -> str:
    """One voice in README's language table: engine:voice (licence)."""
    desc = describe_voice(engine, voice_id)
    return f"{engine}:{voice_id} ({desc.licence or 'licence read on download'})"


def espeak_available() -> bool:
    return EspeakEngine().available


def espeak_languages() -> frozenset[str]:
    """Every language (folded tag) an espeak-ng voice is made for; empty without espeak-ng."""
    rows = _espeak_listing(EspeakEngine().binary)
    return frozenset(normalize_tag(row.language) for row in rows) - {UNKNOWN}


__all__ = [
    "AudioChunk",
    "EspeakEngine",
    "SpeechRouter",
    "TTSEngine",
    "VoiceDescription",
    "describe_voice",
    "voice_table_cell",
    "VitsEngine",
    "Voice",
    "NONCOMMERCIAL_NOTE",
    "speakable",
    "voices_for",
    "espeak_available",
    "espeak_languages",
    "parse_espeak_voices",
]
