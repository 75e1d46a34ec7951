"""Regenerate ``manifest.json`` from a copy of the project's shared data.

    python -m factorylens.datasets._build_manifest /path/to/shared/data [--out FILE] [--check]

The manifest lists exactly the files of the development split found under ``<shared>/nab``,
``<shared>/rca/petshop`` and ``<shared>/rca/nezha`` (the project-written README.md files excepted),
each with its path in the dataset folder, its upstream URL at the pinned commit, its size and its
SHA-256 computed from the shared copy. The split is what is in the shared folder: files that are
not there (the kept-back parts of each dataset) never get into the manifest, so ``factorylens datasets
fetch`` cannot download them. A file this script cannot map to upstream is an error, not a guess.

Files the shared copy changed get a ``transform`` the fetcher applies to the upstream file:

- ``json-select-keys``: NAB's ``labels/combined_*.json`` were filtered down to the files of the split;
  the fetcher keeps ``keys`` (in that order) and writes ``json.dumps(obj, indent=4) + "\\n"``, which
  reproduces the shared copies byte for byte (checked here by re-serialising them).
- ``gzip``: Nezha's ``trace/*_trace.csv.gz`` are upstream's ``*_trace.csv`` compressed; the upstream
  file's size and SHA-256 (``upstream_size``, ``upstream_sha256``) are those of the decompressed
  shared copy. ``gzip -9n`` (GNU gzip) reproduces the shared bytes (checked here when ``gzip`` is
  installed); without it the fetcher writes an equivalent .gz whose content is verified instead.

``--check`` rebuilds in memory and exits 1 when the committed manifest differs (run it in CI).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

MANIFEST = Path(__file__).with_name("manifest.json")

NAB_COMMIT = "ea702d75cc2258d9d7dd35ca8e5e2539d71f3140"
PETSHOP_COMMIT = "1c5992dc46a02c988a027e2219036d59e8158a91"
NEZHA_COMMIT = "d8140101fdb4e7dfb60d3ef9f64706f382b68470"
NAB_CATEGORIES = (
    "artificialNoAnomaly",
    "artificialWithAnomaly",
    "realAWSCloudwatch",
    "realAdExchange",
    "realTraffic",
    "realKnownCause",
    "realTweets",
)

DATASETS = {
    "nab": {
        "title": "Numenta Anomaly Benchmark (NAB), development split: 41 data files of 5 categories, "
        "their labels, and NAB's published results of 6 detectors on them",
        "shared_path": "nab",
        "repository": "https://github.com/numenta/NAB",
        "commit": NAB_COMMIT,
        "license": "MIT (LICENSE.txt)",
        "cite": "Ahmad, Lavin, Purdy & Agha (2017), Unsupervised real-time anomaly detection for streaming "
        "data, Neurocomputing, doi:10.1016/j.neucom.2017.04.070",
    },
    "petshop": {
        "title": "PetShop (Amazon Science) root-cause dataset, development split: the low_traffic and "
        "temporal_traffic1 scenarios (34 issues)",
        "shared_path": "rca/petshop",
        "repository": "https://github.com/amazon-science/petshop-root-cause-analysis",
        "commit": PETSHOP_COMMIT,
        "license": "CC-BY-4.0 (LICENSE_DATASET.txt)",
        "cite": "Hardt et al., The PetShop Dataset - Finding Causes of Performance Issues across "
        "Microservices, CLeaR 2024, arXiv:2311.04806",
    },
    "nezha": {
        "title": "Nezha (IntelligentDDS) Online Boutique data, development split: the days 2022-08-22 and "
        "2022-08-23 (56 faults; metrics, labels, 102 trace minutes)",
        "shared_path": "rca/nezha",
        "repository": "https://github.com/IntelligentDDS/Nezha",
        "commit": NEZHA_COMMIT,
        "license": "MIT (LICENSE)",
        "cite": "Yu et al., Nezha: Interpretable Fine-Grained Root Causes Analysis for Microservices on "
        "Multi-Modal Observability Data, ESEC/FSE 2023",
    },
}

# upstream files the development split needs that the shared copy lacks (licenses): listed with
# in_shared false and no checksum until someone runs this script with --pin-extras online
EXTRAS = {
    "nab": [
        {
            "path": "LICENSE.txt",
            "upstream": "LICENSE.txt",
            "note": "not in the shared copy (its README quotes it): MIT, Copyright 2014-2024 Numenta Inc.; "
            "size and SHA-256 not pinned yet (run _build_manifest --pin-extras with network access), "
            "so the fetcher downloads it without a checksum check",
        }
    ],
}

# a second place to get a file from, tried when the first URL fails; the SHA-256 decides either way
MIRRORS = {
    ("petshop", "LICENSE_DATASET.txt"): ["https://creativecommons.org/licenses/by/4.0/legalcode.txt"],
}

SKIP = {"README.md"}  # written by this project next to the data, not upstream files


def raw_url(dataset: str, upstream_path: str) -> str:
    repo = DATASETS[dataset]["repository"].removeprefix("https://github.com/")
    return f"https://raw.githubusercontent.com/{repo}/{DATASETS[dataset]['commit']}/{upstream_path}"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def nab_entry(rel: str, path: Path) -> dict[str, Any]:
    parts = rel.split("/")
    if parts[0] in NAB_CATEGORIES and len(parts) == 2 and rel.endswith(".csv"):
        return {"upstream": f"data/{rel}"}
    if parts[0] == "results" and len(parts) == 4 and rel.endswith(".csv"):
        return {"upstream": rel}
    if rel in ("config/profiles.json", "config/thresholds.json"):
        return {"upstream": rel}
    if rel in ("labels/combined_labels.json", "labels/combined_windows.json"):
        data = path.read_bytes()
        obj = json.loads(data)
        if json.dumps(obj, indent=4).encode() + b"\n" != data:
            raise SystemExit(f"{path}: not in the json.dumps(indent=4) layout the fetcher writes")
        return {
            "upstream": rel,
            "transform": {
                "kind": "json-select-keys",
                "keys": list(obj),
                "note": "filtered from upstream down to the files of the split (the JSON structure is unchanged); "
                "written as json.dumps(obj, indent=4) plus a newline",
            },
        }
    raise SystemExit(f"{path}: no rule maps this file to NAB upstream")


def petshop_entry(rel: str, path: Path) -> dict[str, Any]:
    if rel.startswith("dataset/") or rel == "LICENSE_DATASET.txt":
        return {"upstream": rel}
    raise SystemExit(f"{path}: no rule maps this file to PetShop upstream")


def nezha_entry(rel: str, path: Path) -> dict[str, Any]:
    parts = rel.split("/")
    if rel == "LICENSE" or rel == "construct_data/root_cause_hipster.json":
        return {"upstream": rel}
    if parts[0] == "rca_data" and len(parts) >= 3 and parts[2] == "trace" and rel.endswith(".csv.gz"):
        data = path.read_bytes()
        content = gzip.decompress(data)
        transform = {
            "kind": "gzip",
            "upstream_size": len(content),
            "upstream_sha256": sha256_bytes(content),
            "note": "upstream file gzip-compressed (gzip -9n: no name, mtime 0); content unchanged",
        }
        gnu = shutil.which("gzip")
        if gnu:
            again = subprocess.run([gnu, "-9n", "-c"], input=content, capture_output=True, check=True).stdout
            transform["gnu_gzip_reproduces"] = again == data
        return {"upstream": rel[: -len(".gz")], "transform": transform}
    if parts[0] == "rca_data" and len(parts) >= 3 and (rel.endswith(".csv") or rel.endswith(".json")):
        return {"upstream": rel}
    raise SystemExit(f"{path}: no rule maps this file to Nezha upstream")


RULES = {"nab": nab_entry, "petshop": petshop_entry, "nezha": nezha_entry}


def build(shared_data: Path, pin_extras: bool = False) -> dict[str, Any]:
    datasets: dict[str, dict[str, Any]] = {}
    for name, info in DATASETS.items():
        root = shared_data / info["shared_path"]
        if not root.is_dir():
            raise SystemExit(f"{root} missing: give the shared data folder (the one with nab/ and rca/)")
        files = []
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            rel = path.relative_to(root).as_posix()
            if rel in SKIP:
                continue
            mapped = RULES[name](rel, path)
            entry = {
                "path": rel,
                "url": raw_url(name, mapped["upstream"]),
                "size": path.stat().st_size,
                "sha256": sha256_file(path),
            }
            if "transform" in mapped:
                entry["transform"] = mapped["transform"]
            if (name, rel) in MIRRORS:
                entry["mirrors"] = MIRRORS[name, rel]
            files.append(entry)
        for extra in EXTRAS.get(name, []):
            url = raw_url(name, extra["upstream"])
            entry = {
                "path": extra["path"],
                "url": url,
                "size": None,
                "sha256": None,
                "in_shared": False,
                "note": extra["note"],
            }
            if pin_extras:
                entry.update(_pin(url))
            files.append(entry)
        datasets[name] = {**info, "files": files}
    return {
        "format": 1,
        "about": "Files of the development split of each dataset, as in the project's shared data folder; "
        "regenerate with python -m factorylens.datasets._build_manifest <shared>/data",
        "datasets": datasets,
    }


def _pin(url: str) -> dict[str, Any]:
    from urllib.request import urlopen

    with urlopen(url, timeout=60) as response:
        data = response.read()
    return {
        "size": len(data),
        "sha256": sha256_bytes(data),
        "note": "not in the shared copy; pinned from upstream by _build_manifest --pin-extras",
    }


def dumps(manifest: dict[str, Any]) -> str:
    """Indented JSON with one line per file, so that diffs stay readable."""
    lines = [
        "{",
        f'  "format": {manifest["format"]},',
        f'  "about": {json.dumps(manifest["about"])},',
        '  "datasets": {',
    ]
    names = list(manifest["datasets"])
    for i, name in enumerate(names):
        info = manifest["datasets"][name]
        lines.append(f"    {json.dumps(name)}: {{")
        for key, value in info.items():
            if key != "files":
                lines.append(f"      {json.dumps(key)}: {json.dumps(value)},")
        lines.append('      "files": [')
        files = info["files"]
        lines += [f"        {json.dumps(f)}{',' if j < len(files) - 1 else ''}" for j, f in enumerate(files)]
        lines.append("      ]")
        lines.append("    }" + ("," if i < len(names) - 1 else ""))
    lines += ["  }", "}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("shared_data", type=Path, help="the shared data folder (with nab/ and rca/)")
    parser.add_argument("--out", type=Path, default=MANIFEST, help="where to write (default %(default)s)")
    parser.add_argument("--check", action="store_true", help="compare with --out instead of writing it")
    parser.add_argument(
        "--pin-extras",
        action="store_true",
        help="download the files the shared copy lacks (licenses) and pin their size and SHA-256",
    )
    args = parser.parse_args(argv)
    manifest = build(args.shared_data, pin_extras=args.pin_extras)
    text = dumps(manifest)
    assert json.loads(text) == manifest
    if args.check:
        if not args.out.is_file() or args.out.read_text() != text:
            print(
                f"{args.out} is out of date: regenerate it with python -m factorylens.datasets._build_manifest "
                f"{args.shared_data}",
                file=sys.stderr,
            )
            return 1
        print(f"{args.out} is up to date", file=sys.stderr)
        return 0
    args.out.write_text(text)
    for name, info in manifest["datasets"].items():
        sizes = [f["size"] or 0 for f in info["files"]]
        print(f"{name}: {len(sizes)} files, {sum(sizes):,} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
