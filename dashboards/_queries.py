"""The PromQL of the generated dashboards as Prometheus runs it: Grafana's variables and macros
substituted the way Grafana does with every variable on "All", for the tests, the live check
against a real Prometheus and the PNG renderer."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from factorylens.registry import REGISTRY, Instrument

SCRAPE_INTERVAL_S = 15  # the provisioned datasource's timeInterval
RATE_INTERVAL_SCRAPES = 4  # Grafana's $__rate_interval is at least four scrape intervals
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
_ALL = ".*"  # every query variable's allValue


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str  # the dashboard's title
    panel: str  # the panel's title
    ref: str
    expr: str  # as stored in the JSON, with Grafana's variables
    legend: str
    instant: bool


def panel_queries(model: dict[str, Any]) -> Iterator[PanelQuery]:
    """Every query of every panel of a dashboard model (rows skipped)."""
    for panel in model.get("panels", []):
        for target in panel.get("targets", []):
            yield PanelQuery(
                dashboard=model["title"],
                panel=panel["title"],
                ref=target["refId"],
                expr=target["expr"],
                legend=target.get("legendFormat", ""),
                instant=bool(target.get("instant")),
            )


def variable_queries(model: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """``(variable name, label_values query)`` of each query variable."""
    for variable in model["templating"]["list"]:
        if variable["type"] == "query":
            yield variable["name"], variable["definition"]


def expand(
    expr: str,
    scrape_interval_s: float = SCRAPE_INTERVAL_S,
    range_s: float = 3600,
    variables: dict[str, str] | None = None,
) -> str:
    """``expr`` as Grafana sends it: ``$__rate_interval`` → four scrape intervals, ``$__range`` → the
    dashboard's range, and each ``$variable`` → its value (``.*``, "All", unless given)."""
    values = variables or {}
    expr = expr.replace("$__rate_interval", f"{round(RATE_INTERVAL_SCRAPES * scrape_interval_s)}s")
    expr = expr.replace("$__range", f"{round(range_s)}s")
    return re.sub(r"\$\{?(\w+)\}?", lambda m: values.get(m.group(1), _ALL), expr)


def metric_names(expr: str) -> set[str]:
    """Names of the series an (expanded) expression selects."""
    import promql_parser

    names: set[str] = set()

    def visit(node: object) -> bool:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def registry_series_names() -> set[str]:
    """Every series name the registry's metrics export under in Prometheus (histograms as their
    ``_bucket``, ``_sum`` and ``_count`` series)."""
    names: set[str] = set()
    for spec in REGISTRY.metrics:
        if spec.instrument is Instrument.HISTOGRAM:
            names.update(spec.prometheus_name + suffix for suffix in HISTOGRAM_SUFFIXES)
        else:
            names.add(spec.prometheus_name)
    return names
