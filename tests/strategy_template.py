"""The template every strategy's tests run through.

Subclass :class:`StrategyTemplate` and set ``make`` (a callable ``random_state -> Strategy``)
and ``registered`` (the :func:`vlal.make_strategy` name it covers); pytest then runs every
check below on that strategy. New strategies get them for free, and
``tests/test_registration.py`` fails while a registered name has no such subclass.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vlal import BudgetExceededError, Strategy

from conftest import make_pool


def _labeled_setup(n, n_lab, seed=1):
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=n_lab, replace=False))


class StrategyTemplate:
    make = None  # random_state -> Strategy
    registered = None  # the registered name this subclass covers (see test_registration.py)

    def strategy(self, random_state=0):
        return type(self).make(random_state)

    @staticmethod
    def _labels_for(y, labeled):
        if labeled is None:
            return None
        arr = np.asarray(labeled)
        return y[np.flatnonzero(arr) if arr.dtype == bool else arr]

    def _run(self, x, p, y, budget, labeled=None, random_state=0, **kw):
        return self.strategy(random_state).select(x, p, budget, labeled=labeled, labels=self._labels_for(y, labeled), **kw)

    def _run_checked(self, x, p, y, budget, labeled=None, random_state=0, **kw):
        """:meth:`_run` with ``_query``'s raw output checked on the way (see :meth:`_check_raw_query`):
        ``select`` casts, and guards with a ``RuntimeError``, what these checks name, so the
        properties of its result alone cannot fail for a strategy's own bug. Returns ``(result, seen)``;
        ``seen`` is empty when ``select`` did not call ``_query`` (no labeled rows for a strategy
        that needs them: select's uniform fallback)."""
        s = self.strategy(random_state)
        seen = {}
        query = s._query

        def spy(pool, b, rng):
            out = query(pool, b, rng)
            if "out" not in seen:  # the call whose picks select returns (a later one only computes utilities)
                seen.update(pool=pool, budget=b, out=out)
            return out

        s._query = spy  # the instance attribute shadows the method for this one object
        try:
            result = s.select(x, p, budget, labeled=labeled, labels=self._labels_for(y, labeled), **kw)
        except RuntimeError:  # select's own guard: say what _query did wrong, if that was it
            if "out" in seen:
                self._check_raw_query(seen["out"], seen["pool"], seen["budget"])
            raise
        finally:
            del s._query
        if "out" in seen:
            self._check_raw_query(seen["out"], seen["pool"], seen["budget"])
            raw = seen["out"][0] if isinstance(seen["out"], tuple) else seen["out"]
            picks = result[0] if isinstance(result, tuple) else result
            # select hands the picks over in _query's order, after the rows it takes whole when copies of
            # labeled rows must fill the budget (Strategy.select's copy rule)
            np.testing.assert_array_equal(picks[picks.size - raw.size:], raw)
        return result, seen

    @staticmethod
    def _queried_candidates(x, labeled, cand, budget, utilities=False):
        """The candidates ``select`` hands to ``_query`` under its copy rule (Strategy.select); with
        ``utilities``, the rows that get a utility (all candidates when copies fill a shortfall)."""
        from vlal._validation import copies_of_rows

        lab = np.asarray(labeled)
        lab = np.flatnonzero(lab) if lab.dtype == bool else lab
        if lab.size == 0:
            return cand
        copy = copies_of_rows(np.asarray(x), lab)[cand]
        fresh = cand[~copy]
        if not copy.any() or fresh.size == 0:
            return cand
        if fresh.size >= budget:
            return fresh
        return cand if utilities else cand[copy]

    def test_is_strategy(self):
        assert isinstance(self.strategy(), Strategy)

    def test_budget_distinct_in_range_unlabeled(self, pool):
        """``_query`` itself returns 7 distinct integer positions among the unlabeled rows (select
        would cast or reject them: checking its result could not fail)."""
        x, p, y = pool
        lab = _labeled_setup(len(x), 10)
        _, seen = self._run_checked(x, p, y, 7, labeled=lab)
        assert seen, "select did not call _query although 10 rows are labeled"
        np.testing.assert_array_equal(seen["pool"].candidates, np.setdiff1d(np.arange(len(x)), lab))

    def test_boolean_mask_same_as_indices(self, pool):
        x, p, y = pool
        lab = _labeled_setup(len(x), 10)
        mask = np.zeros(len(x), bool)
        mask[lab] = True
        a = self._run(x, p, y, 5, labeled=lab)
        b = self._run(x, p, y, 5, labeled=mask)
        np.testing.assert_array_equal(np.sort(a), np.sort(b))

    def test_deterministic(self, pool):
        x, p, y = pool
        lab = _labeled_setup(len(x), 10)
        a = self._run(x, p, y, 6, labeled=lab, random_state=3)
        b = self._run(x, p, y, 6, labeled=lab, random_state=3)
        np.testing.assert_array_equal(a, b)

    def test_inputs_not_modified(self, pool):
        x, p, y = pool
        lab = _labeled_setup(len(x), 10)
        x0, p0, lab0, y0 = x.copy(), p.copy(), lab.copy(), y.copy()
        self._run(x, p, y, 5, labeled=lab)
        np.testing.assert_array_equal(x, x0)
        np.testing.assert_array_equal(p, p0)
        np.testing.assert_array_equal(lab, lab0)
        np.testing.assert_array_equal(y, y0)

    def test_budget_exceeds_unlabeled(self, pool):
        x, p, y = pool
        lab = _labeled_setup(len(x), 10)
        with pytest.raises(BudgetExceededError) as err:
            self._run(x, p, y, len(x) - 9, labeled=lab)
        assert str(len(x) - 9) in str(err.value) and str(len(x) - 10) in str(err.value)

    def test_budget_equals_unlabeled(self, pool):
        x, p, y = pool
        lab = _labeled_setup(len(x), 10)
        _, seen = self._run_checked(x, p, y, len(x) - 10, labeled=lab)  # _query's own output: every unlabeled row
        assert seen, "select did not call _query although 10 rows are labeled"

    @pytest.mark.parametrize("budget", [0, -1, 2.5, "3", True])
    def test_bad_budget(self, pool, budget):
        x, p, y = pool
        with pytest.raises(ValueError, match="budget"):
            self._run(x, p, y, budget)

    def test_float64_gives_the_float32_picks(self, pool):
        """float64 inputs holding the float32 values exactly (Fortran order too) give the float32 picks."""
        x, p, y = pool
        lab = _labeled_setup(len(x), 10)
        ref = self._run(x, p, y, 6, labeled=lab)
        got, _ = self._run_checked(np.asfortranarray(x.astype(np.float64)), p.astype(np.float64), y, 6, labeled=lab)
        np.testing.assert_array_equal(got, ref)

    def test_layouts_give_the_float32_picks(self, pool, tmp_path):
        """Fortran order, a read-only memmap and a strided view hold the same values: the same picks."""
        x, p, y = pool
        lab = _labeled_setup(len(x), 10)
        ref = self._run(x, p, y, 6, labeled=lab)
        np.testing.assert_array_equal(self._run(np.asfortranarray(x), np.asfortranarray(p), y, 6, labeled=lab), ref)
        for name, arr in (("f.npy", x), ("p.npy", p)):
            mm = np.lib.format.open_memmap(tmp_path / name, mode="w+", dtype=np.float32, shape=arr.shape)
            mm[:] = arr
            mm.flush()
            del mm
        xm, pm = np.load(tmp_path / "f.npy", mmap_mode="r"), np.load(tmp_path / "p.npy", mmap_mode="r")
        assert isinstance(xm, np.memmap)
        np.testing.assert_array_equal(self._run(xm, pm, y, 6, labeled=lab), ref)
        xv = np.repeat(x, 2, axis=1)[:, ::2]  # strided view, same values
        pv = np.repeat(p, 3, axis=0)[::3]
        assert not xv.flags.c_contiguous and not pv.flags.c_contiguous
        np.testing.assert_array_equal(self._run(xv, pv, y, 6, labeled=lab), ref)

    #: Least share of the float32 picks kept when the inputs are rounded to float16 (1.0 = the
    #: same picks). A strategy's test class lowers it only with the reason written beside it.
    float16_overlap = 1.0

    def test_float16_gives_the_float32_picks(self, pool):
        """float16 inputs pick what float32 inputs holding the same (rounded) values pick, and
        the rounding itself keeps at least ``float16_overlap`` of the float32 picks."""
        x, p, y = pool
        lab = _labeled_setup(len(x), 10)
        x16, p16 = x.astype(np.float16), p.astype(np.float16)
        same_values = self._run(x16.astype(np.float32), p16.astype(np.float32), y, 6, labeled=lab)
        np.testing.assert_array_equal(self._run_checked(x16, p16, y, 6, labeled=lab)[0], same_values)
        ref = self._run(x, p, y, 6, labeled=lab)
        kept = len(set(ref.tolist()) & set(same_values.tolist())) / ref.size
        assert kept >= self.float16_overlap, (kept, ref, same_values)

    def test_non_contiguous_view(self, pool):
        x, p, y = pool
        xv = np.repeat(x, 2, axis=1)[:, ::2]  # strided view, same values
        a = self._run(xv, p, y, 5)
        b = self._run(x, p, y, 5)
        np.testing.assert_array_equal(a, b)

    # ------------------------------------------------------------------ issue 10 item 7: what _query itself returns

    @staticmethod
    def _check_raw_query(out, pool, budget):
        chosen, util = out if isinstance(out, tuple) else (out, None)
        chosen = np.asarray(chosen)
        assert chosen.dtype.kind in "iu", f"_query returned {chosen.dtype} positions, not integers"
        assert chosen.shape == (budget,), f"_query returned shape {chosen.shape} for budget {budget}"
        assert np.unique(chosen).size == budget, f"_query returned duplicates: {chosen}"
        outside = chosen[~np.isin(chosen, pool.candidates)]
        assert outside.size == 0, f"_query returned {outside}, not among pool.candidates"
        if util is not None:
            assert np.shape(util) == pool.candidates.shape, "utilities must align with pool.candidates"
            # NaN is what select writes for rows that were no candidates (+inf is allowed: CoreSet's
            # first pick with nothing labeled)
            assert not np.isnan(np.asarray(util, dtype=np.float64)).any(), "_query returned NaN utilities"

    @pytest.mark.parametrize("budget", [1, 7])
    @pytest.mark.parametrize("restricted", [False, True])
    def test_query_raw_output(self, pool, budget, restricted):
        """``_query``'s own output (not what ``select`` makes of it): integer pool positions,
        ``budget`` of them, distinct, among ``pool.candidates``; the same when ``_query`` is
        called directly on the ``Pool`` that ``select`` built."""
        x, p, y = pool
        lab = _labeled_setup(len(x), 10)
        cand = None
        if restricted:  # every other unlabeled row, unsorted: candidate numbers differ from pool positions
            cand = np.setdiff1d(np.arange(len(x)), lab)[1::2][::-1].copy()
        _, seen = self._run_checked(x, p, y, budget, labeled=lab, candidates=cand)
        assert seen, "select did not call _query although 10 rows are labeled"
        pool_ = seen["pool"]
        assert seen["budget"] == budget and pool_.n == len(x)
        if restricted:
            np.testing.assert_array_equal(pool_.candidates, np.sort(cand))
        s = self.strategy(0)
        s._validate_params()
        again = s._query(pool_, budget, np.random.default_rng(0))
        self._check_raw_query(again, pool_, budget)

    def test_identical_rows(self):
        x = np.ones((30, 4), np.float32)
        p = np.full((30, 3), 1 / 3, np.float32)
        y = np.zeros(30, np.int64)
        _, seen = self._run_checked(x, p, y, 12, labeled=np.arange(3))  # ties everywhere: still 12 distinct
        assert seen

    def test_one_hot_probs_zero_uncertainty(self, pool):
        x, _, y = pool
        p = np.eye(4, dtype=np.float32)[y]
        _, seen = self._run_checked(x, p, y, 8, labeled=np.arange(5))  # all-zero uncertainty: still 8 distinct
        assert seen

    def test_single_class(self, pool):
        x, _, y = pool
        p = np.ones((len(x), 1), np.float32)
        _, seen = self._run_checked(x, p, np.zeros_like(y), 4, labeled=np.arange(5))
        assert seen

    def test_nan_rejected(self, pool):
        x, p, y = pool
        x = x.copy()
        x[7, 1] = np.nan
        with pytest.raises(ValueError, match=r"features.*7"):
            self._run(x, p, y, 3)

    @settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors])
    @given(
        n=st.integers(5, 50),
        d=st.integers(1, 6),
        n_classes=st.integers(1, 5),
        frac_lab=st.floats(0, 0.5),
        frac_budget=st.floats(0.01, 1.0),
        seed=st.integers(0, 2**16),
    )
    def test_properties(self, n, d, n_classes, frac_lab, frac_budget, seed):
        x, p, y = make_pool(n=n, d=d, n_classes=n_classes, seed=seed)
        n_lab = int(frac_lab * n)
        lab = _labeled_setup(n, n_lab, seed)
        n_cand = n - n_lab
        budget = max(1, int(frac_budget * n_cand))
        x0, p0 = x.copy(), p.copy()
        a, _ = self._run_checked(x, p, y, budget, labeled=lab, random_state=seed)  # _query's raw output checked
        b = self._run(x, p, y, budget, labeled=lab, random_state=seed)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(x, x0)
        np.testing.assert_array_equal(p, p0)

    # ------------------------------------------------------------------ issue 9: scikit-learn semantics

    def test_clone_get_set_params(self, pool):
        from sklearn.base import clone

        x, p, y = pool
        lab = _labeled_setup(len(x), 10)
        s = self.strategy(3)
        shallow = s.get_params(deep=False)
        assert shallow["random_state"] == 3
        deep = s.get_params(deep=True)
        assert set(shallow) <= set(deep)
        c = clone(s)
        assert type(c) is type(s) and c is not s
        for key, value in shallow.items():
            got = c.get_params(deep=False)[key]
            if isinstance(value, Strategy):  # nested strategies are cloned too
                assert got is not value and type(got) is type(value) and got.get_params() == value.get_params()
            else:
                assert got == value
        np.testing.assert_array_equal(self._run(x, p, y, 5, labeled=lab, random_state=3), c.select(
            x, p, 5, labeled=lab, labels=y[lab]))
        # set_params returns self, changes the clone only, and round-trips every (deep) parameter
        assert c.set_params(random_state=11) is c
        assert c.random_state == 11 and s.random_state == 3
        c.set_params(**deep)
        assert c.get_params(deep=False).keys() == shallow.keys() and c.random_state == 3
        with pytest.raises(ValueError, match="invalid parameter"):
            s.set_params(no_such_parameter=1)
        r = repr(s)
        assert r.startswith(type(s).__name__ + "(") and "random_state=3" in r

    def test_random_state_kinds(self, pool):
        x, p, y = pool
        lab = _labeled_setup(len(x), 10)
        # a RandomState (scikit-learn convention) advances per call: same sequence from the same seed
        a = [self._run(x, p, y, 5, labeled=lab, random_state=rs) for rs in [np.random.RandomState(0)] * 2]
        b = [self._run(x, p, y, 5, labeled=lab, random_state=rs) for rs in [np.random.RandomState(0)] * 2]
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)
        g = self._run(x, p, y, 5, labeled=lab, random_state=np.random.default_rng(0))
        assert g.shape == (5,)
        with pytest.raises(ValueError, match="random_state"):
            self._run(x, p, y, 5, labeled=lab, random_state="0")

    def test_candidates_errors(self, pool):
        x, p, y = pool
        lab = _labeled_setup(len(x), 10)
        with pytest.raises(ValueError, match=rf"candidates holds row {lab[0]}, which is labeled"):
            self._run(x, p, y, 2, labeled=lab, candidates=[lab[0], int(np.setdiff1d(np.arange(len(x)), lab)[0])])
        with pytest.raises(ValueError, match="candidates index 999 is out of range"):
            self._run(x, p, y, 2, labeled=lab, candidates=[1, 999])
        with pytest.raises(ValueError, match="candidates is a boolean mask of length 3"):
            self._run(x, p, y, 2, labeled=lab, candidates=np.ones(3, bool))
        with pytest.raises(BudgetExceededError, match=r"budget=3 exceeds the number of candidates \(2"):
            self._run(x, p, y, 3, candidates=[4, 5])

    @settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors])
    @given(
        n=st.integers(6, 50),
        d=st.integers(1, 6),
        n_classes=st.integers(1, 5),
        frac_lab=st.floats(0, 0.5),
        frac_cand=st.floats(0.05, 1.0),
        frac_budget=st.floats(0.01, 1.0),
        as_mask=st.booleans(),
        seed=st.integers(0, 2**16),
    )
    def test_candidates_and_utilities(self, n, d, n_classes, frac_lab, frac_cand, frac_budget, as_mask, seed):
        x, p, y = make_pool(n=n, d=d, n_classes=n_classes, seed=seed)
        lab = _labeled_setup(n, int(frac_lab * n), seed)
        rng = np.random.default_rng(seed)
        unl = np.setdiff1d(np.arange(n), lab)
        cand = rng.choice(unl, size=max(1, int(frac_cand * unl.size)), replace=False)  # unsorted
        budget = max(1, int(frac_budget * cand.size))
        if as_mask:
            arg = np.zeros(n, bool)
            arg[cand] = True
        else:
            arg = cand
        a = self._run(x, p, y, budget, labeled=lab, random_state=seed, candidates=arg)
        (b, u), seen = self._run_checked(x, p, y, budget, labeled=lab, random_state=seed, candidates=arg,
                                         return_utilities=True)  # _query's raw picks and utilities checked
        np.testing.assert_array_equal(a, b)  # same picks with and without utilities
        if seen:
            np.testing.assert_array_equal(seen["pool"].candidates, self._queried_candidates(x, lab, np.sort(cand), budget))
        assert u.shape == (n,) and u.dtype == np.float64
        eff = self._queried_candidates(x, lab, np.sort(cand), budget, utilities=True)
        off = np.ones(n, bool)
        off[eff] = False
        assert np.isnan(u[off]).all() and not np.isnan(u[eff]).any()
        if not as_mask:
            np.testing.assert_array_equal(cand, arg)  # the caller's array is not sorted in place

    # ------------------------------------------------------------------ issue 8 item 1: threads, global RNGs

    def test_global_rng_untouched_and_thread_safe(self, pool):
        import importlib.util
        import random
        import threading

        torch = None
        if importlib.util.find_spec("torch") is not None:
            import torch
        x, p, y = pool
        lab = _labeled_setup(len(x), 10)
        seeds = [0, 1, 2, 3]

        def states():
            np_state = np.random.get_state()
            return (np_state[1].copy(), np_state[2], random.getstate(),
                    None if torch is None else torch.get_rng_state().clone())

        def same(a, b):
            return (np.array_equal(a[0], b[0]) and a[1:3] == b[1:3]
                    and (a[3] is None or bool(torch.equal(a[3], b[3]))))

        np.random.seed(12345)
        random.seed(6789)
        if torch is not None:
            torch.manual_seed(42)
        before = states()
        sequential = [self._run(x, p, y, 6, labeled=lab, random_state=s) for s in seeds]
        assert same(before, states()), "select changed a global random state (numpy, random or torch)"

        # 4 threads run the same queries concurrently while a 5th keeps drawing from (and
        # re-seeding) every global generator: the picks must not change
        results, errors, stop = {}, [], threading.Event()
        barrier = threading.Barrier(4)

        def work(i):
            try:
                barrier.wait()
                for rep in range(2):
                    results[i, rep] = self._run(x, p, y, 6, labeled=lab, random_state=seeds[i])
            except Exception as err:  # noqa: BLE001 - reported below
                errors.append(err)

        def noise():
            k = 0
            while not stop.is_set():
                k += 1
                np.random.seed(k)
                np.random.random(8)
                random.seed(k)
                random.random()
                if torch is not None:
                    torch.manual_seed(k)
                    torch.rand(8)

        noisy = threading.Thread(target=noise)
        noisy.start()
        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stop.set()
        noisy.join()
        assert not errors, errors
        for i in range(4):
            for rep in range(2):
                np.testing.assert_array_equal(results[i, rep], sequential[i])
