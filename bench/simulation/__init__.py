"""The GPU-cluster scenario suite: a deterministic, simulated-time generator of what a real cluster's
node agents and instrumented training ranks export, with one injected fault (of a catalog of
thirteen covering eleven fault types) and its true root cause, background noise and a benign
anomaly; or a case of several faults at awkward moments (``CASES``: a fault inside a checkpoint,
harmless signals beside the real one, two faults at once, gradual faults, a fault on an unused GPU)
with its true causes (``run.truths``) and decoys (``run.decoys``); or a scored scenario file of
one's own (``load_scenario_file(path).run()``). ``bench/scenarios.py`` scores the RCA service's
analyzer on them.

    from factorylens.simulation import CATALOG, ScenarioRun, ingest
    run = ScenarioRun("gpu_power_cap", seed=1, hosts=2, gpus_per_host=8)
    for time_unix_nano, requests in run:
        ingest(store, requests)          # OTLP requests, stamped with simulated time
    run.truth.entity                     # e.g. "gpu:GPU-…", the answer
"""

from factorylens.simulation._cases import CASES
from factorylens.simulation._catalog import (
    CATALOG,
    FAULT_TYPES,
    Decoy,
    FaultSpec,
    Injected,
    Targets,
    Truth,
    fault_spec,
)
from factorylens.simulation._file import Expectation, ScenarioFile, load_scenario_file
from factorylens.simulation._otlp import LogExport, MetricExport
from factorylens.simulation._run import START_TIME, TRAINING_JOB, BenignAnomaly, ScenarioRun, ingest
from factorylens.simulation._serving import (
    SERVING_CATALOG,
    SERVING_FAULT_TYPES,
    SERVING_JOB,
    ServingFault,
    ServingRun,
)
from factorylens.simulation._serving_model import ServedModel, Traffic
from factorylens.simulation._workload import HEALTHY_STEP_S, RankInfo, WorkloadFault

__all__ = [
    "CASES",
    "CATALOG",
    "FAULT_TYPES",
    "HEALTHY_STEP_S",
    "SERVING_CATALOG",
    "SERVING_FAULT_TYPES",
    "SERVING_JOB",
    "START_TIME",
    "TRAINING_JOB",
    "BenignAnomaly",
    "Decoy",
    "Expectation",
    "FaultSpec",
    "Injected",
    "LogExport",
    "MetricExport",
    "RankInfo",
    "ScenarioFile",
    "ScenarioRun",
    "ServedModel",
    "ServingFault",
    "ServingRun",
    "Targets",
    "Traffic",
    "Truth",
    "WorkloadFault",
    "fault_spec",
    "ingest",
    "load_scenario_file",
]
