"""The language table: what Omnilingo can do in each language.

One row per language any stage knows (the text detector, Whisper, a voice): its
names, scripts and direction, whether it is detected, heard and spoken, and how well
the default model is expected to write it. Built on first use (``languages()``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import langcodes

from backend.language import detect
from backend.language.scripts import is_rtl, primary_scripts
from backend.language.tags import UNKNOWN, autonym, language_name, normalize_tag
from backend.models import tts

# How well the default model (Gemma 4) is expected to handle a language. The model
# card claims pretraining on 140+ languages and out-of-the-box support for 35+; it
# does not list them. "strong" is our best reading of the 35+ (the widely used
# languages Gemma releases have been evaluated on), "supported" the rest of the
# major written languages likely in a 140-language pretraining mix (approximated
# by CLDR's "modern" coverage and Whisper's list), "limited" everything else.
_STRONG_TIER = frozenset(
    "ar bn cs da de el en es fa fi fr he hi hu id it ja ko ms nl no pl pt ro ru sk sv sw "
    "th tl tr uk ur vi zh bg hr".split())


@dataclass(frozen=True)
class LanguageInfo:
    tag: str
    name: str
    autonym: str
    scripts: tuple[str, ...]
    rtl: bool
    detector_knows: bool
    whisper_hears: bool
    tts_voices: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    model_tier: str = "limited"

    @property
    def speaks(self) -> bool:
        return bool(self.tts_voices)

    @property
    def end_to_end(self) -> bool:
        """Text in, answer out, spoken: the detector knows it and some voice speaks it."""
        return self.detector_knows and self.speaks

    @property
    def end_to_end_speech(self) -> bool:
        """Also heard: Whisper recognises it."""
        return self.end_to_end and self.whisper_hears


def whisper_languages() -> frozenset[str]:
    """Languages Whisper transcribes, folded (from transformers' tokenizer table)."""
    try:
        from transformers.models.whisper.tokenization_whisper import LANGUAGES as whisper
    except ImportError:  # transformers absent: the table says nobody hears
        return frozenset()
    return frozenset(normalize_tag(code) for code in whisper) - {UNKNOWN}



def _model_tier(tag: str, whisper: frozenset[str]) -> str:
    if tag in _STRONG_TIER:
        return "strong"
    if tag in whisper or tag in detect.profile_languages():
        return "supported"
    return "limited"


def _build_table() -> dict[str, LanguageInfo]:
    detectable = detect.detector_languages()
    whisper = whisper_languages()
    voiced = tts.espeak_languages()
    tags = sorted((detectable | whisper | voiced) - {UNKNOWN})
    table: dict[str, LanguageInfo] = {}
    for tag in tags:
        name = language_name(tag)
        if name.lower().startswith("unknown language"):
            continue
        scripts = primary_scripts(tag) or tuple(
            s for s in [langcodes.Language.get(tag).maximize().script] if s)
        table[tag] = LanguageInfo(
            tag=tag,
            name=name,
            autonym=autonym(tag),
            scripts=scripts,
            rtl=is_rtl(tag),
            detector_knows=tag in detectable,
            whisper_hears=tag in whisper,
            tts_voices=tuple(tts.voices_for(tag)),
            model_tier=_model_tier(tag, whisper),
        )
    return table


_table_lock = threading.Lock()
_table: dict[str, LanguageInfo] | None = None


def languages() -> dict[str, LanguageInfo]:
    """{tag: LanguageInfo} for every language any stage knows; built once, on first use."""
    global _table
    with _table_lock:
        if _table is None:
            _table = _build_table()
        return _table


def get(tag: str) -> LanguageInfo | None:
    return languages().get(normalize_tag(tag))


def choices() -> list[tuple[str, str]]:
    """Options for a language selector: ("Auto", "auto") then "autonym (English name)" by English name."""
    rows = sorted(languages().values(), key=lambda info: (info.name.casefold(), info.tag))
    out = [("Auto", "auto")]
    for info in rows:
        label = info.autonym if info.autonym == info.name else f"{info.autonym} ({info.name})"
        out.append((label, info.tag))
    return out


def end_to_end_languages() -> list[LanguageInfo]:
    return [info for info in languages().values() if info.end_to_end]
