"""Adapters that run any vlal strategy inside other active-learning libraries.

- :class:`vlal.integrations.skactiveml.SkactivemlStrategy`: a scikit-activeml
  single-annotator pool query strategy (``query(X, y, clf, ...)``).
- :class:`vlal.integrations.modal.ModalStrategy`: a modAL query-strategy callable
  (``learner = ActiveLearner(..., query_strategy=ModalStrategy("cec"))``).

Both libraries are optional (``pip install -e ".[integrations]"`` in the vlal checkout) and are imported
only when the adapter is first used: ``import vlal`` and ``import vlal.integrations``
import neither. See ``docs/integrations.md``.
"""

from __future__ import annotations

import importlib as _importlib

# No __all__: the adapters are resolved lazily (module __getattr__), so that importing this
# package imports neither scikit-activeml nor modAL.
_WHERE = {"SkactivemlStrategy": ".skactiveml", "ModalStrategy": ".modal"}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(_importlib.import_module(_WHERE[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_WHERE))
