"""Query strategies. Each one is a :class:`Strategy` with the same ``select``."""

from .alfamix import ALFAMix
from .badge import BADGE
from .calibrated_mix import CalibratedMix
from .base import Pool, ProbabilisticModel, Strategy
from .cec import CEC
from .clustering import ClusteringStrategy
from . import cec_ablations  # noqa: F401  (registers cec-nocal, cec-nonn, ...)
from .coreset import CoreSet
from .gcnal import GCNAL
from .kcenter import KCenterStrategy
from .least_confidence import LeastConfidence
from .margin import Margin
from .lookahead import LookAhead
from .pcb import PCB
from .random import Random
from .uncertainty import Entropy, UncertaintyStrategy

__all__ = [
    "Strategy",
    "Pool",
    "ProbabilisticModel",
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
]
