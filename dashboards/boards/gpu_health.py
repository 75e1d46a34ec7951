"""GPU health: is the hardware the cause? Heat, clocks and why they drop, errors, links, state."""

from factorylens.registry import CLOCK_EVENT_REASONS, Attributes, Metrics

from .._panels import GPU, GPU_SCOPE, NODE, Board, Panel, Query, Row, eq, label, match, rate, sel, ts

UID = "factorylens-gpu"
_PER_GPU = f"{NODE}, {GPU}"
_LEGEND = "{{host_name}} {{hw_id}}"
_ERROR_TYPE = label(Attributes.ERROR_TYPE)
_THERMAL = "|".join(r for r in CLOCK_EVENT_REASONS if "thermal" in r)
_DIRECTION = label(Attributes.NETWORK_IO_DIRECTION)
_THERMALLY_THROTTLED = sel(
    Metrics.HW_GPU_CLOCK_EVENT_ACTIVE, *GPU_SCOPE, match(Attributes.HW_GPU_CLOCK_EVENT_REASON, _THERMAL)
)
_ECC = match(Attributes.ERROR_TYPE, "corrected|uncorrected")
_LINK_ERRORS = match(Attributes.ERROR_TYPE, "pcie_replay|nvlink_.*")
# hw.status is 1 for the current state's series: weight each state so the max is its code
STATE_CODES = (("ok", 0), ("degraded", 1), ("predicted_failure", 2), ("failed", 3))
STATE_CODE = " or ".join(
    f"{sel(Metrics.HW_STATUS, *GPU_SCOPE, eq(Attributes.HW_STATE, state))} * {code}" for state, code in STATE_CODES
)

BOARD = Board(
    uid=UID,
    title="factorylens / GPU health",
    description="Temperatures, clocks and throttle reasons, XID and ECC errors, PCIe and NVLink traffic and errors, "
    "and each GPU's health state.",
    rows=(
        Row(
            "State",
            (
                Panel(
                    "statetimeline",
                    "GPU health state",
                    "hw.status per GPU over time: ok, degraded, predicted failure, failed.",
                    "none",
                    (
                        Query(
                            f"max by ({_PER_GPU}) ({STATE_CODE})",
                            legend=_LEGEND,
                        ),
                    ),
                    width=24,
                    value_text=(
                        ("0", "ok", "green"),
                        ("1", "degraded", "orange"),
                        ("2", "predicted failure", "yellow"),
                        ("3", "failed", "red"),
                    ),
                    thresholds=((None, "green"), (1, "orange"), (2, "yellow"), (3, "red")),
                ),
            ),
        ),
        Row(
            "Heat and clocks",
            (
                ts(
                    "GPU temperature",
                    "Per sensor (die, memory); sustained values above 85 °C throttle most data-centre GPUs.",
                    "celsius",
                    Query(
                        f"max by ({_PER_GPU}, {label(Attributes.HW_SENSOR_LOCATION)}) "
                        f"({sel(Metrics.HW_TEMPERATURE, *GPU_SCOPE)})",
                        legend=_LEGEND + " {{hw_sensor_location}}",
                    ),
                    thresholds=((None, "green"), (80, "orange"), (87, "red")),
                ),
                ts(
                    "SM clock",
                    "Graphics/SM clock per GPU: a drop while busy is throttling.",
                    "hertz",
                    Query(
                        f"max by ({_PER_GPU}, {label(Attributes.HW_GPU_CLOCK_DOMAIN)}) "
                        f"({sel(Metrics.HW_GPU_SPEED, *GPU_SCOPE)})",
                        legend=_LEGEND + " {{hw_gpu_clock_domain}}",
                    ),
                ),
                ts(
                    "Throttle reasons active",
                    "GPUs with each clock-event reason holding clocks down (thermal and power ones cost speed).",
                    "none",
                    Query(
                        f"sum by ({label(Attributes.HW_GPU_CLOCK_EVENT_REASON)}) "
                        f"({sel(Metrics.HW_GPU_CLOCK_EVENT_ACTIVE, *GPU_SCOPE)})",
                        legend="{{hw_gpu_clock_event_reason}}",
                    ),
                    stack=True,
                ),
                ts(
                    "Thermally throttled GPUs",
                    "GPUs whose clocks a thermal reason holds down: cooling trouble.",
                    "none",
                    Query(
                        f"max by ({_PER_GPU}) ({_THERMALLY_THROTTLED})",
                        legend=_LEGEND,
                    ),
                    min=0,
                    max=1,
                    thresholds=((None, "green"), (1, "red")),
                ),
                ts(
                    "Power against limit",
                    "Board power over its enforced limit: near 100% means power capping.",
                    "percentunit",
                    Query(
                        f"max by ({_PER_GPU}) ({sel(Metrics.HW_POWER, *GPU_SCOPE)}) "
                        f"/ max by ({_PER_GPU}) ({sel(Metrics.HW_POWER_LIMIT, *GPU_SCOPE)})",
                        legend=_LEGEND,
                    ),
                    thresholds=((None, "green"), (0.95, "red")),
                ),
                ts(
                    "Utilization",
                    "Busy share per GPU, to read the rest against load.",
                    "percentunit",
                    Query(f"max by ({_PER_GPU}) ({sel(Metrics.HW_GPU_UTILIZATION, *GPU_SCOPE)})", legend=_LEGEND),
                    min=0,
                    max=1,
                ),
            ),
        ),
        Row(
            "Errors",
            (
                ts(
                    "XID errors",
                    "XID events per second by GPU and code (79: fallen off the bus, 48: double-bit ECC, "
                    "94/95: contained/uncontained ECC).",
                    "ops",
                    Query(
                        f"sum by ({_PER_GPU}, {label(Attributes.HW_GPU_XID_CODE)}) "
                        f"({rate(sel(Metrics.HW_ERRORS, *GPU_SCOPE, eq(Attributes.ERROR_TYPE, 'xid')))})",
                        legend=_LEGEND + " xid {{hw_gpu_xid_code}}",
                    ),
                    thresholds=((None, "green"), (0.001, "red")),
                ),
                ts(
                    "ECC errors",
                    "Corrected (tolerable in small numbers) and uncorrected (data loss: drain the GPU) ECC errors "
                    "per second.",
                    "ops",
                    Query(
                        f"sum by ({_PER_GPU}, {_ERROR_TYPE}) ({rate(sel(Metrics.HW_ERRORS, *GPU_SCOPE, _ECC))})",
                        legend=_LEGEND + " {{error_type}}",
                    ),
                ),
                ts(
                    "PCIe replays and NVLink errors",
                    "Link-level retries and CRC errors per second: a degrading link slows collectives before it fails.",
                    "ops",
                    Query(
                        f"sum by ({_PER_GPU}, {_ERROR_TYPE}) "
                        f"({rate(sel(Metrics.HW_ERRORS, *GPU_SCOPE, _LINK_ERRORS))})",
                        legend=_LEGEND + " {{error_type}}",
                    ),
                ),
            ),
        ),
        Row(
            "Links",
            (
                ts(
                    "PCIe throughput",
                    "Host↔GPU bytes per second by direction.",
                    "Bps",
                    Query(
                        f"sum by ({_PER_GPU}, {_DIRECTION}) ({rate(sel(Metrics.HW_GPU_IO, *GPU_SCOPE))})",
                        legend=_LEGEND + " {{network_io_direction}}",
                    ),
                ),
                ts(
                    "NVLink throughput",
                    "GPU↔GPU bytes per second by direction.",
                    "Bps",
                    Query(
                        f"sum by ({_PER_GPU}, {_DIRECTION}) ({rate(sel(Metrics.HW_GPU_INTERCONNECT_IO, *GPU_SCOPE))})",
                        legend=_LEGEND + " {{network_io_direction}}",
                    ),
                ),
            ),
        ),
    ),
)
