"""Root-cause ranking accuracy on real labelled incidents: our engine next to BARO, on the same frames.

Method. Each dataset folder is read by its adapter (``factorylens.evaluation``) into
generic cases: a wide (entity, signal) frame, the topology, the KPI that broke, the time it broke and
the true root cause. Our engine (``RankingEngine`` with its default ``RankingConfig``) and BARO (Pham
et al., FSE 2024, ``BaroRanker``) rank the candidates of every case from exactly the same inputs; BARO
is given the incident time as in RCAEval's protocol, and is also shown with its own change-point
detection (BOCPD). Nothing is tuned per dataset or per run. The PetShop adapter joins each X-Ray
load-balancer node to the service behind it, which X-Ray's graph leaves out (see its module).

Data (cite when reporting): PetShop (Hardt et al., CLeaR 2024, arXiv:2311.04806; CC-BY-4.0), one case
per issue of every traffic scenario in the folder; Nezha Online Boutique (Yu et al., ESEC/FSE 2023; MIT),
one case per injected fault, ranked at service level. A Nezha-format folder is ranked from its metrics
alone and, where its days have ``trace/`` span files, again from metrics + traces: the spans go through
the RCA service's own span ingest (``factorylens.evaluation._spans``), whose call edges replace the
service-mesh files when a day has none. Each case is also reported in its subset ("with spans": the
minute of the injection has a span file; "without spans"). Datasets are named from their folders; a
dataset that fails to load is reported in the JSON line with its error and the others still run.

Reported per fault type and overall: AC@1, AC@3 (share of cases whose true cause is in the top 1 / 3),
Avg@5 (mean of AC@1..AC@5), the number of cases and seconds per case.

Usage: python bench/rca.py [--petshop DIR] [--nezha DIR] [--no-traces] [--per-case] [--json-only]
Last line: {"bench": "rca", "petshop": {"name": ..., "cases": n, "ac1": x, "ac3": x, "avg5": x}, "nezha": {...,
"with spans": {...}, "without spans": {...}}, "nezha_traces": {...}, "baro_petshop": {...}, ...}; a dataset that
failed: {"name": ..., "error": "..."}. Exit status 2 only when no dataset loaded.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd

from factorylens.datasets import DatasetNotFound, find_dataset
from factorylens.evaluation import OVERALL, CaseResult, RcaCase, load_nezha, load_petshop, summarize
from factorylens.rca_service.ranking import BaroConfig, BaroRanker, Ranker, RankingConfig, RankingEngine

Method = Callable[[RcaCase], list[str]]
ENGINE = "engine"
LAYOUT_FOLDERS = {"dataset", "rca_data", "data", "metric", "trace"}
BASELINE = "BARO (t0 given)"


def methods() -> dict[str, Method]:
    """Name -> ranking function: ours, the baseline the JSON line reports, and BARO finding the anomaly
    time itself."""
    engine = RankingEngine(RankingConfig())
    baro = BaroRanker(BaroConfig())
    baro_bocpd = BaroRanker(BaroConfig(detect_change_point=True))

    def ranked(ranker: Ranker) -> Callable[[RcaCase], list[str]]:
        """Every method through the one :class:`Ranker` signature (BARO reads no topology or history)."""
        return lambda case: (
            ranker.find_root_causes(
                case.frame, case.kpi, case.t0, topology=case.topology, history=case.history, candidates=case.candidates
            ).entities
        )

    return {ENGINE: ranked(engine), BASELINE: ranked(baro), "BARO (BOCPD)": ranked(baro_bocpd)}


def evaluate(cases: list[RcaCase], rank: Method, label: str) -> list[CaseResult]:
    results = []
    started = time.perf_counter()
    for i, case in enumerate(cases, 1):
        begun = time.perf_counter()
        ranking = rank(case)
        results.append(
            CaseResult.score(case.case_id, case.fault_type, case.root_cause, ranking, time.perf_counter() - begun)
        )
        if sys.stderr.isatty():
            print(f"\r  {label}: {i}/{len(cases)}", end="", file=sys.stderr, flush=True)
    print(
        f"{chr(13) if sys.stderr.isatty() else ''}  {label}: {len(cases)} cases in "
        f"{time.perf_counter() - started:.1f} s",
        file=sys.stderr,
    )
    return results


def table_text(table: pd.DataFrame) -> str:
    lines = [f"{'fault type':18s} {'n':>4s} {'AC@1':>6s} {'AC@3':>6s} {'Avg@5':>6s} {'s/case':>8s}"]
    for fault_type, row in table.iterrows():
        lines.append(
            f"{fault_type:18s} {int(row['n']):4d} {row['ac1']:6.3f} {row['ac3']:6.3f} {row['avg5']:6.3f} "
            f"{row['sec_per_case']:8.4f}"
        )
    return "\n".join(lines)


def headline(table: pd.DataFrame) -> dict[str, float | int]:
    row = table.loc[OVERALL]
    return {
        "cases": int(row["n"]),
        "ac1": round(float(row["ac1"]), 3),
        "ac3": round(float(row["ac3"]), 3),
        "avg5": round(float(row["avg5"]), 3),
    }


def dataset_name(folder: Path) -> str:
    """A dataset's name from its folder: the nearest folder name that is not a layout folder
    and not a date: ``.../nezha/rca_data`` and ``.../nezha/rca_data/2022-08-22`` are both "nezha")."""
    parts = [p for p in folder.resolve().parts if p not in ("/", "") and p not in LAYOUT_FOLDERS]
    named = [p for p in parts if not p[:4].isdigit()]
    return named[-1] if named else folder.name


def datasets_to_run(args: argparse.Namespace) -> list[tuple[str, str, Callable[[], Iterator[RcaCase]], Path | str]]:
    """(JSON key, title, case loader, folder or the reason it is missing) for every dataset asked for."""
    runs: list[tuple[str, str, Callable[[], Iterator[RcaCase]], Path | str]] = []
    for fmt, folder, sub in (("petshop", args.petshop, "dataset"), ("nezha", args.nezha, "rca_data")):
        if folder is None:
            try:
                folder = find_dataset(fmt) / sub
            except DatasetNotFound as exc:
                runs.append((fmt, fmt, lambda: iter(()), str(exc)))
                continue
        name = dataset_name(folder)
        if fmt == "petshop":
            runs.append((fmt, f"{name} (PetShop format, metrics)", lambda f=folder: load_petshop(f), folder))
            continue
        runs.append((fmt, f"{name} (Nezha format, metrics only)", lambda f=folder: load_nezha(f), folder))
        if args.traces and any(Path(folder).rglob("trace/*_trace.csv*")):
            runs.append(
                (
                    f"{fmt}_traces",
                    f"{name} (Nezha format, metrics + traces)",
                    lambda f=folder: load_nezha(f, True),
                    folder,
                )
            )
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--petshop",
        type=Path,
        default=None,
        help="a folder in PetShop's layout (dataset/, one scenario, or their parent; default: the "
        "petshop dataset as factorylens.datasets finds it, see `factorylens datasets list`)",
    )
    parser.add_argument(
        "--nezha",
        type=Path,
        default=None,
        help="a folder in Nezha's layout (rca_data/, one day, or their parent; default: the nezha "
        "dataset as factorylens.datasets finds it); days with trace/ folders are also ranked with their spans",
    )
    parser.add_argument(
        "--no-traces", dest="traces", action="store_false", help="rank Nezha-format days from metrics only"
    )
    parser.add_argument("--per-case", action="store_true", help="also print every case's rank and top 3")
    parser.add_argument("--json-only", action="store_true", help="print only the final JSON line")
    args = parser.parse_args(argv)

    def show(text: str) -> None:
        if not args.json_only:
            print(text)

    line: dict[str, object] = {"bench": "rca"}
    baseline: dict[str, object] = {}
    rankers = methods()
    loaded = 0
    for key, title, loader, folder in datasets_to_run(args):
        started = time.perf_counter()
        try:
            if isinstance(folder, str):
                raise FileNotFoundError(folder)
            cases = list(loader())
        except (FileNotFoundError, ValueError, OSError) as exc:
            print(f"error: {title}: {exc}", file=sys.stderr)
            line[key] = {"name": title, "error": str(exc)}
            continue
        loaded += 1
        print(
            f"{title}: {len(cases)} cases from {folder} (read in {time.perf_counter() - started:.1f} s)",
            file=sys.stderr,
        )
        subsets = sorted({case.subset for case in cases if case.subset})
        for name, rank in rankers.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                results = evaluate(cases, rank, f"{key} {name}")
            table = summarize(results)
            show(f"\n{title} :: {name}\n{table_text(table)}")
            figures: dict[str, object] = {"name": title, **headline(table)}
            for subset in subsets:
                chosen = {case.case_id for case in cases if case.subset == subset}
                part = summarize([r for r in results if r.case_id in chosen])
                show(f"  {subset}: {headline(part)}")
                figures[subset] = headline(part)
            if args.per_case:
                for r in results:
                    show(
                        f"  {r.case_id:32s} {r.fault_type:16s} {r.root_cause:40s} rank {r.rank or '-':>3} "
                        f"top3 {', '.join(r.top[:3])}"
                    )
            if name == ENGINE:
                line[key] = figures
            elif name == BASELINE:
                baseline[f"baro_{key}"] = figures
    line.update(baseline)
    print(json.dumps(line))
    return 0 if loaded else 2


if __name__ == "__main__":
    sys.exit(main())
