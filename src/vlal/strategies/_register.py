"""The one registration point of strategy names (imports nothing else from vlal).

A strategy registers itself in its own module::

    from ._register import register

    @register("margin")
    class Margin(UncertaintyStrategy):
        ...

:func:`vlal.make_strategy`, :func:`vlal.available_strategies`, the CLI and the benchmark
harness read the tables below; ``tests/test_registration.py`` checks that ``vlal.__all__``,
the README table and the template tests follow them.
"""

from __future__ import annotations

import re
from typing import Callable

from ..exceptions import VlalInputError

__all__ = ["register", "registered"]

#: name -> factory ``(random_state=..., **params) -> Strategy``
FACTORIES: dict[str, Callable] = {}
#: name -> factory ``(base_strategy, random_state=..., **params) -> Strategy``
WRAPPERS: dict[str, Callable] = {}


def register(name: str, factory: Callable | None = None, *, wrapper: bool = False):
    """Register ``factory(random_state=...) -> Strategy`` under ``name``.

    With ``wrapper=True`` the factory is called as ``factory(base_strategy, random_state=...)``
    and the name is used as ``"name(base)"``. Without ``factory``, returns a class decorator
    (``@register("cec")``) that registers the class and returns it unchanged. Registering a
    name again replaces the earlier factory.

    Raises
    ------
    VlalInputError
        ``name`` is not made of letters, digits, ``-`` or ``_``.
    """
    key = str(name).strip().lower()
    if not re.fullmatch(r"[a-z0-9_\-]+", key):
        raise VlalInputError(f"strategy name must be letters, digits, '-' or '_'; got {name!r}")
    if factory is None:
        def decorate(cls):
            (WRAPPERS if wrapper else FACTORIES)[key] = cls
            return cls

        return decorate
    (WRAPPERS if wrapper else FACTORIES)[key] = factory
    return factory


def registered() -> dict[str, tuple[Callable, bool]]:
    """``{name: (factory, is_wrapper)}`` for every registered strategy name."""
    out = {k: (f, False) for k, f in FACTORIES.items()}
    out.update({k: (f, True) for k, f in WRAPPERS.items()})
    return out
