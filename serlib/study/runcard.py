"""The run card every notebook shows first and last: what ran, on what, with which seed, and how long."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pandas as pd

from .. import distributed
from ..training.precision import Precision, choose_precision
from ..training.runtime import resolve_device
from ..training.trainer import TrainConfig


class RunCard:
    """Collects the facts a reader needs to trust (and repeat) a notebook's numbers."""

    def __init__(self, notebook: str, params: dict):
        distributed.init_from_env()  # under a launcher: join the other processes (serlib.study.runner)
        self.notebook = notebook
        self.params = params
        self.device = resolve_device(params.get("device", "auto"))
        self.started = datetime.now(timezone.utc)
        self._t0 = time.perf_counter()
        self.facts: dict[str, str] = {
            "notebook": notebook,
            "profile": str(params.get("profile", "")),
            "seed": str(params.get("seed", 0)),
            "device": self.device,
            "processes": str(distributed.world_size()) + (" (each training batch split across them: effective batch "
                                                         "= batch_size x grad_accum x processes, see the runs table)"
                                                         if distributed.world_size() > 1 else ""),
            "started (UTC)": self.started.strftime("%Y-%m-%d %H:%M:%S"),
        }

    @property
    def precision(self) -> Precision:
        """The precision this run trains in: the profile's `precision` (auto: by the hardware)."""
        if not hasattr(self, "_precision"):
            self._precision = choose_precision(self.params.get("precision", "auto"), self.device)
            self.facts["precision"] = str(self._precision)
        return self._precision

    def train_config(self, options: dict, **overrides) -> TrainConfig:
        """A TrainConfig from a profile's training section, with this run's seed, device and precision
        (the run card then states the precision and why it was chosen)."""
        return TrainConfig(**{"seed": self.params.get("seed", 0), "device": self.device, "progress": False,
                              "precision": self.precision.name, **options, **overrides})

    def add(self, **facts) -> None:
        """Record facts learned while running (model source, folds, corpora sizes...)."""
        self.facts.update({k.replace("_", " "): str(v) for k, v in facts.items()})

    @property
    def wall_s(self) -> float:
        return time.perf_counter() - self._t0

    def table(self, final: bool = False) -> pd.DataFrame:
        facts = dict(self.facts)
        if final:
            facts["wall time"] = f"{self.wall_s:.0f} s"
        return pd.DataFrame({"": list(facts.values())}, index=list(facts))
