"""Download the files a manifest lists into the cache: verified, atomic, resumable, idempotent.

Each file is downloaded to ``<file>.part`` (``<file>.upstream.part`` when a transform turns the upstream
file into ours), resumed with an HTTP Range request when a ``.part`` is left from an interrupted run,
checked against the manifest's size and SHA-256, and only then renamed into place. A file whose SHA-256
already matches is not downloaded again. A marker (``.factorylens-dataset.json``) in the dataset folder
says whether the last fetch completed and for which manifest; the lookup uses a cache only when it did.
Standard library only (urllib); GNU ``gzip`` is used when installed to reproduce recompressed files byte
for byte.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit
from urllib.request import Request, urlopen

from factorylens.datasets import ENV_DATA, MARKER, cache_root, dataset_files, load_manifest, manifest_digest

CHUNK = 1 << 17
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_JOBS = 4


class FetchError(RuntimeError):
    """A download failed; ``str(exc)`` is one line naming the URL and what to do."""


def _advice() -> str:
    return f"check the network (or proxy: HTTPS_PROXY), or set {ENV_DATA} to a local copy of the data"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---- progress --------------------------------------------------------------------------------------


@dataclass
class Progress:
    """Files done / total and bytes downloaded / expected, on one stderr line (rewritten on a terminal,
    at most one line a second otherwise)."""

    label: str
    files_total: int
    bytes_total: int
    stream: TextIO | None = None
    files_done: int = 0
    bytes_done: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _last: float = 0.0

    def __post_init__(self) -> None:
        self._tty = bool(self.stream is not None and getattr(self.stream, "isatty", lambda: False)())

    def add_bytes(self, n: int) -> None:
        with self._lock:
            self.bytes_done += n
            self._show(False)

    def file_done(self) -> None:
        with self._lock:
            self.files_done += 1
            self._show(False)

    def finish(self, note: str = "") -> None:
        with self._lock:
            self._show(True, note)

    def _show(self, final: bool, note: str = "") -> None:
        if self.stream is None:
            return
        now = time.monotonic()
        if not final and now - self._last < (0.2 if self._tty else 1.0):
            return
        self._last = now
        text = (
            f"{self.label}: {self.files_done}/{self.files_total} files, "
            f"{self.bytes_done / 1e6:.1f}/{self.bytes_total / 1e6:.1f} MB{note}"
        )
        if self._tty:
            self.stream.write("\r" + text.ljust(78) + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


# ---- one download -------------------------------------------------------------------------------------


def _http_error(url: str, exc: Exception) -> FetchError:
    if isinstance(exc, HTTPError):
        return FetchError(
            f"{url}: the server answered HTTP {exc.code} {exc.reason}; retry later, or "
            f"set {ENV_DATA} to a local copy of the data"
        )
    reason = exc.reason if isinstance(exc, URLError) else exc
    host = urlsplit(url).netloc
    return FetchError(f"cannot reach {host} ({reason}) to download {url}: {_advice()}")


def download(
    url: str,
    part: Path,
    *,
    size: int | None,
    timeout: float = DEFAULT_TIMEOUT_S,
    on_bytes: Callable[[int], None] = lambda n: None,
) -> None:
    """Download ``url`` into ``part``, resuming what is there when ``size`` is known; the result has
    ``size`` bytes (or Content-Length ones), else :class:`FetchError` (the ``.part`` is kept to resume)."""
    have = part.stat().st_size if part.exists() else 0
    if have and (size is None or have > size):
        part.unlink()
        have = 0
    if size is not None and have == size:
        return
    headers = {"User-Agent": "factorylens-datasets/1 (python urllib)", "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        response = urlopen(Request(url, headers=headers), timeout=timeout)
    except HTTPError as exc:
        if exc.code == 416 and have:  # our .part is no prefix of theirs: start over
            part.unlink()
            return download(url, part, size=size, timeout=timeout, on_bytes=on_bytes)
        raise _http_error(url, exc) from None
    except (URLError, OSError, http.client.HTTPException) as exc:
        raise _http_error(url, exc) from None
    with response:
        if have and response.status != 206:
            have = 0  # the server ignored the range: the whole file comes
        length = response.headers.get("Content-Length")
        expected = have + int(length) if length and length.isdigit() else size
        part.parent.mkdir(parents=True, exist_ok=True)
        got = have
        try:
            with part.open("ab" if have else "wb") as out:
                on_bytes(have)
                while True:
                    block = response.read(CHUNK)
                    if not block:
                        break
                    out.write(block)
                    got += len(block)
                    on_bytes(len(block))
        except (OSError, http.client.HTTPException) as exc:
            raise FetchError(
                f"download of {url} broke off after {got:,} bytes ({exc or type(exc).__name__}); "
                f"run the same command again to resume, or {_advice()}"
            ) from None
    if (expected is not None and got < expected) or (size is not None and got < size):
        want = max(x for x in (expected, size) if x is not None)
        raise FetchError(
            f"download of {url} ended early ({got:,} of {want:,} bytes); run the same command "
            f"again to resume, or {_advice()}"
        )


def _download_any(urls: list[str], part: Path, **kwargs: Any) -> str:
    errors = []
    for url in urls:
        try:
            download(url, part, **kwargs)
            return url
        except FetchError as exc:
            errors.append(exc)
    if len(errors) > 1:
        raise FetchError(f"{errors[0]} (the {len(errors) - 1} mirror(s) failed too)")
    raise errors[0]


# ---- transforms (the manifest says which) -------------------------------------------------------------


def _gzip(src: Path, out: Path) -> bool:
    """``src`` gzip-compressed into ``out`` as ``gzip -9n`` does; True when GNU gzip did it."""
    gnu = shutil.which("gzip")
    if gnu:
        with src.open("rb") as fin, out.open("wb") as fout:
            if subprocess.run([gnu, "-9n", "-c"], stdin=fin, stdout=fout, check=False).returncode == 0:
                return True
    with (
        src.open("rb") as fin,
        out.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", compresslevel=9, fileobj=raw, mtime=0) as fout,
    ):
        shutil.copyfileobj(fin, fout, CHUNK)
    return False


def _select_keys(src: Path, out: Path, keys: list[str], url: str) -> None:
    try:
        upstream = json.loads(src.read_bytes())
    except ValueError as exc:
        raise FetchError(f"{url} is not JSON ({exc}); retry, or set {ENV_DATA} to a local copy") from None
    missing = [k for k in keys if k not in upstream]
    if missing:
        raise FetchError(
            f"{url} lacks {len(missing)} expected key(s), e.g. {missing[0]!r}: the pinned upstream "
            f"file is not what the manifest says; set {ENV_DATA} to a local copy"
        )
    out.write_bytes(json.dumps({k: upstream[k] for k in keys}, indent=4).encode() + b"\n")


def _content_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with gzip.open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def already_there(entry: dict[str, Any], final: Path, fetched: dict[str, Any] | None = None) -> bool:
    """The file is in place and verified: same SHA-256, or, for a recompressed file, the same content.
    An unpinned file (no SHA-256 in the manifest) counts when it is the one an earlier fetch recorded."""
    if not final.is_file():
        return False
    if entry.get("sha256") is None:
        return bool(fetched and fetched.get("unpinned") and fetched.get("sha256") == sha256_file(final))
    if sha256_file(final) == entry["sha256"]:
        return True
    transform = entry.get("transform") or {}
    if transform.get("kind") == "gzip":
        try:
            return bool(_content_sha256(final) == transform["upstream_sha256"])
        except (OSError, EOFError, gzip.BadGzipFile):
            return False
    return False


def fetch_file(
    entry: dict[str, Any],
    folder: Path,
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    on_bytes: Callable[[int], None] = lambda n: None,
) -> dict[str, Any]:
    """Download one manifest entry into ``folder``; returns what the marker records about it."""
    final = folder / entry["path"]
    final.parent.mkdir(parents=True, exist_ok=True)
    urls = [entry["url"], *entry.get("mirrors", [])]
    transform = entry.get("transform")
    part = final.with_name(final.name + ".part")
    record: dict[str, Any] = {"byte_identical": True}
    if transform is None:
        url = _download_any(urls, part, size=entry.get("size"), timeout=timeout, on_bytes=on_bytes)
    else:
        source = final.with_name(final.name + ".upstream.part")
        url = _download_any(urls, source, size=transform.get("upstream_size"), timeout=timeout, on_bytes=on_bytes)
        if transform.get("upstream_sha256") and sha256_file(source) != transform["upstream_sha256"]:
            source.unlink()
            raise FetchError(
                f"checksum mismatch for {entry['path']}: {url} is not the pinned upstream file "
                f"(discarded); retry, or set {ENV_DATA} to a local copy of the data"
            )
        try:
            if transform["kind"] == "gzip":
                record["byte_identical"] = _gzip(source, part)
            elif transform["kind"] == "json-select-keys":
                _select_keys(source, part, transform["keys"], url)
            else:
                raise FetchError(
                    f"{entry['path']}: unknown transform {transform['kind']!r} in the manifest; upgrade factorylens"
                )
        finally:
            source.unlink(missing_ok=True)
    digest = sha256_file(part)
    if entry.get("sha256") is not None and digest != entry["sha256"] and record["byte_identical"]:
        if transform is not None and transform.get("kind") == "gzip":
            record["byte_identical"] = False  # gzip differs from the one that made ours; the content was checked
        else:
            part.unlink()
            raise FetchError(
                f"checksum mismatch for {entry['path']} from {url}: sha256 {digest[:16]}..., "
                f"expected {entry['sha256'][:16]}... (discarded); the upstream file changed or "
                f"something altered it on the way: retry, or set {ENV_DATA} to a verified copy"
            )
    os.replace(part, final)
    record.update(size=final.stat().st_size, sha256=digest)
    if entry.get("sha256") is None:
        record["unpinned"] = True
    return record


# ---- a whole dataset ----------------------------------------------------------------------------------


def _write_marker(folder: Path, state: dict[str, Any]) -> None:
    tmp = folder / (MARKER + ".part")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, folder / MARKER)


def _download_size(entry: dict[str, Any]) -> int:
    transform = entry.get("transform") or {}
    return transform.get("upstream_size") or entry.get("size") or 0


def fetch_dataset(
    name: str,
    cache_dir: str | Path | None = None,
    *,
    manifest: dict[str, Any] | None = None,
    jobs: int = DEFAULT_JOBS,
    timeout: float = DEFAULT_TIMEOUT_S,
    stream: TextIO | None = sys.stderr,
) -> Path:
    """Fill ``<cache_dir>/<name>`` with the manifest's files of ``name``; returns that folder."""
    manifest = manifest or load_manifest()
    entries = dataset_files(name, manifest)
    folder = Path(cache_dir or cache_root()) / name
    folder.mkdir(parents=True, exist_ok=True)
    old: dict[str, Any] = {}
    try:
        old = json.loads((folder / MARKER).read_text(encoding="utf-8")).get("files", {})
    except (OSError, ValueError):
        pass
    digest = manifest_digest(name, manifest)
    _write_marker(folder, {"dataset": name, "manifest": digest, "complete": False, "files": old})

    progress = Progress(name, len(entries), sum(_download_size(e) for e in entries), stream)
    records: dict[str, dict[str, Any]] = {}
    todo = []
    for entry in entries:
        final = folder / entry["path"]
        before = old.get(entry["path"], {})
        if already_there(entry, final, before):
            records[entry["path"]] = {
                "byte_identical": True,
                **before,
                "size": final.stat().st_size,
                "sha256": entry["sha256"] or before["sha256"],
            }
            progress.bytes_done += _download_size(entry)
            progress.files_done += 1
        else:
            todo.append(entry)
    skipped = len(entries) - len(todo)
    stop = threading.Event()

    def one(entry: dict[str, Any]) -> None:
        if stop.is_set():
            return
        try:
            records[entry["path"]] = fetch_file(entry, folder, timeout=timeout, on_bytes=progress.add_bytes)
        except BaseException:
            stop.set()
            raise
        progress.file_done()

    if todo:
        with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix=f"fetch-{name}") as pool:
            futures = [pool.submit(one, e) for e in todo]
            wait(futures, return_when=FIRST_EXCEPTION)
            stop.set()
            for f in futures:
                f.cancel()
        errors = [e for f in futures if not f.cancelled() and (e := f.exception()) is not None]
        if errors:
            progress.finish(" (failed)")
            raise errors[0]
    _write_marker(folder, {"dataset": name, "manifest": digest, "complete": True, "files": records})
    notes = []
    if skipped:
        notes.append(f"{skipped} already verified")
    rezipped = sum(1 for r in records.values() if not r.get("byte_identical", True))
    if rezipped:
        notes.append(f"{rezipped} recompressed without GNU gzip (content verified, bytes differ from the shared copy)")
    unpinned = [p for p, r in records.items() if r.get("unpinned")]
    if unpinned:
        notes.append(f"not checksummed (unpinned in the manifest): {', '.join(unpinned)}")
    progress.finish(f"; {'; '.join(notes)}" if notes else "")
    return folder


def fetch(names: list[str] | None = None, cache_dir: str | Path | None = None, **kwargs: Any) -> dict[str, Path]:
    """Fetch each named dataset (all when none); returns name -> folder."""
    manifest = kwargs.get("manifest") or load_manifest()
    kwargs["manifest"] = manifest
    chosen = names or list(manifest["datasets"])
    unknown = [n for n in chosen if n not in manifest["datasets"]]
    if unknown:
        raise ValueError(f"unknown dataset(s) {', '.join(unknown)}: choose from {', '.join(manifest['datasets'])}")
    return {name: fetch_dataset(name, cache_dir, **kwargs) for name in chosen}
