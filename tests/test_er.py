"""A Whisper-ER system end to end on a tiny model: build, train a few steps, decode, read out."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from serlib.er import TASK_SETS, System, build, decode, encoder_inputs, missing_labels, train
from serlib.models.backbones import ct2_files
from serlib.train import TrainConfig
from tests.whisper_fixtures import tiny_whisper_with_tokenizer

pytestmark = pytest.mark.skipif(ct2_files("base") is None,
                                reason="needs the Whisper tokenizer shipped with the base CTranslate2 package")
CLASSES = ["neutral", "happy", "sad", "angry"]


@pytest.fixture(scope="module")
def template():
    return tiny_whisper_with_tokenizer()


def _data(n=8):
    g = torch.Generator().manual_seed(0)
    states = [torch.randn(5 + i, 16, generator=g) for i in range(n)]
    rows = [{"text": "Kids are talking.", "gender": ("male", "female")[i % 2], "emotion": CLASSES[i % 4]}
            for i in range(n)]
    return states, rows


@pytest.mark.parametrize("name, cpu", [("STL-SER", True), ("A+G+S", True), ("G+S", False)])
def test_a_system_trains_and_decodes(template, name, cpu):
    system = System(name, TASK_SETS[name])
    whisper, vocab = build(template, CLASSES, "en", system, seed=0, cpu=cpu)
    assert template.model.config.vocab_size == len(template.tokenizer)  # the template stays untouched
    states, rows = _data()
    inputs = encoder_inputs(whisper.model, states, cross_kv=cpu)
    if cpu:
        assert inputs[3].shape == (2, 2, 8, 16)  # layers, (k, v), frames, dim
    config = TrainConfig(max_steps=3, batch_size=4, lr=1e-3, eval_every=3, top_k=1, device="cpu",
                         progress=False, seed=0)
    result = train(whisper, vocab, system, CLASSES, inputs[:6], rows[:6], inputs[6:], rows[6:], config, cpu)
    assert system.metric in result.history.columns and result.steps == 3
    out = decode(whisper, vocab, system, inputs, cpu, beam=2, max_new_tokens=4)
    assert len(out) == len(states)
    if "ser" in system.tasks:  # every utterance gets an emotion, from its hypothesis or the fallback
        assert out["emotion"].isin(CLASSES).all()
        assert out.loc[~out["fallback"], "emotion"].notna().all()


def test_random_decoder_differs_from_the_pretrained_one(template):
    system = System("random", ("ser",), decoder="random")
    whisper, _ = build(template, CLASSES, "en", system, seed=1)
    before = template.model.model.decoder.layers[0].fc1.weight
    after = whisper.model.model.decoder.layers[0].fc1.weight
    assert not torch.equal(before, after)
    assert torch.equal(template.model.model.encoder.layers[0].fc1.weight, whisper.model.model.encoder.layers[0].fc1.weight)


def test_corpora_without_labels_for_a_task_are_named():
    m = pd.DataFrame({"text": ["", "hi"], "gender": ["male", "female"], "emotion": ["sad", "sad"]})
    assert "transcript" in missing_labels(m, ("asr", "ser"))
    assert missing_labels(m, ("gender", "ser")) is None
