"""Hostile OTLP against the real CLI server: a short run of bench/fuzz.py (the reported hostile inputs,
then structure-aware and byte-mutation cases for up to ~35 s) must neither crash nor hang the
service, and valid requests must not be refused whole; plus self-checks of the generators (they
reach the reported inputs, and what they build is valid protobuf).

The generators live in bench/fuzz.py (``python bench/fuzz.py`` runs the long campaign); this module
loads it by path, as bench/ is not a package. FACTORYLENS_FUZZ_SEED picks other cases (default 0).
"""

from __future__ import annotations

import importlib.util
import os
import random
import sys
from pathlib import Path

import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.slow  # `make check` leaves these out; `make test` runs them

FUZZ_PATH = Path(__file__).resolve().parents[2] / "bench" / "fuzz.py"
CASES = 400
MAX_SECONDS = 35.0
SEED = int(os.environ.get("FACTORYLENS_FUZZ_SEED", "0"))  # fixed, so a failure reruns the same cases


def _load_fuzz():
    name = "factorylens_bench_fuzz"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, FUZZ_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before exec: its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


fuzz = _load_fuzz()
REQUESTS = {
    "metrics": fuzz.metrics_service_pb2.ExportMetricsServiceRequest,
    "traces": fuzz.trace_service_pb2.ExportTraceServiceRequest,
    "logs": fuzz.logs_service_pb2.ExportLogsServiceRequest,
}


@pytest.fixture(scope="module")
def campaign_report(tmp_path_factory):
    """One short campaign against one service subprocess (restarted after a crash or hang)."""
    workdir = tmp_path_factory.mktemp("fuzz")
    service = fuzz.Service(
        workdir, analysis_interval_s=0.5, fsync="always", extra_args=fuzz.max_memory_args(1024), rss_limit_mb=2048
    )
    campaign = fuzz.Campaign(
        service, seed=SEED, cases=CASES, max_seconds=MAX_SECONDS, findings_dir=workdir / "findings", probe_restarts=1
    )
    try:
        report = campaign.run()
    finally:
        service.stop()
    return campaign, report


def _describe(report, outcomes: set[str]) -> str:
    lines = [
        f"#{f.index} {f.outcome} {f.kind} {f.signal} ({f.size:,} bytes): {f.detail[:300]}; "
        f"features: {', '.join(f.features[:8])}" + (f"; saved {f.path}" if f.path else "")
        for f in report.findings
        if f.outcome in outcomes
    ]
    return "\n".join(lines[:20])


def test_hostile_requests_neither_crash_nor_hang_the_service(campaign_report):
    campaign, report = campaign_report
    assert (report.crashes, report.hangs) == (0, 0), (
        f"seed {campaign.seed}: {report.crashes} crashes, {report.hangs} hangs in {report.cases} cases "
        f"(rerun: python bench/fuzz.py --seed {campaign.seed} --cases {report.cases} --max-memory-mb 1024 "
        f"--rss-limit-mb 2048; or --replay the saved requests):\n" + _describe(report, {"crash", "hang"})
    )
    assert report.cases >= min(CASES, 200), f"only {report.cases} cases ran in {report.seconds:.0f}s"


def test_valid_requests_are_not_refused_whole(campaign_report):
    """A valid message gets OK or a partial success, never INVALID_ARGUMENT for all of it, nor a
    server error."""
    campaign, report = campaign_report
    assert (report.refused, report.errors) == (0, 0), (
        f"seed {campaign.seed}: {report.refused} valid requests refused whole, {report.errors} server errors:\n"
        + _describe(report, {"refused", "error"})
    )


def test_the_known_hostile_inputs_were_all_sent(campaign_report):
    _, report = campaign_report
    sent = sum(n for (kind, _, _), n in report.outcomes.items() if kind == "known")
    assert sent == len(fuzz.KNOWN_CASES)


# ---- the generators themselves ------------------------------------------------------------------------
def _parses(sig: str, payload: bytes) -> bool:
    """True if it parses; False only for nesting past the parser's limit (still valid protobuf)."""
    try:
        REQUESTS[sig].FromString(payload)
        return True
    except DecodeError as exc:
        assert "MaxDepth" in str(exc), f"the generator built invalid {sig} protobuf: {exc}"
        return False


def test_structure_generators_reach_the_reported_hostile_inputs():
    features: list[str] = []
    for index in range(400):
        sig, payload, found = fuzz.structure_case(fuzz.RandomDraw(f"self-check:{index}"))
        assert len(payload) < fuzz.MAX_MESSAGE_MB << 20
        _parses(sig, payload)
        features.extend(found)
    text = "\n".join(features)

    def depths(shape: str) -> list[int]:
        return [int(f.rsplit(" ", 1)[1]) for f in features if f.startswith(f"{shape} depth ")]

    nested = depths("kvlist") + depths("array") + depths("mixed")
    assert any(28 <= d <= 36 for d in depths("kvlist")), "no kvlist nested 28-36 levels"
    assert max(nested) > 110, "no nesting past the parser's recursion limit"
    for needle in (
        "value 1024 KiB",
        "points 2 ms apart",
        "histogram NaN bound",
        "time far-future",
        "time u64max",
        "time far-past",
        "series in one metric",
        "attributes",
        "non-finite value",
    ):
        assert needle in text, f"no case with {needle!r} in 400 draws"


def test_mutations_change_real_requests_and_find_their_length_fields():
    rng = random.Random(1)
    corpus = fuzz.Corpus(rng)
    request = fuzz.realistic_request("metrics", rng, 1_800_000_000 * 10**9)
    fields = fuzz.wire_fields(request)
    assert sum(1 for f in fields if f.wire_type == 2) > 10
    assert all(0 <= f.tag_pos < f.start <= f.end <= len(request) for f in fields)
    changed = 0
    ops: set[str] = set()
    for index in range(300):
        sig, payload, found = fuzz.mutation_case(fuzz.RandomDraw(index), corpus)
        assert sig in fuzz.SIGNALS
        changed += payload not in corpus.items[found[0].split()[-1]]
        ops.update(op.split("-")[0] for op in found[1:])
    assert changed > 250
    assert {"bitflip", "truncate", "splice", "length", "wiretype"} <= ops


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(st.data())
def test_hypothesis_driven_generators_build_valid_protobuf(data):
    sig, payload, _ = fuzz.structure_case(fuzz.HypothesisDraw(data), 1_800_000_000 * 10**9)
    _parses(sig, payload)
    mutated, _ = fuzz.mutate(fuzz.HypothesisDraw(data), payload[:4096], b"\x0a\x00")
    assert isinstance(mutated, bytes)
