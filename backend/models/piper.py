"""Piper voices: neural speech in about 40 languages, run with onnxruntime.

A Piper voice is a VITS model exported to ONNX (``<voice>.onnx``) with a config
(``<voice>.onnx.json``: sample rate, espeak-ng voice, phoneme -> id map, default
scales). Text becomes IPA phonemes through the espeak-ng program, run as a separate
process (the same phonemes Piper was trained on); the ids go through the model; out
comes float audio at the voice's sample rate. The piper-tts Python package is not
used: it is GPL-3.0 since 1.3, and this app is Apache-2.0.

Voices come from a local folder (``--piper-voices DIR``, installed voices, for offline
use) or, on first use of a language, from the public collection on the Hugging Face hub
(rhasspy/piper-voices; the catalogue in data/piper_voices.json names one voice per
locale). Each voice's licence is read from its MODEL_CARD before the model is fetched:
a voice whose data forbids commercial use is refused unless non-commercial voices are
allowed. Every failure is a ``UserFacingError``, so the router can fall back to espeak-ng.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import shutil
import subprocess
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.errors import UserFacingError
from backend.language.sentences import split_sentences
from backend.language.tags import lookup_keys
from backend.models.tts import ESPEAK, PIPER, SYNTH_TIMEOUT_S, AudioChunk, Voice, _engine_failed

log = logging.getLogger(__name__)

CATALOGUE_PATH = Path(__file__).with_name("data") / "piper_voices.json"
ENV_VOICES_DIR = "OMNILINGO_PIPER_VOICES"
# Cantonese is written with Chinese characters but is not the Mandarin voice's language.
_NOT_MANDARIN = {"zh-hk", "zh-mo", "zh-yue", "yue"}
# Tags that name a language the collection files under another code.
_ALIASES = {"nb": "no", "nn": "no", "iw": "he", "in": "id"}

_NONCOMMERCIAL = re.compile(r"non[-\s]?commercial|\bby-nc\b|\bcc[-\s]?by[-\s]?nc|\bnc\b|research[-\s]only"
                            r"|not for commercial", re.I)
_LICENCE_LINE = re.compile(r"licen[cs]e[^:\n]*:\s*(.+)", re.I)


# --------------------------------------------------------------------------- licences


def read_licence(model_card: str) -> str | None:
    """The licence lines of a Piper MODEL_CARD ("License: CC0"), joined; None when it states none."""
    found = [m.strip(" *`") for m in _LICENCE_LINE.findall(model_card or "")]
    found = [f for f in found if f]
    return "; ".join(dict.fromkeys(found)) if found else None


def forbids_commercial(licence: str | None) -> bool:
    return licence is not None and _NONCOMMERCIAL.search(licence) is not None


# --------------------------------------------------------------------------- catalogue


@dataclass(frozen=True)
class CatalogueVoice:
    """One voice of the public collection: where its three files are on the hub."""

    locale: str  # en_US
    key: str  # en_US-joe-medium
    name: str
    quality: str
    path: str  # en/en_US/joe/medium/en_US-joe-medium.onnx
    size_bytes: int | None
    licence: str | None = None  # known before download for a few voices

    @property
    def files(self) -> tuple[str, str, str]:
        folder = self.path.rsplit("/", 1)[0]
        return f"{folder}/MODEL_CARD", self.path + ".json", self.path


@functools.lru_cache(maxsize=1)
def catalogue() -> dict:
    return json.loads(CATALOGUE_PATH.read_text(encoding="utf-8"))


def catalogue_voice_for(tag: str) -> CatalogueVoice | None:
    """The collection's voice for a language tag: the locale's own (en-GB), else the language's default."""
    data = catalogue()
    for key in lookup_keys(tag):
        if key in _NOT_MANDARIN:
            return None
        key = _ALIASES.get(key, key)
        parts = key.split("-")
        locale = None
        if len(parts) >= 2 and len(parts[-1]) == 2:
            candidate = f"{parts[0]}_{parts[-1].upper()}"
            locale = candidate if candidate in data["voices"] else None
        if locale is None and len(parts) == 1:
            locale = data["languages"].get(key)
        if locale:
            entry = data["voices"][locale]
            return CatalogueVoice(locale, entry["key"], entry["name"], entry["quality"], entry["path"],
                                  entry.get("size_bytes"), entry.get("licence"))
    return None


def catalogue_languages() -> list[str]:
    return sorted(catalogue()["languages"])


# --------------------------------------------------------------------------- phonemes


_LANG_SWITCH = re.compile(r"\([^)]*\)")  # espeak-ng marks words read in another language: (en)...(fr)
_CLAUSE_END = re.compile(r"([.,;:!?…。，、；：！？]+)(?=\s|$)")
_TERMINATOR = {"…": ".", "。": ".", "，": ",", "、": ",", "；": ";", "：": ":", "！": "!", "？": "?"}


def _terminators(text: str) -> list[str]:
    return [_TERMINATOR.get(m[-1], m[-1]) for m in _CLAUSE_END.findall(text)]


def phonemize(text: str, espeak_voice: str, binary: str | None = None) -> list[str]:
    """IPA phonemes for one sentence, one code point each (NFD), with clause punctuation kept.

    espeak-ng's command line prints one line per clause and drops the punctuation that ended
    it; Piper voices were trained with that punctuation in place (a comma is a short pause, a
    question mark a rising end), so it is put back from the text where the counts agree."""
    binary = binary or shutil.which(ESPEAK) or ESPEAK
    try:
        proc = subprocess.run(
            [binary, "-q", "--ipa", "-b", "1", "-v", espeak_voice, "--stdin"],
            input=text.encode("utf-8"), capture_output=True, timeout=SYNTH_TIMEOUT_S, check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise _engine_failed(PIPER, f"espeak-ng: {exc}") from exc
    if proc.returncode != 0:
        raise _engine_failed(PIPER, "espeak-ng: " + (proc.stderr.decode("utf-8", "replace").strip()
                                                      or f"exit {proc.returncode}"))
    clauses = [_LANG_SWITCH.sub("", line).strip() for line in proc.stdout.decode("utf-8", "replace").splitlines()]
    clauses = [c for c in clauses if c]
    marks = _terminators(text)
    if len(marks) not in (len(clauses), len(clauses) - 1):
        # espeak-ng cut the text elsewhere (abbreviations, numbers): keep only the final mark
        marks = [""] * (len(clauses) - 1) + marks[-1:]
    phonemes = ""
    for i, clause in enumerate(clauses):
        mark = marks[i] if i < len(marks) else ""
        phonemes += clause + mark
        if i < len(clauses) - 1:
            phonemes += " "
    return list(unicodedata.normalize("NFD", phonemes))


def phoneme_ids(phonemes: list[str], id_map: dict[str, list[int]]) -> list[int]:
    """Piper's id sequence: BOS, then every phoneme followed by the pad id, then EOS."""
    pad = id_map["_"]
    ids = list(id_map["^"]) + list(pad)
    for phoneme in phonemes:
        mapped = id_map.get(phoneme)
        if mapped is None:
            continue  # a symbol the voice never saw in training
        ids += list(mapped) + list(pad)
    return ids + list(id_map["$"])


# --------------------------------------------------------------------------- one loaded voice


def default_threads() -> int:
    # Half the cores, up to 4: the model keeps writing the next sentence while this one is spoken,
    # and on 2 busy cores one thread gave the first audio sooner than two (bench/speech.py).
    return max(1, min(4, (os.cpu_count() or 2) // 2))


class PiperVoice:
    """A loaded voice: the ONNX session and what its config says."""

    def __init__(self, onnx_path: Path, config_path: Path, threads: int | None = None,
                 espeak_binary: str | None = None) -> None:
        import onnxruntime

        config = json.loads(Path(config_path).read_text(encoding="utf-8"))
        if config.get("phoneme_type", "espeak") != "espeak":
            raise ValueError(f"phoneme type {config.get('phoneme_type')!r} is not supported (espeak-ng only)")
        self.sample_rate = int(config["audio"]["sample_rate"])
        self.espeak_voice = str(config.get("espeak", {}).get("voice") or "en-us")
        self.id_map = {k: list(v) for k, v in config["phoneme_id_map"].items()}
        inference = config.get("inference", {})
        self.scales = np.array([inference.get("noise_scale", 0.667), inference.get("length_scale", 1.0),
                                inference.get("noise_w", 0.8)], dtype=np.float32)
        self.num_speakers = int(config.get("num_speakers", 1))
        self.espeak_binary = espeak_binary
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(onnx_path), sess_options=options,
                                                    providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self.session.get_inputs()}

    def ids_for(self, sentence: str) -> list[int]:
        return phoneme_ids(phonemize(sentence, self.espeak_voice, self.espeak_binary), self.id_map)

    def synthesize(self, sentence: str) -> np.ndarray:
        ids = self.ids_for(sentence)
        if len(ids) <= 3:  # BOS, pad, EOS: nothing this voice can say
            return np.zeros(0, dtype=np.float32)
        feeds = {
            "input": np.array([ids], dtype=np.int64),
            "input_lengths": np.array([len(ids)], dtype=np.int64),
            "scales": self.scales,
        }
        if "sid" in self._inputs:
            feeds["sid"] = np.array([0], dtype=np.int64)
        audio = np.asarray(self.session.run(None, feeds)[0], dtype=np.float32).reshape(-1)
        peak = float(np.max(np.abs(audio))) if audio.size else 0.0
        # VITS output level varies by voice and sentence: bring every sentence to the same peak
        return audio * (0.95 / peak) if peak > 1e-6 else audio


# --------------------------------------------------------------------------- the engine


@dataclass(frozen=True)
class VoiceInfo:
    """What the settings and the language table show about a language's Piper voice."""

    voice_id: str  # a catalogue key (en_US-joe-medium) or a local .onnx path
    label: str
    licence: str | None  # None: not known until the MODEL_CARD is downloaded
    local: bool
    noncommercial: bool


class PiperEngine:
    """Piper voices from a local folder and, on first use, from the hub; a few stay loaded."""

    name = PIPER

    def __init__(
        self,
        voices_dir: str | Path | None = None,
        allow_noncommercial: bool = False,
        use_hub: bool = True,
        progress: Callable[[str], None] | None = None,
        threads: int | None = None,
        espeak_binary: str | None = None,
        max_loaded: int = 2,
    ) -> None:
        voices_dir = voices_dir or os.environ.get(ENV_VOICES_DIR) or None
        self.voices_dir = Path(voices_dir).expanduser() if voices_dir else None
        self.allow_noncommercial = allow_noncommercial
        self.use_hub = use_hub
        self.progress = progress or (lambda message: log.info(message))
        self.threads = threads
        self.espeak_binary = espeak_binary or shutil.which(ESPEAK)
        self.max_loaded = max_loaded
        self._loaded: OrderedDict[str, PiperVoice] = OrderedDict()
        self._licences: dict[str, str | None] = {}
        self._lock = threading.Lock()
        self._voice_locks: dict[str, threading.Lock] = {}

    @property
    def available(self) -> bool:
        """Piper needs espeak-ng for its phonemes."""
        return bool(self.espeak_binary)

    # -- what there is ----------------------------------------------------------------------
    @functools.cached_property
    def local_voices(self) -> dict[str, Path]:
        """Installed voices by locale (en_US), from ``voices_dir`` and its subfolders."""
        found: dict[str, Path] = {}
        if self.voices_dir is None or not self.voices_dir.is_dir():
            return found
        for onnx in sorted(self.voices_dir.rglob("*.onnx")):
            config = onnx.with_name(onnx.name + ".json")
            if not config.is_file():
                continue
            try:
                code = json.loads(config.read_text(encoding="utf-8"))["language"]["code"]
            except (OSError, ValueError, KeyError, TypeError):
                code = onnx.name.split("-")[0]
            found.setdefault(str(code), onnx)
        return found

    def _local_for(self, tag: str) -> Path | None:
        by_key = {loc.lower().replace("_", "-"): path for loc, path in self.local_voices.items()}
        by_family: dict[str, Path] = {}
        for loc, path in self.local_voices.items():
            by_family.setdefault(loc.split("_")[0].lower(), path)
        for key in lookup_keys(tag):
            if key in _NOT_MANDARIN:
                return None
            key = _ALIASES.get(key, key)
            if key in by_key:
                return by_key[key]
            if "-" not in key and key in by_family:
                return by_family[key]
        return None

    def voices(self) -> list[Voice]:
        if not self.available:
            return []
        out = [Voice(PIPER, str(path), loc.replace("_", "-"), self._label(str(path)))
               for loc, path in self.local_voices.items()]
        return out

    def voices_for(self, tag: str) -> list[Voice]:
        if not self.available:
            return []
        info = self.voice_info(tag)
        if info is None or (info.noncommercial and not self.allow_noncommercial):
            return []
        return [Voice(PIPER, info.voice_id, tag, info.label)]

    def voice_info(self, tag: str) -> VoiceInfo | None:
        """The voice this engine would use for the language, local first; licence when known."""
        local = self._local_for(tag)
        if local is not None:
            licence = self._licence_of(str(local))
            return VoiceInfo(str(local), self._label(str(local)), licence, True, forbids_commercial(licence))
        if not self.use_hub:
            return None
        voice = catalogue_voice_for(tag)
        if voice is None:
            return None
        licence = self._licences.get(voice.key) or self._cached_licence(voice) or voice.licence
        return VoiceInfo(voice.key, self._label(voice.key), licence, False, forbids_commercial(licence))

    @staticmethod
    def _label(voice_id: str) -> str:
        return f"Piper {Path(voice_id).name.removesuffix('.onnx')}"

    def _licence_of(self, voice_id: str) -> str | None:
        if voice_id not in self._licences:
            card = Path(voice_id).with_name("MODEL_CARD")
            try:
                self._licences[voice_id] = read_licence(card.read_text(encoding="utf-8"))
            except OSError:
                self._licences[voice_id] = None
        return self._licences[voice_id]

    def _cached_licence(self, voice: CatalogueVoice) -> str | None:
        try:
            from huggingface_hub import try_to_load_from_cache

            card = try_to_load_from_cache(catalogue()["repo"], voice.files[0], revision=catalogue()["revision"])
        except Exception:  # noqa: BLE001 - no cache is no licence yet
            return None
        if isinstance(card, str):
            licence = read_licence(Path(card).read_text(encoding="utf-8"))
            self._licences[voice.key] = licence
            return licence
        return None

    # -- loading ----------------------------------------------------------------------------
    def load(self, voice_id: str) -> PiperVoice:
        with self._lock:
            if voice_id in self._loaded:
                self._loaded.move_to_end(voice_id)
                return self._loaded[voice_id]
            # one lock per voice: a download of one language does not hold up the voices of others
            voice_lock = self._voice_locks.setdefault(voice_id, threading.Lock())
        with voice_lock:
            with self._lock:
                if voice_id in self._loaded:
                    return self._loaded[voice_id]
            if voice_id.endswith(".onnx"):
                onnx = Path(voice_id)
                self._check_licence(voice_id, self._licence_of(voice_id))
            else:
                onnx = self._download(voice_id)
            try:
                voice = PiperVoice(onnx, onnx.with_name(onnx.name + ".json"), self.threads, self.espeak_binary)
            except Exception as exc:  # noqa: BLE001 - a broken or unknown voice file
                raise _unavailable(voice_id, f"{type(exc).__name__}: {exc}") from exc
            with self._lock:
                self._loaded[voice_id] = voice
                while len(self._loaded) > self.max_loaded:
                    self._loaded.popitem(last=False)
            return voice

    def _check_licence(self, voice_id: str, licence: str | None) -> None:
        if forbids_commercial(licence) and not self.allow_noncommercial:
            raise UserFacingError(
                f"The voice {self._label(voice_id)} is licensed for non-commercial use only ({licence}); "
                "enable non-commercial voices in the settings to use it.",
                key="tts.voice_noncommercial",
                voice=self._label(voice_id),
                licence=licence or "",
            )

    def _download(self, key: str) -> Path:
        """The model card first (its licence decides), then the config and the model, into the hub cache."""
        from huggingface_hub import hf_hub_download
        from tqdm.auto import tqdm

        data = catalogue()
        entry = next((v for v in data["voices"].values() if v["key"] == key), None)
        if entry is None:
            raise _unavailable(key, "not in the voice catalogue")
        voice = CatalogueVoice(key.split("-")[0], key, entry["name"], entry["quality"], entry["path"],
                               entry.get("size_bytes"))
        report = self.progress
        label = self._label(key)

        class Progress(tqdm):
            reported = -1

            def update(self, n=1):
                shown = super().update(n)
                if self.unit == "B" and self.total and self.total > 1_000_000:
                    tenth = int(10 * self.n / self.total)
                    if tenth != self.reported:  # a line every 10 %, not every block
                        self.reported = tenth
                        report(f"Downloading the voice {label}: {self.n / 1e6:.0f} of {self.total / 1e6:.0f} MB")
                return shown

        card_file, config_file, model_file = voice.files
        paths = []
        try:
            for filename in (card_file, config_file, model_file):
                if filename == model_file:
                    size = f" ({voice.size_bytes / 1e6:.0f} MB)" if voice.size_bytes else ""
                    report(f"Downloading the voice {label}{size} from the Hugging Face hub…")
                paths.append(Path(hf_hub_download(data["repo"], filename, revision=data["revision"],
                                                  tqdm_class=Progress)))
                if filename == card_file:
                    licence = read_licence(paths[0].read_text(encoding="utf-8"))
                    self._licences[key] = licence
                    self._check_licence(key, licence)
        except UserFacingError:
            raise
        except Exception as exc:  # noqa: BLE001 - offline, hub unreachable, file missing
            raise _unavailable(key, f"{type(exc).__name__}: {exc}") from exc
        report(f"The voice {label} is ready.")
        return paths[2]

    def licence(self, voice_id: str) -> str | None:
        return self._licence_of(voice_id) if voice_id.endswith(".onnx") else self._licences.get(voice_id)

    # -- speaking ---------------------------------------------------------------------------
    def synthesize(self, text: str, voice: Voice) -> AudioChunk:
        model = self.load(voice.voice_id)
        try:
            parts = [model.synthesize(s) for s in split_sentences(text, voice.language) or [text]]
        except UserFacingError:
            raise
        except Exception as exc:  # noqa: BLE001 - onnxruntime errors on odd input
            raise _engine_failed(PIPER, f"{type(exc).__name__}: {exc}") from exc
        samples = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
        if samples.size == 0:
            raise UserFacingError("This voice cannot read this text.", key="tts.unsupported_text",
                                  engine=PIPER, voice=voice.voice_id)
        return AudioChunk(samples=samples.astype(np.float32), sample_rate=model.sample_rate, text=text)


def _unavailable(voice_id: str, detail: str) -> UserFacingError:
    return UserFacingError(
        f"The voice {PiperEngine._label(voice_id)} could not be loaded (offline, or the download failed); "
        "espeak-ng reads the answer instead.",
        key="tts.piper_unavailable",
        engine=PIPER,
        voice=voice_id,
        detail=detail[:300],
    )


__all__ = [
    "PIPER",
    "CatalogueVoice",
    "PiperEngine",
    "PiperVoice",
    "VoiceInfo",
    "catalogue",
    "catalogue_languages",
    "catalogue_voice_for",
    "forbids_commercial",
    "phoneme_ids",
    "phonemize",
    "read_licence",
]
