"""Pure tensor math of STORM: no modules with state beyond buffers, no environment, no trainer."""

from storm_wm.ops.distributions import (
    categorical_entropy,
    categorical_kl,
    free_bits_kl,
    sample_one_hot,
    unimix_logits,
)
from storm_wm.ops.normalization import ReturnNormalizer, batch_percentiles
from storm_wm.ops.returns import lambda_returns
from storm_wm.ops.twohot import TwoHot, symexp, symlog

__all__ = [
    "ReturnNormalizer",
    "TwoHot",
    "batch_percentiles",
    "categorical_entropy",
    "categorical_kl",
    "free_bits_kl",
    "lambda_returns",
    "sample_one_hot",
    "symexp",
    "symlog",
    "unimix_logits",
]
