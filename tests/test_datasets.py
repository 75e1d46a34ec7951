"""``factorylens datasets``: the fetcher against a local HTTP server (success, idempotence, checksum
mismatch, truncation and resume, offline, HTTP errors), the lookup order, the skip when no copy exists,
and the committed manifest against the shared data it was built from."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import factorylens.datasets as datasets
from factorylens.cli import main
from factorylens.datasets import (
    ENV_DATA,
    ENV_SHARED,
    MARKER,
    DatasetNotFound,
    copy_status,
    find_dataset,
    load_manifest,
    locations,
    shared_data_dir,
)
from factorylens.datasets._fetch import FetchError, fetch, fetch_dataset
from tests.conftest import dataset_dir

REPO = Path(__file__).resolve().parents[1]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---- a fake upstream --------------------------------------------------------------------------------


class Upstream:
    """What the local server serves: path -> bytes; paths to cut off halfway; every request seen."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.truncate: set[str] = set()
        self.requests: list[tuple[str, str | None]] = []
        self.lock = threading.Lock()

    def requested(self, path: str) -> list[str | None]:
        with self.lock:
            return [rng for p, rng in self.requests if p == path]


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        upstream: Upstream = self.server.upstream  # type: ignore[attr-defined]
        rng = self.headers.get("Range")
        with upstream.lock:
            upstream.requests.append((self.path, rng))
        body = upstream.files.get(self.path)
        if body is None:
            self.send_error(404, "Not Found")
            return
        start = int(rng[len("bytes=") : -1]) if rng and rng.startswith("bytes=") and rng.endswith("-") else 0
        if start >= len(body) > 0:
            self.send_error(416, "Range Not Satisfiable")
            return
        if start:
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        part = body[start:]
        self.send_header("Content-Length", str(len(part)))
        self.end_headers()
        if self.path in upstream.truncate:
            self.wfile.write(part[: len(part) // 2])  # then the connection closes (HTTP/1.0)
            return
        self.wfile.write(part)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def upstream():
    """A server on a free port of 127.0.0.1, started here and stopped at teardown; yields (Upstream, base URL)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.upstream = Upstream()  # type: ignore[attr-defined]
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-upstream", daemon=True
    )
    thread.start()
    try:
        yield server.upstream, f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def gnu_gzip(data: bytes) -> bytes:
    """What ``gzip -9n`` makes of ``data`` (how the shared copy was compressed), or the stdlib's equivalent."""
    gz = shutil.which("gzip")
    if gz:
        return subprocess.run([gz, "-9n", "-c"], input=data, capture_output=True, check=True).stdout
    return gzip.compress(data, compresslevel=9, mtime=0)


@pytest.fixture
def fake(upstream):
    """A small manifest in the real one's format, served by ``upstream``: a plain file, a filtered JSON
    file, a recompressed file and an unpinned license. Yields (manifest, upstream, expected bytes by path)."""
    server, base = upstream
    csv = b"timestamp,value\n2024-01-01 00:00:00,1.0\n" * 50
    labels_upstream = {"a/data.csv": ["2024-01-01 00:00:00"], "kept_back/other.csv": []}
    labels = json.dumps({"a/data.csv": labels_upstream["a/data.csv"]}, indent=4).encode() + b"\n"
    trace = b"TraceID,SpanID,Duration\n" + b"".join(b"t%d,s%d,%d\n" % (i, i, i * 7) for i in range(2000))
    trace_gz = gnu_gzip(trace)
    license_text = b"MIT License\n"
    server.files.update(
        {
            "/up/data/a/data.csv": csv,
            "/up/labels/combined.json": json.dumps(labels_upstream).encode(),
            "/up/trace/t.csv": trace,
            "/up/LICENSE": license_text,
        }
    )
    files = [
        {"path": "a/data.csv", "url": f"{base}/up/data/a/data.csv", "size": len(csv), "sha256": sha256(csv)},
        {
            "path": "labels/combined.json",
            "url": f"{base}/up/labels/combined.json",
            "size": len(labels),
            "sha256": sha256(labels),
            "transform": {"kind": "json-select-keys", "keys": ["a/data.csv"]},
        },
        {
            "path": "trace/t.csv.gz",
            "url": f"{base}/up/trace/t.csv",
            "size": len(trace_gz),
            "sha256": sha256(trace_gz),
            "transform": {"kind": "gzip", "upstream_size": len(trace), "upstream_sha256": sha256(trace)},
        },
        {"path": "LICENSE", "url": f"{base}/up/LICENSE", "size": None, "sha256": None, "in_shared": False},
    ]
    manifest = {
        "format": 1,
        "datasets": {
            "nab": {"title": "fake", "shared_path": "nab", "license": "MIT", "files": files},
            "petshop": {"title": "fake", "shared_path": "rca/petshop", "license": "CC-BY-4.0", "files": files[:1]},
        },
    }
    expected = {"a/data.csv": csv, "labels/combined.json": labels, "trace/t.csv.gz": trace_gz, "LICENSE": license_text}
    return manifest, server, expected


@pytest.fixture
def no_data(monkeypatch, tmp_path):
    """No FACTORYLENS_DATA, no shared folder, an empty cache: nothing anywhere unless the test puts it there."""
    monkeypatch.delenv(ENV_DATA, raising=False)
    monkeypatch.delenv(ENV_SHARED, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(datasets, "shared_data_dir", lambda: tmp_path / "no-shared" / "data")
    return tmp_path


# ---- fetching ---------------------------------------------------------------------------------------


def test_fetch_verifies_every_file_and_a_second_run_downloads_nothing(fake, tmp_path, no_data):
    manifest, server, expected = fake
    out = io.StringIO()
    folder = fetch_dataset("nab", tmp_path / "cache", manifest=manifest, stream=out)
    assert folder == tmp_path / "cache" / "nab"
    for rel, data in expected.items():
        assert (folder / rel).read_bytes() == data, rel
    assert not list(folder.rglob("*.part"))
    marker = json.loads((folder / MARKER).read_text())
    assert marker["complete"] and set(marker["files"]) == set(expected)
    assert "4/4 files" in out.getvalue() and "MB" in out.getvalue()  # progress: files and bytes
    assert find_dataset("nab", tmp_path / "cache", manifest) == folder
    assert copy_status(locations("nab", tmp_path / "cache", manifest)[-1], "nab", manifest, verify=True)[0]

    seen = len(server.requests)
    again = io.StringIO()
    assert fetch_dataset("nab", tmp_path / "cache", manifest=manifest, stream=again) == folder
    assert len(server.requests) == seen, "verified files are not fetched again"
    assert "4 already verified" in again.getvalue()
    for rel, data in expected.items():
        assert (folder / rel).read_bytes() == data


def test_a_changed_file_is_fetched_again(fake, tmp_path):
    manifest, server, expected = fake
    folder = fetch_dataset("nab", tmp_path, manifest=manifest, stream=None)
    (folder / "a/data.csv").write_bytes(b"edited")
    fetch_dataset("nab", tmp_path, manifest=manifest, stream=None)
    assert (folder / "a/data.csv").read_bytes() == expected["a/data.csv"]
    assert len(server.requested("/up/data/a/data.csv")) == 2


def test_without_gnu_gzip_the_recompressed_file_is_checked_by_content(fake, tmp_path, monkeypatch):
    manifest, _, expected = fake
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda cmd, *a, **k: None if cmd == "gzip" else real_which(cmd, *a, **k))
    folder = fetch_dataset("nab", tmp_path, manifest=manifest, stream=None)
    assert gzip.decompress((folder / "trace/t.csv.gz").read_bytes()) == gzip.decompress(expected["trace/t.csv.gz"])
    marker = json.loads((folder / MARKER).read_text())
    assert marker["complete"]
    assert isinstance(marker["files"]["trace/t.csv.gz"]["byte_identical"], bool)


def test_a_checksum_mismatch_is_a_clear_error_and_leaves_no_file(fake, tmp_path, no_data):
    manifest, server, _ = fake
    server.files["/up/data/a/data.csv"] = b"X" * len(server.files["/up/data/a/data.csv"])  # same size, other bytes
    with pytest.raises(FetchError) as info:
        fetch_dataset("nab", tmp_path, manifest=manifest, jobs=1, stream=None)
    message = str(info.value)
    assert "checksum mismatch for a/data.csv" in message and "/up/data/a/data.csv" in message
    assert ENV_DATA in message and "\n" not in message
    assert not (tmp_path / "nab" / "a" / "data.csv").exists()
    assert not (tmp_path / "nab" / "a" / "data.csv.part").exists()
    assert json.loads((tmp_path / "nab" / MARKER).read_text())["complete"] is False
    with pytest.raises(DatasetNotFound, match="factorylens datasets fetch nab"):
        find_dataset("nab", tmp_path, manifest)


def test_a_truncated_download_is_an_error_and_the_next_run_resumes_it(fake, tmp_path, no_data):
    manifest, server, expected = fake
    server.truncate.add("/up/data/a/data.csv")
    with pytest.raises(FetchError) as info:
        fetch_dataset("nab", tmp_path, manifest=manifest, jobs=1, stream=None)
    message = str(info.value)
    assert "ended early" in message and "/up/data/a/data.csv" in message and "again to resume" in message
    final = tmp_path / "nab" / "a" / "data.csv"
    assert not final.exists(), "no partial file under the final name"
    half = len(expected["a/data.csv"]) // 2
    assert (final.parent / "data.csv.part").stat().st_size == half
    with pytest.raises(DatasetNotFound):
        find_dataset("nab", tmp_path, manifest)

    server.truncate.clear()
    fetch_dataset("nab", tmp_path, manifest=manifest, stream=None)
    assert final.read_bytes() == expected["a/data.csv"]
    assert server.requested("/up/data/a/data.csv")[-1] == f"bytes={half}-", "resumed where it broke off"
    assert find_dataset("nab", tmp_path, manifest) == tmp_path / "nab"


def test_offline_is_one_clear_line(fake, tmp_path, capsys):
    manifest, _, _ = fake
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for entry in manifest["datasets"]["nab"]["files"]:
        entry["url"] = entry["url"].replace(entry["url"].split("/")[2], f"127.0.0.1:{port}")
    with pytest.raises(FetchError) as info:
        fetch_dataset("nab", tmp_path, manifest=manifest, stream=None)
    message = str(info.value)
    assert message.startswith(f"cannot reach 127.0.0.1:{port}") and f"http://127.0.0.1:{port}/up/" in message
    assert ENV_DATA in message and "\n" not in message

    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest))
    assert main(["datasets", "fetch", "nab", "--manifest", str(path), "--cache-dir", str(tmp_path / "c")]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "cannot reach" in err[0] and ENV_DATA in err[0]


def test_a_server_error_names_the_url_and_the_status(fake, tmp_path):
    manifest, server, _ = fake
    del server.files["/up/trace/t.csv"]
    with pytest.raises(FetchError, match=r"/up/trace/t\.csv: the server answered HTTP 404"):
        fetch_dataset("nab", tmp_path, manifest=manifest, jobs=1, stream=None)
    assert not (tmp_path / "nab" / "trace" / "t.csv.gz").exists()


def test_a_mirror_is_tried_when_the_first_url_fails(fake, tmp_path):
    manifest, _, expected = fake
    entry = manifest["datasets"]["nab"]["files"][0]
    entry["mirrors"] = [entry["url"]]
    entry["url"] = entry["url"].replace("/up/", "/gone/")
    folder = fetch_dataset("nab", tmp_path, manifest=manifest, stream=None)
    assert (folder / "a/data.csv").read_bytes() == expected["a/data.csv"]


def test_fetch_all_and_unknown_names(fake, tmp_path):
    manifest, _, _ = fake
    assert set(fetch(None, tmp_path, manifest=manifest, stream=None)) == {"nab", "petshop"}
    with pytest.raises(ValueError, match="unknown dataset"):
        fetch(["bogus"], tmp_path, manifest=manifest, stream=None)
    assert main(["datasets", "fetch", "bogus", "--cache-dir", str(tmp_path)]) == 2


# ---- the lookup --------------------------------------------------------------------------------------


def make_copy(folder: Path) -> Path:
    (folder / "labels").mkdir(parents=True)
    (folder / "labels" / "x.json").write_text("{}")
    return folder


def test_lookup_order_data_env_then_shared_then_cache(fake, tmp_path, monkeypatch, no_data):
    manifest, _, _ = fake
    cache = tmp_path / "xdg" / "factorylens" / "datasets"
    fetch(None, cache, manifest=manifest, stream=None)  # the default cache, complete
    assert find_dataset("nab", manifest=manifest) == cache / "nab"

    shared = make_copy(tmp_path / "shared" / "data" / "nab").parent
    monkeypatch.setattr(datasets, "shared_data_dir", lambda: shared)
    assert find_dataset("nab", manifest=manifest) == shared / "nab"

    env = make_copy(tmp_path / "env" / "nab").parent
    monkeypatch.setenv(ENV_DATA, str(env))
    assert find_dataset("nab", manifest=manifest) == env / "nab"
    assert [loc.source for loc in locations("nab", manifest=manifest)] == [ENV_DATA]

    # FACTORYLENS_DATA, when set, is the only place looked at (in either layout)
    make_copy(tmp_path / "env" / "rca" / "petshop")
    assert find_dataset("petshop", manifest=manifest) == env / "rca" / "petshop"
    monkeypatch.setenv(ENV_DATA, str(cache))  # a cache folder works as FACTORYLENS_DATA too
    assert find_dataset("petshop", manifest=manifest) == cache / "petshop"
    monkeypatch.setenv(ENV_DATA, str(tmp_path / "nothing"))
    with pytest.raises(DatasetNotFound, match=f"point {ENV_DATA} at a copy"):
        find_dataset("nab", manifest=manifest)


def test_an_unfinished_or_outdated_cache_is_not_used(fake, tmp_path, no_data):
    manifest, _, _ = fake
    cache = tmp_path / "xdg" / "factorylens" / "datasets"
    fetch_dataset("nab", cache, manifest=manifest, stream=None)
    assert find_dataset("nab", manifest=manifest) == cache / "nab"
    (cache / "nab" / "a" / "data.csv").unlink()
    with pytest.raises(DatasetNotFound, match=r"a/data\.csv missing"):
        find_dataset("nab", manifest=manifest)
    fetch_dataset("nab", cache, manifest=manifest, stream=None)
    manifest["datasets"]["nab"]["files"][0]["sha256"] = "0" * 64  # a newer manifest
    with pytest.raises(DatasetNotFound, match="another manifest version"):
        find_dataset("nab", manifest=manifest)
    (cache / "petshop").mkdir()  # files but no completed fetch
    with pytest.raises(DatasetNotFound, match="no completed fetch"):
        find_dataset("petshop", manifest=manifest)


def test_shared_defaults_to_beside_the_checkout_and_the_old_variable_still_works(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV_SHARED, raising=False)
    assert shared_data_dir() == REPO.parent / "shared" / "data"
    monkeypatch.setenv(ENV_SHARED, str(tmp_path))
    monkeypatch.setattr(datasets, "_warned_shared", False)
    with pytest.warns(DeprecationWarning, match=ENV_DATA):
        assert shared_data_dir() == tmp_path / "data"


def test_nothing_anywhere_skips_with_the_command_to_run(no_data):
    with pytest.raises(DatasetNotFound) as info:
        find_dataset("nab")
    message = str(info.value)
    assert "`factorylens datasets fetch nab`" in message and "\n" not in message
    with pytest.raises(pytest.skip.Exception, match="factorylens datasets fetch nezha"):
        dataset_dir("nezha")


def test_the_data_tests_skip_cleanly_without_data(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != ENV_SHARED}
    env.update({ENV_DATA: str(tmp_path / "nothing"), "XDG_CACHE_HOME": str(tmp_path / "xdg")})
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests/baselines/test_nab_scorer.py"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "error" not in run.stdout.splitlines()[-1], run.stdout
    skipped = [line for line in run.stdout.splitlines() if line.startswith("SKIPPED")]
    assert skipped and all("factorylens datasets fetch nab" in line for line in skipped), run.stdout


def test_list_reports_every_dataset_and_place(tmp_path, capsys, no_data):
    assert main(["datasets", "list", "--json", "--cache-dir", str(tmp_path / "c")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [item["name"] for item in report] == ["nab", "petshop", "nezha"]
    for item in report:
        assert item["in_use"] is None and "factorylens datasets fetch" in item["missing"]
        assert [p["source"] for p in item["places"]] == ["shared", "cache"]
        assert all(p["status"] == "absent" for p in item["places"])
    assert main(["datasets", "list", "--cache-dir", str(tmp_path / "c")]) == 0
    assert "factorylens datasets fetch nab" in capsys.readouterr().out


# ---- the committed manifest ------------------------------------------------------------------------

PINNED = {
    "nab": "numenta/NAB/ea702d75cc2258d9d7dd35ca8e5e2539d71f3140/",
    "petshop": "amazon-science/petshop-root-cause-analysis/1c5992dc46a02c988a027e2219036d59e8158a91/",
    "nezha": "IntelligentDDS/Nezha/d8140101fdb4e7dfb60d3ef9f64706f382b68470/",
}


def test_the_committed_manifest_matches_the_shared_data():
    manifest = load_manifest()
    shared = os.environ.get(ENV_DATA) or shared_data_dir()
    if shared is None or not all((Path(shared) / d["shared_path"]).is_dir() for d in manifest["datasets"].values()):
        pytest.skip(
            f"no copy of the shared data folder to compare the manifest with at {shared} "
            f"(../shared/data beside the checkout, or {ENV_DATA} in its layout)"
        )
    assert list(manifest["datasets"]) == ["nab", "petshop", "nezha"]
    for name, info in manifest["datasets"].items():
        root = Path(shared) / info["shared_path"]
        on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.name != "README.md"}
        listed = [f for f in info["files"] if f.get("in_shared", True)]
        assert {f["path"] for f in listed} == on_disk, f"{name}: the manifest lists exactly the shared files"
        for entry in info["files"]:
            assert entry["url"].startswith("https://raw.githubusercontent.com/" + PINNED[name]), entry
        for entry in listed:
            data = (root / entry["path"]).read_bytes()
            assert (len(data), sha256(data)) == (entry["size"], entry["sha256"]), entry["path"]
            transform = entry.get("transform")
            if transform and transform["kind"] == "gzip":
                content = gzip.decompress(data)
                assert (len(content), sha256(content)) == (transform["upstream_size"], transform["upstream_sha256"])
                assert entry["url"].endswith(entry["path"].removesuffix(".gz"))
            elif transform:
                assert transform["kind"] == "json-select-keys"
                assert json.dumps({k: None for k in transform["keys"]}) == json.dumps(
                    {k: None for k in json.loads(data)}
                ), entry["path"]
            else:
                assert entry["url"].endswith("/" + entry["path"]), entry
    nab = manifest["datasets"]["nab"]["files"]
    data_files = {f["path"] for f in nab if f["path"].split("/")[0].startswith(("artificial", "real"))}
    assert len(data_files) == 41
    for entry in nab:
        if entry.get("transform"):
            assert set(entry["transform"]["keys"]) == data_files, "labels only for the files of the split"
