"""Root-cause ranking accuracy: AC@k and Avg@k, per fault type and overall.

Definitions follow the field (Pham et al., ASE 2024, "Root Cause Analysis for Microservices based on
Causal Inference: How Far Are We?", §3.2.2; BARO, Pham et al., FSE 2024, §4.2.2):
AC@k is the share of cases whose true root cause is among the first k entries of the ranking, and
Avg@k = (1/k) * sum of AC@1..AC@k. Every labelled set we score has one root cause per case, where the
general set form of AC@k reduces to this top-k hit rate. A cause that is missing from the ranking
counts as a miss at every k, so a method cannot gain by leaving the true cause out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

OVERALL = "all"


def rank_of(root_cause: str, ranking: Sequence[str]) -> int | None:
    """1-based position of ``root_cause`` in ``ranking``; None when it is not ranked at all."""
    for position, entity in enumerate(ranking, 1):
        if entity == root_cause:
            return position
    return None


def accuracy_at(ranks: Sequence[int | None], k: int) -> float:
    """AC@k over cases whose true cause sits at ``ranks`` (None = not ranked); NaN for no cases."""
    if not ranks:
        return float("nan")
    return float(np.mean([r is not None and r <= k for r in ranks]))


def average_accuracy(ranks: Sequence[int | None], k: int = 5) -> float:
    """Avg@k: the mean of AC@1..AC@k, which rewards a cause at rank 2 more than one at rank 5."""
    return float(np.mean([accuracy_at(ranks, j) for j in range(1, k + 1)]))


@dataclass(frozen=True)
class CaseResult:
    """One scored case: where the true cause landed, and how long the ranking took."""

    case_id: str
    fault_type: str
    root_cause: str
    rank: int | None
    seconds: float
    top: tuple[str, ...] = ()

    @classmethod
    def score(
        cls, case_id: str, fault_type: str, root_cause: str, ranking: Sequence[str], seconds: float, keep: int = 5
    ) -> CaseResult:
        return cls(case_id, fault_type, root_cause, rank_of(root_cause, ranking), seconds, tuple(ranking[:keep]))


def summarize(results: Iterable[CaseResult]) -> pd.DataFrame:
    """One row per fault type plus ``OVERALL`` (the field reports both, never only the average):
    n, ac1, ac3, avg5 and mean seconds per case."""
    frame = pd.DataFrame([{"fault_type": r.fault_type, "rank": r.rank, "seconds": r.seconds} for r in results])
    columns = ["n", "ac1", "ac3", "avg5", "sec_per_case"]
    if frame.empty:
        return pd.DataFrame(columns=columns).rename_axis("fault_type")

    def row(part: pd.DataFrame) -> dict[str, float]:
        ranks = [None if pd.isna(r) else int(r) for r in part["rank"]]
        return {
            "n": len(ranks),
            "ac1": accuracy_at(ranks, 1),
            "ac3": accuracy_at(ranks, 3),
            "avg5": average_accuracy(ranks, 5),
            "sec_per_case": float(part["seconds"].mean()),
        }

    rows = {fault: row(part) for fault, part in frame.groupby("fault_type", sort=True)}
    rows[OVERALL] = row(frame)
    table = pd.DataFrame.from_dict(rows, orient="index", columns=columns).rename_axis("fault_type")
    return table.astype({"n": int})
