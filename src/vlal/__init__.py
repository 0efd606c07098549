"""vlal: active-learning query strategies for vision-language models.

>>> from vlal import CEC
>>> idx = CEC(k=20, alpha=0.1).select(features, probs, budget)  # doctest: +SKIP

The core (scoring functions, strategies, loop, harness) needs only numpy,
scipy, scikit-learn and faiss; the CLIP adapters live in :mod:`vlal.clip` and
import torch only when used.
"""

from .alignment import align_probs
from .exceptions import BudgetExceededError, VlalInputError, WeightsNotFoundError
from .registry import available_strategies, make_strategy, register
from .scoring import (
    calibrate,
    calibrated_entropy,
    contextual_prior,
    entropy,
    k_center_greedy,
    least_confidence,
    margin,
    nearest_to_centers,
    neighbor_uncertainty,
    weighted_kmeans,
    zero_shot_probs,
)
from .strategies import (
    ALFAMix,
    BADGE,
    CalibratedMix,
    LookAhead,
    CEC,
    ClusteringStrategy,
    GCNAL,
    KCenterStrategy,
    PCB,
    CoreSet,
    Entropy,
    LeastConfidence,
    Margin,
    Pool,
    Random,
    Strategy,
    UncertaintyStrategy,
)

__version__ = "0.1.0"

__all__ = [
    "BudgetExceededError",
    "VlalInputError",
    "WeightsNotFoundError",
    "Strategy",
    "Pool",
    "UncertaintyStrategy",
    "ClusteringStrategy",
    "KCenterStrategy",
    "Random",
    "Entropy",
    "CEC",
    "Margin",
    "LeastConfidence",
    "CoreSet",
    "BADGE",
    "ALFAMix",
    "GCNAL",
    "PCB",
    "CalibratedMix",
    "LookAhead",
    "entropy",
    "contextual_prior",
    "calibrate",
    "calibrated_entropy",
    "neighbor_uncertainty",
    "weighted_kmeans",
    "nearest_to_centers",
    "zero_shot_probs",
    "margin",
    "least_confidence",
    "k_center_greedy",
    "make_strategy",
    "available_strategies",
    "register",
    "align_probs",
]
