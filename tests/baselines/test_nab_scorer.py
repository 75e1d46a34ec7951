"""Our NAB scorer against NAB's published detector outputs on NAB's development split: the README of the
shared copy gives the normalised scores a correct scorer must reproduce within 0.1 points. The tests that
need the data skip when there is no copy (``factorylens datasets fetch nab`` gets one)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from factorylens.evaluation import (
    PROFILES,
    NabCorpus,
    file_weights,
    load_thresholds,
    nab_leave_one_group_out,
    normalized_score,
    probation_rows,
    read_result_scores,
    score_corpus,
    score_file,
)

# the shared copy's nab/README.md, "Expected scores on these 41 files"
EXPECTED = {
    "null": (0.00, 0.00, 0.00),
    "random": (10.74, 0.76, 19.66),
    "windowedGaussian": (41.39, 26.48, 47.91),
    "twitterADVec": (46.63, 36.07, 52.44),
    "numenta": (75.52, 68.29, 78.99),
    "ARTime": (74.51, 66.47, 79.36),
}


@pytest.fixture(scope="module")
def corpus(nab_dir) -> tuple[NabCorpus, dict]:
    nab = NabCorpus(nab_dir)
    return nab, {f.name: (f, file_weights(f.data.timestamp, f.windows)) for f in nab}


def test_the_corpus_is_the_documented_one(corpus):
    nab, files = corpus
    assert len(nab) == 41
    assert sum(w.n_windows for _, w in files.values()) == 64


@pytest.mark.parametrize("detector", sorted(EXPECTED))
def test_reproduces_published_scores(corpus, nab_dir, detector):
    _, files = corpus
    thresholds = load_thresholds(nab_dir / "config" / "thresholds.json")[detector]
    scores = {name: read_result_scores(nab_dir / "results", detector, name) for name in files}
    weights = {name: w for name, (_, w) in files.items()}
    for profile, expected in zip(PROFILES, EXPECTED[detector], strict=False):
        got = score_corpus(scores, weights, profile, thresholds[profile.name]).normalized
        assert got == pytest.approx(expected, abs=0.1), (detector, profile.name)


def test_row_weights_match_nabs_own_per_row_weights(corpus, nab_dir):
    """ARTime's result files carry, per row, the weight NAB's current scorer gives a detection there."""
    _, files = corpus
    for name, (_, w) in files.items():
        category, file_name = name.split("/", 1)
        published = pd.read_csv(nab_dir / "results" / "ARTime" / category / f"ARTime_{file_name}")
        for profile in PROFILES:
            ours = np.where(w.window >= 0, profile.tp_weight, profile.fp_weight) * w.unit_weight
            np.testing.assert_allclose(ours, published[f"S(t)_{profile.name}"].to_numpy(), atol=1e-12)


def test_scoring_rules_on_a_hand_made_file():
    ts = pd.date_range("2024-01-01", periods=100, freq="5min")
    w = file_weights(ts, [(ts[50], ts[59])])
    assert w.probation == probation_rows(100) == 15
    standard = PROFILES[0]
    nothing = score_file(np.zeros(100, bool), w, standard)
    assert (nothing.raw, nothing.false_negatives) == (-1.0, 1)
    early = np.zeros(100, bool)
    early[[50, 55]] = True  # only the earliest detection in a window counts, worth the full A_TP
    assert score_file(early, w, standard).raw == pytest.approx(1.0)
    late = np.zeros(100, bool)
    late[59] = True
    assert 0 < score_file(late, w, standard).raw < 0.3  # the last row of a window is worth little
    in_probation = np.zeros(100, bool)
    in_probation[3] = True  # ignored
    assert score_file(in_probation, w, standard).false_positives == 0
    before = np.zeros(100, bool)
    before[20] = True  # before the first window: the full -A_FP
    assert score_file(before, w, standard).raw == pytest.approx(-1.0 - 0.11)
    just_after, far_after = np.zeros(100, bool), np.zeros(100, bool)
    just_after[60], far_after[99] = True, True
    assert score_file(far_after, w, standard).raw < score_file(just_after, w, standard).raw < -1.0


def test_not_a_nab_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"combined_windows.json"):
        NabCorpus(tmp_path)


# Leave-one-group-out on hand-made per-file raw scores: groups a (two files, a window each), b (one
# file, two windows) and c (one file, no windows: false detections only). Over all files "y" is
# better, but on b and c alone "x" is.
CV_GROUPS = {"a/1": "a", "a/2": "a", "b/1": "b", "c/1": "c"}
CV_WINDOWS = {"a/1": 1, "a/2": 1, "b/1": 2, "c/1": 0}
CV_RAW = {
    "x": {"a/1": -1.0, "a/2": -1.0, "b/1": 1.5, "c/1": -0.11},
    "y": {"a/1": 1.0, "a/2": 1.0, "b/1": 0.5, "c/1": -0.55},
}


def test_cross_validation_chooses_each_groups_parameters_without_its_files():
    standard = PROFILES[0]
    cv = nab_leave_one_group_out(CV_RAW, CV_GROUPS, CV_WINDOWS, standard)
    # a's own files would pick y; chosen on b and c only, a gets x
    assert cv.chosen == {"a": "x", "b": "y", "c": "y"}
    assert cv.training["a"] == pytest.approx(100 * (1.5 - 0.11 + 2) / 4)  # b and c: 2 windows
    # whatever a's files score, a's choice and its score on the others do not move
    rigged = {c: {**raw, "a/1": raw["a/1"] + (50.0 if c == "y" else -50.0)} for c, raw in CV_RAW.items()}
    again = nab_leave_one_group_out(rigged, CV_GROUPS, CV_WINDOWS, standard)
    assert (again.chosen["a"], again.training["a"]) == (cv.chosen["a"], cv.training["a"])


def test_cross_validation_normalises_the_held_out_raw_scores_as_one_corpus():
    standard = PROFILES[0]
    cv = nab_leave_one_group_out(CV_RAW, CV_GROUPS, CV_WINDOWS, standard)
    # a scored with x, b and c with y; the windowless file's false detections still count
    assert cv.held_out_raw == {"a/1": -1.0, "a/2": -1.0, "b/1": 0.5, "c/1": -0.55}
    assert cv.normalized == pytest.approx(100 * (-2.05 + 4) / 8) == pytest.approx(normalized_score(-2.05, 4, standard))
    assert normalized_score(-4.0, 4, standard) == 0.0 and normalized_score(4.0, 4, standard) == 100.0


def test_cross_validation_ties_go_to_the_first_candidate():
    tied = {"defaults": CV_RAW["x"], "other": dict(CV_RAW["x"])}
    assert set(nab_leave_one_group_out(tied, CV_GROUPS, CV_WINDOWS, PROFILES[0]).chosen.values()) == {"defaults"}
