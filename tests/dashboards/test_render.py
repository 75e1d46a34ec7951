"""The PNG renderer's pieces without a server: units and legends as Grafana shows them, gaps kept as
gaps, and a whole dashboard drawn from canned query results, its empty panels named (the live test
renders every dashboard from a real Prometheus)."""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from factorylens.dashboards import dashboard_json
from factorylens.dashboards._render import _broken, format_value, legend, render_dashboard


@pytest.mark.parametrize(
    ("value", "unit", "shown"),
    [
        (0.256, "percentunit", "25.6%"),
        (3 * 1024**3, "bytes", "3 GiB"),
        (2.5e9, "Bps", "2.5 GB/s"),
        (1.41e9, "hertz", "1.41 GHz"),
        (0.042, "s", "42 ms"),
        (12.5, "s", "12.50 s"),
        (1234.5, "currencyUSD", "$1,234.50"),
        (83.0, "celsius", "83°C"),
        (2.0e6, "short", "2M"),
        (math.nan, "watt", "–"),
    ],
)
def test_values_are_formatted_in_their_unit(value: float, unit: str, shown: str) -> None:
    assert format_value(value, unit) == shown


def test_legends_fill_grafanas_templates() -> None:
    labels = {"__name__": "x", "host_name": "n1", "hw_id": "GPU-1"}
    assert legend("{{host_name}} {{ hw_id }}", labels) == "n1 GPU-1"
    assert legend("", labels) == "host_name=n1, hw_id=GPU-1"


def test_a_gap_in_the_samples_stays_a_gap() -> None:
    xs, ys = _broken([0.0, 5.0, 10.0, 100.0], [1.0, 2.0, 3.0, 4.0], gap_s=15.0)
    assert xs == [0.0, 5.0, 10.0, 55.0, 100.0]
    assert math.isnan(ys[3]) and ys[:3] == [1.0, 2.0, 3.0] and ys[4] == 4.0


class CannedPrometheus:
    """Answers every query with one series (instant or range), except those naming ``absent``."""

    def __init__(self, absent: str) -> None:
        self.absent = absent
        self.queries = 0

    def instant(self, expr: str, at_s: float) -> list[dict[str, Any]]:
        self.queries += 1
        return [] if self.absent in expr else [{"metric": {"hw_id": "GPU-1"}, "value": [at_s, "0.5"]}]

    def range(self, expr: str, start_s: float, end_s: float, step_s: float) -> list[dict[str, Any]]:
        self.queries += 1
        if self.absent in expr:
            return []
        times = [start_s + i * step_s for i in range(int((end_s - start_s) / step_s))]
        return [{"metric": {"hw_id": "GPU-1"}, "values": [[t, str(0.5 + 0.1 * math.sin(t / 60))] for t in times]}]


def test_a_dashboard_is_drawn_and_its_empty_panels_named(tmp_path: Path) -> None:
    model = dashboard_json()["factorylens-gpu"]
    prometheus = CannedPrometheus(absent="hw_gpu_interconnect_io_bytes_total")  # NVLink throughput only
    end_s = time.time()
    with ThreadPoolExecutor(4) as pool:
        result = render_dashboard(model, prometheus, tmp_path / "gpu.png", end_s - 3600, end_s, pool)
    assert result.empty == ["NVLink throughput"]
    assert result.panels == len([p for p in model["panels"] if p["type"] != "row"])
    assert prometheus.queries == sum(len(p.get("targets", [])) for p in model["panels"])
    assert result.path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and result.path.stat().st_size > 20_000
