"""End to end: simulated GPUs → OTLP → RCA service → an incident naming the GPU with the injected fault."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from factorylens.demo import TRAINING_JOB, DemoOptions, run_demo
from factorylens.rca_service.snapshot import load_latest
from factorylens.rca_service.store import SeriesStore, View
from factorylens.receivers.gpu.sim import SimulatedCluster

pytestmark = pytest.mark.slow  # `make check` leaves these out; `make test` runs them


def run_one_host(tmp_path: Path, scenario: Path, duration_s: float, stream: io.StringIO) -> SeriesStore:
    """The demo on one host of four simulated GPUs at 20× speed; returns the RCA service's store as its
    final snapshot saved it."""
    run_demo(
        DemoOptions(
            hosts=1,
            gpus_per_host=4,
            scenario=str(scenario),
            speed=20.0,
            collection_interval_s=0.5,
            duration_s=duration_s,
            prometheus_port=None,
            rca_metrics_listen="off",
            console=False,
            data_dir=str(tmp_path / "rca"),
        ),
        stream=stream,
    )
    _, state = load_latest(tmp_path / "rca" / "snapshots")
    store = SeriesStore()
    store.restore(state["store"])
    return store


def test_the_demo_runs_the_whole_pipeline_and_the_injected_fault_reaches_the_service(tmp_path):
    """The demo's wiring, end to end in real time: simulated GPUs and the instrumented training loop →
    OTLP → the RCA service's store. Only what the wiring decides is asserted (every GPU and the loop
    reach the store with their join keys, the fault shows on its GPU and not on the others); whether
    the ranking names the fault is asserted in simulated time, deterministically, for every fault
    type by tests/scenarios/test_ranking.py."""
    scenario = tmp_path / "fault.yaml"
    scenario.write_text(
        "faults:\n  - kind: thermal_throttle\n    target: {host: sim-node-0, gpu: 1}\n"
        "    start: 2m\n    duration: 20m\n    params: {extra_celsius: 32}\n"
    )
    out = io.StringIO()
    store = run_one_host(tmp_path, scenario, 15.0, out)
    cluster = SimulatedCluster(1, 4, "H100", seed=0)
    faulty = cluster.hosts[0].gpus[1].uuid
    temperatures = {
        info.resource.get("hw.id") or info.attributes.get("hw.id"): info for info in store.list_series("hw.temperature")
    }
    assert set(temperatures) == {gpu.uuid for gpu in cluster.hosts[0].gpus}, out.getvalue()
    peaks = {uuid: float(np.nanmax(store.query(info.id)[2])) for uuid, info in temperatures.items()}
    assert peaks[faulty] > max(v for uuid, v in peaks.items() if uuid != faulty) + 10
    throttled = [
        i
        for i in store.list_series("hw.gpu.clock_event.active")
        if (i.resource.get("hw.id") or i.attributes.get("hw.id")) == faulty
    ]
    assert any(np.nanmax(store.query(i.id)[2]) > 0 for i in throttled)
    # the instrumented training loop ran as rank 0 of the job, on the job's first GPU
    [step] = store.list_series("factorylens.train.step.duration")
    assert step.entity == f"rank:{TRAINING_JOB}/0"
    assert step.resource["hw.id"] == cluster.job_gpus(TRAINING_JOB)[0][1].uuid
    _, _, steps_per_s = store.query(step.id, View.COUNT)
    assert np.nansum(steps_per_s) > 0
    assert "incident(s) in this run" in out.getvalue()
    # and what the run cost, by team, at the example catalog's labelled list prices
    summary = out.getvalue().split("GPU cost by team", 1)[1]
    assert "EXAMPLE PRICES" in summary and "These are EXAMPLE list prices" in summary
    rows = {
        line.split()[0]: line
        for line in summary.splitlines()
        if line and line.split()[0] in {"foundation-models", "serving", "research", "TOTAL"}
    }
    assert set(rows) == {"foundation-models", "serving", "research", "TOTAL"}, summary
    assert "100%" in rows["research"]  # the notebook holds its GPU and does nothing
    assert rows["foundation-models"].split()[8] != "-"  # cost per 1M tokens of the training job
    assert "Top " in summary and "notebook-0" in summary


def test_fabric_congestion_shows_in_the_fabric_and_in_the_jobs_collectives(tmp_path):
    scenario = tmp_path / "congestion.yaml"
    scenario.write_text(
        "faults:\n  - kind: ib_congestion\n    target: {host: sim-node-0}\n    start: 8m\n"
        "    params: {throughput_fraction: 0.2}\n"
    )
    store = run_one_host(tmp_path, scenario, 36.0, io.StringIO())
    [collective] = [
        i
        for i in store.list_series("factorylens.train.phase.duration")
        if i.attributes["factorylens.train.phase"] == "collective"
    ]
    _, ts, mean_s = store.query(collective.id, View.MEAN)
    ok = np.isfinite(mean_s)
    ts, mean_s = ts[ok], mean_s[ok]
    assert np.median(mean_s[ts > ts[-1] - 5e9]) > 3 * np.median(mean_s[ts < ts[0] + 10e9])
    waits = [store.query(i.id, View.RATE)[2] for i in store.list_series("factorylens.network.xmit_wait")]
    assert all(np.nanmax(w) > 1e6 for w in waits) and len(waits) == 4  # congestion on every port of the node
