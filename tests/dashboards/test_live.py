"""Every panel of every generated dashboard, queried against a real Prometheus fed by the real pipeline
(simulated GPUs with faults, the instrumented training loop, a simulated serving fleet, the RCA service
and its remote-write; see live.py): the test names each panel that comes back empty."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from factorylens.dashboards import dashboard_json
from factorylens.dashboards._panels import metric
from factorylens.dashboards._queries import expand, panel_queries, variable_queries
from factorylens.registry import Metrics
from tests.conftest import wait_until
from tests.dashboards.live import FedPrometheus, query, query_range, series

pytestmark = pytest.mark.slow
INCIDENT_WITHIN_S = 180.0  # the thermal fault starts 24 s in; the incident opens seconds later (unloaded)
SERVING_WITHIN_S = 180.0
RATE_HISTORY_S = 75.0  # every rate needs a $__rate_interval (60 s) of points
STEP_S = 5.0
# a workload's predictability is exported once the RCA service has fitted seasonal baselines to its
# series (360 points each): the serving history's, about a minute after it arrives
PREDICTABILITY_WITHIN_S = 180.0


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FedPrometheus]:
    run = FedPrometheus(tmp_path_factory.mktemp("live"))
    try:
        run.start()
        cause = metric(Metrics.FACTORYLENS_INCIDENT_CAUSE_SCORE)
        wait_until(lambda: query(run.prometheus, cause), INCIDENT_WITHIN_S, 1.0, "an incident's causes in Prometheus")
        wait_until(
            lambda: time.time() - run.cluster_started_s >= RATE_HISTORY_S, RATE_HISTORY_S, 1.0, "a rate interval"
        )
        wait_until(lambda: not run.serving.is_alive(), SERVING_WITHIN_S, 1.0, "the serving history sent")
        predictability = metric(Metrics.FACTORYLENS_BASELINE_PREDICTABILITY)
        wait_until(lambda: query(run.prometheus, predictability), PREDICTABILITY_WITHIN_S, 2.0, "a predictability")
        yield run
    finally:
        run.stop()


def _has_data(result: list[dict]) -> bool:
    for found in result:
        values = found.get("values") or [found.get("value")]
        if any(v is not None and not math.isnan(float(v[1])) for v in values):
            return True
    return False


def test_every_panel_shows_data(fed: FedPrometheus) -> None:
    end_s = time.time()
    start_s = fed.started_s - 900  # the serving history reaches back ten minutes before the start
    empty_panels, empty_queries, queried = [], [], 0
    for model in dashboard_json().values():
        shown: dict[str, bool] = {}
        for q in panel_queries(model):
            expr = expand(q.expr, range_s=end_s - start_s)
            if q.instant:
                result = query(fed.prometheus, expr, end_s)
            else:
                result = query_range(fed.prometheus, expr, start_s, end_s, STEP_S)
            queried += 1
            found = _has_data(result)
            shown[q.panel] = shown.get(q.panel, False) or found
            if not found:
                empty_queries.append(f"{q.dashboard} / {q.panel} / {q.ref} ({q.legend})")
        empty_panels += [f"{model['title']} / {title}" for title, ok in shown.items() if not ok]
    print(f"\n{queried} queries; empty panels: {len(empty_panels)}; empty queries: {len(empty_queries)}")
    for line in empty_queries:
        print(f"  empty query: {line}")
    assert queried >= 80
    assert empty_panels == []


def test_every_variable_offers_values(fed: FedPrometheus) -> None:
    """Each variable's ``label_values(selector, label)`` as Grafana runs it: the series API over the range."""
    end_s, start_s = time.time(), fed.started_s - 900
    empty = []
    for model in dashboard_json().values():
        for name, definition in variable_queries(model):
            selector, label = definition.removeprefix("label_values(").removesuffix(")").rsplit(", ", 1)
            found = series(fed.prometheus, expand(selector), start_s, end_s)
            if not {s.get(label) for s in found} - {None, ""}:
                empty.append(f"{model['title']} / ${name}")
    assert empty == []


def test_rendering_every_dashboard_takes_under_30_s(fed: FedPrometheus, tmp_path: Path) -> None:
    """``factorylens dashboards render`` against the fed Prometheus once the pipeline has stopped (the
    renderer is timed, not the simulation sharing its process); runs last in this module."""
    from factorylens.dashboards._render import render_all

    fed.stop_pipeline()
    started = time.perf_counter()
    results = render_all(fed.prometheus.url, tmp_path, range_s=time.time() - fed.started_s + 900)
    elapsed = time.perf_counter() - started
    print(f"\nrendered {len(results)} dashboards in {elapsed:.1f} s")
    assert len(results) == len(dashboard_json())
    for result in results:
        assert result.path.stat().st_size > 20_000, result.path
        assert result.empty == [], (result.path, result.empty)
    assert elapsed <= 30.0
