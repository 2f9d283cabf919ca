"""Read CTranslate2 `model.bin` files and turn Whisper ones into a transformers state dict.

The package index ships OpenAI's Whisper weights only in CTranslate2 format (see DESIGN.md); no hub
is reachable here, so we parse the binary ourselves (plain struct reads: nothing in the file is
executed) and rename its variables to `WhisperForConditionalGeneration`'s parameter names.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import torch

_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}


class CT2FormatError(ValueError):
    """The file is not a CTranslate2 model of the version this reader understands."""


def _read_string(buf: memoryview, pos: int) -> tuple[str, int]:
    (length,) = struct.unpack_from("<H", buf, pos)
    pos += 2
    raw = bytes(buf[pos : pos + length])
    return raw.rstrip(b"\0").decode("utf-8"), pos + length


def read_ct2(path: str | Path) -> dict[str, torch.Tensor]:
    """All variables of a CTranslate2 model.bin (version 6), aliases resolved, as torch tensors."""
    data = Path(path).read_bytes()
    buf = memoryview(data)
    try:
        (version,) = struct.unpack_from("<I", buf, 0)
        if version != 6:
            raise CT2FormatError(f"{path}: CTranslate2 model version {version}, expected 6")
        _spec, pos = _read_string(buf, 4)
        _revision, count = struct.unpack_from("<II", buf, pos)
        pos += 8
        tensors: dict[str, torch.Tensor] = {}
        for _ in range(count):
            name, pos = _read_string(buf, pos)
            (rank,) = struct.unpack_from("<B", buf, pos)
            pos += 1
            shape = struct.unpack_from(f"<{rank}I", buf, pos)
            pos += 4 * rank
            dtype_id, nbytes = struct.unpack_from("<BI", buf, pos)
            pos += 5
            if dtype_id not in _DTYPES:
                raise CT2FormatError(f"{path}: variable {name} has unknown dtype id {dtype_id}")
            raw = data[pos : pos + nbytes]
            if len(raw) != nbytes:
                raise CT2FormatError(f"{path}: truncated at variable {name}")
            pos += nbytes
            if _DTYPES[dtype_id] == "bfloat16":
                arr = torch.frombuffer(bytearray(raw), dtype=torch.bfloat16)
            else:
                arr = torch.from_numpy(np.frombuffer(raw, dtype=_DTYPES[dtype_id]).copy())
            tensors[name] = arr.reshape(shape) if rank else arr.reshape(())
        (n_alias,) = struct.unpack_from("<I", buf, pos)
        pos += 4
        for _ in range(n_alias):
            alias, pos = _read_string(buf, pos)
            target, pos = _read_string(buf, pos)
            tensors[alias] = tensors[target]
    except struct.error as exc:
        raise CT2FormatError(f"{path}: truncated or not a CTranslate2 model ({exc})") from exc
    return tensors


def _layer_count(names, prefix: str) -> int:
    # `layer_norm` also starts with `layer_`: only numbered layers count.
    found = {int(m.group(1)) for n in names if (m := re.match(rf"{prefix}/layer_(\d+)/", n))}
    return max(found) + 1 if found else 0


def whisper_dims(ct2: dict[str, torch.Tensor]) -> dict[str, int]:
    """Model dimensions read off the variables' shapes (the CT2 config.json does not hold them)."""
    conv1 = ct2["encoder/conv1/weight"]
    heads = ct2.get("encoder/num_heads", ct2.get("num_heads"))
    if heads is None:
        raise CT2FormatError("no num_heads scalar in the CTranslate2 model")
    d_model = conv1.shape[0]
    return {
        "d_model": d_model,
        "num_mel_bins": conv1.shape[1],
        "encoder_layers": _layer_count(ct2, "encoder"),
        "decoder_layers": _layer_count(ct2, "decoder"),
        "encoder_attention_heads": int(heads),
        "decoder_attention_heads": int(ct2.get("decoder/num_heads", heads)),
        "encoder_ffn_dim": ct2["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        "decoder_ffn_dim": ct2["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        "vocab_size": ct2["decoder/embeddings/weight"].shape[0],
        "max_source_positions": ct2["encoder/position_encodings/encodings"].shape[0],
        "max_target_positions": ct2["decoder/position_encodings/encodings"].shape[0],
    }


def _split_qkv(prefix: str, hf: str, w: torch.Tensor, b: torch.Tensor, parts: tuple[str, ...]):
    """Fused CT2 projections stacked on dim 0 -> separate HF projections (k has no bias in Whisper)."""
    out = {}
    for name, wi, bi in zip(parts, w.chunk(len(parts)), b.chunk(len(parts))):
        out[f"{hf}.{name}.weight"] = wi
        if name != "k_proj":
            out[f"{hf}.{name}.bias"] = bi
    return out


def _norm(ct2, src: str, dst: str) -> dict[str, torch.Tensor]:
    return {f"{dst}.weight": ct2[f"{src}/gamma"], f"{dst}.bias": ct2[f"{src}/beta"]}


def _linear(ct2, src: str, dst: str) -> dict[str, torch.Tensor]:
    return {f"{dst}.weight": ct2[f"{src}/weight"], f"{dst}.bias": ct2[f"{src}/bias"]}


def whisper_state_dict(ct2: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CT2 Whisper variables -> `WhisperForConditionalGeneration` state dict (float tensors as stored)."""
    sd: dict[str, torch.Tensor] = {}
    enc, dec = "model.encoder", "model.decoder"
    for conv in ("conv1", "conv2"):
        sd.update(_linear(ct2, f"encoder/{conv}", f"{enc}.{conv}"))
    sd[f"{enc}.embed_positions.weight"] = ct2["encoder/position_encodings/encodings"]
    sd.update(_norm(ct2, "encoder/layer_norm", f"{enc}.layer_norm"))
    for i in range(_layer_count(ct2, "encoder")):
        src, dst = f"encoder/layer_{i}", f"{enc}.layers.{i}"
        sa = f"{src}/self_attention"
        sd.update(_split_qkv(sa, f"{dst}.self_attn", ct2[f"{sa}/linear_0/weight"],
                             ct2[f"{sa}/linear_0/bias"], ("q_proj", "k_proj", "v_proj")))
        sd.update(_linear(ct2, f"{sa}/linear_1", f"{dst}.self_attn.out_proj"))
        sd.update(_norm(ct2, f"{sa}/layer_norm", f"{dst}.self_attn_layer_norm"))
        sd.update(_linear(ct2, f"{src}/ffn/linear_0", f"{dst}.fc1"))
        sd.update(_linear(ct2, f"{src}/ffn/linear_1", f"{dst}.fc2"))
        sd.update(_norm(ct2, f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm"))
    sd[f"{dec}.embed_tokens.weight"] = ct2["decoder/embeddings/weight"]
    sd[f"{dec}.embed_positions.weight"] = ct2["decoder/position_encodings/encodings"]
    sd.update(_norm(ct2, "decoder/layer_norm", f"{dec}.layer_norm"))
    for i in range(_layer_count(ct2, "decoder")):
        src, dst = f"decoder/layer_{i}", f"{dec}.layers.{i}"
        sa, ca = f"{src}/self_attention", f"{src}/attention"
        sd.update(_split_qkv(sa, f"{dst}.self_attn", ct2[f"{sa}/linear_0/weight"],
                             ct2[f"{sa}/linear_0/bias"], ("q_proj", "k_proj", "v_proj")))
        sd.update(_linear(ct2, f"{sa}/linear_1", f"{dst}.self_attn.out_proj"))
        sd.update(_norm(ct2, f"{sa}/layer_norm", f"{dst}.self_attn_layer_norm"))
        sd.update(_linear(ct2, f"{ca}/linear_0", f"{dst}.encoder_attn.q_proj"))
        sd.update(_split_qkv(ca, f"{dst}.encoder_attn", ct2[f"{ca}/linear_1/weight"],
                             ct2[f"{ca}/linear_1/bias"], ("k_proj", "v_proj")))
        sd.update(_linear(ct2, f"{ca}/linear_2", f"{dst}.encoder_attn.out_proj"))
        sd.update(_norm(ct2, f"{ca}/layer_norm", f"{dst}.encoder_attn_layer_norm"))
        sd.update(_linear(ct2, f"{src}/ffn/linear_0", f"{dst}.fc1"))
        sd.update(_linear(ct2, f"{src}/ffn/linear_1", f"{dst}.fc2"))
        sd.update(_norm(ct2, f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm"))
    sd["proj_out.weight"] = sd[f"{dec}.embed_tokens.weight"]
    return sd
