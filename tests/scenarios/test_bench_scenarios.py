"""bench/scenarios.py: how it scores runs of several true causes, decoys and runs that should open
nothing (on hand-made incidents), what it plans, and ``--scenario FILE`` end to end on a shipped
example (its incidents printed, the JSON line last)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from factorylens.simulation import Decoy, Truth
from tests.scenarios._bench import bench

NS = 1_000_000_000
EXAMPLE = Path(__file__).resolve().parents[2] / "receivers" / "gpu" / "scenarios" / "scored-pcie-vs-ecc.yaml"
KEYS = {
    "bench",
    "fault_types",
    "ac1_min",
    "ac1_mean",
    "onset_to_incident_s_p95",
    "cases",
    "ac1",
    "ac3",
    "false_incidents",
    "ac1_by_type",
    "control_incidents",
}


def _run(truths=(), decoys=(), gradual=False, bite_s=None):
    return SimpleNamespace(
        truths=tuple(truths),
        truth=truths[0] if truths else None,
        decoys=tuple(decoys),
        benign=None,
        onset_unix_nano=1000 * NS,
        epoch_ns=0,
        onset_s=1000.0,
        bite_s=bite_s,
        scrape_interval_s=10.0,
        spec=SimpleNamespace(gradual=gradual),
    )


def _incident(name, opened_s, causes, onset_s=1000.0):
    return SimpleNamespace(
        id=name,
        opened_unix_nano=int(opened_s * NS),
        onset_unix_nano=int(onset_s * NS),
        causes=[SimpleNamespace(rank=i, entity=e, signal=s) for i, (e, s) in enumerate(causes, start=1)],
    )


def test_several_true_causes_rank_among_the_rest_in_their_best_incident():
    gpu, host = Truth("gpu:A", "gpu"), Truth("host:h1", "host")
    run = _run([gpu, host])
    one = _incident("one", 1040, [("gpu:A", "x"), ("host:h1", "y"), ("nic:n", "z")])
    assert bench.truth_rank(one, run, host) == 1  # the other true cause above it does not count
    assert bench._score([one], run)["rank"] == 1  # the top two of one incident
    own = [_incident("a", 1040, [("gpu:A", "x")]), _incident("b", 1050, [("host:h1", "y")])]
    assert bench._score(own, run)["rank"] == 1  # each in its own incident
    buried = [_incident("a", 1040, [("gpu:A", "x"), ("nic:n", "z"), ("host:h1", "y")])]
    scored = bench._score(buried, run)
    assert scored["rank"] == 2 and scored["ranks"] == [1, 2]
    assert bench._score([_incident("a", 1040, [("gpu:A", "x")])], run)["rank"] is None  # one never surfaced


def test_a_decoy_on_top_is_counted_and_a_run_that_should_open_nothing_scores_by_opening_nothing():
    run = _run([Truth("gpu:A", "gpu")], [Decoy("*", "free memory", "*memory*free*")])
    scored = bench._score([_incident("a", 1040, [("host:h", "system.memory.usage{state=free}"), ("gpu:A", "x")])], run)
    assert scored["rank"] == 2 and scored["decoy_top"]
    quiet = _run([], [Decoy("gpu:F", "unused")])
    assert bench._score([], quiet)["rank"] == 1
    opened = bench._score([_incident("a", 1040, [("gpu:F", "x")])], quiet)
    assert opened["rank"] is None and opened["decoy_top"]
    before = bench._score([_incident("a", 900, [("gpu:F", "x")], onset_s=900)], quiet)
    assert before["rank"] == 1  # opened before the onset: false, counted elsewhere


def test_a_gradual_fault_is_timed_from_its_bite():
    assert bench.reference_ns(_run(gradual=True, bite_s=1300.0)) == 1300 * NS
    assert bench.reference_ns(_run(gradual=True)) == 1000 * NS  # never bit: from the onset
    assert bench.reference_ns(_run(bite_s=1300.0)) == 1000 * NS


def _args(**overrides):
    values = {
        "scenario": [],
        "fault_types": None,
        "no_cases": False,
        "no_control": False,
        "seeds": [0],
        "sizes": [(2, 4)],
        "case_seeds": [10],
        "case_sizes": [(2, 4)],
        "serving_day": False,
    }
    values.update(overrides)
    return argparse.Namespace(**values)


def test_the_plan_runs_the_catalog_the_cases_the_serving_faults_and_the_controls():
    from factorylens.simulation import CASES, CATALOG, SERVING_CATALOG

    plan = bench.plan_runs(_args())
    assert [p[0] for p in plan] == [*CATALOG, None, *SERVING_CATALOG, bench.SERVING_CONTROL, *CASES]
    assert next(p for p in plan if p[0] == "unused_gpu_fault")[2] == (2, 8)  # it needs a free GPU
    assert {p[0] for p in bench.plan_runs(_args(fault_types=["cases"]))} == set(CASES)  # no control
    assert {p[0] for p in bench.plan_runs(_args(no_cases=True))} == {
        *CATALOG,
        None,
        *SERVING_CATALOG,
        bench.SERVING_CONTROL,
    }
    serving = bench.plan_runs(_args(fault_types=["serving"], serving_day=True))
    assert [p[0] for p in serving] == [bench.SERVING_DAY, *SERVING_CATALOG, bench.SERVING_CONTROL]  # the day first
    by_type = bench.plan_runs(_args(fault_types=["serving_gpu_throttling"], no_control=True))
    assert [p[0] for p in by_type] == ["serving_gpu_throttle"]
    files = bench.plan_runs(_args(scenario=["a.yaml", "b.yaml"]))
    assert [p[3] for p in files] == ["a.yaml", "b.yaml"]


@pytest.mark.slow
def test_scenario_file_prints_its_incidents_and_the_json_line_last(capsys):
    assert bench.main(["--scenario", str(EXAMPLE), "--jobs", "1"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(out[-1])
    assert set(summary) == KEYS
    assert summary["bench"] == "scenarios" and summary["cases"] == 1 and summary["fault_types"] == 1
    assert summary["false_incidents"] == 0
    text = "\n".join(out)
    assert "== " + str(EXAMPLE) in text and "true cause(s): gpu:GPU-" in text
    assert "scored-pcie-vs-ecc" in text


def test_a_broken_scenario_file_stops_the_bench_with_its_message(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("faults: [{kind: xid, target: {host: 7, gpu: 0}, start: 0}]")
    with pytest.raises(SystemExit, match="not in the cluster"):
        bench.main(["--scenario", str(bad), "--jobs", "1"])
