"""The demo's report: one self-contained HTML file (inline SVG, no scripts, no network) with each
incident's KPI against its baseline band and the onset marked, its top causes' series, whether it
named the injected fault, and the cost per team. Read from the RCA service's API before the stack
stops, so it shows what the service itself saw."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

if TYPE_CHECKING:
    from factorylens.demo.view import Follower, Outcome

WIDTH, HEIGHT, PAD = 540, 170, 36  # two charts side by side on a 1200-pixel page
BEFORE_S, AFTER_S = 600.0, 300.0  # what a plot shows around an incident's onset and its end
CAUSES_PLOTTED = 2
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")


def _finite(values: Sequence[float]) -> list[float]:
    return [v for v in values if math.isfinite(v)]


def svg_chart(
    title: str,
    times_s: Sequence[float],
    lines: Sequence[tuple[str, Sequence[float]]],
    band: tuple[Sequence[float], Sequence[float]] | None = None,
    marker_s: float | None = None,
) -> str:
    """A line chart (times in seconds relative to the marker) with an optional band and a vertical
    marker at the onset."""
    everything = [v for _, ys in lines for v in _finite(ys)]
    if band is not None:
        everything += _finite(band[0]) + _finite(band[1])
    if not times_s or not everything:
        return f'<p class="empty">{html.escape(title)}: no data</p>'
    x0, x1 = min(times_s), max(times_s)
    # the scale follows the bulk of the data, so a few checkpoint spikes do not flatten the rest (they
    # are drawn at the top edge)
    ordered = sorted(everything)
    y0, y1 = ordered[0], ordered[-1]
    bulk = ordered[int(0.97 * (len(ordered) - 1))]
    if y0 >= 0 and bulk > 0:
        y1 = min(y1, 1.5 * bulk)
    if y1 - y0 < 1e-12:
        y0, y1 = y0 - 1, y1 + 1
    x1 = x1 if x1 > x0 else x0 + 1

    def x(t: float) -> float:
        return PAD + (t - x0) / (x1 - x0) * (WIDTH - 2 * PAD)

    def y(v: float) -> float:
        return HEIGHT - PAD + (min(v, y1) - y0) / (y1 - y0) * (2 * PAD - HEIGHT)

    def path(ys: Sequence[float]) -> str:
        parts, pen = [], "M"
        for t, v in zip(times_s, ys, strict=False):
            if not math.isfinite(v):
                pen = "M"
                continue
            parts.append(f"{pen}{x(t):.1f},{y(v):.1f}")
            pen = "L"
        return " ".join(parts)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" role="img">',
        f"<title>{html.escape(title)}</title>",
        f'<text x="{PAD}" y="14" class="t">{html.escape(_short(title))}</text>',
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" class="axis"/>',
        f'<text x="2" y="{y(y1) + 4:.1f}" class="l">{y1:.3g}</text>',
        f'<text x="2" y="{y(y0) + 4:.1f}" class="l">{y0:.3g}</text>',
        f'<text x="{PAD}" y="{HEIGHT - 8}" class="l">{x0 / 60:+.0f} min</text>',
        f'<text x="{WIDTH - PAD - 40}" y="{HEIGHT - 8}" class="l">{x1 / 60:+.0f} min</text>',
    ]
    if band is not None:
        lower, upper = band
        points = [(t, lo, hi) for t, lo, hi in zip(times_s, lower, upper, strict=False) if math.isfinite(lo + hi)]
        if points:
            top = " ".join(f"{x(t):.1f},{y(hi):.1f}" for t, _, hi in points)
            bottom = " ".join(f"{x(t):.1f},{y(lo):.1f}" for t, lo, _ in reversed(points))
            out.append(f'<polygon points="{top} {bottom}" class="band"/>')
    for (label, ys), colour in zip(lines, COLOURS, strict=False):
        out.append(
            f'<path d="{path(ys)}" fill="none" stroke="{colour}" stroke-width="1.5"><title>{label}</title></path>'
        )
    if marker_s is not None and x0 <= marker_s <= x1:
        out.append(
            f'<line x1="{x(marker_s):.1f}" y1="{PAD / 2}" x2="{x(marker_s):.1f}" y2="{HEIGHT - PAD}" class="onset"/>'
        )
        out.append(f'<text x="{x(marker_s) + 3:.1f}" y="{PAD / 2 + 8}" class="l">onset</text>')
    legend = " ".join(
        f'<tspan fill="{colour}">■ {html.escape(label)}</tspan>'
        for (label, _), colour in zip(lines, COLOURS, strict=False)
    )
    out.append(f'<text x="{PAD}" y="{HEIGHT - 20}" class="l">{legend}</text>')
    out.append("</svg>")
    return "".join(out)


def _short(text: str, limit: int = 72) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def svg_bars(title: str, rows: Sequence[tuple[str, float, float]], currency: str) -> str:
    """Horizontal bars per team: cost, and the idle part of it darker."""
    if not rows:
        return f'<p class="empty">{html.escape(title)}: no data</p>'
    top = max(cost for _, cost, _ in rows) or 1.0
    height = 30 + 26 * len(rows)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" role="img">',
        f'<text x="4" y="14" class="t">{html.escape(title)}</text>',
    ]
    for i, (team, cost, idle) in enumerate(rows):
        yy = 26 + 26 * i
        w = (WIDTH - 260) * cost / top
        wi = (WIDTH - 260) * min(idle, cost) / top
        out.append(f'<text x="4" y="{yy + 14}" class="l">{html.escape(team)}</text>')
        out.append(f'<rect x="150" y="{yy}" width="{w:.1f}" height="18" fill="#1f77b4"/>')
        out.append(f'<rect x="150" y="{yy}" width="{wi:.1f}" height="18" fill="#ff7f0e"/>')
        out.append(f'<text x="{156 + w:.1f}" y="{yy + 14}" class="l">{cost:.2f} {currency} (idle {idle:.2f})</text>')
    out.append("</svg>")
    return "".join(out)


CSS = """
body{font-family:sans-serif;margin:24px;max-width:1180px;color:#222}
h1{font-size:22px}h2{font-size:18px;margin-top:28px}
.ok{color:#2a7d2a;font-weight:bold}.bad{color:#c0392b;font-weight:bold}.dim{color:#777}
table{border-collapse:collapse}td,th{border-bottom:1px solid #ddd;padding:3px 8px;text-align:left;font-size:13px}
.incident{border:1px solid #ccc;border-radius:6px;padding:8px 12px;margin:12px 0}
.charts{display:flex;flex-wrap:wrap;gap:8px}
svg .t{font-size:12px;font-weight:bold}svg .l{font-size:10px;fill:#444}
svg .axis{stroke:#999}svg .band{fill:#9ecae1;opacity:.5}svg .onset{stroke:#c0392b;stroke-dasharray:4 3}
"""


class ReportData:
    """What the report needs from the service, fetched while it still runs."""

    def __init__(self, follower: Follower) -> None:
        self.follower = follower

    def baseline(self, series_id: str, start_s: float, end_s: float) -> Any | None:
        from factorylens.rca_service.api.v1 import rca_pb2

        request = rca_pb2.GetBaselineRequest(
            series_id=series_id, start_time_unix_nano=int(start_s * 1e9), end_time_unix_nano=int(end_s * 1e9)
        )
        try:
            return self.follower.stub.GetBaseline(request, timeout=30.0)
        except grpc.RpcError:
            return None

    def series(self, series_id: str, start_s: float, end_s: float) -> Any | None:
        from factorylens.rca_service.api.v1 import rca_pb2

        request = rca_pb2.QuerySeriesRequest(
            series_ids=[series_id], start_time_unix_nano=int(start_s * 1e9), end_time_unix_nano=int(end_s * 1e9)
        )
        try:
            answer = self.follower.stub.QuerySeries(request, timeout=30.0)
        except grpc.RpcError:
            return None
        return answer.series[0] if answer.series else None


def incident_section(data: ReportData, outcome: Outcome, incident: Any) -> str:
    world = data.follower.world
    onset = incident.onset_time_unix_nano / 1e9
    end = (incident.resolved_time_unix_nano or incident.updated_time_unix_nano or incident.onset_time_unix_nano) / 1e9
    start_s, end_s = onset - BEFORE_S, max(end, onset) + AFTER_S
    fault = next((f for f in outcome.faults if f.incident is not None and f.incident.id == incident.id), None)
    if fault is not None:
        verdict = f'<span class="ok">matched the injected fault: {html.escape(fault.planned.what)}</span>'
    else:
        verdict = '<span class="bad">no injected fault explains it</span>'
    charts = []
    baseline = data.baseline(incident.kpi_series_id, start_s, end_s) if incident.kpi_series_id else None
    if baseline is not None and len(baseline.time_unix_nano):
        times = [t / 1e9 - onset for t in baseline.time_unix_nano]
        charts.append(
            svg_chart(
                f"KPI: {baseline.info.metric} ({baseline.info.entity})",
                times,
                [("observed", list(baseline.observed)), ("expected", list(baseline.expected))],
                (list(baseline.lower), list(baseline.upper)),
                0.0,
            )
        )
    for cause in incident.causes[:CAUSES_PLOTTED]:
        series = data.series(cause.series_id, start_s, end_s) if cause.series_id else None
        if series is not None and len(series.time_unix_nano):
            times = [t / 1e9 - onset for t in series.time_unix_nano]
            name = world.name_of(cause.entity)
            charts.append(
                svg_chart(
                    f"#{cause.rank} {name}: {cause.signal}", times, [(series.view, list(series.values))], None, 0.0
                )
            )
    causes = "".join(
        f"<tr><td>#{c.rank}</td><td>{c.score:.2f}</td><td>{html.escape(c.domain)}</td>"
        f"<td>{html.escape(world.name_of(c.entity))}</td><td>{html.escape(c.signal)}</td></tr>"
        for c in incident.causes[:5]
    )
    explanation = html.escape(incident.causes[0].explanation) if incident.causes else ""
    return (
        f'<div class="incident"><h3>{html.escape(incident.id)} [{html.escape(incident.state)}] '
        f"{html.escape(incident.title)}</h3><p>{verdict}</p><p>{explanation}</p>"
        f"<table><tr><th>rank</th><th>score</th><th>domain</th><th>cause</th><th>signal</th></tr>{causes}</table>"
        f'<div class="charts">{"".join(charts)}</div></div>'
    )


def render(outcome: Outcome, follower: Follower) -> str:
    from factorylens.demo.view import cost_lines

    data = ReportData(follower)
    world = follower.world
    faults = "".join(
        f"<tr><td>{f.planned.onset_s / 60:.1f} min</td><td>{html.escape(f.planned.domain)}</td>"
        f"<td>{html.escape(f.planned.name)}</td><td>{html.escape(f.planned.what)}</td><td>"
        + (
            f'<span class="ok">top cause of {html.escape(f.incident.id)}</span>'
            if f.incident is not None
            else '<span class="bad">missed</span>'
        )
        + "</td></tr>"
        for f in outcome.faults
    )
    performance = [i for i in outcome.incidents if i.kind != "waste"]
    incidents = "".join(
        incident_section(data, outcome, i) for i in sorted(performance, key=lambda i: i.onset_time_unix_nano)
    )
    waste = "".join(
        f"<tr><td>{html.escape(i.id)}</td><td>{html.escape(i.state)}</td><td>{html.escape(i.title)}</td>"
        f"<td>{html.escape(i.causes[0].explanation if i.causes else '')}</td></tr>"
        for i in outcome.waste
    )
    cost = ""
    if outcome.cost is not None:
        rows = sorted(
            ((team, t.total_cost, t.idle_cost) for team, t in outcome.cost.groups.items()), key=lambda r: -r[1]
        )
        cost = svg_bars("cost per team (orange: idle but allocated)", rows, outcome.cost.currency)
    size = f"{len(world.run.cluster.hosts)} hosts × {len(world.run.cluster.hosts[0].gpus)} GPUs"
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>factorylens demo report</title>"
        f"<style>{CSS}</style></head><body>"
        f"<h1>factorylens demo: {size}, {outcome.sim_s / 60:.0f} simulated minutes</h1>"
        f"<p>{outcome.matched} of {len(outcome.faults)} injected faults were the top cause of their incident; "
        f"{len(outcome.unexplained)} incident(s) no injected fault explains; {len(outcome.waste)} waste finding(s).</p>"
        "<h2>Injected faults</h2><table><tr><th>onset</th><th>domain</th><th>fault</th><th>what</th><th>found</th></tr>"
        f"{faults}</table><h2>Incidents</h2>{incidents}"
        "<h2>Waste: GPUs held idle</h2><table><tr><th>id</th><th>state</th><th>finding</th><th>why</th></tr>"
        f"{waste}</table><h2>Cost</h2>{cost}"
        f"<pre>{html.escape(chr(10).join(cost_lines(outcome)))}</pre></body></html>"
    )


def write_report(outcome: Outcome, follower: Follower, directory: Path) -> Path:
    """Write ``index.html`` into ``directory``; its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "index.html"
    path.write_text(render(outcome, follower), encoding="utf-8")
    return path
