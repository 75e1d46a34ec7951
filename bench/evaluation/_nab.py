"""The Numenta Anomaly Benchmark scorer, re-implemented from its published rules.

Follows numenta/NAB ``nab/sweeper.py`` and ``nab/scorer.py`` (Lavin & Ahmad 2015; Ahmad et al. 2017,
doi:10.1016/j.neucom.2017.04.070): rows inside the probationary period are ignored; inside a window
only the earliest detection counts, weighted by a scaled sigmoid of its position; every detection
outside a window costs ``A_FP`` times a sigmoid of its distance past the previous window (``-A_FP``
before the first); every missed window costs ``A_FN``; totals are normalised so that the null
detector scores 0 and the perfect one 100.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np
import pandas as pd

PROBATION_FRACTION = 0.15

K = TypeVar("K")
PROBATION_CAP_ROWS = 750


@dataclass(frozen=True)
class CostProfile:
    name: str
    tp_weight: float
    fp_weight: float
    fn_weight: float


PROFILES: tuple[CostProfile, ...] = (
    CostProfile("standard", 1.0, 0.11, 1.0),
    CostProfile("reward_low_FP_rate", 1.0, 0.22, 1.0),
    CostProfile("reward_low_FN_rate", 1.0, 0.11, 2.0),
)
PROFILE_BY_NAME: Mapping[str, CostProfile] = {p.name: p for p in PROFILES}


def probation_rows(n_rows: int) -> int:
    """NAB's probationary period: the first 15% of a file, at most 750 rows."""
    return min(int(math.floor(PROBATION_FRACTION * n_rows)), PROBATION_CAP_ROWS)


def scaled_sigmoid(position: float | np.ndarray) -> float | np.ndarray:
    """``2/(1+e^(5x)) - 1`` for x <= 3, else -1 (NAB's ``scaledSigmoid``)."""
    x = np.asarray(position, dtype=float)
    value = np.where(x > 3.0, -1.0, 2.0 / (1.0 + np.exp(np.minimum(5.0 * x, 700.0))) - 1.0)
    return float(value) if np.ndim(value) == 0 else value


@dataclass
class FileWeights:
    """Per-row weights of one file: what a detection on that row would add, before the profile's
    A_TP/A_FP factors. ``window`` is the window index of a row, -1 outside any window."""

    n_rows: int
    probation: int
    window: np.ndarray
    unit_weight: np.ndarray
    n_windows: int


def file_weights(
    timestamps: Sequence[pd.Timestamp] | pd.DatetimeIndex, windows: Iterable[tuple[pd.Timestamp, pd.Timestamp]]
) -> FileWeights:
    """Lay NAB's windows over a file's rows. A row's unit weight is the scaled sigmoid of its
    relative position (in a window: rows left to its end over its width, normalised so the first
    row is worth 1; after a window: the distance past its end in window widths; before the first
    window: -1)."""
    ts = timestamps if isinstance(timestamps, pd.DatetimeIndex) else pd.DatetimeIndex(list(timestamps))
    n = len(ts)
    window = np.full(n, -1, dtype=np.int64)
    weight = np.full(n, -1.0)
    spans: list[tuple[int, int]] = []
    for start, end in sorted(windows):
        left = int(ts.searchsorted(pd.Timestamp(start), side="left"))
        right = int(ts.searchsorted(pd.Timestamp(end), side="right")) - 1
        if right >= left:
            spans.append((left, right))
    peak = scaled_sigmoid(-1.0)
    previous_right: int | None = None
    previous_width = 0.0
    cursor = 0
    for w, (left, right) in enumerate(spans):
        if previous_right is not None:
            idx = np.arange(cursor, left)
            weight[cursor:left] = scaled_sigmoid((idx - previous_right) / (previous_width - 1.0))
        width = float(right - left + 1)
        idx = np.arange(left, right + 1)
        weight[left : right + 1] = scaled_sigmoid(-(right - idx + 1) / width) / peak
        window[left : right + 1] = w
        previous_right, previous_width, cursor = right, width, right + 1
    if previous_right is not None and cursor < n:
        idx = np.arange(cursor, n)
        weight[cursor:] = scaled_sigmoid((idx - previous_right) / max(previous_width - 1.0, 1.0))
    return FileWeights(n, probation_rows(n), window, weight, len(spans))


@dataclass
class FileScore:
    raw: float
    true_positives: int
    false_positives: int
    false_negatives: int
    detection_delays: list[int] = field(default_factory=list)


def score_file(detections: np.ndarray, weights: FileWeights, profile: CostProfile) -> FileScore:
    """Score one file's boolean detections (one per row) under ``profile``."""
    detections = np.asarray(detections, dtype=bool)
    if detections.shape != (weights.n_rows,):
        raise ValueError(f"expected {weights.n_rows} detections, got {detections.shape}")
    scored = detections.copy()
    scored[: weights.probation] = False
    inside = weights.window >= 0
    false_pos = scored & ~inside
    raw = float(profile.fp_weight * weights.unit_weight[false_pos].sum())
    tp = fn = 0
    delays: list[int] = []
    for w in range(weights.n_windows):
        rows = np.flatnonzero((weights.window == w) & scored)
        if rows.size:
            raw += profile.tp_weight * float(weights.unit_weight[rows[0]])
            tp += 1
            delays.append(int(rows[0] - np.flatnonzero(weights.window == w)[0]))
        else:
            raw -= profile.fn_weight
            fn += 1
    return FileScore(raw, tp, int(false_pos.sum()), fn, delays)


def normalized_score(raw: float, n_windows: int, profile: CostProfile) -> float:
    """A corpus' summed raw score on NAB's scale: the null detector (every window missed) scores 0
    and the perfect one (every window at its start, nothing else) 100; 0 when there are no windows."""
    null_raw = -profile.fn_weight * n_windows
    span = profile.tp_weight * n_windows - null_raw
    return 100.0 * (raw - null_raw) / span if span else 0.0


@dataclass
class CorpusScore:
    profile: str
    threshold: float
    raw: float
    null_raw: float
    perfect_raw: float
    normalized: float
    true_positives: int
    false_positives: int
    false_negatives: int
    per_file: dict[str, FileScore]

    @property
    def precision(self) -> float:
        """Event-level precision: detected windows over detected windows plus FP rows."""
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else 0.0

    @property
    def recall(self) -> float:
        windows = self.true_positives + self.false_negatives
        return self.true_positives / windows if windows else 0.0


def score_corpus(
    scores: Mapping[str, np.ndarray], weights: Mapping[str, FileWeights], profile: CostProfile, threshold: float
) -> CorpusScore:
    """Score anomaly scores in [0, 1] per file at one threshold (a row detects when its score is
    ``>= threshold``, inclusive as in NAB) and normalise over these files."""
    per_file = {name: score_file(np.asarray(s) >= threshold, weights[name], profile) for name, s in scores.items()}
    n_windows = sum(weights[name].n_windows for name in scores)
    raw = sum(f.raw for f in per_file.values())
    return CorpusScore(
        profile.name,
        threshold,
        raw,
        -profile.fn_weight * n_windows,
        profile.tp_weight * n_windows,
        normalized_score(raw, n_windows, profile),
        sum(f.true_positives for f in per_file.values()),
        sum(f.false_positives for f in per_file.values()),
        sum(f.false_negatives for f in per_file.values()),
        per_file,
    )


@dataclass
class NabFile:
    name: str
    data: pd.DataFrame
    windows: list[tuple[pd.Timestamp, pd.Timestamp]]
    labels: list[pd.Timestamp]


class NabCorpus:
    """A folder in NAB's layout: ``<category>/<file>.csv`` plus ``labels/combined_windows.json``
    (and, optionally, ``labels/combined_labels.json``)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        windows_path = self.root / "labels" / "combined_windows.json"
        if not windows_path.is_file():
            raise FileNotFoundError(f"{windows_path} not found: not a NAB-layout folder")
        self._windows: dict[str, list] = json.loads(windows_path.read_text())
        labels_path = self.root / "labels" / "combined_labels.json"
        self._labels: dict[str, list] = json.loads(labels_path.read_text()) if labels_path.is_file() else {}
        self.names = sorted(name for name in self._windows if (self.root / name).is_file())
        if not self.names:
            raise FileNotFoundError(f"no data files of {windows_path} exist under {self.root}")

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[NabFile]:
        for name in self.names:
            yield self.load(name)

    def load(self, name: str) -> NabFile:
        data = pd.read_csv(self.root / name, parse_dates=["timestamp"])
        windows = [(pd.Timestamp(a), pd.Timestamp(b)) for a, b in self._windows[name]]
        labels = [pd.Timestamp(t) for t in self._labels.get(name, [])]
        return NabFile(name, data, windows, labels)

    @staticmethod
    def category(name: str) -> str:
        return name.split("/", 1)[0]


def load_thresholds(path: str | Path) -> dict[str, dict[str, float]]:
    """NAB's ``config/thresholds.json`` as ``{detector: {profile: threshold}}``."""
    table = json.loads(Path(path).read_text())
    return {det: {prof: float(v["threshold"]) for prof, v in profs.items()} for det, profs in table.items()}


def read_result_scores(results_dir: str | Path, detector: str, name: str) -> np.ndarray:
    """The ``anomaly_score`` column of NAB's published result file for ``name``."""
    category, file_name = name.split("/", 1)
    path = Path(results_dir) / detector / category / f"{detector}_{file_name}"
    return pd.read_csv(path, usecols=["anomaly_score"])["anomaly_score"].to_numpy(float)


@dataclass
class NabCrossValidation(Generic[K]):
    """Leave-one-group-out: per held-out group, the candidate chosen on the other groups and its
    normalised score there; per file, the raw score of its group's choice; and those held-out raw
    scores normalised over all files, as :func:`score_corpus` normalises a corpus."""

    chosen: dict[str, K]
    training: dict[str, float]
    held_out_raw: dict[str, float]
    normalized: float


def nab_leave_one_group_out(
    raw: Mapping[K, Mapping[str, float]],
    groups: Mapping[str, str],
    n_windows: Mapping[str, int],
    profile: CostProfile,
) -> NabCrossValidation[K]:
    """Choose a candidate (a parameter set) per group by the normalised score of ``raw`` (candidate
    -> file -> raw score) on the files of the other groups only, then score each group's files with
    its choice. The held-out scores measure how the choice generalises to a kind of series it never
    saw. Ties go to the earlier candidate, so list the frozen defaults first."""
    candidates = list(raw)
    if not candidates:
        raise ValueError("no candidates")
    chosen: dict[str, K] = {}
    training: dict[str, float] = {}
    held_out: dict[str, float] = {}
    for group in sorted(set(groups.values())):
        others = [name for name, g in groups.items() if g != group]
        windows = sum(n_windows[name] for name in others)
        best = max(
            candidates, key=lambda c: normalized_score(sum(raw[c][name] for name in others), windows, profile)
        )  # max keeps the first of equals
        chosen[group] = best
        training[group] = normalized_score(sum(raw[best][name] for name in others), windows, profile)
        held_out.update({name: raw[best][name] for name, g in groups.items() if g == group})
    total = normalized_score(sum(held_out.values()), sum(n_windows[name] for name in groups), profile)
    return NabCrossValidation(chosen, training, held_out, total)
