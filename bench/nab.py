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

Reported: normalised score per category and in total for the standard, reward_low_FP_rate and
reward_low_FN_rate profiles; event-level precision (detected windows / (detected windows + false
detections)) and recall (detected windows / windows); detection latency from the labelled anomaly
(negative = before it) and from the window start.

Usage: python bench/nab.py [--data DIR] [--chunk 64] [--per-file]
Last line: {"bench": "nab", "files": n, "standard": x, "reward_low_FP_rate": x, "reward_low_FN_rate": x, ...}
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from factorylens.datasets import dataset_or_exit
from factorylens.evaluation import (
    PROFILES,
    NabCorpus,
    file_weights,
    load_thresholds,
    probation_rows,
    read_result_scores,
    score_corpus,
)
from factorylens.rca_service.baselines import ALARM_SCORE, StreamingDetector, StreamingDetectorConfig

PUBLISHED = ("null", "random", "windowedGaussian", "twitterADVec", "numenta", "ARTime")


def seconds(timestamps: pd.Series) -> np.ndarray:
    return (pd.DatetimeIndex(timestamps) - pd.Timestamp(0)).total_seconds().to_numpy()


def run_detector(values: np.ndarray, times_s: np.ndarray, chunk: int) -> np.ndarray:
    detector = StreamingDetector(StreamingDetectorConfig.for_probation(probation_rows(values.size)))
    return np.concatenate(
        [detector.score(times_s[i : i + chunk], values[i : i + chunk]) for i in range(0, values.size, chunk)]
    )


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
    print(f"\nfactorylens streaming detector (threshold {ALARM_SCORE}, {rows / elapsed:,.0f} rows/s incl. fits)")
    print(f"{'category':24s} {'files':>5s} {'windows':>7s} " + " ".join(f"{p.name:>18s}" for p in PROFILES))
    for category in [*categories, "total"]:
        names = [n for n in files if category == "total" or NabCorpus.category(n) == category]
        cells = []
        for p in PROFILES:
            result = score_corpus({n: ours[n] for n in names}, {n: weights[n] for n in names}, p, ALARM_SCORE)
            cells.append(f"{result.normalized:18.2f}" if result.perfect_raw else f"{'(no windows)':>18s}")
        print(f"{category:24s} {len(names):5d} {sum(weights[n].n_windows for n in names):7d} " + " ".join(cells))
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
        }
    )
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
