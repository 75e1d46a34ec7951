"""``factorylens rca replay``: historical telemetry in, the incidents the service would have found out."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from google.protobuf.json_format import MessageToDict

from factorylens.rca_service.replay import read_long_table, replay

from .otlp_builders import T0, S, gauge, metrics_request

STEP = "factorylens.train.step.duration"
N, FAULT = 240, 200


def long_table(path, seed=0):
    rng = np.random.default_rng(seed)
    t = T0 / 1e9 + np.arange(N) * 10.0
    rows = []

    def add(entity, signal, values):
        rows.extend(zip(t, [entity] * N, [signal] * N, values, strict=False))

    fault = np.r_[np.zeros(FAULT), np.ones(N - FAULT)]
    add("gpu:A", "hw.temperature", 70 + rng.normal(0, 0.5, N) + 22 * fault)
    add("gpu:B", "hw.temperature", 68 + rng.normal(0, 0.5, N))
    add("host:h", "system.cpu.utilization", 0.3 + rng.normal(0, 0.02, N))
    add("rank:j/0", STEP, 0.5 + rng.normal(0, 0.01, N) + 0.4 * fault)
    add("rank:j/1", STEP, 0.5 + rng.normal(0, 0.01, N) + 0.4 * fault)
    table = pd.DataFrame(rows, columns=["time", "entity", "signal", "value"])
    if str(path).endswith(".parquet"):
        table.to_parquet(path)
    else:
        table.to_csv(path, index=False)
    return path


def topology_file(path):
    edges = [
        ("job:j", "rank:j/0", "contains"),
        ("job:j", "rank:j/1", "contains"),
        ("rank:j/0", "gpu:A", "uses"),
        ("rank:j/1", "gpu:B", "uses"),
        ("rank:j/0", "host:h", "runs_on"),
        ("rank:j/1", "host:h", "runs_on"),
    ]
    path.write_text(json.dumps({"edges": [{"src": s, "dst": d, "relation": r} for s, d, r in edges]}))
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_long_table_replays_into_one_ranked_incident(tmp_path, suffix):
    from factorylens.rca_service.ranking import Topology

    incidents = replay(long_table(tmp_path / f"m{suffix}"), topology=Topology.load(topology_file(tmp_path / "t.json")))
    assert len(incidents) == 1
    incident = incidents[0]
    assert incident.onset_unix_nano == T0 + FAULT * 10 * S
    top = incident.causes[0]
    assert (top.entity, top.signal, top.domain) == ("gpu:A", "hw.temperature", "gpu")
    assert "(hw.temperature) on gpu:A" in top.explanation and "j rank 0 -> gpu:A" in top.explanation


@pytest.mark.slow
def test_the_cli_prints_incidents_as_text_and_json(tmp_path):
    data, topology = long_table(tmp_path / "m.csv"), topology_file(tmp_path / "t.json")
    run = [sys.executable, "-m", "factorylens", "rca", "replay", str(data), "--topology", str(topology)]
    text = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert text.returncode == 0, text.stderr
    assert "#1 gpu:A (gpu) hw.temperature" in text.stdout and "1 incident(s)" in text.stdout
    as_json = subprocess.run([*run, "--json"], capture_output=True, text=True, timeout=120)
    assert json.loads(as_json.stdout)[0]["causes"][0]["entity"] == "gpu:A"
    missing = subprocess.run([*run[:5], str(tmp_path / "nope.csv")], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_otlp_json_lines_replay_with_entities_and_topology_from_resources(tmp_path):
    rng = np.random.default_rng(1)
    lines = []
    rank = {
        "service.name": "factorylens-training",
        "factorylens.job.id": "j",
        "factorylens.rank": 0,
        "host.name": "n1",
        "hw.id": "GPU-1",
    }
    for i in range(N):
        ts = T0 + i * 10 * S
        hot = i >= FAULT
        lines.append(metrics_request([gauge(STEP, [(ts, 0.5 + 0.5 * hot + rng.normal(0, 0.01))])], rank))
        lines.append(
            metrics_request(
                [gauge("hw.temperature", [(ts, 70 + 20 * hot + rng.normal(0, 0.3))], {"hw.id": "GPU-1"})],
                {"host.name": "n1"},
            )
        )
        lines.append(
            metrics_request(
                [gauge("hw.temperature", [(ts, 60 + rng.normal(0, 0.3))], {"hw.id": "GPU-2"})], {"host.name": "n2"}
            )
        )
    path = tmp_path / "export.jsonl"
    path.write_text("\n".join(json.dumps(MessageToDict(r)) for r in lines) + "\n")
    incidents = replay(path)
    assert len(incidents) == 1 and incidents[0].causes[0].entity == "gpu:GPU-1"
    assert "j rank 0 -> gpu:GPU-1" in incidents[0].causes[0].explanation


def test_bad_files_get_clear_errors(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("when,thing,v\n1,a,2\n")
    with pytest.raises(ValueError, match=r"needs a time column.*entity.*signal or metric.*value"):
        read_long_table(bad)
    not_json = tmp_path / "x.jsonl"
    not_json.write_text("{nope\n")
    with pytest.raises(ValueError, match=r"x.jsonl:1: not JSON"):
        replay(not_json)
    wrong = tmp_path / "w.json"
    wrong.write_text('{"hello": 1}\n')
    with pytest.raises(ValueError, match="expected an OTLP JSON request"):
        replay(wrong)
