"""``factorylens dashboards``: generate (or ``--check``) the committed dashboards, provisioning and
alert files."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dashboards",
        help="generate the Grafana dashboards, provisioning and alerting rules",
        description="Without a subcommand: write the Grafana dashboards (JSON), their provisioning files and the "
        "Prometheus alerting rules (with their promtool tests) from code (docs/dashboards.md). --check writes "
        "nothing and fails when the committed files differ from what the code generates.",
    )
    p.add_argument("--output", type=Path, help="folder to write to (default: the package's dashboards/ folder)")
    p.add_argument("--check", action="store_true", help="fail (exit 1) when a committed file is stale; write nothing")
    p.set_defaults(func=_run_generate)


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
