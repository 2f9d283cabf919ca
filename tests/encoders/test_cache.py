"""The frozen-encoder feature cache: built once, reused, stale and corrupt entries rebuilt."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from serlib.encoders.cache import FeatureCache
from tests.whisper_fixtures import save_tiny_whisper


def _write(path, seed, seconds=0.8, sr=16000):
    rng = np.random.default_rng(seed)
    sf.write(path, (0.1 * rng.standard_normal(int(seconds * sr))).astype(np.float32), sr)


@pytest.fixture
def setup(tmp_path):
    model_dir = save_tiny_whisper(tmp_path / "tiny-whisper")
    audio = tmp_path / "audio"
    audio.mkdir()
    rows = []
    for i, seconds in enumerate((0.8, 1.3, 0.5)):
        path = audio / f"u{i}.wav"
        _write(path, i, seconds)
        rows.append({"utt_id": f"u{i}", "corpus": "toy", "path": str(path)})
    manifest = pd.DataFrame(rows)
    cache = FeatureCache(str(model_dir), cache_dir=tmp_path / "cache")
    return cache, manifest


def test_built_once_then_reused(setup):
    cache, manifest = setup
    first = cache.ensure(manifest, progress=False)
    assert (first.built, first.cached) == (3, 0)
    second = FeatureCache(cache.model_name, cache.cache_dir).ensure(manifest, progress=False)
    assert (second.built, second.cached) == (0, 3)


def test_entries_hold_every_layer_and_their_means(setup):
    cache, manifest = setup
    cache.ensure(manifest, progress=False)
    frames = cache.frames(manifest)
    pooled = cache.pooled(manifest)
    layers = cache.whisper.model.config.encoder_layers + 1
    assert cache.n_layers(manifest) == layers
    for i, seconds in enumerate((0.8, 1.3, 0.5)):
        assert frames[i].shape[0] == layers
        assert frames[i].shape[1] == (int(seconds * 100) + 1) // 2  # 10 ms mel frames, halved
        assert frames[i].dtype == torch.float16
        np.testing.assert_allclose(frames[i].float().mean(dim=1).numpy(), pooled[i], rtol=2e-3, atol=2e-3)
    some = cache.frames(manifest, layers=[2, 0])
    assert torch.equal(some[1][0], frames[1][2]) and torch.equal(some[1][1], frames[1][0])
    assert cache.pooled(manifest, layers=[1]).shape == (3, 1, pooled.shape[-1])


def test_changed_audio_makes_its_entry_stale(setup):
    cache, manifest = setup
    cache.ensure(manifest, progress=False)
    before = cache.pooled(manifest)
    _write(manifest.loc[1, "path"], seed=99, seconds=1.3)
    report = cache.ensure(manifest, progress=False)
    assert report.stale == ["u1"] and report.built == 1 and report.cached == 2
    after = cache.pooled(manifest)
    assert np.array_equal(before[0], after[0]) and not np.allclose(before[1], after[1])


@pytest.mark.parametrize("damage", ["garbage", "truncate"])
def test_corrupt_entry_is_detected_and_rebuilt(setup, damage):
    cache, manifest = setup
    cache.ensure(manifest, progress=False)
    before = cache.pooled(manifest)
    entry = cache.path("toy", "u2")
    data = entry.read_bytes()
    entry.write_bytes(b"not a safetensors file" if damage == "garbage" else data[: len(data) // 2])
    report = cache.ensure(manifest, progress=False)
    assert report.corrupt == ["u2"] and report.built == 1
    np.testing.assert_allclose(cache.pooled(manifest), before, rtol=1e-5, atol=1e-5)


def test_utterance_ids_cannot_escape_the_cache(setup):
    cache, _ = setup
    with pytest.raises(ValueError, match="leaves its root"):
        cache.path("toy", "../../outside")
