"""`python -m serlib.data.fetch ravdess emodb urdu` (or `serlib fetch ...`): the free corpora, fetched.

Each corpus comes from its official host, as one archive: downloaded into `<data root>/.downloads/`
(a partial download resumes with an HTTP Range request), checked against the checksum the source
publishes where it publishes one (Zenodo's record metadata, for RAVDESS), unpacked into a scratch
folder inside the data root (members that would land outside it are refused), checked against the
names and counts the corpus documents (its loader reads every file's header), and only then moved to
`<data root>/<corpus>/`. A corpus folder that exists already is verified and left as it is, never
overwritten. Licence and citation are printed for each corpus. IEMOCAP needs a licence: the command
says where to request it. `--mirror URL` (or $SERLIB_FETCH_MIRROR) sends every request to another
host with the same paths (a local copy of the official files, or the test suite's server).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .. import paths
from ..progress import progress_bar
from .corpora import load_corpus

MIRROR_ENV = "SERLIB_FETCH_MIRROR"
DOWNLOADS = ".downloads"
CHUNK = 1 << 20


class FetchError(RuntimeError):
    """A download, checksum, archive or layout problem; the message names the file and the reason."""


@dataclass(frozen=True)
class Source:
    """Where a corpus comes from, how it is checked, and on what terms it may be used."""

    name: str
    url: str  # the archive
    archive: str  # its file name under .downloads/
    licence: str
    citation: str
    expected: Callable[[pd.DataFrame], list[str]]  # manifest -> what differs from the documented corpus
    record: str | None = None  # Zenodo record API URL that publishes the archive's checksum


def _counts(manifest: pd.DataFrame, rows: int, column: str | None = None, per_value: dict | None = None) -> list[str]:
    problems = [] if len(manifest) == rows else [f"{len(manifest)} audio files, the corpus documents {rows}"]
    if column:
        found = dict(Counter(manifest[column]))
        if found != per_value:
            problems.append(f"{column} counts {dict(sorted(found.items()))}, documented {dict(sorted(per_value.items()))}")
    return problems


SOURCES = {
    "ravdess": Source(
        "ravdess", "https://zenodo.org/records/1188976/files/Audio_Speech_Actors_01-24.zip?download=1",
        "Audio_Speech_Actors_01-24.zip", "CC BY-NC-SA 4.0",
        "Livingstone & Russo (2018), The Ryerson Audio-Visual Database of Emotional Speech and Song "
        "(RAVDESS), PLoS ONE 13(5): e0196391",
        lambda m: _counts(m, 1440, "speaker", {f"Actor_{i:02d}": 60 for i in range(1, 25)}),
        record="https://zenodo.org/api/records/1188976"),
    "emodb": Source(
        "emodb", "http://emodb.bilderbar.info/download/download.zip", "emodb-download.zip",
        "free for research use (EmoDB's terms); republished by audEERING under CC0-1.0",
        "Burkhardt et al. (2005), A Database of German Emotional Speech, Interspeech 2005",
        lambda m: _counts(m, 535, "emotion", {"angry": 127, "boredom": 81, "disgust": 46, "fear": 69,
                                             "happy": 71, "sad": 62, "neutral": 79})),
    "urdu": Source(
        "urdu", "https://github.com/siddiquelatif/URDU-Dataset/archive/HEAD.zip", "URDU-Dataset.zip",
        "free for research use (the URDU repository's terms)",
        "Latif et al. (2018), Cross Lingual Speech Emotion Recognition: Urdu vs. Western Languages, FIT 2018",
        lambda m: _counts(m, 400, "emotion", {"angry": 100, "happy": 100, "neutral": 100, "sad": 100})),
}
LICENSED = {
    "iemocap": "IEMOCAP is licensed by USC SAIL: request it at https://sail.usc.edu/iemocap/iemocap_release.htm, "
               "then put IEMOCAP_full_release/ under <data root>/iemocap/.",
}


def mirrored(url: str, mirror: str | None) -> str:
    """`url` with its scheme and host replaced by the mirror's (path and query kept)."""
    if not mirror:
        return url
    parts, base = urllib.parse.urlsplit(url), urllib.parse.urlsplit(mirror)
    return urllib.parse.urlunsplit((base.scheme, base.netloc, base.path.rstrip("/") + parts.path, parts.query, ""))


def published_md5(source: Source, mirror: str | None) -> tuple[str | None, str]:
    """The archive's md5 as the source publishes it (Zenodo record metadata) and the URL to fetch it from."""
    if not source.record:
        return None, source.url
    try:
        with urllib.request.urlopen(mirrored(source.record, mirror), timeout=60) as response:
            record = json.load(response)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise FetchError(f"{source.name}: cannot read the record metadata at {source.record}: {exc}") from None
    for entry in record.get("files", []):
        if entry.get("key") == source.archive:
            algorithm, _, digest = str(entry.get("checksum", "")).partition(":")
            url = entry.get("links", {}).get("self") or source.url
            return (digest.lower() if algorithm == "md5" and digest else None), url
    raise FetchError(f"{source.name}: the record {source.record} lists no file {source.archive}")


def download(url: str, dest: Path, md5: str | None = None, progress: bool = True) -> Path:
    """`url` into `dest`, resuming `dest.part` where an earlier try stopped; checks `md5` when given.

    A short read keeps the partial file and raises (run again to resume); a wrong checksum deletes
    the file and raises. Nothing is left under the final name unless it is complete and checked.
    """
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the part is already whole
            response = None
        else:
            raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise FetchError(f"{url}: {exc}") from None
    if response is not None:
        with response:
            resumed = response.status == 206
            if not resumed:
                have = 0
            length = response.headers.get("Content-Length")
            total = have + int(length) if length is not None else None
            bar = progress_bar(total, f"download {dest.name}", progress, initial=have, unit="B",
                               unit_scale=True, unit_divisor=1024)
            with open(part, "ab" if resumed else "wb") as fh:
                try:
                    while chunk := response.read(CHUNK):
                        fh.write(chunk)
                        bar.update(len(chunk))
                except (OSError, urllib.error.URLError) as exc:
                    raise FetchError(f"{url}: download interrupted ({exc}); run the command again to resume") from None
                finally:
                    bar.close()
            if total is not None and part.stat().st_size < total:
                raise FetchError(f"{url}: got {part.stat().st_size} of {total} bytes; run the command again to "
                                 f"resume ({part} is kept)")
    if md5:
        digest = file_md5(part)
        if digest != md5:
            part.unlink()
            raise FetchError(f"{dest.name}: md5 {digest}, the source publishes {md5}: the download is corrupt "
                             "or not the published file; it was deleted, run the command again")
    os.replace(part, dest)
    return dest


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def unpack(archive: Path, into: Path) -> Path:
    """Extract a zip into `into`; members with absolute paths or '..' are refused. Returns the corpus
    folder: `into` itself, or its single top-level folder (GitHub's `<repo>-<branch>/`) when that is all."""
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.infolist():
                target = (into / member.filename).resolve()
                if member.filename.startswith("/") or not target.is_relative_to(into.resolve()):
                    raise FetchError(f"{archive.name}: member {member.filename!r} would land outside {into}")
            zf.extractall(into)
    except zipfile.BadZipFile as exc:
        raise FetchError(f"{archive.name}: not a readable zip archive ({exc}); delete it and run again") from None
    entries = [p for p in into.iterdir() if not p.name.startswith(("__MACOSX", "."))]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else into


def verify(source: Source, folder: Path) -> None:
    """FetchError unless `folder` holds the corpus as documented (names by its loader, counts as published)."""
    try:
        manifest = load_corpus(source.name, data_root=folder.parent, path=folder.name)
    except (ValueError, KeyError, OSError, RuntimeError) as exc:
        raise FetchError(f"{source.name}: {folder} is not the documented corpus: {exc}") from None
    problems = source.expected(manifest)
    if problems:
        raise FetchError(f"{source.name}: {folder} is not the documented corpus: {'; '.join(problems)}")


def fetch(name: str, data_root: Path, mirror: str | None = None, keep_archive: bool = False,
          progress: bool = True) -> Path:
    """One corpus into `<data_root>/<name>/` (see the module notes); returns that folder."""
    source = SOURCES[name]
    final = data_root / name
    if final.exists():
        verify(source, final)
        print(f"{name}: {final} is there and complete; left as it is")
        return final
    downloads = data_root / DOWNLOADS
    downloads.mkdir(parents=True, exist_ok=True)
    archive = downloads / source.archive
    if not archive.exists():
        md5, url = published_md5(source, mirror)
        download(mirrored(url, mirror), archive, md5, progress)
    with tempfile.TemporaryDirectory(dir=data_root, prefix=f".unpack-{name}-") as scratch:
        folder = unpack(archive, Path(scratch))
        verify(source, folder)
        os.replace(folder, final)
    if not keep_archive:
        archive.unlink()
    print(f"{name}: {final} ready. Licence: {source.licence}. Cite: {source.citation}.")
    return final


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="serlib fetch", description=__doc__.splitlines()[0])
    parser.add_argument("corpora", nargs="+", metavar="CORPUS", help=f"any of {', '.join([*SOURCES, *LICENSED])}")
    parser.add_argument("--data-root", default=None, help="where corpora go (default: $SERLIB_DATA, else data/)")
    parser.add_argument("--mirror", default=os.environ.get(MIRROR_ENV), help="host serving the official paths")
    parser.add_argument("--keep-archives", action="store_true", help="keep the downloaded archives")
    args = parser.parse_args(argv)
    root, _ = paths.data_root_location(args.data_root)
    root.mkdir(parents=True, exist_ok=True)
    status = 0
    for name in args.corpora:
        key = name.lower()
        if key in LICENSED:
            print(f"{key}: not fetched. {LICENSED[key]}", file=sys.stderr)
            status = 1
        elif key not in SOURCES:
            print(f"{name}: unknown corpus; fetchable: {', '.join(SOURCES)}", file=sys.stderr)
            status = 2
        else:
            try:
                fetch(key, root.resolve(), args.mirror, args.keep_archives)
            except FetchError as exc:
                print(f"serlib fetch: error: {exc}", file=sys.stderr)
                status = 1
    return status


if __name__ == "__main__":
    raise SystemExit(main())
