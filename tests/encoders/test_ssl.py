"""wav2vec 2.0 / HuBERT / WavLM through transformers, exercised with tiny random configs in a folder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import HubertConfig, HubertModel, Wav2Vec2Config, Wav2Vec2Model, WavLMConfig, WavLMModel

from serlib.encoders.backbones import load_ssl

TINY = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
            conv_dim=(8, 8), conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=4,
            num_conv_pos_embedding_groups=2)


@pytest.mark.parametrize("config_cls, model_cls", [(Wav2Vec2Config, Wav2Vec2Model),
                                                   (HubertConfig, HubertModel),
                                                   (WavLMConfig, WavLMModel)])
def test_ssl_encoder_loads_from_a_folder_and_gives_every_layer(tmp_path, config_cls, model_cls):
    torch.manual_seed(0)
    model_cls(config_cls(**TINY)).save_pretrained(tmp_path)
    model, extractor = load_ssl(str(tmp_path))
    audio = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    inputs = extractor(audio, sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        out = model(inputs.input_values, output_hidden_states=True)
    # the CNN/front-end projection plus one state per transformer layer (Phoneme-MTL's fusion inputs)
    assert len(out.hidden_states) == TINY["num_hidden_layers"] + 1
    frames = 16000 // (5 * 4) - 2  # two strided convolutions without padding
    assert out.last_hidden_state.shape == (1, frames, TINY["hidden_size"])
    assert not model.training


def test_missing_ssl_model_is_a_clear_error(tmp_path):
    with pytest.raises(OSError):
        load_ssl(str(tmp_path / "nothing-here"))
