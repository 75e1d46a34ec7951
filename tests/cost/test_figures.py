"""The cost figures against hand computations: the same hour as the promtool rule tests
(cost_rules_test.yaml), so the live service and the Prometheus rules agree by construction."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from factorylens.processors.cost import UNALLOCATED, JobOutput, PriceCatalog, UsageRow, cost_totals, row_totals

HERE = Path(__file__).parent
H100, A100, GB200 = "NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB", "NVIDIA GB200"
# the hour of cost_rules_test.yaml, as the receiver's counters' increases
ROWS = [
    UsageRow("g1", H100, "j1", "research", "c1", allocated_s=3600, active_s=2700, energy_j=2.52e6),
    UsageRow("g2", A100, "j2", "vision", "c1", allocated_s=1800, active_s=900, energy_j=720_000),
    UsageRow("g2", A100, "", "", "c1", unallocated_s=1800, unallocated_energy_j=180_000),
    UsageRow("g3", H100, "j3", "research", "c2", allocated_s=3600),
    UsageRow("g4", H100, "j4", "vision", "c2", allocated_s=3600),
    UsageRow("g5", GB200, "j5", "vision", "c1", allocated_s=3600),
]
OUTPUTS = {"j1": JobOutput(tokens=6e7, mfu=0.4), "j3": JobOutput(samples=6000, mfu=0.5)}


@pytest.fixture(scope="module")
def catalog() -> PriceCatalog:
    return PriceCatalog.from_file(HERE / "test-catalog.yaml")


def test_each_gpu_costs_what_the_rule_tests_compute_by_hand(catalog: PriceCatalog) -> None:
    by_gpu = cost_totals(ROWS, catalog, "gpu", OUTPUTS)
    assert {g: t.gpu_time_cost for g, t in by_gpu.items()} == pytest.approx(
        {"g1": 3.0, "g2": 1.0, "g3": 2.5, "g4": 5.0, "g5": 0.0}, rel=1e-3
    )
    g1, g2, g5 = by_gpu["g1"], by_gpu["g2"], by_gpu["g5"]
    assert (g1.idle_h, g1.idle_cost, g1.useful_h, g1.useful_cost) == pytest.approx((0.25, 0.75, 0.4, 1.2), rel=1e-3)
    assert g1.energy_kwh == pytest.approx(0.7, rel=1e-3) and g1.energy_cost == 0.0  # power is in the H100 price
    assert (g2.idle_h, g2.idle_cost, g2.useful_h) == pytest.approx((0.25, 0.5, 0.25), rel=1e-3)
    assert g2.energy_cost == pytest.approx(0.2 * 0.15, rel=1e-3)
    assert g2.unallocated_h == pytest.approx(0.5, rel=1e-3)
    assert g2.unallocated_cost == pytest.approx(0.5 * 2.0 + 0.05 * 0.15, rel=1e-3)
    assert g2.total_cost == pytest.approx(1.0 + 0.03 + 1.0075, rel=1e-3)
    assert (g5.unpriced_h, g5.total_cost) == (1.0, 0.0)  # unpriced, never free
    assert by_gpu["g3"].useful_h == pytest.approx(0.5)  # MFU 0.5 of an hour


def test_teams_and_jobs_sum_their_gpus_and_unallocated_time_belongs_to_nobody(catalog: PriceCatalog) -> None:
    teams = cost_totals(ROWS, catalog, "team", OUTPUTS)
    assert set(teams) == {"research", "vision", UNALLOCATED}
    assert teams["research"].gpu_time_cost == pytest.approx(5.5)
    assert teams["vision"].gpu_time_cost == pytest.approx(6.0)
    assert teams[UNALLOCATED].unallocated_cost == pytest.approx(1.0075)
    assert teams[UNALLOCATED].allocated_h == 0
    everything = sum(t.total_cost for t in teams.values())
    assert everything == pytest.approx(3 + 1.03 + 1.0075 + 2.5 + 5, rel=1e-3)
    jobs = cost_totals(ROWS, catalog, "job", OUTPUTS)
    assert jobs["j1"].cost_per_1m_tokens == pytest.approx(3.0 / 60, rel=1e-3)  # $3 for 60M tokens
    assert jobs["j3"].cost_per_1k_samples == pytest.approx(2.5 / 6, rel=1e-3)  # $2.5 for 6k samples
    assert math.isnan(jobs["j4"].cost_per_1m_tokens)  # reported no tokens
    assert jobs["j1"].efficiency == pytest.approx(0.4)
    # a team's cost per 1M tokens divides only the cost of the jobs that reported tokens
    assert teams["research"].cost_per_1m_tokens == pytest.approx(3.0 / 60, rel=1e-3)


def test_models_and_clusters(catalog: PriceCatalog) -> None:
    models = cost_totals(ROWS, catalog, "model", OUTPUTS)
    assert models["H100"].allocated_h == pytest.approx(3.0)
    assert models[f"(unpriced) {GB200}"].unpriced_h == pytest.approx(1.0)
    clusters = cost_totals(ROWS, catalog, "cluster", OUTPUTS)
    assert clusters["c2"].gpu_time_cost == pytest.approx(7.5)


def test_a_gpu_without_utilization_has_no_idle_figure_rather_than_zero(catalog: PriceCatalog) -> None:
    t = row_totals(UsageRow("m", H100, "j", "t", "c1", allocated_s=3600), catalog)
    assert (t.measured_h, t.idle_h) == (0.0, 0.0)
    assert math.isnan(t.idle_ratio) and math.isnan(t.efficiency)  # unknown, not useless


def test_unknown_group_by_is_refused(catalog: PriceCatalog) -> None:
    with pytest.raises(ValueError, match="group_by must be one of"):
        cost_totals(ROWS, catalog, "rack")
