"""Query strategies. Each one is a :class:`Strategy` with the same ``select``."""

from .base import Pool, ProbabilisticModel, Strategy
from .cec import CEC
from .random import Random
from .uncertainty import Entropy, UncertaintyStrategy

__all__ = ["Strategy", "Pool", "ProbabilisticModel", "UncertaintyStrategy", "Random", "Entropy", "CEC"]
