"""Accuracy scoring against public labelled data: the NAB scorer for detection."""

from factorylens.rca_service.evaluation._nab import (
    PROFILE_BY_NAME,
    PROFILES,
    CorpusScore,
    CostProfile,
    FileScore,
    FileWeights,
    NabCorpus,
    NabFile,
    file_weights,
    load_thresholds,
    probation_rows,
    read_result_scores,
    scaled_sigmoid,
    score_corpus,
    score_file,
)

__all__ = [
    "PROFILES", "PROFILE_BY_NAME", "CorpusScore", "CostProfile", "FileScore", "FileWeights",
    "NabCorpus", "NabFile", "file_weights", "load_thresholds", "probation_rows",
    "read_result_scores", "scaled_sigmoid", "score_corpus", "score_file",
]
