"""Phoneme-MTL: fusion, heads, CTC loss, decoding, targets for a corpus, the sweep and the finetune path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import Wav2Vec2Config, Wav2Vec2Model

from serlib.data.folds import Fold
from serlib.data.prepare import PreparedCorpus, prepare_corpus
from serlib.heads.classifier import PooledClassifier
from serlib.heads.pooling import masked_mean
from serlib.methods.phoneme_mtl.data import PhonemeDataset, build_targets, keep_feasible
from serlib.methods.phoneme_mtl.loss import ctc_phoneme_loss, freeze_unused, mtl_loss
from serlib.methods.phoneme_mtl.model import (
    FinetuneBackbone,
    PhonemeMTL,
    SharedBlock,
    class_logits,
    greedy_ctc_decode,
)
from serlib.methods.phoneme_mtl.run import (
    ModelSpec,
    emotion_tag_accuracy,
    is_whisper,
    lambda_sweep,
    phoneme_error_rate,
    phoneme_scores,
)
from serlib.training.trainer import TrainConfig, fit
from tests.encoders.test_ssl import TINY as TINY_SSL
from tests.whisper_fixtures import save_tiny_whisper, tiny_whisper

L, D, C, K = 3, 8, 2, 6 * 2 + 1  # hidden states, dim, emotions, phoneme outputs (6 classes x C + blank)
SHARED = {"dim": 5, "context": 3, "dropout": 0.0}  # a small shared block (kernel 3 over time)


def _frames(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(L, t, D, generator=g) for t in lengths]


def _batch(lengths, packed, seed=0):
    frames = _frames(lengths, seed)
    targets = [[1 + (i + k) % (K - 1) for k in range(3 + i)] for i in range(len(lengths))]
    data = PhonemeDataset(frames, [i % C for i in range(len(lengths))], targets, packed=packed)
    return data.collate([data[i] for i in range(len(data))])


def test_fusion_weights_start_uniform_and_receive_gradients_from_both_tasks():
    model = PhonemeMTL(D, L, C, K, dropout=0.0)
    torch.testing.assert_close(model.layer_weights(), torch.full((L,), 1 / L))
    batch = _batch([7, 5, 9], packed=True)
    for weight, tasks in ((0.0, "emotion only"), (1.0, "emotion + phonemes")):
        model.zero_grad()
        mtl_loss(weight)(model, batch).backward()
        grad = model.emotion.layer_logits.grad
        assert grad is not None and grad.abs().sum() > 0, tasks
        assert (model.phoneme.weight.grad is None) == (weight == 0), tasks
    # the CTC term alone moves the fusion weights too (the only parameters the tasks share when frozen)
    model.zero_grad()
    emotion, logits, mask = model(batch["x"], batch["mask"], with_phonemes=True)
    ctc_phoneme_loss(logits, mask, batch["targets"], batch["target_lengths"]).backward()
    assert model.emotion.layer_logits.grad.abs().sum() > 0


@pytest.mark.parametrize("weight", [0.0, 0.1])
@pytest.mark.parametrize("shared", [None, SHARED])
def test_every_trainable_parameter_gets_a_gradient_at_every_lambda(weight, shared):
    # what DDP needs at each step: at lambda 0 the unused phoneme head is fixed, not left without a gradient
    model = freeze_unused(PhonemeMTL(D, L, C, K, dropout=0.0, shared_layer=shared), weight)
    mtl_loss(weight)(model, _batch([7, 5, 9], packed=True)).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    assert model.phoneme.weight.requires_grad == (weight != 0)


def test_fusion_is_the_weighted_sum_of_the_layered_head_in_every_layout():
    torch.manual_seed(0)
    model = PhonemeMTL(D, L, C, K, dropout=0.0).eval()
    with torch.no_grad():
        model.emotion.layer_logits.copy_(torch.tensor([0.5, -1.0, 2.0]))
    reference = PooledClassifier(D, C, num_layers=L, dropout=0.0)
    reference.load_state_dict(model.emotion.state_dict())
    padded, packed = _batch([7, 5, 9], packed=False), _batch([7, 5, 9], packed=True)
    expected, _ = reference.mixed_input(padded["x"], padded["mask"])
    torch.testing.assert_close(model.fuse(padded["x"], padded["mask"]), expected)
    torch.testing.assert_close(model.fuse(packed["x"], packed["mask"]), expected)
    with torch.no_grad():
        logits = model(packed["x"], packed["mask"])
        torch.testing.assert_close(model(padded["x"], padded["mask"]), logits)
        torch.testing.assert_close(logits, reference(padded["x"], padded["mask"]))
        # the single-task input: per-state means give the emotion head exactly what the frames give
        means = torch.stack([f.mean(dim=-2) for f in _frames([7, 5, 9])])
        torch.testing.assert_close(model(means), logits)
    with pytest.raises(ValueError, match="packed"):
        model.fuse(packed["x"][:, :-1], packed["mask"])  # one frame short of the mask


def test_without_a_shared_block_the_model_is_the_previous_one():
    torch.manual_seed(0)
    model = PhonemeMTL(D, L, C, K, dropout=0.1, shared_layer=None)
    torch.manual_seed(0)  # the previous model: the layered head, then the phoneme layer, nothing else
    emotion, phoneme = PooledClassifier(D, C, num_layers=L, dropout=0.1), torch.nn.Linear(D, K)
    expected = {**{f"emotion.{k}": v for k, v in emotion.state_dict().items()},
                **{f"phoneme.{k}": v for k, v in phoneme.state_dict().items()}}
    assert model.shared is None and model.takes_means and model.state_dict().keys() == expected.keys()
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=0)
    model.eval()
    batch = _batch([7, 5, 9], packed=True)
    with torch.no_grad():
        got, logits, mask = model(batch["x"], batch["mask"], with_phonemes=True)
        fused = model.fuse(batch["x"], batch["mask"])
        torch.testing.assert_close(logits, phoneme(fused))
        torch.testing.assert_close(got, emotion.out(masked_mean(fused, mask)))


def test_shared_block_feeds_both_heads_on_variable_lengths_packed_or_padded():
    torch.manual_seed(0)
    model = PhonemeMTL(D, L, C, K, dropout=0.0, shared_layer=SHARED).eval()
    assert not model.takes_means and model.phoneme.in_features == model.emotion.out.in_features == SHARED["dim"]
    with torch.no_grad():
        model.shared.context.weight.normal_()  # it starts at zero: give the convolution something to mix
        outputs = {}
        for packed in (False, True):
            batch = _batch([4, 11, 6, 8], packed=packed)
            emotion, logits, mask = model(batch["x"], batch["mask"], with_phonemes=True)
            assert emotion.shape == (4, C) and logits.shape == (4, 11, K) and mask.sum(1).tolist() == [4, 11, 6, 8]
            outputs[packed] = (emotion, logits[mask])
        torch.testing.assert_close(outputs[False], outputs[True])
        # each utterance is seen alone: the convolution does not reach across the padding or the batch
        alone = _batch([4], packed=True)
        alone_emotion, alone_logits, _ = model(alone["x"], alone["mask"], with_phonemes=True)
        torch.testing.assert_close(alone_emotion[0], outputs[True][0][0])
        torch.testing.assert_close(alone_logits[0], outputs[True][1][:4])
        batch = _batch([4, 11, 6, 8], packed=False)
        noisy = batch["x"].clone()
        noisy[0, :, 4:] = 1e3  # garbage past the first utterance's length changes nothing
        torch.testing.assert_close(model(noisy, batch["mask"]), outputs[False][0])
        # per-utterance means cannot stand in for frames: the block is nonlinear per frame
        means = torch.stack([f.mean(dim=-2) for f in _frames([4, 11, 6, 8])])
        with pytest.raises(ValueError, match="nonlinear"):
            model(means)


def test_shared_block_is_trained_by_the_phoneme_loss_alone_and_by_the_emotion_loss():
    torch.manual_seed(0)
    model = PhonemeMTL(D, L, C, K, dropout=0.1, shared_layer=SHARED)
    batch = _batch([7, 5, 9], packed=True)
    shared = dict(model.shared.named_parameters())
    assert set(shared) == {"norm.weight", "norm.bias", "proj.weight", "proj.bias", "context.weight", "context.bias"}
    # the CTC term alone (the emotion loss is not part of the graph)
    emotion, logits, mask = model(batch["x"], batch["mask"], with_phonemes=True)
    ctc_phoneme_loss(logits, mask, batch["targets"], batch["target_lengths"]).backward()
    for name, param in shared.items():
        assert param.grad is not None and param.grad.abs().sum() > 0, f"CTC -> {name}"
    assert model.emotion.out.weight.grad is None
    # the emotion loss alone (lambda = 0)
    model.zero_grad(set_to_none=True)
    mtl_loss(0.0)(model, batch).backward()
    for name, param in shared.items():
        assert param.grad is not None and param.grad.abs().sum() > 0, f"emotion -> {name}"
    assert model.phoneme.weight.grad is None
    # both, with lambda > 0: the block's gradient is the sum of the two
    model.eval()  # no dropout, so the three passes see the same block
    grads = {}
    for weight in (0.0, 0.5):
        model.zero_grad(set_to_none=True)
        mtl_loss(weight)(model, batch).backward()
        grads[weight] = model.shared.proj.weight.grad.clone()
    model.zero_grad(set_to_none=True)
    _, logits, mask = model(batch["x"], batch["mask"], with_phonemes=True)
    (0.5 * ctc_phoneme_loss(logits, mask, batch["targets"], batch["target_lengths"])).backward()
    torch.testing.assert_close(grads[0.5], grads[0.0] + model.shared.proj.weight.grad)


def test_shared_block_settings_are_checked():
    block = SharedBlock(D, dim=4, context=1, dropout=0.0)
    assert block.context is None  # context 1: the per-frame layer alone
    for bad in ({"dim": 0}, {"dim": 4, "context": 4}, {"dim": 4, "context": 0}):
        with pytest.raises(ValueError, match="shared_layer"):
            SharedBlock(D, **bad)
    with pytest.raises(TypeError):
        PhonemeMTL(D, L, C, K, shared_layer={"dim": 4, "width": 3})


def test_ctc_loss_is_finite_on_variable_lengths_and_the_same_packed_or_padded():
    torch.manual_seed(0)
    model = PhonemeMTL(D, L, C, K, dropout=0.0)
    losses = {}
    for packed in (False, True):
        batch = _batch([4, 11, 6, 8], packed=packed)
        assert batch["target_lengths"].tolist() == [3, 4, 5, 6]
        _, logits, mask = model(batch["x"], batch["mask"], with_phonemes=True)
        assert logits.shape == (4, 11, K) and mask.sum(1).tolist() == [4, 11, 6, 8]
        losses[packed] = ctc_phoneme_loss(logits, mask, batch["targets"], batch["target_lengths"])
        assert torch.isfinite(losses[packed]) and losses[packed] > 0
    torch.testing.assert_close(losses[False], losses[True])
    # frames past an utterance's length must not matter: garbage there leaves the loss unchanged
    batch = _batch([4, 11, 6, 8], packed=False)
    noisy = batch["x"].clone()
    noisy[0, :, 4:] = 1e3
    _, logits, mask = model(noisy, batch["mask"], with_phonemes=True)
    torch.testing.assert_close(ctc_phoneme_loss(logits, mask, batch["targets"], batch["target_lengths"]), losses[False])


def test_ctc_loss_names_rows_whose_targets_do_not_fit():
    logits = torch.zeros(2, 5, K)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], dtype=torch.bool)
    targets = torch.tensor([1, 2, 3, 4, 5])  # 2 labels, then 3 labels in 2 frames: impossible
    with pytest.raises(ValueError, match=r"rows \[1\]"):
        ctc_phoneme_loss(logits, mask, targets, torch.tensor([2, 3]))


def test_greedy_decoding_collapses_repeats_and_drops_blanks():
    best = torch.tensor([[0, 3, 3, 0, 3, 5, 5, 2], [4, 4, 0, 0, 1, 1, 1, 1]])
    logits = torch.nn.functional.one_hot(best, K).float()
    mask = torch.tensor([[1] * 8, [1] * 5 + [0] * 3], dtype=torch.bool)
    assert greedy_ctc_decode(logits, mask) == [[3, 3, 5, 2], [4, 1]]


def test_class_posterior_sums_each_class_over_the_emotion_tags():
    probs = torch.zeros(1, 1, K)
    probs[0, 0, [0, 1, 7, 8]] = torch.tensor([0.1, 0.3, 0.4, 0.2])  # blank, S0, S1, F1
    out = class_logits(probs.log(), 6).exp()[0, 0]
    torch.testing.assert_close(out[:3], torch.tensor([0.1, 0.7, 0.2]))
    assert out.shape == (7,)


def test_error_rates_and_emotion_tags_on_hand_made_strings():
    assert phoneme_error_rate(["S0 V0 F0"], ["S0 F0"]) == pytest.approx(1 / 3)
    assert phoneme_error_rate(["S0 V0", "N1"], ["S0 V0 L0", ""]) == pytest.approx(2 / 3)
    assert emotion_tag_accuracy(["S1 Vs1 F0", "N0"], [1, 0]) == pytest.approx(3 / 4)
    frame = pd.DataFrame({"corpus": "toy", "lambda": 0.1, "fold": ["a", "b"], "emotion": [0, 1], "reference": ["S0 V0", "S1"],
                          "hypothesis": ["S0 V1", "S1"], "class_reference": ["S V", "S"], "class_hypothesis": ["S V", "S"]})
    scores = phoneme_scores(frame).set_index("fold")
    assert scores.loc["pooled", "tagged label error rate"] == pytest.approx(1 / 3)
    assert scores.loc["pooled", "class error rate"] == 0
    assert scores.loc["a", "emotion tag accuracy"] == pytest.approx(0.5)


def _corpus(texts, emotions=("neutral", "happy")):
    manifest = pd.DataFrame({"utt_id": [f"u{i}" for i in range(len(texts))], "corpus": "toy", "text": texts,
                             "speaker": [f"s{i % 3}" for i in range(len(texts))],
                             "emotion": [emotions[i % len(emotions)] for i in range(len(texts))], "language": "en"})
    return PreparedCorpus("toy", manifest, pd.DataFrame(), list(emotions), {})


def test_targets_for_a_corpus_carry_each_rows_emotion_and_refuse_missing_text():
    targets = build_targets(_corpus(["Dogs are sitting.", "by the door"]))
    # dogs: D AA1 G Z -> S Vs S F ... ; "by the door": B AY1 DH AH0 D AO1 R -> S Vs F V S Vs L
    assert targets.classes[1] == ["S", "Vs", "F", "V", "S", "Vs", "L"]
    assert targets.labels[0][:4] == [1, 6, 1, 2]  # neutral = emotion 0: S0 Vs0 S0 F0
    assert targets.labels[1][:2] == [7, 12]  # happy = emotion 1: S1 Vs1
    with pytest.raises(ValueError, match="toy has no transcripts"):
        build_targets(_corpus(["", " "]))
    with pytest.raises(ValueError, match=r"1 of 2 rows have no transcript.*u1"):
        build_targets(_corpus(["dogs", ""]))


def test_rows_with_too_few_frames_are_dropped_and_listed():
    corpus = _corpus(["dogs", "by the door", "door"])
    targets = build_targets(corpus)  # 4, 7 and 3 labels
    kept, inputs, kept_targets, dropped = keep_feasible(corpus, ["a", "b", "c"], targets, [4, 6, 3])
    assert dropped["utt_id"].tolist() == ["u1"] and dropped["frames needed"].tolist() == [7]
    assert kept.manifest["utt_id"].tolist() == ["u0", "u2"] and inputs == ["a", "c"]
    assert kept_targets.labels == [targets.labels[0], targets.labels[2]]


def test_lambda_sweep_runs_every_fold_and_lambda_and_scores_the_phoneme_head(monkeypatch):
    corpus = _corpus(["dogs"] * 12)
    targets = build_targets(corpus)  # 4 labels
    frames = _frames([6 + i % 3 for i in range(12)])
    folds = [Fold("f1", np.arange(0, 8), np.arange(8, 10), np.arange(10, 12)),
             Fold("f2", np.arange(4, 12), np.arange(2, 4), np.arange(0, 2))]
    config = TrainConfig(max_steps=4, batch_size=4, lr=1e-2, eval_every=2, top_k=1, device="cpu", progress=False)
    spec = ModelSpec(D, L, C, len(targets.names), 0.0)
    monkeypatch.setenv("SERLIB_WORKERS", "2")  # the folds in two worker processes
    result = lambda_sweep(corpus, "toy", frames, targets, folds, [0.0, 0.5], spec, config, progress=False)
    monkeypatch.setenv("SERLIB_WORKERS", "1")
    here = lambda_sweep(corpus, "toy", frames, targets, folds, [0.0, 0.5], spec, config, progress=False)
    pd.testing.assert_frame_equal(result.predictions, here.predictions)
    pd.testing.assert_frame_equal(result.layer_weights, here.layer_weights)
    assert len(result.predictions) == 2 * 2 * 2 and set(result.predictions["lambda"]) == {0.0, 0.5}
    assert set(result.predictions["method"]) == {"lambda=0", "lambda=0.5"} and set(result.runs["lambda"]) == {0.0, 0.5}
    assert result.runs["stop_reason"].isin(["early_stop", "step_budget", "perfect_score"]).all()
    assert set(result.phonemes["lambda"]) == {0.5} and len(result.phonemes) == 4  # no head to score at 0
    assert result.phonemes["reference"].iloc[0] == " ".join(targets.names[i] for i in targets.labels[10])
    weights = result.layer_weights.groupby(["lambda", "fold"])["weight"].sum()
    np.testing.assert_allclose(weights.to_numpy(), 1.0, rtol=1e-5)
    assert (result.runs["steps"] == 4).all()
    # with a shared block lambda = 0 trains on frames (means would be refused by the model) and still
    # starts from the same model as every other lambda
    shared = lambda_sweep(corpus, "toy", frames, targets, folds[:1], [0.0, 0.5],
                          ModelSpec(D, L, C, len(targets.names), 0.0, shared_layer=SHARED), config, progress=False)
    assert len(shared.predictions) == 2 * 2 and set(shared.phonemes["lambda"]) == {0.5}


# --- the fine-tuning path (GPU profile), exercised on tiny random encoders --------------------------


def test_whisper_finetune_backbone_freezes_the_front_end_and_trains_the_layers():
    encoder = tiny_whisper().model.encoder
    backbone = FinetuneBackbone(encoder)
    assert backbone.num_states == 3 and backbone.dim == 16 and backbone.output_frames(41) == 21
    assert not any(p.requires_grad for m in backbone.front_end() for p in m.parameters())
    before = {n: p.detach().clone() for n, p in encoder.named_parameters()}
    mels = [torch.randn(40 + 7 * i, 8) for i in range(4)]  # [frames, mels]
    targets = [[1, 2, 3]] * 4
    data = PhonemeDataset(mels, [0, 1, 0, 1], targets)
    model = PhonemeMTL(backbone.dim, backbone.num_states, 2, 13, dropout=0.0, backbone=backbone)
    config = TrainConfig(max_steps=2, batch_size=2, lr=1e-3, eval_every=2, top_k=1, device="cpu", progress=False)
    fit(model, data, None, mtl_loss(0.5), None, config, collate_fn=data.collate)
    after = dict(encoder.named_parameters())
    assert torch.equal(after["conv1.weight"], before["conv1.weight"])
    assert torch.equal(after["embed_positions.weight"], before["embed_positions.weight"])
    assert not torch.equal(after["layers.0.fc1.weight"], before["layers.0.fc1.weight"])
    assert not torch.equal(model.layer_weights(), torch.full((3,), 1 / 3))


@pytest.mark.parametrize("norm", ["group", "layer"])  # wav2vec 2.0 base takes no attention mask; large does
def test_ssl_finetune_backbone_gives_every_state_with_a_frame_mask(norm):
    torch.manual_seed(0)
    encoder = Wav2Vec2Model(Wav2Vec2Config(**TINY_SSL, mask_time_prob=0.5, feat_extract_norm=norm))
    backbone = FinetuneBackbone(encoder)
    assert not encoder.config.apply_spec_augment  # the paper fine-tunes without masking
    audio = [torch.randn(1600, 1), torch.randn(1000, 1)]
    data = PhonemeDataset(audio, [0, 1], [[1, 2], [3]])
    batch = data.collate([data[0], data[1]])
    states, mask = backbone(batch["x"], batch["mask"])
    frames = [backbone.output_frames(1600), backbone.output_frames(1000)]
    assert states.shape == (2, TINY_SSL["num_hidden_layers"] + 1, frames[0], TINY_SSL["hidden_size"])
    assert mask.sum(1).tolist() == frames and not states[1, :, frames[1]:].any()
    before = {n: p.detach().clone() for n, p in encoder.named_parameters()}
    model = PhonemeMTL(backbone.dim, backbone.num_states, 2, 13, dropout=0.0, backbone=backbone)
    mtl_loss(1.0)(model, batch).backward()
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1).step()
    after = dict(encoder.named_parameters())
    assert all(torch.equal(after[n], before[n]) for n in before if n.startswith("feature_extractor."))
    assert not torch.equal(after["encoder.layers.0.feed_forward.output_dense.weight"],
                           before["encoder.layers.0.feed_forward.output_dense.weight"])


def test_whisper_backbones_are_told_apart_by_name_or_config(tmp_path):
    assert is_whisper("base") and is_whisper("openai/whisper-small")
    assert not is_whisper("facebook/wav2vec2-base")
    assert is_whisper(str(save_tiny_whisper(tmp_path / "w")))
    Wav2Vec2Model(Wav2Vec2Config(**TINY_SSL)).save_pretrained(tmp_path / "ssl")
    assert not is_whisper(str(tmp_path / "ssl"))


# --- real corpora -----------------------------------------------------------------------------------


def test_ravdess_targets_and_urdu_refusal(data_root):
    params = {"data_root": str(data_root), "per_speaker": 1, "seed": 0, "corpora": {
        "ravdess": {"loader": "ravdess", "selection": "ravdess8"}, "urdu": {"loader": "urdu", "selection": "four"}}}
    ravdess = prepare_corpus("ravdess", params)
    targets = build_targets(ravdess)
    assert {len(t) for t in targets.labels} == {18}  # both sentences have 18 phonemes in CMUdict
    for labels, emotion in zip(targets.labels, ravdess.labels()):
        assert {(i - 1) // 6 for i in labels} == {emotion}
    with pytest.raises(ValueError, match="urdu has no transcripts"):
        build_targets(prepare_corpus("urdu", params))


@pytest.mark.parametrize("weight", [0.0, 0.1])
def test_partial_backbone_trains_the_top_layers_that_both_heads_read(weight):
    """mode partial: the cached states 0..L-k in, every hidden state out (the same numbers as the whole
    encoder), and the top layer gets its gradient from the losses (at lambda 0.1 from the CTC term too)."""
    import copy

    from serlib.encoders.encoding import encode_batch
    from serlib.methods.phoneme_mtl.model import PartialBackbone

    encoder = tiny_whisper(seed=1).model.encoder.eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        states, mask = encode_batch(encoder, [torch.randn(8, n, generator=g) for n in (30, 22)])
    backbone = PartialBackbone(copy.deepcopy(encoder), 1)
    assert backbone.num_states == states.shape[1] and backbone.start == states.shape[1] - 2
    with torch.no_grad():
        out, out_mask = backbone(states[:, : backbone.start + 1], mask)
    torch.testing.assert_close(out, states, rtol=1e-4, atol=1e-5)
    model = freeze_unused(PhonemeMTL(backbone.dim, backbone.num_states, C, K, dropout=0.0, backbone=backbone), weight)
    targets = [torch.tensor([1, 2, 3]), torch.tensor([4, 5])]
    batch = {"x": states[:, : backbone.start + 1], "mask": mask, "y": torch.tensor([0, 1]),
             "targets": torch.cat(targets), "target_lengths": torch.tensor([3, 2])}
    mtl_loss(weight)(model, batch).backward()
    assert [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None] == []
    assert model.backbone.encoder.layers[0].fc1.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="cached states"):
        backbone(states, mask)  # every state given: not what the top layers read
