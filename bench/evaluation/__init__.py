"""Accuracy scoring against public labelled data: the NAB scorer for detection; AC@k and Avg@k for
root-cause ranking, with adapters from the PetShop and Nezha datasets."""

from factorylens.evaluation._datasets import RcaCase, load_nezha, load_petshop, pod_to_service
from factorylens.evaluation._nab import (
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
from factorylens.evaluation._ranking import (
    OVERALL,
    CaseResult,
    accuracy_at,
    average_accuracy,
    rank_of,
    summarize,
)
from factorylens.evaluation._specificity import (
    Specificity,
    nezha_day_specificity,
    nezha_specificity,
    petshop_scenario_specificity,
    petshop_specificity,
)

__all__ = [
    "OVERALL",
    "PROFILES",
    "PROFILE_BY_NAME",
    "CaseResult",
    "CorpusScore",
    "CostProfile",
    "FileScore",
    "FileWeights",
    "NabCorpus",
    "NabFile",
    "RcaCase",
    "Specificity",
    "accuracy_at",
    "average_accuracy",
    "file_weights",
    "load_nezha",
    "load_petshop",
    "load_thresholds",
    "nezha_day_specificity",
    "nezha_specificity",
    "petshop_scenario_specificity",
    "petshop_specificity",
    "pod_to_service",
    "probation_rows",
    "rank_of",
    "read_result_scores",
    "scaled_sigmoid",
    "score_corpus",
    "score_file",
    "summarize",
]
