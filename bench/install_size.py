"""Installed size of each way factorylens installs: what a GPU node, a training image and the RCA
service each carry.

Method: build this checkout's wheel once, then for each install a fresh venv (``python -m venv``)
gets ``pip install '<wheel>[extras]'`` from PyPI; the size is the venv's site-packages minus what
an empty venv already has (pip, setuptools), so it is what factorylens and its dependencies add.
Needs PyPI; takes a few minutes (pandas, statsmodels and pyarrow are large downloads).

Usage: python bench/install_size.py [--keep DIR]
Last line: {"bench": "install_size", "node_agent_mb": x, "node_agent_sim_mb": x, "instrumentation_mb": x, "rca_mb": x}
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# (name, extras, what it is for, target MB or None)
INSTALLS = (
    ("node_agent", "", "node agent on a GPU node (receivers + CLI, NVML backend), instrumentation", 150.0),
    ("instrumentation", "", "instrumentation in a training image (the same base install, without torch)", 60.0),
    ("node_agent_sim", "sim", "node agent with the simulated GPUs (numpy)", 150.0),
    ("rca", "rca", "RCA service (pandas, statsmodels, pyarrow)", None),
)
HEAVY = ("pandas", "statsmodels", "pyarrow", "scipy", "grpc_tools", "torch")


def tree_bytes(path: Path) -> int:
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += (Path(folder) / name).lstat().st_size
            except OSError:
                pass
    return total


def site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python*/site-packages"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", metavar="DIR", help="build the venvs here and keep them")
    args = parser.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="factorylens-install-size-"))
    work.mkdir(parents=True, exist_ok=True)
    wheels = work / "wheel"
    print("building the wheel ...", file=sys.stderr)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(wheels),
            str(ROOT),
        ],
        check=True,
    )
    wheel = next(wheels.glob("factorylens-*.whl"))
    empty = work / "empty"
    subprocess.run([sys.executable, "-m", "venv", str(empty)], check=True)
    baseline = tree_bytes(site_packages(empty))
    sizes: dict[str, float] = {}
    heavy_found: dict[str, list[str]] = {}
    for name, extras, _, _ in INSTALLS:
        if name == "instrumentation":
            continue  # the same install as the node agent's
        venv = work / name
        print(f"installing {name} ({extras or 'base'}) ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        spec = f"{wheel}[{extras}]" if extras else str(wheel)
        subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", spec],
            check=True,
        )
        site = site_packages(venv)
        sizes[name] = (tree_bytes(site) - baseline) / 1e6
        heavy_found[name] = sorted(h for h in HEAVY if (site / h).exists())
    sizes["instrumentation"] = sizes["node_agent"]
    heavy_found["instrumentation"] = heavy_found["node_agent"]
    print(f"{'install':<17} {'extras':<7} {'MB':>7} {'target':>7}  heavy packages  what")
    for name, extras, what, target in INSTALLS:
        print(
            f"{name:<17} {extras or '-':<7} {sizes[name]:>7.1f} {target or '-':>7}  "
            f"{','.join(heavy_found[name]) or 'none':<14}  {what}"
        )
    print(json.dumps({"bench": "install_size", **{f"{k}_mb": round(v, 1) for k, v in sizes.items()}}))
    over = [n for n, _, _, t in INSTALLS if t is not None and sizes[n] > t]
    return 1 if over or heavy_found["node_agent"] else 0


if __name__ == "__main__":
    sys.exit(main())
