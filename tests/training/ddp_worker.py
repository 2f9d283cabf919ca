"""Started by test_distributed.py under torchrun (or alone, as the 1-process reference).

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/training/ddp_worker.py OUT BATCH [whisper_er]

Fits a tiny classifier with the shared trainer (and, with `whisper_er`, a tiny Whisper-ER system on
the real tokenizer) and leaves in OUT what the test checks: each process's final weights, the
order in which processes entered `main_first`, a gathered list, and results.csv written through
`record_results` by every process.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from serlib.evaluation.results import record_results  # noqa: E402
from serlib.distributed import gather, init_from_env, main_first, rank, world_size  # noqa: E402
from serlib.training.trainer import TrainConfig, fit  # noqa: E402


def _pairs(items):
    return torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])


def tiny_classifier(out: Path, batch_size: int) -> torch.nn.Module:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))  # no dropout
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(48, 4, generator=g), torch.randint(0, 3, (48,), generator=g)
    train, valid = list(zip(x[:32], y[:32])), list(zip(x[32:], y[32:]))

    def evaluate(model, loader):
        logits, labels = zip(*[(model(a), b) for a, b in loader])
        return {"neg_loss": -float(F.cross_entropy(torch.cat(logits), torch.cat(labels)))}

    config = TrainConfig(max_steps=8, batch_size=batch_size, lr=0.05, eval_every=4, patience=None, top_k=1,
                         metric="neg_loss", device="cpu", precision="no", progress=False, seed=3,
                         out_dir=out / "run")
    return fit(model, train, valid, lambda m, b: F.cross_entropy(m(b[0]), b[1]), evaluate, config,
               collate_fn=_pairs).model


def tiny_whisper_er(batch_size: int) -> dict[str, torch.Tensor]:
    """STL-SER and A+G+S (light decoder) trained a few steps: both must run under DDP."""
    from serlib.methods.whisper_er.data import encoder_inputs
    from serlib.methods.whisper_er.run import TASK_SETS, System, build, train
    from tests.whisper_fixtures import tiny_whisper_with_tokenizer

    classes = ["neutral", "happy", "sad", "angry"]
    template = tiny_whisper_with_tokenizer()
    g = torch.Generator().manual_seed(0)
    states = [torch.randn(5 + i % 3, 16, generator=g) for i in range(12)]
    rows = [{"text": "Kids are talking.", "gender": ("male", "female")[i % 2], "emotion": classes[i % 4]}
            for i in range(12)]
    weights = {}
    for name in ("STL-SER", "A+G+S"):
        system = System(name, TASK_SETS[name])
        whisper, vocab = build(template, classes, "en", system, seed=0)
        inputs = encoder_inputs(whisper.model, states, "kv")
        config = TrainConfig(max_steps=4, batch_size=batch_size, lr=1e-3, eval_every=2, patience=None, top_k=1,
                             device="cpu", precision="no", progress=False, seed=0)
        train(whisper, vocab, system, classes, inputs[:8], rows[:8], inputs[8:], rows[8:], config)
        weights[name] = whisper.model.model.decoder.layers[0].fc1.weight.detach().clone()
    return weights


def main(out: Path, batch_size: int, whisper_er: bool) -> None:
    init_from_env()
    out.mkdir(parents=True, exist_ok=True)
    model = tiny_classifier(out, batch_size)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    (out / f"seed-rank{rank()}.txt").write_text(str(torch.initial_seed()))  # what fit seeded this process with
    if whisper_er:
        state |= {f"whisper_er.{k}": v.contiguous() for k, v in tiny_whisper_er(batch_size).items()}
    save_file(state, out / f"weights-{world_size()}-rank{rank()}.safetensors")
    with main_first():
        if rank() != 0:  # the main process must have left its whole block, nested ones included
            (out / "main-was-done.txt").write_text(str((out / "main-done").exists()))
        with main_first():  # nested, as the feature cache converting weights before it encodes
            pass
        if rank() == 0:
            time.sleep(0.5)
            (out / "main-done").touch()
        with open(out / "order.txt", "a") as f:
            f.write(f"{rank()}\n")
    squares = gather(lambda part: [i * i for i in part], list(range(7)))
    (out / f"gather-rank{rank()}.json").write_text(json.dumps(squares))
    record_results(pd.DataFrame([{"notebook": "ddp", "corpus": "toy", "protocol": "", "model": "", "method": "m",
                                  "fold": "1", "metric": "rank", "value": float(rank())}]), "ddp", out / "reports")


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), "whisper_er" in sys.argv[3:])
