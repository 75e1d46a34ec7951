"""GPU backend over NVML (the ``pynvml`` module of the ``nvidia-ml-py`` distribution).

The module is injected, so the same code runs against the real library, the simulator
(:mod:`factorylens.receivers.gpu.sim`) and a recorded fixture. Each supported field costs exactly
one NVML call per scrape; a field that answers ``NotSupported`` once is never asked again.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from factorylens.receivers._counters import MonotonicCounter
from factorylens.receivers.gpu.backend import (
    AttributeMap,
    GpuBackend,
    GpuEvent,
    Point,
    ScrapeError,
    ScrapeResult,
)
from factorylens.receivers.gpu.jobs import JobResolver, ProcJobResolver
from factorylens.registry import CLOCK_EVENT_REASONS, XID_NAMES, Attributes, Events, Metrics

_log = logging.getLogger(__name__)

# NVML error codes (stable C ABI values; the pynvml module names them NVML_ERROR_*).
NVML_ERROR_NAMES = {
    1: "Uninitialized",
    2: "InvalidArgument",
    3: "NotSupported",
    4: "NoPermission",
    5: "AlreadyInitialized",
    6: "NotFound",
    7: "InsufficientSize",
    8: "InsufficientPower",
    9: "DriverNotLoaded",
    10: "Timeout",
    11: "IrqIssue",
    12: "LibraryNotFound",
    13: "FunctionNotFound",
    14: "CorruptedInforom",
    15: "GpuIsLost",
    16: "ResetRequired",
    17: "OperatingSystem",
    18: "LibRmVersionMismatch",
    19: "InUse",
    20: "Memory",
    21: "NoData",
    22: "VgpuEccNotSupported",
    23: "InsufficientResources",
    24: "FreqNotSupported",
    25: "ArgumentVersionMismatch",
    26: "Deprecated",
    999: "Unknown",
}
# The field is absent on this device: omit the series from now on.
_UNSUPPORTED = {"NotSupported", "FunctionNotFound", "InvalidArgument", "Deprecated"}
# Not ours to read: log once, disable the field.
_FORBIDDEN = {"NoPermission"}
# The device (or the whole driver) is gone: mark failed, re-initialise on the next scrape.
_DEVICE_LOST = {"GpuIsLost", "ResetRequired", "Uninitialized", "DriverNotLoaded", "LibRmVersionMismatch"}

# NVML clock-event reason bits → registry reason names (dcgm-exporter's label values).
_CLOCK_EVENT_BITS = (
    (0x001, "gpu_idle"),
    (0x002, "clocks_setting"),
    (0x004, "power_cap"),
    (0x008, "hw_slowdown"),
    (0x010, "sync_boost"),
    (0x020, "sw_thermal"),
    (0x040, "hw_thermal"),
    (0x080, "hw_power_brake"),
    (0x100, "display_clocks"),
)
assert tuple(name for _, name in _CLOCK_EVENT_BITS) == CLOCK_EVENT_REASONS
_DEGRADING_REASONS = {"hw_slowdown", "sw_thermal", "hw_thermal", "hw_power_brake"}

_LEGACY_CLOCK_EVENTS = "nvmlDeviceGetCurrentClocksThrottleReasons"
_XID_EVENT_TYPE = 0x8  # nvmlEventTypeXidCriticalError
_UINT_MAX = 0xFFFFFFFF  # NVLink field scope: all links
_KB = 1024

# NVML field ids read in one batched nvmlDeviceGetFieldValues call.
_FI_MEMORY_TEMP = 82
_FI_NVLINK_TX = 138
_FI_NVLINK_RX = 139
_FI_NVLINK_COUNTERS = {
    45: "nvlink_crc_data",  # NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL
    38: "nvlink_crc_flit",  # NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL
    52: "nvlink_replay",  # NVML_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL
    59: "nvlink_recovery",  # NVML_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL
}
_FIELD_IDS = (_FI_MEMORY_TEMP, _FI_NVLINK_TX, _FI_NVLINK_RX, *_FI_NVLINK_COUNTERS)

# GPM metric ids → (registry metric, extra attributes).
_GPM_METRICS: tuple[tuple[int, str, dict[str, str]], ...] = (
    (2, Metrics.HW_GPU_SM_UTILIZATION, {}),
    (3, Metrics.HW_GPU_SM_OCCUPANCY, {}),
    (5, Metrics.HW_GPU_PIPE_UTILIZATION, {Attributes.HW_GPU_PIPE: "tensor"}),
    (13, Metrics.HW_GPU_PIPE_UTILIZATION, {Attributes.HW_GPU_PIPE: "fp16"}),
    (12, Metrics.HW_GPU_PIPE_UTILIZATION, {Attributes.HW_GPU_PIPE: "fp32"}),
    (11, Metrics.HW_GPU_PIPE_UTILIZATION, {Attributes.HW_GPU_PIPE: "fp64"}),
    (10, Metrics.HW_GPU_MEMORY_BANDWIDTH_UTILIZATION, {}),
)


def nvml_error_name(exc: BaseException) -> str:
    """``NotSupported`` for NVMLError_NotSupported, without calling into the library (str() does)."""
    value = getattr(exc, "value", None)
    if isinstance(value, int):
        return NVML_ERROR_NAMES.get(value, f"Error{value}")
    return type(exc).__name__


class RateIntegrator:
    """Integrates a rate sampled at scrape times into a cumulative total (trapezoid rule)."""

    __slots__ = ("_last_rate", "_last_t", "total")

    def __init__(self) -> None:
        self.total = 0.0
        self._last_rate: float | None = None
        self._last_t = 0.0

    def update(self, rate: float, t: float) -> float:
        if self._last_rate is not None and t > self._last_t:
            self.total += (rate + self._last_rate) / 2.0 * (t - self._last_t)
        self._last_rate, self._last_t = rate, t
        return self.total


@dataclass
class _Device:
    handle: Any
    index: int
    identity: dict[str, Any]
    key: Any
    details: dict[str, Any] = field(default_factory=dict)
    unsupported: set[str] = field(default_factory=set)
    counters: dict[str, MonotonicCounter] = field(default_factory=dict)
    rates: dict[str, RateIntegrator] = field(default_factory=dict)
    xid_counts: dict[int, int] = field(default_factory=dict)
    field_ids: list[int] = field(default_factory=lambda: list(_FIELD_IDS))
    migs: list[_Device] = field(default_factory=list)
    gpm_samples: list[Any] = field(default_factory=list)
    gpm_taken: int = 0  # consecutive successful GPM samples; metrics need two
    process_util_ts: int = 0
    process_attrs: dict[int, dict[str, Any]] = field(default_factory=dict)
    clock_events_fn: str = "nvmlDeviceGetCurrentClocksEventReasons"
    last_uncorrected: float | None = None
    lost: bool = False

    def inherit(self, previous: _Device) -> None:
        """Keep counters and probed capabilities across an NVML re-initialisation."""
        self.unsupported = previous.unsupported
        self.counters, self.rates, self.xid_counts = previous.counters, previous.rates, previous.xid_counts
        self.field_ids, self.clock_events_fn = previous.field_ids, previous.clock_events_fn
        self.process_util_ts = previous.process_util_ts

    def counter(self, name: str) -> MonotonicCounter:
        c = self.counters.get(name)
        if c is None:
            c = self.counters[name] = MonotonicCounter()
        return c

    def rate(self, name: str) -> RateIntegrator:
        r = self.rates.get(name)
        if r is None:
            r = self.rates[name] = RateIntegrator()
        return r


class _Scrape:
    """Per-scrape scratch: collected points and errors, and the call count."""

    __slots__ = ("calls", "errors", "points")

    def __init__(self) -> None:
        self.points: list[Point] = []
        self.errors: list[ScrapeError] = []
        self.calls = 0


class NvmlBackend(GpuBackend):
    """Reads GPUs through an injected pynvml-compatible module.

    Args:
        nvml: the ``pynvml`` module, or anything with its functions (the simulator, a fixture replay).
        job_resolver: maps process PIDs to job attributes (default: reads ``/proc``).
        process_metrics: read per-process memory and utilization.
        max_processes_per_gpu: cardinality bound on per-process series per device.
        discovery_retry_interval_s: how often to retry ``nvmlInit``/discovery after a failure.
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        nvml: ModuleType | Any = None,
        job_resolver: JobResolver | None = None,
        *,
        process_metrics: bool = True,
        max_processes_per_gpu: int = 32,
        discovery_retry_interval_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        vendor: str = "nvidia",
    ) -> None:
        if nvml is None:
            import pynvml

            nvml = pynvml
        self._nvml = nvml
        self._jobs = job_resolver or ProcJobResolver()
        self._process_metrics = process_metrics
        self._max_processes = max_processes_per_gpu
        self._retry_interval_s = discovery_retry_interval_s
        self._clock = clock
        self._vendor = vendor
        self._lock = threading.RLock()
        self._event_lock = threading.Lock()
        self._devices: list[_Device] = []
        self._known: dict[int, _Device] = {}  # by index: identity and state survive re-initialisation
        self._initialized = False
        self._next_attempt = 0.0
        self._event_set: Any = None
        self._pending_errors: list[ScrapeError] = []
        self._reported_forbidden: set[tuple[str, str]] = set()
        self._lost_status: dict[str, dict[str, Any]] = {}

    # lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            self._try_initialize()

    def shutdown(self) -> None:
        with self._lock:
            self._teardown()

    @property
    def devices(self) -> int:
        return sum(1 + len(d.migs) for d in self._devices)

    def supported_fields(self) -> int:
        """NVML calls a scrape makes now: one per supported field per device (the bench checks)."""
        with self._lock:
            return sum(self._field_count(d) for d in self._devices)

    # scraping --------------------------------------------------------------------------------

    def scrape(self) -> ScrapeResult:
        with self._lock:
            s = _Scrape()
            just_lost = any(d.lost for d in self._devices)
            incomplete = not self._initialized or bool(self._lost_status)
            if just_lost or (incomplete and self._clock() >= self._next_attempt):
                self._teardown()
                self._try_initialize()
            s.errors.extend(self._pending_errors)
            self._pending_errors.clear()
            for identity in self._lost_status.values():
                s.points.extend(_status_points(identity, "failed"))
            if self._initialized:
                live_pids: set[int] = set()
                for device in self._devices:
                    self._scrape_device(device, s, live_pids)
                self._jobs.forget_except(live_pids)
            return ScrapeResult(s.points, s.errors, self.devices, s.calls)

    def _scrape_device(self, d: _Device, s: _Scrape, live_pids: set[int]) -> None:
        now = self._clock()
        ident = d.identity
        state = {"degraded": False, "predicted_failure": False}
        for name, reader in self._READERS:
            if self._wanted(d, name):  # checked per field: a lost GPU stops the rest of its scrape
                reader(self, d, s, ident, now, state, live_pids)
        for mig in d.migs:
            if d.lost:
                break
            if "memory" not in mig.unsupported:
                self._read_memory(mig, s, mig.identity, now, state, live_pids)
            if self._wanted(mig, "processes"):  # who holds each slice: MIG cost is charged per slice
                self._read_processes(mig, s, mig.identity, now, state, live_pids)
        if d.lost:
            s.points.extend(_status_points({**ident, **d.details}, "failed"))
            return
        health = "predicted_failure" if state["predicted_failure"] else ("degraded" if state["degraded"] else "ok")
        s.points.extend(_status_points({**ident, **d.details}, health))
        for code, count in d.xid_counts.items():
            s.points.append(
                Point(
                    Metrics.HW_ERRORS, count, {**ident, Attributes.ERROR_TYPE: "xid", Attributes.HW_GPU_XID_CODE: code}
                )
            )

    def _call(self, d: _Device, s: _Scrape, field_name: str, fn_name: str, *args: Any) -> Any:
        """One NVML call; on failure classify the error and return None."""
        s.calls += 1
        try:
            return getattr(self._nvml, fn_name)(d.handle, *args)
        except Exception as exc:  # pynvml raises NVMLError subclasses; fixtures may raise others
            self._on_error(d, s, field_name, fn_name, exc)
            return None

    def _on_error(self, d: _Device, s: _Scrape, field_name: str, fn_name: str, exc: BaseException) -> None:
        error = nvml_error_name(exc)
        if field_name == "clock_events" and error == "FunctionNotFound" and d.clock_events_fn != _LEGACY_CLOCK_EVENTS:
            d.clock_events_fn = _LEGACY_CLOCK_EVENTS  # driver older than the binding: use the old name
        elif error in _UNSUPPORTED:
            d.unsupported.add(field_name)
            s.errors.append(ScrapeError(fn_name, error))
        elif error in _FORBIDDEN:
            d.unsupported.add(field_name)
            s.errors.append(ScrapeError(fn_name, error))
            if (fn_name, error) not in self._reported_forbidden:
                self._reported_forbidden.add((fn_name, error))
                _log.warning(
                    "%s: no permission; that series is disabled (run with the needed privileges to enable it)", fn_name
                )
        elif error in _DEVICE_LOST:
            d.lost = True
            s.errors.append(ScrapeError(fn_name, error))
            _log.error(
                "GPU %s (%s) lost: %s; will re-initialise NVML", d.index, d.identity.get(Attributes.HW_ID), error
            )
        elif error == "NotFound" and field_name == "process_utilization":
            pass  # no samples since the last timestamp: an idle GPU, not an error
        else:
            s.errors.append(ScrapeError(fn_name, error))

    # field readers: each makes exactly one NVML call ---------------------------------------------

    def _read_utilization(self, d, s, ident, now, state, live_pids):
        rates = self._call(d, s, "utilization", "nvmlDeviceGetUtilizationRates")
        if rates is not None:
            general = rates.gpu / 100.0
            s.points.append(Point(Metrics.HW_GPU_UTILIZATION, general, {**ident, Attributes.HW_GPU_TASK: "general"}))
            s.points.append(Point(Metrics.HW_GPU_IDLE, 1.0 - general, ident))
            s.points.append(Point(Metrics.HW_GPU_MEMORY_CONTROLLER_UTILIZATION, rates.memory / 100.0, ident))

    def _read_encoder(self, d, s, ident, now, state, live_pids):
        value = self._call(d, s, "encoder", "nvmlDeviceGetEncoderUtilization")
        if value is not None:
            s.points.append(
                Point(Metrics.HW_GPU_UTILIZATION, value[0] / 100.0, {**ident, Attributes.HW_GPU_TASK: "encoder"})
            )

    def _read_decoder(self, d, s, ident, now, state, live_pids):
        value = self._call(d, s, "decoder", "nvmlDeviceGetDecoderUtilization")
        if value is not None:
            s.points.append(
                Point(Metrics.HW_GPU_UTILIZATION, value[0] / 100.0, {**ident, Attributes.HW_GPU_TASK: "decoder"})
            )

    def _read_memory(self, d, s, ident, now, state, live_pids):
        mem = self._call(d, s, "memory", "nvmlDeviceGetMemoryInfo")
        if mem is not None:
            s.points.append(Point(Metrics.HW_GPU_MEMORY_USAGE, int(mem.used), ident))
            s.points.append(Point(Metrics.HW_GPU_MEMORY_LIMIT, int(mem.total), ident))
            s.points.append(Point(Metrics.HW_GPU_MEMORY_FREE, int(mem.free), ident))
            if mem.total:
                s.points.append(Point(Metrics.HW_GPU_MEMORY_UTILIZATION, mem.used / mem.total, ident))

    def _read_temperature(self, d, s, ident, now, state, live_pids):
        value = self._call(d, s, "temperature", "nvmlDeviceGetTemperature", 0)  # NVML_TEMPERATURE_GPU
        if value is not None:
            s.points.append(
                Point(Metrics.HW_TEMPERATURE, float(value), {**ident, Attributes.HW_SENSOR_LOCATION: "die"})
            )

    def _read_power(self, d, s, ident, now, state, live_pids):
        value = self._call(d, s, "power", "nvmlDeviceGetPowerUsage")
        if value is not None:
            s.points.append(Point(Metrics.HW_POWER, value / 1000.0, ident))

    def _read_power_limit(self, d, s, ident, now, state, live_pids):
        value = self._call(d, s, "power_limit", "nvmlDeviceGetEnforcedPowerLimit")
        if value is not None:
            s.points.append(Point(Metrics.HW_POWER_LIMIT, value / 1000.0, ident))

    def _read_energy(self, d, s, ident, now, state, live_pids):
        value = self._call(d, s, "energy", "nvmlDeviceGetTotalEnergyConsumption")
        if value is not None:
            s.points.append(Point(Metrics.HW_ENERGY, d.counter("energy").update(value) / 1000.0, ident))

    @staticmethod
    def _clock_reader(domain: str, nvml_clock: int) -> Callable[..., None]:  # builds a reader at class creation
        def read(self, d, s, ident, now, state, live_pids):
            mhz = self._call(d, s, f"clock_{domain}", "nvmlDeviceGetClockInfo", nvml_clock)
            if mhz is not None:
                s.points.append(
                    Point(Metrics.HW_GPU_SPEED, mhz * 1e6, {**ident, Attributes.HW_GPU_CLOCK_DOMAIN: domain})
                )

        return read

    def _read_clock_events(self, d, s, ident, now, state, live_pids):
        mask = self._call(d, s, "clock_events", d.clock_events_fn)
        if mask is None:
            return
        for bit, reason in _CLOCK_EVENT_BITS:
            active = 1 if mask & bit else 0
            s.points.append(
                Point(
                    Metrics.HW_GPU_CLOCK_EVENT_ACTIVE, active, {**ident, Attributes.HW_GPU_CLOCK_EVENT_REASON: reason}
                )
            )
            if active and reason in _DEGRADING_REASONS:
                state["degraded"] = True

    @staticmethod
    def _ecc_reader(kind: str, error_type: int) -> Callable[..., None]:
        def read(self, d, s, ident, now, state, live_pids):
            # NVML_VOLATILE_ECC = 0: counts since driver load, stitched across reloads.
            value = self._call(d, s, f"ecc_{kind}", "nvmlDeviceGetTotalEccErrors", error_type, 0)
            if value is None:
                return
            total = d.counter(f"ecc_{kind}").update(value)
            s.points.append(Point(Metrics.HW_ERRORS, int(total), {**ident, Attributes.ERROR_TYPE: kind}))
            if kind == "uncorrected":
                if d.last_uncorrected is not None and total > d.last_uncorrected:
                    state["degraded"] = True
                d.last_uncorrected = total

        return read

    @staticmethod
    def _pcie_reader(direction: str, counter: int) -> Callable[..., None]:
        def read(self, d, s, ident, now, state, live_pids):
            kb_per_s = self._call(d, s, f"pcie_{direction}", "nvmlDeviceGetPcieThroughput", counter)
            if kb_per_s is not None:
                total = d.rate(f"pcie_{direction}").update(kb_per_s * _KB, now)
                s.points.append(
                    Point(Metrics.HW_GPU_IO, int(total), {**ident, Attributes.NETWORK_IO_DIRECTION: direction})
                )

        return read

    def _read_pcie_replay(self, d, s, ident, now, state, live_pids):
        value = self._call(d, s, "pcie_replay", "nvmlDeviceGetPcieReplayCounter")
        if value is not None:
            total = d.counter("pcie_replay").update(value)
            s.points.append(Point(Metrics.HW_ERRORS, int(total), {**ident, Attributes.ERROR_TYPE: "pcie_replay"}))

    def _read_field_values(self, d, s, ident, now, state, live_pids):
        if not d.field_ids:
            d.unsupported.add("field_values")
            return
        ids = [(fid, _UINT_MAX) if fid in (_FI_NVLINK_TX, _FI_NVLINK_RX) else fid for fid in d.field_ids]
        values = self._call(d, s, "field_values", "nvmlDeviceGetFieldValues", ids)
        if values is None:
            return
        for fv in list(values):
            fid = int(fv.fieldId)
            if fv.nvmlReturn != 0:
                error = NVML_ERROR_NAMES.get(int(fv.nvmlReturn), "Unknown")
                if error in _UNSUPPORTED or error in _FORBIDDEN:
                    d.field_ids.remove(fid)
                    s.errors.append(ScrapeError(f"nvmlDeviceGetFieldValues[{fid}]", error))
                continue
            value = _field_value(fv)
            if fid == _FI_MEMORY_TEMP:
                s.points.append(
                    Point(Metrics.HW_TEMPERATURE, float(value), {**ident, Attributes.HW_SENSOR_LOCATION: "memory"})
                )
            elif fid in (_FI_NVLINK_TX, _FI_NVLINK_RX):
                direction = "transmit" if fid == _FI_NVLINK_TX else "receive"
                total = d.counter(f"nvlink_{direction}").update(value) * _KB  # KiB counter
                s.points.append(
                    Point(
                        Metrics.HW_GPU_INTERCONNECT_IO,
                        int(total),
                        {
                            **ident,
                            Attributes.HW_GPU_INTERCONNECT_TYPE: "nvlink",
                            Attributes.NETWORK_IO_DIRECTION: direction,
                        },
                    )
                )
            else:
                error_type = _FI_NVLINK_COUNTERS[fid]
                total = d.counter(error_type).update(value)
                s.points.append(Point(Metrics.HW_ERRORS, int(total), {**ident, Attributes.ERROR_TYPE: error_type}))

    def _read_fan(self, d, s, ident, now, state, live_pids):
        value = self._call(d, s, "fan", "nvmlDeviceGetFanSpeed")
        if value is not None:
            s.points.append(Point(Metrics.HW_FAN_SPEED_RATIO, value / 100.0, ident))

    def _read_remapped_rows(self, d, s, ident, now, state, live_pids):
        value = self._call(d, s, "remapped_rows", "nvmlDeviceGetRemappedRows")
        if value is not None:
            _corrected, _uncorrected, pending, failure = value
            if pending or failure:
                state["predicted_failure"] = True

    def _read_processes(self, d, s, ident, now, state, live_pids):
        procs = self._call(d, s, "processes", "nvmlDeviceGetComputeRunningProcesses")
        if procs is None:
            return
        s.points.append(Point(Metrics.HW_GPU_ALLOCATED, 1 if procs else 0, ident))
        d.process_attrs = {}
        for proc in sorted(procs, key=lambda p: -(p.usedGpuMemory or 0))[: self._max_processes]:
            attrs = {**ident, Attributes.PROCESS_PID: int(proc.pid), **self._jobs.resolve(int(proc.pid))}
            d.process_attrs[int(proc.pid)] = attrs
            live_pids.add(int(proc.pid))
            if proc.usedGpuMemory is not None:
                s.points.append(Point(Metrics.PROCESS_GPU_MEMORY_USAGE, int(proc.usedGpuMemory), attrs))

    def _read_process_utilization(self, d, s, ident, now, state, live_pids):
        samples = self._call(d, s, "process_utilization", "nvmlDeviceGetProcessUtilization", d.process_util_ts)
        if not samples:
            return
        latest: dict[int, Any] = {}
        for sample in samples:
            pid = int(sample.pid)
            if pid not in latest or sample.timeStamp > latest[pid].timeStamp:
                latest[pid] = sample
            d.process_util_ts = max(d.process_util_ts, int(sample.timeStamp))
        for pid, sample in latest.items():
            attrs = d.process_attrs.get(pid)
            if attrs is None:  # over the cardinality bound, or a process that just left
                continue
            s.points.append(Point(Metrics.PROCESS_GPU_UTILIZATION, sample.smUtil / 100.0, attrs))

    def _read_gpm_sample(self, d, s, ident, now, state, live_pids):
        d.gpm_samples.reverse()  # samples[0] becomes the older one, samples[1] gets the new reading
        taken = self._call(d, s, "gpm_sample", "nvmlGpmSampleGet", d.gpm_samples[1]) is not None
        d.gpm_taken = d.gpm_taken + 1 if taken else 0

    def _read_gpm_metrics(self, d, s, ident, now, state, live_pids):
        request = self._nvml.c_nvmlGpmMetricsGet_t()
        request.version = 1  # NVML_GPM_METRICS_GET_VERSION
        request.numMetrics = len(_GPM_METRICS)
        request.sample1, request.sample2 = d.gpm_samples[0], d.gpm_samples[1]
        for i, (metric_id, _, _) in enumerate(_GPM_METRICS):
            request.metrics[i].metricId = metric_id
        s.calls += 1
        try:
            result = self._nvml.nvmlGpmMetricsGet(request)
        except Exception as exc:
            self._on_error(d, s, "gpm_metrics", "nvmlGpmMetricsGet", exc)
            return
        src = {**ident, Attributes.GPU_MEASUREMENT_SOURCE: "nvml_gpm"}
        for i, (_, metric, extra) in enumerate(_GPM_METRICS):
            m = result.metrics[i]
            if m.nvmlReturn == 0:
                s.points.append(Point(metric, m.value / 100.0, {**src, **extra} if extra else src))

    _READERS: tuple[tuple[str, Callable[..., None]], ...] = ()

    # discovery -------------------------------------------------------------------------------

    def _wanted(self, d: _Device, name: str) -> bool:
        """Whether a scrape reads this field now (each wanted field is exactly one NVML call)."""
        if d.lost or name in d.unsupported:
            return False
        if name.startswith("gpm_"):
            return bool(d.gpm_samples) and (name == "gpm_sample" or d.gpm_taken >= 2)
        if name == "processes" and d.migs:  # read per MIG slice instead
            return False
        return self._process_metrics or not name.startswith("process")

    def _field_count(self, d: _Device) -> int:
        fields = sum(1 for name, _ in self._READERS if self._wanted(d, name))
        if d.lost:
            return fields
        return fields + sum(int("memory" not in m.unsupported) + int(self._wanted(m, "processes")) for m in d.migs)

    def _try_initialize(self) -> None:
        self._next_attempt = self._clock() + self._retry_interval_s
        try:
            self._nvml.nvmlInit()
        except Exception as exc:
            error = nvml_error_name(exc)
            self._pending_errors.append(ScrapeError("nvmlInit", error))
            _log.warning("NVML is not available (%s); retrying every %.0f s", error, self._retry_interval_s)
            return
        self._initialized = True
        try:
            count = self._nvml.nvmlDeviceGetCount()
        except Exception as exc:
            self._pending_errors.append(ScrapeError("nvmlDeviceGetCount", nvml_error_name(exc)))
            _log.warning(
                "GPU discovery failed (%s); retrying every %.0f s", nvml_error_name(exc), self._retry_interval_s
            )
            self._teardown()
            return
        driver = _text(_optional(self._nvml.nvmlSystemGetDriverVersion))
        self._lost_status.clear()
        for index in range(count):
            try:
                device = self._discover_device(index, driver)
            except Exception as exc:  # this GPU is lost or broken; the others are still read
                error = nvml_error_name(exc)
                self._pending_errors.append(ScrapeError("discovery", error))
                previous = self._known.get(index)
                if previous is not None:
                    self._lost_status[previous.identity[Attributes.HW_ID]] = {**previous.identity, **previous.details}
                _log.warning(
                    "GPU %d could not be opened (%s); retrying every %.0f s", index, error, self._retry_interval_s
                )
                continue
            previous = self._known.get(index)
            if previous is not None and previous.identity[Attributes.HW_ID] == device.identity[Attributes.HW_ID]:
                device.inherit(previous)
            self._known[index] = device
            self._devices.append(device)
        self._register_events()
        _log.info("NVML initialised: %d GPU(s), %d device(s) in all", len(self._devices), self.devices)

    def _discover_device(self, index: int, driver: str | None) -> _Device:
        nvml = self._nvml
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        ident, details = self._identity(handle, index, driver)
        device = _Device(handle=handle, index=index, identity=ident, key=_handle_key(handle), details=details)
        device.migs = self._discover_migs(handle, ident, details)
        support = _optional(nvml.nvmlGpmQueryDeviceSupport, handle)
        if support is not None and getattr(support, "isSupportedDevice", False):
            device.gpm_samples = [nvml.nvmlGpmSampleAlloc(), nvml.nvmlGpmSampleAlloc()]
        return device

    def _identity(self, handle: Any, index: int, driver: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
        """Per-point identity, and the descriptive attributes that ride on ``hw.status`` only."""
        nvml = self._nvml
        ident: dict[str, Any] = {
            Attributes.HW_ID: _text(nvml.nvmlDeviceGetUUID(handle)),
            Attributes.HW_TYPE: "gpu",
            Attributes.HW_VENDOR: self._vendor,
            Attributes.GPU_INDEX: index,
        }
        details: dict[str, Any] = {}
        name = _text(_optional(nvml.nvmlDeviceGetName, handle))
        if name:
            ident[Attributes.HW_NAME] = name
            details[Attributes.HW_MODEL] = name
        for key, fn in (
            (Attributes.HW_SERIAL_NUMBER, "nvmlDeviceGetSerial"),
            (Attributes.HW_FIRMWARE_VERSION, "nvmlDeviceGetVbiosVersion"),
        ):
            value = _text(_optional(getattr(nvml, fn), handle))
            if value:
                details[key] = value
        if driver:
            details[Attributes.HW_DRIVER_VERSION] = driver
        pci = _optional(nvml.nvmlDeviceGetPciInfo, handle)
        if pci is not None:
            ident[Attributes.GPU_PCI_ADDRESS] = _text(pci.busId)
        return ident, details

    def _discover_migs(self, handle: Any, parent: dict[str, Any], details: dict[str, Any]) -> list[_Device]:
        nvml = self._nvml
        mode = _optional(nvml.nvmlDeviceGetMigMode, handle)
        if not mode or not mode[0]:
            return []
        migs = []
        for i in range(nvml.nvmlDeviceGetMaxMigDeviceCount(handle)):
            mig = _optional(nvml.nvmlDeviceGetMigDeviceHandleByIndex, handle, i)
            if mig is None:
                continue
            name = _text(_optional(nvml.nvmlDeviceGetName, mig)) or ""
            ident = {
                **parent,
                Attributes.HW_ID: _text(nvml.nvmlDeviceGetUUID(mig)),
                Attributes.HW_PARENT: parent[Attributes.HW_ID],
            }
            if " MIG " in name:
                ident[Attributes.GPU_MIG_PROFILE] = name.rsplit(" MIG ", 1)[1]
            gi = _optional(nvml.nvmlDeviceGetGpuInstanceId, mig)
            if gi is not None:
                ident[Attributes.GPU_MIG_INSTANCE_ID] = int(gi)
            migs.append(_Device(handle=mig, index=i, identity=ident, key=_handle_key(mig), details=details))
        return migs

    def _teardown(self) -> None:
        with self._event_lock:
            if self._event_set is not None:
                _quiet(self._nvml.nvmlEventSetFree, self._event_set)
                self._event_set = None
        for d in self._devices:
            for sample in d.gpm_samples:
                _quiet(self._nvml.nvmlGpmSampleFree, sample)
        self._devices = []
        if self._initialized:
            _quiet(self._nvml.nvmlShutdown)
            self._initialized = False

    # events ----------------------------------------------------------------------------------

    def _register_events(self) -> None:
        event_set = _optional(self._nvml.nvmlEventSetCreate)
        if event_set is None:
            return
        registered = 0
        for d in self._devices:
            try:
                self._nvml.nvmlDeviceRegisterEvents(d.handle, _XID_EVENT_TYPE, event_set)
                registered += 1
            except Exception as exc:
                self._pending_errors.append(ScrapeError("nvmlDeviceRegisterEvents", nvml_error_name(exc)))
        if registered:
            with self._event_lock:
                self._event_set = event_set
        else:
            _quiet(self._nvml.nvmlEventSetFree, event_set)

    def wait_events(self, timeout_ms: int) -> list[GpuEvent]:
        data, error = None, None
        with self._event_lock:
            event_set = self._event_set
            if event_set is not None:
                try:
                    data = self._nvml.nvmlEventSetWait_v2(event_set, timeout_ms)
                except Exception as exc:
                    error = nvml_error_name(exc)
        if event_set is None or (error is not None and error != "Timeout"):
            if error is not None:
                with self._lock:
                    self._pending_errors.append(ScrapeError("nvmlEventSetWait_v2", error))
            time.sleep(timeout_ms / 1000.0)  # nothing to wait on: no driver, or events unsupported
            return []
        if data is None or not (data.eventType & _XID_EVENT_TYPE):
            return []
        with self._lock:
            key = _handle_key(data.device)
            device = next((d for d in self._devices if d.key == key), None)
            if device is None:
                return []
            code = int(data.eventData)
            device.xid_counts[code] = device.xid_counts.get(code, 0) + 1
            return [
                GpuEvent(
                    name=Events.HW_GPU_XID,
                    timestamp_ns=time.time_ns(),
                    xid_code=code,
                    attributes={**device.identity, Attributes.ERROR_TYPE: "xid", Attributes.HW_GPU_XID_CODE: code},
                    message=f"XID {code} on GPU {device.index} ({device.identity['hw.id']}): {xid_description(code)}",
                )
            ]


NvmlBackend._READERS = (
    ("utilization", NvmlBackend._read_utilization),
    ("encoder", NvmlBackend._read_encoder),
    ("decoder", NvmlBackend._read_decoder),
    ("memory", NvmlBackend._read_memory),
    ("temperature", NvmlBackend._read_temperature),
    ("power", NvmlBackend._read_power),
    ("power_limit", NvmlBackend._read_power_limit),
    ("energy", NvmlBackend._read_energy),
    ("clock_graphics", NvmlBackend._clock_reader("graphics", 0)),  # NVML_CLOCK_GRAPHICS
    ("clock_sm", NvmlBackend._clock_reader("sm", 1)),  # NVML_CLOCK_SM
    ("clock_memory", NvmlBackend._clock_reader("memory", 2)),  # NVML_CLOCK_MEM
    ("clock_events", NvmlBackend._read_clock_events),
    ("ecc_corrected", NvmlBackend._ecc_reader("corrected", 0)),  # NVML_MEMORY_ERROR_TYPE_CORRECTED
    ("ecc_uncorrected", NvmlBackend._ecc_reader("uncorrected", 1)),
    ("pcie_transmit", NvmlBackend._pcie_reader("transmit", 0)),  # NVML_PCIE_UTIL_TX_BYTES
    ("pcie_receive", NvmlBackend._pcie_reader("receive", 1)),  # NVML_PCIE_UTIL_RX_BYTES
    ("pcie_replay", NvmlBackend._read_pcie_replay),
    ("field_values", NvmlBackend._read_field_values),
    ("fan", NvmlBackend._read_fan),
    ("remapped_rows", NvmlBackend._read_remapped_rows),
    ("processes", NvmlBackend._read_processes),
    ("process_utilization", NvmlBackend._read_process_utilization),
    ("gpm_sample", NvmlBackend._read_gpm_sample),
    ("gpm_metrics", NvmlBackend._read_gpm_metrics),
)
del NvmlBackend._clock_reader, NvmlBackend._ecc_reader, NvmlBackend._pcie_reader


def xid_description(code: int) -> str:
    """What an XID code means, in plain words (the registry's ``XID_NAMES``)."""
    return XID_NAMES.get(code, "see NVIDIA's XID catalogue")


def _status_points(ident: AttributeMap, current: str) -> list[Point]:
    return [
        Point(Metrics.HW_STATUS, 1 if state == current else 0, {**ident, Attributes.HW_STATE: state})
        for state in ("ok", "degraded", "failed", "predicted_failure")
    ]


def _field_value(fv: Any) -> float:
    value = fv.value
    return {
        0: lambda: value.dVal,
        1: lambda: value.uiVal,
        2: lambda: value.ulVal,
        3: lambda: value.ullVal,
        4: lambda: value.sllVal,
        5: lambda: value.siVal,
        6: lambda: value.usVal,
    }.get(int(fv.valueType), lambda: value.ullVal)()


def _optional(fn: Callable[..., Any], *args: Any) -> Any:
    """Call an identity/discovery function whose absence only removes an attribute."""
    try:
        return fn(*args)
    except Exception as exc:
        if nvml_error_name(exc) in _DEVICE_LOST:
            raise
        return None


def _quiet(fn: Callable[..., Any], *args: Any) -> None:
    """Release a resource; failures are moot because the library is being torn down."""
    try:
        fn(*args)
    except Exception as exc:
        _log.debug("%s during teardown: %s", getattr(fn, "__name__", fn), nvml_error_name(exc))


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _handle_key(handle: Any) -> Any:
    """A hashable identity for a device handle (ctypes pointers compare by address)."""
    try:
        return ctypes.cast(handle, ctypes.c_void_p).value
    except (TypeError, ctypes.ArgumentError):
        return handle
