"""Warnings name the caller's line, also when raised deep inside vlal (issue 10, item 6)."""

import inspect
import warnings

import numpy as np
import pytest

import vlal
from vlal._warnings import warn_caller


def _line_of_next_statement() -> int:
    return inspect.currentframe().f_back.f_lineno + 1


def test_scoring_warning_points_at_the_call():
    z = np.random.default_rng(0).normal(size=(4, 3))
    h = np.ones(4)
    line = _line_of_next_statement()
    with pytest.warns(UserWarning, match="k=10 >= number of candidates") as rec:
        vlal.neighbor_uncertainty(z, h, k=10)
    assert rec[0].filename == __file__ and rec[0].lineno == line + 1


def test_warning_through_a_strategy_points_at_select():
    # neighbor_uncertainty is reached through CEC._query: stacklevel=2 used to name cec.py.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 4)).astype(np.float32)
    p = rng.dirichlet(np.ones(3), size=8).astype(np.float32)
    labeled = np.arange(5)
    strategy = vlal.CEC(k=5, random_state=0)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        line = inspect.currentframe().f_lineno + 1
        strategy.select(x, p, 2, labeled=labeled, labels=np.zeros(5, dtype=int))
    ours = [w for w in rec if "number of candidates" in str(w.message)]
    assert ours, [str(w.message) for w in rec]
    assert all(w.filename == __file__ and w.lineno == line for w in ours), [(w.filename, w.lineno) for w in ours]


def test_warn_caller_outside_vlal_is_plain_stacklevel_2():
    lines = []

    def library_function():
        lines.append(inspect.currentframe().f_lineno + 1)
        warn_caller("here", RuntimeWarning)

    with pytest.warns(RuntimeWarning) as rec:
        library_function()
    # library_function is not inside vlal, so the line calling warn_caller is named
    assert rec[0].filename == __file__ and rec[0].lineno == lines[0]
