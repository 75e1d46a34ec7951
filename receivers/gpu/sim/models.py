"""GPU model presets with the limits of the real boards (NVIDIA datasheets)."""

from __future__ import annotations

from dataclasses import dataclass

_MIB = 1 << 20


@dataclass(frozen=True)
class MigProfile:
    name: str
    count: int  # instances of this profile that fill one GPU
    memory_bytes: int


@dataclass(frozen=True)
class GpuModel:
    key: str
    name: str  # what nvmlDeviceGetName returns
    memory_bytes: int
    tdp_w: float  # default (and maximum) power limit
    min_power_limit_w: float
    idle_w: float
    max_sm_mhz: int
    idle_sm_mhz: int
    memory_mhz: int
    slowdown_c: float  # software thermal slowdown starts
    hw_slowdown_c: float  # hardware thermal slowdown
    nvlink_links: int
    nvlink_gbps_per_direction: float  # GB/s over all links, one direction
    pcie_gbps_per_direction: float
    gpm: bool  # Hopper and newer: NVML GPM profiling metrics
    mig: MigProfile | None
    has_encoder: bool
    has_fan: bool
    peak_bf16_dense_tflops: float
    vbios: str


MODELS: dict[str, GpuModel] = {
    m.key: m
    for m in (
        GpuModel(
            "H100",
            "NVIDIA H100 80GB HBM3",
            81559 * _MIB,
            700.0,
            200.0,
            72.0,
            1980,
            345,
            2619,
            87.0,
            92.0,
            18,
            450.0,
            64.0,
            True,
            MigProfile("1g.10gb", 7, 9984 * _MIB),
            False,
            False,
            989.4,
            "96.00.99.00.01",
        ),
        GpuModel(
            "H200",
            "NVIDIA H200",
            143771 * _MIB,
            700.0,
            200.0,
            76.0,
            1980,
            345,
            3201,
            87.0,
            92.0,
            18,
            450.0,
            64.0,
            True,
            MigProfile("1g.18gb", 7, 16896 * _MIB),
            False,
            False,
            989.4,
            "96.00.A5.00.01",
        ),
        GpuModel(
            "A100",
            "NVIDIA A100-SXM4-80GB",
            81920 * _MIB,
            400.0,
            100.0,
            60.0,
            1410,
            210,
            1593,
            85.0,
            90.0,
            12,
            300.0,
            32.0,
            False,
            MigProfile("1g.10gb", 7, 9728 * _MIB),
            False,
            False,
            312.0,
            "92.00.36.00.02",
        ),
        GpuModel(
            "L40S",
            "NVIDIA L40S",
            46068 * _MIB,
            350.0,
            100.0,
            35.0,
            2520,
            210,
            9001,
            88.0,
            93.0,
            0,
            0.0,
            32.0,
            False,
            None,
            True,
            True,
            362.1,
            "95.02.66.00.02",
        ),
    )
}


def model(key: str) -> GpuModel:
    try:
        return MODELS[key.upper()]
    except KeyError:
        raise ValueError(f"unknown GPU model {key!r}; choose one of {', '.join(MODELS)}") from None
