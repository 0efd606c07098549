"""Baselines (Margin, LeastConfidence, CoreSet, BADGE, ALFA-Mix, GCNAL) and the PCB wrapper."""

import importlib.util

import numpy as np
import pytest

import vlal
from vlal import ALFAMix, BADGE, CEC, GCNAL, PCB, CoreSet, Entropy, LeastConfidence, Margin, Random
from vlal.strategies.alfamix import _model_flips, _PrototypeClassifier, _prototype_flips
from vlal.strategies.badge import _grad_sq_dist_to, _kmeanspp_seeding, _residuals
from vlal.strategies.coreset import k_center_greedy
from vlal.strategies.gcnal import _knn_adjacency
from vlal.strategies.pcb import balanced_picks

from conftest import make_pool
from strategy_template import StrategyTemplate


# --------------------------------------------------------------------------- template runs


class TestMargin(StrategyTemplate):
    registered = "margin"
    make = staticmethod(lambda rs: Margin(random_state=rs))


class TestLeastConfidence(StrategyTemplate):
    registered = "leastconf"
    make = staticmethod(lambda rs: LeastConfidence(random_state=rs))


class TestCoreSet(StrategyTemplate):
    registered = "coreset"
    make = staticmethod(lambda rs: CoreSet(random_state=rs))


class TestBADGE(StrategyTemplate):
    registered = "badge"
    make = staticmethod(lambda rs: BADGE(random_state=rs))


class TestALFAMix(StrategyTemplate):
    registered = "alfamix"
    make = staticmethod(lambda rs: ALFAMix(random_state=rs))


class TestALFAMixLargeCap(StrategyTemplate):
    # a large weight makes many candidates flip, so the K-Means branch runs too
    make = staticmethod(lambda rs: ALFAMix(alpha_cap=0.5, random_state=rs))
    # A flip is a change of argmax of a mixed feature: float16 rounding (relative 5e-4) moves rows that
    # sit on a class boundary in or out of the flip set, and K-Means over another set can take
    # another row nearest to a centre. Measured on the template pool: 5 of 6 picks kept.
    float16_overlap = 5 / 6


needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="GCNAL needs torch ([clip] extra)")


@needs_torch
class TestGCNAL(StrategyTemplate):
    registered = "gcnal"
    make = staticmethod(lambda rs: GCNAL(n_neighbors=5, hidden=16, n_steps=5, random_state=rs))


class TestPCBEntropy(StrategyTemplate):
    registered = "pcb"
    make = staticmethod(lambda rs: PCB(Entropy(), random_state=rs))


class TestPCBCEC(StrategyTemplate):
    registered = "pcb"
    make = staticmethod(lambda rs: PCB(CEC(k=5), gamma=0.3, random_state=rs))


# --------------------------------------------------------------------------- margin / least confidence


P4 = np.array(
    [
        [0.50, 0.30, 0.20],  # margin 0.20, max 0.50
        [0.40, 0.35, 0.25],  # margin 0.05, max 0.40
        [0.90, 0.05, 0.05],  # margin 0.85, max 0.90
        [0.45, 0.10, 0.45],  # margin 0.00, max 0.45
    ]
)
X4 = np.arange(1, 9, dtype=np.float64).reshape(4, 2)


def test_margin_order():
    np.testing.assert_allclose(vlal.strategies.margin.margin(P4), [0.20, 0.05, 0.85, 0.0], atol=1e-12)
    np.testing.assert_array_equal(Margin(random_state=0).select(X4, P4, 4), [3, 1, 0, 2])


def test_least_confidence_order():
    np.testing.assert_allclose(LeastConfidence().score(P4), [0.5, 0.6, 0.1, 0.55])
    np.testing.assert_array_equal(LeastConfidence(random_state=0).select(X4, P4, 4), [1, 3, 0, 2])


def test_margin_excludes_labeled():
    assert Margin().select(X4, P4, 2, labeled=[3]).tolist() == [1, 0]


# --------------------------------------------------------------------------- CoreSet


def test_k_center_greedy_on_a_line():
    # Points 0..10 on a line, labeled at 0: farthest is 10, then 5, then one of the tied 2, 3, 7, 8
    # (distance 2 each), drawn with the seed (issue 8: ties broken by random_state, not by position).
    x = np.arange(11, dtype=np.float32)[:, None]
    thirds = set()
    for seed in range(40):
        picks, dist = k_center_greedy(x[1:], x[:1], 3, np.random.default_rng(seed), return_distances=True)
        np.testing.assert_array_equal(x[1:][picks[:2], 0], [10, 5])
        thirds.add(int(x[1:][picks[2], 0]))
        # distances when picked: 10, 5, 2; the others after the last pick
        np.testing.assert_allclose(dist[picks], [10, 5, 2])
    assert thirds == {2, 3, 7, 8}


def test_coreset_on_a_circle():
    # Angles on the unit circle (features are normalised): labeled at 0 deg.
    deg = np.array([0, 10, 90, 170, 180, 260, 300])
    x = np.stack([np.cos(np.radians(deg)), np.sin(np.radians(deg))], axis=1) * 3.0
    p = np.full((7, 2), 0.5)
    idx = CoreSet(random_state=0).select(x, p, 3, labeled=[0])
    # 180 is farthest from 0; then 90 / 260 are 90 / 80 deg from their nearest centre -> 90; then 260.
    assert deg[idx].tolist() == [180, 90, 260]


def test_coreset_no_labeled_starts_from_seeded_pick():
    x, p, _ = make_pool(n=40, d=5)
    a = CoreSet(random_state=4).select(x, p, 5)
    first = np.random.default_rng(4).integers(40)
    assert a[0] == first
    # the rest is the greedy k-centre from that start
    z = x / np.linalg.norm(x, axis=1, keepdims=True)
    d = ((z[:, None] - z[None]) ** 2).sum(-1)
    ref = [first]
    for _ in range(4):
        m = d[:, ref].min(axis=1)
        m[ref] = -1
        ref.append(int(m.argmax()))
    np.testing.assert_array_equal(a, ref)


# --------------------------------------------------------------------------- BADGE


def test_badge_factorised_distance_matches_explicit():
    rng = np.random.default_rng(0)
    n, k, d = 9, 4, 5
    p = rng.dirichlet(np.ones(k), size=n)
    h = rng.normal(size=(n, d))
    h /= np.linalg.norm(h, axis=1, keepdims=True)
    r = p - np.eye(k)[p.argmax(1)]
    np.testing.assert_allclose(_residuals(p), r, atol=1e-6)
    g = (r[:, :, None] * h[:, None, :]).reshape(n, k * d)  # the (n, K*d) matrix, for reference only
    g_sq = (r**2).sum(1) * (h**2).sum(1)
    for j in range(n):
        explicit = ((g - g[j]) ** 2).sum(1)
        np.testing.assert_allclose(_grad_sq_dist_to(r, h, g_sq, j), explicit, atol=1e-10)


def test_badge_first_pick_is_largest_gradient():
    x, p, _ = make_pool(n=50, d=6, n_classes=4, seed=2)
    idx = BADGE(random_state=0).select(x, p, 5)
    r = p.astype(np.float64) - np.eye(4)[p.argmax(1)]
    assert idx[0] == np.argmax((r**2).sum(1))


def test_badge_kmeanspp_follows_squared_distance():
    # Two distinct gradient embeddings; the second draw must avoid exact duplicates of the first.
    r = np.array([[0.5, -0.5], [0.5, -0.5], [-0.4, 0.4]], dtype=np.float32)
    h = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]], dtype=np.float32)
    # rows 0 and 1 tie for the largest gradient: the first pick is drawn between them with the seed
    firsts = set()
    for seed in range(20):
        picks = _kmeanspp_seeding(r, h, 2, np.random.default_rng(seed))
        assert picks[0] in (0, 1) and picks[1] == 2
        firsts.add(int(picks[0]))
    assert firsts == {0, 1}


def test_badge_degenerate_gradients_still_distinct():
    x, _, y = make_pool(n=30)
    p = np.eye(4)[y]  # one-hot: every gradient embedding is 0
    idx = BADGE(random_state=0).select(x, p, 10)
    assert len(set(idx.tolist())) == 10


# --------------------------------------------------------------------------- ALFA-Mix


class _Linear:
    """predict_proba of a linear classifier on the first coordinate: class 1 iff x0 > 0."""

    def predict_proba(self, f):
        s = np.asarray(f)[:, 0] * 50
        p1 = 1 / (1 + np.exp(-s))
        return np.stack([1 - p1, p1], axis=1)


def _alfa_toy():
    # Labeled: class 0 around (-1, 0), class 1 around (1, 0) (directions on the unit circle).
    lab_deg = np.array([175, 180, 185, -5, 0, 5])
    labels = np.array([0, 0, 0, 1, 1, 1])
    # Candidates: angles; the boundary (x0 = 0) is at 90 deg. A mix (1 - a) z + a anchor
    # flips z iff |cos z| < a / (1 - a) * |anchor| (|anchor| = 0.996): within ~19 deg of the
    # boundary for a = 1/4, within ~1.8 deg for a = 1/32.
    cand_deg = np.array([30, 60, 85, 95, 120, 150, 89, 93])
    deg = np.concatenate([lab_deg, cand_deg])
    x = np.stack([np.cos(np.radians(deg)), np.sin(np.radians(deg))], axis=1)
    p = np.full((len(x), 2), 0.5)
    return x, p, np.arange(6), labels, cand_deg


def test_alfamix_flips_exactly_the_boundary_candidates():
    x, p, lab, labels, cand_deg = _alfa_toy()
    s = ALFAMix(alpha_cap=0.25)
    z = x[6:] / np.linalg.norm(x[6:], axis=1, keepdims=True)
    zl = x[:6]
    expected = np.abs(cand_deg - 90) < 10
    np.testing.assert_array_equal(s.flips(z.astype(np.float32), zl, labels, _Linear()), expected)
    np.testing.assert_array_equal(s.flips(z.astype(np.float32), zl, labels, None), expected)
    idx = s.select(x, p, 4, labeled=lab, labels=labels, model=_Linear())
    assert set(idx.tolist()) == set((6 + np.flatnonzero(expected)).tolist())
    # with the default cap 1/32 only the very closest (1 deg) flips
    small = ALFAMix().flips(z.astype(np.float32), zl, labels, _Linear())
    np.testing.assert_array_equal(small, np.abs(cand_deg - 90) <= 1)


def test_alfamix_fewer_flips_than_budget_no_duplicates():
    x, p, lab, labels, cand_deg = _alfa_toy()
    for seed in range(5):
        idx = ALFAMix(alpha_cap=0.25, random_state=seed).select(x, p, 7, labeled=lab, labels=labels, model=_Linear())
        assert len(set(idx.tolist())) == 7 and idx.min() >= 6
        assert {8, 9, 12, 13} <= set(idx.tolist())


def test_alfamix_more_flips_than_budget_clusters():
    x, p, lab, labels, _ = _alfa_toy()
    idx = ALFAMix(alpha_cap=0.25, random_state=0).select(x, p, 2, labeled=lab, labels=labels, model=_Linear())
    assert set(idx.tolist()) <= {8, 9, 12, 13} and len(set(idx.tolist())) == 2


def test_alfamix_prototype_shortcut_matches_model():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(40, 6)).astype(np.float32)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    anchors = rng.normal(size=(4, 6)).astype(np.float32)
    for a in (1 / 32, 0.2, 0.6):
        np.testing.assert_array_equal(
            _prototype_flips(z, anchors, a), _model_flips(_PrototypeClassifier(anchors), z, anchors, a)
        )


def test_alfamix_bad_model():
    x, p, lab, labels, _ = _alfa_toy()
    with pytest.raises(ValueError, match="predict_proba"):
        ALFAMix().select(x, p, 2, labeled=lab, labels=labels, model=object())
    with pytest.raises(ValueError, match="alpha_cap"):
        ALFAMix(alpha_cap=0).select(x, p, 2, labeled=lab, labels=labels)


@pytest.mark.parametrize(
    "make", [lambda rs: ALFAMix(random_state=rs), lambda rs: GCNAL(n_steps=3, hidden=8, random_state=rs)]
)
def test_requires_labels_round_one_is_random(make):
    x, p, y = make_pool(n=50)
    for seed in (0, 7):
        expected = Random(random_state=seed).select(x, p, 6)
        np.testing.assert_array_equal(make(seed).select(x, p, 6), expected)


# --------------------------------------------------------------------------- GCNAL


@needs_torch
def test_gcnal_deterministic():
    x, p, y = make_pool(n=80, d=8)
    lab = np.arange(0, 80, 8)
    kw = dict(labeled=lab, labels=y[lab])
    a = GCNAL(hidden=16, n_steps=20, random_state=1).select(x, p, 6, **kw)
    b = GCNAL(hidden=16, n_steps=20, random_state=1).select(x, p, 6, **kw)
    np.testing.assert_array_equal(a, b)


@needs_torch
def test_gcnal_does_not_touch_global_torch_rng():
    torch = pytest.importorskip("torch")
    x, p, y = make_pool(n=40)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    GCNAL(hidden=8, n_steps=3, random_state=0).select(x, p, 3, labeled=np.arange(5), labels=y[:5])
    assert torch.equal(torch.rand(3), expected)


@needs_torch
def test_gcnal_graph_is_sparse_and_normalised():
    rng = np.random.default_rng(0)
    n, k = 500, 10
    z = rng.normal(size=(n, 16)).astype(np.float32)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    a = _knn_adjacency(z, k)
    assert a.shape == (n, n) and a.nnz <= n * (2 * k + 1)
    assert abs(a - a.T).max() < 1e-6
    assert np.all(a.diagonal() > 0) and a.data.min() > 0
    # D^-1/2 (A + I) D^-1/2 (non-negative, symmetric) has largest eigenvalue exactly 1
    from scipy.sparse.linalg import eigsh

    assert eigsh(a.astype(np.float64), k=1, which="LA", return_eigenvectors=False)[0] == pytest.approx(1.0, abs=1e-4)


@needs_torch
def test_gcnal_duplicate_rows_graph():
    z = np.ones((6, 3), np.float32) / np.sqrt(3)
    a = _knn_adjacency(z, 10)  # k reduced to n - 1
    assert a.nnz == 36


def test_gcnal_missing_torch_message(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("No module named 'torch'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    x, p, y = make_pool(n=30)
    with pytest.raises(ImportError, match=r"pip install -e '\.\[clip\]'`? in the vlal checkout"):
        GCNAL(n_steps=2).select(x, p, 2, labeled=np.arange(3), labels=y[:3])
    with pytest.raises(ImportError, match="GCNAL needs PyTorch"):
        vlal.make_strategy("pcb(gcnal)").check_dependencies()
    with pytest.raises(ImportError, match="GCNAL needs PyTorch"):  # before any round runs
        from vlal.bench import run_benchmark
        from vlal.data import make_synthetic

        run_benchmark(make_synthetic(n_pool=50, n_test=10, n_classes=2, dim=4), ["random", "gcnal"], progress=False)


def test_gcnal_bad_params():
    x, p, _ = make_pool(n=30)
    with pytest.raises(ValueError, match="dropout"):
        GCNAL(dropout=1.0).select(x, p, 2, labeled=[0, 1])
    with pytest.raises(ValueError, match="n_neighbors"):
        GCNAL(n_neighbors=0).select(x, p, 2, labeled=[0, 1])
    with pytest.raises(ValueError, match="n_neighbors"):
        vlal.make_strategy("gcnal[n_neighbors=0]")  # names are checked when built


# --------------------------------------------------------------------------- PCB


def test_balanced_picks_by_hand():
    # proposal order with predicted classes; labeled counts: class0=2, class1=0, class2=1
    pred = np.array([0, 0, 2, 1, 2, 0, 1])
    picks = balanced_picks(pred, np.array([2, 0, 1]), 5)
    # c1 (0) -> pos 3; counts 2,1,1 -> c1 -> pos 6; 2,2,1 -> c2 -> pos 2; 2,2,2 -> c0 -> pos 0;
    # 3,2,2 -> c1 has none left, so the least-labeled class with proposals, c2 -> pos 4
    np.testing.assert_array_equal(picks, [3, 6, 2, 0, 4])


class _Fixed(Random):
    """A base strategy that proposes candidates in a fixed order (for a hand check)."""

    def __init__(self, order, random_state=None):
        self.order = order
        self.random_state = random_state

    def _query(self, pool, budget, rng):
        keep = [i for i in self.order if i in set(pool.candidates.tolist())]
        return np.asarray(keep[:budget])


def test_pcb_balances_predicted_classes():
    # 12 rows, predicted classes 0 x8, 1 x2, 2 x2; the base proposes everything in row order.
    pred = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2, 2, 0, 0])
    p = np.eye(3)[pred] * 0.7 + 0.1
    x = np.random.default_rng(0).normal(size=(12, 4))
    base = _Fixed(list(range(12)))
    assert base.select(x, p, 6).tolist() == list(range(6))  # the base alone: all class 0
    idx = PCB(base, gamma=1.0).select(x, p, 6)
    assert idx.tolist() == [0, 6, 8, 1, 7, 9]
    # with labels: class 0 labeled twice, class 2 once
    idx = PCB(base, gamma=1.0).select(x, p, 3, labeled=[0, 1, 8], labels=[0, 0, 2])
    assert idx.tolist() == [6, 7, 9]


def test_pcb_proposal_size():
    s = PCB(Entropy(), gamma=0.1)
    assert s.n_proposals(3, 100) == 10
    assert s.n_proposals(30, 100) == 30
    assert s.n_proposals(1, 5) == 1
    assert PCB(Entropy(), gamma=1.0).n_proposals(2, 7) == 7


def test_pcb_picks_come_from_the_proposals():
    x, p, y = make_pool(n=100)
    proposals = Entropy(random_state=0).select(x, p, 20)
    idx = PCB(Entropy(), gamma=0.2, random_state=0).select(x, p, 8)
    assert set(idx.tolist()) <= set(proposals.tolist())


def test_pcb_passes_random_state_on_and_leaves_base_alone():
    x, p, y = make_pool(n=100)
    base = CEC(k=5, random_state=None)
    a = PCB(base, gamma=0.2, random_state=5).select(x, p, 6)
    b = PCB(base, gamma=0.2, random_state=5).select(x, p, 6)
    np.testing.assert_array_equal(a, b)
    assert base.random_state is None


def test_pcb_bad_params():
    x, p, _ = make_pool(n=30)
    with pytest.raises(ValueError, match="gamma"):
        PCB(Entropy(), gamma=0).select(x, p, 2)
    with pytest.raises(ValueError, match="base_strategy"):
        PCB("entropy").select(x, p, 2)
    with pytest.raises(ValueError, match="clustering"):  # the base's parameters too
        PCB(CEC(clustering="nope")).select(x, p, 2)


# --------------------------------------------------------------------------- registry / exports


@pytest.mark.parametrize(
    "name, cls",
    [
        ("margin", Margin),
        ("leastconf", LeastConfidence),
        ("coreset", CoreSet),
        ("badge", BADGE),
        ("alfamix", ALFAMix),
        ("gcnal", GCNAL),
    ],
)
def test_registry_names(name, cls):
    s = vlal.make_strategy(name, random_state=3)
    assert type(s) is cls and s.random_state == 3
    assert cls.__name__ in vlal.__all__


@pytest.mark.parametrize("inner, cls", [("entropy", Entropy), ("cec", CEC), ("badge", BADGE)])
def test_registry_pcb_wrapper(inner, cls):
    s = vlal.make_strategy(f"pcb({inner})", random_state=2)
    assert isinstance(s, PCB) and type(s.base_strategy) is cls and s.random_state == 2
    assert "pcb(<base>)" in vlal.available_strategies()
    g = vlal.make_strategy(f"PCB[gamma=0.5]({inner})")
    assert g.gamma == 0.5 and type(g.base_strategy) is cls


def test_pcb_skips_classes_without_proposals():
    # class 0 has the fewest labels but no proposal: the picks keep balancing classes 1 and 2
    from vlal.strategies.pcb import balanced_picks

    proposal_classes = np.array([1, 1, 1, 2, 2, 2])
    picks = balanced_picks(proposal_classes, np.array([0, 3, 4]), 4)
    np.testing.assert_array_equal(proposal_classes[picks], [1, 1, 2, 1])
    np.testing.assert_array_equal(picks, [0, 1, 3, 2])
