"""What a dashboard is made of, in our terms, and how it becomes grafana-foundation-sdk builders.

Dashboards are declared as data (``Board`` → ``Row`` → ``Panel`` → ``Query``) so that one place sets
the variables, the grid and the defaults every panel must have (a unit, a description, a legend).
Metric and label names come from the registry through ``metric()`` and ``label()``, never typed by
hand.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Literal

from factorylens.registry import REGISTRY, Attributes, Instrument, Metrics, prometheus_label

with warnings.catch_warnings():
    # the SDK steers to its v2 model on import; the schemas we validate against (and provisioning) are v1's
    warnings.filterwarnings("ignore", "Prefer using dashboardv2", DeprecationWarning)
    from grafana_foundation_sdk.builders import common as common_builders
    from grafana_foundation_sdk.builders import dashboard as builders
    from grafana_foundation_sdk.builders import (
        heatmap,
        prometheus,
        stat,
        statetimeline,
        table,
        timeseries,
    )
    from grafana_foundation_sdk.models import common
    from grafana_foundation_sdk.models import dashboard as models
    from grafana_foundation_sdk.models import prometheus as prometheus_models

DATASOURCE_UID = "factorylens-prometheus"  # the provisioned datasource (see _provisioning.py)
DATASOURCE = models.DataSourceRef(type_val="prometheus", uid="${datasource}")
GRID_WIDTH = 24
TAGS = ["factorylens"]


def metric(name: str, suffix: str = "") -> str:
    """The Prometheus name of a registry metric; ``suffix`` (``_bucket``, ``_sum``, ``_count``) only on
    histograms, whose exported series carry one."""
    spec = REGISTRY.metric(name)
    if suffix and spec.instrument is not Instrument.HISTOGRAM:
        raise ValueError(f"{name} is a {spec.instrument.value}, not a histogram")
    return spec.prometheus_name + suffix


def label(attribute: str) -> str:
    """The Prometheus label of a registry attribute."""
    REGISTRY.attribute(attribute)  # raises for an attribute the registry does not declare
    return prometheus_label(attribute)


CLUSTER = label(Attributes.FACTORYLENS_CLUSTER_NAME)
NODE = label(Attributes.HOST_NAME)
GPU = label(Attributes.HW_ID)
JOB = label(Attributes.FACTORYLENS_JOB_ID)
TEAM = label(Attributes.FACTORYLENS_TEAM)
MODEL = label(Attributes.GEN_AI_REQUEST_MODEL)
SERVER = label(Attributes.SERVER_ADDRESS)

# matchers on the dashboard variables; "All" is ".*", so series without the label still match
IN_CLUSTER = f'{CLUSTER}=~"$cluster"'
ON_NODE = f'{NODE}=~"$node"'
ON_GPU = f'{GPU}=~"$gpu"'
OF_JOB = f'{JOB}=~"$job"'
OF_MODEL = f'{MODEL}=~"$model"'
GPU_SCOPE = (IN_CLUSTER, ON_NODE, ON_GPU)
NODE_SCOPE = (IN_CLUSTER, ON_NODE)
JOB_SCOPE = (IN_CLUSTER, OF_JOB)


def eq(attribute: str, value: str) -> str:
    return f'{label(attribute)}="{value}"'


def match(attribute: str, regex: str) -> str:
    return f'{label(attribute)}=~"{regex}"'


def sel(name: str, *matchers: str, suffix: str = "") -> str:
    """``metric{matchers}`` for a registry metric."""
    series = metric(name, suffix)
    return f"{series}{{{', '.join(matchers)}}}" if matchers else series


def rate(selector: str) -> str:
    """A per-second rate over Grafana's ``$__rate_interval`` (at least four scrapes, whatever the zoom)."""
    return f"rate({selector}[$__rate_interval])"


def quantile(q: float, name: str, by: str, *matchers: str) -> str:
    """The ``q`` quantile of a histogram over the rate interval, per ``by`` labels."""
    buckets = rate(sel(name, *matchers, suffix="_bucket"))
    return f"histogram_quantile({q}, sum by ({', '.join([*by.split(', '), 'le'] if by else ['le'])}) ({buckets}))"


def mean(name: str, by: str, *matchers: str) -> str:
    """A histogram's mean over the rate interval: rate of the sum over rate of the count."""
    total = rate(sel(name, *matchers, suffix="_sum"))
    count = rate(sel(name, *matchers, suffix="_count"))
    return f"sum by ({by}) ({total}) / sum by ({by}) ({count})"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""
    instant: bool = False  # tables and stats that show one value per series
    format: Literal["time_series", "table", "heatmap"] = "time_series"


Kind = Literal["timeseries", "stat", "heatmap", "table", "statetimeline"]


@dataclass(frozen=True)
class Link:
    """A data link to another factorylens dashboard, carrying the time range and the variables."""

    title: str
    uid: str
    params: str = ""  # extra URL parameters, e.g. the clicked row's job


@dataclass(frozen=True)
class Panel:
    kind: Kind
    title: str
    description: str
    unit: str
    queries: tuple[Query, ...]
    width: int = 12
    height: int = 8
    thresholds: tuple[tuple[float | None, str], ...] = ()
    min: float | None = None
    max: float | None = None
    stack: bool = False
    links: tuple[Link, ...] = ()
    value_text: tuple[tuple[str, str, str], ...] = ()  # (value, text, colour) for state timelines


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Board:
    uid: str
    title: str
    description: str
    rows: tuple[Row, ...]
    extra_variables: tuple[tuple[str, str, str], ...] = ()  # (name, label, label_values query)


def ts(title: str, description: str, unit: str, *queries: Query, **kw: Any) -> Panel:
    return Panel("timeseries", title, description, unit, queries, **kw)


def stat_panel(title: str, description: str, unit: str, *queries: Query, **kw: Any) -> Panel:
    kw.setdefault("width", 4)
    kw.setdefault("height", 4)
    return Panel("stat", title, description, unit, queries, **kw)


def table_panel(title: str, description: str, unit: str, *queries: Query, **kw: Any) -> Panel:
    return Panel("table", title, description, unit, queries, **kw)


# -- variables ---------------------------------------------------------------------------------------

_UTILIZATION = metric(Metrics.HW_GPU_UTILIZATION)
_ALLOCATION = metric(Metrics.FACTORYLENS_GPU_ALLOCATION_TIME)
VARIABLES: tuple[tuple[str, str, str], ...] = (
    ("cluster", "Cluster", f"label_values({_UTILIZATION}, {CLUSTER})"),
    ("node", "Node", f"label_values({_UTILIZATION}{{{IN_CLUSTER}}}, {NODE})"),
    ("gpu", "GPU", f"label_values({_UTILIZATION}{{{IN_CLUSTER}, {ON_NODE}}}, {GPU})"),
    ("job", "Job", f"label_values({_ALLOCATION}{{{IN_CLUSTER}, {ON_NODE}, {ON_GPU}}}, {JOB})"),
)


def _query_variable(name: str, text: str, query: str) -> builders.QueryVariable:
    return (
        builders.QueryVariable(name)
        .label(text)
        .datasource(DATASOURCE)
        .query(query)
        .definition(query)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(models.VariableOption(selected=True, text=["All"], value=["$__all"]))
        .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(models.VariableSort.ALPHABETICAL_ASC)
    )


# -- panels ------------------------------------------------------------------------------------------


def _target(query: Query, ref: str) -> prometheus.Dataquery:
    target = prometheus.Dataquery().expr(query.expr).ref_id(ref).datasource(DATASOURCE)
    if query.legend:
        target = target.legend_format(query.legend)
    target = target.instant() if query.instant else target.range()
    if query.format != "time_series":
        target = target.format(prometheus_models.PromQueryFormat(query.format))
    return target


def link_url(link: Link) -> str:
    """Grafana's URL of another dashboard with this one's time range and variables."""
    variables = "&".join(f"${{{name}:queryparam}}" for name in ("datasource", *(v[0] for v in VARIABLES)))
    url = f"/d/{link.uid}?${{__url_time_range}}&{variables}"
    return f"{url}&{link.params}" if link.params else url


def _thresholds(steps: tuple[tuple[float | None, str], ...]) -> builders.ThresholdsConfig:
    return (
        builders.ThresholdsConfig()
        .mode(models.ThresholdsMode.ABSOLUTE)
        .steps([models.Threshold(value=value, color=colour) for value, colour in steps])
    )


def _legend() -> common_builders.VizLegendOptions:
    return (
        common_builders.VizLegendOptions()
        .show_legend(True)
        .display_mode(common.LegendDisplayMode.LIST)
        .placement(common.LegendPlacement.BOTTOM)
    )


def build_panel(panel: Panel, panel_id: int, x: int, y: int) -> Any:
    """One panel as an SDK builder, placed at ``(x, y)`` on the grid."""
    builder: Any
    if panel.kind == "timeseries":
        builder = timeseries.Panel().legend(_legend()).fill_opacity(10).line_width(1)
        if panel.stack:
            builder = builder.stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
        if panel.thresholds:
            builder = builder.thresholds_style(
                common_builders.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED)
            )
    elif panel.kind == "stat":
        builder = stat.Panel().graph_mode(common.BigValueGraphMode.AREA).color_mode(common.BigValueColorMode.VALUE)
        builder = builder.reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]))
    elif panel.kind == "heatmap":
        builder = heatmap.Panel().calculate(False).show_legend()
    elif panel.kind == "table":
        builder = table.Panel().transformations(
            [models.DataTransformerConfig(id_val="merge", options={})] if len(panel.queries) > 1 else []
        )
    else:
        builder = statetimeline.Panel().legend(_legend()).show_value(common.VisibilityMode.AUTO)
    builder = (
        builder.id(panel_id)
        .title(panel.title)
        .description(panel.description)
        .datasource(DATASOURCE)
        .unit(panel.unit)
        .grid_pos(models.GridPos(h=panel.height, w=panel.width, x=x, y=y))
        .targets([_target(q, chr(ord("A") + i)) for i, q in enumerate(panel.queries)])
    )
    if panel.thresholds:
        builder = builder.thresholds(_thresholds(panel.thresholds)).color_scheme(
            builders.FieldColor().mode(
                models.FieldColorModeId.THRESHOLDS
                if panel.kind in ("stat", "statetimeline")
                else models.FieldColorModeId.PALETTE_CLASSIC
            )
        )
    if panel.min is not None:
        builder = builder.min(panel.min)
    if panel.max is not None:
        builder = builder.max(panel.max)
    if panel.links:
        builder = builder.data_links([builders.DashboardLink(link.title).url(link_url(link)) for link in panel.links])
    if panel.value_text:
        options = {
            value: models.ValueMappingResult(text=text, color=colour) for value, text, colour in panel.value_text
        }
        builder = builder.mappings([models.ValueMap(options=options)])
    return builder


def layout(board: Board) -> list[tuple[Row, int, list[tuple[Panel, int, int]]]]:
    """Rows with their ``y`` and each panel's ``(x, y)``: left to right, wrapping at 24 columns."""
    placed: list[tuple[Row, int, list[tuple[Panel, int, int]]]] = []
    y = 0
    for row in board.rows:
        row_y = y
        y += 1  # the row header
        x, line_height, cells = 0, 0, []
        for panel in row.panels:
            if x + panel.width > GRID_WIDTH:
                x, y, line_height = 0, y + line_height, 0
            cells.append((panel, x, y))
            x += panel.width
            line_height = max(line_height, panel.height)
        y += line_height
        placed.append((row, row_y, cells))
    return placed


def build_dashboard(board: Board) -> builders.Dashboard:
    """The board as an SDK dashboard: variables datasource → cluster → node → GPU → job, rows, panels."""
    dashboard = (
        builders.Dashboard(board.title)
        .uid(board.uid)
        .description(board.description)
        .tags(TAGS)
        .time("now-1h", "now")
        .refresh("30s")
        .tooltip(models.DashboardCursorSync.CROSSHAIR)
        .readonly()
        .with_variable(
            builders.DatasourceVariable("datasource")
            .label("Data source")
            .type("prometheus")
            .current(models.VariableOption(selected=True, text="factorylens", value=DATASOURCE_UID))
        )
        .links(
            [
                builders.DashboardLink("factorylens")
                .type(models.DashboardLinkType.DASHBOARDS)
                .tags(TAGS)
                .as_dropdown(True)
                .include_vars(True)
                .keep_time(True)
            ]
        )
    )
    for name, text, query in (*VARIABLES, *board.extra_variables):
        dashboard = dashboard.with_variable(_query_variable(name, text, query))
    panel_id = 1
    for row, row_y, cells in layout(board):
        dashboard = dashboard.with_row(
            builders.Row(row.title).id(panel_id).grid_pos(models.GridPos(h=1, w=24, x=0, y=row_y))
        )
        panel_id += 1
        for panel, x, y in cells:
            dashboard = dashboard.with_panel(build_panel(panel, panel_id, x, y))
            panel_id += 1
    return dashboard
