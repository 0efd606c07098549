"""Issue 9: vlal strategies inside a plain scikit-learn active-learning loop."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

import vlal
from vlal import CEC, PCB, Entropy, align_probs

from conftest import make_pool, real_data


def test_align_probs_by_hand():
    p = np.array([[0.2, 0.8], [0.6, 0.4]], np.float32)
    out = align_probs(p, np.array([1, 3]), 5)
    np.testing.assert_array_equal(out, np.array([[0, 0.2, 0, 0.8, 0], [0, 0.6, 0, 0.4, 0]], np.float32))
    assert out.dtype == np.float32 and p.shape == (2, 2)  # the input is not modified
    np.testing.assert_array_equal(align_probs(p, np.array([1.0, 0.0]), 2), p[:, ::-1])  # integral floats, any order
    np.testing.assert_array_equal(align_probs(p, [0, 1], 2), p)


@pytest.mark.parametrize(
    "classes, n_classes, msg",
    [
        ([0, 5], 5, r"classes holds 5, outside \[0, 5\)"),
        ([-1, 2], 5, "classes holds -1"),
        ([1, 1], 5, "class 1 more than once"),
        ([0, 1, 2], 5, "classes has 3 entries but probs has 2 columns"),
        (["a", "b"], 5, "integer class ids"),
        ([0.5, 1], 5, "integer class ids"),
        ([[0, 1]], 5, "1-D"),
        ([0, 1], 0, "n_classes must be a positive integer"),
        ([0, 1], True, "n_classes must be a positive integer"),
    ],
)
def test_align_probs_errors(classes, n_classes, msg):
    with pytest.raises(ValueError, match=msg):
        align_probs(np.array([[0.5, 0.5]]), classes, n_classes)


def test_align_probs_rejects_logits():
    with pytest.raises(ValueError, match="not logits"):
        align_probs(np.array([[2.0, -1.0]]), [0, 1], 2)


def test_label_reading_strategy_names_align_probs():
    x, p, y = make_pool(n=40, n_classes=4)
    sub = p[:, :3] / p[:, :3].sum(1, keepdims=True)  # a classifier that saw classes 0..2 only
    lab = np.flatnonzero(y == 3)[:2]
    with pytest.raises(ValueError, match=r"labels holds class 3, but probs has only 3 classes.*vlal\.align_probs"):
        PCB(Entropy()).select(x, sub, 3, labeled=lab, labels=y[lab])
    # strategies that never read labels do not check them against probs
    assert CEC(k=5, random_state=0).select(x, sub, 3, labeled=lab, labels=y[lab]).shape == (3,)
    assert PCB(Entropy()).select(x, align_probs(sub, [0, 1, 2], 4), 3, labeled=lab, labels=y[lab]).shape == (3,)


def test_every_registered_strategy_clones():
    for name in [n for n in vlal.available_strategies() if "<" not in n] + ["pcb(cec)"]:
        s = vlal.make_strategy(name, random_state=np.random.RandomState(1))
        c = clone(s)
        assert type(c) is type(s) and repr(c).startswith(type(s).__name__)
        assert c.get_params(deep=True).keys() == s.get_params(deep=True).keys()
    deep = vlal.make_strategy("pcb(cec[k=7])").get_params(deep=True)
    assert deep["base_strategy__k"] == 7 and deep["gamma"] == 0.1
    pcb = vlal.make_strategy("pcb(cec)").set_params(base_strategy__k=9, gamma=0.5)
    assert pcb.base_strategy.k == 9 and pcb.gamma == 0.5
    assert repr(CEC(k=5, random_state=0)) == "CEC(k=5, random_state=0)"


@pytest.mark.filterwarnings("ignore:The number of unique classes:UserWarning")
def test_plain_sklearn_loop_on_dtd():
    """LogisticRegression on real DTD CLIP features, fitted on the classes seen so far; vlal
    picks the queries. The only glue is the documented alignment step (vlal.align_probs)."""
    data = np.load(real_data("dtd"))
    x = data["pool_features"].astype(np.float32)
    y = data["pool_labels"]
    xt, yt = data["test_features"].astype(np.float32), data["test_labels"]
    n_classes = int(y.max()) + 1
    rs = np.random.RandomState(0)
    # one BLAS/OpenMP thread: on a busy 2-core machine lbfgs with threads is 40x slower
    with threadpool_limits(1):
        _loop(x, y, xt, yt, n_classes, rs)


def _loop(x, y, xt, yt, n_classes, rs):
    for strategy in (CEC(random_state=rs), PCB(Entropy(), random_state=rs)):
        labeled = rs.choice(len(x), size=20, replace=False)  # 20 random labels: some classes unseen
        accs = []
        for _ in range(4):
            clf = LogisticRegression(C=10.0, max_iter=300).fit(x[labeled], y[labeled])
            accs.append(clf.score(xt, yt))
            assert len(clf.classes_) < n_classes or len(accs) > 1
            probs = align_probs(clf.predict_proba(x), clf.classes_, n_classes)
            picks, util = strategy.select(
                x, probs, 40, labeled=labeled, labels=y[labeled], return_utilities=True
            )
            assert not set(picks.tolist()) & set(labeled.tolist())
            assert np.isnan(util[labeled]).all() and np.isfinite(np.delete(util, labeled)).all()
            labeled = np.concatenate([labeled, picks])
        accs.append(LogisticRegression(C=10.0, max_iter=300).fit(x[labeled], y[labeled]).score(xt, yt))
        # 20 -> 180 labels: accuracy rises clearly (DTD, 47 classes)
        assert accs[-1] > accs[0] + 0.15, (type(strategy).__name__, accs)


def test_old_requires_labels_attribute_still_honoured():
    class Old(vlal.Random):
        requires_labels = True  # vlal 0.1 spelling: needs a labeled set and its labels

    x, p, y = make_pool(n=30)
    np.testing.assert_array_equal(Old(random_state=0).select(x, p, 3), vlal.Random(random_state=0).select(x, p, 3))
    with pytest.raises(ValueError, match="labels"):
        Old(random_state=0).select(x, p, 3, labeled=[0, 1])
