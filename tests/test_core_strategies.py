import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import vlal
from vlal import CEC, Entropy, Random

from conftest import make_pool
from strategy_template import StrategyTemplate


class TestRandom(StrategyTemplate):
    registered = "random"
    make = staticmethod(lambda rs: Random(random_state=rs))


class TestEntropy(StrategyTemplate):
    registered = "entropy"
    make = staticmethod(lambda rs: Entropy(random_state=rs))


class TestCEC(StrategyTemplate):
    registered = "cec"
    make = staticmethod(lambda rs: CEC(k=5, random_state=rs))


class TestCECNoCalibration(StrategyTemplate):
    registered = "cec-nocal"
    make = staticmethod(lambda rs: CEC(k=5, calibration=False, random_state=rs))


class TestCECNoNeighbors(StrategyTemplate):
    registered = "cec-nonn"
    make = staticmethod(lambda rs: CEC(k=5, neighbor_term=False, random_state=rs))


class TestCECPlainKMeans(StrategyTemplate):
    registered = "cec-kmeans"
    make = staticmethod(lambda rs: CEC(k=5, clustering="plain", random_state=rs))


class TestCECGreedy(StrategyTemplate):
    registered = "cec-greedy"
    make = staticmethod(lambda rs: CEC(k=5, clustering="greedy", random_state=rs))


def test_entropy_picks_most_uncertain():
    p = np.array([[1.0, 0.0], [0.5, 0.5], [0.9, 0.1], [0.6, 0.4]])
    x = np.eye(4, 2) + 1
    assert set(Entropy().select(x, p, 2).tolist()) == {1, 3}


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 1000), scale_exp=st.integers(-8, 8))
def test_cec_invariant_to_positive_scaling(seed, scale_exp):
    x, p, _ = make_pool(n=40, d=6, n_classes=3, seed=seed, dtype=np.float64)
    a = CEC(k=5, random_state=seed).select(x, p, 6)
    b = CEC(k=5, random_state=seed).select(x * 2.0**scale_exp, p, 6)
    np.testing.assert_array_equal(a, b)


def test_cec_k_reduced_with_warning():
    x, p, _ = make_pool(n=12, d=4, n_classes=3)
    with pytest.warns(UserWarning, match="k=20"):
        idx = CEC(k=20, random_state=0).select(x, p, 3, labeled=np.arange(4))
    assert len(set(idx.tolist())) == 3


def test_cec_prefers_uncertain_region():
    # Two well separated blobs; only blob B is uncertain. With budget 1 the weighted
    # centre is pulled into B, so the query comes from B.
    rng = np.random.default_rng(0)
    a = rng.normal([5, 0], 0.1, size=(50, 2))
    b = rng.normal([0, 5], 0.1, size=(50, 2))
    x = np.vstack([a, b])
    p = np.vstack([np.tile([0.999, 0.001], (50, 1)), np.tile([0.5, 0.5], (50, 1))])
    idx = CEC(k=5, random_state=0).select(x, p, 1)
    assert idx[0] >= 50


def test_cec_bad_params():
    # issue 9: __init__ only stores; the parameters are checked when select runs
    x, p, _ = make_pool()
    for kw, msg in (
        (dict(clustering="spectral"), "clustering"),
        (dict(alpha=-1), "alpha"),
        (dict(alpha=float("nan")), "alpha"),
        (dict(k=0), "k"),
        (dict(k=2.5), "k"),
        (dict(k=True), "bool"),
        (dict(use_gpu="yes"), "use_gpu"),
    ):
        s = CEC(**kw)
        assert all(getattr(s, key) is value for key, value in kw.items())  # stored unchanged
        with pytest.raises(ValueError, match=msg):
            s.select(x, p, 3)


def test_registry():
    assert isinstance(vlal.make_strategy("cec", 0), CEC)
    assert vlal.make_strategy("cec-greedy").clustering == "greedy"
    with pytest.raises(ValueError, match="unknown strategy"):
        vlal.make_strategy("nope")


def test_import_is_light():
    import subprocess, sys

    code = "import sys, vlal; print('torch' in sys.modules, 'open_clip' in sys.modules, 'matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False", "False"]


def test_registry_parameters_in_names():
    s = vlal.make_strategy("cec[k=10, alpha=0.05, clustering=greedy]", random_state=3)
    assert (s.k, s.alpha, s.clustering, s.random_state) == (10, 0.05, "greedy", 3)
    assert vlal.make_strategy("cec-nocal[top_n=5]").top_n == 5
    with pytest.raises(ValueError, match="bad parameters"):
        vlal.make_strategy("cec[foo=1]")
    with pytest.raises(ValueError, match="bad parameter"):
        vlal.make_strategy("cec[10]")


def test_registry_literal_values_keep_their_case():
    # "False" must stay the literal False (a lower-cased "false" would be a truthy string)
    assert vlal.make_strategy("cec[calibration=False]").calibration is False
    assert vlal.make_strategy("CEC[neighbor_term=False]").neighbor_term is False
    with pytest.raises(ValueError, match="calibration must be True or False"):
        vlal.make_strategy("cec[calibration=maybe]")
    with pytest.raises(ValueError, match="given twice"):
        vlal.make_strategy("cec[k=5,k=6]")


def test_negative_seed_named():
    x, p, _ = make_pool()
    with pytest.raises(ValueError, match="random_state"):
        Random(random_state=-1).select(x, p, 3)


def test_labels_beyond_classes_rejected():
    # issue 9: only strategies that read labels check them against probs' columns
    x, p, _ = make_pool()
    with pytest.raises(ValueError, match=r"only 4 classes.*vlal\.align_probs"):
        vlal.PCB(Entropy()).select(x, p, 3, labeled=[0, 1], labels=[0, 9])
    assert Random().select(x, p, 3, labeled=[0, 1], labels=[0, 9]).shape == (3,)


def test_int_mask_hint():
    x, p, _ = make_pool()
    with pytest.raises(ValueError, match="boolean"):
        Random().select(x, p, 3, labeled=np.r_[np.ones(5, int), np.zeros(55, int)])


def test_huge_feature_values_normalised():
    x, p, _ = make_pool(n=30, dtype=np.float64)
    a = CEC(k=5, random_state=0).select(x * 1e300, p, 4)
    b = CEC(k=5, random_state=0).select(x, p, 4)
    np.testing.assert_array_equal(a, b)
