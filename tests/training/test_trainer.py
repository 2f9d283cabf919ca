"""The trainer on tiny CPU problems: learning, early stop, top-k averaging, accumulation, resume."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from serlib.evaluation.metrics import classification_metrics
from serlib.heads.classifier import PooledClassifier
from serlib.heads.pooling import masked_mean
from serlib.training.checkpoints import average_state_dicts
from serlib.training.runtime import resolve_device, seed_everything
from serlib.training.trainer import TrainConfig, fit


def blobs(n: int, seed: int) -> TensorDataset:
    """Three well separated Gaussian blobs in 2-d."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    centres = torch.tensor([[4.0, 0.0], [-4.0, 0.0], [0.0, 4.0]])
    x = centres[y] + torch.randn(n, 2, generator=g)
    return TensorDataset(x, y)


def loss_fn(model, batch):
    x, y = batch
    return F.cross_entropy(model(x), y)


def evaluate_fn(model, loader):
    preds, trues = [], []
    for x, y in loader:
        preds.append(model(x).argmax(-1))
        trues.append(y)
    m = classification_metrics(torch.cat(trues).tolist(), torch.cat(preds).tolist(), [0, 1, 2])
    return {k: m[k] for k in ("UA", "WA", "macro_f1")}


def linear(seed=0):
    torch.manual_seed(seed)
    return nn.Linear(2, 3)


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))


def cfg(**kw):
    # fp32: these tests check the trainer's bookkeeping to float32 tolerance on any CPU
    base = dict(max_steps=20, batch_size=8, lr=0.05, eval_every=5, patience=None, top_k=1,
                device="cpu", progress=False, seed=0, precision="fp32")
    return TrainConfig(**{**base, **kw})


def params_of(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_params(a, b, exact=True):
    assert a.keys() == b.keys()
    for k in a:
        if exact:
            assert torch.equal(a[k], b[k]), k
        else:
            torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


# --- devices (precision: test_precision.py) --------------------------------------------------------


def test_resolve_device():
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert resolve_device("auto") == expected
    assert resolve_device(None) == expected
    assert resolve_device("CPU") == "cpu"
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")
    with pytest.raises(ValueError, match="CUDA_VISIBLE_DEVICES"):
        resolve_device("cuda:1")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_config_validation():
    assert TrainConfig(betas=[0.8, 0.99]).betas == (0.8, 0.99)
    with pytest.raises(ValueError, match="grad_accum"):
        TrainConfig(grad_accum=0)
    with pytest.raises(ValueError, match="patience"):
        TrainConfig(patience=0)


# --- learning, early stop, top-k ---------------------------------------------------------------------


def test_learns_a_separable_problem():
    res = fit(linear(), blobs(96, 0), blobs(48, 1), loss_fn, evaluate_fn, cfg(max_steps=30, top_k=2))
    assert res.best_score > 0.95
    assert res.steps == 30 and not res.stopped_early
    assert list(res.history.columns[:3]) == ["step", "train_loss", "lr"]
    assert {"UA", "WA", "macro_f1", "elapsed_s"} <= set(res.history.columns)
    assert res.history["step"].tolist() == [5, 10, 15, 20, 25, 30]
    assert res.history["train_loss"].iloc[-1] < res.history["train_loss"].iloc[0]
    assert len(res.averaged_steps) == 2 and res.averaged_steps[0] == res.best_step
    assert evaluate_fn(res.model, [blobs(48, 1).tensors])["UA"] > 0.95
    assert not res.model.training


def test_early_stopping_when_the_metric_never_improves():
    calls = []

    def flat(model, loader):
        calls.append(1)
        return {"UA": 0.5}

    res = fit(linear(), blobs(48, 0), blobs(12, 1), loss_fn, flat,
              cfg(max_steps=100, eval_every=1, patience=3, top_k=3))
    assert res.stopped_early
    assert res.steps == 4 and len(calls) == 4  # best at step 1, then 3 evaluations without gain
    assert res.best_step == 1 and res.best_score == 0.5
    assert res.averaged_steps == [1, 2, 3]  # equal scores: the earlier checkpoints stay


def test_stops_when_the_validation_score_reaches_its_ceiling():
    scores = iter([0.4, 0.9, 1.0, 1.0, 1.0])

    def rising(model, loader):
        return {"UA": next(scores)}

    res = fit(linear(), blobs(48, 0), blobs(12, 1), loss_fn, rising,
              cfg(max_steps=100, eval_every=2, patience=None, top_k=2, stop_at=1.0))
    assert res.stopped_early and res.steps == 6 and res.best_step == 6
    res = fit(linear(), blobs(48, 0), blobs(12, 1), loss_fn, lambda m, l: {"UA": 0.9},
              cfg(max_steps=6, eval_every=2, patience=None, top_k=2, stop_at=1.0))
    assert not res.stopped_early and res.steps == 6


def test_evaluates_the_last_step_and_plateau_lowers_lr():
    res = fit(linear(), blobs(48, 0), blobs(12, 1), loss_fn, lambda m, l: {"UA": 0.5},
              cfg(max_steps=7, eval_every=3, plateau_patience=0, plateau_factor=0.5))
    assert res.history["step"].tolist() == [3, 6, 7]
    # lr is logged before the scheduler sees that evaluation: halved after every non-improving one
    assert res.history["lr"].tolist() == pytest.approx([0.05, 0.05, 0.025])


@pytest.mark.parametrize("on_disk", [False, True])
def test_topk_average_equals_manual_average(tmp_path, on_disk):
    scores = iter([0.3, 0.9, 0.5, 0.7, 0.1, 0.8])  # evaluations at steps 2, 4, ..., 12
    snapshots = {}

    def scripted(model, loader):
        step = 2 * (len(snapshots) + 1)
        snapshots[step] = params_of(model)
        return {"UA": next(scores)}

    c = cfg(max_steps=12, eval_every=2, top_k=3, out_dir=tmp_path / "run" if on_disk else None)
    res = fit(mlp(), blobs(48, 0), blobs(12, 1), loss_fn, scripted, c)
    assert res.averaged_steps == [4, 12, 8]  # scores 0.9, 0.8, 0.7
    assert res.best_step == 4 and res.best_score == pytest.approx(0.9)
    manual = {k: sum(snapshots[s][k] for s in (4, 12, 8)) / 3 for k in snapshots[4]}
    assert_same_params(params_of(res.model), manual, exact=False)
    if on_disk:
        files = sorted(p.name for p in (tmp_path / "run" / "topk").iterdir())
        assert files == ["step-0000004.safetensors", "step-0000008.safetensors", "step-0000012.safetensors"]
        assert (tmp_path / "run" / "history.csv").is_file()
        assert len(list((tmp_path / "run").glob("state-*"))) == 1


def test_average_state_dicts_by_hand():
    a = {"w": torch.tensor([1.0, 2.0]), "h": torch.tensor([1.0], dtype=torch.float16),
         "count": torch.tensor(7)}
    b = {"w": torch.tensor([3.0, 6.0]), "h": torch.tensor([2.0], dtype=torch.float16),
         "count": torch.tensor(9)}
    c = {"w": torch.tensor([5.0, 1.0]), "h": torch.tensor([4.0], dtype=torch.float16),
         "count": torch.tensor(1)}
    avg = average_state_dicts(iter([a, b, c]))
    assert torch.equal(avg["w"], torch.tensor([3.0, 3.0]))
    assert avg["h"].dtype == torch.float16 and avg["h"].item() == pytest.approx(7 / 3, abs=1e-3)
    assert avg["count"].item() == 7  # non-float: from the first (the best)
    assert a["w"].tolist() == [1.0, 2.0]  # inputs untouched
    with pytest.raises(ValueError, match="different keys"):
        average_state_dicts([a, {"w": a["w"]}])
    with pytest.raises(ValueError):
        average_state_dicts([])


# --- accumulation, repeatability, resume ----------------------------------------------------------------


def test_grad_accumulation_matches_one_big_batch():
    # One epoch = 48 samples; the seeded permutation is the same for both runs, so the 2x8 micro-
    # batches of a step hold exactly the 16 samples of the big batch. No validation: last model.
    data = blobs(48, 0)
    big = fit(linear(), data, None, loss_fn, None, cfg(max_steps=3, batch_size=16, grad_accum=1))
    acc = fit(linear(), data, None, loss_fn, None, cfg(max_steps=3, batch_size=8, grad_accum=2))
    assert_same_params(params_of(big.model), params_of(acc.model), exact=False)
    assert not torch.equal(params_of(big.model)["weight"], params_of(linear())["weight"])
    assert math.isnan(big.best_score) and big.best_step is None and big.averaged_steps == []
    assert big.history["step"].tolist() == [3]  # loss still logged at the end


def test_same_seed_same_result():
    runs = [fit(mlp(), blobs(40, 0), blobs(12, 1), loss_fn, evaluate_fn, cfg(max_steps=10, top_k=2))
            for _ in range(2)]
    assert_same_params(params_of(runs[0].model), params_of(runs[1].model))
    cols = ["step", "train_loss", "lr", "UA"]
    assert runs[0].history[cols].equals(runs[1].history[cols])
    other = fit(mlp(), blobs(40, 0), blobs(12, 1), loss_fn, evaluate_fn, cfg(max_steps=10, top_k=2, seed=1))
    assert not torch.equal(params_of(other.model)["0.weight"], params_of(runs[0].model)["0.weight"])


def test_resume_gives_the_uninterrupted_result(tmp_path):
    # 40 samples / batch 8 = 5 batches an epoch, so the break at step 6 falls inside an epoch;
    # dropout and an LR plateau make RNG and scheduler state matter.
    train, valid = blobs(40, 0), blobs(12, 1)
    common = dict(eval_every=3, top_k=2, plateau_patience=0, plateau_factor=0.5, lr=0.1)
    once = fit(mlp(), train, valid, loss_fn, evaluate_fn, cfg(max_steps=12, out_dir=tmp_path / "a", **common))
    fit(mlp(), train, valid, loss_fn, evaluate_fn, cfg(max_steps=6, out_dir=tmp_path / "b", **common))
    twice = fit(mlp(seed=5), train, valid, loss_fn, evaluate_fn,
                cfg(max_steps=12, out_dir=tmp_path / "b", **common))
    assert twice.steps == 12
    assert_same_params(params_of(once.model), params_of(twice.model))
    cols = [c for c in once.history.columns if c != "elapsed_s"]
    assert once.history[cols].equals(twice.history[cols])
    assert once.averaged_steps == twice.averaged_steps

    # A finished run is not trained again.
    calls = []

    def counting(model, batch):
        calls.append(1)
        return loss_fn(model, batch)

    again = fit(mlp(seed=7), train, valid, counting, evaluate_fn,
                cfg(max_steps=12, out_dir=tmp_path / "a", **common))
    assert calls == []
    assert_same_params(params_of(once.model), params_of(again.model))

    # Other settings in the same out_dir: refuse, or start afresh with resume=False.
    with pytest.raises(ValueError, match="other settings"):
        fit(mlp(), train, valid, loss_fn, evaluate_fn, cfg(max_steps=12, out_dir=tmp_path / "a", lr=0.5))
    fresh = fit(mlp(), train, valid, counting, evaluate_fn,
                cfg(max_steps=3, out_dir=tmp_path / "a", resume=False, **common))
    assert fresh.steps == 3 and len(calls) == 3


@pytest.mark.filterwarnings("ignore:precision bf16 was asked for")  # explicit bf16 on a CPU that emulates it
def test_bf16_autocast_on_cpu_then_full_precision():
    # Exercises the autocast path and switching precision between fits in one process.
    res = fit(linear(), blobs(48, 0), blobs(12, 1), loss_fn, evaluate_fn, cfg(max_steps=4, precision="bf16"))
    assert res.steps == 4
    assert "_original_forward" not in res.model.__dict__  # autocast wrapper removed
    assert res.model(torch.zeros(1, 2)).dtype == torch.float32
    res = fit(linear(), blobs(48, 0), None, loss_fn, None, cfg(max_steps=2, precision="no"))
    assert res.steps == 2


# --- heads ----------------------------------------------------------------------------------------------


def test_masked_mean():
    x = torch.tensor([[[1.0], [3.0], [100.0]], [[2.0], [4.0], [6.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert masked_mean(x, mask).flatten().tolist() == [2.0, 4.0]
    assert masked_mean(x, None).flatten().tolist() == pytest.approx([104 / 3, 4.0])
    layered = torch.stack([x, 2 * x], dim=1)  # [B, L, T, D]
    assert masked_mean(layered, mask)[:, :, 0].tolist() == [[2.0, 4.0], [4.0, 8.0]]
    with pytest.raises(ValueError, match=r"rows \[1\]"):
        masked_mean(x, torch.tensor([[1, 0, 0], [0, 0, 0]]))


def test_pooled_classifier_shapes_and_layer_weights():
    seed_everything(0)
    head = PooledClassifier(4, 3, dropout=0.0)
    x, mask = torch.randn(2, 5, 4), torch.ones(2, 5)
    mask[0, 3:] = 0
    out = head(x, mask)
    assert out.shape == (2, 3)
    torch.testing.assert_close(out[0], head(x[:1, :3])[0])  # padding is ignored
    torch.testing.assert_close(head(x.mean(1)), head(x))  # pre-pooled input
    assert head(x.half()).dtype == torch.float32
    layered = PooledClassifier(4, 3, num_layers=2, dropout=0.0)
    torch.testing.assert_close(layered.layer_weights(), torch.tensor([0.5, 0.5]))
    xl = torch.randn(2, 2, 5, 4)
    torch.testing.assert_close(layered.embed(xl, mask), masked_mean(xl.mean(1), mask))
    assert layered(xl.mean(2)).shape == (2, 3)
    with pytest.raises(ValueError, match="layers"):
        layered(torch.randn(2, 3, 5, 4), mask)
    with pytest.raises(ValueError, match="expected"):
        head(torch.randn(2, 2, 5, 4))


def test_lr_multipliers_make_parameter_groups():
    from serlib.training.trainer import param_groups

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    model[0].bias.requires_grad_(False)
    groups = param_groups(model, 0.1, {"1.": 10})
    assert groups[0]["lr"] == 0.1 and groups[0]["params"] == [model[0].weight]  # the base rate first
    assert groups[1]["lr"] == pytest.approx(1.0) and groups[1]["params"] == [model[1].weight, model[1].bias]
    assert len(param_groups(model, 0.1, None)) == 1
    with pytest.raises(ValueError, match="match no trained parameter"):
        param_groups(model, 0.1, {"embed_tokens.extra": 10})


def test_every_run_says_how_it_ended():
    """A step budget, early stopping and a perfect validation score are told apart."""
    budget = fit(linear(), blobs(48, 0), blobs(12, 1), loss_fn, evaluate_fn, cfg(max_steps=6, eval_every=3))
    assert budget.stop_reason == "step_budget" and not budget.stopped_early
    perfect = fit(linear(), blobs(96, 0), blobs(24, 1), loss_fn, evaluate_fn,
                  cfg(max_steps=400, eval_every=5, stop_at=0.5))
    assert perfect.stop_reason == "perfect_score" and perfect.steps < 400 and perfect.best_score >= 0.5
    stalled = fit(linear(), blobs(48, 0), blobs(12, 1), loss_fn, lambda model, loader: {"UA": 0.5},
                  cfg(max_steps=400, eval_every=2, patience=3))
    assert stalled.stop_reason == "early_stop" and stalled.steps == 8  # best at step 2, then 3 without improvement
    assert list(stalled.history["step"]) == [2, 4, 6, 8]
    unvalidated = fit(linear(), blobs(48, 0), None, loss_fn, None, cfg(max_steps=4))
    assert unvalidated.stop_reason == "step_budget"


def test_length_grouped_batches_cover_the_data_with_less_padding_and_repeat():
    from serlib.training.length_grouping import LengthGroupedSampler, padding_share

    lengths = torch.randint(30, 1500, (645,), generator=torch.Generator().manual_seed(0)).tolist()  # IEMOCAP-like
    order = list(LengthGroupedSampler(lengths, 16, torch.Generator().manual_seed(1)))
    assert sorted(order) == list(range(645))  # every utterance once per epoch
    # every batch is one length group (sorted longest first); the short one (645 = 40 x 16 + 5) comes last
    batches = [[lengths[i] for i in order[s : s + 16]] for s in range(0, 645, 16)]
    assert all(b == sorted(b, reverse=True) for b in batches) and len(batches[-1]) == 5
    assert order == list(LengthGroupedSampler(lengths, 16, torch.Generator().manual_seed(1)))  # seeded
    assert order != list(LengthGroupedSampler(lengths, 16, torch.Generator().manual_seed(2)))  # still shuffled
    shuffled = torch.randperm(645, generator=torch.Generator().manual_seed(1)).tolist()
    assert padding_share(lengths, order, 16) < 0.1 < 0.3 < padding_share(lengths, shuffled, 16)


def test_fit_groups_by_length_when_asked_and_refuses_data_without_lengths():
    from serlib.training.classify import FeatureDataset, collate_frames

    g = torch.Generator().manual_seed(0)
    frames = [torch.randn(int(n), 3, generator=g) for n in torch.randint(2, 40, (24,), generator=g)]
    data = FeatureDataset(frames, [i % 2 for i in range(24)])
    seen = []

    def loss(model, batch):
        seen.append(batch["mask"].float().mean().item())  # real share of the batch
        return torch.nn.functional.cross_entropy(model(batch["x"].mean(1)), batch["y"])

    config = TrainConfig(max_steps=6, batch_size=4, eval_every=3, device="cpu", progress=False, group_by_length=True)
    fit(torch.nn.Linear(3, 2), data, None, loss, None, config, collate_fn=collate_frames)
    assert min(seen) > 0.6  # batches of similar length (random ones of these lengths are ~50 % padding)
    with pytest.raises(ValueError, match="lengths"):
        fit(torch.nn.Linear(3, 2), [(torch.zeros(3), 0)] * 8, None, loss, None, config)
