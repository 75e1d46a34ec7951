"""Leave-one-group-out cross-validation (``factorylens.evaluation._crossval``) on hand-made rank tables:
a held-out group never chooses its own parameters, ties go to AC@3 then to the default's neighbourhood,
and the pooled figure counts every case once. No dataset or ranker is needed."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from factorylens.evaluation import (
    Overrides,
    choose,
    closeness,
    joint,
    leave_one_group_out,
    one_at_a_time,
)


@dataclass(frozen=True)
class Knobs:
    a: float = 1.0
    b: float = 2.0


DEFAULT = Knobs()
A: Overrides = (("a", 0.5),)
B: Overrides = (("b", 4.0),)
# two groups: x (2 cases), y (3 cases); A is perfect on x and blind on y, B the reverse
GROUPS = {"x1": "x", "x2": "x", "y1": "y", "y2": "y", "y3": "y"}
TABLE = {
    (): {"x1": 2, "x2": 2, "y1": 2, "y2": 2, "y3": 1},
    A: {"x1": 1, "x2": 1, "y1": None, "y2": 5, "y3": 5},
    B: {"x1": 4, "x2": None, "y1": 1, "y2": 1, "y3": 1},
}


def test_each_fold_is_chosen_on_the_other_groups_only():
    cv = leave_one_group_out(TABLE, GROUPS, DEFAULT)
    chosen = {f.held_out: f.chosen for f in cv.folds}
    # x held out: chosen on y, where B is perfect, although A is perfect on x itself
    assert chosen == {"x": B, "y": A}
    fold_x = cv.folds[0]
    assert fold_x.ranks == (4, None) and fold_x.ac(1) == 0.0 and fold_x.train_cases == 3 and fold_x.train_ac1 == 1.0
    assert fold_x.default_ranks == (2, 2)


def test_changing_a_held_out_group_never_changes_its_own_choice():
    """Whatever the held-out cases' ranks, the configuration chosen for their fold stays the same."""
    rigged = {c: dict(ranks) for c, ranks in TABLE.items()}
    rigged[()] |= {"x1": 1, "x2": 1}  # the default now wins x outright
    original, changed = (
        {f.held_out: f.chosen for f in leave_one_group_out(t, GROUPS, DEFAULT).folds} for t in (TABLE, rigged)
    )
    assert changed["x"] == original["x"] == B
    assert changed["y"] == () != original["y"]  # x's cases do choose y's fold


def test_pooled_figures_count_every_case_once():
    cv = leave_one_group_out(TABLE, GROUPS, DEFAULT)
    # held out: x with B -> 0 of 2 at top 1; y with A -> 0 of 3; at top 3: none of x, none of y
    assert cv.cases == 5
    assert cv.ac(1) == 0.0 and cv.ac(3) == 0.0
    # the default: top 1 only y3 -> 1 of 5, which is not the mean of the folds' 0/2 and 1/3
    assert cv.default_ac(1) == pytest.approx(1 / 5)
    assert cv.default_ac(3) == 1.0
    assert cv.default_ac(1) != pytest.approx((cv.folds[0].default_ac(1) + cv.folds[1].default_ac(1)) / 2)


def test_ties_go_to_ac3_then_to_the_configuration_closest_to_the_default():
    cases = ["c1", "c2"]
    near: Overrides = (("a", 1.1),)
    far: Overrides = (("a", 3.0),)
    both: Overrides = (("a", 1.1), ("b", 2.2))
    same = {"c1": 1, "c2": 3}
    assert choose({(): {"c1": 1, "c2": 9}, far: same}, cases, DEFAULT) == far  # AC@3 breaks the AC@1 tie
    assert choose({far: same, near: same, both: same}, cases, DEFAULT) == near
    assert choose({far: same, (): same}, cases, DEFAULT) == ()
    assert closeness(near, DEFAULT) == (1, pytest.approx(0.1))
    assert closeness(both, DEFAULT) == (2, pytest.approx(0.2))


def test_grids_list_the_default_once_and_every_change_from_it():
    grid = {"a": [0.5, 1.0, 2.0], "b": [2.0, 4.0]}
    assert one_at_a_time(grid, DEFAULT) == [(), (("a", 0.5),), (("a", 2.0),), (("b", 4.0),)]
    combos = joint(grid, DEFAULT)
    assert len(combos) == len(set(combos)) == 6 and () in combos
    assert (("a", 2.0), ("b", 4.0)) in combos


def test_one_group_cannot_be_held_out():
    with pytest.raises(ValueError, match="two groups"):
        leave_one_group_out(TABLE, {"x1": "x", "x2": "x"}, DEFAULT)
