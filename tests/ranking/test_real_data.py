"""Root-cause ranking on the real labelled data (PetShop, Nezha): the dataset adapters, the AC@k metrics,
BARO on a planted fault, and our engine against BARO on the same cases. The tests that need the data skip
when there is no copy (``factorylens datasets fetch petshop nezha`` gets one)."""

from __future__ import annotations

import json
import shutil
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from factorylens.evaluation import (
    OVERALL,
    CaseResult,
    RcaCase,
    accuracy_at,
    average_accuracy,
    load_nezha,
    load_petshop,
    pod_to_service,
    rank_of,
    summarize,
)
from factorylens.rca_service.ranking import BaroConfig, BaroRanker, RankingConfig, RankingEngine

pytestmark = pytest.mark.slow  # `make check` leaves these out; `make test` runs them

SEARCH_LB = "servi-searc.us-west-2.elb.amazonaws.com_remote"
PETSEARCH = "PetSearch_AWS::ECS::Fargate"


@pytest.fixture(scope="module")
def petshop_root(petshop_dir) -> Path:
    return petshop_dir / "dataset"


@pytest.fixture(scope="module")
def nezha_root(nezha_dir) -> Path:
    return nezha_dir / "rca_data"


@pytest.fixture(scope="module")
def petshop(petshop_root) -> list[RcaCase]:
    return list(load_petshop(petshop_root))


@pytest.fixture(scope="module")
def nezha(nezha_root) -> list[RcaCase]:
    return list(load_nezha(nezha_root))


def assert_sane(case: RcaCase) -> None:
    frame = case.frame
    assert isinstance(frame.index, pd.DatetimeIndex) and str(frame.index.tz) == "UTC"
    assert frame.index.is_monotonic_increasing and not frame.index.has_duplicates
    assert frame.columns.nlevels == 2 and list(frame.columns.names) == ["entity", "signal"]
    assert all(k in frame.columns for k in case.kpi), case.case_id
    assert (frame.index <= case.t0).any() and (frame.index > case.t0).any(), case.case_id
    assert frame.dtypes.eq(float).all()
    entities = set(frame.columns.get_level_values(0)) | case.topology.entities
    assert case.root_cause in (case.candidates if case.candidates is not None else entities), case.case_id


# ---- adapters --------------------------------------------------------------------------------------


def test_petshop_yields_every_issue_of_both_scenarios(petshop):
    assert len(petshop) == 34
    assert len({c.case_id for c in petshop}) == 34
    assert Counter(c.case_id.split("/")[0] for c in petshop) == {"low_traffic": 26, "temporal_traffic1": 8}
    assert {c.fault_type for c in petshop} == {"latency", "availability"}
    assert len({c.root_cause for c in petshop}) == 5
    for case in petshop:
        assert_sane(case)
        assert case.kpi[0][0] == "PetSite" and case.candidates is None
        assert len(case.frame) == 5 and (case.frame.index <= case.t0).sum() == 2
        assert (case.history is not None) == case.case_id.startswith("low_traffic")
    first = petshop[0]
    assert (first.frame.index[1:] - first.frame.index[:-1] == pd.Timedelta(minutes=5)).all()


def test_petshop_joins_each_load_balancer_to_the_service_behind_it(petshop):
    case = petshop[0]
    edges = case.topology.edges
    assert edges[(SEARCH_LB, PETSEARCH)] == "calls"
    assert edges[("Servi-searc.us-west-2.elb.amazonaws.com_remote", PETSEARCH)] == "calls"
    assert edges[("servi-lista.us-west-2.elb.amazonaws.com_remote", "petlistadoptions_AWS::ECS::Fargate")] == "calls"
    assert not any(src == "servi-petsi.us-west-2.elb.amazonaws.com_remote" for src, _ in edges)  # PetSite's own
    view = (PETSEARCH, "availability.Average seen_by_caller via servi-searc.us-west-2.elb.amazonaws.com")
    np.testing.assert_array_equal(case.frame[view].to_numpy(), case.frame[(SEARCH_LB, "availability.Average")])
    assert view in case.history.columns
    assert (SEARCH_LB, "availability.Average") in case.frame.columns  # the balancer stays a candidate


def test_nezha_yields_every_fault_with_service_candidates(nezha):
    assert len(nezha) == 56
    assert Counter(c.fault_type for c in nezha) == {
        "cpu_contention": 16,
        "network_delay": 16,
        "cpu_consumed": 10,
        "return": 7,
        "exception": 7,
    }
    services = nezha[0].candidates
    assert len(services) == 10 and "frontend" in services and not any(s.startswith("host:") for s in services)
    for case in nezha:
        assert_sane(case)
        assert case.candidates == services and all(e == "entry" for e, _ in case.kpi)
        steps = case.frame.index[1:] - case.frame.index[:-1]
        assert (steps % pd.Timedelta(seconds=60) == pd.Timedelta(0)).all()
    assert nezha[0].topology.edges[("entry", "frontend")] == "calls"
    assert any(
        relation == "runs_on" and dst.startswith("host:") for (_, dst), relation in nezha[0].topology.edges.items()
    )


def test_nezha_masks_the_earlier_faults_of_the_day(nezha):
    earlier, case = nezha[0], nezha[1]
    assert earlier.case_id[:10] == case.case_id[:10] and earlier.t0 < case.t0
    index = case.frame.index
    masked = case.frame.loc[(index > earlier.t0) & (index <= earlier.t0 + pd.Timedelta(minutes=5))]
    assert len(masked) and masked.isna().all(axis=None)
    assert case.frame.loc[case.frame.index > case.t0].notna().any(axis=None)


def test_pod_names_map_to_services():
    assert pod_to_service("productcatalogservice-668d5f85fb-wckp8") == "productcatalogservice"
    assert pod_to_service("frontend-579b9bff58-t2dbm") == "frontend"


def test_a_folder_in_the_wrong_layout_is_refused_with_its_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        load_petshop(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such"):
        load_nezha(tmp_path / "absent")
    day = tmp_path / "2022-01-01"
    (day / "metric").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"2022-01-01-fault_list.json"):
        load_nezha(tmp_path)


def test_each_loader_refuses_the_other_datasets_folder(petshop_root, nezha_root):
    with pytest.raises(FileNotFoundError, match="not a Nezha folder"):
        load_nezha(petshop_root)
    with pytest.raises(FileNotFoundError, match="not a PetShop folder"):
        load_petshop(nezha_root)


def test_a_broken_label_is_refused_with_its_path(tmp_path, petshop_root):
    scenario = tmp_path / "scenario"
    issue = scenario / "test" / "issue_0"
    issue.mkdir(parents=True)
    source = petshop_root / "low_traffic"
    shutil.copy(source / "graph.csv", scenario / "graph.csv")
    shutil.copy(next(source.glob("test/issue_*")) / "metrics.csv", issue / "metrics.csv")
    (issue / "target.json").write_text(json.dumps({"target": {"node": "PetSite"}}))
    with pytest.raises(ValueError, match=r"target.json"):
        list(load_petshop(scenario))
    (issue / "target.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"target.json"):
        list(load_petshop(scenario))


# ---- metrics -----------------------------------------------------------------------------------


def test_rank_and_accuracy_at_k_on_hand_made_rankings():
    assert rank_of("b", ["a", "b", "c"]) == 2
    assert rank_of("z", ["a", "b"]) is None
    ranks = [1, 2, 4, None]
    assert accuracy_at(ranks, 1) == 0.25
    assert accuracy_at(ranks, 3) == 0.5
    assert accuracy_at(ranks, 5) == 0.75
    assert average_accuracy(ranks, 5) == pytest.approx((0.25 + 0.5 + 0.5 + 0.75 + 0.75) / 5)
    assert np.isnan(accuracy_at([], 1))


def test_summary_per_fault_type_and_overall():
    results = [
        CaseResult.score("c1", "cpu", "a", ["a", "b"], 0.1),
        CaseResult.score("c2", "cpu", "b", ["a", "c", "b"], 0.3),
        CaseResult.score("c3", "delay", "x", ["a", "b", "c"], 0.2),  # never ranked: a miss at every k
    ]
    assert results[1].rank == 3 and results[2].rank is None and results[0].top == ("a", "b")
    table = summarize(results)
    assert list(table.index) == ["cpu", "delay", OVERALL]
    assert table.loc["cpu", "n"] == 2 and table.loc["cpu", "ac1"] == 0.5 and table.loc["cpu", "ac3"] == 1.0
    assert table.loc["cpu", "avg5"] == pytest.approx((0.5 + 0.5 + 1 + 1 + 1) / 5)
    assert table.loc["delay", "ac3"] == 0.0
    assert table.loc[OVERALL, "n"] == 3 and table.loc[OVERALL, "ac3"] == pytest.approx(2 / 3)
    assert table.loc[OVERALL, "sec_per_case"] == pytest.approx(0.2)
    assert summarize([]).empty


# ---- BARO ----------------------------------------------------------------------------------------


def planted_frame(rows: int = 40, fault_row: int = 30) -> tuple[pd.DataFrame, pd.Timestamp]:
    """Three services' latency, CPU and errors; ``db``'s latency jumps at ``fault_row``, and the
    KPI (the frontend's latency) with it."""
    rng = np.random.default_rng(7)
    index = pd.date_range("2024-05-01", periods=rows, freq="60s", tz="UTC")
    columns = pd.MultiIndex.from_tuples(
        [(e, s) for e in ("api", "cache", "db") for s in ("latency_p99", "cpu_util", "error_rate")]
        + [("frontend", "latency_p99")],
        names=["entity", "signal"],
    )
    frame = pd.DataFrame(rng.normal(10.0, 1.0, size=(rows, len(columns))), index=index, columns=columns)
    frame.loc[frame.index[fault_row:], ("db", "latency_p99")] += 40.0
    frame.loc[frame.index[fault_row:], ("frontend", "latency_p99")] += 45.0
    return frame, index[fault_row - 1]


def test_baro_ranks_the_planted_series_entity_first():
    frame, t0 = planted_frame()
    kpi = [("frontend", "latency_p99")]
    assert BaroRanker().find_root_causes(frame, kpi, t0).entities[0] == "db"
    assert (
        BaroRanker(BaroConfig(detect_change_point=True, lookback=None)).find_root_causes(frame, kpi).entities[0] == "db"
    )
    ranked = BaroRanker().find_root_causes(frame, kpi, t0, candidates=["cache", "db", "nowhere"]).entities
    assert ranked[0] == "db" and ranked[-1] == "nowhere" and len(ranked) == 3
    assert (
        "frontend" not in BaroRanker().find_root_causes(frame, kpi, t0).entities
    )  # the KPI is the symptom, not a candidate
    with pytest.raises(ValueError, match="t0"):
        BaroRanker().find_root_causes(frame, kpi)


def test_baro_ignores_masked_rows_and_constant_references():
    frame, t0 = planted_frame()
    frame.iloc[5:15] = np.nan  # an earlier incident, masked
    frame[("cache", "flag")] = 1.0
    frame.loc[frame.index[-1], ("cache", "flag")] = 1000.0  # no spread before t0: dropped, as BARO does
    assert BaroRanker().find_root_causes(frame, [("frontend", "latency_p99")], t0).entities[0] == "db"


# ---- engine against BARO -------------------------------------------------------------------------


def ac3(cases: list[RcaCase], rank) -> float:
    return summarize([CaseResult.score(c.case_id, c.fault_type, c.root_cause, rank(c), 0.0) for c in cases]).loc[
        OVERALL, "ac3"
    ]


def test_engine_beats_baro_on_both_datasets(petshop, nezha):
    engine, baro = RankingEngine(RankingConfig()), BaroRanker()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for cases in (petshop, nezha):
            ours = ac3(
                cases,
                lambda c: [
                    x.entity
                    for x in engine.find_root_causes(
                        c.frame, c.kpi, c.t0, topology=c.topology, history=c.history, candidates=c.candidates
                    ).causes
                ],
            )
            theirs = ac3(cases, lambda c: baro.find_root_causes(c.frame, c.kpi, c.t0, candidates=c.candidates).entities)
            assert ours > theirs + 0.1, (ours, theirs)
