"""How every benchmark reports: one JSON object on stdout, and the same in a results file."""

from __future__ import annotations

import json
from pathlib import Path


def report(result: object, out: Path | None) -> None:
    text = json.dumps(result, indent=1, ensure_ascii=False)
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n", encoding="utf-8")
