"""Detection accuracy on the Numenta Anomaly Benchmark: our streaming detector, scored with our own
implementation of NAB's scorer, next to NAB's published detectors scored by the same code.

Method. Every data file is streamed through a fresh ``StreamingDetector`` in chunks of ``--chunk``
rows (the scores do not depend on the chunking; tests check it), configured only with the file's
probationary period (``StreamingDetectorConfig.for_probation``: NAB hands every detector that
number). A row is a detection when its score is ``>= 0.5`` (``ALARM_SCORE``): that threshold and
every parameter of the detector were tuned once on NAB's development split (the project's shared
data; ``factorylens datasets fetch nab`` downloads it) and are frozen in the code,
so the same numbers come out for all three profiles and on any other folder. The scorer
(``factorylens.evaluation``) reproduces NAB's published numbers for its six detectors on
this folder (tests check it); when the folder has NAB's ``results/`` and ``config/thresholds.json``
those detectors are scored here too, at their published thresholds.

Those scores are in-sample: the frozen parameters were chosen on these files. ``--cross-validate``
adds an out-of-sample figure, leave one category out: for each category, the parameter set of
``CV_GRID`` (the alarm threshold and the three parameters the score moves most with) with the best
standard score on the OTHER categories is chosen, and the category's files are scored with it; the
held-out raw scores of all files are then normalised as one corpus (``nab_leave_one_group_out``).
Every parameter set runs once on every file and the folds share those runs.

Reported: normalised score per category and in total for the standard, reward_low_FP_rate and
reward_low_FN_rate profiles; event-level precision (detected windows / (detected windows + false
detections)) and recall (detected windows / windows); detection latency from the labelled anomaly
(negative = before it) and from the window start; with ``--cross-validate``, the cross-validated
standard score per category and in total and the parameters each fold chose.

Usage: python bench/nab.py [--data DIR] [--chunk 64] [--per-file] [--cross-validate]
Last line: {"bench": "nab", "files": n, "standard": x, "reward_low_FP_rate": x, "reward_low_FN_rate": x, ...,
"standard_cv": x, "cv_folds": {category: {parameter: value, ..., "training": x}}} (the last two with
--cross-validate)
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from factorylens.datasets import dataset_or_exit
from factorylens.evaluation import (
    PROFILE_BY_NAME,
    PROFILES,
    FileWeights,
    NabCorpus,
    NabCrossValidation,
    NabFile,
    file_weights,
    load_thresholds,
    nab_leave_one_group_out,
    normalized_score,
    probation_rows,
    read_result_scores,
    score_corpus,
    score_file,
)
from factorylens.rca_service.baselines import ALARM_SCORE, StreamingDetector, StreamingDetectorConfig

PUBLISHED = ("null", "random", "windowedGaussian", "twitterADVec", "numenta", "ARTime")
DEFAULTS = StreamingDetectorConfig()


def default_first(default: float, *values: float) -> tuple[float, ...]:
    """A grid axis: the frozen default first (the cross-validation's ties go to it), then the rest."""
    return (default, *(v for v in values if v != default))


# What the cross-validation chooses from: the alarm threshold on the score, and the parameters the
# score moves most with when changed one at a time (novelty_ratio moves it as much, but the alarm
# threshold scales it too).
CV_GRID: dict[str, tuple[float, ...]] = {
    "alarm_score": default_first(ALARM_SCORE, 0.48, 0.52),
    "short_points": default_first(DEFAULTS.short_points, 5, 8, 12),
    "range_tolerance": default_first(DEFAULTS.range_tolerance, 0.03, 0.05, 0.08),
    "scale_floor": default_first(DEFAULTS.scale_floor, 0.01, 0.02, 0.04),
}
Params = tuple[tuple[str, float], ...]


def seconds(timestamps: pd.Series) -> np.ndarray:
    return (pd.DatetimeIndex(timestamps) - pd.Timestamp(0)).total_seconds().to_numpy()


def grid(axes: Mapping[str, tuple[float, ...]]) -> list[Params]:
    """Every combination of the axes' values; the first is every axis' first value."""
    return [tuple(zip(axes, values, strict=True)) for values in itertools.product(*axes.values())]


def config_overrides(params: Params) -> dict[str, Any]:
    """Detector settings for a parameter set. The detector alarms at score 0.5 (a deviation at its
    bar), so alarming at score ``a`` instead means every bar times ``a / (1 - a)``: both thresholds,
    the novelty ratio and the range tolerance; the refractory period then follows the new alarms."""
    chosen = dict(params)
    alarm = chosen.pop("alarm_score", ALARM_SCORE)
    overrides: dict[str, Any] = {k: int(v) if k == "short_points" else v for k, v in chosen.items()}
    scale = alarm / (1.0 - alarm) / (ALARM_SCORE / (1.0 - ALARM_SCORE))
    if scale != 1.0:
        for name in ("level_threshold", "change_threshold", "novelty_ratio", "range_tolerance"):
            overrides[name] = overrides.get(name, getattr(DEFAULTS, name)) * scale
    return overrides


def run_detector(values: np.ndarray, times_s: np.ndarray, chunk: int, params: Params = ()) -> np.ndarray:
    config = StreamingDetectorConfig.for_probation(probation_rows(values.size), **config_overrides(params))
    detector = StreamingDetector(config)
    return np.concatenate(
        [detector.score(times_s[i : i + chunk], values[i : i + chunk]) for i in range(0, values.size, chunk)]
    )


def cross_validate(
    files: Mapping[str, NabFile], weights: Mapping[str, FileWeights], chunk: int
) -> NabCrossValidation[Params]:
    """Leave one category out over ``CV_GRID``: each parameter set runs once per file, and only its
    per-file raw standard scores are kept, which every fold then sums its own way."""
    standard = PROFILE_BY_NAME["standard"]
    candidates = grid(CV_GRID)
    raw: dict[Params, dict[str, float]] = {}
    for i, params in enumerate(candidates, 1):
        raw[params] = {}
        for name, nab_file in files.items():
            values, times_s = nab_file.data["value"].to_numpy(float), seconds(nab_file.data.timestamp)
            detections = run_detector(values, times_s, chunk, params) >= ALARM_SCORE
            raw[params][name] = score_file(detections, weights[name], standard).raw
        if sys.stderr.isatty() or i % 10 == 0 or i == len(candidates):
            end = "" if sys.stderr.isatty() and i < len(candidates) else "\n"
            print(f"\r  cross-validation: parameter set {i}/{len(candidates)}", end=end, file=sys.stderr, flush=True)
    groups = {name: NabCorpus.category(name) for name in files}
    n_windows = {name: w.n_windows for name, w in weights.items()}
    return nab_leave_one_group_out(raw, groups, n_windows, standard)


def latencies(files: dict, weights: dict, scores: dict, threshold: float) -> tuple[list[float], list[float]]:
    """Hours from the labelled anomaly, and from the window start, to the first detection of each
    detected window."""
    from_label, from_start = [], []
    for name, nab_file in files.items():
        w = weights[name]
        ts = pd.DatetimeIndex(nab_file.data.timestamp)
        detected = np.asarray(scores[name]) >= threshold
        detected[: w.probation] = False
        for k in range(w.n_windows):
            rows = np.flatnonzero(w.window == k)
            hits = rows[detected[rows]]
            if not hits.size:
                continue
            first = ts[hits[0]]
            from_start.append((first - ts[rows[0]]).total_seconds() / 3600)
            labels = [lab for lab in nab_file.labels if ts[rows[0]] <= lab <= ts[rows[-1]]]
            if labels:
                from_label.append((first - min(labels)).total_seconds() / 3600)
    return from_label, from_start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data",
        type=Path,
        help="a folder in NAB's layout (default: the nab dataset as "
        "factorylens.datasets finds it; see `factorylens datasets list`)",
    )
    parser.add_argument("--chunk", type=int, default=64, help="rows per call to the detector")
    parser.add_argument("--per-file", action="store_true", help="also print every file's result")
    parser.add_argument(
        "--cross-validate",
        action="store_true",
        help=f"also score leave-one-category-out over {len(grid(CV_GRID))} parameter sets (minutes)",
    )
    args = parser.parse_args(argv)
    if args.data is None:
        args.data = dataset_or_exit("nab")
    try:
        corpus = NabCorpus(args.data)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    files = {f.name: f for f in corpus}
    weights = {name: file_weights(f.data.timestamp, f.windows) for name, f in files.items()}
    print(
        f"NAB folder {args.data}: {len(files)} files, {sum(len(f.data) for f in files.values())} rows, "
        f"{sum(w.n_windows for w in weights.values())} windows",
        file=sys.stderr,
    )

    started = time.perf_counter()
    ours: dict[str, np.ndarray] = {}
    for i, (name, nab_file) in enumerate(files.items(), 1):
        ours[name] = run_detector(nab_file.data["value"].to_numpy(float), seconds(nab_file.data.timestamp), args.chunk)
        if sys.stderr.isatty():
            print(f"\r  scored {i}/{len(files)} files", end="", file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - started
    if sys.stderr.isatty():
        print(file=sys.stderr)
    rows = sum(s.size for s in ours.values())

    results = {p.name: score_corpus(ours, weights, p, ALARM_SCORE) for p in PROFILES}
    categories = sorted({NabCorpus.category(n) for n in files})
    cv = cross_validate(files, weights, args.chunk) if args.cross_validate else None
    standard_by_category: dict[str, float] = {}
    cv_by_category: dict[str, float] = {}
    print(f"\nfactorylens streaming detector (threshold {ALARM_SCORE}, {rows / elapsed:,.0f} rows/s incl. fits)")
    print(
        f"{'category':24s} {'files':>5s} {'windows':>7s} "
        + " ".join(f"{p.name:>18s}" for p in PROFILES)
        + (f" {'standard (CV)':>18s}" if cv else "")
    )
    for category in [*categories, "total"]:
        names = [n for n in files if category == "total" or NabCorpus.category(n) == category]
        n_windows = sum(weights[n].n_windows for n in names)
        cells = []
        for p in PROFILES:
            result = score_corpus({n: ours[n] for n in names}, {n: weights[n] for n in names}, p, ALARM_SCORE)
            cells.append(f"{result.normalized:18.2f}" if n_windows else f"{'(no windows)':>18s}")
            if p.name == "standard" and n_windows and category != "total":
                standard_by_category[category] = round(result.normalized, 2)
        if cv:
            held_out = normalized_score(sum(cv.held_out_raw[n] for n in names), n_windows, PROFILE_BY_NAME["standard"])
            cells.append(f"{held_out:18.2f}" if n_windows else f"{'(no windows)':>18s}")
            if n_windows and category != "total":
                cv_by_category[category] = round(held_out, 2)
        print(f"{category:24s} {len(names):5d} {n_windows:7d} " + " ".join(cells))
    if cv:
        print(
            "\ncross-validation, leave one category out: each category scored with the parameters that score "
            "best (standard)\non the other categories; frozen defaults "
            + ", ".join(f"{k} {v[0]:g}" for k, v in CV_GRID.items())
        )
        print(f"{'held-out category':24s} " + " ".join(f"{k:>15s}" for k in CV_GRID) + f" {'others (fit)':>12s}")
        for category in categories:
            chosen = dict(cv.chosen[category])
            print(
                f"{category:24s} " + " ".join(f"{chosen[k]:15g}" for k in CV_GRID) + f" {cv.training[category]:12.2f}"
            )
    std = results["standard"]
    from_label, from_start = latencies(files, weights, ours, ALARM_SCORE)
    print(
        f"\nevents: {std.true_positives} of {std.true_positives + std.false_negatives} windows detected, "
        f"{std.false_positives} false detections; precision {std.precision:.3f}, recall {std.recall:.3f}"
    )
    if from_label:
        print(
            f"latency from the labelled anomaly: median {np.median(from_label):+.2f} h, "
            f"p90 {np.percentile(from_label, 90):+.2f} h; from the window start: median "
            f"{np.median(from_start):.2f} h"
        )
    if args.per_file:
        for name in files:
            f = std.per_file[name]
            print(f"  {name:64s} raw {f.raw:+6.2f} tp {f.true_positives} fp {f.false_positives} fn {f.false_negatives}")

    thresholds_path = args.data / "config" / "thresholds.json"
    results_dir = args.data / "results"
    published: dict[str, dict[str, float]] = {}
    if thresholds_path.is_file() and results_dir.is_dir():
        thresholds = load_thresholds(thresholds_path)
        print("\nNAB's published detectors on the same files, scored by the same code:")
        print(f"{'detector':24s} " + " ".join(f"{p.name:>18s}" for p in PROFILES))
        for detector in PUBLISHED:
            if detector not in thresholds or not (results_dir / detector).is_dir():
                continue
            try:
                scores = {n: read_result_scores(results_dir, detector, n) for n in files}
            except FileNotFoundError:
                continue
            published[detector] = {
                p.name: round(score_corpus(scores, weights, p, thresholds[detector][p.name]).normalized, 2)
                for p in PROFILES
            }
            print(f"{detector:24s} " + " ".join(f"{published[detector][p.name]:18.2f}" for p in PROFILES))
        print(f"{'factorylens':24s} " + " ".join(f"{results[p.name].normalized:18.2f}" for p in PROFILES))

    line = {"bench": "nab", "files": len(files)}
    line.update({p.name: round(results[p.name].normalized, 2) for p in PROFILES})
    line.update(
        {
            "precision": round(std.precision, 3),
            "recall": round(std.recall, 3),
            "latency_from_label_h_median": round(float(np.median(from_label)), 2) if from_label else None,
            "rows_per_s": round(rows / elapsed),
            "published": published,
            "standard_by_category": standard_by_category,
        }
    )
    if cv:
        line["standard_cv"] = round(cv.normalized, 2)
        line["standard_cv_by_category"] = cv_by_category
        line["cv_folds"] = {
            category: {**dict(cv.chosen[category]), "training": round(cv.training[category], 2)}
            for category in categories
        }
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
