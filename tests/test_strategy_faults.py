"""Issue 8 (strategy items 2, 4, 5, 7, 8): each test failed on the old main."""

import importlib.util

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vlal
from vlal import ALFAMix, BADGE, CEC, GCNAL, PCB, Entropy, Random

from conftest import make_pool

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="GCNAL needs torch ([clip] extra)")

ALL = [n for n in vlal.available_strategies() if "<" not in n] + ["pcb(entropy)", "pcb(cec)"]


def _small(name):
    """A registered strategy with test-sized settings."""
    if name == "gcnal":
        return vlal.make_strategy("gcnal[n_steps=5,hidden=16,n_neighbors=5]", random_state=0)
    if name.startswith("cec"):
        return vlal.make_strategy(f"{name}[k=5]", random_state=0)
    return vlal.make_strategy(name, random_state=0)


# --------------------------------------------------------------------------- item 2


@needs_torch
def test_gcnal_uses_labeled_set_without_labels():
    x, p, y = make_pool(n=60)
    lab = np.arange(0, 60, 6)
    s = GCNAL(n_neighbors=5, hidden=16, n_steps=20, random_state=0)
    without = s.select(x, p, 8, labeled=lab)
    with_labels = s.select(x, p, 8, labeled=lab, labels=y[lab])
    np.testing.assert_array_equal(without, with_labels)  # label values are not read
    # not the silent random fallback of the old main
    randoms = [Random(random_state=seed).select(x, p, 8, labeled=lab) for seed in range(3)]
    assert not any(np.array_equal(without, r) for r in randoms)
    assert not np.array_equal(without, Random(random_state=0).select(x, p, 8, labeled=lab))


@pytest.mark.parametrize("strategy", [ALFAMix(random_state=0), PCB(Entropy()), PCB(CEC(k=5))])
def test_label_readers_refuse_labeled_without_labels(strategy):
    x, p, y = make_pool(n=40)
    with pytest.raises(ValueError, match=r"reads the classes of the labeled rows.*pass labels="):
        strategy.select(x, p, 4, labeled=[0, 1, 2])
    assert strategy.select(x, p, 4, labeled=[0, 1, 2], labels=y[:3]).shape == (4,)


# --------------------------------------------------------------------------- item 4


def test_badge_first_pick_tie_broken_by_seed():
    x, _, y = make_pool(n=200)
    onehot = np.eye(4)[y]  # every gradient norm is 0: all rows tie
    firsts = {int(BADGE(random_state=s).select(x, onehot, 3)[0]) for s in range(40)}
    assert len(firsts) > 20  # old main: row 0 for every seed


def test_cec_greedy_tie_broken_by_seed():
    x, _, y = make_pool(n=60)
    onehot = np.eye(4)[y]  # U = 0 everywhere: every candidate of a cluster ties
    firsts = {int(vlal.make_strategy("cec-greedy[k=5]", random_state=s).select(x, onehot, 1)[0]) for s in range(30)}
    assert len(firsts) > 10  # old main: the lowest row of the cluster


def test_coreset_ties_broken_by_seed():
    # every candidate equally far from the labeled row: the pick is seed-drawn, not row 1
    x = np.vstack([[1.0, 0.0, 0.0], np.tile([0.0, 1.0, 0.0], (20, 1))])
    p = np.full((21, 2), 0.5)
    firsts = {int(vlal.CoreSet(random_state=s).select(x, p, 1, labeled=[0])[0]) for s in range(30)}
    assert len(firsts) > 10


# --------------------------------------------------------------------------- item 5


def _dup_pool(n_distinct, copies, n_single, d, seed):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n_distinct, d))
    single = rng.normal(size=(n_single, d))
    x = np.vstack([np.repeat(base, copies, axis=0), single]).astype(np.float32)
    perm = rng.permutation(len(x))
    x = x[perm]
    logits = 2.0 * rng.normal(size=(len(x), 3))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return x, p


def _n_distinct_rows(x):
    return np.unique(x, axis=0).shape[0]


CLUSTERING = ["cec", "cec-nocal", "cec-nonn", "cec-kmeans", "cec-greedy"]


@pytest.mark.parametrize("name", CLUSTERING)
def test_cec_no_duplicate_images_issue_example(name):
    # 3 distinct rows copied 100x each plus 10 singletons, budget 13 (old main: 5-7 distinct)
    x, p = _dup_pool(3, 100, 10, 8, seed=0)
    for seed in range(3):
        idx = vlal.make_strategy(name, random_state=seed).select(x, p, 13)
        assert _n_distinct_rows(x[idx]) == 13


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(CLUSTERING + ["alfamix", "alfamix-wide"]),
    n_distinct=st.integers(1, 6),
    copies=st.integers(2, 30),
    n_single=st.integers(2, 8),
    d=st.integers(2, 6),
    frac_budget=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
)
def test_clustering_strategies_never_pick_duplicates(name, n_distinct, copies, n_single, d, frac_budget, seed):
    x, p = _dup_pool(n_distinct, copies, n_single, d, seed)
    n = len(x)
    lab = np.array([0, 1])
    cand = np.setdiff1d(np.arange(n), lab)
    distinct_left = _n_distinct_rows(x[cand])
    budget = max(1, int(frac_budget * min(cand.size, distinct_left + 3)))
    if name.startswith("alfamix"):
        s = ALFAMix(alpha_cap=0.5 if name == "alfamix-wide" else 1 / 32, random_state=seed)
    else:
        s = vlal.make_strategy(f"{name}[k=3]", random_state=seed)
    idx = s.select(x, p, budget, labeled=lab, labels=np.array([0, 1]))
    # copies of a labeled row leave the candidates while `budget` others remain (Strategy.select)
    from vlal._validation import copies_of_rows

    kept = cand[~copies_of_rows(x, lab)[cand]]
    if 0 < kept.size < budget:  # every other row is taken, copies fill the shortfall only
        assert np.isin(kept, idx).all()
        return
    if kept.size >= budget:
        assert np.isin(idx, kept).all()
        distinct_left = _n_distinct_rows(x[kept])
    # distinct feature rows among the picks: all of them while distinct candidates remain
    assert _n_distinct_rows(x[idx]) == min(budget, distinct_left)


# --------------------------------------------------------------------------- item 7


@pytest.mark.parametrize("name", ALL)
def test_zero_norm_row_one_rule_names_pool_row(name):
    x, p, y = make_pool(n=40)
    lab = np.arange(0, 40, 4)  # rows 0, 4, 8, 12, ...: row 11 is the 8th unlabeled row
    zero = x.copy()
    zero[11] = 0
    s = _small(name)
    with pytest.raises(ValueError, match=r"features row 11 has zero norm"):
        s.select(zero, p, 3, labeled=lab, labels=y[lab])
    zero_lab = x.copy()
    zero_lab[8] = 0  # a labeled row
    with pytest.raises(ValueError, match=r"features row 8 has zero norm"):
        s.select(zero_lab, p, 3, labeled=lab, labels=y[lab])
    with pytest.raises(ValueError, match=r"features row 11 has zero norm"):  # round 1 too
        s.select(zero, p, 3)


# --------------------------------------------------------------------------- item 8


class _Model:
    def __init__(self, fn):
        self.fn = fn

    def predict_proba(self, f):
        return self.fn(np.asarray(f))


@pytest.mark.parametrize(
    "fn, msg",
    [
        (lambda f: np.full((len(f), 3), 1 / 3), r"shape \(\d+, 3\).*expected \(\d+, 5\)"),
        (lambda f: np.zeros((len(f), 5)), "summing to 0.*all zeros"),
        (lambda f: np.full((len(f), 5), np.nan), "NaN"),
        (lambda f: np.full((len(f), 5), 0.4) - np.eye(5)[np.zeros(len(f), int)] * 0.6, "negative"),
        (lambda f: np.full(len(f), 0.2), "shape"),
    ],
)
def test_alfamix_checks_model_output(fn, msg):
    x, p, y = make_pool(n=40, n_classes=5)
    lab = np.arange(10)
    with pytest.raises(ValueError, match=msg):
        ALFAMix(random_state=0).select(x, p, 3, labeled=lab, labels=y[lab], model=_Model(fn))


def test_alfamix_model_with_fewer_columns_names_align_probs():
    x, p, y = make_pool(n=40, n_classes=5)
    lab = np.arange(10)
    with pytest.raises(ValueError, match=r"vlal\.align_probs"):
        ALFAMix(random_state=0).select(
            x, p, 3, labeled=lab, labels=y[lab], model=_Model(lambda f: np.full((len(f), 3), 1 / 3))
        )


def test_zero_norm_rule_float16_and_negative_zero():
    x, p, y = make_pool(n=40)
    x16 = np.asfortranarray(x.astype(np.float16))
    x16[17] = -0.0  # all (negative) zeros: no direction either
    with pytest.raises(ValueError, match=r"features row 17 has zero norm"):
        Random(random_state=0).select(x16, p, 3)
    x16[17] = np.float16(1e-7)  # a float16 subnormal is not zero
    assert Random(random_state=0).select(x16, p, 3).shape == (3,)


def test_cli_select_labeled_without_labels(tmp_path):
    from click.testing import CliRunner

    from vlal.cli import main

    x, p, y = make_pool(n=40)
    np.save(tmp_path / "f.npy", x)
    np.save(tmp_path / "p.npy", p)
    np.save(tmp_path / "lab.npy", np.arange(5))
    args = ["select", "--features", str(tmp_path / "f.npy"), "--probs", str(tmp_path / "p.npy"), "--budget", "4",
            "--labeled", str(tmp_path / "lab.npy"), "--out", str(tmp_path / "q.npy")]
    res = CliRunner().invoke(main, args + ["--strategy", "alfamix"])
    assert res.exit_code != 0 and "labels" in res.output and "Traceback" not in res.output
    assert "--labels" in res.output and "labels=<" not in res.output  # the CLI flag, not the Python argument
    assert not (tmp_path / "q.npy").exists()


def test_replace_duplicates_by_hand():
    from vlal.strategies._distinct import replace_duplicates

    a, b, c = [1.0, 0.0], [0.8, 0.6], [0.0, 1.0]  # b is nearer to a than c is
    z = np.array([a, a, b, c, a], np.float32)
    centers = np.array([a, a, a], np.float32)
    np.testing.assert_array_equal(replace_duplicates(z, np.array([0, 1, 4]), centers), [0, 2, 3])
    np.testing.assert_array_equal(replace_duplicates(z, np.array([0, 2, 3]), centers), [0, 2, 3])  # no dups: same
    # every candidate duplicates a pick: the duplicates stay, indices distinct
    np.testing.assert_array_equal(replace_duplicates(z[[0, 1, 4]], np.array([0, 1, 2]), centers), [0, 1, 2])
    # -0.0 and 0.0 are the same feature value
    zz = np.array([[0.0, 1.0], [-0.0, 1.0], [0.6, 0.8]], np.float32)
    np.testing.assert_array_equal(replace_duplicates(zz, np.array([0, 1]), zz[[0, 0]]), [0, 2])
    # without centres the replacement is drawn from the free rows
    got = replace_duplicates(z, np.array([0, 1]), None, np.random.default_rng(0))
    assert got[0] == 0 and got[1] in (2, 3)
    # the group's first pick keeps the group's lowest position, whichever centre got it first
    np.testing.assert_array_equal(replace_duplicates(z, np.array([4, 0, 3]), centers), [0, 2, 3])
    # ... and when no distinct row is left, the duplicates swap positions, still distinct
    np.testing.assert_array_equal(replace_duplicates(z[[0, 1, 4]], np.array([2, 0, 1]), centers), [0, 2, 1])


@pytest.mark.parametrize("name", CLUSTERING[:4])
def test_copies_at_the_same_distance_give_the_lowest_position_whatever_the_seed(name):
    # 10 images, each 6 times in a row (rows 6i .. 6i + 5): every pick is the first copy (README rule)
    rng = np.random.default_rng(1)
    x = np.repeat(rng.normal(size=(10, 16)).astype(np.float32), 6, axis=0)
    p = np.repeat(vlal.zero_shot_probs(x[::6], rng.normal(size=(5, 16)).astype(np.float32), temperature=0.3), 6, axis=0)
    for seed in range(4):
        idx = vlal.make_strategy(name, random_state=seed).select(x, p, 10)
        np.testing.assert_array_equal(np.sort(idx), np.arange(0, 60, 6), err_msg=f"seed {seed}")



# --------------------------------------------------------------------------- copies of labeled rows


def _twice_pool(seed=0):
    """Every image twice (rows 2i and 2i + 1 equal); one copy of the first 20 images labeled."""
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(40, 8)).astype(np.float32)
    x = np.repeat(u, 2, axis=0)
    p = vlal.zero_shot_probs(x, rng.normal(size=(4, 8)).astype(np.float32), temperature=0.05)
    lab = np.arange(0, 40, 2)
    return x, p, lab, p[lab].argmax(axis=1)


@pytest.mark.parametrize("name", ALL)
def test_no_budget_spent_on_copies_of_labeled_rows(name):
    if name == "gcnal" and importlib.util.find_spec("torch") is None:
        pytest.skip("GCNAL needs torch")
    x, p, lab, y = _twice_pool()
    copies = lab + 1  # rows 1, 3, ..., 39: the unlabeled copies of labeled images
    x_before = x.copy()
    idx, util = _small(name).select(x, p, 15, labeled=lab, labels=y, return_utilities=True)
    assert not np.isin(idx, copies).any()  # 40 other candidates remain for 15 picks
    assert np.isnan(util[copies]).all() and np.isnan(util[lab]).all()
    assert np.isfinite(util[40:]).all()
    np.testing.assert_array_equal(x, x_before)
    # the budget needs copies: 40 other candidates, 45 picks -> all 40 taken, 5 copies, no more
    idx, util = _small(name).select(x, p, 45, labeled=lab, labels=y, return_utilities=True)
    assert np.unique(idx).size == 45 and np.isin(np.arange(40, 80), idx).all() and np.isin(idx, copies).sum() == 5
    assert np.isfinite(util[copies]).all() and np.isnan(util[lab]).all()
    # the same image encoded with round-off (1 ulp) or scaled is a copy too
    x2 = x.copy()
    x2[copies] = np.nextafter(x2[copies], np.float32(np.inf)) * np.float32(3.0)
    idx = _small(name).select(x2, p, 15, labeled=lab, labels=y)
    assert not np.isin(idx, copies).any()


@pytest.mark.parametrize("name", ["random", "entropy", "cec", "badge"])
def test_float16_copies_of_labeled_rows_are_copies(name):
    """Stop 24 reviews: with float16 features, about half of the re-encoded (1e-6 noise) or scaled
    copies of labeled images were not recognised (the old float32 tolerance 1e-4 is float16's
    round-off) and were queried again; so were float16-rounded copies inside a float32 pool."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 512))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    lab = np.arange(50)
    x[300:350] = x[:50] + rng.normal(scale=1e-6, size=(50, 512))  # re-encoded copies
    x[350:400] = 3.0 * x[:50]  # scaled copies
    p = vlal.zero_shot_probs(x.astype(np.float32), rng.normal(size=(10, 512)).astype(np.float32), temperature=0.05)
    x16 = x.astype(np.float16)
    mixed = x.astype(np.float32)
    mixed[300:400] = x16[300:400]  # float32 pool, its copies rounded to float16 (features of two sources)
    for feats in (x16, x16.astype(np.float32), mixed):
        idx, util = _small(name).select(feats, p, 200, labeled=lab, labels=p[lab].argmax(1), return_utilities=True)
        assert np.isnan(util[300:400]).all()  # every copy recognised ...
        assert not np.isin(idx, np.arange(300, 400)).any()  # ... and none queried (250 other rows remain)


def test_copies_of_rows_hand_case():
    from vlal._validation import COPY_TOL, copies_of_rows

    # unit rows at angles 0, 1e-3, 4e-3 rad, a scaled copy of row 0, -0.0 vs 0.0, and a far row
    a = np.array([0.0, 1e-3, 4e-3])
    x = np.concatenate([np.stack([np.cos(a), np.sin(a)], axis=1), [[3.0, 0.0], [1.0, -0.0], [0.0, 1.0]]])
    # distance of row 1 to row 0: 1e-3 <= 2e-3 (copy); row 2: 4e-3 (not a copy); one tolerance for every dtype
    assert COPY_TOL == 2e-3
    for dt in (np.float64, np.float32):
        np.testing.assert_array_equal(copies_of_rows(x.astype(dt), np.array([0])), [True, True, False, True, True, False])
        np.testing.assert_array_equal(copies_of_rows(x.astype(dt), np.array([2])), [False, False, True, False, False, False])
    np.testing.assert_array_equal(copies_of_rows(x.astype(np.float16), np.array([5])), [0, 0, 0, 0, 0, 1])
    # float16 rows at 0, 2e-4, 1.5e-3, 3e-3 rad: the first three are copies of row 0, the last is not
    a16 = np.array([0.0, 2e-4, 1.5e-3, 3e-3])
    x16 = np.stack([np.cos(a16), np.sin(a16)], axis=1).astype(np.float16)
    np.testing.assert_array_equal(copies_of_rows(x16, np.array([0])), [True, True, True, False])
    np.testing.assert_array_equal(copies_of_rows(x16.astype(np.float32), np.array([0])), [True, True, True, False])
    wide = np.random.default_rng(0).normal(size=(200, 64))
    wide[7] = wide[3] * 2.0
    wide[9] = wide[3]
    wide[9, 5] += 1e-1  # one value off: far in the full row
    np.testing.assert_array_equal(np.flatnonzero(copies_of_rows(wide, np.array([3]))), [3, 7])


# ------------------------------------------------- one definition of a copy (branch dedup-tol)


def _rescaled_copies_pool():
    """10 images, each 6 times in a row, every row scaled by its own factor: after
    normalisation the copies differ in the last bits (not bitwise equal), well within COPY_TOL."""
    from scipy.special import softmax

    rng = np.random.default_rng(0)
    base = rng.normal(size=(10, 6)).astype(np.float32)
    f = np.repeat(base, 6, axis=0)
    p = softmax(np.repeat(rng.normal(size=(10, 4)) * 2, 6, axis=0), axis=1)
    f2 = f * rng.uniform(0.5, 2, size=(60, 1)).astype(np.float32)
    return f, f2, p


DISTINCT_PICKS = ["cec", "cec-nocal", "cec-nonn", "cec-kmeans", "cec-greedy", "pcb(cec)", "alfamix",
                  "calibrated-mix", "lookahead", "lookahead[diversity=none]", "lookahead[diversity=greedy]"]


@pytest.mark.parametrize("name", DISTINCT_PICKS)
def test_rescaled_copies_are_never_picked_twice(name):
    # the reviewer's repro: CEC returned image 9 twice when each copy was scaled by its own factor
    f, f2, p = _rescaled_copies_pool()
    lab = np.arange(0, 42, 6)  # images 0..6 labeled (one row each); 3 images left
    labels = np.arange(7) % 4
    for x in (f, f2):
        z = x / np.linalg.norm(x, axis=1, keepdims=True)
        assert (x is f) == bool((z[::6] == z[1::6]).all())  # f2's copies are not bitwise equal
        idx = vlal.make_strategy(name, random_state=0).select(x, p, 3, labeled=lab, labels=labels)
        np.testing.assert_array_equal(np.sort(idx // 6), [7, 8, 9], err_msg=name)


def test_copy_groups_by_hand():
    from vlal._validation import copy_groups

    # unit rows at angles 0, 1e-3, 4e-3 rad (distance to row 0 ~ the angle), a scaled copy of
    # row 0, and a far row: row 1 is a copy of row 0 (1e-3 <= 2e-3); row 2 is not (4e-3 from
    # row 0, 3e-3 from row 1)
    a = np.array([0.0, 1e-3, 4e-3])
    x = np.concatenate([np.stack([np.cos(a), np.sin(a)], axis=1), [[3.0, 0.0], [0.0, 1.0]]])
    np.testing.assert_array_equal(copy_groups(x), [0, 0, 2, 0, 4])
    np.testing.assert_array_equal(copy_groups(x, tol=6e-3), [0, 0, 0, 0, 4])
    # a chain a ~ b ~ c (1.6e-3 apart each) is one group although a and c are 3.2e-3 apart;
    # the group id is its lowest row, whatever the row order
    c = np.array([3.2e-3, 5.0, 0.0, 1.6e-3])
    y = np.stack([np.cos(c), np.sin(c)], axis=1)
    np.testing.assert_array_equal(copy_groups(y), [0, 1, 0, 0])
    # -0.0 and 0.0 are the same value
    np.testing.assert_array_equal(copy_groups(np.array([[0.0, 1.0], [-0.0, 1.0], [1.0, 0.0]], np.float32)), [0, 0, 2])
    # float16 rows at 0, 2e-4, 1.5e-3, 3e-3 rad: one chain (3e-3 is 1.5e-3 from the 1.5e-3 row)
    a16 = np.array([0.0, 2e-4, 1.5e-3, 3e-3])
    x16 = np.stack([np.cos(a16), np.sin(a16)], axis=1).astype(np.float16)
    np.testing.assert_array_equal(copy_groups(x16), [0, 0, 0, 0])
    np.testing.assert_array_equal(copy_groups(x16[[0, 1, 3]]), [0, 0, 2])  # without the link: 3e-3 apart
    np.testing.assert_array_equal(copy_groups(x16.astype(np.float32)), [0, 0, 0, 0])  # the dtype does not matter


def test_copy_groups_never_groups_far_rows_and_matches_brute_force():
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial.distance import pdist, squareform

    from vlal._validation import copy_groups

    rng = np.random.default_rng(3)
    far = rng.normal(size=(500, 64)).astype(np.float32)
    np.testing.assert_array_equal(copy_groups(far), np.arange(500))
    np.testing.assert_array_equal(copy_groups(far.astype(np.float16)), np.arange(500))
    for d in (1, 3, 8, 40):  # d <= 8: the projection is the whole row
        base = rng.normal(size=(60, d))
        x = base[rng.integers(0, 60, 300)] * rng.uniform(0.5, 2, (300, 1))
        noise = rng.normal(size=x.shape)
        noise *= np.linalg.norm(x, axis=1, keepdims=True) / np.linalg.norm(noise, axis=1, keepdims=True)
        x = (x + noise * rng.choice([0.0, 6e-4, 1.2e-3, 2.4e-3, 2e-1], size=(300, 1))).astype(np.float32)
        z = x.astype(np.float64) / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
        _, label = connected_components(squareform(pdist(z)) <= 2e-3, directed=False)
        _, lowest = np.unique(label, return_index=True)
        np.testing.assert_array_equal(copy_groups(x), lowest[label], err_msg=f"d={d}")


def test_replace_duplicates_uses_the_copy_tolerance():
    from vlal.strategies._distinct import replace_duplicates

    a = np.array([1.0, 0.0])
    near = np.array([np.cos(1e-3), np.sin(1e-3)])  # a copy of a (1e-3 <= 2e-3), not bitwise equal
    mid = np.array([np.cos(5e-3), np.sin(5e-3)])  # another image, the nearest to a after near
    c = np.array([0.0, 1.0])
    z = np.array([a, near, mid, c], np.float32)
    centers = np.array([a, a], np.float32)
    np.testing.assert_array_equal(replace_duplicates(z, np.array([1, 0]), centers), [0, 2])  # lowest kept
    np.testing.assert_array_equal(replace_duplicates(z, np.array([0, 2]), centers), [0, 2])
    np.testing.assert_array_equal(replace_duplicates(z, np.array([0, 1]), centers), [0, 2])
