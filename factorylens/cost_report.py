"""``factorylens cost``: GPU cost and ROI reports, recording rules and price catalogs.

A report covers a range (``--range 7d`` ending ``--end``) grouped by team, job, cluster, GPU model,
GPU or host, read from the RCA service (``--service``, its live store: the last day by default) or
from Prometheus (``--prometheus``, the hourly rollups of ``factorylens cost rules``: months). Both give
the same :class:`~factorylens.processors.cost.CostTotals`, printed as a table (with the top idle jobs,
the change from the week before, predictability per workload and a one-paragraph ROI summary), CSV
or JSON.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

WEEK_S = 7 * 24 * 3600
TOP_IDLE_JOBS = 10
UNALLOCATED = "(unallocated)"
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d|w)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# report group -> the Prometheus label of the recorded series
PROMETHEUS_GROUP_LABELS = {
    "team": "factorylens_team",
    "job": "factorylens_job_id",
    "cluster": "factorylens_cluster_name",
    "model": "hw_model",
    "gpu": "hw_id",
}
# figures that only unallocated time has (they belong to no job or team)
_UNALLOCATED_FIGURES = ("unallocated_h", "unallocated_energy_kwh", "unallocated_cost")


class ReportError(RuntimeError):
    """The report could not be made; the message says why (unreachable source, bad range)."""


def parse_duration(text: str) -> float:
    match = _DURATION.match(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 90m, 24h, 7d or 4w")
    seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    if not 0 < seconds <= 100 * 365 * 86400:
        raise argparse.ArgumentTypeError("the duration must be positive and at most 100 years")
    return seconds


def parse_time(text: str) -> float:
    """``now``, Unix seconds or an ISO 8601 time (UTC unless it says otherwise)."""
    if text == "now":
        return time.time()
    try:
        return _checked_time(float(text), text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not 'now', Unix seconds or an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return _checked_time(moment.timestamp(), text)


def _checked_time(seconds: float, text: str) -> float:
    if not math.isfinite(seconds) or not 0 <= seconds < 253_402_300_800:  # up to the year 9999
        raise argparse.ArgumentTypeError(f"{text!r} is not a time between 1970 and 9999")
    return seconds


@dataclass
class Report:
    """What a report shows, whichever source it came from."""

    start_s: float
    end_s: float
    group_by: str
    source: str
    currency: str = "USD"
    example_prices: bool = False
    catalog: str = ""
    groups: dict[str, Any] = field(default_factory=dict)  # group -> CostTotals
    previous: dict[str, Any] = field(default_factory=dict)  # the same range a week earlier
    jobs: dict[str, Any] = field(default_factory=dict)  # job -> CostTotals (top idle jobs)
    teams: dict[str, str] = field(default_factory=dict)  # job -> team
    predictability: dict[str, float] = field(default_factory=dict)
    unpriced_models: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def total(self, groups: Mapping[str, Any] | None = None) -> Any:
        from factorylens.processors.cost import CostTotals

        out = CostTotals()
        for totals in (self.groups if groups is None else groups).values():
            out.add(totals)
        return out


# ---- sources ------------------------------------------------------------------------------------
@dataclass
class _Answer:
    """One cost report answer of the RCA service, whichever way it was asked."""

    groups: dict[str, Any]  # group -> CostTotals
    teams: dict[str, str]
    currency: str
    example_prices: bool
    catalog: str
    unpriced_models: list[str]
    predictability: dict[str, float] = field(default_factory=dict)


def _assemble(
    fetch: Callable[[float, float, str], _Answer], start_s: float, end_s: float, group_by: str, source: str
) -> Report:
    """The range, the same range a week earlier, and the range by job (for the top idle jobs)."""
    current = fetch(start_s, end_s, group_by)
    jobs = current if group_by == "job" else fetch(start_s, end_s, "job")
    report = Report(
        start_s,
        end_s,
        group_by,
        source,
        currency=current.currency or "USD",
        example_prices=current.example_prices,
        catalog=current.catalog,
        groups=current.groups,
        previous=fetch(start_s - WEEK_S, end_s - WEEK_S, group_by).groups,
        jobs={k: v for k, v in jobs.groups.items() if k != UNALLOCATED},
        teams=jobs.teams,
        predictability=current.predictability,
        unpriced_models=current.unpriced_models,
    )
    if not current.catalog:
        report.notes.append("the service runs without a price catalog (--price-catalog): every GPU-hour is unpriced")
    return report


def from_service(
    target: str,
    start_s: float,
    end_s: float,
    group_by: str,
    *,
    token: str | None = None,
    tls_ca: str | None = None,
    timeout_s: float = 30.0,
) -> Report:
    """The report from the RCA service's store (its window: the retention, a day by default)."""
    import grpc

    from factorylens.rca_service.api.servicer import cost_totals_of
    from factorylens.rca_service.api.v1 import rca_pb2
    from factorylens.rca_service.client import connect

    try:
        stub = connect(target, token=token, tls_ca=tls_ca)
    except (OSError, ValueError) as exc:
        raise ReportError(f"cannot connect to the RCA service at {target}: {exc}") from None

    def fetch(start: float, end: float, by: str) -> _Answer:
        request = rca_pb2.GetCostReportRequest(
            start_time_unix_nano=int(max(0.0, start) * 1e9), end_time_unix_nano=int(end * 1e9), group_by=by
        )
        try:
            answer = stub.GetCostReport(request, timeout=timeout_s)
        except grpc.RpcError as exc:
            raise ReportError(f"the RCA service at {target} answered {exc.code().name}: {exc.details()}") from None
        return _Answer(
            {g.group: cost_totals_of(g) for g in answer.groups},
            {g.group: g.team for g in answer.groups if g.team},
            answer.currency,
            answer.example_prices,
            answer.catalog,
            list(answer.unpriced_models),
            dict(answer.predictability),
        )

    return _assemble(fetch, start_s, end_s, group_by, f"RCA service {target}")


def from_tracker(tracker: Any, store: Any, start_s: float, end_s: float, group_by: str, source: str) -> Report:
    """The report from an RCA service in this process (``service.cost``, ``service.store``)."""

    def fetch(start: float, end: float, by: str) -> _Answer:
        data = tracker.report(store, int(max(0.0, start) * 1e9), int(end * 1e9), by)
        catalog = data.catalog
        origin = catalog.origin if catalog.models else ""
        return _Answer(data.groups, data.teams, catalog.currency, catalog.example, origin, data.unpriced_models)

    return _assemble(fetch, start_s, end_s, group_by, source)


class PrometheusClient:
    """Instant queries over Prometheus's HTTP API (``/api/v1/query``)."""

    def __init__(self, url: str, *, token: str | None = None, timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s

    def query(self, promql: str, at_s: float) -> list[tuple[dict[str, str], float]]:
        body = urllib.parse.urlencode({"query": promql, "time": f"{at_s:.3f}"}).encode()
        request = urllib.request.Request(f"{self.url}/api/v1/query", data=body, method="POST")
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                payload = json.load(response)
        except urllib.error.HTTPError as exc:
            detail = exc.read(2048).decode(errors="replace")
            raise ReportError(f"Prometheus at {self.url} answered HTTP {exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ReportError(f"cannot reach Prometheus at {self.url}: {exc}") from None
        except ValueError as exc:  # not JSON: a proxy's or a login page's HTML
            raise ReportError(f"{self.url} did not answer as Prometheus's HTTP API does: {exc}") from None
        if not isinstance(payload, dict) or payload.get("status") != "success":
            error = payload.get("error", payload) if isinstance(payload, dict) else payload
            raise ReportError(f"Prometheus refused {promql!r}: {error}")
        try:
            return [(item["metric"], float(item["value"][1])) for item in payload["data"]["result"]]
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ReportError(f"{self.url} answered {promql!r} with something that is not a vector ({exc})") from None


def from_prometheus(
    client: PrometheusClient,
    start_s: float,
    end_s: float,
    group_by: str,
    *,
    catalog_path: str | None = None,
) -> Report:
    """The report from the hourly rollups ``factorylens cost rules`` records (any range Prometheus keeps)."""
    from factorylens.processors.cost import (
        FIGURE_LABEL,
        JOB_FIGURES,
        RECORDED,
        WORKLOAD,
        CatalogError,
        CostTotals,
        PriceCatalog,
        recorded_selector,
    )

    if group_by not in PROMETHEUS_GROUP_LABELS:
        raise ReportError(
            f"--group-by {group_by} needs the RCA service (--service): the recorded series carry "
            f"{', '.join(PROMETHEUS_GROUP_LABELS)}"
        )
    label = PROMETHEUS_GROUP_LABELS[group_by]
    # (start, end]: a rollup stamped at the start covers the hour before the range
    window = f"{max(1, round((end_s - start_s) * 1000) - 1)}ms"

    def summed(selector: str, by: str, offset_s: float = 0.0) -> str:
        offset = f" offset {round(offset_s)}s" if offset_s else ""  # the same range a week earlier
        return f"sum by ({by}) (sum_over_time({selector}[{window}]{offset}))"

    # (part, figure or "" when the figure is a label of the answer) -> (PromQL, the group's label)
    queries: dict[tuple[str, str], tuple[str, str]] = {}
    if group_by == "gpu":  # per GPU: the per-GPU rules, one figure each
        for figure in RECORDED:
            queries[("current", figure)] = (summed(recorded_selector(figure), label), label)
            queries[("previous", figure)] = (summed(recorded_selector(figure), label, WEEK_S), label)
    else:  # the workload family: every figure in one query
        by = f"{FIGURE_LABEL}, {label}"
        queries[("current", "")] = (summed(WORKLOAD, by), label)
        queries[("previous", "")] = (summed(WORKLOAD, by, WEEK_S), label)
    idle = "|".join(("allocated_h", "measured_h", "idle_h", "idle_cost", "gpu_time_cost", "energy_cost"))
    queries[("jobs", "")] = (
        summed(f'{WORKLOAD}{{{FIGURE_LABEL}=~"{idle}"}}', f"{FIGURE_LABEL}, factorylens_job_id, factorylens_team"),
        "factorylens_job_id",
    )
    queries[("predictability", "")] = (
        f"max by (factorylens_workload) (last_over_time(factorylens_baseline_predictability_ratio[{window}]))",
        "factorylens_workload",
    )
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = {key: pool.submit(client.query, promql, end_s) for key, (promql, _) in queries.items()}
        results = {key: future.result() for key, future in futures.items()}
    tables: dict[str, dict[str, Any]] = {"current": {}, "previous": {}, "jobs": {}}
    teams: dict[str, str] = {}
    predictability: dict[str, float] = {}
    known = set(RECORDED) | set(JOB_FIGURES)
    for (part, figure), rows in results.items():
        by = queries[(part, figure)][1]
        for labels, value in rows:
            if part == "predictability":
                predictability[labels.get(by, "")] = value
                continue
            name = figure or labels.get(FIGURE_LABEL, "")
            if name not in known or (name in JOB_FIGURES and group_by in ("cluster", "model")):
                continue  # a job's output has no cluster or model (its GPUs may span several)
            if part == "jobs" and labels.get("factorylens_team"):
                teams[labels.get(by, "")] = labels["factorylens_team"]
            group = labels.get(by, "")
            if not group:
                group = UNALLOCATED if name in _UNALLOCATED_FIGURES else f"(no {group_by})"
            totals = tables[part].setdefault(group, CostTotals())
            setattr(totals, name, getattr(totals, name) + value)
    try:
        catalog = PriceCatalog.from_file(catalog_path) if catalog_path else None
    except CatalogError as exc:
        raise ReportError(str(exc)) from None
    report = Report(
        start_s,
        end_s,
        group_by,
        f"Prometheus {client.url} (hourly rollups)",
        currency=catalog.currency if catalog else "USD",
        example_prices=bool(catalog and catalog.example),
        catalog=catalog.origin if catalog else "",
        groups=tables["current"],
        previous=tables["previous"],
        jobs={k: v for k, v in tables["jobs"].items() if not k.startswith("(")},
        teams=teams,
        predictability=predictability,
    )
    if not report.groups:
        report.notes.append(
            "no recorded cost series in this range: are `factorylens cost rules` loaded in Prometheus, and is "
            "the range at least an hour?"
        )
    unpriced = report.total().unpriced_h
    if unpriced > 0:
        report.notes.append(f"{unpriced:,.1f} GPU-hours are on GPUs the catalog does not price (not counted as cost)")
    if catalog is None:
        report.notes.append("currency assumed USD (pass --catalog, the catalog the rules were made from)")
    return report


# ---- rendering ----------------------------------------------------------------------------------
def _change(now: float, before: float) -> float:
    if not (math.isfinite(now) and math.isfinite(before)) or before == 0:
        return math.nan
    return now / before - 1


def _fmt(value: float, digits: int | None = None) -> str:
    """A number with ``digits`` decimals, or as many as a small value needs to show (0.004 h, 12.5 h)."""
    if not math.isfinite(value):
        return "-"
    if digits is None:
        size = abs(value)
        digits = 0 if size >= 1000 else 1 if size >= 100 else 2 if size >= 1 or size == 0 else 3
    return f"{value:,.{digits}f}"


def _pct(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{value:.0%}"


def _signed_pct(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{value:+.0%}"


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def rows(report: Report) -> list[dict[str, Any]]:
    """One flat record per group (and TOTAL), for CSV and JSON."""
    out = []
    ordered = sorted(report.groups.items(), key=lambda kv: (kv[0] == UNALLOCATED, -kv[1].total_cost, kv[0]))
    for group, totals in [*ordered, ("TOTAL", report.total())]:
        before = report.previous.get(group) if group != "TOTAL" else report.total(report.previous)
        record: dict[str, Any] = {report.group_by: group, **totals.as_dict()}
        if report.group_by == "job":
            record["team"] = report.teams.get(group, "")
        record["total_cost_change"] = _change(totals.total_cost, before.total_cost) if before else math.nan
        record["cost_per_1m_tokens_change"] = (
            _change(totals.cost_per_1m_tokens, before.cost_per_1m_tokens) if before else math.nan
        )
        out.append(record)
    return out


def roi_summary(report: Report) -> str:
    """One paragraph: who spent what on how many GPU-hours, how much idle, cost per unit of work."""
    total = report.total()
    cur = report.currency
    if total.allocated_h + total.unallocated_h == 0:
        return "No GPU usage was recorded in this range."
    parts = [
        f"{_fmt(total.allocated_h + total.unallocated_h)} GPU-hours cost {cur} {_fmt(total.total_cost, 2)}"
        f" ({_fmt(total.allocated_h)} allocated, {_pct(total.idle_ratio)} of them idle; "
        f"{_fmt(total.unallocated_h)} unallocated, {cur} {_fmt(total.unallocated_cost, 2)})."
    ]
    spenders = sorted(
        ((g, t) for g, t in report.groups.items() if g != UNALLOCATED and t.job_cost > 0),
        key=lambda kv: -kv[1].job_cost,
    )
    for group, t in spenders[:3]:
        sentence = (
            f"{report.group_by.capitalize()} {group} spent {cur} {_fmt(t.job_cost, 2)} on "
            f"{_fmt(t.allocated_h)} GPU-hours, {_pct(t.idle_ratio)} idle"
        )
        before = report.previous.get(group)
        if math.isfinite(t.cost_per_1m_tokens):
            sentence += f"; cost per 1M tokens {cur} {_fmt(t.cost_per_1m_tokens, 2)}"
            change = _change(t.cost_per_1m_tokens, before.cost_per_1m_tokens) if before else math.nan
            if math.isfinite(change):
                sentence += f", {'down' if change < 0 else 'up'} {abs(change):.0%} on the week before"
        elif math.isfinite(t.cost_per_1k_samples):
            sentence += f"; cost per 1k samples {cur} {_fmt(t.cost_per_1k_samples, 3)}"
        if math.isfinite(t.efficiency):
            sentence += f"; efficiency {_pct(t.efficiency)}"
        parts.append(sentence + ".")
    idle_jobs = sorted(report.jobs.items(), key=lambda kv: -kv[1].idle_cost)
    if idle_jobs and idle_jobs[0][1].idle_cost > 0:
        job, t = idle_jobs[0]
        parts.append(f"The most idle-but-allocated job is {job}: {cur} {_fmt(t.idle_cost, 2)} of idle GPU time.")
    if total.unpriced_h > 0:
        parts.append(f"{_fmt(total.unpriced_h)} GPU-hours are unpriced ({', '.join(report.unpriced_models) or '?'}).")
    if report.example_prices:
        parts.append("These are EXAMPLE list prices, not yours.")
    return " ".join(parts)


def render_table(report: Report) -> str:
    cur = report.currency
    out = io.StringIO()
    prices = "EXAMPLE PRICES" if report.example_prices else "prices"
    catalog = f", {prices}: {report.catalog}" if report.catalog else ""
    out.write(
        f"GPU cost by {report.group_by}, {_when(report.start_s)} to {_when(report.end_s)} "
        f"(source: {report.source}{catalog})\n\n"
    )
    header = [
        report.group_by,
        "GPU-h",
        "active",
        "idle",
        "unalloc",
        "kWh",
        f"cost {cur}",
        f"idle {cur}",
        f"{cur}/1M tok",
        f"{cur}/1k smp",
        "effic.",
        "vs wk-1",
    ]
    records = rows(report)
    lines = [header]
    for r in records:
        lines.append(
            [
                str(r[report.group_by])[:28],
                _fmt(r["allocated_h"]),
                _fmt(r["active_h"]),
                _pct(r["idle_ratio"]),
                _fmt(r["unallocated_h"]),
                _fmt(r["energy_kwh"] + r["unallocated_energy_kwh"]),
                _fmt(r["total_cost"], 2),
                _fmt(r["idle_cost"], 2),
                _fmt(r["cost_per_1m_tokens"], 3),
                _fmt(r["cost_per_1k_samples"], 3),
                _pct(r["efficiency"]),
                _signed_pct(r["total_cost_change"]),
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for n, line in enumerate(lines):
        if n == len(lines) - 1:
            out.write("  ".join("-" * w for w in widths) + "\n")
        cells = [line[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True)]
        out.write("  ".join(cells).rstrip() + "\n")
    idle = sorted(((j, t) for j, t in report.jobs.items() if t.idle_h > 0), key=lambda kv: -kv[1].idle_cost)
    if idle:
        out.write(f"\nTop {min(TOP_IDLE_JOBS, len(idle))} idle-but-allocated jobs\n")
        for job, t in idle[:TOP_IDLE_JOBS]:
            team = report.teams.get(job, "")
            out.write(
                f"  {job[:32]:32}  {team[:20]:20}  {_fmt(t.idle_h):>8} idle GPU-h of {_fmt(t.measured_h):>8}"
                f" ({_pct(t.idle_ratio):>4})  {cur} {_fmt(t.idle_cost, 2):>10}\n"
            )
    if report.predictability:
        ranked = sorted(report.predictability.items(), key=lambda kv: kv[1])
        shown = ", ".join(f"{w} {v:.2f}" for w, v in ranked[:8])
        out.write(f"\nPredictability per workload (0-1, from the seasonal baselines; least first): {shown}\n")
    out.write("\n" + roi_summary(report) + "\n")
    for note in report.notes:
        out.write(f"note: {note}\n")
    return out.getvalue()


def render(report: Report, fmt: str) -> str:
    if fmt == "table":
        return render_table(report)
    records = rows(report)
    if fmt == "json":
        clean = [
            {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()} for r in records
        ]
        document = {
            "start": _when(report.start_s),
            "end": _when(report.end_s),
            "group_by": report.group_by,
            "source": report.source,
            "currency": report.currency,
            "example_prices": report.example_prices,
            "groups": clean,
            "top_idle_jobs": [
                {"job": j, "team": report.teams.get(j, ""), "idle_gpu_hours": t.idle_h, "idle_cost": t.idle_cost}
                for j, t in sorted(report.jobs.items(), key=lambda kv: -kv[1].idle_cost)[:TOP_IDLE_JOBS]
                if t.idle_h > 0
            ],
            "predictability": report.predictability,
            "unpriced_models": report.unpriced_models,
            "summary": roi_summary(report),
            "notes": report.notes,
        }
        return json.dumps(document, indent=1) + "\n"
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(records[0]) if records else [report.group_by])
    writer.writeheader()
    for record in records:
        writer.writerow({k: ("" if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()})
    return buffer.getvalue()


# ---- CLI ----------------------------------------------------------------------------------------
def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``factorylens cost`` (report, rules, catalog)."""
    from factorylens.processors.cost import GROUPS

    p = sub.add_parser(
        "cost",
        help="GPU cost and ROI report; Prometheus recording rules (cost rules); price catalogs (cost catalog)",
        description="GPU cost and ROI from the GPU receiver's usage counters and a price catalog (docs/cost.md). "
        "Without a subcommand: a report for --range ending --end, grouped by --group-by: GPU-hours (allocated, "
        "active, idle-but-allocated, unallocated), energy, cost, cost per 1M tokens and per 1k samples, "
        "efficiency, the change from the week before, the top idle-but-allocated jobs, predictability per "
        "workload and a one-paragraph ROI summary, read from the RCA service or from Prometheus's hourly "
        "rollups. 'cost rules' writes those recording rules; 'cost catalog' prints the example catalog or "
        "checks yours.",
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--service",
        metavar="HOST:PORT",
        help="read the RCA service; it covers its retention, a day by default (default 127.0.0.1:4317)",
    )
    source.add_argument(
        "--prometheus",
        metavar="URL",
        help="read Prometheus's hourly rollups (factorylens cost rules), e.g. http://prometheus:9090",
    )
    p.add_argument(
        "--range",
        type=parse_duration,
        default=parse_duration("1d"),
        metavar="DURATION",
        dest="range_s",
        help="length of the report, e.g. 24h, 7d, 30d (default 1d)",
    )
    p.add_argument(
        "--end",
        type=parse_time,
        default="now",
        metavar="TIME",
        dest="end_s",
        help="end of the range: now, Unix seconds or ISO 8601 (default now)",
    )
    p.add_argument("--group-by", choices=GROUPS, default="team", help="(default %(default)s; host needs --service)")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument(
        "--catalog", metavar="YAML", help="with --prometheus: the catalog the rules were made from (currency, example)"
    )
    p.add_argument("--bearer-token-file", metavar="FILE", help="bearer token for the service or Prometheus")
    p.add_argument("--tls-ca", metavar="PEM", help="with --service: connect with TLS, trusting this CA")
    p.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        dest="timeout_s",
        help="deadline of each request (default %(default)s)",
    )
    p.set_defaults(func=_run_report)
    csub = p.add_subparsers(dest="cost_command", metavar="COMMAND")
    rules = csub.add_parser(
        "rules",
        help="write the Prometheus recording rules (hourly cost rollups) for a catalog",
        description="Prometheus recording rules that keep the cost figures per hour and per GPU and workload, "
        "from the registry's names and the catalog's GPU-name patterns. Prices are not in the rules: they "
        "join the factorylens_gpu_price_per_hour series the RCA service serves from the same catalog. Check "
        "the output with 'promtool check rules'.",
    )
    rules.add_argument("--catalog", required=True, metavar="YAML", help="the price catalog")
    rules.add_argument("-o", "--output", metavar="FILE", help="write here (default: standard output)")
    rules.set_defaults(func=_run_rules)
    cat = csub.add_parser(
        "catalog",
        help="print the example price catalog, or check one",
        description="Without --check: print the shipped EXAMPLE catalog (public list prices with their dates; "
        "replace them with yours). With --check FILE: validate a catalog and print the price of every model "
        "and override.",
    )
    cat.add_argument("--check", metavar="YAML", help="validate this catalog and list its prices")
    cat.set_defaults(func=_run_catalog)


def _token(path: str | None) -> str | None:
    if not path:
        return None
    try:
        return Path(path).read_text().strip() or None
    except OSError as exc:
        raise ReportError(f"--bearer-token-file {path}: {exc.strerror or exc}") from None


def _run_report(args: argparse.Namespace) -> int:
    end_s = args.end_s if isinstance(args.end_s, float) else parse_time(args.end_s)
    start_s = end_s - args.range_s
    try:
        token = _token(args.bearer_token_file)
        fetch: Callable[[], Report]
        if args.prometheus:
            client = PrometheusClient(args.prometheus, token=token, timeout_s=args.timeout_s)

            def fetch() -> Report:
                return from_prometheus(client, start_s, end_s, args.group_by, catalog_path=args.catalog)

        else:
            target = args.service or "127.0.0.1:4317"

            def fetch() -> Report:
                return from_service(
                    target, start_s, end_s, args.group_by, token=token, tls_ca=args.tls_ca, timeout_s=args.timeout_s
                )

        report = fetch()
    except ReportError as exc:
        print(f"factorylens cost: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(render(report, args.format))
    return 0


def _run_rules(args: argparse.Namespace) -> int:
    from factorylens.processors.cost import CatalogError, PriceCatalog, rules_yaml

    try:
        text = rules_yaml(PriceCatalog.from_file(args.catalog))
    except CatalogError as exc:
        print(f"factorylens cost rules: {exc}", file=sys.stderr)
        return 2
    if args.output:
        try:
            Path(args.output).write_text(text)
        except OSError as exc:
            print(f"factorylens cost rules: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
            return 2
    else:
        sys.stdout.write(text)
    return 0


def example_catalog_path() -> Path:
    """The shipped EXAMPLE catalog (list prices with their dates)."""
    from importlib import resources

    return Path(str(resources.files("factorylens.processors.cost").joinpath("example-catalog.yaml")))


def example_catalog_text() -> str:
    return example_catalog_path().read_text()


def _run_catalog(args: argparse.Namespace) -> int:
    from factorylens.processors.cost import CatalogError, PriceCatalog

    if not args.check:
        sys.stdout.write(example_catalog_text())
        return 0
    try:
        catalog = PriceCatalog.from_file(args.check)
    except CatalogError as exc:
        print(f"factorylens cost catalog: {exc}", file=sys.stderr)
        return 2
    label = " (EXAMPLE prices)" if catalog.example else ""
    print(f"{args.check}: {len(catalog.models)} models, {len(catalog.prices)} prices in {catalog.currency}{label}")
    for price in catalog.prices:
        scope = ", ".join(f"{k} {v}" for k, v in (("cluster", price.cluster), ("team", price.team)) if v) or "default"
        energy = f", energy {price.energy_per_kwh:.4f}/kWh" if price.energy_per_kwh else ", power included"
        contract = f", contract {price.contract}" if price.contract else ""
        print(f"  {price.model:12} {scope:28} {price.per_gpu_hour:9.4f}/GPU-h ({price.basis}{energy}{contract})")
    return 0
