"""What the scenario suite gained for issue 17's cases, checked on the generator alone (whether the RCA
service then gets the cases right is tests/scenarios/test_issue17_cases.py): a corrected-only ECC
fault kind, gradual (ramped) faults, runs of several faults with several true causes and decoys, a
GPU no job uses as a target, when a fault bites, and scored scenario files with ``expect``."""

from __future__ import annotations

import functools
import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from factorylens.rca_service.store import SeriesStore, View
from factorylens.receivers.gpu.sim import FAULT_KINDS, Scenario, ScenarioError
from factorylens.receivers.gpu.sim.faults import RAMP_FROM, RAMP_KINDS
from factorylens.simulation import (
    CASES,
    CATALOG,
    TRAINING_JOB,
    Decoy,
    ScenarioRun,
    Truth,
    ingest,
    load_scenario_file,
)

NS = 1_000_000_000
SCENARIOS = Path(__file__).resolve().parents[2] / "receivers" / "gpu" / "scenarios"
SCORED = ("scored-pcie-vs-ecc.yaml", "scored-gradual-and-unused.yaml")


# ---- the simulator: a corrected-only ECC kind and ramps ------------------------------------------------


def _cluster(faults: list[dict], gpus: int = 4):
    from factorylens.receivers.gpu.sim import SimulatedCluster

    now = [0.0]
    cluster = SimulatedCluster(1, gpus, "H100", Scenario.from_dict({"faults": faults}), clock=lambda: now[0], seed=1)

    def advance(to_s: float) -> None:
        while now[0] < to_s:
            now[0] += 10.0
            cluster.advance()

    return cluster, advance


def test_corrected_ecc_counts_and_nothing_else_moves():
    assert "ecc_corrected" in FAULT_KINDS
    fault = {"kind": "ecc_corrected", "target": {"host": 0, "gpu": 1}, "start": 60, "params": {"corrected_per_s": 4}}
    cluster, advance = _cluster([fault])
    advance(300)
    gpu = cluster.hosts[0].gpus[1]
    assert gpu.ecc_corrected == pytest.approx(4 * 240, rel=0.05)
    assert gpu.ecc_uncorrected == 0 and not cluster.hosts[0].events  # no XID, no row remap
    assert gpu.clock_factor == 1.0 and cluster.job_speed(TRAINING_JOB) == 1.0  # nothing slows


def test_a_ramp_grows_the_params_from_harmless_to_their_values():
    (fault,) = Scenario.from_dict(
        {
            "faults": [
                {
                    "kind": "pcie_degradation",
                    "target": {"host": 0, "gpu": 0},
                    "start": "1m",
                    "ramp": "5m",
                    "params": {"throughput_fraction": 0.1, "replays_per_s": 10},
                }
            ]
        }
    ).faults
    assert fault.ramp_s == 300
    assert fault.at(30).params["throughput_fraction"] == 1.0  # not started: harmless (and not active)
    assert fault.at(60 + 150).params == {"throughput_fraction": pytest.approx(0.55), "replays_per_s": 5.0}
    assert fault.at(60 + 300) is fault and fault.at(9999) is fault
    assert "ramping over 300s" in fault.describe()
    assert set(RAMP_KINDS) <= set(FAULT_KINDS)
    for kind in RAMP_KINDS:  # every numeric param of a rampable kind has a harmless value to start from
        numeric = {k for k, v in FAULT_KINDS[kind][0].items() if isinstance(v, (int, float))}
        assert numeric <= set(RAMP_FROM), kind


@pytest.mark.parametrize("kind", ["xid", "gpu_lost", "nic_down", "stuck_utilization", "ecc_burst"])
def test_events_and_switches_take_no_ramp(kind):
    with pytest.raises(ScenarioError, match="takes no ramp"):
        target = {"host": 0} if kind == "nic_down" else {"host": 0, "gpu": 0}
        Scenario.from_dict({"faults": [{"kind": kind, "target": target, "start": 0, "ramp": 60}]})


def test_a_ramped_cooling_failure_heats_gradually_until_it_throttles():
    fault = {
        "kind": "thermal_throttle",
        "target": {"host": 0, "gpu": 0},
        "start": 60,
        "ramp": 300,
        "params": {"extra_celsius": 35},
    }
    cluster, advance = _cluster([fault])
    gpu = cluster.hosts[0].gpus[0]
    temps, factors = [], []
    for t in range(60, 481, 30):
        advance(t)
        temps.append(gpu.temperature_c)
        factors.append(gpu.clock_factor)
    assert all(b >= a - 0.5 for a, b in itertools.pairwise(temps))  # climbs (noise aside)
    assert temps[-1] > temps[0] + 15  # into hardware slowdown
    assert factors[1] == 1.0 and factors[-1] < 0.8  # full speed early on, throttled at the end
    first_throttled = next(i for i, f in enumerate(factors) if f < 1.0)
    assert 2 <= first_throttled < len(factors) - 1  # minutes in, not at once


# ---- runs: where a second fault lands, cases, truths and decoys ---------------------------------------


def test_targets_name_another_training_gpu_and_a_free_gpu():
    small = ScenarioRun(None, seed=4, hosts=2, gpus_per_host=4)
    t = small.targets
    assert t.other_host != t.host and t.free_gpu is None  # every GPU of a 4-GPU host is taken
    training = {(r.host, r.gpu.index): r.rank for r in small.ranks}
    assert training[(t.other_host, t.other_gpu_index)] == t.other_rank
    assert t.gpu_ids[t.other_host_index][t.other_gpu_index] == t.other_gpu_id
    assert t.hosts == ("sim-node-0", "sim-node-1")
    for seed in range(4):
        run = ScenarioRun(None, seed=seed, hosts=2, gpus_per_host=8)
        assert run.targets.free_gpu is not None
        host, gpu, uuid = run.targets.free_gpu
        board = run.cluster.hosts[host].gpus[gpu]
        assert board.process is None and board.uuid == uuid and board is not run.neighbour_gpu
    one_host = ScenarioRun(None, seed=0, hosts=1, gpus_per_host=8).targets
    assert one_host.other_host == one_host.host and one_host.other_gpu_index != one_host.gpu_index


def test_the_catalog_draws_are_unchanged_by_the_second_target():
    # the victim, port and onset of seed 0 as they were before cases came (bench figures stay comparable)
    run = ScenarioRun("gpu_power_cap", seed=0, hosts=2, gpus_per_host=4)
    assert (run.targets.host, run.targets.gpu_index, run.targets.port) == ("sim-node-1", 1, "mlx5_2/1")
    assert run.onset_s == pytest.approx(634.917, abs=1e-3)
    assert run.truths == (run.truth,) and run.decoys == ()


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_case_names_its_causes_and_decoys_in_the_world(case):
    gpus = 8 if case == "unused_gpu_fault" else 4
    run = ScenarioRun(case, seed=1, hosts=2, gpus_per_host=gpus)
    spec = CASES[case]
    assert spec.fault_type == case and case not in CATALOG
    gpus_ids = {f"gpu:{g.uuid}" for h in run.cluster.hosts for g in h.gpus}
    hosts = {f"host:{h.name}" for h in run.cluster.hosts}
    for truth in run.truths:
        assert isinstance(truth, Truth) and (truth.entity in gpus_ids | hosts or truth.entity.startswith("fs:"))
    for decoy in run.decoys:
        assert isinstance(decoy, Decoy)
        assert not any(t.matches(decoy.entity) for t in run.truths)
    assert run.describe()["truths"] == [
        {"entity": t.entity, "domain": t.domain, "onset_s": run.truth_onset_s(t)} for t in run.truths
    ]
    if case == "concurrent_faults":
        assert len(run.truths) == 2 and run.truths[1].entity == f"host:{run.targets.other_host}"
    if case == "unused_gpu_fault":
        assert run.truths == () and run.truth is None and run.decoys[0].entity == f"gpu:{run.targets.free_gpu[2]}"
    if case in ("harmless_signals", "harmless_signal_after_kpi"):
        ecc = next(f for f in run.sim_faults if f["kind"] == "ecc_corrected")
        assert (ecc["start"] < run.onset_s) == (case == "harmless_signals")
        assert run.decoys[-1].matches("host:sim-node-0", "system.memory.utilization{state=free}")
        assert not run.decoys[-1].matches("host:sim-node-0", "system.memory.utilization{state=used}")
    if case == "fault_in_checkpoint":  # 4-6 s into the save of the checkpoint due at 810 s
        assert run.onset_s == 818.0
    if spec.gradual:
        assert any(f.get("ramp") for f in run.sim_faults)


def test_unused_gpu_fault_needs_a_free_gpu():
    with pytest.raises(ValueError, match="at least 7 GPUs per host"):
        ScenarioRun("unused_gpu_fault", seed=0, hosts=2, gpus_per_host=4)


# ---- the signals move as intended (simulated, no analyzer) ------------------------------------------


@functools.cache
def simulate(case: str | None, seed: int = 2, gpus: int = 4) -> tuple[ScenarioRun, SeriesStore]:
    run = ScenarioRun(case, seed=seed, hosts=2, gpus_per_host=gpus, logs=True)
    now = [0.0]
    store = SeriesStore(clock=lambda: now[0])
    for ts, requests in run:
        now[0] = ts / NS
        ingest(store, requests)
    return run, store


def _values(store, run, metric, entity, span, view=None, **match) -> np.ndarray:
    """The series' values over ``span`` (seconds after the onset), all matching series pooled."""
    found = store.list_series(metric, entity=entity, match=match or None)
    assert found, f"no {metric} {match} on {entity}"
    out = []
    for info in found:
        _, ts, values = store.query(info.id, view)
        rel = (ts - run.onset_unix_nano) / NS
        out.extend(values[(rel >= span[0]) & (rel <= span[1]) & np.isfinite(values)])
    return np.asarray(out, dtype=float)


BEFORE, AFTER = (-300, -200), (40, 200)


@pytest.mark.slow
def test_harmless_signals_move_where_intended():
    run, store = simulate("harmless_signals")
    t = run.targets
    truth, ecc_gpu = f"gpu:{t.gpu_id}", f"gpu:{t.other_gpu_id}"
    rx = "hw.gpu.io", {"network.io.direction": "receive"}
    assert np.median(_values(store, run, rx[0], truth, AFTER, View.RATE, **rx[1])) < 0.2 * np.median(
        _values(store, run, rx[0], truth, BEFORE, View.RATE, **rx[1])
    )
    assert _values(store, run, "hw.errors", truth, AFTER, View.RATE, **{"error.type": "pcie_replay"}).max() == 0
    corrected = _values(store, run, "hw.errors", ecc_gpu, AFTER, View.RATE, **{"error.type": "corrected"})
    assert np.median(corrected) == pytest.approx(5.0, rel=0.05)
    assert _values(store, run, "hw.errors", ecc_gpu, AFTER, **{"error.type": "uncorrected"}).max() == 0
    sm = "hw.gpu.speed", {"hw.gpu.clock_domain": "sm"}
    assert np.median(_values(store, run, sm[0], ecc_gpu, AFTER, **sm[1])) == 1980e6  # the ECC GPU is not slower
    idle = _values(store, run, "system.cpu.utilization", f"host:{t.other_host}", (-140, -100), state="idle")
    assert np.median(idle) < 0.2  # the spike: 85 % busy...
    on_host = next(r for r in run.ranks if r.host == t.other_host)
    waits = _values(store, run, "factorylens.data.wait.ratio", f"rank:{TRAINING_JOB}/{on_host.rank}", (-140, -100))
    assert waits.max() < 0.05  # ...that starves nothing
    h2d = "factorylens.train.phase.duration", {"factorylens.train.phase": "h2d"}
    victim = f"rank:{TRAINING_JOB}/{t.rank}"
    assert np.median(_values(store, run, h2d[0], victim, AFTER, View.MEAN, **h2d[1])) > 5 * np.median(
        _values(store, run, h2d[0], victim, BEFORE, View.MEAN, **h2d[1])
    )
    steps = "factorylens.train.step.duration", f"rank:{TRAINING_JOB}/*"
    slow = np.median(_values(store, run, *steps, AFTER, View.MEAN))
    assert slow > 1.3 * np.median(_values(store, run, *steps, BEFORE, View.MEAN))
    assert run.bite_s is not None and run.bite_s - run.onset_s <= 20


@pytest.mark.slow
def test_concurrent_faults_each_slow_the_job_from_their_own_host():
    run, store = simulate("concurrent_faults")
    t = run.targets
    sm = "hw.gpu.speed", {"hw.gpu.clock_domain": "sm"}
    assert np.median(_values(store, run, sm[0], f"gpu:{t.gpu_id}", AFTER, **sm[1])) < 0.6 * 1980e6
    busy = _values(store, run, "system.cpu.utilization", f"host:{t.other_host}", AFTER, state="idle")
    assert np.median(busy) < 0.05
    starved = next(r for r in run.ranks if r.host == t.other_host)
    assert (
        np.median(_values(store, run, "factorylens.data.wait.ratio", f"rank:{TRAINING_JOB}/{starved.rank}", AFTER))
        > 0.2
    )


@pytest.mark.slow
def test_gradual_faults_bite_minutes_after_they_begin():
    for case, lower, upper in (("gradual_cooling_failure", 60, 240), ("gradual_pcie_degradation", 240, 480)):
        run, store = simulate(case)
        assert run.bite_s is not None and lower <= run.bite_s - run.onset_s <= upper, (case, run.bite_s)
        steps = "factorylens.train.step.duration", f"rank:{TRAINING_JOB}/*"
        early = _values(store, run, *steps, (10, 50), View.MEAN)
        assert np.median(early) < 1.05 * np.median(_values(store, run, *steps, BEFORE, View.MEAN))  # not yet
    run, store = simulate("gradual_cooling_failure")
    die = {"hw.sensor_location": "die"}
    gpu = f"gpu:{run.targets.gpu_id}"
    first, later = (np.median(_values(store, run, "hw.temperature", gpu, span, **die)) for span in ((0, 40), (80, 120)))
    assert later > first + 3  # heating before it throttles


@pytest.mark.slow
def test_a_fault_on_an_unused_gpu_touches_no_job():
    run, store = simulate("unused_gpu_fault", gpus=8)
    _, _, uuid = run.targets.free_gpu
    hot = _values(
        store, run, "hw.gpu.clock_event.active", f"gpu:{uuid}", AFTER, **{"hw.gpu.clock_event.reason": "hw_thermal"}
    )
    assert hot.max() == 1
    assert [e["attributes"]["hw.gpu.xid.code"] for e in store.events] == [48]
    assert run.bite_s is None  # the training job never slowed


def test_fault_in_checkpoint_begins_inside_the_save_and_bites_after_it():
    run = ScenarioRun("fault_in_checkpoint", seed=0, hosts=2, gpus_per_host=4, duration_s=880.0)
    for _ in run:
        pass
    assert 810 < run.onset_s < 810 + 2 * 2.1 + 19  # inside the save of the checkpoint due at 810 s
    assert run.bite_s is not None and run.onset_s + 10 < run.bite_s <= run.onset_s + 40  # once it is over


# ---- scored scenario files ------------------------------------------------------------------------------


def test_the_shipped_scored_scenarios_load_in_the_receiver_and_the_bench():
    for name in SCORED:
        Scenario.load(SCENARIOS / name)  # the receiver ignores what it does not use
        loaded = load_scenario_file(SCENARIOS / name)
        assert loaded.expectations
    pcie = load_scenario_file(SCENARIOS / SCORED[0])
    assert (pcie.hosts, pcie.gpus_per_host, pcie.model, pcie.seed, pcie.duration_s) == (2, 4, "H100", 0, 480.0)
    assert pcie.onset_s == 300.0 and not pcie.gradual
    assert [e.incident for e in pcie.expectations] == [False, False, True]
    assert all("expect" not in f for f in pcie.faults)
    run = pcie.run()
    gpu = run.cluster.hosts[1].gpus[1].uuid
    assert [t.entity for t in run.truths] == [f"gpu:{gpu}"] and run.truths[0].domain == "gpu"
    assert run.truths[0].onset_s == 300.0 and run.onset_s == 300.0 and run.duration_s == 480.0
    ecc = run.cluster.hosts[0].gpus[0].uuid
    assert [d.entity for d in run.decoys] == ["host:sim-node-0", f"gpu:{ecc}"]
    assert run.benign is None and run.fault_type == "scored-pcie-vs-ecc"
    gradual = load_scenario_file(SCENARIOS / SCORED[1])
    assert gradual.gradual and len(gradual.expectations) == 2  # the XID and ECC burst are context
    run = gradual.run()
    assert run.spec is not None and run.spec.gradual
    assert run.truths[0].entity == f"gpu:{run.cluster.hosts[1].gpus[3].uuid}"  # the default: the GPU hit
    assert run.decoys[0].entity == f"gpu:{run.targets.free_gpu[2]}"  # GPU 7 of sim-node-0 is free with seed 3


def _write(tmp_path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text, message",
    [
        ("faults: []", "at least one fault"),
        ("cluster: {hosts: 2, gpus: 8}\nfaults: [{kind: xid, target: {host: 0, gpu: 0}, start: 0}]", "cluster must"),
        ("cluster: {gpus_per_host: 2}\nfaults: [{kind: xid, target: {host: 0, gpu: 0}, start: 0}]", "≥ 4"),
        ("cluster: {model: V100}\nfaults: [{kind: xid, target: {host: 0, gpu: 0}, start: 0}]", "not one of"),
        ("seed: x\nfaults: [{kind: xid, target: {host: 0, gpu: 0}, start: 0}]", "seed must be an integer"),
        ("faults: [{kind: xid, target: {host: 5, gpu: 0}, start: 0}]", "not in the cluster"),
        ("faults: [{kind: xid, target: {host: sim-node-9, gpu: 0}, start: 0}]", "not in the cluster"),
        ("faults: [{kind: xid, target: {host: 0, gpu: 9}, start: 0}]", "not on a 8-GPU host"),
        ("faults: [{kind: xid, target: {host: 0, gpu: 0}, start: 0, expect: {rank: 1}}]", "expect must be"),
        ("faults: [{kind: xid, target: {host: 0, gpu: 0}, start: 0, expect: {entity: 'pod:x'}}]", "is not gpu:"),
        ("faults: [{kind: xid, target: {host: 0, gpu: 0}, start: 0, expect: {domain: power}}]", "expect.domain"),
        ("faults: [{kind: xid, target: {host: 0, gpu: 0}, start: 0, expect: {incident: maybe}}]", "true or false"),
        (
            "faults: [{kind: xid, target: {host: 0, gpu: 0}, start: 0, expect: {entity: 'gpu:{host=0,gpu=12}'}}]",
            "GPU not in the cluster",
        ),
        ("faults: [{kind: power_cap, target: {host: 0, gpu: '*'}, start: 0, expect: {}}]", "say which entity"),
        ("faults: [{kind: xid, target: {host: 0, gpu: 0}, start: 0}]\nwhen: 3", "'faults'"),
    ],
)
def test_bad_scored_scenarios_say_what_is_wrong(tmp_path, text, message):
    with pytest.raises(ScenarioError, match=message.replace("{", r"\{").replace("(", r"\(")):
        load_scenario_file(_write(tmp_path, text))


def test_expect_defaults_and_globs(tmp_path):
    path = _write(
        tmp_path,
        """
cluster: {hosts: 3, gpus_per_host: 4}
seed: 2
scrape_interval: 15s
faults:
  - {kind: slow_storage, target: {host: 1}, start: 9m, params: {mount: /mnt/ckpt}, expect: {}}
  - {kind: ib_congestion, target: {host: sim-node-2}, start: 9m, params: {port: '*'}, expect: {}}
  - {kind: memory_pressure, target: {host: 0}, start: 10m, expect: {also: ['rank:llm-pretrain-7b/0']}}
  - {kind: power_cap, target: {host: 0, gpu: '*'}, start: 8m, expect: {entity: 'gpu:{host=0,gpu=1}', incident: false}}
""",
    )
    loaded = load_scenario_file(path)
    assert loaded.scrape_interval_s == 15 and loaded.duration_s == 600 + 420 and loaded.onset_s == 540
    run = loaded.run()
    fs, nic, host = run.truths
    assert (fs.entity, fs.domain) == ("fs:sim-node-1//mnt/ckpt", "storage")
    assert (nic.entity, nic.domain) == ("nic:sim-node-2/*", "network")
    assert nic.matches("nic:sim-node-2/mlx5_3/1") and not nic.matches("nic:sim-node-1/mlx5_3/1")
    assert (host.entity, host.domain, host.onset_s) == ("host:sim-node-0", "host", 600.0)
    assert host.matches("rank:llm-pretrain-7b/0")
    assert run.decoys[0].entity == f"gpu:{run.cluster.hosts[0].gpus[1].uuid}"
    assert run.scrape_interval_s == 15 and run.hosts == 3 and run.seed == 2 and not math.isinf(run.duration_s)
