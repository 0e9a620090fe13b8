"""Tiny random models of the real architectures, built offline.

They have the real model classes, processors and chat templates but a shrunk
config and a byte-level tokenizer, so the app loads them through exactly the
same ``from_pretrained`` code as the released weights. Their answers are noise;
their shapes, streaming, cancellation and memory behaviour are real.

    python -m tests.tiny_models OUTDIR         # writes OUTDIR/gemma4, OUTDIR/qwen25omni, OUTDIR/whisper
    python -m app --model OUTDIR/gemma4        # serve one
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

SEED = 1234

# Chat template in the spirit of Gemma's turn markers; small enough to read.
GEMMA_TEMPLATE = (
    "{{ bos_token }}"
    "{%- for message in messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] | trim }}"
    "{%- else -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{ '<|image|>' }}"
    "{%- elif item['type'] == 'audio' -%}{{ '<|audio|>' }}"
    "{%- elif item['type'] == 'text' -%}{{ item['text'] | trim }}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{{ '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)

QWEN_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{ '<|vision_bos|><|IMAGE|><|vision_eos|>' }}"
    "{%- elif item['type'] == 'audio' -%}{{ '<|audio_bos|><|AUDIO|><|audio_eos|>' }}"
    "{%- elif item['type'] == 'text' -%}{{ item['text'] }}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{{ '<|im_end|>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\n' }}{%- endif -%}"
)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte → printable character map (byte-level BPE alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def gemma4_tokenizer(with_merge: bool = False):
    """A byte-fallback Gemma tokenizer with Gemma 4's image, audio and turn tokens; (tokenizer, vocab).

    ``with_merge`` adds one BPE merge: llama.cpp refuses a Gemma 4 vocabulary without merges."""
    from transformers import GemmaTokenizer

    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
    mm_tokens = {
        "image_token": "<|image|>",
        "boi_token": "<start_of_image>",
        "eoi_token": "<end_of_image>",
        "audio_token": "<|audio|>",
        "boa_token": "<start_of_audio>",
        "eoa_token": "<end_of_audio>",
    }
    turn_tokens = ["<start_of_turn>", "<end_of_turn>", "<|video|>"]
    vocab: dict[str, int] = {}
    for tok in specials + list(mm_tokens.values()) + turn_tokens:
        vocab[tok] = len(vocab)
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for ch in "▁abcdefghijklmnopqrstuvwxyz":
        vocab.setdefault(ch, len(vocab))
    merges = []
    if with_merge:
        vocab["▁t"] = len(vocab)
        merges.append(("▁", "t"))
    tokenizer = GemmaTokenizer(vocab=vocab, merges=merges, extra_special_tokens=mm_tokens)
    tokenizer.add_special_tokens({"additional_special_tokens": turn_tokens})
    return tokenizer, vocab


def build_gemma4(out: Path, folder: str = "gemma4", for_llama_cpp: bool = False) -> Path:
    """``for_llama_cpp``: the shape llama.cpp's converter expects of a Gemma 4 (full-attention heads
    wider than sliding ones, as in the released models, and a tokenizer with merges)."""
    from transformers import (
        Gemma4AudioFeatureExtractor,
        Gemma4Config,
        Gemma4ForConditionalGeneration,
        Gemma4ImageProcessor,
        Gemma4Processor,
        Gemma4VideoProcessor,
    )

    tokenizer, vocab = gemma4_tokenizer(with_merge=for_llama_cpp)
    vocab_size = len(tokenizer)

    config = Gemma4Config(
        text_config={
            "vocab_size": vocab_size,
            "vocab_size_per_layer_input": vocab_size,
            "hidden_size": 64,
            "hidden_size_per_layer_input": 64,  # bitsandbytes CPU kernels need multiples of 64
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "head_dim": 32,
            "global_head_dim": 64 if for_llama_cpp else 32,
            "sliding_window": 64,
            "layer_types": ["sliding_attention", "full_attention"],
            "max_position_embeddings": 4096,
            "pad_token_id": 0,
            "eos_token_id": [1, vocab["<end_of_turn>"]],
            "bos_token_id": 2,
        },
        vision_config={
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "head_dim": 32,
            "patch_size": 16,
            "pooling_kernel_size": 3,
            "position_embedding_size": 1024,
        },
        audio_config={
            "hidden_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            # Gemma 4 audio: the first subsampling conv's channels must equal the mel bins
            "subsampling_conv_channels": [128, 32],
            "output_proj_dims": 64,
        },
        boi_token_id=vocab["<start_of_image>"],
        eoi_token_id=vocab["<end_of_image>"],
        image_token_id=vocab["<|image|>"],
        video_token_id=vocab["<|video|>"],
        boa_token_id=vocab["<start_of_audio>"],
        eoa_token_index=vocab["<end_of_audio>"],
        audio_token_id=vocab["<|audio|>"],
    )
    torch.manual_seed(SEED)
    model = Gemma4ForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = [1, vocab["<end_of_turn>"]]
    model.generation_config.pad_token_id = 0
    model.generation_config.do_sample = False
    # Random weights would end answers at random; never ending makes stop tests deterministic.
    model.generation_config.suppress_tokens = [1, vocab["<end_of_turn>"]]

    processor = Gemma4Processor(
        feature_extractor=Gemma4AudioFeatureExtractor(),
        image_processor=Gemma4ImageProcessor(patch_size=16, max_soft_tokens=70, pooling_kernel_size=3),
        video_processor=Gemma4VideoProcessor(patch_size=16, max_soft_tokens=70, pooling_kernel_size=3, num_frames=2),
        tokenizer=tokenizer,
        chat_template=GEMMA_TEMPLATE,
        image_seq_length=70,
    )
    target = out / folder
    model.save_pretrained(target)
    processor.save_pretrained(target)
    return target


def qwen_tokenizer():
    """A byte-level Qwen tokenizer with Qwen2.5-Omni's chat, image, audio and video tokens; (tokenizer, vocab)."""
    from transformers import Qwen2Tokenizer

    byte_map = _bytes_to_unicode()
    vocab = {ch: i for i, ch in enumerate(byte_map.values())}
    specials = [
        "<|endoftext|>", "<|im_start|>", "<|im_end|>",
        "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>",
        "<|IMAGE|>", "<|vision_bos|>", "<|vision_eos|>", "<|VIDEO|>",
    ]
    for tok in specials:
        vocab[tok] = len(vocab)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=[],
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={
            "image_token": "<|IMAGE|>",
            "audio_token": "<|AUDIO|>",
            "video_token": "<|VIDEO|>",
            "vision_bos_token": "<|vision_bos|>",
            "vision_eos_token": "<|vision_eos|>",
            "audio_bos_token": "<|audio_bos|>",
            "audio_eos_token": "<|audio_eos|>",
        },
    )
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    return tokenizer, vocab


def build_qwen25omni(out: Path) -> Path:
    """Qwen2.5-Omni thinker (the text-out half of the model) with its real processor."""
    from transformers import (
        Qwen2_5OmniProcessor,
        Qwen2_5OmniThinkerConfig,
        Qwen2_5OmniThinkerForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
        WhisperFeatureExtractor,
    )

    tokenizer, vocab = qwen_tokenizer()
    vocab_size = len(tokenizer)

    config = Qwen2_5OmniThinkerConfig(
        text_config={
            "vocab_size": vocab_size,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 6, 6]},
        },
        vision_config={
            "depth": 2,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_heads": 2,
            "out_hidden_size": 64,
            "fullatt_block_indexes": [1],
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        audio_config={
            "d_model": 64,
            "encoder_layers": 2,
            "encoder_attention_heads": 2,
            "encoder_ffn_dim": 128,
            "output_dim": 64,
            "num_mel_bins": 128,
            "n_window": 100,
        },
        audio_token_index=vocab["<|AUDIO|>"],
        image_token_index=vocab["<|IMAGE|>"],
        video_token_index=vocab["<|VIDEO|>"],
        audio_start_token_id=vocab["<|audio_bos|>"],
        audio_end_token_id=vocab["<|audio_eos|>"],
        vision_start_token_id=vocab["<|vision_bos|>"],
        vision_end_token_id=vocab["<|vision_eos|>"],
    )
    torch.manual_seed(SEED)
    model = Qwen2_5OmniThinkerForConditionalGeneration(config).eval()
    _qwen_generation(model, vocab)

    processor = Qwen2_5OmniProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=224 * 224),
        video_processor=Qwen2VLVideoProcessor(),
        feature_extractor=WhisperFeatureExtractor(feature_size=128),
        tokenizer=tokenizer,
        chat_template=QWEN_TEMPLATE,
    )
    target = out / "qwen25omni"
    model.save_pretrained(target)
    processor.save_pretrained(target)
    return target


def _qwen_generation(model, vocab: dict[str, int]) -> None:
    """The generation settings both tiny Qwen models share."""
    model.generation_config.eos_token_id = [vocab["<|im_end|>"], vocab["<|endoftext|>"]]
    model.generation_config.pad_token_id = vocab["<|endoftext|>"]
    model.generation_config.do_sample = False
    model.generation_config.suppress_tokens = [vocab["<|im_end|>"], vocab["<|endoftext|>"]]


def build_qwen2_text(out: Path) -> Path:
    """A text-only Qwen2 chat model (full attention, no processor): the engine's text path."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer, vocab = qwen_tokenizer()
    tokenizer.chat_template = QWEN_TEMPLATE
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=4096,
        eos_token_id=vocab["<|im_end|>"],
        pad_token_id=vocab["<|endoftext|>"],
    )
    torch.manual_seed(SEED)
    model = Qwen2ForCausalLM(config).eval()
    _qwen_generation(model, vocab)
    target = out / "qwen2-text"
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


def build_whisper(out: Path) -> Path:
    """Whisper with its real processor; the tokenizer knows every language and task token."""
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    byte_map = _bytes_to_unicode()
    vocab = {ch: i for i, ch in enumerate(byte_map.values())}
    lang_tokens = [f"<|{code}|>" for code in LANGUAGES]
    specials = (
        ["<|endoftext|>", "<|startoftranscript|>"]
        + lang_tokens
        + ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>"]
    )
    for tok in specials:
        vocab[tok] = len(vocab)
    tokenizer = WhisperTokenizer(
        vocab=vocab,
        merges=[],
        unk_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    tokenizer.add_special_tokens({"additional_special_tokens": specials[1:]})
    vocab_size = len(tokenizer)
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in specials}

    config = WhisperConfig(
        vocab_size=vocab_size,
        num_mel_bins=80,
        d_model=64,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        max_source_positions=1500,  # 30 s of 10 ms frames, halved by the conv stem
        max_target_positions=448,
        decoder_start_token_id=ids["<|startoftranscript|>"],
        pad_token_id=ids["<|endoftext|>"],
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|endoftext|>"],
    )
    torch.manual_seed(SEED)
    model = WhisperForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        decoder_start_token_id=ids["<|startoftranscript|>"],
        eos_token_id=ids["<|endoftext|>"],
        pad_token_id=ids["<|endoftext|>"],
        bos_token_id=ids["<|endoftext|>"],
        is_multilingual=True,
        lang_to_id={tok: ids[tok] for tok in lang_tokens},
        task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]},
        no_timestamps_token_id=ids["<|notimestamps|>"],
        prev_sot_token_id=ids["<|startofprev|>"],
        begin_suppress_tokens=[ids["<|endoftext|>"]],
        # as in the released models, control tokens are never generated as text: the
        # random weights then answer in byte tokens (noise text) rather than nothing
        suppress_tokens=[ids[tok] for tok in specials[1:]],
        max_length=24,  # noise text: keep the tiny model's answers short and tests quick
        do_sample=False,
    )

    processor = WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tokenizer)
    target = out / "whisper"
    model.save_pretrained(target)
    processor.save_pretrained(target)
    return target


def build_vits(out: Path) -> Path:
    """VITS (the MMS-TTS architecture) with a character tokenizer, as facebook/mms-tts-* ships."""
    from transformers import VitsConfig, VitsModel, VitsTokenizer

    chars = ["<pad>", "<unk>", " "] + list("abcdefghijklmnopqrstuvwxyz'.,?!-")
    target = out / "vits"
    target.mkdir(parents=True, exist_ok=True)
    vocab_file = target / "vocab.json"
    vocab_file.write_text(json.dumps({ch: i for i, ch in enumerate(chars)}), encoding="utf-8")
    tokenizer = VitsTokenizer(str(vocab_file), language="eng", add_blank=True, normalize=True, phonemize=False)

    config = VitsConfig(
        vocab_size=len(chars),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        ffn_dim=64,
        flow_size=32,
        spectrogram_bins=65,
        upsample_initial_channel=32,
        upsample_rates=[8, 8, 2, 2],
        upsample_kernel_sizes=[16, 16, 4, 4],
        resblock_kernel_sizes=[3],
        resblock_dilation_sizes=[[1, 3]],
        prior_encoder_num_flows=2,
        prior_encoder_num_wavenet_layers=2,
        posterior_encoder_num_wavenet_layers=2,
        duration_predictor_filter_channels=32,
        duration_predictor_num_flows=2,
        depth_separable_num_layers=2,
        sampling_rate=16_000,
        pad_token_id=0,
    )
    torch.manual_seed(SEED)
    model = VitsModel(config).eval()
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


BUILDERS = {
    "gemma4": build_gemma4, "qwen25omni": build_qwen25omni, "qwen2-text": build_qwen2_text, "whisper": build_whisper,
    "vits": build_vits,
}


def build_gemma4_gguf(out: Path, llama_cpp_src: Path) -> Path:
    """A tiny random Gemma 4 as llama.cpp runs it: the text model and its vision and audio projector
    (mmproj) as two F16 GGUF files, made with llama.cpp's own converter from its source tree (the
    llama-cpp-python wheel does not ship the converter). Returns the text model's file."""
    import os
    import subprocess

    source = build_gemma4(out, folder="gemma4-for-gguf", for_llama_cpp=True)
    target = out / "gemma4-gguf"
    target.mkdir(parents=True, exist_ok=True)
    # The converter reads GGUF with the gguf-py of its own tree, not the installed one.
    env = {**os.environ, "PYTHONPATH": str(llama_cpp_src / "gguf-py")}
    for extra, name in (([], "tiny-gemma4-F16.gguf"), (["--mmproj"], "mmproj-tiny-gemma4-F16.gguf")):
        subprocess.run(
            [sys.executable, str(llama_cpp_src / "convert_hf_to_gguf.py"), str(source), *extra,
             "--outtype", "f16", "--outfile", str(target / name)],
            env=env, check=True, capture_output=True, timeout=600,
        )
    return target / "tiny-gemma4-F16.gguf"


def build_all(out: Path, names: list[str] | None = None) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    built = {}
    for name in names or list(BUILDERS):
        built[name] = BUILDERS[name](out)
    return built


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--only", nargs="*", choices=sorted(BUILDERS), help="build only these")
    args = parser.parse_args(argv)
    built = build_all(args.outdir, args.only)
    print(json.dumps({name: str(path) for name, path in built.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
