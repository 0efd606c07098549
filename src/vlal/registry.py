"""Strategy names used by the CLI and the benchmark harness.

``make_strategy("cec", random_state=0)`` builds a strategy from its name. Wrapped
strategies use call syntax: ``"pcb(cec)"``. Third-party strategies can be added
with :func:`register`.
"""

from __future__ import annotations

import ast
import re
from typing import Callable

from .exceptions import VlalInputError
from .strategies import (
    ALFAMix,
    BADGE,
    CEC,
    GCNAL,
    PCB,
    CoreSet,
    Entropy,
    LeastConfidence,
    Margin,
    Random,
    Strategy,
)

__all__ = ["register", "make_strategy", "available_strategies"]

_FACTORIES: dict[str, Callable[..., Strategy]] = {}
_WRAPPERS: dict[str, Callable[..., Strategy]] = {}


def register(name: str, factory: Callable[..., Strategy], *, wrapper: bool = False) -> None:
    """Register ``factory(random_state=...) -> Strategy`` under ``name``.

    With ``wrapper=True`` the factory is called as ``factory(base_strategy, random_state=...)``
    and the name is used as ``"name(base)"``.
    """
    key = name.strip().lower()
    if not re.fullmatch(r"[a-z0-9_\-]+", key):
        raise VlalInputError(f"strategy name must be letters, digits, '-' or '_'; got {name!r}")
    (_WRAPPERS if wrapper else _FACTORIES)[key] = factory


def available_strategies() -> list[str]:
    """Names accepted by :func:`make_strategy` (wrappers shown as ``name(base)``)."""
    return sorted(_FACTORIES) + [f"{w}(base)" for w in sorted(_WRAPPERS)]


def make_strategy(name: str, random_state=None) -> Strategy:
    """Build the strategy called ``name`` (e.g. ``"cec"``, ``"pcb(entropy)"``, ``"cec[k=10,alpha=0.05]"``).

    ``name[key=value,...]`` passes constructor parameters (Python literals; bare words
    are strings); ``wrapper(base)`` wraps another strategy.

    Raises
    ------
    ValueError
        Unknown name (the message lists the known ones).
    """
    key = name.strip().lower()
    m = re.fullmatch(r"([a-z0-9_\-]+)\((.+)\)", key)
    if m:
        outer, inner = m.group(1), m.group(2)
        if outer not in _WRAPPERS:
            raise VlalInputError(f"unknown wrapper strategy {outer!r}; known: {available_strategies()}")
        return _WRAPPERS[outer](make_strategy(inner, random_state), random_state=random_state)
    params = {}
    m = re.fullmatch(r"([a-z0-9_\-]+)\[(.*)\]", key)
    if m:
        key, params = m.group(1), _parse_params(m.group(2), name)
    if key not in _FACTORIES:
        raise VlalInputError(f"unknown strategy {name!r}; known: {available_strategies()}")
    try:
        return _FACTORIES[key](random_state=random_state, **params)
    except TypeError as err:
        raise VlalInputError(f"bad parameters in {name!r}: {err}") from err


def _parse_params(text: str, name: str) -> dict:
    """``"k=10, alpha=0.05"`` -> ``{"k": 10, "alpha": 0.05}`` (values are Python literals)."""
    out = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        k, sep, v = item.partition("=")
        if not sep or not k.strip().isidentifier():
            raise VlalInputError(f"bad parameter {item!r} in {name!r}; use name[key=value,...]")
        try:
            out[k.strip()] = ast.literal_eval(v.strip())
        except (ValueError, SyntaxError):
            out[k.strip()] = v.strip()  # bare words, e.g. clustering=greedy
    return out


register("random", Random)
register("entropy", Entropy)
register("cec", CEC)
# CEC ablations (paper Fig. 3)
register("cec-nocal", lambda random_state=None, **kw: CEC(calibration=False, random_state=random_state, **kw))
register("cec-nonn", lambda random_state=None, **kw: CEC(neighbor_term=False, random_state=random_state, **kw))
register("cec-kmeans", lambda random_state=None, **kw: CEC(clustering="plain", random_state=random_state, **kw))
register("cec-greedy", lambda random_state=None, **kw: CEC(clustering="greedy", random_state=random_state, **kw))
# Baselines (paper Table 1) and the PCB wrapper
register("margin", Margin)
register("leastconf", LeastConfidence)
register("coreset", CoreSet)
register("badge", BADGE)
register("alfamix", ALFAMix)
register("gcnal", GCNAL)
register("pcb", PCB, wrapper=True)  # "pcb(entropy)", "pcb(cec)", ...
