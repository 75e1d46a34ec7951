"""The layout: one factorylens namespace over the pipeline's folders, and lean installs where the code
runs (the node agent and the instrumentation load without the RCA service's analysis stack)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import tomllib
from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[1]
PIPELINE_FOLDERS = ("receivers", "instrumentation", "processors", "rca_service")
# above the pipeline: the packages the benchmarks and tests score and simulate with
HARNESSES = {"evaluation": "bench/evaluation", "simulation": "bench/simulation"}
RCA_ONLY = ("pandas", "statsmodels", "pyarrow", "scipy", "grpc_tools", "grpc_status")


def test_every_pipeline_folder_is_linked_into_the_namespace_and_every_package_imports():
    for folder in PIPELINE_FOLDERS:
        link = ROOT / "factorylens" / folder
        assert link.is_symlink() and link.resolve() == (ROOT / folder).resolve(), f"factorylens/{folder}"
    for name, folder in HARNESSES.items():
        link = ROOT / "factorylens" / name
        assert link.is_symlink() and link.resolve() == (ROOT / folder).resolve(), f"factorylens/{name}"
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = find_packages(str(ROOT), include=tool["packages"]["find"]["include"])
    for folder in PIPELINE_FOLDERS:
        assert f"factorylens.{folder}" in packages
    for folder, _, files in os.walk(ROOT / "factorylens", followlinks=True):
        if any(f.endswith(".py") for f in files):  # no folder with code is left out of the wheel
            package = ".".join(Path(folder).relative_to(ROOT).parts)
            assert package in packages, f"{folder} has Python files but no __init__.py"
    for package in packages:
        importlib.import_module(package)


def _run_blocked(code: str, blocked: tuple[str, ...]) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter where importing any of ``blocked`` fails, as it would
    where they are not installed."""
    prelude = textwrap.dedent(f"""
        import importlib.abc, importlib.machinery, sys
        BLOCKED = {blocked!r}
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
                return None
        sys.meta_path.insert(0, Block())
        _find_spec = importlib.util.find_spec
        importlib.util.find_spec = lambda n, *a: None if n.split(".")[0] in BLOCKED else _find_spec(n, *a)
    """)
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def test_node_agent_and_instrumentation_load_without_the_rca_stack_or_numpy():
    done = _run_blocked(
        """
        import factorylens.instrumentation, factorylens.receivers.gpu, factorylens.receivers.node
        from factorylens.receivers.gpu.nvml import NvmlBackend
        from factorylens.cli import main
        for argv in (["--help"], ["gpu", "--help"], ["rca", "serve", "--help"], ["metrics"]):
            try:
                main(argv)
            except SystemExit as exit:
                assert exit.code == 0, argv
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in {"pandas", "statsmodels", "numpy", "pyarrow"})
        assert not heavy, heavy
        print("lean")
    """,
        (*RCA_ONLY, "numpy"),
    )
    assert done.returncode == 0 and "lean" in done.stdout, done.stderr


@pytest.mark.parametrize(
    "argv, extra",
    [
        (["gpu", "--backend", "sim", "--duration", "1"], "sim"),
        (["rca", "serve"], "rca"),
        (["rca", "replay", "x.csv"], "rca"),
        (["demo", "--plain"], "demo"),
    ],
)
def test_a_missing_extra_is_a_clear_error(argv, extra):
    done = _run_blocked(
        f"""
        from factorylens.cli import main
        sys.exit(main({argv!r}))
    """,
        (*RCA_ONLY, "numpy"),
    )
    assert done.returncode == 2, done.stderr
    assert f"pip install 'factorylens[{extra}]'" in done.stderr and "Traceback" not in done.stderr
