"""The scikit-activeml and modAL adapters (vlal.integrations).

scikit-activeml ships its query-strategy template tests
(``skactiveml/tests/template_query_strategy.py``) only in its source repository, not in
the wheel or the sdist on PyPI, so they cannot be imported here; ``TestSkactivemlContract``
checks the same contract (parameter checks, clf left unchanged, reproducibility,
batch / candidate variations, utilities shape and NaN convention) written for this
adapter.
"""

import subprocess
import sys
import warnings
from copy import deepcopy

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.datasets import make_blobs
from sklearn.linear_model import LogisticRegression

import vlal
from vlal import Strategy
from vlal.integrations._common import align_classes

from conftest import real_data


def _need(module: str):
    """Import ``module`` or skip with the exact import error (never silently)."""
    try:
        return __import__(module)
    except Exception as err:  # noqa: BLE001 - report whatever breaks the import
        pytest.skip(f"{module} cannot be imported ({type(err).__name__}: {err}); pip install -e '.[integrations]'")


class Dummy:
    pass


def test_import_vlal_loads_neither_library():
    code = (
        "import sys, vlal, vlal.integrations; "
        "bad = [m for m in ('skactiveml', 'modAL') if m in sys.modules]; "
        "assert not bad, bad; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr


def test_align_classes_hand_computed():
    probs = np.array([[0.25, 0.75], [0.5, 0.5]])
    # classifier saw classes 1 and 3 of the task [0, 1, 2, 3]
    p, codes, classes, pos = align_classes(probs, [1, 3], np.array([3, 1, 3]), classes=[0, 1, 2, 3])
    np.testing.assert_allclose(p, [[0, 0.25, 0, 0.75], [0, 0.5, 0, 0.5]])
    assert codes.tolist() == [3, 1, 3] and pos.tolist() == [1, 3]
    # string classes, no task list: the classifier's classes, then an unseen labeled one
    p, codes, classes, pos = align_classes(probs, np.array(["a", "c"]), np.array(["c", "b"]))
    assert classes.tolist() == ["a", "c", "b"] and codes.tolist() == [1, 2]
    np.testing.assert_allclose(p, [[0.25, 0.75, 0], [0.5, 0.5, 0]])
    # identity: no copy made
    p, codes, classes, pos = align_classes(probs, [0, 1], np.array([1]))
    assert pos is None and p is probs and codes.tolist() == [1]
    with pytest.raises(ValueError, match="classes"):
        align_classes(probs, [0, 1], np.array([7]), classes=[0, 1, 2])
    assert probs.tolist() == [[0.25, 0.75], [0.5, 0.5]]  # caller's array untouched


# --------------------------------------------------------------------------- scikit-activeml


def _blobs(n=120, k=4, seed=0, n_labeled=12):
    X, y_true = make_blobs(n, n_features=6, centers=k, cluster_std=2.0, random_state=seed)
    y = np.full(n, np.nan)
    y[:n_labeled] = y_true[:n_labeled]
    return X, y, y_true


@pytest.fixture
def skal():
    _need("skactiveml")
    from skactiveml.classifier import SklearnClassifier

    from vlal.integrations.skactiveml import SkactivemlStrategy

    X, y, y_true = _blobs()
    clf = SklearnClassifier(LogisticRegression(max_iter=500), classes=np.arange(4))
    return SkactivemlStrategy, dict(X=X, y=y, clf=clf), y_true


def _raises(qs_cls, query, err, init=None, **change):
    q = deepcopy(query)
    q.update(change)
    qs = qs_cls(**{"random_state": 42, **(init or {})})
    with pytest.raises(err):
        qs.query(**q)


class TestSkactivemlContract:
    def test_is_a_skactiveml_strategy_and_clonable(self, skal):
        from skactiveml.base import SingleAnnotatorPoolQueryStrategy

        cls, query, _ = skal
        qs = cls("pcb(entropy)", random_state=3)
        assert isinstance(qs, SingleAnnotatorPoolQueryStrategy)
        c = clone(qs)
        assert c.get_params() == qs.get_params() and c is not qs
        assert set(qs.get_params()) == {"strategy", "embedding", "missing_label", "random_state"}
        for param in qs.get_params():  # __init__ only stores
            assert getattr(cls(**{param: Dummy}), param) is Dummy

    def test_init_params_checked_at_query(self, skal):
        cls, query, _ = skal
        for bad in (np.nan, "state"):
            _raises(cls, query, ValueError, init={"random_state": bad})
        _raises(cls, query, TypeError, init={"missing_label": Dummy})
        _raises(cls, query, TypeError, init={"strategy": 3})
        _raises(cls, query, ValueError, init={"strategy": "no-such-strategy"})
        cls(random_state=1).query(**query)

    def test_query_param_checks(self, skal):
        cls, query, _ = skal
        from sklearn.naive_bayes import GaussianNB

        for bad in (np.nan, "state", Dummy(), GaussianNB()):
            _raises(cls, query, TypeError, clf=bad)
        for bad in (np.nan, "state"):
            _raises(cls, query, TypeError, fit_clf=bad)
        _raises(cls, query, (ValueError, TypeError), X="string")
        _raises(cls, query, (ValueError, TypeError), X=Dummy)
        _raises(cls, query, ValueError, X=np.vstack([query["X"], query["X"]]))
        _raises(cls, query, TypeError, y=np.nan)
        _raises(cls, query, ValueError, y=np.vstack([query["y"], query["y"]]))
        for bad in (np.nan, Dummy):
            _raises(cls, query, (ValueError, TypeError), sample_weight=bad)
        _raises(cls, query, ValueError, sample_weight=np.ones(len(query["y"]) + 1))
        _raises(cls, query, ValueError, batch_size=0)
        _raises(cls, query, TypeError, batch_size=1.2)
        for bad in ("string", Dummy):
            _raises(cls, query, TypeError, return_utilities=bad)
        _raises(cls, query, ValueError, candidates=np.nan)
        _raises(cls, query, TypeError, candidates=Dummy)
        _raises(cls, query, ValueError, candidates=[0, 50])  # row 0 is labeled
        qs = cls(random_state=0)
        qs.query(**query, sample_weight=np.ones(len(query["y"])))
        assert qs.query(**query, candidates=[50]).tolist() == [50]

    def test_missing_label_conventions(self, skal):
        from skactiveml.classifier import SklearnClassifier

        cls, query, _ = skal
        X = query["X"]
        for ml, classes, dtype in [
            (np.nan, [1.0, 2.0], float),
            (0, [1, 2], int),
            (None, [1, 2], object),
            (None, ["A", "B"], object),
            ("", ["A", "B"], str),
        ]:
            y = np.full(len(X), ml, dtype=dtype)
            y[0], y[1], y[2] = classes[0], classes[1], classes[0]
            clf = SklearnClassifier(LogisticRegression(), missing_label=ml, classes=classes)
            for name in ("cec", "pcb(entropy)"):  # PCB reads the labels
                idx = cls(name, missing_label=ml, random_state=0).query(X, y, clf, batch_size=3)
                assert len(set(idx.tolist())) == 3 and min(idx) >= 3, (ml, name, idx)

    def test_clf_unchanged(self, skal):
        cls, query, _ = skal
        clf = query["clf"]
        cls(random_state=0).query(**query, fit_clf=True)
        assert not hasattr(clf, "classes_")  # the caller's clf was not fitted
        fitted = clone(clf).fit(query["X"], query["y"])
        before = fitted.predict_proba(query["X"])
        cls(random_state=0).query(query["X"], query["y"], fitted, fit_clf=False)
        np.testing.assert_array_equal(fitted.predict_proba(query["X"]), before)

    def test_reproducible_and_rounds_differ(self, skal):
        cls, query, _ = skal
        qs = cls(random_state=np.random.RandomState(0))
        i1, u1 = qs.query(**query, batch_size=4, return_utilities=True)
        i2, u2 = qs.query(**query, batch_size=4, return_utilities=True)
        np.testing.assert_array_equal(i1, i2)
        np.testing.assert_allclose(u1, u2)
        assert u1.shape == (4, len(query["X"]))
        # the same seed via a name or an instance: the same picks; the instance is not modified
        inst = vlal.CEC(k=5, random_state=123)
        a = cls(inst, random_state=7).query(**query, batch_size=4)
        b = cls("cec[k=5]", random_state=7).query(**query, batch_size=4)
        np.testing.assert_array_equal(a, b)
        assert inst.random_state == 123

    def test_al_cycles_from_zero_labels(self, skal):
        cls, query, y_true = skal
        qs = cls("cec", random_state=0)
        n = len(y_true)
        for init_labels in (0, 1, n - 2):
            y = np.full(n, np.nan)
            y[:init_labels] = y_true[:init_labels]
            for _ in range(2):
                idx = qs.query(query["X"], y, query["clf"])
                assert np.isnan(y[idx]).all()
                y[idx] = y_true[idx]

    def test_batch_variation(self, skal):
        cls, query, _ = skal
        qs = cls(random_state=0)
        n_lab = int((~np.isnan(query["y"])).sum())
        idx, util = qs.query(**query, batch_size=5, return_utilities=True)
        assert idx.shape == (5,) and util.shape == (5, len(query["X"]))
        assert np.isnan(util[0]).sum() == n_lab
        for j in range(5):  # row j: the utilities with the first j picks removed
            assert np.isnan(util[j, idx[:j]]).all() and not np.isnan(util[j, idx[j:]]).any()
        n_unl = len(query["y"]) - n_lab
        with pytest.warns(UserWarning, match="batch_size"):
            qs.query(**query, batch_size=n_unl + 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            idx = qs.query(**query, batch_size=n_unl + 1)
        assert sorted(idx.tolist()) == list(range(n_lab, len(query["y"])))

    def test_nothing_left_to_query(self, skal):
        cls, query, y_true = skal
        with pytest.warns(UserWarning, match="batch_size"):
            idx, util = cls(random_state=0).query(query["X"], y_true.astype(float), query["clf"], batch_size=3,
                                                  return_utilities=True)
        assert idx.shape == (0,) and util.shape == (0, len(y_true))

    @pytest.mark.parametrize("name", ["cec", "entropy"])
    def test_candidate_variation(self, skal, name):
        cls, query, _ = skal
        qs = cls(name, random_state=0)
        unl = np.flatnonzero(np.isnan(query["y"]))
        i1, u1 = qs.query(**query, return_utilities=True)
        i2, u2 = qs.query(**query, candidates=unl, return_utilities=True)
        np.testing.assert_allclose(u1, u2)
        i3, u3 = qs.query(**query, candidates=unl[:1], return_utilities=True)
        assert i3.tolist() == [unl[0]]
        assert np.flatnonzero(~np.isnan(u3[0])).tolist() == [unl[0]]
        if name == "entropy":  # a per-row score; CEC's U depends on the candidate set (its prior, kNN)
            np.testing.assert_allclose(u3[0, unl[0]], u1[0, unl[0]])
        # candidates as samples: indices and utilities refer to them
        i4, u4 = qs.query(**query, candidates=query["X"][unl], return_utilities=True, batch_size=3)
        assert u4.shape == (3, unl.size) and i4.max() < unl.size
        np.testing.assert_allclose(u4[0], u1[0][unl], rtol=1e-5, atol=1e-6)

    def test_features_and_embedding(self, skal):
        cls, query, _ = skal
        F = np.random.default_rng(1).normal(size=(len(query["X"]), 16))
        a, ua = cls(random_state=0).query(**query, features=F, batch_size=4, return_utilities=True)
        b, ub = cls(embedding=lambda X: F, random_state=0).query(**query, batch_size=4, return_utilities=True)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(ua, ub)
        c, uc = cls(random_state=0).query(**query, batch_size=4, return_utilities=True)  # features = X
        assert not (np.array_equal(a, c) and np.allclose(ua, uc))
        with pytest.raises(ValueError, match="not both"):
            cls(embedding=lambda X: F, random_state=0).query(**query, features=F)
        with pytest.raises(ValueError, match=r"features must have shape"):
            cls(random_state=0).query(**query, features=F[:-1])
        with pytest.raises(ValueError, match="candidates given as samples"):
            cls(random_state=0).query(**query, features=F, candidates=query["X"][50:60])
        with pytest.raises(ValueError, match="2-D"):
            cls(embedding=lambda X: X[:, 0], random_state=0).query(**query)

    def test_labeled_class_unknown_to_prefitted_clf(self, skal):
        """fit_clf=False with a classifier that has not seen a labeled class: the class gets a
        probability-0 column and label-aware strategies still run."""
        from skactiveml.classifier import SklearnClassifier

        cls, query, y_true = skal
        X, y = query["X"], query["y"].copy()
        sub = np.where(np.isin(y, [0, 1, 2]), y, np.nan)
        clf = SklearnClassifier(LogisticRegression(), classes=[0, 1, 2]).fit(X, sub)
        assert 3 in set(y[~np.isnan(y)].tolist())
        for name in ("pcb(entropy)", "alfamix", "cec"):
            idx = cls(name, random_state=0).query(X, y, clf, fit_clf=False, batch_size=4)
            assert np.isnan(y[idx]).all() and len(set(idx.tolist())) == 4


@given(data=st.data())
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_skactiveml_picks_among_candidates_property(skal, data):
    """Picks are distinct candidates; row 0 of the utilities is NaN exactly off the candidates."""
    cls, query, y_true = skal
    n = len(y_true)
    labeled = np.array(data.draw(st.lists(st.integers(0, n - 1), max_size=30, unique=True)), dtype=int)
    y = np.full(n, np.nan)
    y[labeled] = y_true[labeled]
    unl = np.setdiff1d(np.arange(n), labeled)
    cand = np.sort(data.draw(st.lists(st.sampled_from(unl.tolist()), min_size=1, max_size=40, unique=True)))
    b = data.draw(st.integers(1, min(5, cand.size)))
    name = data.draw(st.sampled_from(["margin", "cec[k=3]", "coreset", "pcb(entropy)"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a one-class labeled set: scikit-activeml warns and counts labels
        idx, util = cls(name, random_state=data.draw(st.integers(0, 2**16))).query(
            query["X"], y, query["clf"], candidates=cand, batch_size=b, return_utilities=True)
    assert idx.shape == (b,) and len(set(idx.tolist())) == b and np.isin(idx, cand).all()
    assert util.shape == (b, n)
    np.testing.assert_array_equal(np.flatnonzero(~np.isnan(util[0])), cand)


@pytest.mark.slow
def test_skactiveml_loop_on_dtd_accuracy_rises():
    _need("skactiveml")
    from skactiveml.classifier import SklearnClassifier

    from vlal.data import load_features
    from vlal.integrations.skactiveml import SkactivemlStrategy

    ds = load_features(real_data("dtd"))
    X = np.asarray(ds.pool_features, dtype=np.float32)
    Xt, yt = np.asarray(ds.test_features, dtype=np.float32), ds.test_labels
    K = ds.n_classes
    clf = SklearnClassifier(LogisticRegression(max_iter=300, C=10.0), classes=np.arange(K), random_state=0)
    qs = SkactivemlStrategy("cec", random_state=0)
    y = np.full(X.shape[0], np.nan)
    accs = []
    for _ in range(5):  # scikit-activeml's loop: query, label, refit
        idx = qs.query(X, y, clf, batch_size=K)
        assert np.isnan(y[idx]).all()
        y[idx] = ds.pool_labels[idx]
        clf.fit(X, y)
        accs.append(float(np.mean(clf.predict(Xt) == yt)))
    print("skactiveml + CEC, DTD, LogisticRegression test accuracy per round:", accs)
    assert (~np.isnan(y)).sum() == 5 * K
    assert accs[-1] > accs[0] + 0.08, accs
    assert all(b >= a - 0.02 for a, b in zip(accs, accs[1:])), accs


# --------------------------------------------------------------------------- modAL


class _Spy(Strategy):
    """Records what select hands to the strategy (class attribute: clones share it)."""

    seen: list = []

    def _query(self, pool, budget, rng):
        _Spy.seen.append(pool)
        return rng.choice(pool.candidates, size=budget, replace=False)


def _modal_compat(monkeypatch):
    """modAL 0.4.2.1 (the newest release) passes ``force_all_finite`` to scikit-learn's
    ``check_X_y`` in ``ActiveLearner.fit`` / ``teach``; scikit-learn 1.8 removed that name
    (renamed ``ensure_all_finite`` in 1.6): ``TypeError: check_X_y() got an unexpected
    keyword argument 'force_all_finite'`` (modAL-python/modAL#196). Where this
    scikit-learn lacks the old name, translate it for the duration of the test."""
    import inspect

    import modAL.models.learners as learners
    from sklearn.utils.validation import check_X_y

    if "force_all_finite" in inspect.signature(check_X_y).parameters:
        return

    def check_X_y_compat(*args, force_all_finite=True, **kwargs):
        kwargs.setdefault("ensure_all_finite", force_all_finite)
        return check_X_y(*args, **kwargs)

    monkeypatch.setattr(learners, "check_X_y", check_X_y_compat)


@pytest.fixture
def modal(monkeypatch):
    _need("modAL")
    _modal_compat(monkeypatch)
    from modAL.models import ActiveLearner

    from vlal.integrations.modal import ModalStrategy

    return ActiveLearner, ModalStrategy


def test_modal_query_returns_pool_positions_and_metrics(modal):
    ActiveLearner, ModalStrategy = modal
    X, _, y_true = _blobs(n=150, k=5)
    lab = np.arange(5)  # classes 0..4 may not all be among them
    learner = ActiveLearner(LogisticRegression(max_iter=500), query_strategy=ModalStrategy("cec", random_state=0),
                            X_training=X[lab], y_training=y_true[lab])
    X_pool = X[5:]
    idx, rows = learner.query(X_pool, n_instances=7)
    assert idx.shape == (7,) and len(set(idx.tolist())) == 7 and idx.max() < len(X_pool)
    np.testing.assert_array_equal(rows, X_pool[idx])
    idx2, rows2, metrics = learner.query(X_pool, n_instances=7, return_metrics=True)
    assert metrics.shape == (7,) and np.isfinite(metrics).all()
    idx1, _ = learner.query(X_pool, n_instances=1)  # a single pick is still an array of positions
    assert idx1.shape == (1,)


def test_modal_aligns_columns_and_passes_labels(modal):
    ActiveLearner, ModalStrategy = modal
    X, _, y_true = _blobs(n=150, k=5)
    seen = np.flatnonzero(np.isin(y_true, [1, 3]))[:6]  # the classifier sees 2 of 5 classes
    _Spy.seen.clear()
    qs = ModalStrategy(_Spy(random_state=0), classes=np.arange(5))
    learner = ActiveLearner(LogisticRegression(), query_strategy=qs, X_training=X[seen], y_training=y_true[seen])
    pool_rows = np.setdiff1d(np.arange(150), seen)
    idx, _ = learner.query(X[pool_rows], n_instances=3)
    pool = _Spy.seen[-1]
    assert pool.probs.shape == (6 + pool_rows.size, 5)  # all 5 classes, unseen columns 0
    assert np.allclose(pool.probs[:, [0, 2, 4]], 0) and np.allclose(pool.probs.sum(1), 1, atol=1e-6)
    assert pool.labeled.tolist() == list(range(6)) and pool.labels.tolist() == y_true[seen].tolist()
    assert pool.candidates.tolist() == list(range(6, 6 + pool_rows.size))
    # without the labeled context the pool is X_pool alone
    ModalStrategy(_Spy(), classes=np.arange(5), use_labeled=False)(learner, X[pool_rows], 2)
    assert _Spy.seen[-1].labeled.size == 0 and _Spy.seen[-1].n == pool_rows.size


def test_modal_unfitted_learner_and_bad_input(modal):
    ActiveLearner, ModalStrategy = modal
    X, _, _ = _blobs(n=80, k=4)
    learner = ActiveLearner(LogisticRegression(), query_strategy=ModalStrategy("cec", classes=range(4), random_state=0))
    idx, _ = learner.query(X, n_instances=4)  # no data yet: uniform probabilities, CEC by features
    assert len(set(idx.tolist())) == 4
    qs = ModalStrategy("cec")
    with pytest.raises(ValueError, match="n_instances"):
        qs(learner, X, n_instances=81)
    with pytest.raises(ValueError, match="n_instances"):
        qs(learner, X, n_instances=0)
    with pytest.raises(TypeError, match="n_instances"):
        qs(learner, X, n_instances=2.0)
    with pytest.raises(TypeError, match="unexpected keyword"):
        qs(learner, X, n_instances=2, random_tie_break=True)
    with pytest.raises(TypeError, match="predict_proba"):
        qs(object(), X, 2)
    with pytest.raises(TypeError, match="vlal strategy"):
        ModalStrategy(42)(learner, X, 2)


def test_modal_generator_draws_afresh_each_round(modal):
    ActiveLearner, ModalStrategy = modal
    X, _, y_true = _blobs(n=120, k=4)
    learner = ActiveLearner(LogisticRegression(), X_training=X[:8], y_training=y_true[:8],
                            query_strategy=ModalStrategy("random", random_state=np.random.default_rng(0)))
    a, _ = learner.query(X[8:], n_instances=5)
    b, _ = learner.query(X[8:], n_instances=5)
    assert not np.array_equal(a, b)
    fixed = ActiveLearner(LogisticRegression(), X_training=X[:8], y_training=y_true[:8],
                          query_strategy=ModalStrategy("random", random_state=3))
    np.testing.assert_array_equal(fixed.query(X[8:], n_instances=5)[0], fixed.query(X[8:], n_instances=5)[0])


@pytest.mark.slow
def test_modal_loop_on_dtd_accuracy_rises(modal):
    ActiveLearner, ModalStrategy = modal
    from vlal.data import load_features

    ds = load_features(real_data("dtd"))
    X = np.asarray(ds.pool_features, dtype=np.float32)
    y = ds.pool_labels
    Xt, yt = np.asarray(ds.test_features, dtype=np.float32), ds.test_labels
    K = ds.n_classes
    rng = np.random.default_rng(0)
    start = rng.choice(X.shape[0], size=K, replace=False)
    learner = ActiveLearner(LogisticRegression(max_iter=300, C=10.0), X_training=X[start], y_training=y[start],
                            query_strategy=ModalStrategy("cec", classes=np.arange(K), random_state=rng))
    pool = np.setdiff1d(np.arange(X.shape[0]), start)
    accs = [learner.score(Xt, yt)]
    for _ in range(4):  # modAL's loop: query X_pool, teach, drop the queried rows
        idx, rows = learner.query(X[pool], n_instances=K)
        np.testing.assert_array_equal(rows, X[pool][idx])
        learner.teach(X[pool][idx], y[pool][idx])
        pool = np.delete(pool, idx)
        accs.append(learner.score(Xt, yt))
    print("modAL + CEC, DTD, LogisticRegression test accuracy per round:", accs)
    assert learner.X_training.shape[0] == 5 * K and pool.size == X.shape[0] - 5 * K
    assert accs[-1] > accs[0] + 0.08, accs
    assert all(b >= a - 0.02 for a, b in zip(accs, accs[1:])), accs


# --------------------------------------------------------------------------- docs/integrations.md


def _doc_blocks():
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "integrations.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, re.S)


@pytest.mark.parametrize("i, needs", [(0, None), (1, "skactiveml"), (2, "modAL")])
def test_docs_integrations_blocks_run(i, needs, tmp_path):
    """Each Python block of docs/integrations.md runs as written (in its own process: the
    modAL block patches modAL for scikit-learn >= 1.8), on synthetic data only."""
    import os
    from pathlib import Path

    blocks = _doc_blocks()
    assert len(blocks) == 3
    assert "shared" not in blocks[i]
    if needs:
        _need(needs)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    script = tmp_path / f"block{i}.py"
    script.write_text(blocks[i])
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    lines = [ln.split() for ln in out.stdout.strip().splitlines()]
    assert [ln[0] for ln in lines] == ["0", "1", "2"], out.stdout
    accs = [float(ln[1]) for ln in lines]
    assert accs[-1] > accs[0], accs  # more labels, better classifier
