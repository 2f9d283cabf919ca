"""The frozen-encoder feature cache: every layer's hidden states, once per (model, corpus, utterance).

Layout: `<cache>/features/<model>/<corpus>/<utt_id>.safetensors` holding
`hidden` [layers, frames, dim] float16 (all hidden states, see encoders.encoding) and `mean`
[layers, dim] float32 (the mean over frames, so pooled baselines never read the frames), with
metadata (model, sha1 of the audio file, sha1 of each tensor's bytes, format version). An entry whose
audio hash, model or format differs is stale; one that safetensors cannot open, whose shapes
disagree, whose tensor bytes do not match their digests, or that holds NaN or inf, is corrupt; both
are rebuilt and counted. An encoder that produces NaN or inf (or values beyond float16) is an error
naming the audio file. Notebooks share the cache, so the encoder runs once per corpus for the whole
study.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..data.audio import load_audio
from ..paths import cache_root, inside
from ..progress import progress_bar
from ..training.allocator import keep_freed_memory
from ..distributed import is_main, main_first
from .encoding import encode_batch, length_batches, log_mel

FORMAT = "2"  # 2: tensor digests


def audio_sha1(path: str | Path) -> str:
    """Content hash of the audio file: a re-encoded or replaced file makes its cache entry stale."""
    digest = hashlib.sha1()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tensor_sha1(x: torch.Tensor) -> str:
    """Digest of a tensor's bytes: garbled bytes under an intact header are caught by it."""
    return hashlib.sha1(x.contiguous().view(torch.uint8).numpy().tobytes()).hexdigest()


def average_groups(x: torch.Tensor, group: int) -> torch.Tensor:
    """Means of every `group` consecutive frames of x [..., T, D] -> [..., ceil(T / group), D], same dtype."""
    if group < 1:
        raise ValueError(f"group must be >= 1, got {group}")
    n = x.shape[-2]
    full = n // group * group
    parts = [x[..., :full, :].float().unflatten(-2, (n // group, group)).mean(-2)]
    if full < n:
        parts.append(x[..., full:, :].float().mean(-2, keepdim=True))
    return torch.cat(parts, dim=-2).to(x.dtype)


@dataclass
class CacheReport:
    """What `FeatureCache.ensure` found and did, for the notebook's report."""

    cached: int = 0
    built: int = 0
    stale: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    def summary(self) -> dict:
        return {"cached": self.cached, "built": self.built, "rebuilt_stale": len(self.stale),
                "rebuilt_corrupt": len(self.corrupt), "wall_s": round(self.wall_s, 1)}


class FeatureCache:
    """Hidden states of one Whisper model for manifest rows; the model is loaded only if needed."""

    def __init__(self, model_name: str, cache_dir: str | Path | None = None, device: str = "cpu",
                 batch_frames: int = 6000):
        self.model_name = model_name
        slug = model_name.replace("/", "--")
        self.root = cache_root(cache_dir) / "features" / slug
        self.cache_dir = cache_dir
        self.device = device
        self.batch_frames = batch_frames
        self._whisper = None

    def path(self, corpus: str, utt_id: str) -> Path:
        return inside(self.root, Path(corpus) / f"{utt_id}.safetensors")

    @property
    def whisper(self):
        if self._whisper is None:
            from .backbones import load_whisper

            self._whisper = load_whisper(self.model_name, self.cache_dir)
            self._whisper.model.to(self.device)
        return self._whisper

    def _check(self, path: Path, sha1: str) -> str:
        """'ok', 'missing', 'stale' or 'corrupt' for one entry."""
        if not path.is_file():
            return "missing"
        try:
            with safe_open(path, "pt") as fh:
                meta = fh.metadata() or {}
                if meta.get("format") != FORMAT or meta.get("model") != self.model_name or meta.get("audio_sha1") != sha1:
                    return "stale"
                hidden, mean = fh.get_tensor("hidden"), fh.get_tensor("mean")
        except Exception:  # safetensors raises several types for truncated/garbled files
            return "corrupt"
        if hidden.ndim != 3 or list(mean.shape) != [hidden.shape[0], hidden.shape[2]] or hidden.shape[1] < 1:
            return "corrupt"
        if meta.get("hidden_sha1") != tensor_sha1(hidden) or meta.get("mean_sha1") != tensor_sha1(mean):
            return "corrupt"
        if not (torch.isfinite(hidden).all() and torch.isfinite(mean).all()):
            return "corrupt"
        return "ok"

    def ensure(self, manifest: pd.DataFrame, progress: bool = True) -> CacheReport:
        """Encode every row whose entry is missing, stale or corrupt; returns what was done.

        Under several processes the main one builds while the others wait, then check its entries."""
        with main_first():
            return self._ensure(manifest, progress and is_main())

    def _ensure(self, manifest: pd.DataFrame, progress: bool) -> CacheReport:
        start = time.perf_counter()
        report = CacheReport()
        todo = []
        for row in manifest.itertuples(index=False):
            sha1 = audio_sha1(row.path)
            state = self._check(self.path(row.corpus, row.utt_id), sha1)
            if state == "ok":
                report.cached += 1
                continue
            if state in ("stale", "corrupt"):
                getattr(report, state).append(row.utt_id)
            todo.append((row, sha1))
        if todo:
            self._build(todo, progress)
            report.built = len(todo)
        report.wall_s = time.perf_counter() - start
        return report

    @torch.inference_mode()
    def _build(self, todo, progress: bool) -> None:
        keep_freed_memory()
        whisper = self.whisper
        encoder = whisper.model.model.encoder
        mels = [log_mel(whisper.feature_extractor, load_audio(row.path)) for row, _ in
                progress_bar(todo, f"log-mel ({self.model_name})", progress)]
        bar = progress_bar(len(todo), f"encoding ({self.model_name})", progress)
        for batch in length_batches([m.shape[-1] for m in mels], self.batch_frames):
            states, mask = encode_batch(encoder, [mels[i] for i in batch])
            for j, i in enumerate(batch):
                row, sha1 = todo[i]
                n = int(mask[j].sum())
                hidden = states[j, :, :n].float().cpu()
                stored = hidden.half()  # NaN or inf from the encoder stays so in float16, and so does overflow
                if not torch.isfinite(stored).all():
                    raise FloatingPointError(f"{self.model_name} gave NaN, inf or beyond-float16 hidden states for "
                                             f"{row.path} (device {self.device}); nothing was cached for it")
                self._write(self.path(row.corpus, row.utt_id), stored, hidden.mean(dim=1), sha1)
            bar.update(len(batch))
        bar.close()

    def _write(self, path: Path, hidden: torch.Tensor, mean: torch.Tensor, sha1: str) -> None:
        """One entry: `hidden` float16 [layers, frames, dim], `mean` float32 [layers, dim] (`_build` checked both)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tensors = {"hidden": hidden.contiguous(), "mean": mean.contiguous()}
        digests = {f"{k}_sha1": tensor_sha1(v) for k, v in tensors.items()}
        save_file(tensors, tmp, metadata={"format": FORMAT, "model": self.model_name, "audio_sha1": sha1, **digests})
        os.replace(tmp, path)  # a killed run never leaves a half-written entry under the real name

    def pooled(self, manifest: pd.DataFrame, layers: list[int] | None = None) -> np.ndarray:
        """Mean-pooled states [N, layers, dim] float32 in manifest order (call `ensure` first)."""
        out = []
        for row in manifest.itertuples(index=False):
            with safe_open(self.path(row.corpus, row.utt_id), "pt") as fh:
                mean = fh.get_tensor("mean")
            out.append(mean if layers is None else mean[layers])
        return torch.stack(out).numpy()

    def frames(self, manifest: pd.DataFrame, layers: list[int] | None = None, group: int = 1) -> list[torch.Tensor]:
        """Frame-level states, one [layers, frames, dim] float16 tensor per row (call `ensure` first).

        `group` > 1 averages every `group` consecutive frames (the last group may be shorter): a
        coarser frame rate (group 4 = 80 ms) that makes attention pooling several times cheaper on CPU.
        """
        out = []
        for row in manifest.itertuples(index=False):
            with safe_open(self.path(row.corpus, row.utt_id), "pt") as fh:
                hidden = fh.get_slice("hidden")
                x = hidden[:] if layers is None else torch.stack([hidden[i] for i in layers])
            out.append(x if group == 1 else average_groups(x, group))
        return out

    def n_layers(self, manifest: pd.DataFrame) -> int:
        """Hidden states per utterance (front end + every layer) as stored."""
        row = manifest.iloc[0]
        with safe_open(self.path(row["corpus"], row["utt_id"]), "pt") as fh:
            return fh.get_slice("mean").get_shape()[0]
