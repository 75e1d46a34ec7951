"""`factorylens cost --prometheus` against a real Prometheus holding the recorded hourly rollups (the
series `factorylens cost rules` records, seeded with `promtool tsdb create-blocks-from openmetrics`):
the same figures as the hand-computed hour of cost_rules_test.yaml, the week before for the change."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from factorylens.processors.cost import FIGURE_LABEL, WORKLOAD
from tests.conftest import free_port, wait_until

HERE = Path(__file__).parent
pytestmark = pytest.mark.slow
WEEK = 7 * 24 * 3600
# (labels, figure, value) of the hour in cost_rules_test.yaml, per workload (the GPU summed away)
HOUR = [
    (
        {
            "factorylens_job_id": "j1",
            "factorylens_team": "research",
            "factorylens_cluster_name": "c1",
            "hw_model": "H100",
        },
        {
            "allocated_h": 1,
            "measured_h": 1,
            "active_h": 0.75,
            "idle_h": 0.25,
            "gpu_time_cost": 3,
            "idle_cost": 0.75,
            "energy_kwh": 0.7,
            "energy_cost": 0,
            "useful_h": 0.4,
            "useful_cost": 1.2,
            "token_jobs_cost": 3,
        },
    ),
    (
        {
            "factorylens_job_id": "j2",
            "factorylens_team": "vision",
            "factorylens_cluster_name": "c1",
            "hw_model": "A100",
        },
        {
            "allocated_h": 0.5,
            "measured_h": 0.5,
            "active_h": 0.25,
            "idle_h": 0.25,
            "gpu_time_cost": 1,
            "idle_cost": 0.5,
            "energy_kwh": 0.2,
            "energy_cost": 0.03,
            "useful_h": 0.25,
            "useful_cost": 0.5,
        },
    ),
    (
        {"factorylens_cluster_name": "c1", "hw_model": "A100"},
        {"unallocated_h": 0.5, "unallocated_energy_kwh": 0.05, "unallocated_cost": 1.0075},
    ),
    (
        {
            "factorylens_job_id": "j3",
            "factorylens_team": "research",
            "factorylens_cluster_name": "c2",
            "hw_model": "H100",
        },
        {"allocated_h": 1, "gpu_time_cost": 2.5, "useful_h": 0.5, "useful_cost": 1.25, "sample_jobs_cost": 2.5},
    ),
    (
        {
            "factorylens_job_id": "j4",
            "factorylens_team": "vision",
            "factorylens_cluster_name": "c2",
            "hw_model": "H100",
        },
        {"allocated_h": 1, "gpu_time_cost": 5},
    ),
    (
        {"factorylens_job_id": "j5", "factorylens_team": "vision", "factorylens_cluster_name": "c1"},
        {"allocated_h": 1, "unpriced_h": 1},
    ),
    ({"factorylens_job_id": "j1", "factorylens_team": "research"}, {"tokens": 6e7}),
    ({"factorylens_job_id": "j3", "factorylens_team": "research"}, {"samples": 6000}),
]


def openmetrics(stamp: int, scale: float) -> list[str]:
    lines = []
    for labels, figures in HOUR:
        for figure, value in figures.items():
            text = ",".join(f'{k}="{v}"' for k, v in sorted({**labels, FIGURE_LABEL: figure}.items()))
            lines.append(f"{WORKLOAD}{{{text}}} {value * scale:g} {stamp}")
    return lines


def test_the_report_from_prometheus_sums_the_recorded_hours(tmp_path: Path) -> None:
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    assert prometheus and promtool, "Debian's prometheus is installed by `make test` (make system-deps)"
    stamp = (int(time.time()) // 3600 - 2) * 3600  # the rollup recorded at the end of the hour
    lines = sorted(openmetrics(stamp - WEEK, 0.5) + openmetrics(stamp, 1.0), key=lambda line: int(line.split()[-1]))
    series = f'factorylens_baseline_predictability_ratio{{factorylens_workload="j1"}} 0.93 {stamp}'
    (tmp_path / "rollups.om").write_text(
        f"# TYPE {WORKLOAD} gauge\n"
        + "\n".join(lines)
        + "\n# TYPE factorylens_baseline_predictability_ratio gauge\n"
        + series
        + "\n# EOF\n"
    )
    data = tmp_path / "data"
    seeded = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(tmp_path / "rollups.om"), str(data)],
        capture_output=True,
        text=True,
    )
    assert seeded.returncode == 0, seeded.stderr
    (tmp_path / "prometheus.yml").write_text("global: {scrape_interval: 15s}\n")
    port = free_port()
    server = subprocess.Popen(
        [
            prometheus,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={data}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=30d",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
                    return response.status == 200
            except (urllib.error.URLError, ConnectionError):
                return False

        wait_until(ready, timeout_s=60, what="Prometheus to start")
        base = [sys.executable, "-m", "factorylens", "cost", "--prometheus", url, "--range", "1h", "--end", str(stamp)]
        base += ["--catalog", str(HERE / "test-catalog.yaml")]
        run = subprocess.run([*base, "--format", "json"], capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        report = json.loads(run.stdout)
        teams = {g["team"]: g for g in report["groups"]}
        assert teams["research"]["gpu_time_cost"] == pytest.approx(5.5)
        assert teams["vision"]["gpu_time_cost"] == pytest.approx(6.0)
        assert teams["vision"]["unpriced_h"] == pytest.approx(1.0)
        assert teams["(unallocated)"]["unallocated_cost"] == pytest.approx(1.0075)
        assert teams["TOTAL"]["total_cost"] == pytest.approx(3 + 1.03 + 1.0075 + 2.5 + 5)
        assert teams["research"]["cost_per_1m_tokens"] == pytest.approx(0.05)  # j1's $3 over 60M tokens
        assert teams["research"]["cost_per_1k_samples"] == pytest.approx(2.5 / 6)
        assert teams["research"]["total_cost_change"] == pytest.approx(1.0)  # twice the week before
        assert teams["research"]["idle_ratio"] == pytest.approx(0.25 / 1)  # j1 0.25 of 1 measured hour
        assert report["top_idle_jobs"][0] == {
            "job": "j1",
            "team": "research",
            "idle_gpu_hours": 0.25,
            "idle_cost": 0.75,
        }
        assert report["predictability"] == {"j1": 0.93}
        assert report["currency"] == "USD" and report["example_prices"] is False
        clusters = subprocess.run([*base, "--group-by", "cluster", "--format", "csv"], capture_output=True, text=True)
        rows = {line.split(",")[0]: line for line in clusters.stdout.splitlines()[1:]}
        assert set(rows) == {"c1", "c2", "TOTAL"}
        table = subprocess.run([*base, "--group-by", "job"], capture_output=True, text=True, timeout=60)
        assert "Top 2 idle-but-allocated jobs" in table.stdout and "j1" in table.stdout, table.stdout
        hosts = subprocess.run([*base, "--group-by", "host"], capture_output=True, text=True, timeout=60)
        assert hosts.returncode == 1 and "needs the RCA service" in hosts.stderr
    finally:
        server.terminate()
        server.wait(30)


def test_an_unreachable_prometheus_is_a_clear_error() -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "factorylens",
            "cost",
            "--prometheus",
            f"http://127.0.0.1:{free_port()}",
            "--timeout",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1 and "cannot reach Prometheus" in run.stderr
