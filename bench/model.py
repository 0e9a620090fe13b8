"""Speed and memory of the omni models at their released size, with random weights.

A model built from the released config.json costs the same compute and memory as
the released weights, so load memory, time to first token, decode speed and stop
latency can be measured without downloading anything. The model is built directly
on the target device (no CPU detour on CUDA), quantized in place to 4-bit nf4 with
the app's own BitsAndBytesConfig when asked, and then driven through the app's
``LocalEngine.stream`` so the figures include its prompt building, streaming and
cancellation.

    python bench/model.py --model gemma-4-E2B-it --device cpu --precision bf16 --decode-tokens 8
    python bench/model.py --model gemma-4-E4B-it --device cuda --precision nf4
    python bench/model.py --small                 # shrunk config on CPU, under 2 minutes

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import platform
import resource
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.report import report  # noqa: E402

CONFIG_DIR = ROOT / "assets" / "model_configs"
MODELS = ("gemma-4-E4B-it", "gemma-4-E2B-it", "Qwen2.5-Omni-7B")
PRECISIONS = {"bf16": torch.bfloat16, "fp32": torch.float32, "nf4": torch.bfloat16}
TEXT_TOKENS = 64
IMAGE_SIDE = 896
AUDIO_SECONDS = 10.0
STOP_AFTER_TOKENS = 3
GIB = 2**30


# -- configs -------------------------------------------------------------------------
def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def shrink_depth(raw: dict, layers: int) -> dict:
    """Keep the released widths, cut the language model to ``layers`` layers."""
    raw = copy.deepcopy(raw)
    if raw["model_type"] == "gemma4":
        text = raw["text_config"]
        full = text["num_hidden_layers"]
        types = text["layer_types"][:layers]
        types[-1] = "full_attention"  # Gemma 4 requires a global layer last
        text["layer_types"] = types
        # keep about the released share of layers that reuse an earlier layer's KV cache, as long
        # as each attention type they use still has a layer of its own that produces the cache
        shared = int(text["num_kv_shared_layers"] * layers // full)
        while shared and not set(types[layers - shared:]) <= set(types[: layers - shared]):
            shared -= 1
        text["num_kv_shared_layers"] = shared
        text["num_hidden_layers"] = layers
    else:
        text = raw["thinker_config"]["text_config"]
        text["num_hidden_layers"] = layers
        text["max_window_layers"] = layers
    return raw


def shrink_small(raw: dict) -> dict:
    """Widths and depths cut to a few hundred thousand parameters; same classes and code paths.
    Every Linear dimension is a multiple of 64: bitsandbytes' CPU 4-bit kernels need that."""
    raw = copy.deepcopy(raw)
    if raw["model_type"] == "gemma4":
        raw["text_config"].update(
            vocab_size=1024, vocab_size_per_layer_input=1024, hidden_size=128, intermediate_size=256,
            num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=64, global_head_dim=64,
            hidden_size_per_layer_input=64, num_kv_shared_layers=0, sliding_window=64,
            layer_types=["sliding_attention", "full_attention"], max_position_embeddings=4096,
        )
        raw["vision_config"].update(
            hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=2, head_dim=64,
        )
        # the first subsampling conv sees the 128 mel bins
        raw["audio_config"].update(
            hidden_size=128, num_hidden_layers=2, num_attention_heads=2, output_proj_dims=128,
        )
    else:
        thinker = raw["thinker_config"]
        thinker["text_config"].update(
            vocab_size=1024, hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=1, max_window_layers=2, max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [8, 12, 12]},
        )
        thinker["vision_config"].update(
            depth=2, hidden_size=128, intermediate_size=256, num_heads=2, out_hidden_size=128, fullatt_block_indexes=[1],
        )
        thinker["audio_config"].update(
            d_model=128, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=256, output_dim=128,
        )
        raw["talker_config"].update(embedding_size=128)
    return raw


# -- processor: the real image/audio processors, a byte-level tokenizer ----------------------
def build_gemma_processor(proc_cfg: dict):
    from transformers import (
        Gemma4AudioFeatureExtractor,
        Gemma4ImageProcessor,
        Gemma4Processor,
        Gemma4VideoProcessor,
    )

    from tests.tiny_models import GEMMA_TEMPLATE, gemma4_tokenizer

    tokenizer, _ = gemma4_tokenizer()

    image_kwargs = {k: v for k, v in proc_cfg["image_processor"].items() if k != "image_processor_type"}
    audio_kwargs = {k: v for k, v in proc_cfg["feature_extractor"].items() if k != "feature_extractor_type"}
    return Gemma4Processor(
        feature_extractor=Gemma4AudioFeatureExtractor(**audio_kwargs),
        image_processor=Gemma4ImageProcessor(**image_kwargs),
        video_processor=Gemma4VideoProcessor(),
        tokenizer=tokenizer,
        chat_template=GEMMA_TEMPLATE,
        image_seq_length=proc_cfg["image_seq_length"],
        audio_seq_length=proc_cfg["audio_seq_length"],
        audio_ms_per_token=proc_cfg["audio_ms_per_token"],
    )


def build_qwen_processor(proc_cfg: dict):
    from transformers import (
        Qwen2_5OmniProcessor,
        Qwen2Tokenizer,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
        WhisperFeatureExtractor,
    )

    from tests.tiny_models import QWEN_TEMPLATE, _bytes_to_unicode

    vocab = {ch: i for i, ch in enumerate(_bytes_to_unicode().values())}
    specials = [
        "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>",
        "<|IMAGE|>", "<|vision_bos|>", "<|vision_eos|>", "<|VIDEO|>",
    ]
    for tok in specials:
        vocab[tok] = len(vocab)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab, merges=[], unk_token=None, bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        extra_special_tokens={
            "image_token": "<|IMAGE|>", "audio_token": "<|AUDIO|>", "video_token": "<|VIDEO|>",
            "vision_bos_token": "<|vision_bos|>", "vision_eos_token": "<|vision_eos|>",
            "audio_bos_token": "<|audio_bos|>", "audio_eos_token": "<|audio_eos|>",
        },
    )
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    image_kwargs = {k: v for k, v in proc_cfg["image_processor"].items() if k != "image_processor_type"}
    audio_kwargs = {k: v for k, v in proc_cfg["feature_extractor"].items() if k != "feature_extractor_type"}
    return Qwen2_5OmniProcessor(
        image_processor=Qwen2VLImageProcessor(**image_kwargs),
        video_processor=Qwen2VLVideoProcessor(),
        feature_extractor=WhisperFeatureExtractor(**audio_kwargs),
        tokenizer=tokenizer,
        chat_template=QWEN_TEMPLATE,
    )


def point_config_at_tokenizer(raw: dict, tokenizer) -> dict:
    """The byte-level tokenizer numbers its special tokens differently from the released
    one; the model's embedding tables keep their released size."""
    ids = tokenizer.convert_tokens_to_ids
    raw = copy.deepcopy(raw)
    if raw["model_type"] == "gemma4":
        raw.update(
            boi_token_id=ids("<start_of_image>"), eoi_token_id=ids("<end_of_image>"), image_token_id=ids("<|image|>"),
            video_token_id=ids("<|video|>"), boa_token_id=ids("<start_of_audio>"), eoa_token_index=ids("<end_of_audio>"),
            audio_token_id=ids("<|audio|>"),
        )
    else:
        raw["thinker_config"].update(
            audio_token_index=ids("<|AUDIO|>"), image_token_index=ids("<|IMAGE|>"), video_token_index=ids("<|VIDEO|>"),
            audio_start_token_id=ids("<|audio_bos|>"), audio_end_token_id=ids("<|audio_eos|>"),
            vision_start_token_id=ids("<|vision_bos|>"), vision_end_token_id=ids("<|vision_eos|>"),
        )
    return raw


# -- model --------------------------------------------------------------------------------
def build_model(config, device: str, dtype: torch.dtype):
    """Allocate and initialise every weight on ``device`` itself: no full CPU copy of a GPU model."""
    from transformers import AutoModelForMultimodalLM

    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForMultimodalLM.from_config(config, dtype=dtype)
    return model.eval()


def quantize_nf4(model, family: str, device: str) -> int:
    """Swap every Linear outside the app's skip list for a bitsandbytes nf4 Linear4bit, one
    layer at a time, so the bf16 copy of a layer is freed as soon as it is quantized."""
    import bitsandbytes as bnb
    from transformers.quantizers.quantizers_utils import should_convert_module

    from backend.models.engine import bnb_config

    qconfig = bnb_config(family)
    skip = list(qconfig.llm_int8_skip_modules)
    replaced = 0
    for name, module in list(model.named_modules()):
        if type(module) is not torch.nn.Linear or not should_convert_module(name, skip):
            continue
        new = bnb.nn.Linear4bit(
            module.in_features, module.out_features, module.bias is not None, qconfig.bnb_4bit_compute_dtype,
            compress_statistics=qconfig.bnb_4bit_use_double_quant, quant_type=qconfig.bnb_4bit_quant_type,
            quant_storage=qconfig.bnb_4bit_quant_storage, device="meta",
        )
        weight = module.weight.data
        new.weight = bnb.nn.Params4bit(
            weight, requires_grad=False, compress_statistics=qconfig.bnb_4bit_use_double_quant,
            quant_type=qconfig.bnb_4bit_quant_type, quant_storage=qconfig.bnb_4bit_quant_storage, module=new,
        ).to(device)
        if module.bias is not None:
            new.bias = torch.nn.Parameter(module.bias.data, requires_grad=False)
        new.requires_grad_(False)
        model.set_submodule(name, new)
        del module, weight
        replaced += 1
    model.config.quantization_config = qconfig
    model.is_loaded_in_4bit = True
    return replaced


def unique_params(model) -> tuple[int, int]:
    """(parameter count, bytes) with tied tensors counted once; nf4 weights count their packed size."""
    seen: set[int] = set()
    count = size = 0
    for p in model.parameters():
        if p.data_ptr() in seen:
            continue
        seen.add(p.data_ptr())
        quant_state = getattr(p, "quant_state", None)
        count += int(np.prod(quant_state.shape)) if quant_state is not None else p.numel()
        size += p.numel() * p.element_size()
    return count, size


# -- memory ---------------------------------------------------------------------------------
def rss_bytes() -> int:
    try:
        import psutil

        return psutil.Process().memory_info().rss
    except ImportError:  # Linux fallback
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:  # not Linux
        pass
    return platform.processor() or platform.machine()


def gib(n: float | None) -> float | None:
    return None if n is None else round(n / GIB, 3)


# -- inputs ---------------------------------------------------------------------------------
def text_of_tokens(tokenizer, n: int) -> str:
    """A user message that the tokenizer splits into exactly ``n`` tokens."""
    seed = "the quick brown fox jumps over the lazy dog and keeps running across the wide green field "
    ids = tokenizer(seed * (1 + n // 8), add_special_tokens=False)["input_ids"][:n]
    return tokenizer.decode(ids)


def test_image():
    from PIL import Image

    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (IMAGE_SIDE, IMAGE_SIDE, 3), dtype=np.uint8), "RGB")


def test_audio() -> np.ndarray:
    t = np.arange(int(AUDIO_SECONDS * 16000)) / 16000.0
    rng = np.random.default_rng(0)
    return (0.1 * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


# -- measurements ---------------------------------------------------------------------------
def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_once(engine, messages, max_new_tokens: int, stop_after: int | None = None):
    """One streamed answer through the app's engine. With ``stop_after``, a watcher sets the
    answer's scope once that many tokens came out and the time until stream() returns is measured."""
    from backend.cancel import CancelScope
    from backend.models.engine import GenerationStats

    stats = GenerationStats()
    stop = CancelScope()
    stop_set_at: list[float] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if stats.new_tokens >= stop_after:
                stop_set_at.append(time.perf_counter())
                stop.cancel()
                return
            time.sleep(0.0005)

    watcher = threading.Thread(target=watch, daemon=True) if stop_after else None
    if watcher:
        watcher.start()
    for _ in engine.stream(messages, stop, max_new_tokens=max_new_tokens, stats=stats):
        pass
    returned_at = time.perf_counter()
    done.set()
    if watcher:
        watcher.join()
    stop_latency = returned_at - stop_set_at[0] if stop_set_at else None
    return stats, stop_latency


def decode_rate(stats) -> float | None:
    if stats.first_token_s is None or stats.new_tokens < 2:
        return None
    return (stats.new_tokens - 1) / max(stats.total_s - stats.first_token_s, 1e-9)


def median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 4) if values else None


def bench(args: argparse.Namespace) -> dict[str, Any]:
    from transformers import AutoConfig

    from backend.models.engine import LocalEngine, PromptMessage

    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda asked for, but torch sees no CUDA device")
    if args.small and args.layers:
        raise SystemExit("--small and --layers do not go together")
    folder = CONFIG_DIR / args.model
    raw = read_json(folder / "config.json")
    proc_cfg = read_json(folder / "processor_config.json")
    if args.small:
        raw = shrink_small(raw)
    elif args.layers:
        raw = shrink_depth(raw, args.layers)
    family = raw["model_type"]
    processor = build_gemma_processor(proc_cfg) if family == "gemma4" else build_qwen_processor(proc_cfg)
    raw = point_config_at_tokenizer(raw, processor.tokenizer)
    if family == "qwen2_5_omni":
        raw["enable_audio_output"] = False  # text out only, as the app loads it
    config = AutoConfig.for_model(**raw)
    if family == "qwen2_5_omni":
        config.enable_audio_output = False

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    rss_before = rss_bytes()
    started = time.perf_counter()
    model = build_model(config, device, PRECISIONS[args.precision])
    sync(device)
    build_s = time.perf_counter() - started
    quantized_layers = 0
    if args.precision == "nf4":
        started_q = time.perf_counter()
        quantized_layers = quantize_nf4(model, family, device)
        gc.collect()
        sync(device)
        if device == "cuda":
            torch.cuda.empty_cache()
        quantize_s = time.perf_counter() - started_q
    else:
        quantize_s = 0.0
    params, weight_bytes = unique_params(model)

    engine = LocalEngine(
        model=str(folder), device=device, quantization="nf4" if args.precision == "nf4" else "none",
        dtype="bfloat16" if args.precision != "fp32" else "float32",
    )
    generator = getattr(model, "thinker", model) if family == "qwen2_5_omni" else model
    # Random weights: never stop on an end token, so every run decodes the tokens asked for.
    generator.generation_config.eos_token_id = None
    generator.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    generator.generation_config.do_sample = False
    engine.model = model
    engine.processor = processor
    engine.family = family
    engine._generator = generator
    engine.accepts_images = True
    engine.accepts_audio = True
    text_cfg = raw["text_config"] if family == "gemma4" else raw["thinker_config"]["text_config"]
    engine.max_context_tokens = int(text_cfg.get("max_position_embeddings", 8192))

    memory: dict[str, Any] = {}
    if device == "cuda":
        memory["load_allocated_gib"] = gib(torch.cuda.memory_allocated())
        memory["load_peak_gib"] = gib(torch.cuda.max_memory_allocated())
        # the app's from_pretrained quantizes shard by shard; the bf16 staging peak here is not the app's
        torch.cuda.reset_peak_memory_stats()
    else:
        memory["load_rss_gib"] = gib(rss_bytes())
        memory["load_rss_added_gib"] = gib(rss_bytes() - rss_before)

    text = text_of_tokens(processor.tokenizer, TEXT_TOKENS)
    scenarios = {"text": [PromptMessage("user", text)]}
    if "image" in args.scenarios:
        scenarios["image"] = [PromptMessage("user", text, images=[test_image()])]
    if "audio" in args.scenarios:
        scenarios["audio"] = [PromptMessage("user", text, audio=[test_audio()])]
    if "text" not in args.scenarios:
        scenarios.pop("text")

    # One untimed pass: first-call costs (kernel selection, allocator growth) are not per-answer costs.
    if args.warmup:
        run_once(engine, [PromptMessage("user", text)], max_new_tokens=2)

    ttft: dict[str, Any] = {}
    prompt_tokens: dict[str, int] = {}
    for name, messages in scenarios.items():
        times = []
        for _ in range(args.runs):
            stats, _ = run_once(engine, messages, max_new_tokens=1)
            times.append(stats.first_token_s)
            prompt_tokens[name] = stats.prompt_tokens
        ttft[name] = median(times)

    decode = []
    decoded_tokens = 0
    for _ in range(args.runs):
        stats, _ = run_once(engine, [PromptMessage("user", text)], max_new_tokens=args.decode_tokens)
        decode.append(decode_rate(stats))
        decoded_tokens = stats.new_tokens

    stops = []
    for _ in range(args.runs):
        _, latency = run_once(
            engine, [PromptMessage("user", text)], max_new_tokens=max(args.decode_tokens, STOP_AFTER_TOKENS + 64),
            stop_after=STOP_AFTER_TOKENS,
        )
        stops.append(latency)

    if device == "cuda":
        memory["run_peak_gib"] = gib(torch.cuda.max_memory_allocated())
    else:
        memory["peak_rss_gib"] = gib(peak_rss_bytes())

    rate = median(decode)
    return {
        "model": args.model,
        "config": "small" if args.small else (f"{args.layers} layers" if args.layers else "full"),
        "family": family,
        "device": device,
        "device_name": torch.cuda.get_device_name(0) if device == "cuda" else cpu_name(),
        "cpu_threads": torch.get_num_threads(),
        "precision": args.precision,
        "params": params,
        "params_b": round(params / 1e9, 3),
        "weights_gib": gib(weight_bytes),
        "nf4_linear_layers": quantized_layers,
        "build_s": round(build_s, 2),
        "quantize_s": round(quantize_s, 2),
        "memory": memory,
        "prompt_tokens": prompt_tokens,
        "ttft_s": ttft,
        "decode_tokens": decoded_tokens,
        "decode_tok_s": rate,
        "decode_ms_per_token": round(1000 / rate, 1) if rate else None,
        "stop_latency_s": median(stops),
        "runs": args.runs,
        "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__},
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=MODELS, default="gemma-4-E2B-it")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--precision", choices=sorted(PRECISIONS), default="bf16")
    parser.add_argument("--small", action="store_true", help="shrunk config (hidden 128, 2 layers) for a quick CPU run")
    parser.add_argument("--layers", type=int, default=0, help="keep the released widths, cut the LM to N layers")
    parser.add_argument("--decode-tokens", type=int, default=256)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument(
        "--scenarios", default="text,image,audio", help="comma list of prompts to time: text, image, audio",
    )
    parser.add_argument("--no-warmup", dest="warmup", action="store_false")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    args.scenarios = {s.strip() for s in args.scenarios.split(",") if s.strip()}
    if args.small:
        args.decode_tokens = min(args.decode_tokens, 32)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    result = bench(args)
    report(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
