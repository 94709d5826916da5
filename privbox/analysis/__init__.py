"""Analyses of leakage: rank analysis (RA-i, coefficient-matrix rank) and GInfoR."""

from .rank import (
    CoefficientSystem,
    LayerRank,
    RankAnalysis,
    coefficient_matrix_rank,
    fc_coefficient_system,
    ra_index,
    ra_index_from_sizes,
    rank_analysis,
    resnet_block_weights,
    set_maxpool_kernel,
    softmax_ce_deltas,
    trace_layer_sizes,
)
from .ginfor import GInfoRTable, ginfor_to_markdown, gradient_information_ratio

__all__ = [
    "CoefficientSystem",
    "LayerRank",
    "RankAnalysis",
    "coefficient_matrix_rank",
    "fc_coefficient_system",
    "ra_index",
    "ra_index_from_sizes",
    "rank_analysis",
    "resnet_block_weights",
    "set_maxpool_kernel",
    "softmax_ce_deltas",
    "trace_layer_sizes",
    "GInfoRTable",
    "ginfor_to_markdown",
    "gradient_information_ratio",
]
