"""A Whisper-ER system end to end on a tiny model: build, train a few steps, decode, read out."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from serlib.data.folds import Fold
from serlib.encoders.backbones import ct2_files
from serlib.methods.whisper_er.data import DecoderInputs, encoder_inputs, longest_target, missing_labels
from serlib.methods.whisper_er.decode import decode, zero_shot_transcripts
from serlib.methods.whisper_er.run import (
    TASK_SETS,
    Recipe,
    System,
    build,
    run_fold,
    runnable,
    teacher_forced_scores,
    train,
)
from serlib.training.trainer import TrainConfig
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


RECIPES = {"light": Recipe("frozen", "light"), "decoder": Recipe("frozen", "full"),
           "partial": Recipe("partial", "full", encoder_layers=1), "full": Recipe("finetune", "full")}


@pytest.mark.parametrize("name, recipe", [("STL-SER", "light"), ("A+G+S", "light"), ("G+S", "decoder"),
                                          ("STL-SER", "partial"), ("A+G+S", "full")])
def test_a_system_trains_and_decodes(template, name, recipe):
    system, recipe = System(name, TASK_SETS[name]), RECIPES[recipe]
    whisper, vocab = build(template, CLASSES, "en", system, seed=0, recipe=recipe)
    assert template.model.config.vocab_size == len(template.tokenizer)  # the template stays untouched
    states, rows = _data()
    if recipe.mode == "finetune":  # log-mels [T, n_mels]: the encoder runs, and trains, inside each step
        states = [torch.randn(2 * s.shape[0], 8, generator=torch.Generator().manual_seed(i)) for i, s in enumerate(states)]
    inputs = encoder_inputs(whisper.model, states, recipe.inputs)
    encoder_before = whisper.model.model.encoder.layers[0].fc1.weight.detach().clone()
    if recipe.mode == "partial":  # the encoder is its top layer (from the template), on the cached states below it
        assert len(whisper.model.model.encoder.layers) == 1
        assert torch.equal(encoder_before, template.model.model.encoder.layers[-1].fc1.weight)
    if recipe.inputs == "kv":
        assert inputs[3].shape == (2, 2, 2, 8, 8)  # layers, (k, v), heads, frames, head dim
    config = TrainConfig(max_steps=3, batch_size=4, lr=1e-3, eval_every=3, top_k=1, device="cpu",
                         progress=False, seed=0)
    result = train(whisper, vocab, system, CLASSES, inputs[:6], rows[:6], inputs[6:], rows[6:], config, recipe)
    assert system.metric in result.history.columns and result.steps == 3
    encoder_after = whisper.model.model.encoder.layers[0].fc1.weight
    assert torch.equal(encoder_before, encoder_after) == (recipe.mode == "frozen")  # only fine-tuning moves it

    positions = whisper.model.model.encoder.embed_positions.weight  # sinusoidal: never trained, never decayed
    assert not positions.requires_grad and torch.equal(positions, template.model.model.encoder.embed_positions.weight)
    out = decode(whisper, vocab, system.tasks, inputs, recipe.inputs, beam=2, max_new_tokens=4)
    assert len(out) == len(states)
    fast = decode(whisper, vocab, system.tasks, inputs, recipe.inputs, beam=2, max_new_tokens=4, precision="bf16")
    assert len(fast) == len(states) and list(fast.columns) == list(out.columns)
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


def test_recipes_name_what_trains_and_refuse_what_cannot_be():
    assert [r.inputs for r in RECIPES.values()] == ["kv", "states", "upper", "mel"]
    with pytest.raises(ValueError, match="encoder_layers"):
        Recipe("partial", "full")  # partial without a layer count
    with pytest.raises(ValueError, match="decoder full"):
        Recipe("partial", "light", encoder_layers=1)
    with pytest.raises(ValueError, match="decoder full"):
        Recipe("finetune", "light")  # K/V cannot be precomputed when the encoder trains
    with pytest.raises(ValueError, match="frozen|finetune"):
        Recipe("cpu")


def test_decoder_inputs_are_computed_once_per_decoder_start(template):
    states, _ = _data()
    inputs = DecoderInputs(states, "kv")
    first, _ = build(template, CLASSES, "en", System("a", ("ser",)), seed=0)
    second, _ = build(template, CLASSES, "en", System("b", ("gender", "ser")), seed=0)
    random, _ = build(template, CLASSES, "en", System("r", ("ser",), decoder="random"), seed=0)
    shared = inputs(first.model, "pretrained")
    assert inputs(second.model, "pretrained") is shared  # no second computation
    own = inputs(random.model, "random")
    assert own is not shared and not torch.equal(own[0], shared[0])
    assert torch.equal(shared[2], encoder_inputs(first.model, [states[2]], "kv")[0])
    assert DecoderInputs(states, "states")(first.model, "pretrained") is states


def test_longest_target_counts_every_scored_token(template):
    whisper, vocab = build(template, CLASSES, "en", System("x", ("ser",)), seed=0)
    rows = [{"text": "Hi.", "gender": "male", "emotion": "sad"},
            {"text": "Kids are talking by the door.", "gender": "female", "emotion": "happy"}]
    assert longest_target(vocab, whisper.tokenizer, ("ser",), rows) == 2  # emotion + <|endoftext|>
    words = len(whisper.tokenizer.encode(" Kids are talking by the door.", add_special_tokens=False))
    assert longest_target(vocab, whisper.tokenizer, ("asr", "gender", "ser"), rows) == words + 3


def test_run_fold_trains_and_decodes_the_test_part(template):
    states, rows = _data(10)
    fold = Fold("f1", train=np.arange(6), valid=np.array([6, 7]), test=np.array([9, 8]))
    config = TrainConfig(max_steps=2, batch_size=4, lr=1e-3, eval_every=2, top_k=1, device="cpu", progress=False, seed=0)
    system = System("A+G+S", TASK_SETS["A+G+S"])
    out, result, decode_s = run_fold(template, CLASSES, "en", system, fold, DecoderInputs(states, "kv"), rows, config,
                                     seed=0, beam=2)
    assert len(out) == 2 and out["emotion"].isin(CLASSES).all() and decode_s > 0
    assert result.steps == 2 and "UA" in result.history.columns


def test_zero_shot_transcripts_use_the_untouched_model(template):
    audio = [np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1, np.zeros(8000, np.float32) + 0.01]
    texts = zero_shot_transcripts(template, audio, "en", beam=2, max_new_tokens=3)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    assert template.model.config.vocab_size == len(template.tokenizer)  # no task tokens were added


def test_bf16_keys_and_values_stay_close_to_float32(template):
    states, _ = _data()
    whisper, _ = build(template, CLASSES, "en", System("a", ("ser",)), seed=0)
    exact = encoder_inputs(whisper.model, states, "kv")
    fast = encoder_inputs(whisper.model, states, "kv", precision="bf16")
    for a, b in zip(exact, fast):
        assert a.shape == b.shape and a.dtype == b.dtype == torch.float16
        assert torch.allclose(a.float(), b.float(), atol=0.05, rtol=0.02)


def test_teacher_forced_scores_on_hand_made_guesses(template):
    whisper, vocab = build(template, CLASSES, "en", System("x", TASK_SETS["A+G+S"]), seed=0)
    e, g = vocab.emotions, vocab.genders
    text = whisper.tokenizer.encode(" Kids", add_special_tokens=False)[0]
    # two utterances' scored positions: text, gender, emotion, end
    labels = torch.tensor([text, g["male"], e["sad"], vocab.eot, text, g["female"], e["happy"], vocab.eot])
    perfect = teacher_forced_scores(labels, labels.clone(), vocab, CLASSES)
    assert perfect == {"UA": 1.0, "GR_acc": 1.0, "ASR_token_acc": 1.0}
    # a text token where an emotion belongs is wrong (class "none"); the wrong gender halves GR accuracy
    guesses = torch.tensor([text + 1, g["female"], text, vocab.eot, text, g["female"], e["happy"], vocab.eot])
    scores = teacher_forced_scores(labels, guesses, vocab, CLASSES)
    assert scores["GR_acc"] == 0.5 and scores["ASR_token_acc"] == 0.5
    assert scores["UA"] == pytest.approx(0.5)  # sad recalled 0 of 1, happy 1 of 1
    only_emotion = teacher_forced_scores(torch.tensor([e["sad"], vocab.eot]), torch.tensor([e["angry"], 0]), vocab,
                                         CLASSES)
    assert only_emotion == {"UA": 0.0}  # metrics appear only where their tokens do


def test_a_corpus_runs_only_the_systems_its_labels_allow():
    from serlib.data.prepare import PreparedCorpus

    m = pd.DataFrame({"utt_id": ["a", "b"], "text": ["", ""], "gender": ["male", "female"], "emotion": ["sad", "happy"]})
    systems, left_out = runnable(PreparedCorpus("toy", m, pd.DataFrame(), ["happy", "sad"], {}), ["STL-SER", "A+S", "G+S"])
    assert [s.name for s in systems] == ["STL-SER", "G+S"] and "transcript" in left_out["A+S"]
