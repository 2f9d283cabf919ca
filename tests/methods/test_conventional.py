"""The conventional baseline in full fine-tuning mode: gradients reach the encoder; masks hold."""

from __future__ import annotations

import torch

from serlib.methods.conventional.model import ConventionalSER
from serlib.training.classify import FeatureDataset, collate_frames, fit_classifier, predict
from serlib.training.trainer import TrainConfig
from tests.whisper_fixtures import tiny_whisper


def _mels(n: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(40 + 13 * i, 8, generator=g) for i in range(n)]  # [frames, mels]


def test_padding_in_a_batch_does_not_change_the_logits():
    model = ConventionalSER(tiny_whisper().model.encoder, n_classes=3, dropout=0.0).eval()
    mels = _mels(3)
    batch = collate_frames([(m, torch.tensor(0)) for m in mels])
    with torch.no_grad():
        together = model(batch["x"], batch["mask"])
        alone = torch.cat([model(m[None], torch.ones(1, m.shape[0], dtype=torch.bool)) for m in mels])
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)


def test_fine_tuning_updates_the_encoder():
    encoder = tiny_whisper().model.encoder
    before = encoder.layers[0].fc1.weight.detach().clone()
    model = ConventionalSER(encoder, n_classes=2, dropout=0.0)
    mels = _mels(8)
    labels = [i % 2 for i in range(8)]
    config = TrainConfig(max_steps=3, batch_size=4, lr=1e-3, eval_every=3, patience=5, top_k=1,
                         device="cpu", progress=False, seed=0)
    result = fit_classifier(model, FeatureDataset(mels, labels), FeatureDataset(mels, labels), 2, config)
    assert not torch.equal(result.model.encoder.layers[0].fc1.weight, before)
    pred, probs = predict(result.model, FeatureDataset(mels, labels), batch_size=3)
    assert pred.shape == (8,) and abs(probs.sum(axis=1) - 1).max() < 1e-5


def test_frames_of_equal_length_still_get_a_mask():
    """Whether a dataset holds frames decides batching, not the shapes of one batch."""
    same = [torch.ones(30, 8), torch.ones(30, 8)]
    batch = next(iter(torch.utils.data.DataLoader(FeatureDataset(same, [0, 1]), batch_size=2,
                                                  collate_fn=FeatureDataset(same, [0, 1]).collate)))
    assert batch["mask"].all() and batch["x"].shape == (2, 30, 8)
    pooled = FeatureDataset(torch.ones(4, 3, 8).numpy(), [0, 1, 0, 1])
    assert "mask" not in pooled.collate([pooled[0], pooled[1]])


def test_the_conventional_fold_standardises_with_training_rows_and_picks_on_validation(monkeypatch):
    """conventional_fold's wiring: statistics from the training part only, the validation part (and never the
    test part) is what the trainer scores to pick checkpoints, and predictions come for the test rows."""
    import numpy as np

    import serlib.training.classify as classify
    from serlib.data.folds import Fold
    from serlib.methods.conventional.run import conventional_fold

    seen = {}
    real_stats, real_fit = classify.feature_stats, classify.fit_classifier

    def stats(features, rows, *a, **k):
        seen["stats_rows"] = sorted(rows)
        return real_stats(features, rows, *a, **k)

    def spy_fit(model, train, valid, n_classes, config):
        seen["train"], seen["valid"] = len(train), len(valid) if valid is not None else 0
        seen["valid_features"] = valid.features.copy()
        return real_fit(model, train, valid, n_classes, config)

    monkeypatch.setattr(classify, "feature_stats", stats)
    monkeypatch.setattr(classify, "fit_classifier", spy_fit)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 4)).astype(np.float32)
    X[25:] += 1000.0  # test rows far away: they must not move the statistics
    y = np.arange(30) % 2
    fold = Fold("f1", train=np.arange(0, 20), valid=np.arange(20, 25), test=np.arange(25, 30))
    config = TrainConfig(max_steps=4, batch_size=8, lr=1e-2, eval_every=2, top_k=1, device="cpu", progress=False)
    y_pred, result = conventional_fold(None, X, y, fold, 2, config)
    assert seen["stats_rows"] == list(range(20)) and seen["train"] == 20 and seen["valid"] == 5
    np.testing.assert_array_equal(seen["valid_features"], X[20:25])
    assert len(y_pred) == 5 and "UA" in result.history.columns  # validation scored at every check


def test_partial_fine_tuning_trains_the_top_layers_on_cached_states_and_matches_the_encoder():
    """`top_layers` k: the encoder's top k layers and the head on the states of layer L - k; before
    training it computes what the whole (frozen) encoder + head computes from the log-mels."""
    from serlib.encoders.encoding import encode_batch
    from serlib.methods.conventional.model import conventional_model

    whisper = type("W", (), {"model": tiny_whisper(seed=3)})()
    torch.manual_seed(0)
    partial = conventional_model(whisper, 2, None, finetune=False, dropout=0.0, top_layers=1).eval()
    whole = ConventionalSER(whisper.model.model.encoder, n_classes=2, dropout=0.0).eval()
    whole.head.load_state_dict(partial.head.state_dict())
    mels = _mels(3)
    with torch.no_grad():
        states, mask = encode_batch(whisper.model.model.encoder, [m.T for m in mels])
    below = [states[i, -2, : int(mask[i].sum())] for i in range(3)]  # layer L - 1, real frames
    batch, mel_batch = collate_frames([(s, torch.tensor(0)) for s in below]), collate_frames([(m, torch.tensor(0)) for m in mels])
    with torch.no_grad():
        torch.testing.assert_close(partial(batch["x"], batch["mask"]), whole(mel_batch["x"], mel_batch["mask"]),
                                   rtol=1e-4, atol=1e-5)
    trained = {n.split(".")[1] for n, p in partial.named_parameters() if p.requires_grad and n.startswith("encoder.")}
    assert trained == {"layers", "layer_norm"} and len(partial.encoder.layers) == 1
    labels = [i % 2 for i in range(3)]
    before = partial.encoder.layers[0].fc1.weight.detach().clone()
    config = TrainConfig(max_steps=2, batch_size=3, lr=1e-2, eval_every=2, top_k=1, device="cpu", progress=False)
    result = fit_classifier(partial.train(), FeatureDataset(below, labels), None, 2, config)
    assert not torch.equal(result.model.encoder.layers[0].fc1.weight, before)
