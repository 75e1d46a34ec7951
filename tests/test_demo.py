"""``factorylens demo``'s parts without the stack: the default scenario, the world's roles, how
incidents are judged against the injected faults, the process set, the service's clock and the plain
view. The whole demo runs headless in tests/e2e/test_demo.py."""

from __future__ import annotations

import io
import itertools
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from factorylens.demo import DemoError, Stack, World
from factorylens.demo.view import Outcome, PlainView, judge, summary_lines
from factorylens.demo.world import FAULT_S, FactoryRun, default_faults
from factorylens.rca_service.config import ConfigError, RcaServiceConfig


def small_world(hosts: int = 4, gpus: int = 8) -> World:
    run = FactoryRun("agents", hosts, gpus, 0, 1_700_000_000.0)
    names = {g.uuid: f"{h.name}/gpu{g.index}" for h in run.cluster.hosts for g in h.gpus}
    return World(run, run.planned, run.duration_s, 1_700_000_000.0, time.time(), 10.0, names)


def test_the_default_scenario_has_five_domains_minutes_apart_on_entities_of_the_cluster() -> None:
    world = small_world()
    planned = world.planned
    assert [p.domain for p in planned] == ["app", "gpu", "data", "network", "storage"]
    onsets = [p.onset_s for p in planned]
    # each fault is over, and its incident resolved (about four minutes later), before the next begins
    assert all(b - a >= FAULT_S + 270 for a, b in itertools.pairwise(onsets))
    assert world.duration_s > onsets[-1]
    gpu = planned[1].truth.entity.removeprefix("gpu:")
    assert world.gpu_names[gpu] == "sim-node-1/gpu3"
    assert planned[3].truth.entity.startswith("nic:sim-node-3/")
    assert planned[4].truth.entity == "fs:sim-node-2//mnt/ckpt"


def test_the_default_scenario_fits_a_smaller_cluster() -> None:
    ids = tuple(tuple(f"GPU-{h}-{g}" for g in range(4)) for h in range(2))
    sim, _, planned = default_faults(2, 4, "job", ids)
    assert {f["target"]["host"] for f in sim} <= {0, 1}
    assert all(f["target"].get("gpu", 0) < 3 for f in sim)  # 4-GPU hosts train on GPUs 0-2
    assert planned[1].truth.entity in {f"gpu:{g}" for row in ids for g in row}


def _resources(requests: list[Any]) -> list[dict[str, Any]]:
    out = []
    for request in requests:
        for rm in getattr(request, "resource_metrics", []):
            out.append({a.key: a.value.string_value or a.value.int_value for a in rm.resource.attributes})
    return out


@pytest.mark.parametrize(
    ("role", "check"),
    [
        ("agents", lambda r: "host.name" in r and "factorylens.rank" not in r),
        ("training", lambda r: r.get("factorylens.job.id") == "llm-pretrain-7b"),
        ("batch", lambda r: str(r.get("factorylens.job.id", "")).startswith("embed-batch-")),
    ],
)
def test_each_world_part_sends_only_its_own_telemetry_stamped_from_its_start_time(role: str, check: Any) -> None:
    run = FactoryRun(role, 2, 4, 0, 1_800_000_000.0)
    run.duration_s = 30.0
    ticks = list(run)
    assert [ts for ts, _ in ticks] == [int((1_800_000_000.0 + t) * 1e9) for t in (10, 20, 30)]
    resources = [r for _, requests in ticks for r in _resources(requests)]
    assert resources and all(check(r) for r in resources), resources[:3]


def _incident(iid: str, onset_s: float, entity: str, signal: str = "x", kind: str = "performance") -> Any:
    cause = SimpleNamespace(entity=entity, signal=signal, rank=1, score=0.9, domain="gpu", explanation="because")
    return SimpleNamespace(
        id=iid,
        kind=kind,
        state="resolved",
        title=f"{iid} broke",
        onset_time_unix_nano=int((1_700_000_000.0 + onset_s) * 1e9),
        causes=[cause],
    )


def test_an_incident_matches_a_fault_only_when_its_first_cause_is_that_fault_near_its_onset() -> None:
    world = small_world()
    straggler, thermal = world.planned[0], world.planned[1]
    incidents = [
        _incident("a", straggler.onset_s + 30, straggler.truth.entity),
        # the GPU's fault named, but long before that fault began: not its incident
        _incident("b", straggler.onset_s + 40, thermal.truth.entity),
        _incident("c", thermal.onset_s + 30, "host:sim-node-0"),
        _incident("w", 100.0, "job:notebook-0", kind="waste"),
    ]
    faults, unexplained, waste = judge(world, incidents)
    assert faults[0].incident is incidents[0]
    assert faults[1].incident is None
    assert [i.id for i in unexplained] == ["c"]  # "b" names an injected fault, if not at its time
    assert [i.id for i in waste] == ["w"]
    outcome = Outcome(faults, incidents, unexplained, waste, None, "no service", 600.0, 60.0)
    text = "\n".join(summary_lines(world, outcome))
    assert "1/5 injected faults" in text and "MATCHED by a" in text and "MISSED" in text
    assert "GPU sim-node-1/gpu3" in text  # GPUs by host and index, not by UUID alone


def test_the_plain_view_reports_each_incident_change_once() -> None:
    world = small_world()
    out = io.StringIO()
    view = PlainView(out, every_s=1e9)
    view.world = world
    snap = SimpleNamespace(
        sim_s=0.0, points_per_s=1.0, series=1, jobs=[], incidents=[_incident("a", 700.0, world.planned[0].truth.entity)]
    )
    view.update(snap)  # type: ignore[arg-type]
    view.update(snap)  # type: ignore[arg-type]
    assert out.getvalue().count("incident a resolved: rank 11 of llm-pretrain-7b") == 1


def test_a_failing_process_stops_the_demo_with_its_last_lines(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    try:
        sleeper = stack.start("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"])
        stack.start("broken", [sys.executable, "-c", "import sys; print('port 4317 is taken'); sys.exit(3)"])
        with pytest.raises(DemoError, match=r"(?s)broken exited with status 3.*port 4317 is taken"):
            stack.wait_ready("never", lambda: False, timeout_s=30.0)
    finally:
        stack.stop()
    assert sleeper.process.poll() is not None


def test_a_world_part_that_finished_is_not_a_failure(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    try:
        done = stack.start("done", [sys.executable, "-c", "pass"], expected_exit=True)
        done.process.wait(30)
        stack.check()
    finally:
        stack.stop()


def test_the_service_clock_runs_from_its_anchor_at_its_speed() -> None:
    wall = time.time()
    clock = RcaServiceConfig(clock_anchor=f"1000@{wall}", clock_speed=10.0).clock()
    assert 1000.0 <= clock() < 1000.0 + 10 * 5.0
    assert abs(RcaServiceConfig().clock()() - time.time()) < 5.0
    with pytest.raises(ConfigError, match="SIM@WALL"):
        RcaServiceConfig(clock_anchor="yesterday").validate()


def test_the_live_view_draws_the_grid_the_jobs_and_the_first_cause_by_host_and_gpu() -> None:
    from rich.console import Console

    from factorylens.demo.view import JobRow, RichView, Snapshot

    world = small_world()
    view = RichView(io.StringIO())
    view.world = world
    grid = {h.name: ["busy"] * 6 + ["idle", ""] for h in world.run.cluster.hosts}
    grid["sim-node-1"][3] = "cause"
    incident = _incident("inc-1", 1060.0, world.planned[1].truth.entity, "hw.gpu.clock_event.active{x=y}")
    incident.state = "open"
    snap = Snapshot(
        1100.0,
        [("rca-service", True), ("job-batch", False)],
        3000.0,
        0.0,
        3080,
        grid,
        [JobRow("llm-pretrain-7b", "foundation-models", 20, 6.2, 2.1)],
        [incident],
    )
    console = Console(record=True, width=120, force_terminal=True)
    console.print(view.render(snap))
    text = console.export_text()
    assert "sim-node-1  █ █ █ ◆ █ █ ░ ·" in text
    assert "GPU sim-node-1/gpu3 (GPU-" in text and "hw.gpu.clock_event.active" in text
    assert "llm-pretrain-7b" in text and "slow" in text and "3,000 points/s" in text


def test_keep_running_says_where_everything_is_and_how_to_point_grafana_at_it(tmp_path: Path) -> None:
    from factorylens.demo import Endpoints, keep_running_text

    text = keep_running_text(
        Endpoints("127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:4", "http://127.0.0.1:5"), tmp_path
    )
    assert "factorylens rca incidents --target 127.0.0.1:1" in text
    assert "http://127.0.0.1:2/metrics" in text and "grpc 127.0.0.1:3, http 127.0.0.1:4" in text
    assert "Grafana: add a Prometheus data source at http://127.0.0.1:5" in text


def test_a_scored_scenario_file_brings_its_cluster_faults_and_answers() -> None:
    scenario = Path(__file__).parent.parent / "receivers" / "gpu" / "scenarios" / "scored-pcie-vs-ecc.yaml"
    run = FactoryRun("agents", 4, 8, 0, 1_700_000_000.0, str(scenario))
    assert (run.hosts, run.gpus_per_host) == (2, 4)  # the file's cluster wins over the flags
    assert [p.truth for p in run.planned] == list(run.truths) and run.planned
    assert all(p.onset_s < run.duration_s for p in run.planned)


def test_the_node_agents_serve_each_hosts_metrics_while_the_world_runs() -> None:
    import urllib.error
    import urllib.request

    from factorylens.demo import free_port

    ports = (free_port(), free_port())
    run = FactoryRun("agents", 2, 4, 0, 1_800_000_000.0, metrics_ports=ports)
    ticks = iter(run)
    next(ticks)
    pages = [urllib.request.urlopen(f"http://127.0.0.1:{p}/metrics", timeout=10).read().decode() for p in ports]
    assert all("hw_gpu_utilization" in page for page in pages)
    assert 'host_name="sim-node-1"' in pages[1]
    ticks.close()  # the world's end stops its servers
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{ports[0]}/metrics", timeout=5)
