"""Trace evidence: exclusive time, error origins, call edges with counts and peers, across requests."""

from __future__ import annotations

import numpy as np
import pytest

from factorylens.rca_service.analysis import KpiRankingAnalyzer
from factorylens.rca_service.store import SeriesStore, StoreLimits, View
from factorylens.registry import Metrics
from tests.rca.otlp_builders import trace_request

S = 1_000_000_000
T0 = 1_700_000_000 * S
MS = S // 1000


def _one(store: SeriesStore, metric: str, **attributes: str):
    found = [
        i
        for i in store.of_metric(metric)
        if all({**i.resource, **i.attributes}.get(k.replace("_", "."), v) == v for k, v in attributes.items())
    ]
    assert len(found) == 1, [(i.resource, i.attributes) for i in store.of_metric(metric)]
    return found[0]


def _values(store: SeriesStore, sid: str, view: View) -> np.ndarray:
    _, _, values = store.query(sid, view)
    return values[np.isfinite(values)]


def _frontend_checkout_payments(store: SeriesStore, start: int, trace: bytes, payments_ms: int, fail: bool) -> None:
    """frontend GET / (server) → checkout PlaceOrder (server) → payments Charge (server), each service
    exporting its own spans, the deepest first (as batch exporters do)."""
    root, mid, leaf = trace[:8], trace[8:], bytes(reversed(trace[:8]))
    store.ingest_spans(
        trace_request(
            [
                {
                    "name": "Charge",
                    "start": start + 20 * MS,
                    "end": start + (20 + payments_ms) * MS,
                    "trace_id": trace,
                    "span_id": leaf,
                    "parent_span_id": mid,
                    "error": fail,
                }
            ],
            service="payments",
        )
    )
    store.ingest_spans(
        trace_request(
            [
                {
                    "name": "PlaceOrder",
                    "start": start + 10 * MS,
                    "end": start + (30 + payments_ms) * MS,
                    "trace_id": trace,
                    "span_id": mid,
                    "parent_span_id": root,
                    "error": fail,
                }
            ],
            service="checkout",
        )
    )
    store.ingest_spans(
        trace_request(
            [
                {
                    "name": "GET /",
                    "start": start,
                    "end": start + (40 + payments_ms) * MS,
                    "trace_id": trace,
                    "span_id": root,
                    "error": fail,
                }
            ],
            service="frontend",
        )
    )


def test_exclusive_time_stays_with_the_slow_callee_and_error_origin_is_the_deepest_failure():
    store = SeriesStore()
    rng = np.random.default_rng(1)
    for i in range(20):
        _frontend_checkout_payments(store, T0 + i * S, rng.bytes(16), payments_ms=500, fail=i % 2 == 0)
    store.settle_spans(flush=True)
    own = {
        service: _values(store, _one(store, Metrics.FACTORYLENS_SPAN_SELF_DURATION, service_name=service).id, View.MEAN)
        for service in ("frontend", "checkout", "payments")
    }
    # each caller's own time is its 10 + 10 ms around the call, whatever the callee took
    assert own["payments"] == pytest.approx(np.full_like(own["payments"], 0.5), rel=1e-6)
    assert own["checkout"] == pytest.approx(np.full_like(own["checkout"], 0.02), rel=1e-6)
    assert own["frontend"] == pytest.approx(np.full_like(own["frontend"], 0.02), rel=1e-6)
    # all three spans failed in 10 traces; only payments, where nothing below it failed, began them
    origins = {
        i.resource["service.name"]: _values(store, i.id, View.RAW).sum()
        for i in store.of_metric(Metrics.FACTORYLENS_SPAN_ERROR_ORIGINS)
    }
    assert origins == {"payments": 10, "checkout": 0, "frontend": 0}
    # the call graph with its counts, and each edge's calls and latency on the callee
    assert store.call_counts() == {("frontend", "checkout"): 20, ("checkout", "payments"): 20}
    edge = _one(store, Metrics.FACTORYLENS_SPAN_EDGE_DURATION, service_name="payments")
    assert edge.attributes == {"factorylens.span.caller": "checkout"}
    p95 = _values(store, edge.id, View.P95)
    assert len(p95) and np.all((p95 >= 0.5) & (p95 <= 0.5 * 2**0.25))  # within one bucket (19%)


def test_parallel_children_count_once_in_the_parents_exclusive_time():
    store = SeriesStore()
    trace, root = b"t" * 16, b"r" * 8
    children = [
        {"name": "a", "start": T0 + 10 * MS, "end": T0 + 60 * MS, "trace_id": trace, "span_id": b"a" * 8},
        {"name": "b", "start": T0 + 30 * MS, "end": T0 + 80 * MS, "trace_id": trace, "span_id": b"b" * 8},
    ]
    for child in children:
        child["parent_span_id"] = root
    store.ingest_spans(trace_request(children, service="db"))
    store.ingest_spans(
        trace_request(
            [{"name": "q", "start": T0, "end": T0 + 100 * MS, "trace_id": trace, "span_id": root}], service="api"
        )
    )
    store.settle_spans(flush=True)
    own = _values(store, _one(store, Metrics.FACTORYLENS_SPAN_SELF_DURATION, service_name="api").id, View.MEAN)
    assert own == pytest.approx([0.03])  # 100 ms less the 70 ms the two overlapping children cover


def test_a_parent_arriving_after_its_child_settled_still_makes_the_edge():
    store = SeriesStore(StoreLimits(span_settle_s=1.0))
    trace = b"x" * 16
    child = {"name": "c", "start": T0, "end": T0 + 10 * MS, "trace_id": trace, "span_id": b"c" * 8}
    store.ingest_spans(trace_request([{**child, "parent_span_id": b"p" * 8}], service="callee"))
    # much later traffic settles the child before its parent shows up
    store.ingest_spans(trace_request([{"name": "other", "start": T0 + 5 * S, "end": T0 + 6 * S}], service="callee"))
    assert store.call_counts() == {}
    store.ingest_spans(
        trace_request(
            [{"name": "p", "start": T0, "end": T0 + 20 * MS, "trace_id": trace, "span_id": b"p" * 8}], service="caller"
        )
    )
    store.settle_spans(flush=True)
    assert store.call_counts() == {("caller", "callee"): 1}


def test_a_client_span_to_an_uninstrumented_peer_makes_the_peer_an_entity():
    store = SeriesStore()
    for i, peer in enumerate(
        [
            {"db.system": "redis", "server.address": "cache-1"},
            {"peer.service": "payments-api", "server.address": "10.0.0.9"},
            {"server.address": "api.example.com"},
        ]
    ):
        store.ingest_spans(
            trace_request(
                [{"name": "call", "start": T0 + i * S, "end": T0 + i * S + 30 * MS, "kind": 3, "attributes": peer}],
                service="cart",
            )
        )
    store.settle_spans(flush=True)
    assert store.call_counts() == {
        ("cart", "db:redis"): 1,
        ("cart", "payments-api"): 1,
        ("cart", "host:api.example.com"): 1,
    }
    entities = {i.entity for i in store.of_metric(Metrics.FACTORYLENS_SPAN_EDGE_DURATION)}
    assert entities == {"service:db:redis", "service:payments-api", "service:host:api.example.com"}


def test_retried_exports_count_each_span_once_and_pending_spans_are_bounded():
    store = SeriesStore()
    first = trace_request(
        [{"name": "p", "start": T0, "end": T0 + 2 * MS, "trace_id": b"t" * 16, "span_id": b"p" * 8}], "a"
    )
    store.ingest_spans(first)
    store.ingest_spans(first)
    store.ingest_spans(
        trace_request(
            [
                {
                    "name": "c",
                    "start": T0,
                    "end": T0 + MS,
                    "trace_id": b"t" * 16,
                    "span_id": b"c" * 8,
                    "parent_span_id": b"p" * 8,
                }
            ],
            "b",
        )
    )
    store.settle_spans(flush=True)
    assert store.call_counts() == {("a", "b"): 1}
    small = SeriesStore()
    small.traces._max_pending = 10
    small.ingest_spans(trace_request([{"name": "s", "start": T0 + i, "end": T0 + i + 1} for i in range(50)], "svc"))
    assert small.traces.pending <= 10 and small.traces.settled_early == 40


def _traffic(store: SeriesStore, start: int, rng: np.random.Generator, payments_ms: float, fail: bool) -> None:
    """Five requests a bin down frontend → checkout → payments, each service exporting its own spans."""
    for _ in range(5):
        _frontend_checkout_payments(store, start, rng.bytes(16), int(payments_ms + rng.normal(0, 1)), fail)


@pytest.mark.parametrize("fault", ["slow", "failing"])
def test_a_slow_or_failing_callee_explains_away_its_callers(fault):
    """Every span on the path gets slower (or fails) with payments, but only payments' own time (or its
    errors begun there) changed: payments is the cause; checkout, whose whole time and failures
    followed, is not blamed for them."""
    store = SeriesStore()
    analyzer = KpiRankingAnalyzer()
    rng = np.random.default_rng(3)
    for i in range(200):
        broken = i >= 180
        slow = broken and fault == "slow"
        _traffic(store, T0 + i * 10 * S, rng, 500 if slow else 20, fail=broken and fault == "failing")
        analyzer.analyze(store, T0 + i * 10 * S + 15 * S)
    incidents = analyzer.incidents()
    assert incidents, "the frontend's latency or errors should have broken"
    top = incidents[0].causes[0]
    assert top.entity == "service:payments"
    metric = "factorylens.span.self_duration" if fault == "slow" else "factorylens.span.error_origins"
    evidence = {store.require_info(e.series_id).metric for e in top.evidence if e.series_id}
    assert top.signal.startswith(metric) or metric in evidence, (top.signal, evidence)
    checkout = [c for c in incidents[0].causes if c.entity == "service:checkout"]
    assert not checkout or checkout[0].score < top.score


def test_an_undeclared_call_is_time_on_the_wire_and_the_edge_keeps_what_the_caller_waited():
    """Span tables without kinds (Nezha's): the frontend's span around its call to ads has ads' server
    span as its only child. The 300 ms between them is the network's, not the frontend's own time, and
    shows on the ads edge as the frontend waited it."""
    store = SeriesStore()
    trace, call = b"w" * 16, b"c" * 8
    store.ingest_spans(
        trace_request(
            [
                {
                    "name": "GetAds",
                    "start": T0 + 150 * MS,
                    "end": T0 + 170 * MS,
                    "trace_id": trace,
                    "span_id": b"s" * 8,
                    "parent_span_id": call,
                    "kind": 0,
                }
            ],
            service="ads",
        )
    )
    store.ingest_spans(
        trace_request(
            [{"name": "ads.GetAds", "start": T0, "end": T0 + 320 * MS, "trace_id": trace, "span_id": call, "kind": 0}],
            service="frontend",
        )
    )
    store.settle_spans(flush=True)
    own = _one(store, Metrics.FACTORYLENS_SPAN_SELF_DURATION, service_name="frontend")
    assert own.attributes["span.kind"] == "client"  # outbound: never the frontend's own trouble
    assert _values(store, own.id, View.MEAN) == pytest.approx([0.3])
    edge = _one(store, Metrics.FACTORYLENS_SPAN_EDGE_DURATION, service_name="ads")
    assert _values(store, edge.id, View.MEAN) == pytest.approx([0.32])
