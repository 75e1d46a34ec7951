"""GPU time and energy by job (the cost counters): shares, time-slicing, MIG, moves between jobs,
unallocated time, gaps, and a real scrape of the simulator (MIG included) through the registry."""

from __future__ import annotations

import pytest

from factorylens.receivers.gpu.backend import Point
from factorylens.receivers.gpu.scraper import GpuScraper
from factorylens.receivers.gpu.usage import ACTIVE_TIME, ALLOCATION_ENERGY, ALLOCATION_TIME, UsageMeter
from tests.conftest import ManualClock, make_sim

GPU = {"hw.id": "GPU-1", "hw.name": "NVIDIA H100 80GB HBM3", "hw.type": "gpu"}


def scrape(
    gpu: dict,
    jobs: list[tuple[str, str]],
    *,
    util: float | None = 0.5,
    energy: float | None = None,
    sm: float | None = None,
) -> list[Point]:
    points = [Point("hw.gpu.allocated", 1 if jobs else 0, gpu)]
    if util is not None:
        points.append(Point("hw.gpu.utilization", util, {**gpu, "hw.gpu.task": "general"}))
    if sm is not None:
        points.append(Point("hw.gpu.sm.utilization", sm, {**gpu, "gpu.measurement.source": "nvml_gpm"}))
    if energy is not None:
        points.append(Point("hw.energy", energy, gpu))
    for pid, (job, team) in enumerate(jobs):
        attributes = {**gpu, "process.pid": pid, **({"factorylens.job.id": job} if job else {})}
        if team:
            attributes["factorylens.team"] = team
        points.append(Point("process.gpu.memory.usage", 1 << 30, attributes))
    return points


def totals(points: list[Point], metric: str, **match: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for p in points:
        if p.metric == metric and all(p.attributes.get(k) == v for k, v in match.items()):
            key = str(p.attributes.get("factorylens.job.id", p.attributes.get("factorylens.allocation.state")))
            out[key] = out.get(key, 0.0) + p.value
    return out


def test_time_is_charged_to_the_job_holding_the_gpu_and_split_by_time_when_it_moves() -> None:
    """Each interval goes to whoever held the GPU at its start, with the utilization and energy read at
    its end; a holder's counters start at zero, so no interval is lost to a series' first point."""
    clock = ManualClock(0.0)
    meter = UsageMeter({"factorylens.cluster.name": "c1"}, clock=clock)
    out = meter.observe(scrape(GPU, [("a", "t1")], energy=0.0))
    assert totals(out, ALLOCATION_TIME) == {"a": 0.0}  # a new holder's counter opens at zero
    for _ in range(2):  # job a at 10 s and 20 s
        clock.advance(10)
        out = meter.observe(scrape(GPU, [("a", "t1")], energy=clock() * 700))
    for _ in range(4):  # job b from 30 s to 60 s
        clock.advance(10)
        out = meter.observe(scrape(GPU, [("b", "t2")], util=0.25, energy=clock() * 700))
    for _ in range(2):  # nobody at 70 s and 80 s
        clock.advance(10)
        out = meter.observe(scrape(GPU, [], util=0.0, energy=clock() * 700))
    assert totals(out, ALLOCATION_TIME, **{"factorylens.allocation.state": "allocated"}) == {"a": 30.0, "b": 40.0}
    assert totals(out, ALLOCATION_TIME, **{"factorylens.allocation.state": "unallocated"}) == {"unallocated": 10.0}
    # a: 10 s x 0.5 twice, then the interval to 30 s, read at 30 s (0.25); b: 30 s x 0.25, then 0 at 70 s
    assert totals(out, ACTIVE_TIME) == {"a": 12.5, "b": 7.5}
    energy = totals(out, ALLOCATION_ENERGY)
    assert energy == pytest.approx({"a": 21_000.0, "b": 28_000.0, "unallocated": 7_000.0})  # 700 W, split by time
    assert all(p.attributes["factorylens.cluster.name"] == "c1" for p in out)
    assert all(p.attributes["factorylens.team"] == "t1" for p in out if p.attributes.get("factorylens.job.id") == "a")


def test_a_nan_reading_neither_crashes_nor_charges_nonsense() -> None:
    clock = ManualClock(0.0)
    meter = UsageMeter(clock=clock)
    meter.observe([Point("hw.gpu.allocated", float("nan"), GPU)])
    clock.advance(10)
    out = meter.observe(scrape(GPU, [("a", "")], util=float("nan"), energy=float("nan")))
    assert totals(out, ALLOCATION_TIME) == {"unallocated": 10.0, "a": 0.0}  # NaN read as not held; a opens
    clock.advance(10)
    out = meter.observe(scrape(GPU, [("a", "")], util=float("nan")))
    assert totals(out, ALLOCATION_TIME) == {"unallocated": 10.0, "a": 10.0}
    assert totals(out, ACTIVE_TIME) == {"a": 0.0}


def test_jobs_time_slicing_a_gpu_share_it_and_sm_activity_is_its_own_basis() -> None:
    clock = ManualClock(0.0)
    meter = UsageMeter(clock=clock)
    meter.observe(scrape(GPU, [("a", ""), ("b", "")], util=0.8, sm=0.4))
    clock.advance(30)
    out = meter.observe(scrape(GPU, [("a", ""), ("b", "")], util=0.8, sm=0.4))
    assert totals(out, ALLOCATION_TIME) == {"a": 15.0, "b": 15.0}
    assert totals(out, ACTIVE_TIME, **{"factorylens.cost.basis": "utilization"}) == pytest.approx(
        {"a": 12.0, "b": 12.0}
    )
    assert totals(out, ACTIVE_TIME, **{"factorylens.cost.basis": "sm_activity"}) == pytest.approx({"a": 6.0, "b": 6.0})


def test_a_process_without_a_job_still_holds_the_gpu() -> None:
    clock = ManualClock(0.0)
    meter = UsageMeter(clock=clock)
    meter.observe(scrape(GPU, [("", "")]))
    clock.advance(10)
    out = meter.observe(scrape(GPU, [("", "")]))
    allocated = [p for p in out if p.metric == ALLOCATION_TIME]
    assert len(allocated) == 1 and allocated[0].value == 10.0
    assert allocated[0].attributes["factorylens.allocation.state"] == "allocated"
    assert "factorylens.job.id" not in allocated[0].attributes


def test_a_mig_slice_is_charged_its_compute_share_and_its_parent_nothing() -> None:
    clock = ManualClock(0.0)
    meter = UsageMeter(clock=clock)
    parent = {**GPU, "hw.id": "GPU-P"}
    small = {**GPU, "hw.id": "MIG-1", "hw.parent": "GPU-P", "gpu.mig.profile": "1g.10gb"}
    large = {**GPU, "hw.id": "MIG-2", "hw.parent": "GPU-P", "gpu.mig.profile": "3g.40gb"}

    def points(energy: float) -> list[Point]:
        return [
            Point("hw.gpu.allocated", 1, parent),
            Point("hw.energy", energy, parent),
            *scrape(small, [("a", "")], util=None),
            *scrape(large, [], util=None),
        ]

    meter.observe(points(0.0))
    clock.advance(70)
    out = meter.observe(points(70 * 700.0))
    assert totals(out, ALLOCATION_TIME) == pytest.approx({"a": 10.0, "unallocated": 30.0})  # 70 s x 1/7, x 3/7
    assert totals(out, ALLOCATION_ENERGY) == pytest.approx({"a": 7000.0, "unallocated": 21000.0})
    assert not any(p.attributes["hw.id"] == "GPU-P" for p in out)
    assert totals(out, ACTIVE_TIME) == {}  # NVML has no utilization for a MIG slice: nothing measured, not idle


def test_a_gap_is_not_charged() -> None:
    clock = ManualClock(0.0)
    meter = UsageMeter(clock=clock, max_gap_s=60)
    meter.observe(scrape(GPU, [("a", "")]))
    clock.advance(10)
    meter.observe(scrape(GPU, [("a", "")]))
    clock.advance(1800)  # the agent was down for half an hour: who held the GPU then is unknown
    out = meter.observe(scrape(GPU, [("a", "")]))
    assert totals(out, ALLOCATION_TIME) == {"a": 10.0}
    clock.advance(10)
    out = meter.observe(scrape(GPU, [("a", "")]))
    assert totals(out, ALLOCATION_TIME) == {"a": 20.0}


def test_ended_jobs_are_forgotten() -> None:
    clock = ManualClock(0.0)
    meter = UsageMeter(clock=clock, forget_after_s=600)
    meter.observe(scrape(GPU, [("a", "")]))
    clock.advance(10)
    out = meter.observe(scrape(GPU, [("a", "")]))
    assert set(totals(out, ALLOCATION_TIME)) == {"a"}
    for _ in range(70):  # job b for the next 700 s: job a's counters are dropped after 600 s
        clock.advance(10)
        out = meter.observe(scrape(GPU, [("b", "")]))
    assert set(totals(out, ALLOCATION_TIME)) == {"b"}


def test_the_counters_are_bounded() -> None:
    clock = ManualClock(0.0)
    meter = UsageMeter(clock=clock, max_counters=10)
    for i in range(30):
        gpu = {**GPU, "hw.id": f"GPU-{i}"}
        meter.observe(scrape(gpu, [(f"job-{i}", "")]))
        clock.advance(1)
        out = meter.observe(scrape(gpu, [(f"job-{i}", "")]))
    assert len(out) <= 10


def test_a_simulated_scrape_with_mig_emits_registry_conformant_usage(clock: ManualClock) -> None:
    cluster, _, backend = make_sim(clock, gpus=2, mig=True)
    scraper = GpuScraper(backend, strict=True, usage=UsageMeter({"factorylens.cluster.name": "sim"}, clock=clock))
    scraper.start()
    try:
        scraper.scrape()
        clock.advance(10)
        cluster.advance()
        snapshot = scraper.scrape()
    finally:
        scraper.shutdown()
    allocated = snapshot.get(ALLOCATION_TIME)
    held = [(a, v) for a, v in allocated if a["factorylens.allocation.state"] == "allocated"]
    free = [(a, v) for a, v in allocated if a["factorylens.allocation.state"] == "unallocated"]
    assert held and free
    assert all(a["hw.id"].startswith("MIG-") for a, _ in allocated)  # slices are charged, not their GPUs
    assert sum(v for _, v in held) + sum(v for _, v in free) == pytest.approx(2 * 10.0)  # two whole GPUs' time
    assert all(a.get("factorylens.job.id") for a, _ in held)


def test_mig_shares_follow_the_profile() -> None:
    from factorylens.gpus import mig_fraction

    h100 = "NVIDIA H100 80GB HBM3"
    assert mig_fraction(h100, "3g.40gb") == pytest.approx(3 / 7)
    assert mig_fraction(h100, "1c.3g.40gb") == pytest.approx(1 / 7)  # a compute instance inside a 3g instance
    assert mig_fraction("NVIDIA A30", "2g.12gb") == pytest.approx(2 / 4)
    assert mig_fraction(f"{h100} MIG 1g.10gb") == pytest.approx(1 / 7)  # from the name NVML gives a slice
    assert mig_fraction(h100) == 1.0 and mig_fraction(h100, "odd") == 1.0


def test_after_a_long_gap_the_holders_counters_go_on_without_losing_an_interval() -> None:
    clock = ManualClock(0.0)
    meter = UsageMeter(clock=clock, max_gap_s=60, forget_after_s=600)
    meter.observe(scrape(GPU, [("a", "")]))
    clock.advance(10)
    meter.observe(scrape(GPU, [("a", "")]))
    clock.advance(3600)  # an hour away: the gap is charged to nobody, and a's counter is kept open
    assert totals(meter.observe(scrape(GPU, [("a", "")])), ALLOCATION_TIME) == {"a": 10.0}
    clock.advance(10)
    assert totals(meter.observe(scrape(GPU, [("a", "")])), ALLOCATION_TIME) == {"a": 20.0}
