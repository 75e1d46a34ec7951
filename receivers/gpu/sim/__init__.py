"""Simulated GPUs for machines without one: a cluster model, fault scenarios, and a pynvml facade."""

from factorylens.receivers.gpu.sim.cluster import Job, SimulatedCluster, SimulatedGpu, SimulatedHost
from factorylens.receivers.gpu.sim.faults import FAULT_KINDS, Fault, Scenario, ScenarioError
from factorylens.receivers.gpu.sim.models import MODELS, GpuModel, MigProfile
from factorylens.receivers.gpu.sim.nvml import SimulatedNvml, nvml_error

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
