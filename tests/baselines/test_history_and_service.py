"""Warm starts from a file and from a real Prometheus; baselines and predictability in the service."""

from __future__ import annotations

import shutil
import subprocess
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest

from factorylens.rca_service.baselines import (
    DAY_S,
    BaselineBank,
    BaselineBankConfig,
    StreamingDetectorConfig,
    query_prometheus_range,
    read_history_file,
    workload_predictability,
)
from tests.conftest import free_port, wait_until

STEP = 300.0


def sine_days(days: float, end_s: float) -> tuple[np.ndarray, np.ndarray]:
    t = end_s - STEP * np.arange(int(days * 288))[::-1]
    rng = np.random.default_rng(0)
    return t, 40 + 10 * np.sin(2 * np.pi * t / DAY_S) + rng.normal(0, 0.3, t.size)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_warm_start_from_a_long_format_file(tmp_path, suffix):
    t, v = sine_days(3, 1_700_000_000.0)
    frame = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(t, unit="s", utc=True).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "series": "gpu0.util",
            "value": v,
        }
    )
    frame = pd.concat([frame, frame.assign(series="gpu1.util", value=v * 2)]).sample(frac=1, random_state=1)
    path = tmp_path / f"history{suffix}"
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path)
    history = read_history_file(path)
    assert sorted(history) == ["gpu0.util", "gpu1.util"]
    times, values = history["gpu1.util"]
    np.testing.assert_allclose(times, t)  # ISO strings back to unix seconds, sorted
    np.testing.assert_allclose(values, 2 * v)
    bank = BaselineBank()
    bank.warm_start("gpu0.util", *history["gpu0.util"])
    assert bank.baseline("gpu0.util").periods_s == [DAY_S]


def test_a_file_without_the_columns_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("when,how_much\n1,2\n")
    with pytest.raises(ValueError, match="time column"):
        read_history_file(path)


def test_warm_start_from_a_real_prometheus_range_query(tmp_path):
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    assert prometheus and promtool, "Debian's prometheus is installed by `make test` (make system-deps)"
    now = float(int(pd.Timestamp.now(tz="UTC").timestamp()) // 300 * 300)
    t, v = sine_days(3, now - 3600)
    lines = (
        ["# TYPE gpu_util gauge"]
        + [f'gpu_util{{gpu="0"}} {x:.6f} {int(ts)}' for ts, x in zip(t, v, strict=False)]
        + ["# EOF"]
    )
    (tmp_path / "history.om").write_text("\n".join(lines) + "\n")
    data = tmp_path / "data"
    backfill = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(tmp_path / "history.om"), str(data)],
        capture_output=True,
        text=True,
    )
    assert backfill.returncode == 0, backfill.stderr
    config = tmp_path / "prometheus.yml"
    config.write_text("global: {scrape_interval: 15s}\n")
    port = free_port()
    proc = subprocess.Popen(
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={data}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def ready():
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as r:
                    return r.status == 200
            except (urllib.error.URLError, ConnectionError):
                return False

        wait_until(ready, timeout_s=60, what="Prometheus to start")
        history = wait_until(
            lambda: query_prometheus_range(url, "gpu_util", t[0], t[-1], STEP),
            timeout_s=30,
            what="the backfilled series",
        )
        ((labels, (times, values)),) = history.items()
        assert 'gpu="0"' in labels and times.size == t.size
        np.testing.assert_allclose(values, v, atol=1e-5)
        bank = BaselineBank()
        bank.warm_start(labels, times, values)
        assert bank.baseline(labels).periods_s == [DAY_S]
        with pytest.raises(RuntimeError, match="refused"):
            query_prometheus_range(url, "gpu_util{", t[0], t[-1], STEP)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    with pytest.raises(RuntimeError, match="unreachable"):
        query_prometheus_range(url, "up", t[0], t[-1], STEP, timeout_s=2)


def test_bank_is_bounded_and_predictability_groups_by_workload():
    bank = BaselineBank(
        BaselineBankConfig(detector=StreamingDetectorConfig(probation_points=600), max_series=3, idle_s=0)
    )
    t, clean = sine_days(3, 1_700_000_000.0)
    noisy = clean + np.random.default_rng(2).normal(0, 15, clean.size)
    for name, values in (("a1", clean), ("a2", clean), ("b1", noisy), ("b2", noisy)):
        bank.observe(name, t, values)
    assert len(bank) == 3 and bank.baseline("a1") is None  # idle at once here: the least recently fed made room
    per_series = bank.predictability()
    table = workload_predictability(per_series, {"a2": "job-a", "b1": "job-b", "b2": "job-b"})
    assert table["job-a"] > 0.8 > 0.5 > table["job-b"]


def test_a_full_bank_of_live_series_keeps_its_models_instead_of_cycling():
    """More live series than room: the ones modelled stay modelled (a cycle of evictions would leave
    every series without a model), the others wait, and take the place of a series that stopped."""
    bank = BaselineBank(BaselineBankConfig(detector=StreamingDetectorConfig(probation_points=10), max_series=3))
    t, values = sine_days(1, 1_700_000_000.0)
    for start in range(0, 200, 50):  # every series fed on every pass, as the analysis does
        for name in ("s1", "s2", "s3", "s4", "s5"):
            bank.observe(name, t[start : start + 50], values[start : start + 50])
    assert {s for s in ("s1", "s2", "s3", "s4", "s5") if bank.baseline(s) is not None} == {"s1", "s2", "s3"}
    assert bank.waiting == 2 * 4
    bank.config = BaselineBankConfig(max_series=3, idle_s=0)  # s1-s3 now count as stopped
    bank.observe("s4", t[200:250], values[200:250])
    assert bank.waiting == 2 * 4 and len(bank) == 3
    assert bank.baseline("s1") is None and bank.baseline("s2") is not None  # s4 took the longest-unfed place


def test_service_serves_seasonal_baselines_and_exports_predictability(make_service):
    import time

    from tests.rca.otlp_builders import gauge, metrics_request

    service = make_service(retention_s=4 * DAY_S)
    t, v = sine_days(2.5, time.time() - 60)
    service.store.ingest_metrics(
        metrics_request(
            [
                gauge(
                    "hw.gpu.utilization",
                    list(zip((t * 1e9).astype(int).tolist(), (v / 100).tolist(), strict=False)),
                    {"hw.id": "GPU-0"},
                )
            ],
            resource={"host.name": "node-1", "factorylens.job.id": "llm-7b"},
        )
    )
    service.analyze_now()
    (series_id,) = [s for s, series in service.store.series.items() if series.info.metric == "hw.gpu.utilization"]
    baseline = service.analyzer.baseline(service.store, series_id, int(t[-288] * 1e9), int(t[-1] * 1e9) + 1)
    assert baseline.method.startswith("seasonal-") and baseline.periods_s == [DAY_S]
    assert np.median(np.abs(baseline.observed - baseline.expected)) < 0.01
    assert 0.8 < baseline.predictability <= 1.0
    with urllib.request.urlopen(service.metrics_server.url, timeout=5) as r:
        text = r.read().decode()
    line = next(x for x in text.splitlines() if x.startswith("factorylens_baseline_predictability_ratio{"))
    assert 'factorylens_workload="llm-7b"' in line and float(line.rsplit(" ", 1)[1]) > 0.8
