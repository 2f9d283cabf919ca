"""serlib fetch against a local server standing in for the official hosts (tests/fetch_server.py)."""

from __future__ import annotations

import hashlib
import io
import zipfile

import pytest

from serlib.cli import main as serlib_main
from serlib.data.fetch import SOURCES, FetchError, download, fetch, mirrored, unpack
from tests.fetch_server import Site, path_of, publish, serve, zip_folder


def test_mirror_keeps_path_and_query():
    assert mirrored("https://zenodo.org/records/1/files/a.zip?download=1", "http://127.0.0.1:8000") == \
        "http://127.0.0.1:8000/records/1/files/a.zip?download=1"
    assert mirrored("https://x.org/a", None) == "https://x.org/a"


def test_a_truncated_download_is_kept_and_resumed(tmp_path):
    body = bytes(range(256)) * 4096  # 1 MiB
    site = Site()
    site.files["/a.zip"] = body
    site.truncate_once["/a.zip"] = 300_000
    with serve(site):
        dest = tmp_path / "a.zip"
        with pytest.raises(FetchError, match="run the command again to resume"):
            download(site.url + "/a.zip", dest, hashlib.md5(body).hexdigest(), progress=False)
        assert not dest.exists() and (tmp_path / "a.zip.part").stat().st_size == 300_000
        download(site.url + "/a.zip", dest, hashlib.md5(body).hexdigest(), progress=False)
    assert dest.read_bytes() == body and not (tmp_path / "a.zip.part").exists()
    assert site.requests[-1] == ("/a.zip", "bytes=300000-")  # the second try asked only for the rest


def test_a_wrong_checksum_deletes_the_download_and_names_both_digests(tmp_path):
    site = Site()
    publish(site, "ravdess", b"not the published archive", md5="0" * 32)
    with serve(site):
        with pytest.raises(FetchError, match=f"md5 {hashlib.md5(b'not the published archive').hexdigest()}, "
                                             f"the source publishes {'0' * 32}"):
            fetch("ravdess", tmp_path, mirror=site.url, progress=False)
    assert not (tmp_path / ".downloads" / SOURCES["ravdess"].archive).exists()
    assert not (tmp_path / ".downloads" / (SOURCES["ravdess"].archive + ".part")).exists()
    assert not (tmp_path / "ravdess").exists()


def test_right_layout_is_unpacked_verified_and_moved_in_place(data_root, tmp_path, capsys):
    site = Site()
    publish(site, "urdu", zip_folder(data_root / "urdu", top="URDU-Dataset-master"))
    with serve(site):
        folder = fetch("urdu", tmp_path, mirror=site.url, progress=False)
    assert folder == tmp_path / "urdu" and len(list(folder.rglob("*.flac"))) == 400
    assert not (tmp_path / ".downloads" / SOURCES["urdu"].archive).exists()  # archive removed once unpacked
    assert not list(tmp_path.glob(".unpack-*"))
    assert "Licence:" in capsys.readouterr().out
    again = fetch("urdu", tmp_path, mirror="http://127.0.0.1:9", progress=False)  # no network needed now
    assert again == folder


def test_an_incomplete_corpus_is_refused_and_nothing_is_moved(data_root, tmp_path):
    site = Site()
    publish(site, "urdu", zip_folder(data_root / "urdu", top="URDU-Dataset-master", skip=1))
    with serve(site):
        with pytest.raises(FetchError, match="not the documented corpus: 399 audio files, the corpus documents 400"):
            fetch("urdu", tmp_path, mirror=site.url, progress=False)
    assert not (tmp_path / "urdu").exists() and not list(tmp_path.glob(".unpack-*"))


def test_an_existing_corpus_folder_is_never_overwritten(tmp_path):
    mine = tmp_path / "urdu" / "Angry"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(FetchError, match="not the documented corpus"):
        fetch("urdu", tmp_path, mirror="http://127.0.0.1:9", progress=False)
    assert (mine / "notes.txt").read_text() == "mine"


def test_archive_members_outside_the_root_are_refused(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("../evil.txt", "x")
    (tmp_path / "evil.zip").write_bytes(buffer.getvalue())
    (tmp_path / "into").mkdir()
    with pytest.raises(FetchError, match="would land outside"):
        unpack(tmp_path / "evil.zip", tmp_path / "into")
    assert not (tmp_path / "evil.txt").exists()


def test_cli_says_where_licensed_corpora_come_from_and_refuses_unknown_ones(tmp_path, capsys):
    assert serlib_main(["fetch", "iemocap", "--data-root", str(tmp_path)]) == 1
    assert "sail.usc.edu" in capsys.readouterr().err
    assert serlib_main(["fetch", "nosuch", "--data-root", str(tmp_path)]) == 2
    assert serlib_main(["--help"]) == 0 and "fetch" in capsys.readouterr().out
    site = Site()
    with serve(site):  # the host is up but has nothing: a clear HTTP error, exit status 1
        assert serlib_main(["fetch", "emodb", "--data-root", str(tmp_path), "--mirror", site.url]) == 1
    assert f"HTTP 404" in capsys.readouterr().err and path_of(SOURCES["emodb"].url) in site.requests[0][0]
