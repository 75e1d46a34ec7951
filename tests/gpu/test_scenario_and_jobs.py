"""Fault scenario parsing and pid → job attribution from a /proc tree."""

from __future__ import annotations

import json
import math

import pytest

from factorylens.receivers.gpu.jobs import ProcJobResolver
from factorylens.receivers.gpu.sim import FAULT_KINDS, Scenario, ScenarioError
from tests.gpu.test_simulator import SCENARIOS


def test_shipped_scenarios_load_and_cover_every_fault_kind():
    demo = Scenario.load(SCENARIOS / "demo.yaml")
    assert [f.kind for f in demo.faults] == ["thermal_throttle"]
    everything = Scenario.load(SCENARIOS / "all-faults.yaml")
    assert {f.kind for f in everything.faults} | {"driver_missing"} == set(FAULT_KINDS)


def test_durations_targets_and_defaults(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(
        json.dumps(
            {
                "faults": [
                    {"kind": "xid", "target": {"host": "sim-node-1", "gpu": 2}, "start": "1.5m"},
                    {
                        "kind": "power_cap",
                        "target": {"host": 0, "gpu": "*"},
                        "start": 30,
                        "duration": "2h",
                        "params": {"limit_fraction": 0.6},
                    },
                ]
            }
        )
    )
    xid, cap = Scenario.load(path).faults
    assert (xid.host, xid.gpu, xid.start_s, xid.duration_s, xid.params["code"]) == ("sim-node-1", 2, 90.0, math.inf, 79)
    assert cap.gpu is None and cap.duration_s == 7200 and cap.params["limit_fraction"] == 0.6
    assert cap.active(100) and not cap.active(7300) and cap.targets(0, "x", 5) and not cap.targets(1, "x", 5)


@pytest.mark.parametrize(
    "fault, message",
    [
        ({"kind": "meteor", "target": {"gpu": 0}, "start": 0}, "kind 'meteor' is not one of"),
        ({"kind": "xid", "target": {"gpu": 0}}, "'start' is required"),
        ({"kind": "xid", "target": {"host": 0}, "start": 0}, "target.gpu is required"),
        ({"kind": "xid", "target": {"gpu": 0}, "start": "soon"}, "is not a duration"),
        ({"kind": "xid", "target": {"gpu": 0}, "start": -5}, "must not be negative"),
        ({"kind": "xid", "target": {"gpu": 0}, "start": 0, "params": {"colour": "red"}}, "unknown params ['colour']"),
        (
            {"kind": "nvml_error", "target": {"gpu": 0}, "start": 0, "params": {"error": "Oops"}},
            "not an NVML error name",
        ),
        ({"kind": "driver_missing", "target": {"gpu": 1}, "start": 0}, "applies to a whole host"),
        ({"kind": "xid", "target": {"gpu": 0}, "start": 0, "when": 1}, "unknown keys ['when']"),
    ],
)
def test_bad_faults_are_rejected_with_a_clear_message(fault, message):
    with pytest.raises(ScenarioError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        Scenario.from_dict({"faults": [fault]})


def test_unreadable_or_malformed_files(tmp_path):
    with pytest.raises(ScenarioError, match="cannot read scenario"):
        Scenario.load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("faults: [unclosed")
    with pytest.raises(ScenarioError, match="is not valid YAML"):
        Scenario.load(bad)


def make_proc(root, pid, *, environ=None, cgroup="", comm="python"):
    d = root / str(pid)
    d.mkdir(parents=True)
    (d / "environ").write_bytes(b"\0".join(f"{k}={v}".encode() for k, v in (environ or {}).items()) + b"\0")
    (d / "cgroup").write_text(cgroup)
    (d / "comm").write_text(comm + "\n")


def test_job_attribution_from_environment_and_cgroup(tmp_path):
    make_proc(
        tmp_path,
        100,
        environ={"FACTORYLENS_JOB_ID": "train-42", "FACTORYLENS_TEAM": "vision", "SLURM_JOB_ID": "777", "PATH": "/bin"},
    )
    make_proc(tmp_path, 200, environ={"SLURM_JOB_ID": "555"}, comm="srun-task")
    make_proc(
        tmp_path,
        300,
        cgroup="0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-"
        "pod1b2c3d4e_aaaa_bbbb_cccc_0123456789ab.slice/cri-containerd-abc.scope\n",
    )
    make_proc(tmp_path, 400, cgroup="12:memory:/kubepods/besteffort/pod5e6f7a8b-1111-2222-3333-444455556666/ctr\n")
    resolver = ProcJobResolver(str(tmp_path))
    assert resolver.resolve(100) == {
        "process.executable.name": "python",
        "slurm.job.id": "777",
        "factorylens.team": "vision",
        "factorylens.job.id": "train-42",
    }
    assert resolver.resolve(200)["factorylens.job.id"] == "555"
    assert resolver.resolve(300)["k8s.pod.uid"] == "1b2c3d4e-aaaa-bbbb-cccc-0123456789ab"
    assert resolver.resolve(300)["factorylens.job.id"] == "1b2c3d4e-aaaa-bbbb-cccc-0123456789ab"
    assert resolver.resolve(400)["k8s.pod.uid"] == "5e6f7a8b-1111-2222-3333-444455556666"
    assert resolver.resolve(999) == {}  # gone or unreadable: no attribution, no error


def test_job_cache_is_bounded_to_live_processes(tmp_path):
    make_proc(tmp_path, 1, environ={"FACTORYLENS_JOB_ID": "a"})
    resolver = ProcJobResolver(str(tmp_path))
    assert resolver.resolve(1)["factorylens.job.id"] == "a"
    resolver.forget_except(set())
    (tmp_path / "1" / "environ").write_bytes(b"FACTORYLENS_JOB_ID=b\0")
    assert resolver.resolve(1)["factorylens.job.id"] == "b"  # a reused pid is read afresh
