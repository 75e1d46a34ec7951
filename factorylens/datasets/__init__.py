"""The labelled datasets the tests and benchmarks use (NAB, PetShop, Nezha): where a copy is, and how to get one.

One lookup for everybody: :func:`find_dataset` returns the dataset's folder, trying in order

1. ``$FACTORYLENS_DATA`` when it is set: a folder with ``nab/``, ``rca/petshop/``, ``rca/nezha/`` (the shared
   layout) or ``nab/``, ``petshop/``, ``nezha/`` (the cache layout). When it is set it is the only place
   looked at, so ``FACTORYLENS_DATA=/nonexistent`` means "no data".
2. ``../shared/data`` beside the checkout (``$FACTORYLENS_SHARED/data`` when that deprecated variable is set).
3. The download cache, ``$XDG_CACHE_HOME/factorylens/datasets/<name>`` (``~/.cache/...`` by default), only
   when a ``factorylens datasets fetch <name>`` into it has completed.

When none has the dataset it raises :class:`DatasetNotFound`, whose message is one line naming the command
that gets the data; tests skip with it, benchmarks exit 2 with it.

The files of each dataset (exactly the development split of the project's shared data, never the kept-back
parts) are listed in ``manifest.json`` next to this module, with upstream URL, size and SHA-256.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

ENV_DATA = "FACTORYLENS_DATA"
ENV_SHARED = "FACTORYLENS_SHARED"  # deprecated: the folder holding data/ (the project's "shared" folder)
MANIFEST_PATH = Path(__file__).with_name("manifest.json")
MARKER = ".factorylens-dataset.json"  # written by fetch into each dataset folder it fills
DATASETS = ("nab", "petshop", "nezha")

__all__ = [
    "DATASETS",
    "ENV_DATA",
    "ENV_SHARED",
    "MARKER",
    "DatasetNotFound",
    "Location",
    "cache_root",
    "copy_status",
    "dataset_files",
    "dataset_or_exit",
    "fetch_command",
    "find_dataset",
    "load_manifest",
    "locations",
    "manifest_digest",
    "marker_state",
    "shared_data_dir",
]


class DatasetNotFound(LookupError):
    """No usable copy of a dataset; ``str(exc)`` is one line that names the command to get it."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


@cache
def _packaged_manifest() -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads(MANIFEST_PATH.read_text(encoding="utf-8"))
    return manifest


def load_manifest(path: str | Path | None = None) -> dict[str, Any]:
    """The packaged manifest, or the one at ``path``."""
    if path is None:
        return _packaged_manifest()
    manifest: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    return manifest


def _info(name: str, manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    datasets = (manifest or load_manifest())["datasets"]
    if name not in datasets:
        raise ValueError(f"unknown dataset {name!r}: choose from {', '.join(datasets)}")
    info: dict[str, Any] = datasets[name]
    return info


def dataset_files(name: str, manifest: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    files: list[dict[str, Any]] = _info(name, manifest)["files"]
    return files


def manifest_digest(name: str, manifest: dict[str, Any] | None = None) -> str:
    """Identifies the file list of one dataset: a cache filled for another list is not complete for this one."""
    files = sorted((f["path"], f.get("sha256") or "") for f in dataset_files(name, manifest))
    return hashlib.sha256(json.dumps(files).encode()).hexdigest()


def fetch_command(name: str) -> str:
    return f"factorylens datasets fetch {name}"


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/factorylens/datasets`` (``~/.cache/factorylens/datasets`` when XDG_CACHE_HOME is unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "factorylens" / "datasets"


_warned_shared = False


def shared_data_dir() -> Path | None:
    """``../shared/data`` beside the checkout this module runs from (None when it is not a checkout), or
    ``$FACTORYLENS_SHARED/data`` (deprecated: set FACTORYLENS_DATA to the data folder instead)."""
    global _warned_shared
    shared = os.environ.get(ENV_SHARED)
    if shared:
        if not _warned_shared:
            _warned_shared = True
            warnings.warn(
                f"{ENV_SHARED} is deprecated: set {ENV_DATA}={Path(shared) / 'data'} instead",
                DeprecationWarning,
                stacklevel=3,
            )
        return Path(shared) / "data"
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file():
        return checkout.parent / "shared" / "data"
    return None


@dataclass(frozen=True)
class Location:
    """One place a dataset may be: where (``source``: FACTORYLENS_DATA, shared or cache) and its folder."""

    source: str
    path: Path


def _in_root(root: Path, name: str, manifest: dict[str, Any] | None = None) -> Path:
    """The dataset's folder under a data root, in the shared layout or, failing that, the cache layout."""
    shared_layout = root / str(_info(name, manifest)["shared_path"])
    if shared_layout.is_dir():
        return shared_layout
    cache_layout = root / name
    return cache_layout if cache_layout.is_dir() else shared_layout


def locations(name: str, cache_dir: str | Path | None = None, manifest: dict[str, Any] | None = None) -> list[Location]:
    """The places :func:`find_dataset` looks at, in order (only FACTORYLENS_DATA's when it is set)."""
    env = os.environ.get(ENV_DATA)
    if env:
        return [Location(ENV_DATA, _in_root(Path(env), name, manifest))]
    found = []
    shared = shared_data_dir()
    if shared is not None:
        found.append(Location("shared", shared / _info(name, manifest)["shared_path"]))
    found.append(Location("cache", Path(cache_dir or cache_root()) / name))
    return found


def marker_state(folder: Path, name: str, manifest: dict[str, Any] | None = None) -> str | None:
    """None when ``folder`` has no fetch marker (a plain copy); else "complete", or why it is not."""
    marker = folder / MARKER
    if not marker.is_file():
        return None
    try:
        state = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "unreadable fetch marker"
    if not state.get("complete"):
        return "fetch not finished"
    if state.get("manifest") != manifest_digest(name, manifest):
        return "fetched for another manifest version"
    for rel, meta in state.get("files", {}).items():
        path = folder / rel
        if not path.is_file() or path.stat().st_size != meta.get("size"):
            return f"{rel} missing or changed since the fetch"
    return "complete"


def _usable(location: Location, name: str, manifest: dict[str, Any] | None) -> str | None:
    """None when the location can be used, else a short reason."""
    if not location.path.is_dir():
        return "absent"
    state = marker_state(location.path, name, manifest)
    if state is None:
        return "no completed fetch" if location.source == "cache" else None
    return None if state == "complete" else state


def find_dataset(name: str, cache_dir: str | Path | None = None, manifest: dict[str, Any] | None = None) -> Path:
    """The folder of dataset ``name`` (nab, petshop, nezha), or :class:`DatasetNotFound` with a one-line reason."""
    reasons = []
    for location in locations(name, cache_dir, manifest):
        why = _usable(location, name, manifest)
        if why is None:
            return location.path
        reasons.append(f"{location.source} {location.path}: {why}")
    hint = (
        f"point {ENV_DATA} at a copy that has it, or unset it and run `{fetch_command(name)}`"
        if os.environ.get(ENV_DATA)
        else f"run `{fetch_command(name)}` (or set {ENV_DATA} to a copy)"
    )
    raise DatasetNotFound(name, f"{name} data not found: {hint}; looked at {'; '.join(reasons)}")


def copy_status(
    location: Location, name: str, manifest: dict[str, Any] | None = None, verify: bool = False
) -> tuple[bool, str]:
    """(complete, description) of the copy at ``location``: sizes checked, hashes too with ``verify``."""
    folder = location.path
    if not folder.is_dir():
        return False, "absent"
    state = marker_state(folder, name, manifest)
    files = dataset_files(name, manifest)
    if state is not None and state != "complete":
        return False, f"incomplete ({state})"
    if state is None:  # a plain copy: what the shared folder has (files it lacks upstream are not expected)
        files = [f for f in files if f.get("in_shared", True)]
    present, bad, missing = 0, [], []
    for entry in files:
        path = folder / entry["path"]
        if not path.is_file():
            missing.append(entry["path"])
            continue
        present += 1
        recompressed = (entry.get("transform") or {}).get("kind") == "gzip" and state == "complete"
        if entry.get("size") is not None and not recompressed and path.stat().st_size != entry["size"]:
            bad.append(entry["path"])
        elif verify and entry.get("sha256") and not recompressed:
            from factorylens.datasets._fetch import sha256_file

            if sha256_file(path) != entry["sha256"]:
                bad.append(entry["path"])
    total_bytes = sum(f.get("size") or 0 for f in files)
    if not missing and not bad:
        if state is None and location.source == "cache":
            return False, f"{present} files present but no completed fetch: run `{fetch_command(name)}`"
        checked = "SHA-256 verified" if verify else "sizes match"
        return True, f"complete ({present} files, {total_bytes / 1e6:.1f} MB, {checked})"
    parts = [f"{present - len(bad)} of {len(files)} files good"]
    if missing:
        parts.append(f"{len(missing)} missing, e.g. {missing[0]}")
    if bad:
        parts.append(f"{len(bad)} differ, e.g. {bad[0]}")
    return False, "incomplete: " + ", ".join(parts)


def dataset_or_exit(name: str) -> Path:
    """:func:`find_dataset` for scripts (the benchmarks): without a copy, print the one-line reason to stderr
    and exit with status 2."""
    try:
        return find_dataset(name)
    except DatasetNotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
