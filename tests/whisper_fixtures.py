"""Tiny Whisper models for tests: a random transformers model, and a CTranslate2 file written by hand."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import torch
from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

DTYPE_IDS = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2, np.dtype(np.int32): 3,
             np.dtype(np.float16): 4}


def tiny_config(**overrides) -> WhisperConfig:
    dims = dict(d_model=16, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, num_mel_bins=8,
                vocab_size=64, max_source_positions=1500, max_target_positions=32,
                pad_token_id=1, bos_token_id=1, eos_token_id=1, decoder_start_token_id=2)
    dims.update(overrides)
    return WhisperConfig(**dims)


def tiny_whisper(seed: int = 0, **overrides) -> WhisperForConditionalGeneration:
    torch.manual_seed(seed)
    return WhisperForConditionalGeneration(tiny_config(**overrides)).eval()


def save_tiny_whisper(folder: Path, seed: int = 0) -> Path:
    """A random tiny Whisper in transformers' folder format (no tokenizer: encoder-only uses)."""
    model = tiny_whisper(seed)
    model.save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=model.config.num_mel_bins).save_pretrained(folder)
    return folder


def _string(name: str) -> bytes:
    raw = name.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def write_ct2(path: Path, variables: dict[str, np.ndarray], aliases: dict[str, str]) -> None:
    """Write variables in CTranslate2's model.bin layout (version 6), as DESIGN.md describes it."""
    out = [struct.pack("<I", 6), _string("WhisperSpec"), struct.pack("<II", 3, len(variables))]
    for name, value in variables.items():
        value = np.asarray(value).copy(order="C")  # (ascontiguousarray would make scalars 1-d)
        out.append(_string(name))
        out.append(struct.pack("<B", value.ndim))
        out.append(struct.pack(f"<{value.ndim}I", *value.shape))
        out.append(struct.pack("<BI", DTYPE_IDS[value.dtype], value.nbytes))
        out.append(value.tobytes())
    out.append(struct.pack("<I", len(aliases)))
    for alias, target in aliases.items():
        out.append(_string(alias) + _string(target))
    path.write_bytes(b"".join(out))


def ct2_variables(config: WhisperConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """Random float16 variables with CTranslate2's Whisper names and shapes (k bias zero, as in Whisper)."""
    rng = np.random.default_rng(seed)
    d, f = config.d_model, config.encoder_ffn_dim

    def r(*shape):
        return rng.standard_normal(shape).astype(np.float16)

    def fused_bias(parts: int, k_index: int | None):
        b = r(parts * d)
        if k_index is not None:
            b[k_index * d:(k_index + 1) * d] = 0
        return b

    v = {
        "encoder/num_heads": np.array(config.encoder_attention_heads, dtype=np.int16),
        "decoder/num_heads": np.array(config.decoder_attention_heads, dtype=np.int16),
        "encoder/conv1/weight": r(d, config.num_mel_bins, 3), "encoder/conv1/bias": r(d),
        "encoder/conv2/weight": r(d, d, 3), "encoder/conv2/bias": r(d),
        "encoder/position_encodings/encodings": r(config.max_source_positions, d),
        "encoder/layer_norm/gamma": r(d), "encoder/layer_norm/beta": r(d),
        "decoder/embeddings/weight": r(config.vocab_size, d),
        "decoder/position_encodings/encodings": r(config.max_target_positions, d),
        "decoder/layer_norm/gamma": r(d), "decoder/layer_norm/beta": r(d),
    }
    for side, n in (("encoder", config.encoder_layers), ("decoder", config.decoder_layers)):
        for i in range(n):
            p = f"{side}/layer_{i}"
            v.update({
                f"{p}/self_attention/linear_0/weight": r(3 * d, d),
                f"{p}/self_attention/linear_0/bias": fused_bias(3, 1),
                f"{p}/self_attention/linear_1/weight": r(d, d), f"{p}/self_attention/linear_1/bias": r(d),
                f"{p}/self_attention/layer_norm/gamma": r(d), f"{p}/self_attention/layer_norm/beta": r(d),
                f"{p}/ffn/linear_0/weight": r(f, d), f"{p}/ffn/linear_0/bias": r(f),
                f"{p}/ffn/linear_1/weight": r(d, f), f"{p}/ffn/linear_1/bias": r(d),
                f"{p}/ffn/layer_norm/gamma": r(d), f"{p}/ffn/layer_norm/beta": r(d),
            })
            if side == "decoder":
                v.update({
                    f"{p}/attention/linear_0/weight": r(d, d), f"{p}/attention/linear_0/bias": r(d),
                    f"{p}/attention/linear_1/weight": r(2 * d, d), f"{p}/attention/linear_1/bias": fused_bias(2, 0),
                    f"{p}/attention/linear_2/weight": r(d, d), f"{p}/attention/linear_2/bias": r(d),
                    f"{p}/attention/layer_norm/gamma": r(d), f"{p}/attention/layer_norm/beta": r(d),
                })
    return v


def tiny_whisper_with_tokenizer(**overrides):
    """A tiny random multilingual Whisper with the real tokenizer (51,865 tokens), as a `Whisper`.

    The tokenizer comes with the base CTranslate2 package: callers skip when it is not installed.
    """
    from transformers import GenerationConfig, WhisperTokenizer

    from serlib.encoders.backbones import Whisper, ct2_files

    tokenizer = WhisperTokenizer(tokenizer_file=str(ct2_files("base")[1] / "tokenizer.json"))
    model = tiny_whisper(vocab_size=len(tokenizer), eos_token_id=50257, pad_token_id=50257,
                         bos_token_id=50257, decoder_start_token_id=50258, **overrides)
    model.generation_config = GenerationConfig(is_multilingual=True)
    return Whisper("tiny-random", model, tokenizer, WhisperFeatureExtractor(feature_size=8), "test")


def save_tiny_whisper_with_tokenizer(folder: Path) -> Path:
    """The tiny Whisper with the real tokenizer as a transformers folder, which profiles name as
    `whisper: <folder>`: every notebook runs on it in seconds (long enough targets for transcripts)."""
    whisper = tiny_whisper_with_tokenizer(max_target_positions=448)
    whisper.model.save_pretrained(folder)
    whisper.tokenizer.save_pretrained(folder)
    whisper.feature_extractor.save_pretrained(folder)
    return folder
