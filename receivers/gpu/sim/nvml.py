"""The simulator seen through the pynvml API, so the NVML backend reads it like real hardware.

Every function takes and returns what ``pynvml`` does (handles, structs with the same fields,
``NVMLError_*`` exceptions), so the simulated backend exercises the exact code path that runs on a
GPU node, including error handling for injected faults.
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pynvml

from factorylens.receivers.gpu.nvml import NVML_ERROR_NAMES
from factorylens.receivers.gpu.sim.cluster import SimulatedGpu, SimulatedHost
from factorylens.receivers.gpu.sim.models import MigProfile

_CODES = {name: code for code, name in NVML_ERROR_NAMES.items()}
_MIB = 1 << 20
_DRIVER_VERSION = "570.133.20"


def nvml_error(name: str) -> pynvml.NVMLError:
    """The pynvml exception instance for an error name (``NVMLError_NotSupported`` for "NotSupported")."""
    return pynvml.NVMLError(_CODES[name])


class _Handle:
    __slots__ = ("gpu", "mig")

    def __init__(self, gpu: int, mig: int | None = None) -> None:
        self.gpu, self.mig = gpu, mig

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Handle) and (self.gpu, self.mig) == (other.gpu, other.mig)

    def __hash__(self) -> int:
        return hash((self.gpu, self.mig))


class _GpmRequest(SimpleNamespace):
    def __init__(self) -> None:
        super().__init__(
            version=0,
            numMetrics=0,
            sample1=None,
            sample2=None,
            metrics=[SimpleNamespace(metricId=0, nvmlReturn=0, value=0.0) for _ in range(32)],
        )


class SimulatedNvml:
    """A pynvml-compatible module backed by one :class:`SimulatedHost`."""

    c_nvmlGpmMetricsGet_t = _GpmRequest

    def __init__(self, host: SimulatedHost) -> None:
        self._host = host
        self._initialized = False

    def __getattr__(self, name: str) -> Any:
        if name.startswith("NVML") or name.startswith("nvmlClocks") or name.startswith("nvmlEventType"):
            return getattr(pynvml, name)  # constants and exception classes
        raise AttributeError(f"the simulator does not implement {name}")

    # plumbing --------------------------------------------------------------------------------

    def _check(self, function: str) -> None:
        host = self._host
        host.advance()
        if host.driver_error:
            raise nvml_error("Uninitialized")
        if not self._initialized:
            raise nvml_error("Uninitialized")

    def _gpu(self, handle: _Handle, function: str) -> SimulatedGpu:
        self._check(function)
        gpu = self._host.gpus[handle.gpu]
        if gpu.lost:
            raise nvml_error("GpuIsLost")
        for fault in self._host.faults_for(gpu.index, "nvml_error"):
            if fault.params["function"] == function:
                raise nvml_error(str(fault.params["error"]))
        return gpu

    def _mig_limit(self, gpu: SimulatedGpu) -> int:
        return self._mig_profile(gpu).memory_bytes

    @staticmethod
    def _mig_profile(gpu: SimulatedGpu) -> MigProfile:
        """The GPU's MIG profile; only asked of a GPU in MIG mode (the cluster refuses MIG on a model without)."""
        profile = gpu.model.mig
        assert profile is not None
        return profile

    # library ---------------------------------------------------------------------------------

    def nvmlInit(self) -> None:
        self._host.advance()
        if self._host.driver_error:
            raise nvml_error(self._host.driver_error)
        self._initialized = True

    def nvmlShutdown(self) -> None:
        self._initialized = False

    def nvmlSystemGetDriverVersion(self) -> str:
        self._check("nvmlSystemGetDriverVersion")
        return _DRIVER_VERSION

    def nvmlDeviceGetCount(self) -> int:
        self._check("nvmlDeviceGetCount")
        return len(self._host.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> _Handle:
        self._check("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self._host.gpus):
            raise nvml_error("InvalidArgument")
        if self._host.gpus[index].lost:
            raise nvml_error("GpuIsLost")
        return _Handle(index)

    def nvmlDeviceGetHandleByUUID(self, uuid: str | bytes) -> _Handle:
        self._check("nvmlDeviceGetHandleByUUID")
        wanted = uuid.decode() if isinstance(uuid, bytes) else uuid
        for index, gpu in enumerate(self._host.gpus):
            if gpu.uuid == wanted:
                return self.nvmlDeviceGetHandleByIndex(index)
        raise nvml_error("NotFound")

    # identity --------------------------------------------------------------------------------

    def nvmlDeviceGetUUID(self, h: _Handle) -> str:
        gpu = self._gpu(h, "nvmlDeviceGetUUID")
        if h.mig is None:
            return gpu.uuid
        return "MIG-" + gpu.uuid[4:-2] + f"{h.mig:02x}"

    def nvmlDeviceGetName(self, h: _Handle) -> str:
        gpu = self._gpu(h, "nvmlDeviceGetName")
        if h.mig is None:
            return gpu.model.name
        return f"{gpu.model.name} MIG {self._mig_profile(gpu).name}"

    def nvmlDeviceGetSerial(self, h: _Handle) -> str:
        return self._gpu(h, "nvmlDeviceGetSerial").serial

    def nvmlDeviceGetVbiosVersion(self, h: _Handle) -> str:
        return self._gpu(h, "nvmlDeviceGetVbiosVersion").model.vbios

    def nvmlDeviceGetPciInfo(self, h: _Handle) -> SimpleNamespace:
        gpu = self._gpu(h, "nvmlDeviceGetPciInfo")
        return SimpleNamespace(busId=gpu.pci_bus_id, busIdLegacy=gpu.pci_bus_id[4:])

    def nvmlDeviceGetMigMode(self, h: _Handle) -> list[int]:
        gpu = self._gpu(h, "nvmlDeviceGetMigMode")
        if gpu.model.mig is None:
            raise nvml_error("NotSupported")
        mode = 1 if gpu.mig_enabled else 0
        return [mode, mode]

    def nvmlDeviceGetMaxMigDeviceCount(self, h: _Handle) -> int:
        gpu = self._gpu(h, "nvmlDeviceGetMaxMigDeviceCount")
        return gpu.model.mig.count if gpu.model.mig else 0

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h: _Handle, index: int) -> _Handle:
        gpu = self._gpu(h, "nvmlDeviceGetMigDeviceHandleByIndex")
        if not gpu.mig_enabled or index >= self._mig_profile(gpu).count:
            raise nvml_error("NotFound")
        return _Handle(h.gpu, index)

    def nvmlDeviceGetGpuInstanceId(self, h: _Handle) -> int:
        self._gpu(h, "nvmlDeviceGetGpuInstanceId")
        if h.mig is None:
            raise nvml_error("InvalidArgument")
        return 7 + h.mig

    # readings --------------------------------------------------------------------------------

    def nvmlDeviceGetUtilizationRates(self, h: _Handle) -> SimpleNamespace:
        gpu = self._gpu(h, "nvmlDeviceGetUtilizationRates")
        if gpu.mig_enabled:
            raise nvml_error("NotSupported")  # as on real MIG-mode GPUs
        return SimpleNamespace(
            gpu=int(round(gpu.reported_utilization * 100)), memory=int(round(gpu.memory_utilization * 100))
        )

    def nvmlDeviceGetEncoderUtilization(self, h: _Handle) -> list[int]:
        gpu = self._gpu(h, "nvmlDeviceGetEncoderUtilization")
        if not gpu.model.has_encoder:
            raise nvml_error("NotSupported")
        return [0, 167000]

    def nvmlDeviceGetDecoderUtilization(self, h: _Handle) -> list[int]:
        gpu = self._gpu(h, "nvmlDeviceGetDecoderUtilization")
        busy = gpu.process is not None and gpu.process.job.kind == "inference"
        return [int(round(gpu.utilization * 8)) if busy else 0, 167000]

    def nvmlDeviceGetMemoryInfo(self, h: _Handle, version: Any = None) -> SimpleNamespace:
        gpu = self._gpu(h, "nvmlDeviceGetMemoryInfo")
        if h.mig is not None:
            total = self._mig_limit(gpu)
            used = int(gpu.memory_used / self._mig_profile(gpu).count) if gpu.memory_used else 13 * _MIB
            used = min(used, total)
        else:
            total = gpu.model.memory_bytes
            used = min(total, gpu.memory_used + 530 * _MIB)
        return SimpleNamespace(total=total, used=used, free=total - used, reserved=0)

    def nvmlDeviceGetTemperature(self, h: _Handle, sensor: int) -> int:
        return int(round(self._gpu(h, "nvmlDeviceGetTemperature").temperature_c))

    def nvmlDeviceGetPowerUsage(self, h: _Handle) -> int:
        return int(self._gpu(h, "nvmlDeviceGetPowerUsage").power_w * 1000)

    def nvmlDeviceGetEnforcedPowerLimit(self, h: _Handle) -> int:
        return int(self._gpu(h, "nvmlDeviceGetEnforcedPowerLimit").power_limit_w * 1000)

    def nvmlDeviceGetTotalEnergyConsumption(self, h: _Handle) -> int:
        return int(self._gpu(h, "nvmlDeviceGetTotalEnergyConsumption").energy_mj)

    def nvmlDeviceGetClockInfo(self, h: _Handle, clock: int) -> int:
        gpu = self._gpu(h, "nvmlDeviceGetClockInfo")
        if clock == 2:
            return gpu.model.memory_mhz
        return gpu.sm_mhz

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: _Handle) -> int:
        return self._gpu(h, "nvmlDeviceGetCurrentClocksEventReasons").reasons

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, h: _Handle) -> int:
        return self._gpu(h, "nvmlDeviceGetCurrentClocksThrottleReasons").reasons

    def nvmlDeviceGetTotalEccErrors(self, h: _Handle, error_type: int, counter_type: int) -> int:
        gpu = self._gpu(h, "nvmlDeviceGetTotalEccErrors")
        return int(gpu.ecc_corrected) if error_type == 0 else gpu.ecc_uncorrected

    def nvmlDeviceGetPcieThroughput(self, h: _Handle, counter: int) -> int:
        gpu = self._gpu(h, "nvmlDeviceGetPcieThroughput")
        return int(gpu.pcie_tx_kbps if counter == 0 else gpu.pcie_rx_kbps)

    def nvmlDeviceGetPcieReplayCounter(self, h: _Handle) -> int:
        return int(self._gpu(h, "nvmlDeviceGetPcieReplayCounter").pcie_replays)

    def nvmlDeviceGetFieldValues(self, h: _Handle, field_ids: list[Any]) -> list[SimpleNamespace]:
        gpu = self._gpu(h, "nvmlDeviceGetFieldValues")
        out = []
        for entry in field_ids:
            fid = entry[0] if isinstance(entry, tuple) else entry
            value, ret = None, 0
            if fid == 82:
                value = int(round(gpu.temperature_c + 6))
            elif not gpu.model.nvlink_links and fid in (138, 139, 38, 45, 52, 59):
                ret = _CODES["NotSupported"]
            elif fid == 138:
                value = int(gpu.nvlink_tx_kib)
            elif fid == 139:
                value = int(gpu.nvlink_rx_kib)
            elif fid == 45:
                value = int(gpu.nvlink_crc)
            elif fid == 52:
                value = int(gpu.nvlink_crc / 4)
            elif fid in (38, 59):
                value = 0
            else:
                ret = _CODES["NotSupported"]
            out.append(
                SimpleNamespace(
                    fieldId=fid,
                    scopeId=0,
                    timestamp=time.time_ns() // 1000,
                    latencyUsec=0,
                    valueType=3,
                    nvmlReturn=ret,
                    value=SimpleNamespace(ullVal=value or 0, dVal=float(value or 0)),
                )
            )
        return out

    def nvmlDeviceGetFanSpeed(self, h: _Handle) -> int:
        gpu = self._gpu(h, "nvmlDeviceGetFanSpeed")
        if not gpu.model.has_fan:
            raise nvml_error("NotSupported")
        return int(min(100, max(30, 30 + (gpu.temperature_c - 30) * 1.2)))

    def nvmlDeviceGetRemappedRows(self, h: _Handle) -> tuple[int, int, int, int]:
        gpu = self._gpu(h, "nvmlDeviceGetRemappedRows")
        pending = 1 if gpu.ecc_uncorrected else 0
        return (0, gpu.ecc_uncorrected, pending, 0)

    def nvmlDeviceGetComputeRunningProcesses(self, h: _Handle) -> list[SimpleNamespace]:
        gpu = self._gpu(h, "nvmlDeviceGetComputeRunningProcesses")
        if gpu.process is None or (gpu.mig_enabled and h.mig not in (None, 0)):
            return []  # in MIG mode the job runs on the first slice; the others are free
        processes = gpu.processes()
        return [
            SimpleNamespace(
                pid=process.pid,
                usedGpuMemory=gpu.memory_used // len(processes),
                gpuInstanceId=0xFFFFFFFF,
                computeInstanceId=0xFFFFFFFF,
            )
            for process in processes
        ]

    def nvmlDeviceGetProcessUtilization(self, h: _Handle, last_seen: int) -> list[SimpleNamespace]:
        gpu = self._gpu(h, "nvmlDeviceGetProcessUtilization")
        if gpu.mig_enabled:
            raise nvml_error("NotSupported")
        if gpu.process is None:
            raise nvml_error("NotFound")
        now_us = int(self._host.cluster.sim_time() * 1e6)
        if now_us <= last_seen:
            raise nvml_error("NotFound")
        return [
            SimpleNamespace(
                pid=process.pid,
                timeStamp=now_us,
                smUtil=int(round(gpu.utilization_of(process.pid) * 100)),
                memUtil=int(
                    round(gpu.memory_utilization * gpu.utilization_of(process.pid) / max(gpu.utilization, 1e-9) * 100)
                ),
                encUtil=0,
                decUtil=0,
            )
            for process in gpu.processes()
        ]

    # GPM (Hopper+) ---------------------------------------------------------------------------

    def nvmlGpmQueryDeviceSupport(self, h: _Handle) -> SimpleNamespace:
        gpu = self._gpu(h, "nvmlGpmQueryDeviceSupport")
        return SimpleNamespace(version=1, isSupportedDevice=1 if gpu.model.gpm else 0)

    def nvmlGpmSampleAlloc(self) -> SimpleNamespace:
        self._check("nvmlGpmSampleAlloc")
        return SimpleNamespace(gpu=None, taken=None)

    def nvmlGpmSampleFree(self, sample: SimpleNamespace) -> None:
        sample.gpu = None

    def nvmlGpmSampleGet(self, h: _Handle, sample: SimpleNamespace) -> SimpleNamespace:
        gpu = self._gpu(h, "nvmlGpmSampleGet")
        if not gpu.model.gpm:
            raise nvml_error("NotSupported")
        sample.gpu = h.gpu
        sample.taken = (gpu.sm_activity, gpu.tensor_activity, gpu.dram_activity)
        return sample

    def nvmlGpmMetricsGet(self, request: _GpmRequest) -> _GpmRequest:
        self._check("nvmlGpmMetricsGet")
        first, second = request.sample1, request.sample2
        if first is None or second is None or first.taken is None or second.taken is None:
            raise nvml_error("InvalidArgument")
        sm, tensor, dram = ((a + b) / 2 for a, b in zip(first.taken, second.taken, strict=False))
        values = {2: sm, 3: sm * 0.55, 5: tensor, 10: dram, 11: 0.0, 12: sm * 0.12, 13: sm * 0.05}
        for i in range(request.numMetrics):
            metric = request.metrics[i]
            if metric.metricId in values:
                metric.value, metric.nvmlReturn = values[metric.metricId] * 100.0, 0
            else:
                metric.nvmlReturn = _CODES["NotSupported"]
        return request

    # events ----------------------------------------------------------------------------------

    def nvmlEventSetCreate(self) -> SimpleNamespace:
        self._check("nvmlEventSetCreate")
        return SimpleNamespace(devices=set(), freed=False)

    def nvmlDeviceRegisterEvents(self, h: _Handle, event_types: int, event_set: SimpleNamespace) -> None:
        self._gpu(h, "nvmlDeviceRegisterEvents")
        if event_types & 0x8:
            event_set.devices.add(h.gpu)

    def nvmlEventSetFree(self, event_set: SimpleNamespace) -> None:
        event_set.freed = True

    def nvmlEventSetWait_v2(self, event_set: SimpleNamespace, timeout_ms: int) -> SimpleNamespace:
        deadline = time.monotonic() + timeout_ms / 1000.0
        while True:
            self._check("nvmlEventSetWait_v2")
            events = self._host.events
            while events:
                event = events.popleft()
                if event.gpu_index in event_set.devices:
                    return SimpleNamespace(
                        device=_Handle(event.gpu_index),
                        eventType=0x8,
                        eventData=event.code,
                        gpuInstanceId=0xFFFFFFFF,
                        computeInstanceId=0xFFFFFFFF,
                    )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise nvml_error("Timeout")
            time.sleep(min(remaining, 0.05))
