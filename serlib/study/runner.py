"""The study runner: execute the profile's notebooks in order and collect their reports.

    python -m serlib.study --params default
    python -m serlib.study --params params/smoke.yaml --notebooks 00_data 01_baselines
    python -m serlib.study --params default --reports /tmp/reports

Each notebook runs with papermill in a fresh kernel of *this* interpreter (the running venv),
with `params_file` (absolute path of the profile) and `reports_dir` injected into its `parameters`
cell and `notebooks/` as working directory. The environment (SERLIB_DATA, ...) is passed through.

A notebook that runs through is rendered to HTML and its executed `.ipynb` and `.html` replace
the previous ones in reports/. A notebook that fails leaves the previous reports untouched; its
partial notebook goes to reports/failed/, the failing cell is named on stderr, and the run stops
with exit status 1. After every notebook reports/run.json and reports/index.html are rewritten.

Exit status: 0 all notebooks ran, 1 a notebook failed (or the run was interrupted), 2 bad usage
(unknown profile or notebook, empty notebook list).

Several processes, one machine (e.g. one per GPU):

    torchrun --standalone --nproc-per-node 2 -m serlib.cli study --profile gpu    (make study GPUS=2)
    accelerate launch --num_processes 2 -m serlib.cli study --profile gpu

Every process runs this runner. The notebooks that train with the shared trainer
(`MULTI_PROCESS_NOTEBOOKS`) run in one kernel per process, joined in one process group (a fresh
port per notebook): the trainer splits each batch across them, the main process alone writes the
feature cache, converted weights, results and reports (`serlib.training.distributed`); the other
processes execute into a scratch folder that is removed at the end. The other notebooks run in the
main process only, as one process. Processes wait for each other after every notebook; when one
fails it exits at once and the launcher stops the others.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from ..evaluation.results import RESULTS_FILE, load_results, reports_path, restore_results, runs_name
from ..paths import PROJECT_ROOT
from ..progress import progress_to_terminal
from .. import distributed
from .notebook_html import export_html
from .params import load_profile, resolve_profile
from .report import FAILED_DIR, INDEX_FILE, RUN_FILE, format_seconds, run_metadata, save_run, utc_now, write_index
from ..evaluation.reports_folder import ForeignFilesError, ReportsFolder

NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
# The kernel name that means "this interpreter"; any other --kernel goes through jupyter's kernelspecs.
DEFAULT_KERNEL = "python3"
INJECTED_TAG = "injected-parameters"
# Notebooks whose training runs data-parallel under a launcher (the others run in the main process).
MULTI_PROCESS_NOTEBOOKS = ("01_baselines", "02_whisper_er", "03_serial_mtl", "04_phoneme_mtl")
ERROR_MARKER_TAG = "papermill-error-cell-tag"


class StudyError(Exception):
    """A problem with the request (profile, notebook names) found before anything ran."""


# ----------------------------------------------------------------------------------- kernel
def _venv_kernel_manager_class():
    """An AsyncKernelManager whose `python3` kernel always runs sys.executable, and leaves what is
    written to its file descriptors on the runner's terminal (progress bars, native libraries' output).

    Jupyter resolves `python3` through kernelspec folders (user folder first), so a python3
    kernelspec left in ~/.local/share/jupyter by another installation would otherwise win and
    run the notebooks in a different environment. Other kernel names resolve as usual.
    """
    from ipykernel.kernelspec import RESOURCES, get_kernel_dict
    from jupyter_client import AsyncKernelManager
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from traitlets import default

    class VenvKernelSpecManager(KernelSpecManager):
        def get_kernel_spec(self, kernel_name, *args, **kwargs):
            if kernel_name == DEFAULT_KERNEL:
                spec = get_kernel_dict()
                # fd-level output not captured into the notebook: bars written to the kernel's own
                # stderr (serlib.progress) reach the runner's terminal instead of the report
                spec["argv"] = [sys.executable, *spec["argv"][1:], "--IPKernelApp.capture_fd_output=False"]
                return KernelSpec(resource_dir=RESOURCES, **spec)
            return super().get_kernel_spec(kernel_name, *args, **kwargs)

    class VenvKernelManager(AsyncKernelManager):
        @default("kernel_spec_manager")
        def _venv_kernel_spec_manager_default(self):
            return VenvKernelSpecManager(data_dir=self.data_dir)

    return VenvKernelManager


# ----------------------------------------------------------------------------------- helpers
def available_notebooks(notebooks_dir: Path) -> list[str]:
    return sorted(p.stem for p in Path(notebooks_dir).glob("*.ipynb"))


def select_notebooks(requested, profile: dict, notebooks_dir: Path) -> list[str]:
    """The notebooks to run, in order: `requested` if given, else the profile's `notebooks`."""
    names = list(requested) if requested else profile.get("notebooks") or []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise StudyError(f"profile {profile.get('profile')!r}: `notebooks` must be a list of names, got {names!r}")
    names = [Path(n).name.removesuffix(".ipynb") for n in names]
    available = available_notebooks(notebooks_dir)
    if not names:
        raise StudyError(
            f"no notebooks to run: profile {profile.get('profile')!r} lists none and --notebooks was not given "
            f"(available in {notebooks_dir}: {', '.join(available) or 'none'})"
        )
    unknown = [n for n in names if n not in available]
    if unknown:
        raise StudyError(
            f"unknown notebook(s) {', '.join(unknown)}; available in {notebooks_dir}: {', '.join(available) or 'none'}"
        )
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise StudyError(f"notebook(s) listed more than once: {', '.join(repeated)}")
    return names


def check_kernel(kernel: str) -> None:
    """StudyError unless `kernel` is DEFAULT_KERNEL or a kernelspec jupyter knows."""
    if kernel == DEFAULT_KERNEL:
        return
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(kernel)
    except NoSuchKernel:
        known = sorted(KernelSpecManager().find_kernel_specs())
        raise StudyError(f"no Jupyter kernel named {kernel!r}; known kernels: {', '.join(known)}") from None


def _failure_details(exc: BaseException, partial: Path) -> dict:
    """Where and why a notebook failed; `cell` is 1-based in the source notebook (markdown counted)."""
    from papermill.exceptions import PapermillExecutionError

    if not isinstance(exc, PapermillExecutionError):
        return {"cell": None, "execution_count": None, "ename": type(exc).__name__, "evalue": str(exc).strip()}
    cell = None
    source = exc.source or ""
    try:
        import nbformat

        cells = nbformat.read(partial, as_version=4).cells
        cells = [c for c in cells if ERROR_MARKER_TAG not in c.get("metadata", {}).get("tags", [])]
        injected = sum(INJECTED_TAG in c.get("metadata", {}).get("tags", []) for c in cells[: exc.cell_index])
        if INJECTED_TAG in cells[exc.cell_index].get("metadata", {}).get("tags", []):
            cell = "injected parameters"
        else:
            cell = exc.cell_index - injected + 1
    except Exception:  # the partial notebook is a convenience; the exception still says enough
        cell = exc.cell_index + 1
    first_line = next((line.strip() for line in source.splitlines() if line.strip()), "")
    return {
        "cell": cell,
        "execution_count": exc.exec_count,
        "ename": exc.ename,
        "evalue": (exc.evalue or "").strip(),
        "source_line": first_line[:200],
    }


def _replace(src: Path, dst: Path, folder: ReportsFolder) -> None:
    """Move a finished file into the reports folder, recorded as serlib's."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    folder.claim(dst.relative_to(folder.root).as_posix())
    os.replace(src, dst)


def planned_files(names: list[str]) -> list[str]:
    """Every file a run of these notebooks may write in the reports folder."""
    per_notebook = [f"{d}{n}.{ext}" for n in names for d in ("", f"{FAILED_DIR}/") for ext in ("ipynb", "html")]
    return [RUN_FILE, INDEX_FILE, RESULTS_FILE, *per_notebook, *map(runs_name, names)]


def _print_summary(entries: list[dict], index: Path) -> None:
    width = max([len("notebook")] + [len(e["name"]) for e in entries])
    lines = [f"{'notebook':<{width}}  {'status':<11}  wall time", f"{'-' * width}  {'-' * 11}  ---------"]
    for e in entries:
        lines.append(f"{e['name']:<{width}}  {e['status']:<11}  {format_seconds(e.get('wall_s'))}")
    print("\n".join(lines))
    print(f"index: {index}")


# ----------------------------------------------------------------------------------- run
def _record_failure(name: str, entry: dict, error: dict, out_nb: Path, out_html: Path, reports_dir: Path,
                    previous_results, render: bool, folder: ReportsFolder) -> None:
    """File a failed notebook: partial copy (and HTML if `render`) into failed/, error into `entry`.

    The last good reports stay where they are, and the notebook's rows of results.csv are put back
    as they were, so the table always matches the reports beside it.
    """
    failed_dir = reports_dir / FAILED_DIR
    entry.update(finished=utc_now(), status="failed", error=error, ipynb=None, html=None)
    for stale in (failed_dir / f"{name}.ipynb", failed_dir / f"{name}.html"):
        stale.unlink(missing_ok=True)  # a fresh failure replaces an older one
    if out_nb.is_file():
        if render:
            try:
                export_html(out_nb, out_html)  # no summary: its results may be stale
                _replace(out_html, failed_dir / f"{name}.html", folder)
                entry["html"] = f"{FAILED_DIR}/{name}.html"
            except Exception as html_exc:  # noqa: BLE001
                print(f"(could not render the partial notebook of {name}: {html_exc})", file=sys.stderr)
        _replace(out_nb, failed_dir / f"{name}.ipynb", folder)
        entry["ipynb"] = f"{FAILED_DIR}/{name}.ipynb"
    if (reports_dir / f"{name}.html").is_file():
        entry["previous_html"] = f"{name}.html"
    restore_results(name, previous_results, reports_dir)


def run_notebook(
    name: str,
    notebooks_dir: Path,
    reports_dir: Path,
    params_file: Path,
    kernel: str,
    entry: dict,
    folder: ReportsFolder,
) -> bool:
    """Execute one notebook and place its reports; fills `entry` in place. True when it ran through."""
    import papermill

    source = notebooks_dir / f"{name}.ipynb"
    failed_dir = reports_dir / FAILED_DIR
    engine_kwargs = {}
    if kernel == DEFAULT_KERNEL:
        engine_kwargs["kernel_manager_class"] = _venv_kernel_manager_class()
    entry.update(status="running", started=utc_now(), wall_s=None, error=None)
    previous_results = load_results(reports_dir)
    with tempfile.TemporaryDirectory(dir=reports_dir, prefix=f".running-{name}-") as tmp:
        out_nb = Path(tmp) / f"{name}.ipynb"
        out_html = Path(tmp) / f"{name}.html"
        start = time.monotonic()
        try:
            with progress_to_terminal():  # bars on the terminal, not in the report (serlib.progress)
                papermill.execute_notebook(
                    str(source),
                    str(out_nb),
                    parameters={"params_file": str(params_file), "reports_dir": str(reports_dir)},
                    cwd=str(notebooks_dir),
                    kernel_name=kernel,
                    language="python",
                    log_output=False,
                    progress_bar=True,
                    **engine_kwargs,
                )
        except Exception as exc:  # noqa: BLE001 - any failure of the notebook stops the run
            entry["wall_s"] = round(time.monotonic() - start, 3)
            _record_failure(name, entry, _failure_details(exc, out_nb), out_nb, out_html, reports_dir,
                            previous_results, render=True, folder=folder)
            return False
        except BaseException:  # KeyboardInterrupt: record it, then let it end the run
            entry["wall_s"] = round(time.monotonic() - start, 3)
            entry["finished"] = utc_now()
            entry["status"] = "interrupted"
            entry["error"] = {"cell": None, "ename": "KeyboardInterrupt", "evalue": "run interrupted"}
            raise
        try:
            export_html(out_nb, out_html, load_results(reports_dir))
        except Exception as exc:  # noqa: BLE001 - the notebook ran, but it has no report: a failure
            entry["wall_s"] = round(time.monotonic() - start, 3)
            error = {"cell": None, "ename": type(exc).__name__, "evalue": f"HTML export failed: {exc}"}
            _record_failure(name, entry, error, out_nb, out_html, reports_dir, previous_results, render=False,
                            folder=folder)
            return False
        entry["wall_s"] = round(time.monotonic() - start, 3)
        entry["finished"] = utc_now()
        # Only now, with both files complete, replace the previous run's copies.
        _replace(out_nb, reports_dir / f"{name}.ipynb", folder)
        _replace(out_html, reports_dir / f"{name}.html", folder)
    for stale in (failed_dir / f"{name}.ipynb", failed_dir / f"{name}.html"):
        stale.unlink(missing_ok=True)
    if failed_dir.is_dir() and not any(failed_dir.iterdir()):
        failed_dir.rmdir()
    entry.update(status="ok", ipynb=f"{name}.ipynb", html=f"{name}.html")
    entry.pop("previous_html", None)
    return True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m serlib.study",
        description="Run the study notebooks of a parameter profile and build reports/index.html.",
    )
    parser.add_argument("--profile", "--params", dest="params", required=True,
                        help="profile name (params/NAME.yaml) or path to a profile YAML")
    parser.add_argument(
        "--notebooks", nargs="+", metavar="NAME", help="notebooks to run, in order (default: the profile's `notebooks`)"
    )
    parser.add_argument("--reports", metavar="DIR", help="reports folder (default: <repo>/reports)")
    parser.add_argument(
        "--kernel",
        default=DEFAULT_KERNEL,
        help=f"Jupyter kernel name (default {DEFAULT_KERNEL!r}: always this interpreter, {sys.executable})",
    )
    return parser


# ----------------------------------------------------------------------------------- processes
class Processes:
    """This runner's place among the launcher's processes (one process: rank 0 of 1, nothing to do).

    The runners' own process group (gloo, over the launcher's MASTER_PORT) only agrees on each
    notebook's port and waits at notebook ends, so its timeout is long: a notebook may take hours.
    """

    def __init__(self):
        self.size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if self.size > 1:
            import torch.distributed as dist

            dist.init_process_group("gloo", timeout=timedelta(days=2))

    @property
    def main(self) -> bool:
        return self.rank == 0

    def runs(self, name: str) -> bool:
        """Whether this process executes notebook `name`."""
        return self.main or name in MULTI_PROCESS_NOTEBOOKS

    @contextmanager
    def kernel_env(self, name: str):
        """The environment the notebook's kernel starts with: its own process group on a fresh port,
        or, for a notebook that runs in the main process only, one process."""
        if self.size == 1:
            yield
            return
        import torch.distributed as dist

        if name in MULTI_PROCESS_NOTEBOOKS:
            port = [_free_port() if self.main else None]
            dist.broadcast_object_list(port, src=0)
            # the kernels host their own store (not torchrun's agent store, which serves the runners)
            env = {"MASTER_PORT": str(port[0]), "TORCHELASTIC_USE_AGENT_STORE": "False"}
        else:  # nothing of the launch: one process with every core (torchrun set 1 thread per process)
            env = {k: None for k in os.environ if k in LAUNCH_VARIABLES or k.startswith("TORCHELASTIC_")}
        saved = {k: os.environ.get(k) for k in env}
        _set_env(env)
        try:
            yield
        finally:
            _set_env(saved)

    def wait(self) -> None:
        """Every process has finished the notebook (a failed one has exited instead)."""
        if self.size > 1:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.size > 1:
            import torch.distributed as dist

            dist.destroy_process_group()


# What torchrun (and accelerate launch) put in each process's environment.
LAUNCH_VARIABLES = {"WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE",
                    "ROLE_RANK", "ROLE_NAME", "ROLE_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "OMP_NUM_THREADS"}


def _set_env(values: dict[str, str | None]) -> None:
    """Set (None: remove) environment variables of this process, which its kernels inherit."""
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None, *, notebooks_dir: str | os.PathLike | None = None) -> int:
    """Command-line entry point; returns the exit status. `notebooks_dir` defaults to <repo>/notebooks."""
    args = build_parser().parse_args(argv)
    procs = Processes()
    if procs.main:
        return _run(args, notebooks_dir, procs)
    # Another process of a launched run: the same notebooks, written into a scratch folder.
    scratch = Path(tempfile.mkdtemp(prefix=f"serlib-rank{procs.rank}-"))
    try:
        return _run(args, notebooks_dir, procs, reports=scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _run(args, notebooks_dir, procs: Processes, reports: Path | None = None) -> int:
    """The run of one process (see the module notes); `reports` replaces --reports (other processes)."""
    nb_dir = Path(notebooks_dir or NOTEBOOKS_DIR).resolve()
    try:
        params_file = resolve_profile(args.params)
        profile = load_profile(params_file)
        names = select_notebooks(args.notebooks, profile, nb_dir)
        check_kernel(args.kernel)
    except (StudyError, FileNotFoundError, ValueError) as exc:
        print(f"serlib.study: error: {exc}", file=sys.stderr)
        return 2

    reports_dir = reports_path(reports or args.reports)
    planned = planned_files(names)
    try:  # nothing is written where a file of the user's would be overwritten
        folder = ReportsFolder(reports_dir)
        folder.check(planned)
    except ForeignFilesError as exc:
        print(f"serlib.study: error: {exc}", file=sys.stderr)
        return 2
    # serlib's files from before the manifest (check passed them by their content) join it now
    folder.claim(RUN_FILE, INDEX_FILE, *[n for n in planned if (reports_dir / n).exists()])
    run = run_metadata(str(profile["profile"]))
    run.update(
        params_file=str(params_file),
        notebooks_dir=str(nb_dir),
        reports_dir=str(reports_dir),
        kernel=args.kernel if args.kernel != DEFAULT_KERNEL else f"{DEFAULT_KERNEL} ({sys.executable})",
        status="running",
        finished=None,
        processes=procs.size,
        notebooks=[{"name": n, "status": "pending", "wall_s": None, "error": None} for n in names],
    )

    def publish() -> Path:
        """run.json and index.html as the run stands."""
        save_run(reports_dir, run)
        return write_index(reports_dir, run)

    def stop_on_sigterm(signum, frame):  # a SIGTERM ends the run as Ctrl-C does: recorded, never left "running"
        raise KeyboardInterrupt

    previous_handler = signal.signal(signal.SIGTERM, stop_on_sigterm)
    index = publish()
    if procs.main:
        print(f"profile {run['profile']} ({params_file}): {len(names)} notebook(s) -> {reports_dir}"
              + (f", {procs.size} processes" if procs.size > 1 else ""), file=sys.stderr)

    status = 0
    try:
        for i, entry in enumerate(run["notebooks"], 1):
            name = entry["name"]
            if not procs.runs(name):
                entry.update(status="skipped")
                procs.wait()
                continue
            if procs.main:
                print(f"[{i}/{len(names)}] {name}", file=sys.stderr, flush=True)
            entry.update(status="running", started=utc_now())
            publish()
            with procs.kernel_env(name):
                ok = run_notebook(name, nb_dir, reports_dir, params_file, args.kernel, entry, folder)
            if ok:
                procs.wait()
            else:
                _report_failure(entry, name, nb_dir, reports_dir)
                for later in run["notebooks"][i:]:
                    later["status"] = "skipped"
                status = 1
            index = publish()
            if not ok:
                break
    except KeyboardInterrupt:
        for entry in run["notebooks"]:
            if entry["status"] in ("pending", "running"):
                entry["status"] = "skipped" if entry["status"] == "pending" else "interrupted"
        run.update(status="interrupted", finished=utc_now())
        index = publish()
        print("serlib.study: interrupted", file=sys.stderr)
        _print_summary(run["notebooks"], index)
        return 130
    except BaseException as exc:  # a fault of the runner itself: run.json says so before it propagates
        run.update(status="failed", finished=utc_now(), error={"ename": type(exc).__name__, "evalue": str(exc)})
        publish()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous_handler)

    run.update(status="ok" if status == 0 else "failed", finished=utc_now())
    index = publish()
    if procs.main:
        _print_summary(run["notebooks"], index)
    if status == 0:
        procs.close()
    return status


def _report_failure(entry: dict, name: str, nb_dir: Path, reports_dir: Path) -> None:
    """Where and why a notebook failed, on stderr."""
    err = entry["error"]
    where = f" in cell {err['cell']}" if err.get("cell") is not None else " outside any cell"
    print(f"notebook {name} failed{where} ({err['ename']}: {err['evalue']})", file=sys.stderr)
    if err.get("source_line"):
        print(f"  (In [{err.get('execution_count')}] of {nb_dir / (name + '.ipynb')}, cells counted from 1, "
              f"markdown included: {err['source_line']})", file=sys.stderr)
    if entry.get("ipynb"):
        print(f"  partial notebook: {reports_dir / entry['ipynb']}", file=sys.stderr)
