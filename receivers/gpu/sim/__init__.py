"""Simulated GPUs for machines without one: a cluster model, fault scenarios, and a pynvml facade.

Scenarios and GPU models load without numpy; the cluster model and its pynvml facade need the
``sim`` extra and are imported on first use.
"""

from typing import TYPE_CHECKING, Any

from factorylens.receivers.gpu.sim.faults import FAULT_KINDS, Fault, Scenario, ScenarioError
from factorylens.receivers.gpu.sim.models import MODELS, GpuModel, MigProfile

if TYPE_CHECKING:  # at run time these load lazily, through __getattr__ below
    from factorylens.receivers.gpu.sim.cluster import Job, SimulatedCluster, SimulatedGpu, SimulatedHost
    from factorylens.receivers.gpu.sim.nvml import SimulatedNvml, nvml_error

_LAZY = {
    "Job": "cluster",
    "SimulatedCluster": "cluster",
    "SimulatedGpu": "cluster",
    "SimulatedHost": "cluster",
    "SimulatedNvml": "nvml",
    "nvml_error": "nvml",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    from factorylens._extras import require

    require("sim", "the simulated GPU backend")
    return getattr(import_module(f"{__name__}.{module}"), name)


__all__ = [
    "FAULT_KINDS",
    "MODELS",
    "Fault",
    "GpuModel",
    "Job",
    "MigProfile",
    "Scenario",
    "ScenarioError",
    "SimulatedCluster",
    "SimulatedGpu",
    "SimulatedHost",
    "SimulatedNvml",
    "nvml_error",
]
