"""Fault scenarios for the simulated backend: what goes wrong, where, when and for how long.

A scenario is a YAML or JSON file::

    faults:
      - kind: thermal_throttle        # one of FAULT_KINDS
        target: {host: 0, gpu: 3}     # host index or name; gpu index, or "*" for every GPU
        start: 2m                     # simulated time after the simulation starts (s, m, h)
        duration: 5m                  # omit for "until the end"
        ramp: 3m                      # optional: grow from harmless to ``params`` over this long
        params: {extra_celsius: 30}

A ``ramp`` makes a fault gradual (a fan slowly failing, a file server degrading): its numeric params
move linearly from the value that does nothing (``RAMP_FROM``: 0 °C extra, the full power limit, the
full link, 1× latency, no errors) to the given ones over the ramp, then stay. Kinds that are events or
switches (``RAMP_KINDS`` lists the others) take no ramp.

A scored scenario (``bench/scenarios.py --scenario FILE``, ``factorylens.simulation.load_scenario_file``)
adds ``cluster``, ``seed``, ``duration`` and ``scrape_interval`` at the top and an ``expect`` per fault;
the simulator ignores them.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from factorylens.receivers.gpu.nvml import NVML_ERROR_NAMES

# kind -> (allowed params with defaults, what it does)
FAULT_KINDS: dict[str, tuple[dict[str, Any], str]] = {
    "xid": ({"code": 79, "count": 1, "interval": 0.0}, "raise XID event(s) through the NVML event API"),
    "ecc_burst": ({"corrected_per_s": 50.0, "uncorrected": 1}, "volatile ECC errors at a rate, plus uncorrected ones"),
    "ecc_corrected": (
        {"corrected_per_s": 2.0},
        "single-bit ECC errors that the memory corrects: the count rises, nothing slows (no XID, no row remap)",
    ),
    "thermal_throttle": ({"extra_celsius": 30.0}, "cooling failure: temperature rises into thermal slowdown"),
    "power_cap": ({"limit_fraction": 0.5}, "power limit lowered to a fraction of TDP (power-cap throttling)"),
    "nvlink_degradation": (
        {"throughput_fraction": 0.3, "crc_errors_per_s": 20.0},
        "NVLink throughput drops and CRC/replay errors climb",
    ),
    "pcie_degradation": (
        {"throughput_fraction": 0.25, "replays_per_s": 10.0},
        "PCIe link degrades: throughput drops and replays climb",
    ),
    "gpu_lost": ({}, "every NVML call on the GPU raises GpuIsLost (fallen off the bus)"),
    "nvml_error": (
        {"function": "nvmlDeviceGetPowerUsage", "error": "NotSupported"},
        "one NVML function raises the given error (NotSupported, NoPermission, Unknown, ...)",
    ),
    "stuck_utilization": ({"value": 0.0}, "utilization reads a constant while the GPU keeps drawing power"),
    "memory_leak": ({"bytes_per_s": 256 * 2**20}, "GPU memory used grows until the board is full"),
    "driver_missing": ({"error": "DriverNotLoaded"}, "nvmlInit fails (no driver / library) on the host"),
    # the node's other layers (target: a host; no gpu)
    "slow_storage": (
        {"mount": "/mnt/ckpt", "latency_factor": 10.0, "throughput_fraction": 0.1},
        "a mount's operations get slower and its throughput is capped (e.g. a struggling NFS server)",
    ),
    "filesystem_full": ({"mount": "/mnt/ckpt", "used_fraction": 0.98}, "a file system fills up"),
    "ib_link_flap": ({"port": "mlx5_0/1", "period": 60.0}, "an InfiniBand port goes down and up, half of each period"),
    "ib_symbol_errors": ({"port": "*", "per_s": 50.0}, "symbol errors on InfiniBand ports (a bad cable or optic)"),
    "ib_congestion": (
        {"port": "*", "throughput_fraction": 0.3, "xmit_wait_per_s": 5.0e6},
        "fabric congestion: port throughput capped, xmit_wait climbing; collectives slow down",
    ),
    "nic_down": ({"port": "mlx5_0/1"}, "an InfiniBand port is down"),
    "cpu_saturation": ({"utilization": 0.98}, "the host's CPUs are saturated (a noisy neighbour, runaway process)"),
    "memory_pressure": (
        {"used_fraction": 0.97, "swap_pages_per_s": 20000.0},
        "the host runs out of memory and swaps; the input pipeline starves",
    ),
}
NODE_FAULTS = frozenset(
    {
        "slow_storage",
        "filesystem_full",
        "ib_link_flap",
        "ib_symbol_errors",
        "ib_congestion",
        "nic_down",
        "cpu_saturation",
        "memory_pressure",
    }
)
_HOST_ONLY = {"driver_missing"} | NODE_FAULTS
# what each rampable param is when the fault does nothing yet (a ramp starts there)
RAMP_FROM: dict[str, float] = {
    "extra_celsius": 0.0,
    "limit_fraction": 1.0,
    "throughput_fraction": 1.0,
    "latency_factor": 1.0,
    "corrected_per_s": 0.0,
    "replays_per_s": 0.0,
    "crc_errors_per_s": 0.0,
    "bytes_per_s": 0.0,
    "xmit_wait_per_s": 0.0,
    "per_s": 0.0,
    "utilization": 0.0,  # cpu_saturation takes the higher of this and the host's own load
    "used_fraction": 0.0,  # likewise memory_pressure and filesystem_full
    "swap_pages_per_s": 0.0,
}
RAMP_KINDS = frozenset(
    {
        "ecc_corrected",
        "thermal_throttle",
        "power_cap",
        "nvlink_degradation",
        "pcie_degradation",
        "memory_leak",
        "slow_storage",
        "filesystem_full",
        "ib_symbol_errors",
        "ib_congestion",
        "cpu_saturation",
        "memory_pressure",
    }
)
SCORING_KEYS = ("cluster", "seed", "duration", "scrape_interval")  # top level, for scored runs only
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message says which fault and what is wrong."""


@dataclass(frozen=True)
class Fault:
    kind: str
    host: int | str
    gpu: int | None  # None: every GPU on the host
    start_s: float
    duration_s: float = math.inf
    params: Mapping[str, Any] = field(default_factory=dict)
    ramp_s: float = 0.0  # > 0: the params grow from RAMP_FROM to their values over this long

    def active(self, t_s: float) -> bool:
        return self.start_s <= t_s < self.start_s + self.duration_s

    def at(self, t_s: float) -> Fault:
        """The fault as it is at ``t_s``: itself, or part of the way up its ramp."""
        if self.ramp_s <= 0 or t_s >= self.start_s + self.ramp_s:
            return self
        share = min(1.0, max(0.0, (t_s - self.start_s) / self.ramp_s))
        params = {
            name: RAMP_FROM[name] + (float(value) - RAMP_FROM[name]) * share if name in RAMP_FROM else value
            for name, value in self.params.items()
        }
        return replace(self, params=params)

    def targets(self, host_index: int, host_name: str, gpu_index: int | None) -> bool:
        if self.host not in (host_index, host_name):
            return False
        return self.gpu is None or gpu_index is None or self.gpu == gpu_index

    def describe(self) -> str:
        where = f"host {self.host}" + ("" if self.gpu is None else f" gpu {self.gpu}")
        until = "" if math.isinf(self.duration_s) else f" for {self.duration_s:g}s"
        ramp = f" (ramping over {self.ramp_s:g}s)" if self.ramp_s > 0 else ""
        return f"{self.kind} on {where} at +{self.start_s:g}s{until}{ramp}"


@dataclass(frozen=True)
class Scenario:
    faults: tuple[Fault, ...] = ()

    @classmethod
    def load(cls, path: str | Path) -> Scenario:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ScenarioError(f"cannot read scenario {path}: {exc.strerror}") from None
        try:
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise ScenarioError(f"{path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}") from None
        try:
            return cls.from_dict(data or {})
        except ScenarioError as exc:
            raise ScenarioError(f"{path}: {exc}") from None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Scenario:
        # a scored scenario (bench/scenarios.py --scenario) also says its cluster, seed, duration and, per
        # fault, what to expect: the simulator ignores those (factorylens.simulation reads them)
        if not isinstance(data, Mapping) or set(data) - {"faults", *SCORING_KEYS}:
            raise ScenarioError(
                "a scenario is a mapping with the key 'faults' (a list) and, to be scored, "
                + ", ".join(repr(k) for k in SCORING_KEYS)
            )
        faults = data.get("faults") or []
        if not isinstance(faults, list):
            raise ScenarioError("'faults' must be a list")
        return cls(tuple(_parse_fault(i, f) for i, f in enumerate(faults)))


def parse_duration(value: Any, what: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ScenarioError(f"{what} {value!r} is not a duration (use e.g. 30, 30s, 5m, 1h)")
        seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    if seconds < 0:
        raise ScenarioError(f"{what} must not be negative")
    return seconds


_FRACTIONS = {"throughput_fraction", "used_fraction", "utilization"}
_SIMULATED_PORTS = ("mlx5_0/1", "mlx5_1/1", "mlx5_2/1", "mlx5_3/1")
_SIMULATED_MOUNTS = ("/", "/mnt/ckpt")


def _check_node_params(where: str, params: dict[str, Any]) -> None:
    """Numbers are numbers in range, ports and mounts exist on a simulated node; fixed in place."""
    for name, value in params.items():
        if name == "port":
            if value != "*" and value not in _SIMULATED_PORTS:
                raise ScenarioError(f"{where}: port {value!r} is not one of {list(_SIMULATED_PORTS)} or '*'")
            continue
        if name == "mount":
            if value not in _SIMULATED_MOUNTS:
                raise ScenarioError(f"{where}: mount {value!r} is not one of {list(_SIMULATED_MOUNTS)}")
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ScenarioError(f"{where}: {name} must be a number (got {value!r})") from None
        if not math.isfinite(number) or number < 0 or (name in _FRACTIONS and number > 1):
            raise ScenarioError(f"{where}: {name} must be {'in [0, 1]' if name in _FRACTIONS else '≥ 0'}")
        if name in ("period", "latency_factor") and number <= 0:
            raise ScenarioError(f"{where}: {name} must be positive")
        params[name] = number


def _parse_fault(index: int, raw: Any) -> Fault:
    where = f"fault #{index + 1}"
    if not isinstance(raw, Mapping):
        raise ScenarioError(f"{where} must be a mapping")
    unknown = set(raw) - {"kind", "target", "start", "duration", "ramp", "params", "expect"}
    if unknown:
        raise ScenarioError(f"{where}: unknown keys {sorted(unknown)}")
    kind = raw.get("kind")
    if kind not in FAULT_KINDS:
        raise ScenarioError(f"{where}: kind {kind!r} is not one of {', '.join(FAULT_KINDS)}")
    where = f"{where} ({kind})"
    target = raw.get("target") or {}
    if not isinstance(target, Mapping) or set(target) - {"host", "gpu"}:
        raise ScenarioError(f"{where}: target must be a mapping with 'host' and optional 'gpu'")
    host = target.get("host", 0)
    gpu = target.get("gpu", "*" if kind in _HOST_ONLY else None)
    if gpu is None:
        raise ScenarioError(f"{where}: target.gpu is required (an index, or '*' for every GPU)")
    if gpu != "*" and (not isinstance(gpu, int) or gpu < 0):
        raise ScenarioError(f"{where}: target.gpu must be a GPU index or '*'")
    if kind in _HOST_ONLY and gpu != "*":
        raise ScenarioError(f"{where}: applies to a whole host; drop target.gpu")
    if "start" not in raw:
        raise ScenarioError(f"{where}: 'start' is required")
    start = parse_duration(raw["start"], f"{where}: start")
    duration = parse_duration(raw["duration"], f"{where}: duration") if "duration" in raw else math.inf
    ramp = parse_duration(raw["ramp"], f"{where}: ramp") if "ramp" in raw else 0.0
    if ramp and kind not in RAMP_KINDS:
        raise ScenarioError(f"{where}: takes no ramp (an event or a switch); rampable: {', '.join(sorted(RAMP_KINDS))}")
    defaults, _ = FAULT_KINDS[kind]
    params = dict(raw.get("params") or {})
    extra = set(params) - set(defaults)
    if extra:
        raise ScenarioError(f"{where}: unknown params {sorted(extra)}; allowed: {sorted(defaults)}")
    merged = {**defaults, **params}
    if kind == "nvml_error":
        if merged["error"] not in NVML_ERROR_NAMES.values():
            raise ScenarioError(f"{where}: error {merged['error']!r} is not an NVML error name")
        if not str(merged["function"]).startswith("nvml"):
            raise ScenarioError(f"{where}: function must be an NVML function name")
    if kind == "driver_missing" and merged["error"] not in ("DriverNotLoaded", "LibraryNotFound"):
        raise ScenarioError(f"{where}: error must be DriverNotLoaded or LibraryNotFound")
    if kind == "xid" and (not isinstance(merged["code"], int) or merged["code"] <= 0):
        raise ScenarioError(f"{where}: code must be a positive XID number")
    if kind in NODE_FAULTS:
        _check_node_params(where, merged)
    if ramp:
        for name in set(merged) & set(RAMP_FROM):
            try:
                merged[name] = float(merged[name])
            except (TypeError, ValueError):
                raise ScenarioError(f"{where}: {name} must be a number (got {merged[name]!r})") from None
    return Fault(kind, host, None if gpu == "*" else gpu, start, duration, merged, ramp)
