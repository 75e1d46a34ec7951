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
