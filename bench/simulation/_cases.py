"""Cases of more than one fault, or of faults at awkward moments: what an RCA service gets wrong when
the world is less tidy than one fault at a quiet time (issue 17, item 4).

Each case is a :class:`FaultSpec` (its ``fault_type`` is its own name) that a :class:`ScenarioRun`
runs like a catalog fault; its injection names every true cause and the decoys that must never
outrank them (:class:`Injected`):

- ``fault_in_checkpoint``: a GPU power cap that starts a few seconds into a 20 s checkpoint save and
  doubles the step time for minutes: the incident must open once the pause is over;
- ``harmless_signals``: a PCIe link down-trained to 10 % on one training GPU (the cause), while a
  corrected-only ECC count rises on a GPU of the same job on another host and, earlier, that host's
  CPUs spike without starving anything: neither may outrank the link, nor may free memory rising
  (what a slower job leaves behind); ``harmless_signal_after_kpi``: the same, with the ECC count
  rising only after the job's KPI broke;
- ``concurrent_faults``: a GPU power cap and a saturated CPU on another host of the same job at the
  same moment: both must surface (each in its own incident, or the top two of one);
- ``gradual_cooling_failure``: a cooling failure that heats a training GPU over five minutes until it
  throttles; ``gradual_pcie_degradation``: a PCIe link losing bandwidth over ten minutes (its replay
  count creeping up) until the job slows: each found once it bites (scored from then:
  ``FaultSpec.gradual``);
- ``unused_gpu_fault``: a GPU that no process uses overheats into thermal slowdown and reports an
  XID with uncorrectable ECC errors: no job is affected, so no incident (needs a free GPU: at least
  7 GPUs per host).
"""

from __future__ import annotations

from typing import Any

from factorylens.simulation._catalog import Decoy, FaultSpec, Injected, Targets, Truth

PCIE_FRACTION = 0.10
ECC_CORRECTED_PER_S = 5.0
CPU_SPIKE = (-150.0, 60.0, 0.85)  # (start relative to the onset, duration, utilization): below starvation
ECC_LEAD_S = 20.0  # the harmless ECC count starts this long before the link degrades...
ECC_LAG_S = 30.0  # ...or this long after (once the KPI has broken: 10-20 s after the link)
FREE_MEMORY = "*memory*free*"  # free memory (host or GPU) rising as a job slows: a consequence


def _fault(
    kind: str,
    host: int,
    start: float,
    params: dict[str, Any],
    *,
    gpu: int | None = None,
    duration: float | None = None,
    ramp: float | None = None,
) -> dict[str, Any]:
    fault: dict[str, Any] = {
        "kind": kind,
        "target": {"host": host, **({"gpu": gpu} if gpu is not None else {})},
        "start": start,
        "params": params,
    }
    if duration is not None:
        fault["duration"] = duration
    if ramp is not None:
        fault["ramp"] = ramp
    return fault


def _fault_in_checkpoint(t: Targets, on: float) -> Injected:
    return Injected(
        [_fault("power_cap", t.host_index, on, {"limit_fraction": 0.45}, gpu=t.gpu_index)],
        [],
        (Truth(f"gpu:{t.gpu_id}", "gpu"),),
    )


def _harmless(ecc_offset_s: float) -> Any:
    def inject(t: Targets, on: float) -> Injected:
        spike_start, spike_s, spike = CPU_SPIKE
        ecc_on = on + ecc_offset_s
        return Injected(
            [
                _fault(
                    "pcie_degradation",
                    t.host_index,
                    on,
                    {"throughput_fraction": PCIE_FRACTION, "replays_per_s": 0.0},
                    gpu=t.gpu_index,
                ),
                _fault(
                    "ecc_corrected",
                    t.other_host_index,
                    ecc_on,
                    {"corrected_per_s": ECC_CORRECTED_PER_S},
                    gpu=t.other_gpu_index,
                ),
                _fault(
                    "cpu_saturation", t.other_host_index, on + spike_start, {"utilization": spike}, duration=spike_s
                ),
            ],
            [],
            (Truth(f"gpu:{t.gpu_id}", "gpu"),),
            (
                Decoy(f"gpu:{t.other_gpu_id}", "corrected ECC errors: fixed in place, nothing slows", onset_s=ecc_on),
                Decoy(
                    f"host:{t.other_host}",
                    f"a CPU spike to {spike:.0%} that starves nothing",
                    "system.cpu.*",
                    onset_s=on + spike_start,
                ),
                Decoy("*", "free memory rising: a slower job holds less", FREE_MEMORY),
            ),
        )

    return inject


def _concurrent(t: Targets, on: float) -> Injected:
    return Injected(
        [
            _fault("power_cap", t.host_index, on, {"limit_fraction": 0.45}, gpu=t.gpu_index),
            _fault("cpu_saturation", t.other_host_index, on, {"utilization": 0.98}),
        ],
        [],
        (Truth(f"gpu:{t.gpu_id}", "gpu"), Truth(f"host:{t.other_host}", "host")),
    )


def _gradual_cooling(t: Targets, on: float) -> Injected:
    return Injected(
        [_fault("thermal_throttle", t.host_index, on, {"extra_celsius": 35.0}, gpu=t.gpu_index, ramp=300.0)],
        [],
        (Truth(f"gpu:{t.gpu_id}", "gpu"),),
    )


def _gradual_pcie(t: Targets, on: float) -> Injected:
    return Injected(
        [
            _fault(
                "pcie_degradation",
                t.host_index,
                on,
                {"throughput_fraction": PCIE_FRACTION, "replays_per_s": 5.0},
                gpu=t.gpu_index,
                ramp=600.0,
            )
        ],
        [],
        (Truth(f"gpu:{t.gpu_id}", "gpu"),),
    )


def _unused_gpu(t: Targets, on: float) -> Injected:
    if t.free_gpu is None:
        raise ValueError("unused_gpu_fault needs a GPU no process uses: at least 7 GPUs per host")
    host, gpu, gpu_id = t.free_gpu
    return Injected(
        [
            _fault("thermal_throttle", host, on, {"extra_celsius": 62.0}, gpu=gpu),
            _fault("xid", host, on + 30.0, {"code": 48}, gpu=gpu),
            _fault("ecc_burst", host, on + 30.0, {"corrected_per_s": 40.0, "uncorrected": 2}, gpu=gpu, duration=120.0),
        ],
        [],
        (),
        (Decoy(f"gpu:{gpu_id}", "a fault on a GPU no job uses"),),
    )


CASES: dict[str, FaultSpec] = {
    spec.name: spec
    for spec in (
        FaultSpec(
            "fault_in_checkpoint",
            "fault_in_checkpoint",
            "gpu",
            "power_cap (45 % of TDP) on one training GPU, starting 4-6 s into a 20 s checkpoint save",
            ("samples/s to 0 while the job saves (planned)", "then every rank's step time about doubles"),
            _fault_in_checkpoint,
            checkpoint_offset_s=8.0,
        ),
        FaultSpec(
            "harmless_signals",
            "harmless_signals",
            "gpu",
            f"pcie_degradation to {PCIE_FRACTION:.0%} (a down-trained link, no replays) on one training GPU; "
            f"{ECC_LEAD_S:.0f} s earlier corrected-only ECC errors start on a GPU of the same job on another "
            "host, whose CPUs spiked to 85 % for a minute before that",
            (
                "hw.gpu.io rate down, its rank's h2d and every rank's collective up (the cause)",
                "hw.errors{corrected} up on the other GPU (harmless)",
                "system.cpu.utilization up on the other host, then back (harmless)",
                "free memory up as the job slows (a consequence)",
            ),
            _harmless(-ECC_LEAD_S),
        ),
        FaultSpec(
            "harmless_signal_after_kpi",
            "harmless_signal_after_kpi",
            "gpu",
            f"as harmless_signals, but the corrected-only ECC errors start {ECC_LAG_S:.0f} s after the link "
            "degraded (after the job's KPI broke)",
            ("hw.errors{corrected} up on the other GPU after the KPI broke",),
            _harmless(ECC_LAG_S),
        ),
        FaultSpec(
            "concurrent_faults",
            "concurrent_faults",
            "gpu",
            "power_cap (45 %) on one training GPU and cpu_saturation (98 %) on another host of the same job, "
            "at the same moment",
            ("the GPU's clocks down, its rank's compute up", "the other host's ranks' data wait up"),
            _concurrent,
        ),
        FaultSpec(
            "gradual_cooling_failure",
            "gradual_cooling_failure",
            "gpu",
            "thermal_throttle ramping from +0 to +35 °C over 5 minutes on one training GPU (a failing fan), "
            "starting 30 s after a checkpoint fell due",
            ("hw.temperature climbing for minutes", "then clock events sw_thermal and the step time up"),
            _gradual_cooling,
            checkpoint_offset_s=30.0,
            gradual=True,
        ),
        FaultSpec(
            "gradual_pcie_degradation",
            "gradual_pcie_degradation",
            "gpu",
            f"pcie_degradation ramping to {PCIE_FRACTION:.0%} of the link and 5 replays/s over 10 minutes on one "
            "training GPU (a link re-training ever lower), starting 30 s after a checkpoint fell due: the job "
            "slows from about 2.5 minutes in, and its KPI breaks about as the next checkpoint ends",
            ("hw.errors{pcie_replay} creeping up", "hw.gpu.io rate down", "its rank's h2d and every collective up"),
            _gradual_pcie,
            checkpoint_offset_s=30.0,
            post_onset_s=600.0,
            gradual=True,
        ),
        FaultSpec(
            "unused_gpu_fault",
            "unused_gpu_fault",
            "gpu",
            "a GPU no process uses overheats (+62 °C: thermal slowdown) and 30 s later reports XID 48 with "
            "an ECC burst (2 uncorrected)",
            ("hw.temperature up, clock events thermal, hw.errors{xid,corrected,uncorrected} on that GPU only",),
            _unused_gpu,
        ),
    )
}
