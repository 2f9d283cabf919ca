import io
import os
import sys

from serlib.progress import ENV, TERMINAL, progress_bar, progress_to_terminal


def _run_bar(monkeypatch):
    terminal, cell = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "__stderr__", terminal)
    monkeypatch.setattr(sys, "stderr", cell)
    bar = progress_bar(3, "encoding", mininterval=0)
    for _ in range(3):
        bar.update(1)
    bar.close()
    return terminal.getvalue(), cell.getvalue()


def test_bars_go_to_the_terminal_under_the_study_runner(monkeypatch):
    monkeypatch.setenv(ENV, TERMINAL)
    terminal, cell = _run_bar(monkeypatch)
    assert "encoding" in terminal and "3/3" in terminal
    assert cell == ""  # what a notebook cell's stderr would have put into its report


def test_bars_stay_in_the_notebook_outside_the_runner(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    terminal, cell = _run_bar(monkeypatch)
    assert "3/3" in cell and terminal == ""


def test_progress_to_terminal_sets_the_variable_only_within_and_keeps_a_users_value(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    with progress_to_terminal():
        assert os.environ[ENV] == TERMINAL
    assert ENV not in os.environ
    monkeypatch.setenv(ENV, "notebook")
    with progress_to_terminal():
        assert os.environ[ENV] == "notebook"
