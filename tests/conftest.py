"""Shared test helpers: the labelled datasets (skipped when absent), a hand-driven clock, simulated backends,
free ports, polling with a deadline."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from factorylens.datasets import DatasetNotFound, find_dataset
from factorylens.rca_service import RcaService, RcaServiceConfig
from factorylens.receivers.gpu.jobs import StaticJobResolver
from factorylens.receivers.gpu.nvml import NvmlBackend
from factorylens.receivers.gpu.sim import Scenario, SimulatedCluster, SimulatedNvml


def dataset_dir(name: str) -> Path:
    """The folder of a labelled dataset (nab, petshop, nezha) as ``factorylens.datasets.find_dataset`` finds it
    (FACTORYLENS_DATA, else ../shared/data beside the checkout, else a completed download cache); when there
    is none the test is skipped with a one-line reason naming ``factorylens datasets fetch <name>``."""
    try:
        return find_dataset(name)
    except DatasetNotFound as exc:
        pytest.skip(str(exc))


_RECEIVERS_LOG_LEVEL = logging.getLogger("factorylens.receivers").level  # as configured, before any test


@pytest.fixture(autouse=True)
def _receiver_log_level_restored() -> object:
    """Harnesses quieten the receivers' warnings (the injected XIDs are the point), some in module-scoped
    fixtures; every test ends with the level as configured, so a later one in the same worker sees them."""
    yield
    logging.getLogger("factorylens.receivers").setLevel(_RECEIVERS_LOG_LEVEL)


@pytest.fixture(scope="session")
def nab_dir() -> Path:
    return dataset_dir("nab")


@pytest.fixture(scope="session")
def petshop_dir() -> Path:
    return dataset_dir("petshop")


@pytest.fixture(scope="session")
def nezha_dir() -> Path:
    return dataset_dir("nezha")


class ManualClock:
    """Monotonic seconds that only move when a test says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def make_sim(
    clock: ManualClock,
    faults: list[dict] | None = None,
    *,
    hosts: int = 1,
    gpus: int = 8,
    model: str = "H100",
    mig: bool = False,
    host: int = 0,
    **backend_kwargs,
) -> tuple[SimulatedCluster, SimulatedNvml, NvmlBackend]:
    scenario = Scenario.from_dict({"faults": faults or []})
    cluster = SimulatedCluster(hosts, gpus, model, scenario, mig=mig, clock=clock, start_time=1_700_000_000.0)
    nvml = SimulatedNvml(cluster.hosts[host])
    backend = NvmlBackend(
        nvml, StaticJobResolver(cluster.jobs_by_pid(cluster.hosts[host])), clock=clock, **backend_kwargs
    )
    return cluster, nvml, backend


def values(result, metric: str, **match) -> list[tuple[dict, float]]:
    """Points of ``metric`` whose attributes include ``match`` (as (attributes, value))."""
    return [
        (dict(p.attributes), p.value)
        for p in result.points
        if p.metric == metric and all(p.attributes.get(k) == v for k, v in match.items())
    ]


def value(result, metric: str, **match) -> float:
    found = values(result, metric, **match)
    assert len(found) == 1, f"expected one {metric} point matching {match}, got {len(found)}"
    return found[0][1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], object], timeout_s: float = 20.0, interval_s: float = 0.05, what: str = ""):
    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what or predicate}")
        time.sleep(interval_s)


@pytest.fixture
def make_service(tmp_path):
    """``make_service(**config)`` → a started RcaService; every one is stopped at teardown."""
    started: list[RcaService] = []

    def make(**overrides) -> RcaService:
        values = {
            "listen": "127.0.0.1:0",
            "metrics_listen": "127.0.0.1:0",
            "data_dir": str(tmp_path / "data"),
            "analysis_interval_s": 3600.0,
            **overrides,
        }
        service = RcaService(RcaServiceConfig(**values))
        service.start()
        started.append(service)
        return service

    yield make
    for service in started:
        service.stop(grace_s=1)
