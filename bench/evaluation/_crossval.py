"""Leave-one-group-out cross-validation of a ranker's parameters, from ranks already computed.

An in-sample figure scores parameters on the cases they were chosen on. Here each group of cases (a
traffic scenario, a day, a dataset) is held out in turn: the parameters are chosen on the other
groups alone (highest AC@1, ties broken by AC@3, then by the candidate closest to the default) and
the held-out group is scored with them. The pooled held-out figure counts every case once, in the
fold that held it out. Everything here works on ``candidate -> case -> rank`` tables, so the
arithmetic is tested without running a ranker and each ranking is computed once for every fold.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from factorylens.evaluation._ranking import accuracy_at

# A candidate: the parameters it changes from the default, as sorted (name, value) pairs; () is the default.
Overrides = tuple[tuple[str, float], ...]
# candidate -> case id -> 1-based rank of the true cause (None: not ranked)
RankTable = Mapping[Overrides, Mapping[str, int | None]]
DEFAULT: Overrides = ()


def one_at_a_time(grid: Mapping[str, Sequence[float]], default: object) -> list[Overrides]:
    """The default, then every grid value of one parameter with the others at their defaults
    (a grid value equal to the default is the default itself, listed once)."""
    candidates: list[Overrides] = [DEFAULT]
    for name, values in grid.items():
        candidates += [((name, v),) for v in values if v != getattr(default, name)]
    return candidates


def joint(grid: Mapping[str, Sequence[float]], default: object) -> list[Overrides]:
    """Every combination of the grid's values, each written as its changes from the default."""
    combos: list[Overrides] = [DEFAULT]
    for name, values in grid.items():
        combos = [(*c, (name, v)) if v != getattr(default, name) else c for c in combos for v in values]
    return list(dict.fromkeys(tuple(sorted(c)) for c in combos))


def closeness(candidate: Overrides, default: object) -> tuple[int, float]:
    """How far a candidate strays from the default: parameters changed, then their summed relative
    steps; smaller is closer, and a tie in accuracy goes to the closer candidate."""
    steps = []
    for name, value in candidate:
        base = float(getattr(default, name))
        steps.append(abs(value - base) / abs(base) if base else abs(value))
    return len(candidate), sum(steps)


def _accuracy(ranks: Mapping[str, int | None], cases: Iterable[str], k: int) -> float:
    return accuracy_at([ranks[c] for c in cases], k)


def choose(table: RankTable, cases: Sequence[str], default: object) -> Overrides:
    """The candidate with the highest AC@1 on ``cases``, then AC@3, then the closest to the default."""

    def key(candidate: Overrides) -> tuple[float, float, int, float]:
        ranks = table[candidate]
        changed, step = closeness(candidate, default)
        return (-_accuracy(ranks, cases, 1), -_accuracy(ranks, cases, 3), changed, step)

    return min(table, key=key)


@dataclass(frozen=True)
class Fold:
    """One held-out group: the candidate chosen without it, and the ranks of its cases with that
    candidate and with the default."""

    held_out: str
    chosen: Overrides
    train_cases: int
    train_ac1: float
    ranks: tuple[int | None, ...]
    default_ranks: tuple[int | None, ...]

    def ac(self, k: int) -> float:
        return accuracy_at(self.ranks, k)

    def default_ac(self, k: int) -> float:
        return accuracy_at(self.default_ranks, k)


@dataclass(frozen=True)
class CrossValidation:
    """Every fold, and the pooled held-out and default figures over all their cases."""

    folds: tuple[Fold, ...]

    def ac(self, k: int) -> float:
        return accuracy_at([r for f in self.folds for r in f.ranks], k)

    def default_ac(self, k: int) -> float:
        return accuracy_at([r for f in self.folds for r in f.default_ranks], k)

    @property
    def cases(self) -> int:
        return sum(len(f.ranks) for f in self.folds)


def leave_one_group_out(table: RankTable, groups: Mapping[str, str], default: object) -> CrossValidation:
    """Hold out each group of ``groups`` (case id -> group) in turn; choose on the rest, score it.

    ``table`` must rank every case with the default (``()``) and every candidate; ``default`` is the
    default configuration, for the tie-break by closeness. Needs at least two groups."""
    names = list(dict.fromkeys(groups.values()))
    if len(names) < 2:
        raise ValueError(f"leave-one-group-out needs at least two groups, got {names}")
    folds = []
    for held_out in names:
        test = [c for c, g in groups.items() if g == held_out]
        train = [c for c, g in groups.items() if g != held_out]
        chosen = choose(table, train, default)
        folds.append(
            Fold(
                held_out,
                chosen,
                len(train),
                _accuracy(table[chosen], train, 1),
                tuple(table[chosen][c] for c in test),
                tuple(table[DEFAULT][c] for c in test),
            )
        )
    return CrossValidation(tuple(folds))
