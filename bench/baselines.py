"""Seasonal baselines: fit time per series, streaming score throughput and memory per series.

Method. Synthetic fleet-like series (a daily rhythm, a quieter weekend, noise, a few spikes) over
two weeks, at 1-minute (20,160 points) and 5-minute (4,032 points) steps. Pinned to one CPU:

- fit: ``fit_baseline`` on the full two weeks of each of ``--series`` series (season search, STL or
  per-slot profile, bands, predictability); the time for 10,000 series is the mean times 10,000
  (target: under 10 minutes on one core);
- score: a ``StreamingDetector`` warm-started on the first week, then fed the second week in chunks
  of ``--chunk`` points (an hour of 1-minute data by default: what one analysis pass of a live
  service brings), and, for comparison, the whole week in one call (target: 200,000 points/s);
- memory: ``tracemalloc`` growth per detector as the service keeps it (``BaselineBankConfig``
  defaults), and per fitted baseline.

Usage: python bench/baselines.py [--series 20] [--chunk 60]
Last line: {"bench": "baselines", "fit_s_per_series_1min": x, "fit_s_per_series_5min": x,
            "refit_10k_series_s": x, "score_points_per_s": x, ...}
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import tracemalloc

import numpy as np

from factorylens.rca_service.baselines import (
    DAY_S,
    BaselineBankConfig,
    StreamingDetector,
    StreamingDetectorConfig,
    fit_baseline,
)

T0 = 1_700_006_400.0
TWO_WEEKS_S = 14 * DAY_S


def fleet_series(step_s: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = T0 + np.arange(int(TWO_WEEKS_S / step_s)) * step_s
    weekend = ((t - T0) // DAY_S) % 7 >= 5
    v = 60 + 25 * np.sin(2 * np.pi * (t - T0) / DAY_S + rng.uniform(0, 6)) - 15 * weekend
    v += rng.normal(0, 2 + rng.uniform(0, 3), t.size)
    spikes = rng.choice(t.size, 5, replace=False)
    v[spikes] += rng.uniform(20, 40, 5)
    return t, v


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--series", type=int, default=20, help="series fitted per sampling step")
    parser.add_argument("--chunk", type=int, default=60, help="points per detector call when scoring")
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

    result: dict[str, object] = {"bench": "baselines"}
    print(f"{'step':>6s} {'points':>7s} {'fit ms/series':>14s} {'methods':>24s} {'10k series':>11s}")
    fit_baseline(*fleet_series(300.0, 99))  # imports statsmodels outside the timing
    for label, step in (("1min", 60.0), ("5min", 300.0)):
        data = [fleet_series(step, seed) for seed in range(args.series)]
        methods: dict[str, int] = {}
        started = time.perf_counter()
        for t, v in data:
            baseline = fit_baseline(t, v)
            methods[baseline.method] = methods.get(baseline.method, 0) + 1
        per_series = (time.perf_counter() - started) / len(data)
        result[f"fit_s_per_series_{label}"] = round(per_series, 4)
        result[f"refit_10k_series_s_{label}"] = round(per_series * 10_000, 1)
        summary = ", ".join(f"{m} {n}" for m, n in sorted(methods.items()))
        print(f"{label:>6s} {data[0][0].size:7d} {per_series * 1e3:14.1f} {summary:>24s} {per_series * 10_000:10.0f}s")
    result["refit_10k_series_s"] = max(result["refit_10k_series_s_1min"], result["refit_10k_series_s_5min"])

    t, v = fleet_series(60.0, 7)
    half = t.size // 2
    config = StreamingDetectorConfig.for_probation(1440)
    rates = {}
    for name, chunk in (("chunked", args.chunk), ("one call", half)):
        detector = StreamingDetector(config)
        detector.warm_start(t[:half], v[:half])
        started = time.perf_counter()
        for i in range(half, t.size, chunk):
            detector.score(t[i : i + chunk], v[i : i + chunk])
        rates[name] = (t.size - half) / (time.perf_counter() - started)
    print(
        f"\nstreaming score, 1-minute data after a one-week warm start: {rates['chunked']:,.0f} points/s "
        f"in chunks of {args.chunk}, {rates['one call']:,.0f} points/s in one call"
    )
    result["score_points_per_s"] = round(rates["chunked"])
    result["score_points_per_s_one_call"] = round(rates["one call"])

    bank_config = BaselineBankConfig().detector
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    detectors = []
    for seed in range(20):
        ts, vs = fleet_series(300.0, seed)
        detector = StreamingDetector(bank_config)
        detector.score(ts, vs)
        detectors.append(detector)
    after = tracemalloc.take_snapshot()
    per_detector = sum(s.size_diff for s in after.compare_to(before, "filename")) / len(detectors)
    baseline_bytes = []
    for seed in range(5):
        snap = tracemalloc.take_snapshot()
        kept = fit_baseline(*fleet_series(60.0, seed))
        baseline_bytes.append(sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(snap, "filename")))
        del kept
    tracemalloc.stop()
    print(
        f"memory: {per_detector / 1024:.1f} KiB per series in the service (detector, history for refits, "
        f"baseline); a fitted baseline alone {np.median(baseline_bytes) / 1024:.1f} KiB"
    )
    result["bytes_per_series"] = round(per_detector)
    result["bytes_per_baseline"] = round(float(np.median(baseline_bytes)))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
