"""Draw the generated dashboards from a Prometheus into PNGs, laid out like Grafana's grid.

For a look at the dashboards where no Grafana runs (CI, a laptop, a review): every panel's queries
are run against Prometheus' HTTP API with the variables on "All", and drawn with matplotlib at its
grid position, with its title, unit, legend and thresholds. Not a Grafana replacement: it draws
time series, stats, heatmaps, tables and state timelines well enough to judge a dashboard by.
"""

from __future__ import annotations

import json
import math
import re
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._queries import expand

GRID_COLUMNS = 24
INCH_PER_COLUMN = 0.9
INCH_PER_ROW = 0.42  # Grafana's grid row is 30 px against a column of about 64 px
MAX_POINTS = 240  # per series, like a panel's max data points
QUERY_THREADS = 8
MAX_LEGEND = 8
LEGEND_SHARE = 0.3  # of a time series panel's height
AXIS_LABELS_INCH = 0.65  # room left of a plot for its value axis' labels
GAP_STEPS = 3  # no samples for this many steps: a gap in the line
MAX_TABLE_ROWS = 10
NO_DATA = "No data"
_THRESHOLD_COLOURS = {"green": "#56a64b", "orange": "#ff9830", "red": "#e02f44", "yellow": "#fade2a"}
_PALETTE = ["#7eb26d", "#eab839", "#6ed0e0", "#ef843c", "#e24d42", "#1f78c1", "#ba43a9", "#705da0", "#508642"]


@dataclass(frozen=True)
class Rendered:
    path: Path
    panels: int
    empty: list[str]  # titles of panels that drew no data


class Prometheus:
    """The two query endpoints, over plain HTTP(S)."""

    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def _get(self, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
        with urllib.request.urlopen(
            f"{self.url}{path}?{urllib.parse.urlencode(params)}", timeout=self.timeout_s
        ) as response:
            body = json.loads(response.read())
        if body.get("status") != "success":
            raise RuntimeError(f"Prometheus: {body.get('error', body)}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def instant(self, expr: str, at_s: float) -> list[dict[str, Any]]:
        return self._get("/api/v1/query", {"query": expr, "time": f"{at_s:.3f}"})

    def range(self, expr: str, start_s: float, end_s: float, step_s: float) -> list[dict[str, Any]]:
        params = {"query": expr, "start": f"{start_s:.3f}", "end": f"{end_s:.3f}", "step": f"{step_s:g}"}
        return self._get("/api/v1/query_range", params)


# -- units ---------------------------------------------------------------------------------------------

_SCALED = {
    "bytes": (1024.0, ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]),
    "Bps": (1000.0, ["B/s", "kB/s", "MB/s", "GB/s", "TB/s"]),
    "hertz": (1000.0, ["Hz", "kHz", "MHz", "GHz"]),
    "watt": (1000.0, ["W", "kW", "MW"]),
}
_SUFFIX = {"celsius": "°C", "h": " h", "kwatth": " kWh", "ops": " ops/s", "iops": " io/s", "pps": " p/s"}
_SUFFIX |= {"reqps": " req/s"}


def format_value(value: float, unit: str) -> str:
    """A value as Grafana shows it in ``unit`` (the units the dashboards use; others as plain numbers)."""
    if value is None or math.isnan(value):
        return "–"
    if unit == "percentunit":
        return f"{value * 100:.1f}%"
    if unit == "currencyUSD":
        return f"${value:,.2f}"
    if unit == "s":
        return f"{value * 1000:.0f} ms" if abs(value) < 1 else f"{value:.2f} s"
    if unit in _SCALED:
        base, names = _SCALED[unit]
        i = 0
        while abs(value) >= base and i < len(names) - 1:
            value, i = value / base, i + 1
        return f"{value:.3g} {names[i]}"
    return _short(value) + _SUFFIX.get(unit, "")


def _short(value: float) -> str:
    for factor, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:.3g}"


def legend(template: str, labels: dict[str, str]) -> str:
    """Grafana's ``{{label}}`` legend, or the label set when there is no template."""
    if template:
        return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template).strip() or "value"
    shown = {k: v for k, v in labels.items() if k != "__name__"}
    return ", ".join(f"{k}={v}" for k, v in shown.items()) or "value"


# -- drawing -------------------------------------------------------------------------------------------


def _thresholds(panel: dict[str, Any]) -> list[tuple[float | None, str]]:
    steps = panel["fieldConfig"]["defaults"].get("thresholds", {}).get("steps", [])
    return [(s.get("value"), _THRESHOLD_COLOURS.get(s["color"], s["color"])) for s in steps]


def _colour_for(value: float, steps: list[tuple[float | None, str]]) -> str:
    colour = steps[0][1] if steps else _PALETTE[0]
    for threshold, step_colour in steps:
        if threshold is None or value >= threshold:
            colour = step_colour
    return colour


def _series(results: list[tuple[dict[str, Any], list[dict[str, Any]]]]) -> list[tuple[str, list[float], list[float]]]:
    """(name, times, values) of every series of every query of a panel."""
    out = []
    for target, result in results:
        for found in result:
            points = found.get("values") or [found["value"]]
            times = [float(t) for t, _ in points]
            values = [float(v) for _, v in points]
            if any(not math.isnan(v) for v in values):
                out.append((legend(target.get("legendFormat", ""), found["metric"]), times, values))
    return out


def _draw(
    ax: Any, panel: dict[str, Any], results: list[tuple[dict[str, Any], list[dict[str, Any]]]], start_s: float,
    end_s: float,
) -> bool:  # fmt: skip
    """Draw one panel into ``ax``; False when it has no data."""
    import matplotlib.dates as mdates
    from matplotlib.ticker import FuncFormatter

    unit = panel["fieldConfig"]["defaults"].get("unit", "none")
    kind = panel["type"]
    series = _series(results)
    ax.set_title(f"{panel['title']}  [{unit}]", fontsize=9, loc="left", color="#d8d9da")
    if not series:
        ax.text(0.5, 0.5, NO_DATA, ha="center", va="center", fontsize=11, color="#8e8e8e", transform=ax.transAxes)
        ax.set_axis_off()
        return False
    steps = _thresholds(panel)
    if kind == "stat":
        value = series[0][2][-1]
        ax.text(
            0.5, 0.42, format_value(value, unit), ha="center", va="center", fontsize=20, weight="bold",
            color=_colour_for(value, steps), transform=ax.transAxes,
        )  # fmt: skip
        ax.set_axis_off()
        return True
    if kind == "table":
        _table(ax, results, unit)
        return True
    if kind in ("heatmap", "state-timeline"):
        _matrix(ax, series, unit, steps if kind == "state-timeline" else [], panel)
        return True
    ax.set_xlim(_datetime(start_s), _datetime(end_s))
    gap_s = GAP_STEPS * max(math.ceil((end_s - start_s) / MAX_POINTS), 1)
    for i, (name, times, values) in enumerate(series[:40]):
        xs, ys = _broken(times, values, gap_s)
        ax.plot(
            [_datetime(t) for t in xs], ys, linewidth=1,
            color=_PALETTE[i % len(_PALETTE)], label=name if i < MAX_LEGEND else None,
        )  # fmt: skip
    low, high = ax.get_ylim()
    for threshold, colour in steps:  # those in the data's range: a far threshold would flatten the lines
        if threshold is not None and low <= threshold <= high:
            ax.axhline(threshold, color=colour, linestyle="--", linewidth=0.8)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: format_value(v, unit)))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
    ax.tick_params(labelsize=7, colors="#b0b0b0")
    more = f"+{len(series) - MAX_LEGEND} more series" if len(series) > MAX_LEGEND else None
    # below the plot, as Grafana's bottom legend (the panel's box leaves room for it)
    shown = ax.legend(
        fontsize=6, loc="upper left", bbox_to_anchor=(0, -0.12), ncol=2, frameon=False, labelcolor="#d8d9da",
        title=more, title_fontsize=6, borderaxespad=0,
    )  # fmt: skip
    shown.get_title().set_color("#8e8e8e")
    ax.grid(color="#333333", linewidth=0.5)
    return True


def _broken(times: list[float], values: list[float], gap_s: float) -> tuple[list[float], list[float]]:
    """The points with a NaN where the series had no samples for longer than ``gap_s``, as Grafana
    leaves a gap rather than drawing a line across it."""
    xs: list[float] = []
    ys: list[float] = []
    for i, (t, v) in enumerate(zip(times, values, strict=True)):
        if i and t - times[i - 1] > gap_s:
            xs.append((t + times[i - 1]) / 2)
            ys.append(math.nan)
        xs.append(t)
        ys.append(v)
    return xs, ys


def _datetime(t: float) -> Any:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(t, tz=timezone.utc)


def _table(ax: Any, results: list[tuple[dict[str, Any], list[dict[str, Any]]]], unit: str) -> None:
    rows = [(found["metric"], float(found["value"][1])) for _, result in results for found in result]
    rows.sort(key=lambda r: -r[1] if not math.isnan(r[1]) else 0)
    columns = sorted({k for labels, _ in rows for k in labels if k != "__name__"})
    cells = [[labels.get(c, "")[:28] for c in columns] + [format_value(v, unit)] for labels, v in rows[:MAX_TABLE_ROWS]]
    table = ax.table(cellText=cells, colLabels=[*columns, "Value"], loc="upper center", cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(6)
    for cell in table.get_celld().values():
        cell.set_facecolor("#181b1f")
        cell.set_edgecolor("#333333")
        cell.get_text().set_color("#d8d9da")
    ax.set_axis_off()


def _matrix(
    ax: Any, series: list[tuple[str, list[float], list[float]]], unit: str, steps: list[tuple[float | None, str]],
    panel: dict[str, Any],
) -> None:  # fmt: skip
    """A heatmap (one row per series) or a state timeline (rows coloured by the value's threshold)."""
    import numpy as np
    from matplotlib.colors import BoundaryNorm, ListedColormap

    times = sorted({t for _, ts, _ in series for t in ts})
    index = {t: i for i, t in enumerate(times)}
    grid = np.full((len(series), len(times)), np.nan)
    for row, (_, ts, values) in enumerate(series):
        for t, v in zip(ts, values, strict=True):
            grid[row, index[t]] = v
    extent = (0, len(times), len(series), 0)
    if steps:
        bounds = [s[0] for s in steps if s[0] is not None]
        cmap = ListedColormap([c for _, c in steps])
        image = ax.imshow(
            grid, aspect="auto", cmap=cmap, norm=BoundaryNorm([-1e9, *bounds, 1e9], cmap.N), extent=extent
        )
        mappings = panel["fieldConfig"]["defaults"].get("mappings", [])
        texts = {k: v["text"] for m in mappings for k, v in m.get("options", {}).items()}
        labels = ", ".join(f"{k}={v}" for k, v in texts.items())
        ax.set_xlabel(labels, fontsize=6, color="#b0b0b0")
    else:
        image = ax.imshow(grid, aspect="auto", cmap="viridis", extent=extent, interpolation="nearest")
        bar = ax.figure.colorbar(image, ax=ax, fraction=0.03, pad=0.01)
        bar.ax.tick_params(labelsize=6, colors="#b0b0b0")
        bar.ax.yaxis.set_major_formatter(lambda v, _: format_value(v, unit))
    ax.set_yticks([i + 0.5 for i in range(len(series))], [name[:30] for name, _, _ in series], fontsize=5)
    ticks: list[int] = [int(i) for i in np.linspace(0, len(times) - 1, 5)] if times else []
    ax.set_xticks(ticks, [time.strftime("%H:%M", time.gmtime(times[i])) for i in ticks], fontsize=7)
    ax.tick_params(colors="#b0b0b0")


def _query_panel(
    prometheus: Prometheus, panel: dict[str, Any], start_s: float, end_s: float, step_s: float
) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    results = []
    for target in panel.get("targets", []):
        expr = expand(target["expr"], range_s=end_s - start_s)
        if target.get("instant"):
            results.append((target, prometheus.instant(expr, end_s)))
        else:
            results.append((target, prometheus.range(expr, start_s, end_s, step_s)))
    return results


def render_dashboard(
    model: dict[str, Any], prometheus: Prometheus, path: Path, start_s: float, end_s: float, pool: ThreadPoolExecutor
) -> Rendered:
    """One dashboard to one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    step_s = max(math.ceil((end_s - start_s) / MAX_POINTS), 1)
    panels = [p for p in model["panels"] if p["type"] != "row"]
    futures = [pool.submit(_query_panel, prometheus, p, start_s, end_s, step_s) for p in panels]
    height = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in model["panels"])
    figure = plt.figure(figsize=(GRID_COLUMNS * INCH_PER_COLUMN, (height + 2) * INCH_PER_ROW), facecolor="#111217")
    total = height + 2  # the dashboard's title above the grid

    def box(pos: dict[str, int]) -> list[float]:
        x, y, w, h = pos["x"], pos["y"] + 2, pos["w"], pos["h"]
        pad_x, pad_top, pad_bottom = 0.35 / GRID_COLUMNS, 0.9 / total, 0.55 / total
        return [
            x / GRID_COLUMNS + pad_x,
            1 - (y + h) / total + pad_bottom,
            w / GRID_COLUMNS - 2 * pad_x,
            h / total - pad_top - pad_bottom,
        ]

    figure.text(0.005, 1 - 0.9 / total, model["title"], fontsize=16, weight="bold", color="#d8d9da")
    figure.text(
        0.995, 1 - 0.9 / total,
        f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(start_s))} – {time.strftime('%H:%M UTC', time.gmtime(end_s))}"
        "   variables: All",
        fontsize=9, ha="right", color="#b0b0b0",
    )  # fmt: skip
    for row in (p for p in model["panels"] if p["type"] == "row"):
        figure.text(
            0.005, 1 - (row["gridPos"]["y"] + 2.8) / total, row["title"], fontsize=11, weight="bold", color="#d8d9da"
        )
    empty = []
    for panel, future in zip(panels, futures, strict=True):
        left, bottom, width, height_ = box(panel["gridPos"])
        if panel["type"] == "timeseries":  # room for the legend under the plot
            bottom, height_ = bottom + LEGEND_SHARE * height_, (1 - LEGEND_SHARE) * height_
        if panel["type"] in ("timeseries", "heatmap", "state-timeline"):  # and for the value axis' labels
            margin = AXIS_LABELS_INCH / (GRID_COLUMNS * INCH_PER_COLUMN)
            left, width = left + margin, width - margin
        ax = figure.add_axes((left, bottom, width, height_), facecolor="#181b1f")
        for spine in ax.spines.values():
            spine.set_color("#333333")
        if not _draw(ax, panel, future.result(), start_s, end_s):
            empty.append(panel["title"])
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=60, facecolor=figure.get_facecolor())
    plt.close(figure)
    return Rendered(path, len(panels), empty)


def render_all(
    prometheus_url: str, output: Path, *, range_s: float = 3600.0, only: list[str] | None = None
) -> list[Rendered]:
    """Every dashboard (or those in ``only``) over the last ``range_s`` seconds, one PNG each."""
    from . import dashboard_json

    prometheus = Prometheus(prometheus_url)
    end_s = time.time()
    with ThreadPoolExecutor(QUERY_THREADS) as pool:
        return [
            render_dashboard(model, prometheus, Path(output) / f"{uid}.png", end_s - range_s, end_s, pool)
            for uid, model in dashboard_json().items()
            if not only or uid in only
        ]
