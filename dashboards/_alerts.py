"""Prometheus alerting rules for the GPU faults an on-call engineer must act on, and their
``promtool test rules`` cases, generated from the registry like the dashboards.

Each rule is declared once with the series that make it fire; the test file is built from those
series and the firing labels, so a rule and its test cannot drift apart. A healthy twin of each
series (another GPU) must not fire, which tests the thresholds as well as the expressions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import yaml

from factorylens.registry import Attributes, Metrics

from ._panels import GPU, NODE, eq, label, match, sel

RULES_FILE = "factorylens-alerts.yaml"
GROUP = "factorylens-gpu"
EVALUATION_INTERVAL = "1m"
# thresholds (edit to taste and regenerate)
XID_STORM_EVENTS = 10  # XID events on one GPU within XID_STORM_WINDOW
XID_STORM_WINDOW = "5m"
THERMAL_FOR = "5m"  # throttled by a thermal reason at least this long
IDLE_SHARE = 0.95  # an allocated GPU idle more than this share of the time ...
IDLE_FOR = "30m"  # ... for this long
LOST_LOOKBACK = "30m"  # a GPU that reported within this long and stopped

_PER_GPU = f"{NODE}, {GPU}"
_XID = eq(Attributes.ERROR_TYPE, "xid")
_THERMAL = match(Attributes.HW_GPU_CLOCK_EVENT_REASON, "sw_thermal|hw_thermal")
_UTIL = sel(Metrics.HW_GPU_UTILIZATION)


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    for_: str
    severity: str
    summary: str  # may use {{ $labels.NAME }}
    description: str
    firing: dict[str, str]  # input series (``metric{labels}``) → promtool values that fire the alert
    healthy: dict[str, str]  # the same for a GPU that must not fire
    fires_at: str  # evaluation time at which it fires (and the healthy twin does not)
    quiet_at: str  # an earlier time at which the sick GPU does not fire yet (its ``for`` or threshold)
    labels: dict[str, str]  # labels of the firing alert, from the expression


def _gpu(node: str, gpu: str) -> dict[str, str]:
    return {NODE: node, GPU: gpu}


def _series(name: str, labels: dict[str, str]) -> str:
    return f"{name}{{{', '.join(f'{k}={chr(34)}{v}{chr(34)}' for k, v in labels.items())}}}"


_SICK = _gpu("node-1", "GPU-sick")
_WELL = _gpu("node-1", "GPU-well")
_STATE = label(Attributes.HW_STATE)
_ERROR = label(Attributes.ERROR_TYPE)
_XID_CODE = label(Attributes.HW_GPU_XID_CODE)
_REASON = label(Attributes.HW_GPU_CLOCK_EVENT_REASON)
_STATUS = sel(Metrics.HW_STATUS)
_ERRORS = sel(Metrics.HW_ERRORS)
_CLOCKS = sel(Metrics.HW_GPU_CLOCK_EVENT_ACTIVE)
_ALLOCATED = sel(Metrics.HW_GPU_ALLOCATED)
_IDLE = sel(Metrics.HW_GPU_IDLE)
_CAUSE = sel(Metrics.FACTORYLENS_INCIDENT_CAUSE_SCORE)
_INCIDENT = {
    label(Attributes.FACTORYLENS_INCIDENT_ID): "inc-1",
    label(Attributes.FACTORYLENS_ENTITY): "node-1/GPU-sick",
    label(Attributes.FACTORYLENS_DOMAIN): "gpu",
    label(Attributes.FACTORYLENS_METRIC): Metrics.HW_TEMPERATURE,
}
_INCIDENT_LABELS = ", ".join(_INCIDENT)
_TOP_CAUSE = sel(Metrics.FACTORYLENS_INCIDENT_CAUSE_SCORE, eq(Attributes.FACTORYLENS_CAUSE_RANK, "1"))
_XID_79 = sel(Metrics.HW_ERRORS, _XID, eq(Attributes.HW_GPU_XID_CODE, "79"))  # fallen off the bus

ALERTS = (
    Alert(
        "FactorylensGpuFailed",
        f"max by ({_PER_GPU}) ({sel(Metrics.HW_STATUS, eq(Attributes.HW_STATE, 'failed'))}) == 1",
        "1m",
        "critical",
        "GPU {{ $labels.hw_id }} on {{ $labels.host_name }} reports failed",
        "hw.status is failed: drain the node and replace or reset the GPU.",
        {_series(_STATUS, {**_SICK, _STATE: "failed"}): "0 0 1x10"},
        {_series(_STATUS, {**_WELL, _STATE: "failed"}): "0x12"},
        "5m",
        "2m",
        _SICK,
    ),
    Alert(
        "FactorylensGpuLost",
        f"max by ({_PER_GPU}) (max_over_time({_UTIL}[{LOST_LOOKBACK}])) unless max by ({_PER_GPU}) ({_UTIL})",
        "2m",
        "critical",
        "GPU {{ $labels.hw_id }} on {{ $labels.host_name }} stopped reporting",
        f"The GPU reported within {LOST_LOOKBACK} and no longer does: lost by the driver, or its node agent is down.",
        {_series(_UTIL, _SICK): "0.5x5"},
        {_series(_UTIL, _WELL): "0.5x30"},
        "15m",
        "9m",
        _SICK,
    ),
    Alert(
        "FactorylensGpuFellOffTheBus",
        f"max by ({_PER_GPU}) (increase({_XID_79}[10m])) > 0",
        "0m",
        "critical",
        "GPU {{ $labels.hw_id }} on {{ $labels.host_name }} fell off the bus (XID 79)",
        "XID 79: the GPU is unreachable; jobs on it fail until the node is rebooted.",
        {_series(_ERRORS, {**_SICK, _ERROR: "xid", _XID_CODE: "79"}): "0 0 1 1 1 1"},
        {_series(_ERRORS, {**_WELL, _ERROR: "xid", _XID_CODE: "79"}): "0x5"},
        "3m",
        "1m",
        _SICK,
    ),
    Alert(
        "FactorylensXidStorm",
        f"sum by ({_PER_GPU}) (increase({sel(Metrics.HW_ERRORS, _XID)}[{XID_STORM_WINDOW}])) > {XID_STORM_EVENTS}",
        "1m",
        "warning",
        "XID storm on GPU {{ $labels.hw_id }} on {{ $labels.host_name }}",
        f"More than {XID_STORM_EVENTS} XID events in {XID_STORM_WINDOW}: the driver keeps reporting faults.",
        {_series(_ERRORS, {**_SICK, _ERROR: "xid", _XID_CODE: "13"}): "0+5x15"},
        {_series(_ERRORS, {**_WELL, _ERROR: "xid", _XID_CODE: "13"}): "0 1 1 1 2 2 2 2 2 2 2 2 2 2 2 2"},
        "8m",
        "2m",
        _SICK,
    ),
    Alert(
        "FactorylensUncorrectedEcc",
        f"sum by ({_PER_GPU}) (increase({sel(Metrics.HW_ERRORS, eq(Attributes.ERROR_TYPE, 'uncorrected'))}[10m])) > 0",
        "0m",
        "critical",
        "Uncorrected ECC errors on GPU {{ $labels.hw_id }} on {{ $labels.host_name }}",
        "Uncorrected ECC errors corrupt data: drain the GPU and check for row remapping.",
        {_series(_ERRORS, {**_SICK, _ERROR: "uncorrected"}): "0 0 0 2 2 2 2"},
        {_series(_ERRORS, {**_WELL, _ERROR: "corrected"}): "0+1x6"},
        "4m",
        "2m",
        _SICK,
    ),
    Alert(
        "FactorylensThermalThrottling",
        f"max by ({_PER_GPU}) ({sel(Metrics.HW_GPU_CLOCK_EVENT_ACTIVE, _THERMAL)}) == 1",
        THERMAL_FOR,
        "warning",
        "GPU {{ $labels.hw_id }} on {{ $labels.host_name }} is thermally throttled",
        f"A thermal reason has held its clocks down for at least {THERMAL_FOR}: check cooling.",
        {_series(_CLOCKS, {**_SICK, _REASON: "hw_thermal"}): "1x15"},
        {_series(_CLOCKS, {**_WELL, _REASON: "hw_thermal"}): "1 1 1 0 0 0 0 0 0 0 0 0 0 0 0"},
        "10m",
        "4m",
        _SICK,
    ),
    Alert(
        "FactorylensIncidentOpen",
        f"max by ({_INCIDENT_LABELS}) ({_TOP_CAUSE})",
        "1m",
        "warning",
        "RCA incident {{ $labels.factorylens_incident_id }}: top cause {{ $labels.factorylens_entity }}",
        "The RCA service holds this incident open; its top-ranked cause is in the labels (Incidents dashboard).",
        {_series(_CAUSE, {**_INCIDENT, label(Attributes.FACTORYLENS_CAUSE_RANK): "1"}): "0.9x10"},
        {_series(_CAUSE, {**_INCIDENT, label(Attributes.FACTORYLENS_CAUSE_RANK): "2"}): "0.4x10"},
        "5m",
        "0m",
        _INCIDENT,
    ),
    Alert(
        "FactorylensIdleButAllocated",
        f"(max by ({_PER_GPU}) ({_ALLOCATED}) > 0) * on ({_PER_GPU}) max by ({_PER_GPU}) ({_IDLE}) > {IDLE_SHARE}",
        IDLE_FOR,
        "info",
        "GPU {{ $labels.hw_id }} on {{ $labels.host_name }} is allocated but idle",
        f"A job has held this GPU for at least {IDLE_FOR} while it idled more than {IDLE_SHARE:.0%} of the time: "
        "paid for, doing nothing.",
        {_series(_ALLOCATED, _SICK): "1x50", _series(_IDLE, _SICK): "0.99x50"},
        {_series(_ALLOCATED, _WELL): "1x50", _series(_IDLE, _WELL): "0.2x50"},
        "40m",
        "29m",
        _SICK,
    ),
)


def alert_rules() -> str:
    """The rules file (Prometheus ``rule_files`` format)."""
    rules = [
        {
            "alert": a.name,
            "expr": a.expr,
            "for": a.for_,
            "labels": {"severity": a.severity},
            "annotations": {"summary": a.summary, "description": a.description},
        }
        for a in ALERTS
    ]
    return yaml.safe_dump({"groups": [{"name": GROUP, "rules": rules}]}, sort_keys=False, width=200)


def _expand(template: str, labels: dict[str, str]) -> str:
    """``{{ $labels.x }}`` filled in, as Prometheus does for the expected annotations."""
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], template)


def alert_tests() -> str:
    """``promtool test rules`` cases: each alert fires for its sick GPU, not for the healthy one, and not
    before its ``for`` has passed."""
    tests = []
    for a in ALERTS:
        series = {**a.firing, **a.healthy}
        tests.append(
            {
                "name": a.name,
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in series.items()],
                "alert_rule_test": [
                    {"eval_time": a.quiet_at, "alertname": a.name, "exp_alerts": []},
                    {
                        "eval_time": a.fires_at,
                        "alertname": a.name,
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": a.severity, **a.labels},
                                "exp_annotations": {
                                    "summary": _expand(a.summary, a.labels),
                                    "description": a.description,
                                },
                            }
                        ],
                    },
                ],
            }
        )
    return yaml.safe_dump(
        {"rule_files": [RULES_FILE], "evaluation_interval": EVALUATION_INTERVAL, "tests": tests},
        sort_keys=False,
        width=200,
    )
