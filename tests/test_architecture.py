"""The RCA core's shape, held by tests: small functions, and the store read only through its API."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ("api/v1", "api/prompb")
MAX_FUNCTION_LINES = 60
STORE_INTERNALS = re.compile(r"(?<![\w.])(?:self\.)?_?store\.(?:series|lock|span_sample|call_graph)\b")


def _sources(*folders: str) -> list[Path]:
    return [p for folder in folders for p in sorted((ROOT / folder).rglob("*.py"))]


def test_no_function_in_the_rca_service_is_longer_than_sixty_lines():
    long = []
    for path in _sources("rca_service"):
        if any(part in path.as_posix() for part in GENERATED):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long


def test_nothing_outside_the_store_reads_its_internals():
    readers = []
    for path in _sources("rca_service", "factorylens", "processors", "bench"):
        if "rca_service/store/" in path.as_posix() or path.is_symlink():
            continue
        for n, line in enumerate(path.read_text().splitlines(), start=1):
            if STORE_INTERNALS.search(line):
                readers.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not readers, readers


def test_code_names_registry_signals_through_the_constants_not_literals():
    """``Metrics.HW_GPU_UTILIZATION``, not ``"hw.gpu.utilization"``: a misspelt constant fails at import
    and in the type checker; a misspelt string emits or queries a series nobody declared."""
    import io
    import tokenize

    from factorylens.registry import REGISTRY

    names = {n for n in [*(m.name for m in REGISTRY.metrics), *(a.name for a in REGISTRY.attributes)] if "." in n}
    data = ("registry/_catalog.py", "registry/_translations.py", "registry/names.py", "api/v1/", "api/prompb/")
    statement_start = (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, None)  # a docstring
    literals = []
    packages = ("rca_service", "receivers", "processors", "instrumentation", "factorylens", "bench/simulation")
    for path in _sources(*packages, "bench/evaluation"):
        if path.is_symlink() or any(part in path.as_posix() for part in data):
            continue
        previous = None
        for token in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
            if token.type == tokenize.STRING and token.string[1:-1] in names and previous not in statement_start:
                literals.append(f"{path.relative_to(ROOT)}:{token.start[0]}: {token.string}")
            if token.type not in (tokenize.COMMENT, tokenize.NL):
                previous = token.type
    assert not literals, literals
