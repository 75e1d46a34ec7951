"""The NVML backend against pynvml-compatible fakes: values, capability probing and every error class."""

from __future__ import annotations

import logging

import pynvml

from factorylens.receivers.gpu.nvml import MonotonicCounter, NvmlBackend, nvml_error_name
from factorylens.receivers.gpu.sim import nvml_error
from tests.conftest import make_sim, value, values


def scrape_after(backend, clock, seconds=10.0):
    clock.advance(seconds)
    return backend.scrape()


def test_reads_every_field_with_identity_and_units(clock):
    cluster, _, backend = make_sim(clock)
    backend.start()
    scrape_after(backend, clock)
    r = scrape_after(backend, clock)
    gpu = cluster.hosts[0].gpus[0]
    ident = dict(values(r, "hw.power", **{"gpu.index": 0})[0][0])
    assert ident["hw.id"] == gpu.uuid and ident["hw.type"] == "gpu" and ident["hw.vendor"] == "nvidia"
    assert ident["hw.name"] == "NVIDIA H100 80GB HBM3" and ident["gpu.pci_address"] == gpu.pci_bus_id
    assert "hw.serial_number" not in ident  # descriptive attributes ride on hw.status only
    ((status, _),) = values(r, "hw.status", **{"gpu.index": 0, "hw.state": "ok"})
    assert status["hw.serial_number"] == gpu.serial and status["hw.driver_version"] == "570.133.20"
    assert status["hw.firmware_version"] == gpu.model.vbios and status["hw.model"] == gpu.model.name
    assert value(r, "hw.power", **{"gpu.index": 0}) == int(gpu.power_w * 1000) / 1000.0
    assert value(r, "hw.power.limit", **{"gpu.index": 0}) == 700.0
    assert value(r, "hw.gpu.memory.limit", **{"gpu.index": 0}) == gpu.model.memory_bytes
    usage = value(r, "hw.gpu.memory.usage", **{"gpu.index": 0})
    assert value(r, "hw.gpu.memory.utilization", **{"gpu.index": 0}) == usage / gpu.model.memory_bytes
    assert value(r, "hw.gpu.speed", **{"gpu.index": 0, "hw.gpu.clock_domain": "memory"}) == 2619e6
    util = value(r, "hw.gpu.utilization", **{"gpu.index": 0, "hw.gpu.task": "general"})
    assert 0.0 <= util <= 1.0
    assert value(r, "hw.gpu.idle", **{"gpu.index": 0}) == 1.0 - util
    assert value(r, "hw.temperature", **{"gpu.index": 0, "hw.sensor_location": "memory"}) > 0
    assert value(r, "hw.energy", **{"gpu.index": 0}) > 0
    assert value(r, "hw.gpu.interconnect.io", **{"gpu.index": 0, "network.io.direction": "transmit"}) > 0
    assert value(r, "hw.gpu.sm.utilization", **{"gpu.index": 0}) > 0  # GPM: two samples taken
    assert value(r, "hw.status", **{"gpu.index": 0, "hw.state": "ok"}) == 1
    assert len(values(r, "hw.gpu.clock_event.active", **{"gpu.index": 0})) == 9


def test_each_supported_field_costs_exactly_one_call(clock):
    _, _, backend = make_sim(clock)
    backend.start()
    scrape_after(backend, clock)  # first scrape probes (encoder and fan are NotSupported on H100)
    r = scrape_after(backend, clock)
    assert r.nvml_calls == backend.supported_fields()
    counted = CountingModule(backend._nvml)
    backend._nvml = counted
    r = scrape_after(backend, clock)
    assert counted.calls == r.nvml_calls == backend.supported_fields()


class CountingModule:
    def __init__(self, module):
        self._module, self.calls = module, 0

    def __getattr__(self, name):
        target = getattr(self._module, name)
        if not callable(target) or not name.startswith("nvml"):
            return target

        def counted(*args, **kwargs):
            self.calls += 1
            return target(*args, **kwargs)

        return counted


def test_not_supported_is_probed_once_and_the_series_omitted(clock):
    _, _, backend = make_sim(
        clock,
        [
            {
                "kind": "nvml_error",
                "target": {"host": 0, "gpu": 1},
                "start": 0,
                "params": {"function": "nvmlDeviceGetPowerUsage", "error": "NotSupported"},
            }
        ],
    )
    backend.start()
    first = scrape_after(backend, clock)
    assert not values(first, "hw.power", **{"gpu.index": 1})
    assert values(first, "hw.power", **{"gpu.index": 0})
    probes = [e for e in first.errors if e.function == "nvmlDeviceGetPowerUsage"]
    assert [e.error for e in probes] == ["NotSupported"]
    for _ in range(3):
        later = scrape_after(backend, clock)
        assert not [e for e in later.errors if e.function == "nvmlDeviceGetPowerUsage"]
        assert not values(later, "hw.power", **{"gpu.index": 1})


def test_no_permission_disables_the_field_and_logs_once(clock, caplog):
    caplog.set_level(logging.WARNING, logger="factorylens.receivers")
    _, _, backend = make_sim(
        clock,
        [
            {
                "kind": "nvml_error",
                "target": {"host": 0, "gpu": "*"},
                "start": 0,
                "params": {"function": "nvmlDeviceGetComputeRunningProcesses", "error": "NoPermission"},
            }
        ],
    )
    backend.start()
    for _ in range(3):
        r = scrape_after(backend, clock)
        assert not values(r, "process.gpu.memory.usage")
        assert values(r, "hw.gpu.utilization")
    warnings = [rec for rec in caplog.records if "no permission" in rec.getMessage()]
    assert len(warnings) == 1


def test_unknown_errors_are_counted_every_time_and_the_field_retried(clock):
    _, _, backend = make_sim(
        clock,
        [
            {
                "kind": "nvml_error",
                "target": {"host": 0, "gpu": 2},
                "start": 0,
                "duration": 25,
                "params": {"function": "nvmlDeviceGetTemperature", "error": "Unknown"},
            }
        ],
    )
    backend.start()
    errors = []
    for _ in range(2):
        r = scrape_after(backend, clock)
        errors += [e.error for e in r.errors if e.function == "nvmlDeviceGetTemperature"]
        assert not values(r, "hw.temperature", **{"gpu.index": 2, "hw.sensor_location": "die"})
    assert errors == ["Unknown", "Unknown"]
    r = scrape_after(backend, clock)  # fault over: the field is read again
    assert values(r, "hw.temperature", **{"gpu.index": 2, "hw.sensor_location": "die"})


def test_gpu_lost_marks_failed_reinitialises_and_recovers_with_counters_intact(clock):
    _cluster, _nvml, backend = make_sim(
        clock,
        [{"kind": "gpu_lost", "target": {"host": 0, "gpu": 5}, "start": 25, "duration": 30}],
        discovery_retry_interval_s=20,
    )
    backend.start()
    before = scrape_after(backend, clock)
    energy_before = value(before, "hw.energy", **{"gpu.index": 5})
    scrape_after(backend, clock)  # t=+20
    lost = scrape_after(backend, clock)  # t=+30: calls raise GpuIsLost
    assert "GpuIsLost" in {e.error for e in lost.errors}
    assert value(lost, "hw.status", **{"gpu.index": 5, "hw.state": "failed"}) == 1
    assert values(lost, "hw.gpu.utilization", **{"gpu.index": 0})  # the other GPUs keep reporting
    still = scrape_after(backend, clock)  # re-init: GPU 5 cannot be opened, reported failed
    assert value(still, "hw.status", **{"gpu.index": 5, "hw.state": "failed"}) == 1
    assert still.devices == 7
    for _ in range(3):
        back = scrape_after(backend, clock)
    assert back.devices == 8
    assert value(back, "hw.status", **{"gpu.index": 5, "hw.state": "ok"}) == 1
    assert value(back, "hw.energy", **{"gpu.index": 5}) > energy_before


def test_missing_driver_keeps_running_and_retries_until_it_appears(clock):
    _, _, backend = make_sim(
        clock,
        [
            {
                "kind": "driver_missing",
                "target": {"host": 0},
                "start": 0,
                "duration": 45,
                "params": {"error": "LibraryNotFound"},
            }
        ],
        discovery_retry_interval_s=30,
    )
    backend.start()
    r = scrape_after(backend, clock, 1)
    assert r.devices == 0 and r.points == [] and [e.error for e in r.errors] == ["LibraryNotFound"]
    r = scrape_after(backend, clock, 10)  # within the retry interval: no new attempt
    assert r.errors == []
    r = scrape_after(backend, clock, 25)  # +36 s: retried, still missing
    assert [e.error for e in r.errors] == ["LibraryNotFound"]
    r = scrape_after(backend, clock, 30)  # +66 s: driver is back
    assert r.devices == 8 and values(r, "hw.gpu.utilization")


def test_real_pynvml_without_a_driver_is_survived():
    backend = NvmlBackend(pynvml, discovery_retry_interval_s=3600)
    backend.start()
    r = backend.scrape()
    assert r.devices == 0
    assert r.errors and r.errors[0].function == "nvmlInit"
    assert r.errors[0].error in ("LibraryNotFound", "DriverNotLoaded")
    backend.shutdown()


def test_error_names_come_without_calling_the_library():
    assert nvml_error_name(nvml_error("GpuIsLost")) == "GpuIsLost"
    assert nvml_error_name(pynvml.NVMLError(pynvml.NVML_ERROR_NO_PERMISSION)) == "NoPermission"
    assert nvml_error_name(RuntimeError("x")) == "RuntimeError"


def test_energy_counter_survives_a_driver_reload(clock):
    cluster, _, backend = make_sim(clock)
    backend.start()
    first = value(scrape_after(backend, clock), "hw.energy", **{"gpu.index": 0})
    cluster.hosts[0].gpus[0].energy_mj = 0.0  # driver reload resets NVML's counter
    second = value(scrape_after(backend, clock), "hw.energy", **{"gpu.index": 0})
    assert second > first
    c = MonotonicCounter()
    assert [c.update(v) for v in (5, 9, 2, 4)] == [5, 9, 11, 13]


def test_pcie_throughput_is_integrated_into_bytes(clock):
    cluster, _, backend = make_sim(clock, gpus=1)
    backend.start()
    gpu = cluster.hosts[0].gpus[0]
    a = value(scrape_after(backend, clock), "hw.gpu.io", **{"network.io.direction": "receive"})
    rate_a = int(gpu.pcie_rx_kbps)
    b = value(scrape_after(backend, clock), "hw.gpu.io", **{"network.io.direction": "receive"})
    rate_b = int(gpu.pcie_rx_kbps)
    assert b - a == int((rate_a + rate_b) / 2 * 1024 * 10) or abs((b - a) - (rate_a + rate_b) / 2 * 10240) <= 1


def test_xid_events_arrive_once_and_are_counted_by_code(clock):
    _, _, backend = make_sim(
        clock,
        [
            {
                "kind": "xid",
                "target": {"host": 0, "gpu": 3},
                "start": 5,
                "params": {"code": 63, "count": 2, "interval": 10},
            }
        ],
    )
    backend.start()
    clock.advance(30)
    events = backend.wait_events(0) + backend.wait_events(0)
    assert [e.xid_code for e in events] == [63, 63]
    assert events[0].attributes["gpu.index"] == 3 and events[0].attributes["hw.gpu.xid.code"] == 63
    assert "ECC page retirement" in events[0].message
    assert backend.wait_events(0) == []
    r = backend.scrape()
    assert value(r, "hw.errors", **{"gpu.index": 3, "error.type": "xid", "hw.gpu.xid.code": 63}) == 2


def test_processes_map_to_jobs_and_allocation(clock):
    cluster, _, backend = make_sim(clock)
    backend.start()
    scrape_after(backend, clock)
    r = scrape_after(backend, clock)
    ((attrs, used),) = values(r, "process.gpu.memory.usage", **{"gpu.index": 0})
    assert attrs["factorylens.job.id"] == "llm-pretrain-7b" and attrs["factorylens.team"] == "foundation-models"
    assert attrs["process.pid"] == cluster.hosts[0].gpus[0].process.pid and used > 0
    assert values(r, "process.gpu.utilization", **{"gpu.index": 0})
    assert value(r, "hw.gpu.allocated", **{"gpu.index": 6}) == 1  # the notebook: allocated...
    assert value(r, "hw.gpu.utilization", **{"gpu.index": 6, "hw.gpu.task": "general"}) < 0.05  # ...but idle
    assert value(r, "hw.gpu.allocated", **{"gpu.index": 7}) == 0


def test_process_series_are_bounded(clock):
    _, _, backend = make_sim(clock, max_processes_per_gpu=0)
    backend.start()
    r = scrape_after(backend, clock)
    assert not values(r, "process.gpu.memory.usage") and not values(r, "process.gpu.utilization")


def test_mig_devices_are_reported_with_their_parent(clock):
    cluster, _, backend = make_sim(clock, gpus=1, mig=True)
    backend.start()
    r = scrape_after(backend, clock)
    parent = cluster.hosts[0].gpus[0].uuid
    migs = values(r, "hw.gpu.memory.limit", **{"hw.parent": parent})
    assert len(migs) == 7 and r.devices == 8
    assert {a["gpu.mig.profile"] for a, _ in migs} == {"1g.10gb"}
    assert len({a["hw.id"] for a, _ in migs}) == 7 and all(a["hw.id"].startswith("MIG-") for a, _ in migs)
    assert {a["gpu.mig.instance_id"] for a, _ in migs} == set(range(7, 14))
    assert not values(r, "hw.gpu.utilization", **{"hw.gpu.task": "general"})  # NotSupported under MIG


def test_models_without_nvlink_or_gpm_omit_those_series(clock):
    _, _, backend = make_sim(clock, model="L40S", gpus=2)
    backend.start()
    scrape_after(backend, clock)
    r = scrape_after(backend, clock)
    assert not values(r, "hw.gpu.interconnect.io") and not values(r, "hw.gpu.sm.utilization")
    assert values(r, "hw.fan.speed_ratio") and values(r, "hw.gpu.utilization", **{"hw.gpu.task": "encoder"})
    assert values(r, "hw.temperature", **{"hw.sensor_location": "memory"})  # the batch keeps working fields


def test_old_driver_falls_back_to_the_deprecated_throttle_call(clock):
    _, nvml, backend = make_sim(clock, gpus=1)

    def missing(handle):
        raise nvml_error("FunctionNotFound")

    nvml.nvmlDeviceGetCurrentClocksEventReasons = missing
    backend.start()
    scrape_after(backend, clock)
    r = scrape_after(backend, clock)
    assert len(values(r, "hw.gpu.clock_event.active")) == 9


def test_event_wait_with_no_event_support_does_not_spin(clock):
    _, nvml, backend = make_sim(clock, gpus=1)
    nvml.nvmlEventSetCreate = lambda: (_ for _ in ()).throw(nvml_error("NotSupported"))
    backend.start()
    assert backend.wait_events(1) == []
    assert values(scrape_after(backend, clock), "hw.power")


def test_ecc_counts_and_health_states(clock):
    _, _, backend = make_sim(
        clock,
        [
            {
                "kind": "ecc_burst",
                "target": {"host": 0, "gpu": 2},
                "start": 15,
                "duration": 60,
                "params": {"corrected_per_s": 10, "uncorrected": 1},
            }
        ],
    )
    backend.start()
    scrape_after(backend, clock)
    r = scrape_after(backend, clock)
    assert value(r, "hw.errors", **{"gpu.index": 2, "error.type": "uncorrected"}) == 1
    assert value(r, "hw.errors", **{"gpu.index": 2, "error.type": "corrected"}) > 0
    assert value(r, "hw.status", **{"gpu.index": 2, "hw.state": "predicted_failure"}) == 1  # row remap pending
    assert value(r, "hw.status", **{"gpu.index": 1, "hw.state": "ok"}) == 1


def test_field_values_drop_unsupported_entries_and_keep_the_rest(clock):
    _, nvml, backend = make_sim(clock, gpus=1)
    original = nvml.nvmlDeviceGetFieldValues

    def partial(handle, ids):
        out = original(handle, ids)
        for fv in out:
            if fv.fieldId == 82:
                fv.nvmlReturn = pynvml.NVML_ERROR_NOT_SUPPORTED
        return out

    nvml.nvmlDeviceGetFieldValues = partial
    backend.start()
    r = scrape_after(backend, clock)
    assert not values(r, "hw.temperature", **{"hw.sensor_location": "memory"})
    assert values(r, "hw.gpu.interconnect.io")
    assert any(e.function == "nvmlDeviceGetFieldValues[82]" for e in r.errors)
    assert not any("[82]" in e.function for e in scrape_after(backend, clock).errors)
