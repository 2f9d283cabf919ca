"""Emo-DNA and its baselines: losses, gradient reversal, adaptive thresholds, the target-label guard."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from serlib.methods.emo_dna.adaptation import METHODS, UDAConfig, annealed_lr, fit_uda, ramp
from serlib.methods.emo_dna.data import TargetLabelsError, shared_classes, standardise, without_labels
from serlib.methods.emo_dna.loss import (
    class_conditional_mmd,
    contrastive_decoupling_loss,
    decoupling_minimum,
    gaussian_mmd,
)
from serlib.methods.emo_dna.model import EmoDNA, GradientReversal, Prototypes, reverse_gradient
from serlib.methods.emo_dna.pseudo_labels import AdaptiveThresholds, pseudo_label_report

# --- MMD ----------------------------------------------------------------------------------------------


def test_mmd_is_zero_for_identical_samples():
    x = torch.randn(20, 5, generator=torch.Generator().manual_seed(0))
    assert gaussian_mmd(x, x.clone()).item() == pytest.approx(0, abs=1e-6)


def test_mmd_grows_with_the_shift():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(40, 3, generator=g), torch.randn(40, 3, generator=g)
    for bandwidth in (None, 2.0):  # median heuristic and a fixed kernel
        values = [gaussian_mmd(x, y + shift, bandwidth).item() for shift in (0.0, 0.5, 1.0, 2.0, 4.0)]
        assert all(a < b for a, b in zip(values, values[1:])), values


def test_mmd_of_two_points_by_hand():
    # One point each, distance 1, one kernel of bandwidth 1: 1 + 1 - 2 exp(-1).
    value = gaussian_mmd(torch.zeros(1, 1), torch.ones(1, 1), bandwidth=1.0, multipliers=(1.0,))
    assert value.item() == pytest.approx(2 - 2 / math.e, rel=1e-6)


def test_class_conditional_mmd_aligns_classes_not_just_the_mixture():
    src = torch.tensor([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]])
    labels = torch.tensor([0, 0, 1, 1])
    # Same samples with the right pseudo-labels: aligned. Swapped pseudo-labels: the same mixture,
    # so a global MMD would see nothing, but each class now meets the other one.
    assert class_conditional_mmd(src, labels, src.clone(), labels, 2).item() == pytest.approx(0, abs=1e-6)
    assert class_conditional_mmd(src, labels, src.clone(), 1 - labels, 2).item() > 0.5
    # No confident target sample: a zero that still has a graph.
    empty = class_conditional_mmd(src.requires_grad_(), labels, src[:0], labels[:0], 2)
    assert empty.item() == 0 and empty.requires_grad


# --- gradient reversal --------------------------------------------------------------------------------


def test_gradient_reversal_flips_and_scales_the_gradient():
    x = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    w = torch.tensor([0.5, 1.0, 2.0])
    y = reverse_gradient(x, 0.3)
    assert torch.equal(y, x)
    (y * w).sum().backward()
    assert torch.allclose(x.grad, -0.3 * w)
    layer = GradientReversal(scale=2.0)
    x.grad = None
    (layer(x) * w).sum().backward()
    assert torch.allclose(x.grad, -2.0 * w)


# --- adaptive thresholds ------------------------------------------------------------------------------


def test_thresholds_start_at_chance_and_follow_confidence_by_hand():
    t = AdaptiveThresholds(4, momentum=0.5)
    assert torch.allclose(t.thresholds, torch.full((4,), 0.25))
    probs = torch.tensor([[0.7, 0.1, 0.1, 0.1]] * 2)
    t.update(probs)
    # global 0.5*0.25 + 0.5*0.7 = 0.475; class mass [0.475, 0.175, 0.175, 0.175];
    # thresholds = mass / max(mass) * global = [0.475, 0.175, 0.175, 0.175].
    assert torch.allclose(t.thresholds, torch.tensor([0.475, 0.175, 0.175, 0.175]))
    labels, chosen = t.select(torch.tensor([[0.5, 0.3, 0.1, 0.1], [0.45, 0.35, 0.1, 0.1], [0.1, 0.2, 0.5, 0.2]]))
    assert labels.tolist() == [0, 0, 2] and chosen.tolist() == [True, False, True]


def test_thresholds_rise_with_confidence_and_stay_lower_for_rare_classes():
    confident = AdaptiveThresholds(3, momentum=0.9)
    unsure = AdaptiveThresholds(3, momentum=0.9)
    for _ in range(200):
        confident.update(torch.tensor([[0.9, 0.05, 0.05], [0.05, 0.9, 0.05]]))
        unsure.update(torch.tensor([[0.5, 0.3, 0.2], [0.3, 0.5, 0.2]]))
    # Converged to the batch statistics: global 0.9, class mass [0.475, 0.475, 0.05].
    assert torch.allclose(confident.thresholds, torch.tensor([0.9, 0.9, 0.05 / 0.475 * 0.9]), atol=1e-4)
    assert (confident.thresholds[:2] > unsure.thresholds[:2]).all()
    assert confident.thresholds[2] < confident.thresholds[0]  # the class the model rarely predicts


def test_pseudo_label_report_counts_and_scores_by_hand():
    log = pd.DataFrame({"step": [10, 10, 10, 20, 20, 20], "utt_id": ["a", "b", "c"] * 2,
                        "pseudo_label": [0, 0, 1, 0, 1, 1], "selected": [True, True, False, True, True, False]})
    truth = pd.Series({"a": 0, "b": 1, "c": 1})
    report = pseudo_label_report(log, truth, ["sad", "angry"]).set_index(["step", "class"])
    assert report.loc[(10, "sad"), ["selected", "correct"]].tolist() == [2, 1]
    assert report.loc[(10, "sad"), "accuracy"] == 0.5
    assert report.loc[(10, "angry"), "selected"] == 0 and np.isnan(report.loc[(10, "angry"), "accuracy"])
    assert report.loc[(20, "angry"), "accuracy"] == 1.0


# --- decoupling loss and prototypes -------------------------------------------------------------------


def test_decoupling_loss_reaches_its_stated_minimum_on_a_toy_case():
    mu = torch.eye(3)  # three class prototypes
    labels = torch.tensor([0, 1, 2, 1])
    emotion = mu[labels] * 2.0  # on the prototype's direction (length does not matter)
    corpus = -mu[labels]  # the sample's corpus feature points the opposite way
    temperature = 0.5
    for n_corpora in (1, 2, 3):
        nu = -mu[labels[:1]].repeat(n_corpora, 1)  # corpus prototypes opposite the first sample...
        loss = contrastive_decoupling_loss(emotion[:1], corpus[:1], labels[:1], mu, nu, temperature)
        # log(1 + (D + 1) exp(-2 / t)) worked out directly.
        assert loss.item() == pytest.approx(math.log(1 + (n_corpora + 1) * math.exp(-4)), rel=1e-5)
        assert decoupling_minimum(n_corpora, temperature) == pytest.approx(loss.item(), rel=1e-5)
    # Anything else costs more: emotion features that lean towards the corpus side.
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        e, c, nu = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g), torch.randn(2, 3, generator=g)
        assert contrastive_decoupling_loss(e, c, labels, mu, nu, temperature) > decoupling_minimum(2, temperature)


def test_prototypes_take_the_first_mean_then_move_slowly():
    protos = Prototypes(2, 2, momentum=0.75)
    protos.update(torch.tensor([[2.0, 0.0], [0.0, 3.0]]), torch.tensor([0, 0]))
    assert torch.allclose(protos.vectors[0], torch.tensor([0.5, 0.5]))  # mean of unit vectors
    assert protos.seen.tolist() == [True, False] and protos.vectors[1].abs().sum() == 0
    protos.update(torch.tensor([[0.0, 1.0]]), torch.tensor([0]))
    assert torch.allclose(protos.vectors[0], torch.tensor([0.375, 0.625]))


# --- the training path never reads target labels ------------------------------------------------------


def two_corpora(n=48, shift=3.0, seed=0):
    """Three separable classes in 6-d; the target is the same mixture moved by `shift`."""
    g = np.random.default_rng(seed)
    centres = 4 * np.eye(3, 6)
    ys, yt = np.arange(n) % 3, (np.arange(n) + 1) % 3
    xs = centres[ys] + g.normal(size=(n, 6))
    xt = centres[yt] + g.normal(size=(n, 6)) + shift
    target = pd.DataFrame({"utt_id": [f"t{i}" for i in range(n)], "emotion": np.array(["a", "b", "c"])[yt]})
    return xs.astype(np.float32), ys, xt.astype(np.float32), target, yt


def quick(method, **kw):
    return UDAConfig.for_method(method, **{"max_steps": 30, "batch_size": 16, "log_every": 10, "device": "cpu", **kw})


def test_training_refuses_a_labelled_target():
    xs, ys, xt, target, _ = two_corpora()
    with pytest.raises(TargetLabelsError):
        fit_uda(xs, ys, xt, target, 3, quick("emo_dna"))
    with pytest.raises(TypeError):
        fit_uda(xs, ys, xt, target["emotion"], 3, quick("emo_dna"))


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_trains_on_a_target_without_labels(method):
    xs, ys, xt, target, yt = two_corpora()
    unlabelled = without_labels(target)
    assert "emotion" not in unlabelled.columns and "emotion" in target.columns  # a copy; original kept
    result = fit_uda(xs, ys, xt, unlabelled, 3, quick(method))
    assert result.history["step"].tolist() == [10, 20, 30]
    assert set(result.pseudo_labels["utt_id"]) == set(target["utt_id"])
    assert "emotion" not in result.pseudo_labels.columns
    assert result.model(torch.from_numpy(xt)).shape == (len(xt), 3)


def test_a_target_whose_labels_are_blanked_is_accepted_and_labels_do_not_matter():
    xs, ys, xt, target, _ = two_corpora()
    blank = target.assign(emotion=np.nan)
    a = fit_uda(xs, ys, xt, blank, 3, quick("emo_dna"))
    b = fit_uda(xs, ys, xt, without_labels(target), 3, quick("emo_dna"))
    assert torch.equal(a.model(torch.from_numpy(xt)), b.model(torch.from_numpy(xt)))


def test_source_only_learns_and_per_corpus_standardisation_removes_the_shift():
    xs, ys, xt, target, yt = two_corpora(n=90)
    zs, zt = standardise(xs, xt, "per_corpus")
    assert np.allclose(zt.mean(0), 0, atol=1e-5) and np.allclose(zs.mean(0), 0, atol=1e-5)
    result = fit_uda(zs, ys, zt, without_labels(target), 3, quick("source_only", max_steps=150, lr=3e-3))
    accuracy = (result.model(torch.from_numpy(zt)).argmax(1).numpy() == yt).mean()
    assert accuracy > 0.9


def test_method_switches_and_options_are_checked():
    assert isinstance(EmoDNA(4, 2, decouple=False, adversarial=True).discriminator[0], GradientReversal)
    with pytest.raises(KeyError):
        UDAConfig.for_method("coral")
    with pytest.raises(ValueError, match="fixed by the method"):
        UDAConfig.for_method("dann", corpus_align="mmd")
    with pytest.raises(ValueError):
        UDAConfig(corpus_align="wasserstein")


def test_a_pair_trains_on_the_classes_both_corpora_share():
    ravdess = ["neutral", "calm", "happy", "sad", "angry", "fear", "disgust", "surprise"]
    urdu = ["neutral", "happy", "sad", "angry"]
    assert shared_classes(urdu, ravdess) == ["neutral", "happy", "sad", "angry"]
    assert shared_classes(ravdess, urdu, ["angry", "sad"]) == ["angry", "sad"]
    with pytest.raises(ValueError, match="not in both"):
        shared_classes(ravdess, urdu, ["calm", "sad"])
    with pytest.raises(ValueError, match="at least 2"):
        shared_classes(["boredom", "sad"], ["sad", "calm"])


def test_alignment_ramp_and_learning_rate_decay_follow_dann():
    assert ramp(0.0) == 0.0 and ramp(0.5) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert 0.999 < ramp(1.0) < 1.0
    assert annealed_lr(0.01, 0.0) == 0.01
    assert annealed_lr(0.01, 1.0) == pytest.approx(0.01 / 11 ** 0.75)


def test_runs_spread_over_worker_processes_equal_the_same_runs_in_one(monkeypatch):
    from serlib.methods.emo_dna.data import PairData
    from serlib.methods.emo_dna.run import cross_corpus

    xs, ys, xt, target, yt = two_corpora()
    pair = PairData("s -> t", "s", "t", ["a", "b", "c"], xs, xt, ys, without_labels(target).assign(speaker="x"),
                    pd.Series(yt, index=target["utt_id"]))
    train = {"max_steps": 20, "batch_size": 16, "log_every": 10}
    results = {}
    for workers in ("1", "2"):
        monkeypatch.setenv("SERLIB_WORKERS", workers)
        results[workers] = cross_corpus({"s -> t": pair}, ["source_only", "emo_dna"], [0, 1], train)
    one, two = results["1"], results["2"]
    pd.testing.assert_frame_equal(one.predictions, two.predictions)
    pd.testing.assert_frame_equal(one.pseudo_labels, two.pseudo_labels)
    assert list(one.models) == list(two.models) and len(one.models) == 4
    for key, net in one.models.items():
        for a, b in zip(net.state_dict().values(), two.models[key].state_dict().values()):
            assert torch.equal(a, b), key
