"""benchmarks/lookahead_variants.py: its subclass must keep reproducing ``lookahead`` (it reuses
private helpers of lookahead.py, so a refactor there must fail here), and every knob must run."""

import numpy as np
import pytest

import vlal
from vlal.strategies import _register

from conftest import make_pool


@pytest.fixture
def variants(bench_script):
    yield bench_script("lookahead_variants")
    _register.FACTORIES.pop("la-variant", None)  # registered by the script only


def test_defaults_reproduce_lookahead_and_every_knob_runs(variants):
    x, p, y = make_pool(n=160)
    ref = vlal.LookAhead(random_state=3).select(x, p, 8)
    np.testing.assert_array_equal(variants.LookAheadVariant(random_state=3).select(x, p, 8), ref)
    variants.ORACLE[np.asarray(x[:4], dtype=np.float32).tobytes()] = y
    for kw in ({"pick": "G"}, {"pick": "center"}, {"cw": "uniform"}, {"gpow": 2.0}, {"n_init": 2}, {"over": 2.0},
               {"comb": "geo"}, {"comb": "min"}, {"typ": 0.2}, {"unc": "lc"}, {"unc": "margin"}, {"unc": "H"},
               {"bel": "oracle"}, {"bel": "oracle0.5"}, {"errors": "known"}, {"errors": "known-weights"}):
        idx = variants.LookAheadVariant(random_state=3, **kw).select(x, p, 8)
        assert idx.shape == (8,) and np.unique(idx).size == 8, kw
    assert "la-variant" in vlal.available_strategies()  # the script's name, removed after the test
