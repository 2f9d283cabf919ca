"""`serlib gpu-check` (`make gpu-check`): the GPU path end to end, and how fast it went.

    serlib gpu-check                       # params/gpu_check.yaml, reports in reports/
    serlib gpu-check --profile my.yaml --reports /tmp/check

Runs the profile's notebooks with the study runner (the same command a full `gpu` run uses), then
prints one line per notebook: device, precision, trained runs, training utterances/s (mean over
its runs), peak GPU memory (the largest of its runs), pooled UA per system and wall time, and
writes them to `<reports>/gpu_check.csv`. The test suite runs it on CPU with a tiny model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
import torch

from ..evaluation.reports_folder import ForeignFilesError, ReportsFolder
from ..evaluation.results import atomic_write_text, load_results, reports_path, runs_name
from ..training.precision import cpu_info, choose_precision
from ..training.runtime import resolve_device
from . import runner
from .params import load_profile, notebook_params, resolve_profile
from .report import RUN_FILE

CHECK_FILE = "gpu_check.csv"


def device_name(device: str) -> str:
    if device == "cuda":
        return f"cuda: {torch.cuda.get_device_name()}"
    return f"{device}: {cpu_info()[0]}"


def summary(params_file: Path, reports_dir: Path) -> pd.DataFrame:
    """One row per notebook of the run in `reports_dir` (see the module notes)."""
    run = json.loads((reports_dir / RUN_FILE).read_text(encoding="utf-8"))
    results = load_results(reports_dir)
    rows = []
    for entry in run["notebooks"]:
        name = entry["name"]
        P = notebook_params(str(params_file), name)
        device = resolve_device(P.get("device", "auto"))
        runs_path = reports_dir / runs_name(name)
        runs = pd.read_csv(runs_path) if runs_path.is_file() else pd.DataFrame({"steps": []})
        trained = runs[runs["steps"] > 0]
        ua = results[(results.notebook == name) & (results.fold == "pooled") & (results.metric == "UA")]
        rows.append({
            "notebook": name, "status": entry["status"], "device": device_name(device),
            "precision": choose_precision(P.get("precision", "auto"), device).name,
            "processes": run.get("processes", 1), "runs": len(trained),
            "train utt/s": trained["utt_per_s"].mean() if "utt_per_s" in trained else float("nan"),
            "peak GPU memory GB": trained["peak_memory_gb"].max() if "peak_memory_gb" in trained else float("nan"),
            "pooled UA %": "; ".join(f"{r.corpus} {r.method} {100 * r.value:.1f}" for r in ua.itertuples()),
            "wall s": entry.get("wall_s"),
        })
    return pd.DataFrame(rows)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="serlib gpu-check", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", "--params", dest="params", default="gpu_check",
                        help="profile name or YAML (default: gpu_check)")
    parser.add_argument("--reports", metavar="DIR", help="reports folder (default: <repo>/reports)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        params_file = resolve_profile(args.params)
        load_profile(params_file)
    except (FileNotFoundError, ValueError) as exc:
        print(f"serlib gpu-check: error: {exc}", file=sys.stderr)
        return 2
    reports_dir = reports_path(args.reports)
    folder = ReportsFolder(reports_dir)
    try:  # refused before the run, not after it
        folder.check([CHECK_FILE])
    except ForeignFilesError as exc:
        print(f"serlib gpu-check: error: {exc}", file=sys.stderr)
        return 2
    status = runner.main(["--params", str(params_file), "--reports", str(reports_dir)])
    if not (reports_dir / RUN_FILE).is_file():
        return status or 1
    table = summary(params_file, reports_dir)
    folder.claim(CHECK_FILE)
    atomic_write_text(reports_dir / CHECK_FILE, table.to_csv(index=False, lineterminator="\n"))
    with pd.option_context("display.max_colwidth", 80, "display.width", 200):
        print(table.round(2).to_string(index=False))
    print(f"(also in {reports_dir / CHECK_FILE})")
    return status
