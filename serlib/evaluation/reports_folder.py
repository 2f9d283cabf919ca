"""The reports folder's ownership: the runner changes only files it made, and says so in a manifest.

A user may point `--reports` at a folder that already holds files of their own (an `index.html`, a
`results.csv` of another study). The runner keeps `.serlib-reports.json`, the list of the files it
wrote there; before a run writes anything it refuses a folder where a file it would write exists
but is not on that list, naming the files, so nothing a user made is overwritten. Every file the
runner (or a notebook, through `record_results`) writes is added to the list. Reports written before
the list existed are recognised by their content (`made_by_serlib`), so an older reports folder is
taken over, not refused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

MANIFEST = ".serlib-reports.json"


class ForeignFilesError(FileExistsError):
    """The reports folder holds files the runner did not make where it would write."""


class ReportsFolder:
    """The files of one reports folder that serlib made (see the module notes)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.path = self.root / MANIFEST
        self.owned: set[str] = self._listed()

    def _listed(self) -> set[str]:
        """The files the manifest on disk lists (empty when there is none)."""
        if not self.path.is_file():
            return set()
        try:
            return set(json.loads(self.path.read_text(encoding="utf-8"))["files"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ForeignFilesError(f"{self.path} is not serlib's list of its files ({exc}); "
                                    "remove it or choose another reports folder") from None

    def foreign(self, names: list[str]) -> list[str]:
        """Those of `names` that exist in the folder and were not made by serlib."""
        return sorted(n for n in names
                      if (self.root / n).exists() and n not in self.owned and not made_by_serlib(self.root / n))

    def check(self, names: list[str]) -> None:
        """ForeignFilesError naming the files of `names` that exist but are not serlib's."""
        foreign = self.foreign(names)
        if foreign:
            raise ForeignFilesError(
                f"reports folder {self.root} holds {', '.join(foreign)}, which serlib did not make; it will not "
                "overwrite them: move them away or choose another folder with --reports")

    def claim(self, *names: str) -> None:
        """Record `names` as serlib's files (call just before or after writing them). The list on
        disk is read again first: a notebook's process claims results.csv while the runner holds its
        own ReportsFolder, and neither may drop the other's entries."""
        self.owned |= self._listed()
        new = set(names) - self.owned
        if not new:
            return
        self.owned |= new
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"files": sorted(self.owned)}, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)


def made_by_serlib(path: Path) -> bool:
    """Whether a file bears the marks of serlib's reports (for folders from before the manifest)."""
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return False
    if path.name == "results.csv":
        return text.splitlines()[:1] == ["notebook,corpus,protocol,model,method,fold,metric,value"]
    if path.name == "run.json":
        try:
            run = json.loads(text)
        except ValueError:
            return False
        return isinstance(run, dict) and {"profile", "notebooks", "status"} <= run.keys()
    if path.name == "index.html":
        return "<title>serlib study" in text
    # an executed notebook of this study or its HTML: papermill's tag on the cell it injected
    return "injected-parameters" in text and "serlib" in text
