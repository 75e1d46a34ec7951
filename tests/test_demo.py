"""End to end: simulated GPUs → OTLP → RCA service → an incident naming the GPU with the injected fault."""

from __future__ import annotations

import io

import numpy as np

from factorylens.demo import TRAINING_JOB, DemoOptions, run_demo
from factorylens.rca_service.snapshot import load_latest
from factorylens.rca_service.store import SeriesStore, View
from factorylens.receivers.gpu.sim import SimulatedCluster


def test_an_injected_thermal_fault_becomes_an_incident_on_that_gpu(tmp_path):
    scenario = tmp_path / "fault.yaml"
    # 12 simulated minutes (36 s at speed 20) of normal running first: the detector's history (the
    # training loop starts a few seconds late on a loaded machine)
    scenario.write_text("faults:\n  - kind: thermal_throttle\n    target: {host: sim-node-0, gpu: 1}\n"
                        "    start: 12m\n    duration: 20m\n    params: {extra_celsius: 32}\n")
    out = io.StringIO()
    # 24 real seconds after the fault: the loop runs in real time next to the service, and a loaded
    # CI machine slows its steps
    incidents = run_demo(DemoOptions(hosts=1, gpus_per_host=4, scenario=str(scenario), speed=20.0,
                                     collection_interval_s=0.5, duration_s=60.0, prometheus_port=None,
                                     rca_metrics_listen="off", console=False, data_dir=str(tmp_path / "rca")),
                         stream=out)
    cluster = SimulatedCluster(1, 4, "H100", seed=0)
    faulty = cluster.hosts[0].gpus[1].uuid
    assert incidents, out.getvalue()
    # the step time (the KPI) broke; the overheating GPU is among the top causes (this loop runs in
    # real time next to the service, so its own phases are noisy; bench/scenarios.py measures
    # ranking accuracy in simulated time), named by a throttling sign
    [incident] = [i for i in incidents if i.kpi_series_id]
    assert "factorylens.train.step.duration" in incident.title
    top = incident.causes[:2]
    on_faulty = [c for c in top if c.entity == f"gpu:{faulty}"]
    assert on_faulty, out.getvalue()
    signs = ("hw.temperature", "hw.gpu.clock_event.active", "hw.gpu.speed", "hw.status")
    assert any(e.description.startswith(signs) for e in on_faulty[0].evidence), out.getvalue()
    assert f"*** incident {incidents[-1].id} opened" in out.getvalue()
    assert (tmp_path / "rca" / "incidents.json").exists()

    # the instrumented training loop ran as rank 0 of the job, on the job's first GPU, and the
    # overheating GPU (the job's second) slowed its steps
    _, state = load_latest(tmp_path / "rca" / "snapshots")
    store = SeriesStore()
    store.restore(state["store"])
    [step] = store.list_series("factorylens.train.step.duration")
    assert step.entity == f"rank:{TRAINING_JOB}/0"
    assert step.resource["hw.id"] == cluster.job_gpus(TRAINING_JOB)[0][1].uuid
    _, ts, mean_step_s = store.query(step.id, View.MEAN)
    ok = np.isfinite(mean_step_s)
    ts, mean_step_s = ts[ok], mean_step_s[ok]
    before = mean_step_s[ts < ts[0] + 10e9]
    after = mean_step_s[ts > ts[-1] - 5e9]
    assert np.median(after) > 1.5 * np.median(before)


def test_fabric_congestion_shows_in_the_fabric_and_in_the_jobs_collectives(tmp_path):
    scenario = tmp_path / "congestion.yaml"
    scenario.write_text("faults:\n  - kind: ib_congestion\n    target: {host: sim-node-0}\n    start: 8m\n"
                        "    params: {throughput_fraction: 0.2}\n")
    incidents = run_demo(DemoOptions(hosts=1, gpus_per_host=4, scenario=str(scenario), speed=20.0,
                                     collection_interval_s=0.5, duration_s=36.0, prometheus_port=None,
                                     rca_metrics_listen="off", console=False, data_dir=str(tmp_path / "rca")),
                         stream=io.StringIO())
    _, state = load_latest(tmp_path / "rca" / "snapshots")
    store = SeriesStore()
    store.restore(state["store"])
    [collective] = [i for i in store.list_series("factorylens.train.phase.duration")
                    if i.attributes["factorylens.train.phase"] == "collective"]
    _, ts, mean_s = store.query(collective.id, View.MEAN)
    ok = np.isfinite(mean_s)
    ts, mean_s = ts[ok], mean_s[ok]
    assert np.median(mean_s[ts > ts[-1] - 5e9]) > 3 * np.median(mean_s[ts < ts[0] + 10e9])
    waits = [store.query(i.id, View.RATE)[2] for i in store.list_series("factorylens.network.xmit_wait")]
    assert all(np.nanmax(w) > 1e6 for w in waits) and len(waits) == 4  # congestion on every port of the node
    assert incidents
    top = incidents[0].causes[:2]
    assert any(c.entity.startswith("nic:sim-node-0/") and c.signal == "factorylens.network.xmit_wait" for c in top)
