"""A Nezha-format system with spans but no service-mesh files: ranked from its metrics and spans alone,
the spans going through the RCA service's span ingest; ``bench/rca.py`` always ends with the JSON line
of what loaded. Skips without a copy of the Nezha data (``factorylens datasets fetch nezha``)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest

from factorylens.evaluation import load_nezha
from factorylens.evaluation._datasets import WITH_SPANS, WITHOUT_SPANS
from factorylens.evaluation._spans import read_span_table, span_requests

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DAY = "2022-08-22"
FIRST_FAULT_MINUTES = ("03_53", "03_54", "03_55")  # frontend cpu_contention at 03:53:54


@pytest.fixture(scope="module")
def spans_only_day(nezha_dir, tmp_path_factory) -> Path:
    """One day of another "system": its pod metrics, entry SLI, labels and three minutes of spans, without
    ``dependency.csv``, ``source_50.csv`` and ``destination_50.csv``."""
    source = nezha_dir / "rca_data" / DAY
    day = tmp_path_factory.mktemp("other-system") / "rca_data" / DAY
    (day / "metric").mkdir(parents=True)
    (day / "trace").mkdir()
    shutil.copy(source / f"{DAY}-fault_list.json", day)
    for path in (source / "metric").iterdir():
        if path.name.endswith("_metric.csv") or path.name == "front_service.csv":
            shutil.copy(path, day / "metric")
    for minute in FIRST_FAULT_MINUTES:
        shutil.copy(source / "trace" / f"{minute}_trace.csv.gz", day / "trace")
    return day


def test_a_day_without_mesh_files_takes_its_call_graph_and_evidence_from_spans(spans_only_day):
    metrics_only = list(load_nezha(spans_only_day))
    cases = list(load_nezha(spans_only_day, traces=True))
    assert len(cases) == len(metrics_only) == 24
    topology = cases[0].topology
    calls = {edge for edge, relation in topology.edges.items() if relation == "calls"}
    # the Online Boutique call graph, as the spans show it
    assert {
        ("frontend", "cartservice"),
        ("frontend", "productcatalogservice"),
        ("checkoutservice", "paymentservice"),
    } <= calls
    assert ("entry", "frontend") in calls and ("entry", "cartservice") not in calls
    first = cases[0]
    assert first.subset == WITH_SPANS and {c.subset for c in cases[1:]} == {WITHOUT_SPANS}
    own_time = [
        c for c in first.frame.columns if c[1].startswith("factorylens.span.self_duration") and c[1].endswith(" p95")
    ]
    assert {entity for entity, _ in own_time} >= {"frontend", "cartservice", "productcatalogservice"}
    # the faulty frontend's own time around its calls to the cart rises once the fault is in
    get_cart = [c for c in own_time if c[0] == "frontend" and "CartService/GetCart" in c[1]]
    assert len(get_cart) == 1
    frontend = first.frame[get_cart[0]]
    before = frontend[frontend.index <= first.t0].dropna()
    after = frontend[(frontend.index > first.t0 + pd.Timedelta(seconds=60))].dropna()
    assert len(before) and len(after) and after.max() > 5 * before.iloc[-1]


def test_span_rows_become_otlp_requests_per_pod_in_end_time_order(nezha_dir):
    table = read_span_table(nezha_dir / "rca_data" / DAY / "trace" / "03_53_trace.csv.gz").head(2000)
    requests = list(span_requests(table, lambda pod: pod.rsplit("-", 2)[0], per_request=700))
    assert len(requests) == 3
    ends = [
        s.end_time_unix_nano for r in requests for rs in r.resource_spans for ss in rs.scope_spans for s in ss.spans
    ]
    assert len(ends) == 2000 and all(
        len(s) == 8 for s in [requests[0].resource_spans[0].scope_spans[0].spans[0].span_id]
    )
    assert max(ends[:700]) <= min(ends[700:1400])
    services = {
        a.value.string_value
        for r in requests
        for rs in r.resource_spans
        for a in rs.resource.attributes
        if a.key == "service.name"
    }
    assert "frontend" in services and not any(s.startswith("frontend-") for s in services)


def _bench_rca():
    spec = importlib.util.spec_from_file_location("bench_rca", ROOT / "bench" / "rca.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_rca"] = module
    spec.loader.exec_module(module)
    return module


def test_bench_ranks_spans_only_days_and_reports_a_broken_dataset_in_its_json_line(spans_only_day, tmp_path, capsys):
    broken = tmp_path / "broken-petshop"
    broken.mkdir()
    status = _bench_rca().main(["--nezha", str(spans_only_day.parent), "--petshop", str(broken), "--json-only"])
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert status == 0
    assert "error" in line["petshop"] and "broken-petshop" in line["petshop"]["error"]
    assert line["nezha"]["cases"] == line["nezha_traces"]["cases"] == 24
    assert line["nezha_traces"]["name"].startswith("other-system")  # named from its folder
    assert line["nezha_traces"][WITH_SPANS]["cases"] == 1 and line["nezha_traces"][WITHOUT_SPANS]["cases"] == 23
    assert line["baro_nezha_traces"]["cases"] == 24
