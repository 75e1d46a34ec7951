"""Collectors in front of the RCA service: the otelcol-contrib agent config whose ``transform`` statements are
generated from the registry (``factorylens otel-config``), and the launcher of rotel, the embedded default
collector (``factorylens collector``). The configs themselves live in ``otel-config/``."""

from __future__ import annotations

import argparse

from factorylens.collector.otel_config import add_otel_config_parser
from factorylens.collector.rotel import add_collector_parser


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register ``factorylens collector`` and ``factorylens otel-config``."""
    add_collector_parser(sub)
    add_otel_config_parser(sub)
