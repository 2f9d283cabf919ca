"""A local HTTP server standing in for the corpora's official hosts (Zenodo, EmoDB's site, GitHub).

It serves byte strings by path, honours `Range: bytes=N-` (206), can cut one response short (a
truncated download), and records every request. `official_archives` builds the three corpora's
archives, laid out as their official downloads, from a data root of real copies.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import threading
import urllib.parse
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from serlib.data.fetch import SOURCES


class Site:
    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.truncate_once: dict[str, int] = {}  # path -> bytes to send before cutting the first response
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.url = ""


def _handler(site: Site):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep the test output clean
            pass

        def do_GET(self):
            path = urllib.parse.urlsplit(self.path).path
            site.requests.append((path, self.headers.get("Range")))
            body = site.files.get(path)
            if body is None:
                self.send_error(404)
                return
            start = 0
            if self.headers.get("Range", "").startswith("bytes="):
                start = int(self.headers["Range"][6:].split("-")[0])
                if start >= len(body):
                    self.send_error(416)
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            cut = site.truncate_once.pop(path, None)
            self.wfile.write(body[start:] if cut is None else body[start:start + cut])

    return Handler


@contextlib.contextmanager
def serve(site: Site):
    """Run `site` on 127.0.0.1 (a free port) for the duration; `site.url` is its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(site))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    site.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()


def zip_folder(folder: Path, top: str | None = None, skip: int = 0) -> bytes:
    """A stored (uncompressed) zip of `folder`'s files, under `top/` when given; `skip` leaves out that
    many files (an incomplete corpus)."""
    buffer = io.BytesIO()
    files = sorted(p for p in folder.rglob("*") if p.is_file())[skip:]
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        for path in files:
            name = path.relative_to(folder).as_posix()
            zf.write(path, f"{top}/{name}" if top else name)
    return buffer.getvalue()


def path_of(url: str) -> str:
    return urllib.parse.urlsplit(url).path


def publish(site: Site, name: str, archive: bytes, md5: str | None = None) -> None:
    """Put a corpus archive where its official URL points; for a Zenodo source also its record
    metadata, publishing `md5` (default: the archive's own)."""
    source = SOURCES[name]
    site.files[path_of(source.url)] = archive
    if source.record:
        checksum = md5 or hashlib.md5(archive).hexdigest()
        record = {"files": [{"key": source.archive, "checksum": f"md5:{checksum}",
                             "links": {"self": source.url}}]}
        site.files[path_of(source.record)] = json.dumps(record).encode()


def official_archives(site: Site, data_root: Path) -> None:
    """The three free corpora from real copies, as their official downloads lay them out: RAVDESS's
    Actor_XX/ at the top, EmoDB's wav/ and label folders, GitHub's URDU-Dataset-<branch>/ folder."""
    publish(site, "ravdess", zip_folder(data_root / "ravdess"))
    publish(site, "emodb", zip_folder(data_root / "emodb"))
    publish(site, "urdu", zip_folder(data_root / "urdu", top="URDU-Dataset-master"))
