"""Logs as a signal: log lines become templates (a small Drain), and per-resource counts by severity and
by template, zero-filled so that a new error template is new behaviour the analysis can blame."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from factorylens.rca_service.analysis import KpiRankingAnalyzer
from factorylens.rca_service.store import SeriesInfo, SeriesStore, View
from factorylens.rca_service.store._logs import MAX_TEMPLATES_PER_SOURCE, ZERO_BINS, severity_of
from factorylens.rca_service.store._templates import (
    MAX_TEXT_CHARS,
    MAX_TOKENS,
    OTHER_ID,
    TemplateMiner,
    template_id,
    tokens_of,
)
from factorylens.simulation import ScenarioRun, ingest

from .otlp_builders import T0, S, logs_request, trace_request

RECORDS, TEMPLATES = "factorylens.log.records", "factorylens.log.templates"
INFO, ERROR = 9, 17  # OTel severity numbers
CHECKOUT = {"service.name": "checkout", "host.name": "node-1"}


def served(i: int) -> str:
    return f"GET /cart served in {10 + i % 17} ms for user {1000 + 7 * i} from 10.0.{i % 3}.{i % 250}"


def failed(i: int) -> str:
    return f"ValueError: invalid literal for int() with base 10: 'q{i}' at line {40 + i % 9}"


# ---- the miner on its own ----------------------------------------------------------------------------
def test_lines_differing_in_numbers_ids_and_addresses_share_one_template():
    miner = TemplateMiner()
    ids = {miner.match(served(i)).id for i in range(50)}
    ids |= {miner.match(f"GET /cart served in 3 ms for user {u} from 10.0.0.1").id for u in ("1f2e3d4c5b6a", "0x9")}
    assert len(ids) == 1 and len(miner) == 1
    [tid] = ids
    assert miner.get(tid).text == "GET /cart served in <*> ms for user <*> from <*>"
    assert tokens_of("GPU-1f2e3d4c-aaaa-bbbb-cccc-0123456789ab gpu3 node-12 v1.2.3") == [
        "GPU-<*>",
        "gpu3",
        "node-<*>",
        "v1.2.3",
    ]


def test_a_new_exception_is_a_new_template_whose_id_stays_as_it_generalizes():
    miner = TemplateMiner()
    info = miner.match(served(0)).id
    first = miner.match(failed(0))
    assert first.id != info and first.id == template_id(tokens_of(failed(0)))  # a hash of its first text
    assert miner.match(failed(1)).id == first.id and "'<*>'" not in first.text
    generalized = miner.match("ValueError: invalid literal for int() with base 10: 'abc' at line 7")
    assert generalized.id == first.id and "'<*>'" not in generalized.text and "<*> at line <*>" in generalized.text
    assert miner.match("KeyError: 'user'").id not in (info, first.id)
    # another process meeting the same first line names it the same; a restored miner keeps the ids
    assert TemplateMiner().match(failed(0)).id == first.id
    restored = TemplateMiner()
    restored.restore(miner.state())
    assert restored.match(failed(5)).id == first.id and len(restored) == len(miner) == 3


def test_the_miner_is_bounded_in_templates_tokens_and_text():
    miner = TemplateMiner(max_templates=3)
    lines = ["disk full", "disk full on /mnt", "disk full on /mnt again"]  # token counts differ: unalike
    ids = [miner.match(line).id for line in lines]
    assert len(set(ids)) == 3
    assert miner.match("a completely different line").id == OTHER_ID
    assert miner.match("disk full on /data").id == ids[1]  # known ones still match
    assert TemplateMiner().match("new line", may_add=False).id == OTHER_ID
    long = " ".join(f"word{k}" for k in range(10_000))
    assert len(tokens_of(long)) <= MAX_TOKENS
    assert len(TemplateMiner().match(long).text) <= MAX_TEXT_CHARS
    with pytest.raises(ValueError):
        TemplateMiner(max_templates=0)


def test_severity_buckets_follow_the_otel_severity_number_else_the_text():
    assert [severity_of(n, "") for n in (1, 5, 9, 12, 13, 17, 20, 21, 24)] == [
        "TRACE",
        "DEBUG",
        "INFO",
        "INFO",
        "WARN",
        "ERROR",
        "ERROR",
        "FATAL",
        "FATAL",
    ]
    assert [severity_of(0, t) for t in ("warning", "Error", "CRITICAL", "notice", "", "loud")] == [
        "WARN",
        "ERROR",
        "FATAL",
        "INFO",
        "UNSPECIFIED",
        "UNSPECIFIED",
    ]
    assert severity_of(17, "INFO") == "ERROR"  # the number decides


# ---- through OTLP ingest -----------------------------------------------------------------------------
def series_of(store: SeriesStore, metric: str, **attributes: str) -> list[SeriesInfo]:
    return [i for i in store.list_series(metric) if all(i.attributes.get(k) == v for k, v in attributes.items())]


def counts(store: SeriesStore, info: SeriesInfo) -> dict[int, float]:
    _, ts, values = store.query(info.id, View.INCREASE)
    return {int(t - T0) // S: v for t, v in zip(ts, values, strict=True)}


def log_lines(store: SeriesStore, tick: int, lines: list[tuple[int, str]], resource: dict | None = None) -> None:
    records = [
        {"time": T0 + tick * 10 * S + k * S // 10, "severity": "", "severity_number": number, "body": body}
        for k, (number, body) in enumerate(lines)
    ]
    store.ingest_logs(logs_request(records, resource or CHECKOUT))


def test_log_records_become_counts_by_severity_and_by_template_zero_filled_while_the_service_logs():
    store = SeriesStore()
    for tick in range(100):
        lines = [(INFO, served(3 * tick + k)) for k in range(3)]
        if tick >= 90:
            lines += [(ERROR, failed(tick)), (ERROR, failed(tick + 1))]
        log_lines(store, tick, lines)
    [info_count] = series_of(store, RECORDS, **{"log.severity": "INFO"})
    [error_count] = series_of(store, RECORDS, **{"log.severity": "ERROR"})
    [info_template] = series_of(store, TEMPLATES, **{"log.severity": "INFO"})
    [error_template] = series_of(store, TEMPLATES, **{"log.severity": "ERROR"})
    assert error_template.entity == "service:checkout" and error_template.domain == "app"
    assert error_template.description.startswith("ValueError: invalid literal for int() with base <*>: <*>")
    assert info_template.attributes["log.template.id"] != error_template.attributes["log.template.id"]
    assert set(counts(store, info_count).values()) == {3.0} and len(counts(store, info_count)) == 100
    # the error series reads 0 for the service's last ZERO_BINS bins before its first line, then 2
    errors = counts(store, error_template)
    assert [errors[10 * t] for t in range(90 - ZERO_BINS, 100)] == [0.0] * ZERO_BINS + [2.0] * 10
    assert min(errors) == 10 * (90 - ZERO_BINS)
    assert counts(store, error_count) == errors
    # a bin where the service logged only errors: its info template reads 0 there
    log_lines(store, 100, [(ERROR, failed(7))])
    assert counts(store, info_template)[1000] == 0.0
    # later requests for a bin already written add to it, and write no second zero
    log_lines(store, 100, [(INFO, served(1))])
    log_lines(store, 100, [(ERROR, failed(8))])
    assert counts(store, info_template)[1000] == 1.0 and store.extent(info_template.id)[0] == 100 + 2
    assert counts(store, error_template)[1000] == 2.0


def test_scenario_xid_log_records_land_as_error_and_template_counts():
    run = ScenarioRun("gpu_xid_ecc", seed=1, hosts=1, gpus_per_host=4, onset_s=60.0, duration_s=100.0, logs=True)
    now = [0.0]
    store = SeriesStore(clock=lambda: now[0])
    for ts, requests in run:
        now[0] = ts / 1e9
        ingest(store, requests)
    [xid] = store.list_series("factorylens.events")
    [errors] = series_of(store, RECORDS, **{"log.severity": "ERROR"})
    [template] = series_of(store, TEMPLATES, **{"log.severity": "ERROR"})
    assert errors.entity == template.entity == xid.entity == "host:sim-node-0"
    assert template.description == "XID <*> on GPU <*> (GPU-<*>): contained uncorrectable ECC error"
    total = store.query(template.id, View.INCREASE)[2].sum()
    assert total == store.query(errors.id, View.INCREASE)[2].sum() == store.query(xid.id, View.INCREASE)[2].sum() > 0


def test_templates_survive_a_snapshot_and_their_description_follows_the_text():
    store = SeriesStore()
    for tick in range(5):
        log_lines(store, tick, [(INFO, served(tick)), (ERROR, "retry 1 of 3 failed: connection refused by db-1")])
    restored = SeriesStore()
    restored.restore(pickle.loads(pickle.dumps(store.state())))  # as a snapshot keeps it
    log_lines(restored, 5, [(ERROR, "retry 2 of 3 failed: connection reset by db-2")])
    [template] = series_of(restored, TEMPLATES, **{"log.severity": "ERROR"})
    assert counts(restored, template) == {10 * t: 1.0 for t in range(6)}  # the same series, no new template
    assert template.description == "retry <*> of <*> failed: connection <*> by db-<*>"
    assert len(restored.list_series(TEMPLATES)) == 2
    # a resource that logged nothing within the retention is forgotten with its series
    restored.enforce_retention((T0 + 2 * 86400 * S) / S)
    assert restored.logs.state() == [] and not restored.list_series("factorylens.log.*")


def test_counts_are_bounded_per_resource_and_our_own_incidents_are_not_counted():
    store = SeriesStore()
    # 150 unalike lines: each starts with another word (a leaf of its own)
    lines = [(ERROR, f"{chr(97 + k // 26)}{chr(97 + k % 26)} failed") for k in range(150)]
    log_lines(store, 0, lines)
    ids = {i.attributes["log.template.id"] for i in store.list_series(TEMPLATES)}
    assert len(ids) == MAX_TEMPLATES_PER_SOURCE + 1 and OTHER_ID in ids
    [other] = series_of(store, TEMPLATES, **{"log.template.id": OTHER_ID})
    assert sum(counts(store, other).values()) == 50 and "limit" in other.description
    store.ingest_logs(
        logs_request(
            [{"time": T0, "event_name": "factorylens.incident", "body": "incident opened"}], {"service.name": "rca"}
        )
    )
    assert not [i for i in store.list_series("factorylens.log.*") if i.resource.get("service.name") == "rca"]


# ---- through the analysis ----------------------------------------------------------------------------
def test_a_burst_of_a_new_exception_makes_its_service_the_top_cause_of_its_callers_break():
    """frontend calls checkout and inventory; checkout starts raising a ValueError its caller waits on
    (retries), inventory logs twice as many info lines at the same time (traffic, not trouble)."""
    now = T0 + 2100 * S
    store = SeriesStore(clock=lambda: now / 1e9)
    analyzer = KpiRankingAnalyzer()
    rng = np.random.default_rng(7)
    for callee in ("checkout", "inventory"):
        store.ingest_spans(
            trace_request(
                [{"name": "call", "start": T0, "end": T0 + S // 10, "kind": 3, "attributes": {"peer.service": callee}}],
                service="frontend",
            )
        )
    for tick in range(1, 200):
        broken = tick >= 180
        start = T0 + tick * 10 * S
        latency = 0.2 + (0.4 if broken else 0.0)
        store.ingest_spans(
            trace_request(
                [
                    {"name": "GET /", "start": start, "end": start + int((latency + rng.normal(0, 0.005)) * S)}
                    for _ in range(5)
                ],
                service="frontend",
            )
        )
        log_lines(
            store, tick, [(INFO, served(3 * tick + k)) for k in range(3)] + [(ERROR, failed(tick))] * (3 * broken)
        )
        inventory = [(INFO, f"reserved {rng.integers(1, 9)} items of sku {rng.integers(10_000)}")] * (2 + 2 * broken)
        log_lines(store, tick, inventory, {"service.name": "inventory", "host.name": "node-2"})
        analyzer.analyze(store, start + 5 * S)
    [template] = series_of(store, TEMPLATES, **{"log.severity": "ERROR"})
    assert template.id in analyzer.detection.active  # the detectors flag the new template on their own
    [incident] = analyzer.incidents()
    top = incident.causes[0]
    assert top.entity == "service:checkout"
    assert top.evidence[0].series_id == template.id
    assert 'ValueError: invalid literal for int() with base <*>: <*> at line <*>"' in top.explanation
    # inventory's doubled info lines are anomalous too, but a volume, not its trouble
    [busier] = [i for i in series_of(store, TEMPLATES, **{"log.severity": "INFO"}) if i.entity == "service:inventory"]
    assert busier.id in analyzer.detection.active
