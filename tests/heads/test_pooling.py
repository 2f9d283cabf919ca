"""Pooling modules and the pooling classifier: masks, attention weights, shapes, layer weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from serlib.encoders.cache import average_groups
from serlib.heads.classifier import PooledClassifier, count_parameters
from serlib.heads.pooling import AttentiveAveragePooling, MeanPooling, QKVPooling, masked_mean, masked_softmax
from serlib.training.classify import FeatureDataset, feature_stats, fit_classifier, predict
from serlib.training.runtime import seed_everything
from serlib.training.trainer import TrainConfig


def _non_uniform(module: torch.nn.Module) -> torch.nn.Module:
    """Random scoring weights (the poolings start uniform, which would hide masking mistakes)."""
    for name in ("score_out", "query"):
        if hasattr(module, name):
            torch.nn.init.normal_(getattr(module, name), std=1.0)
    return module


def _poolings(dim: int = 6):
    seed_everything(0)
    return {
        "mean": MeanPooling(dim),
        "attentive": _non_uniform(AttentiveAveragePooling(dim, out_dim=5, heads=3, hidden=4)),
        "qkv": _non_uniform(QKVPooling(dim, out_dim=6, heads=2)),
    }


def _padded_batch(lengths, dim=6, garbage=1e3):
    """Frames [B, T, D] whose padding holds large garbage, the mask, and each row unpadded."""
    torch.manual_seed(1)
    rows = [torch.randn(n, dim) for n in lengths]
    x = torch.full((len(rows), max(lengths), dim), garbage)
    mask = torch.zeros(len(rows), max(lengths), dtype=torch.bool)
    for i, r in enumerate(rows):
        x[i, : len(r)] = r
        mask[i, : len(r)] = True
    return x, mask, rows


@pytest.mark.parametrize("name", ["mean", "attentive", "qkv"])
def test_padding_never_changes_the_vector(name):
    pool = _poolings()[name]
    x, mask, rows = _padded_batch([5, 2, 7])
    batched = pool(x, mask)
    for i, r in enumerate(rows):
        torch.testing.assert_close(batched[i], pool(r[None], None)[0])
    x2 = x.clone()
    x2[~mask] = -7.0  # other padding values: same vectors
    torch.testing.assert_close(pool(x2, mask), batched)


@pytest.mark.parametrize("name", ["attentive", "qkv"])
def test_attention_weights_sum_to_one_over_real_frames_and_are_zero_on_padding(name):
    pool = _poolings()[name]
    x, mask, _ = _padded_batch([5, 2, 7])
    w = pool.attention(x, mask)
    assert w.shape == (3, pool.heads, 7)
    torch.testing.assert_close(w.sum(-1), torch.ones(3, pool.heads))
    assert (w[~mask[:, None, :].expand_as(w)] == 0).all()
    assert (w[mask[:, None, :].expand_as(w)] > 0).all()
    assert not torch.allclose(w[2, 0, :7], torch.full((7,), 1 / 7))  # really weighted, not uniform


def test_attention_starts_uniform_so_pooling_starts_as_the_mean():
    seed_everything(0)
    x, mask, _ = _padded_batch([3, 1, 4])
    att = AttentiveAveragePooling(6, out_dim=5, heads=2, hidden=4)
    qkv = QKVPooling(6, out_dim=4, heads=2)
    for pool in (att, qkv):
        w = pool.attention(x, mask)
        torch.testing.assert_close(w[0, :, :3], torch.full((2, 3), 1 / 3))  # 3 real frames: 1/3 each
        torch.testing.assert_close(w[1, :, 0], torch.ones(2))
    mean = masked_mean(x, mask)
    torch.testing.assert_close(att(x, mask), att.proj(torch.cat([mean, mean], dim=1)))
    values = qkv.value(mean).view(3, 2, 2).flatten(1)  # V applied to the mean = the mean of V x_t
    torch.testing.assert_close(qkv(x, mask), qkv.proj(values))


def test_qkv_equals_the_textbook_computation():
    """Keys and values of every frame, scaled dot product, softmax, weighted sum: the same numbers."""
    pool = _poolings()["qkv"]
    x, mask, _ = _padded_batch([4, 6])
    keys = pool.key(x).view(2, 6, pool.heads, pool.head_dim)
    values = pool.value(x).view(2, 6, pool.heads, pool.head_dim)
    scores = torch.einsum("bthk,hk->bht", keys, pool.query) / math.sqrt(pool.head_dim)
    weights = torch.softmax(scores.masked_fill(~mask[:, None, :], -math.inf), dim=-1)
    expected = pool.proj(torch.einsum("bht,bthk->bhk", weights, values).flatten(1))
    torch.testing.assert_close(pool(x, mask), expected)
    torch.testing.assert_close(pool.attention(x, mask), weights)


@pytest.mark.parametrize("name", ["mean", "attentive", "qkv"])
@pytest.mark.parametrize("lengths", [[1], [7], [13], [1, 13, 6]])
def test_shapes_for_batch_one_and_odd_lengths(name, lengths):
    seed_everything(0)
    x, mask, _ = _padded_batch(lengths, dim=10)
    head = PooledClassifier(10, 3, pooling=name, dropout=0.0)
    assert head(x, mask).shape == (len(lengths), 3)
    assert head.embed(x, mask).shape == (len(lengths), 10 if name == "mean" else 256)  # out_dim defaults to 256
    if name != "mean":
        assert head.attention(x, mask).shape == (len(lengths), 4, max(lengths))
    else:
        assert head.attention(x, mask) is None


def test_layer_weights_start_uniform_and_receive_gradients():
    seed_everything(0)
    x, mask, _ = _padded_batch([3, 5], dim=4)
    layered = torch.stack([x, 2 * x, -x], dim=1)  # [B, L=3, T, D]
    for name in ("mean", "attentive", "qkv"):
        head = PooledClassifier(4, 2, pooling=name, out_dim=8, heads=2, dropout=0.0, num_layers=3)
        torch.testing.assert_close(head.layer_weights(), torch.full((3,), 1 / 3))
        mixed, _ = head.mixed_input(layered, mask)
        torch.testing.assert_close(mixed[~mask[:, :, None].expand_as(mixed)].abs().sum() * 0, torch.tensor(0.0))
        torch.testing.assert_close(mixed[mask], (2 * x / 3)[mask])  # (1 + 2 - 1) / 3 of the frames
        head(layered, mask).sum().backward()
        grad = head.layer_logits.grad
        assert grad is not None and grad.abs().sum() > 0, name
    with pytest.raises(ValueError, match="layers"):
        head(torch.randn(2, 4, 5, 4), mask)


def test_mean_pooling_takes_pooled_vectors_and_attention_needs_frames():
    seed_everything(0)
    x, mask, _ = _padded_batch([3, 5], dim=4)
    mean_head = PooledClassifier(4, 2, pooling="mean", dropout=0.0, hidden=128)
    torch.testing.assert_close(mean_head(masked_mean(x, mask)), mean_head(x, mask))
    layered = PooledClassifier(4, 2, pooling="mean", dropout=0.0, num_layers=2)
    xl = torch.stack([x, 3 * x], dim=1)
    torch.testing.assert_close(layered(masked_mean(xl, mask)), layered(xl, mask))  # mean of mix = mix of means
    qkv = PooledClassifier(4, 2, pooling="qkv", out_dim=4, heads=2)
    with pytest.raises(ValueError, match="pools frames"):
        qkv(masked_mean(x, mask))
    with pytest.raises(ValueError, match="unknown pooling"):
        PooledClassifier(4, 2, pooling="max")
    with pytest.raises(ValueError, match="no real frame"):
        masked_softmax(torch.zeros(2, 1, 3), torch.tensor([[1, 0, 0], [0, 0, 0]]))
    # parameters: mean = hidden layer (4*128+128) + output (128*2+2)
    assert count_parameters(mean_head) == 4 * 128 + 128 + 128 * 2 + 2


def test_average_groups_and_frame_statistics():
    x = torch.tensor([[1.0], [2.0], [3.0], [4.0], [5.0]])
    torch.testing.assert_close(average_groups(x, 2), torch.tensor([[1.5], [3.5], [5.0]]))
    torch.testing.assert_close(average_groups(x.half(), 5), torch.tensor([[3.0]]).half())
    frames = [torch.tensor([[0.0, 1.0], [2.0, 1.0]]), torch.tensor([[4.0, 1.0]]), torch.tensor([[100.0, 5.0]])]
    mean, std = feature_stats(frames, [0, 1], eps=0.0)  # frames 0, 2, 4 and 1, 1, 1
    torch.testing.assert_close(mean, torch.tensor([[2.0, 1.0]]))
    torch.testing.assert_close(std, torch.tensor([[math.sqrt(8 / 3), 0.0]]))
    data = FeatureDataset(frames, [0, 1, 0], stats=feature_stats(frames, [0, 1]))
    torch.testing.assert_close(data[1][0][0, 0], torch.tensor(2 / math.sqrt(8 / 3)), rtol=1e-4, atol=1e-4)
    pooled_mean, pooled_std = feature_stats(np.array([[1.0], [3.0], [9.0]]), [0, 1], eps=0.0)
    torch.testing.assert_close(pooled_mean, torch.tensor([2.0]))
    torch.testing.assert_close(pooled_std, torch.tensor([1.0]))


@pytest.fixture
def one_thread():
    """Tiny models train fastest on one thread (and are not slowed by other work on the machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("name", ["attentive", "qkv"])
def test_trains_on_variable_length_frames_with_the_shared_trainer(name, one_thread):
    """Class = whether one frame somewhere in the utterance carries a spike: attention must find it."""
    seed_everything(0)
    rng = np.random.default_rng(0)
    frames, labels = [], []
    for i in range(96):
        n = int(rng.integers(5, 16))
        x = torch.from_numpy(rng.normal(size=(1, n, 4)).astype(np.float16))
        label = i % 2
        if label:
            x[0, int(rng.integers(0, n)), 0] = 6.0
        frames.append(x)
        labels.append(label)
    labels = np.array(labels)
    train, test = np.arange(64), np.arange(64, 96)
    part = lambda idx: FeatureDataset([frames[i][0] for i in idx], labels[idx])
    head = PooledClassifier(4, 2, pooling=name, out_dim=16, heads=2, hidden=16, dropout=0.0)
    cfg = TrainConfig(max_steps=40, batch_size=16, lr=1e-2, eval_every=20, top_k=1, progress=False, seed=0)
    result = fit_classifier(head, part(train), None, 2, cfg)
    y_pred, probs = predict(result.model, part(test))
    assert probs.shape == (32, 2)
    assert (y_pred == labels[test]).mean() >= 0.8


def test_knn_agreement_counts_neighbours_that_share_the_label():
    from serlib.evaluation.metrics import knn_agreement

    x = np.array([[0.0], [0.1], [0.2], [5.0], [5.1], [5.2]])
    assert knn_agreement(x, ["a", "a", "a", "b", "b", "b"], k=2) == 1.0  # two tight clusters
    # alternating labels: every point's two nearest are one of each, the tie goes to the nearer,
    # which always has the other label
    assert knn_agreement(x, ["a", "b", "a", "b", "a", "b"], k=2) == 0.0
    # k=1 on 0, .1, .25 | 5, 5.1, 5.2 labelled a a b | b b b: only .25 (nearest .1, an a) misses: 5 of 6
    x1 = np.array([[0.0], [0.1], [0.25], [5.0], [5.1], [5.2]])
    assert knn_agreement(x1, ["a", "a", "b", "b", "b", "b"], k=1) == pytest.approx(5 / 6)
    with pytest.raises(ValueError, match="k must be"):
        knn_agreement(x, list("aaabbb"), k=6)


def test_the_attention_inspection_reads_the_fold_on_the_models_device():
    """What 01 plots: standardised as in training, and sent to the device the model is on (a model
    fine-tuned on a GPU; here parameters on `meta` stand in for it, and the spy records the devices)."""
    from serlib.data.folds import Fold
    from serlib.methods.attentive_pooling.run import attention_weights

    frames = [torch.full((3 + i, 4), float(i)) for i in range(4)]
    fold = Fold("f", train=np.array([0, 1, 2]), valid=np.array([], dtype=int), test=np.array([3]))
    model = PooledClassifier(4, 2, "attentive", out_dim=8, heads=2, hidden=4)
    seen = {}

    def spy(x, mask):
        seen.update(x=x.device, mask=mask.device, first=x[0, 0, 0].item() if x.device.type == "cpu" else None)
        return torch.full((1, 2, x.shape[1]), 1 / x.shape[1])

    model.attention = spy
    weights = attention_weights(model, frames, fold, 0)
    assert weights.shape == (2, 6) and np.allclose(weights.sum(axis=1), 1)
    mean, std = feature_stats(frames, fold.train)
    assert seen["first"] == pytest.approx(float((3.0 - mean.flatten()[0]) / std.flatten()[0]))  # training statistics
    model.to("meta")
    attention_weights(model, frames, fold, 0)
    assert seen["x"].type == seen["mask"].type == "meta"


@pytest.mark.parametrize("name", ["mean", "attentive", "qkv"])
@pytest.mark.parametrize("layers", [None, 3])
def test_every_trained_parameter_gets_a_gradient(name, layers):
    """What DDP requires of every model it wraps (several GPUs): no trained parameter left out of the loss."""
    seed_everything(0)
    net = _non_uniform(PooledClassifier(6, 3, name, out_dim=8, heads=2, hidden=4, num_layers=layers))
    x = torch.randn(2, 5, 6) if layers is None else torch.randn(2, layers, 5, 6)
    if name == "mean":
        x = x.mean(dim=-2)
    out = net(x, None if name == "mean" else torch.ones(2, 5, dtype=torch.bool))
    out.sum().backward()
    assert [n for n, p in net.named_parameters() if p.requires_grad and p.grad is None] == []


def test_class_scores_are_float32_under_bf16_so_near_ties_stay_apart():
    """Validation and test pick classes by argmax: the head's last layer computes in float32 under any
    autocast (bf16 rounds scores that differ in the third digit to one value)."""
    seed_everything(0)
    net = PooledClassifier(6, 3, "attentive", out_dim=8, heads=2, hidden=4).eval()
    x, mask = torch.randn(2, 5, 6), torch.ones(2, 5, dtype=torch.bool)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = net(x, mask)
    assert logits.dtype == torch.float32
    pred, probs = predict(net, FeatureDataset([f for f in x], [0, 1]), precision="bf16")
    assert probs.dtype == np.float32 and pred.shape == (2,)
