"""The bad-input table of the core issue: each case gets a clear error or the documented fallback."""

import numpy as np
import pytest

import vlal
from vlal import CEC, BudgetExceededError, Random

from conftest import make_pool


def test_nan_and_inf_name_argument_and_row():
    x, p, _ = make_pool()
    x2 = x.copy()
    x2[11, 0] = np.inf
    with pytest.raises(ValueError, match=r"features contains NaN or inf \(first bad row: 11\)"):
        CEC().select(x2, p, 3)
    p2 = p.copy()
    p2[4, 1] = np.nan
    with pytest.raises(ValueError, match=r"probs contains NaN or inf \(first bad row: 4\)"):
        CEC().select(x, p2, 3)


def test_logits_rejected():
    x, p, _ = make_pool()
    logits = np.log(p)
    with pytest.raises(ValueError, match="not logits"):
        Random().select(x, logits, 3)
    with pytest.raises(ValueError, match=r"row 0 sums to 2, not 1 \(tolerance 0.001\); class probabilities are expected "
                                         r"\(rows summing to 1\): normalise the rows"):
        Random().select(x, p * 2, 3)
    with pytest.raises(ValueError, match=r"row 0 sums to 100, not 1 .*percentages\? divide by 100"):
        Random().select(x, p * 100, 3)
    # within atol 1e-3 is accepted
    Random().select(x, p * (1 + 5e-4), 3)


def test_shapes():
    x, p, _ = make_pool()
    with pytest.raises(ValueError, match=r"\(60, 8\).*\(59, 4\)"):
        CEC().select(x, p[:-1], 3)
    with pytest.raises(ValueError, match=r"2-D.*\(60,\)"):
        CEC().select(x[:, 0], p, 3)


@pytest.mark.parametrize("budget", [0, -3, 1.5, None, "2", np.float64(2.0)])
def test_budget_not_positive_int(budget):
    x, p, _ = make_pool()
    with pytest.raises(ValueError, match="budget"):
        CEC().select(x, p, budget)


def test_budget_numpy_int_ok():
    x, p, _ = make_pool()
    assert CEC(k=5, random_state=0).select(x, p, np.int64(4)).shape == (4,)


def test_budget_exceeds_is_typed_with_numbers():
    x, p, _ = make_pool()
    with pytest.raises(BudgetExceededError, match="budget=51.*50") as err:
        CEC().select(x, p, 51, labeled=np.arange(10))
    assert isinstance(err.value, ValueError)
    assert (err.value.budget, err.value.n_candidates) == (51, 50)


@pytest.mark.parametrize(
    "labeled, msg",
    [
        (np.array([0, 60]), "out of range"),
        (np.array([-1]), "out of range"),
        (np.array([3, 3]), "duplicated index 3"),
        (np.zeros(59, bool), "length 59"),
        (np.array([0.5]), "integer"),
        (np.zeros((2, 2), int), "1-D"),
    ],
)
def test_bad_labeled(labeled, msg):
    x, p, _ = make_pool()
    with pytest.raises(ValueError, match=msg):
        CEC().select(x, p, 3, labeled=labeled)


def test_labels_length_checked():
    x, p, _ = make_pool()
    with pytest.raises(ValueError, match="labels has 2 entries"):
        CEC().select(x, p, 3, labeled=[1, 2, 3], labels=[0, 1])


def test_zero_norm_row_rejected():
    x, p, _ = make_pool()
    x = x.copy()
    x[5] = 0
    with pytest.raises(ValueError, match="row 5 has zero norm"):
        CEC(k=5).select(x, p, 3)


def test_all_zero_uncertainty_equal_weights():
    x, _, y = make_pool()
    onehot = np.eye(4)[y]
    a = CEC(k=5, random_state=0).select(x, onehot, 6)
    b = CEC(k=5, clustering="plain", random_state=0).select(x, onehot, 6)
    np.testing.assert_array_equal(a, b)  # weights all 0 -> plain K-Means


def test_random_state_generator_accepted_and_bad_rejected():
    x, p, _ = make_pool()
    assert Random(random_state=np.random.default_rng(0)).select(x, p, 3).shape == (3,)
    with pytest.raises(ValueError, match="random_state"):
        Random(random_state="seed").select(x, p, 3)


def test_seed_sequence_accepted_and_named_in_the_error():
    x, p, _ = make_pool()
    a = CEC(k=5, random_state=np.random.SeedSequence(3)).select(x, p, 4)
    b = CEC(k=5, random_state=np.random.SeedSequence(3)).select(x, p, 4)
    np.testing.assert_array_equal(a, b)  # a SeedSequence seeds every call alike
    with pytest.raises(ValueError, match="SeedSequence"):
        Random(random_state=1.5).select(x, p, 3)


def test_large_int_seeds_do_not_alias_small_ones():
    from vlal._validation import seed_int

    assert [seed_int(s) for s in (0, 1, 12345, 2**31 - 2)] == [0, 1, 12345, 2**31 - 2]  # unchanged
    big = [seed_int(s) for s in (2**31 - 1, 2**31, 2**40, 2**31 - 1 + 5)]
    assert all(0 <= v < 2**31 - 1 for v in big)
    assert big[0] != 0 and big[1] != 1 and big[3] != 5  # a modulo used to map these onto 0, 1, 5
    assert len(set(big)) == 4
    with pytest.raises(ValueError, match="non-negative"):
        seed_int(-1)


def test_float16_memmap_cec(tmp_path):
    x, p, _ = make_pool(n=200)
    np.save(tmp_path / "x.npy", x.astype(np.float16))
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    idx = CEC(k=5, random_state=0).select(mm, p.astype(np.float16), 10)
    ref = CEC(k=5, random_state=0).select(x.astype(np.float16).astype(np.float32), p, 10)
    np.testing.assert_array_equal(idx, ref)


def test_float_labels_rejected_like_float_labeled():
    # issue 8 item 17: one rule for ids; whole-number floats were silently cast before
    x, p, _ = make_pool()
    lab = np.array([0, 1, 2])
    with pytest.raises(ValueError, match=r"labeled must hold integer indices"):
        vlal.PCB(vlal.Entropy()).select(x, p, 3, labeled=lab.astype(float), labels=np.array([0, 1, 0]))
    with pytest.raises(ValueError, match=r"labels must hold integer class ids .*float64; cast"):
        vlal.PCB(vlal.Entropy()).select(x, p, 3, labeled=lab, labels=np.array([0.0, 1.0, 0.0]))
    picks = vlal.PCB(vlal.Entropy(), random_state=0).select(x, p, 3, labeled=lab, labels=np.array([0, 1, 0]))
    assert not set(picks.tolist()) & set(lab.tolist())


def test_one_class_id_dtype_rule_for_every_caller():
    from vlal._validation import integer_class_ids

    np.testing.assert_array_equal(integer_class_ids(np.array([1, 2], dtype=object), "labels"), [1, 2])
    assert integer_class_ids(np.array([1, 2], dtype=np.uint8), "labels").dtype == np.int64
    with pytest.raises(ValueError, match=r"^labels must hold integer class ids; got dtype float64; cast whole-number"):
        integer_class_ids([1.0, 2.0], "labels")
    with pytest.raises(ValueError, match=r"y must hold integer class ids in \[0, 3\); got dtype <U1; map class names"):
        integer_class_ids(["a"], "y", " in [0, 3)")
    with pytest.raises(ValueError, match=r"got dtype object"):
        integer_class_ids(np.array([True, 1], dtype=object), "labels")  # a bool is not a class id
    with pytest.raises(ValueError, match=r"labels holds the class id 1180591620717411303424"):
        integer_class_ids(np.array([2**70, 1], dtype=object), "labels")  # was a raw OverflowError
    # the strategies' labels= takes ints in an object array (from pandas) like the loop does
    x, p, _ = make_pool()
    a = vlal.PCB(vlal.Entropy()).select(x, p, 3, labeled=[0, 1], labels=np.array([0, 1], dtype=object))
    b = vlal.PCB(vlal.Entropy()).select(x, p, 3, labeled=[0, 1], labels=np.array([0, 1]))
    np.testing.assert_array_equal(a, b)


def test_make_strategy_random_state_error_does_not_blame_the_name():
    with pytest.raises(ValueError, match=r"^random_state must be a non-negative int; got -1"):
        vlal.make_strategy("cec", random_state=-1)
    with pytest.raises(ValueError, match=r"^bad parameters in 'cec\[k=0\]': CEC: k == 0"):
        vlal.make_strategy("cec[k=0]")
