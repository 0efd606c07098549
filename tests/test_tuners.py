"""Feature-space tuners (vlal.tuners): equations on hand-computed cases, zero-shot at start,
no collapse on real zero-shot CLIP, the registry, and the loop's below-zero-shot guard."""

import warnings

import numpy as np
import pytest
from conftest import real_data
from scipy.special import softmax

import vlal
from vlal.bench import run_benchmark
from vlal.data import load_features, make_synthetic, zero_shot_proxy
from vlal.exceptions import VlalInputError
from vlal.loop import BelowZeroShotWarning, run_active_learning
from vlal.tuners import (
    DEFAULT_TUNER, TUNERS, AnchoredTuner, CLAPTuner, FeatureSpaceTuner, FreeEmbeddingTuner, KgCoOpTuner,
    SharedTransformTuner, TipAdapter, TipAdapterF, ZeroShotClassifier, available_tuners, cosine_softmax, make_tuner,
)

FEATURE_TUNERS = available_tuners(feature_only=True)


def _toy(n=40, k=3, d=6, seed=0):
    """Clustered unit features, zero-shot embeddings = noisy class centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d))
    y = np.arange(n) % k
    x = centres[y] + 0.4 * rng.normal(size=(n, d))
    w0 = centres + 0.8 * rng.normal(size=(k, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    w0 /= np.linalg.norm(w0, axis=1, keepdims=True)
    return x.astype(np.float32), y, w0.astype(np.float32)


# --------------------------------------------------------------------------- zero-shot at start

@pytest.mark.parametrize("name", FEATURE_TUNERS)
def test_before_fit_and_after_empty_fit_is_zero_shot(name):
    x, y, w0 = _toy()
    zs = cosine_softmax(x, w0)
    t = make_tuner(name, w0)
    np.testing.assert_allclose(t.predict_proba(x), zs, atol=1e-6)
    t.fit(x[:0], y[:0])
    np.testing.assert_allclose(t.predict_proba(x), zs, atol=1e-6)


@pytest.mark.parametrize("name", FEATURE_TUNERS)
def test_fit_restarts_from_zero_shot_is_deterministic_and_does_not_mutate(name):
    x, y, w0 = _toy()
    x_copy, w0_copy = x.copy(), w0.copy()
    a = make_tuner(name, w0).fit(x[:20], y[:20]).predict_proba(x)
    t = make_tuner(name, w0)
    t.fit(x, y)  # a bigger fit first: the next fit must not start from it
    b = t.fit(x[:20], y[:20]).predict_proba(x)
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_array_equal(x, x_copy)
    np.testing.assert_array_equal(w0, w0_copy)
    assert a.shape == (x.shape[0], w0.shape[0]) and np.allclose(a.sum(1), 1, atol=1e-5)


@pytest.mark.parametrize("name", [n for n in FEATURE_TUNERS if n != "zero-shot"])  # zero-shot ignores fit
def test_bad_labels_name_the_argument(name):
    x, y, w0 = _toy()
    with pytest.raises(VlalInputError, match="labels"):
        make_tuner(name, w0).fit(x[:5], np.array([0, 1, 2, 3, 0]))
    with pytest.raises(VlalInputError, match="labels"):
        make_tuner(name, w0).fit(x[:5], y[:4])


def test_learning_tuners_fit_the_toy_problem():
    x, y, w0 = _toy()
    zs_acc = np.mean(cosine_softmax(x, w0).argmax(1) == y)
    assert zs_acc < 1.0  # the prior is imperfect, so there is something to learn
    for name in ("anchored", "coop-shared", "kgcoop", "clap", "free", "tip-adapter-f"):
        acc = np.mean(make_tuner(name, w0).fit(x, y).predict_proba(x).argmax(1) == y)
        assert acc >= zs_acc, name


# --------------------------------------------------------------------------- equations, hand-computed

def test_tip_adapter_affinity_and_logits_by_hand():
    w0 = np.array([[1.0, 0.0], [0.0, 1.0]])
    t = TipAdapter(w0, alpha=2.0, beta=5.5).fit(np.array([[1.0, 0.0]]), np.array([1]))
    x = np.array([[0.6, 0.8]])
    a = np.exp(-5.5 * (1 - 0.6))  # Tip-Adapter Eq. 3: exp(-beta (1 - cos)) = exp(-2.2)
    assert a == pytest.approx(0.1108031584, rel=1e-9)
    assert t.affinity(x)[0, 0] == pytest.approx(a, rel=1e-6)  # features pass through float32
    logits = np.array([0.6 / 0.01, 0.8 / 0.01 + 2.0 * a])
    np.testing.assert_allclose(t.logits(x)[0], logits, rtol=1e-6)
    np.testing.assert_allclose(t.predict_proba(x)[0], softmax(logits), rtol=1e-5)


def test_tip_adapter_defaults_are_the_papers():
    t = TipAdapter(np.eye(3))
    assert (t.alpha, t.beta) == (1.0, 5.5)
    f = TipAdapterF(np.eye(3))
    assert (f.lr, f.epochs, f.batch_size) == (0.001, 20, 256)


def test_tip_adapter_f_moves_keys_and_improves_training_fit():
    x, y, w0 = _toy(seed=3)
    plain = TipAdapter(w0, alpha=1.0, beta=5.5).fit(x, y)
    tuned = TipAdapterF(w0, epochs=50, lr=0.01).fit(x, y)
    assert not np.allclose(tuned.cache_keys, plain.cache_keys)
    loss = lambda t: -np.mean(np.log(t.predict_proba(x)[np.arange(y.size), y]))  # noqa: E731
    assert loss(tuned) < loss(plain)


def test_anchored_penalty_shrinks_with_labels_per_class():
    t = AnchoredTuner(np.eye(3), strength=1.0, power=3.0)
    np.testing.assert_allclose(t.penalties([0, 0, 1]), [1 / 27, 1 / 8, 1.0])
    assert AnchoredTuner(np.eye(3)).strength == 1.0 and AnchoredTuner(np.eye(3)).power == 3.0


def test_anchored_keeps_unlabeled_classes_and_common_direction():
    x, y, w0 = _toy(n=60, k=3, d=6)
    keep = y != 2  # class 2 gets no label
    t = AnchoredTuner(w0).fit(x[keep], y[keep])
    cos_unlabeled = float(t.class_embeddings[2] @ w0[2])
    assert cos_unlabeled > 0.99
    # the update is orthogonal to the leading singular direction of the labeled features
    xs = x[keep] / np.linalg.norm(x[keep], axis=1, keepdims=True)
    u = np.linalg.svd(xs.astype(np.float64), full_matrices=False)[2][0]
    free = FreeEmbeddingTuner(w0).fit(x[keep], y[keep])
    gain_anchored = (t.class_embeddings @ u) - (w0 @ u)
    gain_free = (free.class_embeddings @ u) - (w0 @ u)
    assert np.abs(gain_anchored[:2]).max() <= np.abs(gain_free[:2]).max() + 1e-6


# A hand-checkable take-over (issue 12): K = 3 classes with zero-shot embeddings e1, e2, e3 in d = 4.
# One label: an image of class 0 that zero-shot calls class 1 (cosines 0.5 / 0.6). A test image of
# the unlabeled class 2 that zero-shot gets right (cosines 0.45 / 0.5) shares the labeled image's
# e4 component, so plain cross-entropy moves w_0 along e4 and class 0 takes the test image over.
_W0_TAKE = np.eye(4)[:3].astype(np.float32)
_X_TAKE = np.array([[0.5, 0.6, 0.0, 0.62]], np.float32)
_Z_TAKE = np.array([[0.45, 0.0, 0.5, 0.74]], np.float32)


def test_anchored_label_smoothing_stops_the_take_over():
    assert cosine_softmax(_Z_TAKE, _W0_TAKE).argmax() == 2 and cosine_softmax(_X_TAKE, _W0_TAKE).argmax() == 1
    plain = AnchoredTuner(_W0_TAKE).fit(_X_TAKE, [0])
    smooth = AnchoredTuner(_W0_TAKE, label_smoothing=0.1).fit(_X_TAKE, [0])
    z = _Z_TAKE / np.linalg.norm(_Z_TAKE)
    gain = lambda t: float((z @ (t.class_embeddings[0] - _W0_TAKE[0]))[0])  # noqa: E731  cosine gain of class 0
    assert plain.predict_proba(_Z_TAKE).argmax() == 0  # taken over
    assert gain(plain) > 0.05
    assert smooth.predict_proba(_Z_TAKE).argmax() == 2  # kept
    assert gain(smooth) < 0.0
    # both still learn the label
    assert plain.predict_proba(_X_TAKE).argmax() == 0 and smooth.predict_proba(_X_TAKE).argmax() == 0


@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_anchored_label_smoothing_bounds_the_labeled_probability(eps):
    # the smoothed loss is smallest at p_y = 1 - eps + eps / K: the fit stops there (K = 3: 0.9333, 0.8)
    bound = 1 - eps + eps / 3
    for n_common in (0, 1):
        t = AnchoredTuner(_W0_TAKE, strength=0.0, n_common=n_common, max_iter=500, label_smoothing=eps)
        p = float(t.fit(_X_TAKE, [0]).predict_proba(_X_TAKE)[0, 0])
        assert bound - 0.02 < p < bound + 0.01, (n_common, p)
    plain = AnchoredTuner(_W0_TAKE, strength=0.0, n_common=0, max_iter=500).fit(_X_TAKE, [0])
    assert float(plain.predict_proba(_X_TAKE)[0, 0]) > 0.99


def test_anchored_label_smoothing_off_by_default_and_zero_is_plain():
    x, y, w0 = _toy()
    assert AnchoredTuner(w0).label_smoothing == 0.0
    a = AnchoredTuner(w0).fit(x, y).class_embeddings
    b = AnchoredTuner(w0, label_smoothing=0).fit(x, y).class_embeddings
    c = AnchoredTuner(w0, label_smoothing=0.1).fit(x, y).class_embeddings
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan"), float("inf"), "0.1", True, None])
def test_anchored_label_smoothing_bad_values(bad):
    with pytest.raises(VlalInputError, match="label_smoothing"):
        AnchoredTuner(np.eye(3), label_smoothing=bad)
    with pytest.raises(VlalInputError, match="label_smoothing"):
        make_tuner("anchored", np.eye(3), label_smoothing=bad)


def test_anchored_smoothing_by_unlabeled_share():
    t = AnchoredTuner(np.eye(4), label_smoothing=0.2, smoothing_by_unlabeled=True)
    assert t.smoothing([0]) == pytest.approx(0.2 * 3 / 4)  # 3 of 4 classes without a label
    assert t.smoothing([0, 0, 1]) == pytest.approx(0.1)
    assert t.smoothing([0, 1, 2, 3]) == 0.0  # every class labeled: plain cross-entropy
    assert AnchoredTuner(np.eye(4), label_smoothing=0.2).smoothing([0, 1, 2, 3]) == 0.2
    # all classes labeled: the same fit as without smoothing
    x, y, w0 = _toy()
    a = AnchoredTuner(w0).fit(x, y).class_embeddings
    b = AnchoredTuner(w0, label_smoothing=0.3, smoothing_by_unlabeled=True).fit(x, y).class_embeddings
    np.testing.assert_array_equal(a, b)
    # one class labeled of three: eps = 0.15 * 2/3 = 0.1 takes effect (the take-over case is kept)
    s = AnchoredTuner(_W0_TAKE, label_smoothing=0.15, smoothing_by_unlabeled=True).fit(_X_TAKE, [0])
    assert s.predict_proba(_Z_TAKE).argmax() == 2
    for bad in (1, "yes", None):
        with pytest.raises(VlalInputError, match="smoothing_by_unlabeled"):
            AnchoredTuner(np.eye(3), label_smoothing=0.1, smoothing_by_unlabeled=bad)


def test_clap_constraint_weights_are_zero_shot_performance():
    x, y, w0 = _toy()
    lab = y != 1
    t = CLAPTuner(w0).fit(x[lab], y[lab])
    p = cosine_softmax(x[lab], w0)
    for c in (0, 2):
        rows = y[lab] == c
        assert t.constraint_weights[c] == pytest.approx(p[rows, c].mean(), rel=1e-4)
    assert t.constraint_weights[1] == 1.0  # no label: fully constrained


def test_shared_transform_moves_every_class_and_kgcoop_pulls_back():
    x, y, w0 = _toy()
    only0 = y == 0
    shared = SharedTransformTuner(w0).fit(x[only0], y[only0])
    free = FreeEmbeddingTuner(w0).fit(x[only0], y[only0])
    # labels of class 0 only: the shared transform moves class 2 too
    assert float(shared.class_embeddings[2] @ w0[2]) < 1 - 1e-4
    assert shared.transform.shape == (w0.shape[1], w0.shape[1])
    kg = KgCoOpTuner(w0, kg_weight=100.0).fit(x, y)
    plain = SharedTransformTuner(w0).fit(x, y)
    dist = lambda t: np.linalg.norm(t.class_embeddings - w0)  # noqa: E731
    assert dist(kg) < dist(plain)
    assert KgCoOpTuner(w0).knowledge_weight == 8.0
    assert free.class_embeddings.shape == w0.shape


# --------------------------------------------------------------------------- registry

def test_registry_names_kinds_and_errors():
    assert DEFAULT_TUNER == "anchored"
    assert {"anchored", "coop-shared", "kgcoop", "tip-adapter", "tip-adapter-f", "clap", "free", "zero-shot"} <= set(FEATURE_TUNERS)
    assert {"coop", "vpt", "maple"} <= set(available_tuners())
    assert TUNERS["vpt"].inputs == "images" and TUNERS["anchored"].inputs == "features"
    assert FeatureSpaceTuner is FreeEmbeddingTuner
    assert isinstance(make_tuner("zero-shot", np.eye(2)), ZeroShotClassifier)
    with pytest.raises(VlalInputError, match="unknown tuner 'nope'"):
        make_tuner("nope", np.eye(2))
    with pytest.raises(VlalInputError, match="CLIP prompt tuner"):
        make_tuner("coop", np.eye(2))


def test_cli_tuner_choices_come_from_the_registry():
    from click.testing import CliRunner

    from vlal.cli import main

    out = CliRunner().invoke(main, ["bench", "--help"]).output
    for name in available_tuners():
        assert name in out
    assert "default: anchored" in out


# --------------------------------------------------------------------------- the loop's guard

class _Wrecker(ZeroShotClassifier):
    """A tuner that damages the model on fit (class embeddings rolled by one); no labels: zero-shot."""

    def __init__(self, class_embeddings):
        super().__init__(class_embeddings)
        self.initial = self.class_embeddings.copy()

    def fit(self, features, labels):
        self.class_embeddings = np.roll(self.initial, 1 if len(labels) else 0, axis=0)
        return self


def test_loop_warns_and_flags_rounds_below_zero_shot():
    x, y, w0 = _toy(n=60)
    with pytest.warns(BelowZeroShotWarning, match="below zero-shot") as rec:
        res = run_active_learning(vlal.Random(0), _Wrecker(w0), x, y, x, y, n_rounds=2, budget=3)
    assert rec[0].filename == __file__  # stacklevel: the caller's line
    assert [r.below_zero_shot for r in res.rounds] == [False, True, True]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = run_active_learning(vlal.Random(0), _Wrecker(w0), x, y, x, y, n_rounds=1, budget=3, zero_shot_margin=None)
        assert not res.rounds[1].below_zero_shot
        res = run_active_learning(vlal.Random(0), ZeroShotClassifier(w0), x, y, x, y, n_rounds=1, budget=3)
        assert not res.rounds[1].below_zero_shot
    with pytest.raises(VlalInputError, match="zero_shot_margin"):
        run_active_learning(vlal.Random(0), ZeroShotClassifier(w0), x, y, x, y, zero_shot_margin=300)


def test_a_reused_tuner_starts_the_loop_from_zero_shot():
    """Stop 23 review: a tuner object fitted by an earlier run gave that fit as 'zero-shot' round 0, other
    picks, and a false below-zero-shot warning."""
    ds = make_synthetic(n_pool=300, n_test=200, n_classes=5, dim=16)
    w0, keep = zero_shot_proxy(ds, random_state=0)
    x, y = ds.pool_features[keep], ds.pool_labels[keep]
    tuner = AnchoredTuner(w0)
    runs = [run_active_learning(vlal.CEC(random_state=0), tuner, x, y, ds.test_features, ds.test_labels,
                                n_rounds=2, budget=5) for _ in range(2)]
    assert runs[0].rounds[1].accuracy != runs[0].rounds[0].accuracy  # the first run did change the tuner
    np.testing.assert_array_equal(runs[0].accuracies, runs[1].accuracies)
    np.testing.assert_array_equal(runs[0].labeled, runs[1].labeled)
    fresh = AnchoredTuner(w0).predict_proba(ds.test_features)
    assert runs[1].rounds[0].accuracy == 100.0 * np.mean(fresh.argmax(1) == ds.test_labels)


def test_bench_records_flag_and_warns_once():
    ds = make_synthetic(n_pool=300, n_test=200, n_classes=5, dim=16)
    with pytest.warns(BelowZeroShotWarning) as rec:
        records = run_benchmark(ds, ["random"], n_rounds=2, seeds=[0], tuner_factory=_Wrecker,
                                tuner_name="wrecker", progress=False)
    assert len([w for w in rec if issubclass(w.category, BelowZeroShotWarning)]) == 1
    assert rec[0].filename == __file__
    assert {r["tuner"] for r in records} == {"wrecker"}
    assert [r["below_zero_shot"] for r in records] == [False, True, True]
    default = run_benchmark(ds, ["random"], n_rounds=1, seeds=[0], progress=False)
    assert {r["tuner"] for r in default} == {"anchored"}


# --------------------------------------------------------------------------- real zero-shot CLIP

@pytest.mark.slow
def test_no_collapse_on_real_zero_shot_clip_with_25_labels():
    ds = load_features(real_data("imagenet_real_even"))
    w0, keep = zero_shot_proxy(ds)
    x, y = ds.pool_features[keep], ds.pool_labels[keep]
    zs = 100 * np.mean(ZeroShotClassifier(w0).predict_proba(ds.test_features).argmax(1) == ds.test_labels)
    assert zs == pytest.approx(74.3, abs=0.05)
    idx = np.random.default_rng(0).choice(x.shape[0], 25, replace=False)
    acc = {}
    for name in ("anchored", "tip-adapter", "free"):
        t = make_tuner(name, w0).fit(x[idx], y[idx])
        acc[name] = 100 * np.mean(t.predict_proba(ds.test_features).argmax(1) == ds.test_labels)
    assert acc["anchored"] >= zs - 3, acc
    assert acc["tip-adapter"] >= zs - 3, acc
    assert acc["free"] < zs - 10, acc  # the collapse issue 11 reports, kept visible
