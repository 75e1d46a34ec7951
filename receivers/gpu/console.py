"""A live text table of the GPUs, printed after each scrape (``factorylens gpu --console``)."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from factorylens.receivers.gpu.receiver import HostPipeline
from factorylens.receivers.gpu.scraper import Snapshot
from factorylens.registry import Attributes, Metrics

if TYPE_CHECKING:
    from factorylens.receivers.gpu.sim.cluster import SimulatedCluster

_THROTTLE_SHORT = {
    "power_cap": "PWR",
    "sw_thermal": "THERM",
    "hw_thermal": "HW-THERM",
    "hw_slowdown": "HW-SLOW",
    "hw_power_brake": "BRAKE",
    "sync_boost": "SYNC",
    "clocks_setting": "APP",
    "display_clocks": "DISP",
}
_HEADER = (
    f"{'host':<12} {'gpu':>3} {'util':>5} {'mem GiB':>13} {'power W':>11} {'temp':>6} {'SM MHz':>6} "
    f"{'throttle':<22} {'errors':<22} {'status':<9} job"
)


class ConsoleTable:
    def __init__(self, stream: TextIO = sys.stdout, cluster: SimulatedCluster | None = None) -> None:
        self._stream = stream
        self._cluster = cluster

    def __call__(self, results: list[tuple[HostPipeline, Snapshot]]) -> None:
        out = [self._title()]
        out.append(_HEADER)
        for pipeline, snapshot in results:
            out.extend(self._rows(pipeline.name, snapshot))
            errors = snapshot.get(Metrics.FACTORYLENS_RECEIVER_SCRAPE_ERRORS)
            lost = [f"{a['nvml.function']}:{a['factorylens.receiver.error']}×{int(v)}" for a, v in errors]
            if lost:
                out.append(f"{'':<12} receiver errors so far: {', '.join(lost[:6])}")
            if pipeline.events_seen:
                out.append(f"{'':<12} XID events received: {pipeline.events_seen}")
        self._stream.write("\n".join(out) + "\n\n")
        self._stream.flush()

    def _title(self) -> str:
        title = time.strftime("%H:%M:%S")
        if self._cluster is not None:
            elapsed = self._cluster.sim_elapsed()
            active = [f.describe() for f in self._cluster.scenario.faults if f.active(elapsed)]
            title += f"  simulated +{elapsed:,.0f}s  active faults: {'; '.join(active) if active else 'none'}"
        return "── " + title

    def _rows(self, host: str, snapshot: Snapshot) -> list[str]:
        gpus: dict[str, dict[str, Any]] = {}

        def row(attributes: Any) -> dict[str, Any]:
            return gpus.setdefault(
                attributes[Attributes.HW_ID],
                {
                    "index": attributes.get(Attributes.GPU_INDEX, "?"),
                    "mig": attributes.get(Attributes.HW_PARENT),
                    "throttle": [],
                    "errors": {},
                    "status": "?",
                    "job": "",
                },
            )

        for attributes, value in snapshot.get(Metrics.HW_GPU_UTILIZATION):
            if attributes.get(Attributes.HW_GPU_TASK) == "general":
                row(attributes)["util"] = value
        for metric, key in (
            (Metrics.HW_GPU_MEMORY_USAGE, "used"),
            (Metrics.HW_GPU_MEMORY_LIMIT, "total"),
            (Metrics.HW_POWER, "power"),
            (Metrics.HW_POWER_LIMIT, "limit"),
        ):
            for attributes, value in snapshot.get(metric):
                row(attributes)[key] = value
        for attributes, value in snapshot.get(Metrics.HW_TEMPERATURE):
            if attributes.get(Attributes.HW_SENSOR_LOCATION) == "die":
                row(attributes)["temp"] = value
        for attributes, value in snapshot.get(Metrics.HW_GPU_SPEED):
            if attributes.get(Attributes.HW_GPU_CLOCK_DOMAIN) == "sm":
                row(attributes)["sm"] = value
        for attributes, value in snapshot.get(Metrics.HW_GPU_CLOCK_EVENT_ACTIVE):
            reason = attributes[Attributes.HW_GPU_CLOCK_EVENT_REASON]
            if value and reason in _THROTTLE_SHORT:
                row(attributes)["throttle"].append(_THROTTLE_SHORT[reason])
        for attributes, value in snapshot.get(Metrics.HW_ERRORS):
            if value:
                kind = attributes[Attributes.ERROR_TYPE]
                if kind == "xid":
                    kind = f"xid{attributes['hw.gpu.xid.code']}"
                row(attributes)["errors"][kind] = int(value)
        for attributes, value in snapshot.get(Metrics.HW_STATUS):
            if value:
                row(attributes)["status"] = attributes[Attributes.HW_STATE]
        for attributes, _ in snapshot.get(Metrics.PROCESS_GPU_MEMORY_USAGE):
            r = row(attributes)
            r["job"] = ",".join(filter(None, {r["job"], str(attributes.get(Attributes.FACTORYLENS_JOB_ID, ""))}))

        lines = []
        for r in sorted(gpus.values(), key=lambda r: (r["mig"] is not None, str(r["index"]))):
            gib = 1 << 30
            mem = f"{r['used'] / gib:5.1f}/{r['total'] / gib:5.1f}" if "used" in r and "total" in r else "-"
            power = f"{r['power']:4.0f}/{r['limit']:4.0f}" if "power" in r and "limit" in r else "-"
            util = f"{r['util'] * 100:4.0f}%" if "util" in r else "-"
            temp = f"{r['temp']:4.0f}C" if "temp" in r else "-"
            sm = f"{r['sm'] / 1e6:6.0f}" if "sm" in r else "-"
            errors = " ".join(f"{k}={v}" for k, v in r["errors"].items()) or "-"
            gpu = f"{r['index']}" if r["mig"] is None else f"{r['index']}m"
            lines.append(
                f"{host:<12} {gpu:>3} {util:>5} {mem:>13} {power:>11} {temp:>6} {sm:>6} "
                f"{','.join(r['throttle']) or '-':<22} {errors:<22} {r['status']:<9} {r['job'] or '-'}"
            )
        if not lines:
            lines.append(f"{host:<12} (no GPUs visible: see receiver errors)")
        return lines
