"""``factorylens dashboards``: generate (or ``--check``) the committed dashboards, provisioning and
alert files; ``factorylens dashboards render``: draw the dashboards' panels from a Prometheus into PNGs."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dashboards",
        help="generate the Grafana dashboards, provisioning and alerting rules; render them to PNG",
        description="Without a subcommand: write the Grafana dashboards (JSON), their provisioning files and the "
        "Prometheus alerting rules (with their promtool tests) from code (docs/dashboards.md). --check writes "
        "nothing and fails when the committed files differ from what the code generates. 'render' draws every "
        "panel of every dashboard from a Prometheus into PNGs laid out like Grafana's grid.",
    )
    p.add_argument("--output", type=Path, help="folder to write to (default: the package's dashboards/ folder)")
    p.add_argument("--check", action="store_true", help="fail (exit 1) when a committed file is stale; write nothing")
    p.set_defaults(func=_run_generate)
    dsub = p.add_subparsers(dest="dashboards_command", metavar="SUBCOMMAND")
    r = dsub.add_parser(
        "render",
        help="draw each dashboard's panels from a Prometheus into PNGs (matplotlib)",
        description="Query every panel of every dashboard against Prometheus (variables on All) over --range "
        "ending now and draw the dashboard as a PNG per dashboard, laid out like Grafana's grid.",
    )
    r.add_argument("--prometheus", required=True, metavar="URL", help="e.g. http://127.0.0.1:9090")
    r.add_argument("--output", type=Path, required=True, help="folder for the PNGs")
    r.add_argument("--range", type=float, default=3600.0, metavar="SECONDS", help="time range (default 3600)")
    r.add_argument("--dashboard", action="append", metavar="UID", help="only this dashboard (repeatable)")
    r.set_defaults(func=_run_render)


def _run_generate(args: argparse.Namespace) -> int:
    from factorylens.dashboards import ROOT, stale, write

    root = args.output or ROOT
    started = time.perf_counter()
    if args.check:
        differ = stale(root)
        if differ:
            print(f"stale generated files under {root} (run `factorylens dashboards`):", file=sys.stderr)
            for path in differ:
                print(f"  {path}", file=sys.stderr)
            return 1
        print(f"dashboards up to date ({time.perf_counter() - started:.2f} s)")
        return 0
    written = write(root)
    print(f"wrote {len(written)} files under {root} in {time.perf_counter() - started:.2f} s")
    return 0


def _run_render(args: argparse.Namespace) -> int:
    from factorylens.dashboards._render import render_all

    started = time.perf_counter()
    results = render_all(args.prometheus, args.output, range_s=args.range, only=args.dashboard)
    for result in results:
        empty = f", empty: {', '.join(result.empty)}" if result.empty else ""
        print(f"{result.path}: {result.panels} panels{empty}")
    print(f"rendered {len(results)} dashboards in {time.perf_counter() - started:.1f} s")
    return 0
