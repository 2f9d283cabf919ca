"""Progress bars for long steps: on the terminal that runs the study, never in a rendered report.

Under `python -m serlib.study` the notebooks run headless and whatever a cell writes to stderr lands
in its HTML report, one line per refresh. The runner sets SERLIB_PROGRESS=terminal for its kernels
and starts them without ipykernel's capture of file-descriptor output; bars then go to the kernel's
own stderr (`sys.__stderr__`, fd 2), which is the runner's terminal, and the report keeps only the
summary line a caller prints. In JupyterLab (variable unset) bars show in the
notebook as usual.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator

from tqdm.std import tqdm

ENV = "SERLIB_PROGRESS"
TERMINAL = "terminal"
MININTERVAL_S = 10.0  # seconds between refreshes: keeps terminal logs of long runs short


def progress_bar(work: int | Iterable, desc: str, enabled: bool = True, **kwargs) -> tqdm:
    """A tqdm bar over `work` (a number of steps to `update`, or an iterable to wrap) that writes to
    the run's terminal when the study runner asked for it (see the module notes)."""
    to_terminal = os.environ.get(ENV) == TERMINAL
    stream = sys.__stderr__ if to_terminal else None
    if to_terminal and stream is None:  # no terminal to write to (stderr closed): no bar
        enabled = False
    kwargs.setdefault("mininterval", MININTERVAL_S)
    iterable, total = (None, work) if isinstance(work, int) else (work, kwargs.pop("total", None))
    return tqdm(iterable, total=total, desc=desc, disable=not enabled, file=stream, **kwargs)


@contextlib.contextmanager
def progress_to_terminal() -> Iterator[None]:
    """Within: kernels started from this process send their bars to its terminal (they inherit the
    variable). A value the user set (e.g. to see bars in the reports) is left alone."""
    if ENV in os.environ:
        yield
        return
    os.environ[ENV] = TERMINAL
    try:
        yield
    finally:
        os.environ.pop(ENV, None)
