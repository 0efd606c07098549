"""Strategy names used by the CLI and the benchmark harness.

``make_strategy("cec", random_state=0)`` builds a strategy from its name. Wrapped
strategies use call syntax: ``"pcb(cec)"``. Strategies register
themselves in their own module with ``@register("name")`` (see
:mod:`vlal.strategies._register`); third-party ones can do the same, or call
``register(name, factory)``.
"""

from __future__ import annotations

import ast
import re

from .exceptions import VlalInputError
from .strategies import _register
from .strategies import (
    ALFAMix,
    BADGE,
    CalibratedMix,
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

# The tables live in vlal.strategies._register: each strategy registers itself in its own
# module with ``@register("name")``; this module only builds strategies from names.
_FACTORIES = _register.FACTORIES
_WRAPPERS = _register.WRAPPERS
register = _register.register


def available_strategies() -> list[str]:
    """Names accepted by :func:`make_strategy` (wrappers shown as ``name(<base>)``)."""
    return sorted(_FACTORIES) + [f"{w}(<base>)" for w in sorted(_WRAPPERS)]


_NAME = r"\s*([A-Za-z0-9_\-]+)\s*"


_MAX_NAME_CHARS = 1000
_MAX_DEPTH = 8  # "pcb(cec[k=10])" is 2 deep


def make_strategy(name: str, random_state=None) -> Strategy:
    """Build a strategy from its name.

    Forms: ``"cec"``; ``"cec[k=10,alpha=0.05]"`` (constructor parameters as Python
    literals, e.g. ``False``, ``0.1``, ``'greedy'``; bare words are strings);
    ``"pcb(entropy)"`` (a wrapper around a base strategy); ``"pcb[gamma=0.2](cec[k=10])"``, or
    equivalently ``"pcb(cec[k=10])[gamma=0.2]"`` (the wrapper's parameters after its base).
    Strategy names are case-insensitive; parameter values are not.

    Raises
    ------
    ValueError
        Unknown name (the message lists the known ones), malformed or unknown parameters, a
        name over 1,000 characters or nesting brackets more than 8 deep.
    """
    if not isinstance(name, str):
        raise VlalInputError(f"strategy name must be a string; got {type(name).__name__}")
    if len(name) > _MAX_NAME_CHARS:  # also keeps every message below from echoing a huge name
        raise VlalInputError(f"strategy name of {len(name)} characters (starting {name[:40]!r}); at most "
                             f"{_MAX_NAME_CHARS}")
    depths = [depth for _, depth, _ in _scan(name)]  # brackets inside quoted values do not count
    if depths and max(depths) > _MAX_DEPTH:
        raise VlalInputError(f"strategy name {name[:40]!r}... nests brackets {max(depths)} deep; at most {_MAX_DEPTH} "
                             "(a wrapper around a wrapper is rarely useful)")
    if depths and (min(depths) < 0 or depths[-1] != 0):
        raise VlalInputError(f"malformed strategy name {name!r}: unbalanced brackets (brackets must pair up); "
                             "use name, name[key=value,...] or wrapper(base)")
    # a wrapper: "pcb[gamma=0.2](cec)", or its parameters after the base, "pcb(cec)[gamma=0.2]"
    # (the wrapper's listed name is "pcb(<base>)", and parameters follow a name)
    m = re.fullmatch(_NAME + r"(?:\[(.*?)\])?\s*\((.+)\)\s*(?:\[(.*)\])?\s*", name)
    if m:
        if m.group(2) is not None and m.group(4) is not None:
            raise VlalInputError(f"parameters of {m.group(1)!r} given twice in {name!r}; give them once, "
                                 f"{m.group(1)}[...](base) or {m.group(1)}(base)[...]")
        outer, inner = m.group(1).lower(), m.group(3)
        params = _parse_params(m.group(2) or m.group(4) or "", name)
        if outer not in _WRAPPERS:
            raise VlalInputError(f"unknown wrapper strategy {outer!r}; known: {available_strategies()}")
        base = make_strategy(inner, random_state)
        return _build(_WRAPPERS[outer], name, base, random_state=random_state, params=params)
    m = re.fullmatch(_NAME + r"(?:\[(.*)\])?\s*", name)
    key = m.group(1).lower() if m else None
    if key not in _FACTORIES:
        if key in _WRAPPERS:
            raise VlalInputError(f"{key!r} wraps a base strategy: name it as {key}(<base>), e.g. {key}(cec)")
        if m is None and any(c in name for c in "[]()"):
            raise VlalInputError(f"malformed strategy name {name!r}: use name, name[key=value,...] or "
                                 f"wrapper(base)")
        raise VlalInputError(f"unknown strategy {name!r}; known: {available_strategies()}")
    return _build(_FACTORIES[key], name, random_state=random_state, params=_parse_params(m.group(2) or "", name))


def _build(factory, name, *args, random_state, params: dict) -> Strategy:
    params = dict(params)
    if "random_state" in params:  # "cec[random_state=3]": the name's seed, unless both are given
        if random_state is not None:
            raise VlalInputError(f"random_state given twice: in {name!r} and as make_strategy's keyword; give it once")
        random_state = params.pop("random_state")
    try:
        strategy = factory(*args, random_state=random_state, **params)
    except TypeError as err:
        import inspect

        try:
            sig = inspect.signature(factory)
            names = [p for p in sig.parameters if p != "self"][len(args):]  # after the base
            accepted = [p for p in names if p != "random_state"]
            if any(v.kind is inspect.Parameter.VAR_KEYWORD for v in sig.parameters.values()):
                accepted = None  # a factory passing **kw on (the CEC ablations): the class' own message
        except (TypeError, ValueError):
            accepted = None
        unknown = sorted(set(params) - set(accepted)) if accepted is not None else []
        if unknown:
            raise VlalInputError(f"bad parameters in {name!r}: {', '.join(map(repr, unknown))} not accepted; "
                                 f"it takes {accepted or 'no parameters'}") from err
        fixed = re.search(r"multiple values for keyword argument '(\w+)'", str(err))
        if fixed:
            raise VlalInputError(f"bad parameters in {name!r}: {fixed.group(1)!r} is fixed by this strategy name "
                                 "(an ablation of CEC); use 'cec[...]' to set it") from err
        raise VlalInputError(f"bad parameters in {name!r}: {err}") from err
    if isinstance(strategy, Strategy):
        try:
            strategy._validate_params()  # a bad name fails here, not at the first query
        except VlalInputError as err:
            if str(err).startswith("random_state") and "random_state" not in params:
                raise  # make_strategy's own random_state argument, not the name
            raise VlalInputError(f"bad parameters in {name!r}: {err}") from None
    return strategy


def _scan(s: str):
    """Yield ``(char, bracket depth after it, inside quotes)`` for each character of a name:
    the one reading of brackets and quotes shared by the bracket check and the splitter."""
    depth, quote = 0, None
    for ch in s:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        yield ch, depth, quote is not None


def split_top_level(s: str) -> list[str]:
    """Split on commas outside brackets and quotes: ``"pcb(cec),cec[k=10,alpha=1]"`` ->
    ``["pcb(cec)", "cec[k=10,alpha=1]"]``; ``"a='x,y',b=1"`` -> ``["a='x,y'", "b=1"]``."""
    parts, cur = [], ""
    for ch, depth, quoted in _scan(s):
        if ch == "," and depth == 0 and not quoted:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return parts


def _parse_params(text: str, name: str) -> dict:
    """``"k=10, alpha=0.05"`` -> ``{"k": 10, "alpha": 0.05}`` (values are Python literals)."""
    out = {}
    for item in filter(None, (t.strip() for t in split_top_level(text))):
        k, sep, v = item.partition("=")
        k = k.strip()
        if not sep or not k.isidentifier():
            raise VlalInputError(f"bad parameter {item!r} in {name!r}; use name[key=value,...]")
        if k in out:
            raise VlalInputError(f"parameter {k!r} given twice in {name!r}")
        word = v.strip()
        if word.lower() in ("nan", "inf", "+inf", "-inf"):  # numbers, so that the check names them as such
            out[k] = float(word)
            continue
        if word.lower() in ("true", "false"):  # as a shell user types them ("none" stays a word: diversity=none)
            out[k] = word.lower() == "true"
            continue
        if k == "random_state" and word.lower() == "none":  # a seed is never the word "none"
            out[k] = None
            continue
        try:
            out[k] = ast.literal_eval(word)
        except (ValueError, SyntaxError):
            if not re.fullmatch(r"[A-Za-z0-9_.\-]+", word):
                raise VlalInputError(f"malformed value {word!r} of {k!r} in {name!r}; values are numbers, "
                                     "True/False/None, quoted strings or bare words") from None
            out[k] = word  # bare words, e.g. clustering=greedy
    return out
