"""The frozen-encoder feature cache: built once, reused, stale and corrupt entries rebuilt."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from safetensors import safe_open
from safetensors.torch import save_file

from serlib.data.audio import AudioError
from serlib.encoders.cache import FeatureCache, tensor_sha1
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


def _garble_tensor_bytes(data: bytes) -> bytes:
    """Header and shapes intact, every byte of the tensors' data region after the first 16 reversed."""
    start = 8 + int.from_bytes(data[:8], "little")
    return data[: start + 16] + data[start + 16:][::-1]


def _nan_with_valid_digests(entry) -> bytes:
    """An entry whose digests match, but whose tensors hold NaN (as a faulty build might have written)."""
    with safe_open(entry, "pt") as fh:
        meta, hidden, mean = fh.metadata(), fh.get_tensor("hidden").clone(), fh.get_tensor("mean").clone()
    hidden[0, 0, 0], mean[0, 0] = float("nan"), float("inf")
    meta.update(hidden_sha1=tensor_sha1(hidden), mean_sha1=tensor_sha1(mean))
    save_file({"hidden": hidden, "mean": mean}, entry, metadata=meta)
    return entry.read_bytes()


@pytest.mark.parametrize("damage", ["garbage", "truncate", "tensor bytes", "nan"])
def test_corrupt_entry_is_detected_and_rebuilt(setup, damage):
    cache, manifest = setup
    cache.ensure(manifest, progress=False)
    before = cache.pooled(manifest)
    entry = cache.path("toy", "u2")
    data = entry.read_bytes()
    damaged = {"garbage": lambda: b"not a safetensors file", "truncate": lambda: data[: len(data) // 2],
               "tensor bytes": lambda: _garble_tensor_bytes(data), "nan": lambda: _nan_with_valid_digests(entry)}
    entry.write_bytes(damaged[damage]())
    assert entry.read_bytes() != data
    report = cache.ensure(manifest, progress=False)
    assert report.corrupt == ["u2"] and report.built == 1
    np.testing.assert_allclose(cache.pooled(manifest), before, rtol=1e-5, atol=1e-5)


def test_utterance_ids_cannot_escape_the_cache(setup):
    cache, _ = setup
    with pytest.raises(ValueError, match="leaves its root"):
        cache.path("toy", "../../outside")


def test_a_clip_longer_than_whisper_window_is_refused_not_cut(setup, tmp_path):
    cache, manifest = setup
    long = tmp_path / "audio" / "long.wav"
    _write(long, 7, seconds=31.0)
    rows = pd.concat([manifest, pd.DataFrame([{"utt_id": "long", "corpus": "toy", "path": str(long)}])])
    with pytest.raises(AudioError, match="long.wav.*31.0 s > 30 s") as err:
        cache.ensure(rows.reset_index(drop=True), progress=False)
    assert err.value.reason == "too_long" and not cache.path("toy", "long").exists()


@pytest.mark.parametrize("bad", [float("nan"), 1e6])  # NaN from the encoder; finite but beyond float16
def test_non_finite_states_are_an_error_naming_the_audio_and_nothing_is_cached(setup, monkeypatch, bad):
    import serlib.encoders.cache as cache_module

    cache, manifest = setup
    real = cache_module.encode_batch

    def broken(encoder, mels):
        states, mask = real(encoder, mels)
        return states.index_fill(-1, torch.tensor([0]), bad), mask

    monkeypatch.setattr(cache_module, "encode_batch", broken)
    with pytest.raises(FloatingPointError, match=r"u\d\.wav"):
        cache.ensure(manifest, progress=False)
    assert not any(cache.path("toy", u).exists() for u in manifest["utt_id"])
