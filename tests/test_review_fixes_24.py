"""Findings of the stop-24 new-user review (README only), each reproduced and checked fixed."""

from __future__ import annotations

import importlib.util
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from session_helpers import make_pool_file, write_csv_labels

from vlal.cli import main
from vlal.session import SessionError, open_session


def _dataset_file(path, n=60, d=8, k=3, **over):
    rng = np.random.default_rng(0)
    arrays = dict(pool_features=rng.normal(size=(n, d)).astype(np.float32), pool_labels=np.arange(n) % k,
                  test_features=rng.normal(size=(20, d)).astype(np.float32), test_labels=np.arange(20) % k)
    arrays.update(over)
    np.savez(path, **arrays)
    return str(path)


def test_bench_data_wrong_suffix_is_a_usage_error_and_file_errors_are_led_by_data(tmp_path):
    runner = CliRunner()
    txt = tmp_path / "t.txt"
    txt.write_text("x")
    res = runner.invoke(main, ["bench", "--data", str(txt), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "--data" in res.output and "expected an .npz" in res.output
    npy = tmp_path / "f.npy"
    np.save(npy, np.ones((3, 3)))
    assert runner.invoke(main, ["bench", "--data", str(npy), "--out", str(tmp_path / "o")]).exit_code == 2
    # what a file holds: exit 1, the message led by the option, naming the file and the key
    nolab = tmp_path / "nolab.npz"
    np.savez(nolab, pool_features=np.ones((3, 3)))
    res = runner.invoke(main, ["bench", "--data", str(nolab), "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "Error: --data: " in res.output and "pool_labels" in res.output
    rng = np.random.default_rng(0)
    wide = _dataset_file(tmp_path / "wide.npz", text_features=rng.normal(size=(3, 10)).astype(np.float32))
    res = runner.invoke(main, ["bench", "--data", wide, "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "--data: " in res.output and "wide.npz" in res.output
    assert "text_features has shape (3, 10)" in res.output and "(rows, 8)" in res.output
    zero = rng.normal(size=(60, 8)).astype(np.float32)
    zero[4] = 0
    res = runner.invoke(main, ["bench", "--data", _dataset_file(tmp_path / "zero.npz", pool_features=zero),
                               "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "zero.npz" in res.output and "pool_features row 4 has zero norm" in res.output
    assert not (tmp_path / "o").exists()


def test_select_manifest_errors_are_led_by_the_option(tmp_path):
    bad = tmp_path / "manifest.json"
    bad.write_text("{not json")
    np.save(tmp_path / "p.npy", np.full((4, 2), 0.5))
    res = CliRunner().invoke(main, ["select", "--features", str(bad), "--probs", str(tmp_path / "p.npy"),
                                    "--budget", "1", "--out", str(tmp_path / "q.npy")])
    assert res.exit_code == 1 and "Error: --features: " in res.output


def test_select_refuses_to_replace_a_read_only_out_file(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "f.npy", rng.normal(size=(30, 4)).astype(np.float32))
    np.save(tmp_path / "p.npy", np.full((30, 3), 1 / 3))
    out = tmp_path / "r1.npy"
    np.save(out, np.arange(3))
    out.chmod(0o444)
    args = ["select", "--features", str(tmp_path / "f.npy"), "--probs", str(tmp_path / "p.npy"), "--budget", "2",
            "--strategy", "random", "--out", str(out)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2 and "read-only" in res.output
    out.chmod(0o644)
    np.testing.assert_array_equal(np.load(out), np.arange(3))  # untouched
    assert CliRunner().invoke(main, args).exit_code == 0 and np.load(out).size == 2  # writable: replaced


def test_session_init_bad_strategy_tuner_or_heldout_path_are_usage_errors(tmp_path):
    pool, _ = make_pool_file(tmp_path / "pool.npz")
    runner = CliRunner()
    for extra, flag in ((["--strategy", "foo"], "--strategy"), (["--tuner", "nope"], "--tuner"),
                        (["--tuner", "free[bad=1]"], "--tuner"), (["--heldout", str(tmp_path / "missing.npz")], "--heldout"),
                        (["--heldout", str(pool.with_suffix(".npy"))], "--heldout")):
        if extra[-1].endswith(".npy"):
            np.save(extra[-1], np.ones(3))
        res = runner.invoke(main, ["session", "init", str(tmp_path / "s"), "--features", str(pool)] + extra)
        assert res.exit_code == 2 and flag in res.output, (extra, res.output)
        assert not (tmp_path / "s").exists()


def test_session_next_returns_a_copy_with_absolute_files_and_status_reads_without_the_lock(tmp_path):
    pool, y = make_pool_file(tmp_path / "pool.npz")
    runner = CliRunner()
    s_dir = tmp_path / "s"
    assert runner.invoke(main, ["session", "init", str(s_dir), "--features", str(pool)]).exit_code == 0
    cwd = os.getcwd()
    os.chdir(tmp_path.parent)  # the returned files must not depend on the working directory
    try:
        with open_session(s_dir) as s:
            b = s.next(5)
            assert all(os.path.isabs(f) and Path(f).is_file() for f in b["files"].values())
            b["indices"].clear()  # the caller's copy: the session's own state is unchanged
            assert len(s.state["open_batch"]["indices"]) == 5
            # status while this process holds the lock: read-only, no lock needed
            res = runner.invoke(main, ["session", "status", str(s_dir)])
            assert res.exit_code == 0 and "waiting for labels: round 1, 5 images" in res.output
            assert str(s_dir.resolve() / "batches") in res.output
            with pytest.raises(SessionError, match="in use"):
                open_session(s_dir)
    finally:
        os.chdir(cwd)
    with open_session(s_dir, read_only=True) as ro:
        assert ro.read_only and not ro.pending
        with pytest.raises(SessionError, match="read-only"):
            ro.discard_batch()
        labels = write_csv_labels(s_dir, tmp_path / "l.csv", y, ro.class_names)
        with pytest.raises(SessionError, match="read-only"):
            ro.import_labels(labels)
    journal = (s_dir / "journal.jsonl").read_text()
    with open_session(s_dir) as s:  # nothing was written by the read-only handle
        assert s.state["open_batch"] is not None and s.recovered is None
    assert (s_dir / "journal.jsonl").read_text() == journal
    # an unfinished change: read-only status says so (and shows the last committed state)
    with open(s_dir / "journal.jsonl", "a") as fh:
        fh.write(json.dumps({"txn": "x", "seq": 99, "op": "import", "phase": "begin", "writes": []}) + "\n")
    res = runner.invoke(main, ["session", "status", str(s_dir)])
    assert res.exit_code == 0 and "in progress in another command, or was interrupted" in res.output


def test_session_status_works_on_a_folder_without_write_permission(tmp_path):
    pool, _ = make_pool_file(tmp_path / "pool.npz")
    s_dir = tmp_path / "s"
    assert CliRunner().invoke(main, ["session", "init", str(s_dir), "--features", str(pool)]).exit_code == 0
    (s_dir / "lock").unlink()
    s_dir.chmod(0o555)  # no lock file can be created (for a non-root user; root ignores the bits)
    try:
        res = CliRunner().invoke(main, ["session", "status", str(s_dir)])
        assert res.exit_code == 0 and "0 labeled" in res.output
        assert not (s_dir / "lock").exists()  # status took no lock
    finally:
        s_dir.chmod(0o755)


def test_session_os_errors_name_the_session(tmp_path, monkeypatch):
    pool, _ = make_pool_file(tmp_path / "pool.npz")
    s_dir = tmp_path / "s"
    assert CliRunner().invoke(main, ["session", "init", str(s_dir), "--features", str(pool)]).exit_code == 0
    import vlal.session as session_module

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied", str(s_dir / "lock"))

    monkeypatch.setattr(session_module._Lock, "acquire", denied)
    res = CliRunner().invoke(main, ["session", "next", str(s_dir), "--budget", "2"])
    assert res.exit_code == 1 and f"session {s_dir}: Permission denied: {s_dir / 'lock'}" in res.output
    assert "Errno" not in res.output


def test_lock_holder_without_a_pid_yet_and_small_messages(tmp_path):
    from vlal.session import _Lock

    (tmp_path / "lock").write_text("")
    assert _Lock(tmp_path, "x")._holder() == "another vlal command (just starting)"
    (tmp_path / "lock").write_text(json.dumps({"pid": 42, "command": "vlal session next", "since": "t"}))
    assert _Lock(tmp_path, "x")._holder() == "process 42 (vlal session next, since t)"
    from vlal import BudgetExceededError

    assert "every row of the pool is labeled" in str(BudgetExceededError(1, 0))
    assert "exceeds the number of unlabeled rows in the pool (3)" in str(BudgetExceededError(5, 3))


def test_empty_csv_import_says_the_file_is_empty(tmp_path):
    pool, _ = make_pool_file(tmp_path / "pool.npz")
    s_dir = tmp_path / "s"
    assert CliRunner().invoke(main, ["session", "init", str(s_dir), "--features", str(pool)]).exit_code == 0
    with open_session(s_dir) as s:
        s.next(3)
        (tmp_path / "e.csv").write_text("")
        with pytest.raises(SessionError, match="the file is empty"):
            s.import_labels(tmp_path / "e.csv")


def test_below_zero_shot_warning_shows_the_gap_it_compares():
    from vlal.loop import BelowZeroShotWarning, run_active_learning
    from vlal.strategies import Random

    class Worse:  # zero-shot 100 %, then 96.95 %: 3.05 points below
        fitted = False

        def fit(self, x, y):
            self.fitted = len(y) > 0
            return self

        def predict_proba(self, x):
            p = np.zeros((len(x), 2))
            p[:, 0] = 1.0
            if self.fitted:
                p[: int(round(0.0305 * len(x)))] = [0.0, 1.0]
            return p

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 4)).astype(np.float32)
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        run_active_learning(Random(random_state=0), Worse(), x, np.zeros(2000, int), x, np.zeros(2000, int),
                            n_rounds=1, budget=5)
    msg = [str(w.message) for w in got if issubclass(w.category, BelowZeroShotWarning)]
    assert msg and "96.95 % is 3.05 points below zero-shot (100.00 %)" in msg[0]


# --------------------------------------------------------------------------- API review (adversarial inputs)


@pytest.mark.parametrize("scale", [1e-30, 1e-25, 1e19, 1e20, 1e39])
def test_geometry_functions_are_scale_free(scale):
    """float32 kernels: at |x| ~ 1e19 weighted_kmeans aborted the process (faiss) and at 1e39
    nearest_to_centers looped forever; at 1e-25 / 1e19 the picks were silently wrong."""
    import vlal

    x = np.random.default_rng(0).normal(size=(60, 4))
    np.testing.assert_array_equal(vlal.nearest_to_centers(x * scale, x[[10, 20, 30]] * scale), [10, 20, 30])
    p0, d0 = vlal.k_center_greedy(x, x[:2], 4, 0, return_distances=True)
    p1, d1 = vlal.k_center_greedy(x * scale, x[:2] * scale, 4, 0, return_distances=True)
    np.testing.assert_array_equal(p1, p0)
    np.testing.assert_allclose(d1 / scale, d0, rtol=1e-5)  # distances in the caller's units
    c0, a0 = vlal.weighted_kmeans(x, None, 3, random_state=0)
    if scale > 3e38:
        with pytest.raises(vlal.VlalInputError, match="features has values of magnitude .* outside float32's range"):
            vlal.weighted_kmeans(x * scale, None, 3, random_state=0)
        return
    for mode in ("exact", "fast"):
        c, a = vlal.weighted_kmeans(x * scale, None, 3, random_state=0, kmeans_mode=mode)
        ce, ae = vlal.weighted_kmeans(x, None, 3, random_state=0, kmeans_mode=mode)
        np.testing.assert_array_equal(a, ae)
        assert c.dtype == np.float32
        np.testing.assert_allclose(c.astype(np.float64) / scale, ce, rtol=1e-5, atol=1e-6)


def test_calibrate_refuses_a_zero_prior_for_a_class_a_row_holds():
    import vlal

    with pytest.raises(vlal.VlalInputError, match="prior is 0 for class 0, but probs row 0 gives it probability 0.5"):
        vlal.calibrate([[0.5, 0.5, 0.0]], [0.0, 0.5, 0.5])
    # a zero prior for a class no row holds is the documented fallback (ratio 0), as contextual_prior gives it
    np.testing.assert_allclose(vlal.calibrate([[0.5, 0.5, 0.0]], [0.5, 0.25, 0.0]), [[1 / 3, 2 / 3, 0.0]])
    p = np.array([[0.6, 0.4, 0.0], [0.2, 0.8, 0.0]])
    np.testing.assert_allclose(vlal.calibrate(p, vlal.contextual_prior(p)).sum(axis=1), 1.0)


@pytest.mark.parametrize("bad", [True, np.inf, np.nan, 0.0, -1, "a", None, np.array([0.1, 0.2])])
def test_temperature_is_checked_one_way_everywhere(bad):
    """zero_shot_probs, cosine_softmax, the tuners and vlal.clip.zero_shot_proba checked T three ways
    (True acted as T = 1, inf gave uniform rows, "a" raised a bare TypeError)."""
    import vlal
    from vlal.tuners import AnchoredTuner, cosine_softmax

    x = np.random.default_rng(0).normal(size=(5, 4))
    calls = [lambda: vlal.zero_shot_probs(x, x[:2], temperature=bad),
             lambda: cosine_softmax(x, x[:2], temperature=bad), lambda: AnchoredTuner(x[:2], temperature=bad)]
    if importlib.util.find_spec("torch") is not None:
        from vlal.clip import zero_shot_proba

        calls.append(lambda: zero_shot_proba(x, x[:2], temperature=bad))
    for call in calls:
        with pytest.raises(vlal.VlalInputError, match="temperature must be a finite number > 0"):
            call()


def test_zero_shot_tiny_temperature_gives_one_hot_rows_not_nan():
    import vlal

    x = np.random.default_rng(0).normal(size=(20, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow RuntimeWarning either
        p = vlal.zero_shot_probs(x, x[:3], temperature=1e-320)
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    np.testing.assert_array_equal(p.argmax(1), vlal.zero_shot_probs(x, x[:3]).argmax(1))
    assert set(np.unique(p)) <= {0.0, 1.0}


@pytest.mark.parametrize("values,msg", [
    (lambda h: h.astype(str), "must hold real numbers; got dtype <U"), (lambda h: h.astype(complex), "must hold real numbers; got dtype complex"),
    (lambda h: h > 0.5, "must hold real numbers; got dtype bool"),
    (lambda h: h.astype(object), "must hold real numbers; got dtype object"),
    (lambda h: h[:-1], r"must have shape \(30,\)"), (lambda h: np.where(h > 0.9, np.nan, h), "contains NaN or inf")])
def test_scores_and_weights_are_checked_as_numbers(values, msg):
    import scipy.sparse

    import vlal

    rng = np.random.default_rng(0)
    f = rng.normal(size=(30, 4))
    h = rng.random(30)
    with pytest.raises(vlal.VlalInputError, match="scores " + msg):
        vlal.neighbor_uncertainty(f, values(h), k=3)
    with pytest.raises(vlal.VlalInputError, match="weights " + msg):
        vlal.weighted_kmeans(f, values(h), 3, random_state=0)
    with pytest.raises(vlal.VlalInputError, match="weights is a scipy sparse matrix"):
        vlal.weighted_kmeans(f, scipy.sparse.csr_matrix(h), 3, random_state=0)
    for alpha in (True, "0.1", None, [0.1], -1.0):
        with pytest.raises(vlal.VlalInputError, match="alpha"):
            vlal.neighbor_uncertainty(f, h, k=3, alpha=alpha)
    np.testing.assert_allclose(vlal.neighbor_uncertainty(f, list(h), k=3, alpha=np.float32(0.5)),
                               vlal.neighbor_uncertainty(f, h, k=3, alpha=0.5))


def test_torch_tensors_with_grad_or_bfloat16_are_read():
    torch = pytest.importorskip("torch")
    import vlal

    rng = np.random.default_rng(0)
    f = rng.normal(size=(40, 8)).astype(np.float32)
    p = vlal.zero_shot_probs(f, f[:4])
    want = vlal.make_strategy("entropy", random_state=0).select(f, p, 5)
    ft = torch.tensor(f, requires_grad=True)
    got = vlal.make_strategy("entropy", random_state=0).select(ft, torch.tensor(p), 5)
    np.testing.assert_array_equal(got, want)
    got16 = vlal.make_strategy("cec", random_state=0).select(ft.to(torch.bfloat16), torch.tensor(p), 5)
    assert np.unique(got16).size == 5  # bfloat16 features (numpy has no bfloat16) are read as float32
    assert vlal.weighted_kmeans(ft, torch.ones(40, requires_grad=True), 3, random_state=0)[1].shape == (40,)


def test_entropy_of_one_hot_rows_is_positive_zero():
    import vlal

    h = vlal.entropy([[1.0, 0.0], [0.0, 1.0]])
    assert (h == 0).all() and not np.signbit(h).any()
    h1 = vlal.calibrated_entropy(np.ones((3, 1)))  # K = 1
    assert (h1 == 0).all() and not np.signbit(h1).any()


# --------------------------------------------------------------------------- maintainer review (docs vs code)


def _shards(folder, arr, rows=100):
    from vlal.shards import ShardWriter, open_features

    with ShardWriter(folder, arr.shape[1], shard_rows=rows) as w:
        w.write(arr)
    return open_features(folder)


@pytest.mark.parametrize("name", ["entropy", "margin", "leastconf", "badge", "coreset", "random", "cec", "calibrated-mix"])
def test_sharded_logits_are_refused_by_every_strategy(tmp_path, name):
    """Probabilities read from shards were checked by CEC only: the others ranked logits silently."""
    import vlal

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8)).astype(np.float32)
    f = _shards(tmp_path / "f", x)
    logits = _shards(tmp_path / "p", rng.normal(size=(300, 5)).astype(np.float32))
    with pytest.raises(vlal.VlalInputError, match="probs has negative values"):
        vlal.make_strategy(name, random_state=0).select(f, logits, 5)
    good = _shards(tmp_path / "q", vlal.zero_shot_probs(x, x[:5]))
    assert np.unique(vlal.make_strategy(name, random_state=0).select(f, good, 5)).size == 5


def test_sharded_cec_streams_when_the_probabilities_are_large(tmp_path, monkeypatch):
    """The stream decision looked at the features only: K > 2d probabilities too large for memory
    made CEC refuse with 'use vlal.CEC'."""
    import vlal
    from vlal import _scale

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 4)).astype(np.float32)
    f = _shards(tmp_path / "f", x)
    p = _shards(tmp_path / "p", vlal.zero_shot_probs(x, rng.normal(size=(40, 4))))
    # 400 x 4 features (6.4 kB as float32) under the stream limit, 400 x 40 probs (64 kB) over it
    # and over the in-memory limit
    monkeypatch.setattr(_scale, "STREAM_MIN_BYTES", 32_000)
    monkeypatch.setattr("vlal.shards.MATERIALIZE_MAX_BYTES", 40_000)
    cec = vlal.CEC(random_state=0)
    picks = cec.select(f, p, 10)
    assert np.unique(picks).size == 10 and "stages_s" in cec.stream_stats_  # streamed


def test_float16_probabilities_one_tolerance_in_memory_and_streamed(tmp_path, monkeypatch):
    import vlal
    from vlal import _scale
    from vlal._validation import prob_tolerance

    assert prob_tolerance(np.float32) == 1e-3 and prob_tolerance(np.float16) == 1e-3 + 2.0**-11
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8)).astype(np.float32)
    p = vlal.zero_shot_probs(x, x[:4]).astype(np.float64)
    p[5] *= 1.005  # a row summing to 1.005: refused on every path (the stream allowed 1e-2)
    f = _shards(tmp_path / "f", x)
    ps = _shards(tmp_path / "p", p.astype(np.float32))
    with pytest.raises(vlal.VlalInputError, match="sums to 1.00"):
        vlal.CEC(random_state=0).select(f, ps, 5)
    monkeypatch.setattr(_scale, "STREAM_MIN_BYTES", 0)
    with pytest.raises(vlal.VlalInputError, match="sums to 1.00"):
        vlal.CEC(random_state=0).select(f, ps, 5)


def test_return_utilities_leaves_the_callers_generator_where_picks_alone_would():
    """In the shortfall case (the budget needs copies of labeled rows) the utilities were a second
    query on the caller's generator: the next round then drew other picks."""
    import vlal

    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 6)).astype(np.float32)
    x[15:50] = x[0]  # 35 copies of labeled row 0
    p = vlal.zero_shot_probs(x, x[:3])
    lab = np.arange(0, 10)
    runs = []
    for with_util in (False, True):
        gen = np.random.default_rng(7)
        s = vlal.make_strategy("random", random_state=gen)
        out = s.select(x, p, 8, labeled=lab, return_utilities=with_util)  # 5 fresh rows + 3 copies
        first = out[0] if with_util else out
        runs.append((first, s.select(x, p, 5, labeled=lab)))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])  # the next round too


def test_feature_dataset_counts_classes_from_text_features(tmp_path):
    from vlal.data import load_features, zero_shot_proxy

    rng = np.random.default_rng(0)
    path = _dataset_file(tmp_path / "t.npz", text_features=rng.normal(size=(10, 8)).astype(np.float32))
    ds = load_features(path)  # labels 0..2, 10 text rows
    w0, _ = zero_shot_proxy(ds)
    assert ds.n_classes == 10 == w0.shape[0]


@pytest.mark.parametrize("name,param,value", [
    ("calibrated-mix", "density", np.array(["a"])), ("calibrated-mix", "pick", np.array([1, 2])),
    ("calibrated-mix", "use_gpu", np.array([1, 2])), ("calibrated-mix", "density_k", np.array([1, 2])),
    ("calibrated-mix", "init", np.array(["a", "b"])), ("calibrated-mix", "uncertainty", ["entropy"]),
    ("lookahead", "diversity", np.array(["a", "b"]))])
def test_array_valued_choice_parameters_are_named_errors(name, param, value):
    import vlal

    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 8)).astype(np.float32)
    s = vlal.make_strategy(name, random_state=0).set_params(**{param: value})
    with pytest.raises(vlal.VlalInputError, match=param):
        s.select(x, vlal.zero_shot_probs(x, x[:3]), 3)


def test_lookahead_large_temper_is_a_sharp_belief_not_nan():
    import vlal

    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 8)).astype(np.float32)
    p = vlal.zero_shot_probs(x, x[:4], temperature=0.2)
    picks = vlal.LookAhead(temper=1e9, random_state=0).select(x, p, 5)
    assert np.unique(picks).size == 5


# --------------------------------------------------------------------------- final new-user review (sessions)


def _session(tmp_path, **kw):
    pool, y = make_pool_file(tmp_path / "pool.npz", **kw)
    s_dir = tmp_path / "s"
    res = CliRunner().invoke(main, ["session", "init", str(s_dir), "--features", str(pool)])
    assert res.exit_code == 0, res.output
    return pool, y, s_dir


def test_session_classes_must_match_the_files_class_names(tmp_path):
    """--classes with --features replaced the file's class names silently: the same names in another
    order paired every name with another class's embedding (all guesses wrong)."""
    pool, _ = make_pool_file(tmp_path / "pool.npz")
    names = [f"class {i}" for i in range(5)]
    runner = CliRunner()
    (tmp_path / "re.txt").write_text("\n".join(names[::-1]) + "\n")
    res = runner.invoke(main, ["session", "init", str(tmp_path / "a"), "--features", str(pool),
                               "--classes", str(tmp_path / "re.txt")])
    assert res.exit_code == 1 and "class name 'class 4' is given at position 0 but is class 4" in res.output
    assert not (tmp_path / "a").exists()
    (tmp_path / "new.txt").write_text("\n".join(f"renamed {i}" for i in range(5)) + "\n")  # a renaming is fine
    assert runner.invoke(main, ["session", "init", str(tmp_path / "c"), "--features", str(pool),
                                "--classes", str(tmp_path / "new.txt")]).exit_code == 0
    (tmp_path / "same.txt").write_text("\n".join(names) + "\n")
    res = runner.invoke(main, ["session", "init", str(tmp_path / "b"), "--features", str(pool),
                               "--classes", str(tmp_path / "same.txt")])
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("header", ["image,label,label", "image,label,image", "image,label,pool_index,Label"])
def test_csv_import_refuses_repeated_columns(tmp_path, header):
    pool, y, s_dir = _session(tmp_path)
    with open_session(s_dir) as s:
        b = s.next(4)
        paths = s.pool["pool_paths"]
        rows = [f"{paths[i]},class {y[i]},class {(y[i] + 1) % 5}" for i in b["indices"]]
        (tmp_path / "l.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
        with pytest.raises(SessionError, match="more than once"):
            s.import_labels(tmp_path / "l.csv")
        assert s.state["labeled"] == []  # nothing applied


def test_json_min_export_is_named(tmp_path):
    pool, y, s_dir = _session(tmp_path)
    with open_session(s_dir) as s:
        b = s.next(3)
        recs = [{"id": k, "image": s.pool["pool_paths"][i], "label": f"class {y[i]}", "annotator": 1}
                for k, i in enumerate(b["indices"])]
        (tmp_path / "min.json").write_text(json.dumps(recs))
        with pytest.raises(SessionError, match="JSON-MIN export"):
            s.import_labels(tmp_path / "min.json")


def test_waiting_batch_message_names_discard_and_status_names_a_running_command(tmp_path):
    pool, y, s_dir = _session(tmp_path)
    with open_session(s_dir) as s:
        s.next(3)
        with pytest.raises(SessionError, match="vlal session discard"):
            s.next(3)
        res = CliRunner().invoke(main, ["session", "status", str(s_dir), "--json"])
        st = json.loads(res.output)
        assert st["busy"].startswith("process ") and str(os.getpid()) in st["busy"]
    res = CliRunner().invoke(main, ["session", "status", str(s_dir), "--json"])
    assert json.loads(res.output)["busy"] is None


def test_session_without_pool_paths_warns(tmp_path):
    from vlal.session import init_session

    pool, _ = make_pool_file(tmp_path / "pool.npz", paths=False)
    with pytest.warns(UserWarning, match="has no pool_paths"):
        init_session(tmp_path / "s", pool)


def test_broken_pipe_after_the_work_is_not_reported_as_an_error(tmp_path, monkeypatch):
    pool, y, s_dir = _session(tmp_path)
    import vlal.session_cli as session_cli

    real_echo = session_cli.click.echo

    def echo(*a, **k):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(session_cli.click, "echo", echo)
    res = CliRunner().invoke(main, ["session", "next", str(s_dir), "--budget", "2"])
    monkeypatch.setattr(session_cli.click, "echo", real_echo)
    assert "Error" not in res.output and "Broken pipe" not in res.output
    with open_session(s_dir, read_only=True) as s:
        assert len(s.state["open_batch"]["indices"]) == 2  # the batch was made


def test_labels_of_images_outside_the_open_batch_are_refused_with_advice(tmp_path):
    pool, y, s_dir = _session(tmp_path)
    with open_session(s_dir) as s:
        b = s.next(3)
        s.discard_batch()
        assert s.next(3)["indices"] == b["indices"]  # the same round queries the same batch again
        other = [i for i in range(len(y)) if i not in b["indices"]][:3]  # e.g. labels kept from elsewhere
        labels = write_csv_labels(s_dir, tmp_path / "old.csv", y, s.class_names, rows=other)
        with pytest.raises(SessionError, match="only the open batch's images take labels"):
            s.import_labels(labels)
        assert s.state["labeled"] == []


def test_last_review_classes_case_bom_blank_csv_rows_and_truncated_shards(tmp_path):
    pool, y = make_pool_file(tmp_path / "pool.npz")
    runner = CliRunner()
    (tmp_path / "case.txt").write_text("Class 1\nclass 0\nclass 2\nclass 3\nclass 4\n")
    res = runner.invoke(main, ["session", "init", str(tmp_path / "a"), "--features", str(pool),
                               "--classes", str(tmp_path / "case.txt")])
    assert res.exit_code == 1 and "'Class 1' is given at position 0 but is class 1" in res.output
    (tmp_path / "bom.txt").write_bytes("\ufeffclass 0\nclass 1\nclass 2\nclass 3\nclass 4\n".encode("utf-8"))
    res = runner.invoke(main, ["session", "init", str(tmp_path / "b"), "--features", str(pool),
                               "--classes", str(tmp_path / "bom.txt")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "b" / "session.json").read_text())["class_names"][0] == "class 0"
    with open_session(tmp_path / "b") as s:
        s.next(3)
        csv_file = write_csv_labels(tmp_path / "b", tmp_path / "l.csv", y, s.class_names)
        with open(csv_file, "a") as fh:
            fh.write(",\n,,\n")  # blank rows as spreadsheets write them
        assert s.import_labels(csv_file)["n_labeled"] == 3
    # a truncated shard: one line naming it, not numpy's traceback
    from vlal.shards import ShardWriter

    rng = np.random.default_rng(0)
    with ShardWriter(tmp_path / "f", 8, shard_rows=100) as w:
        w.write(rng.normal(size=(300, 8)).astype(np.float32))
    shard = sorted((tmp_path / "f").glob("features-*.npy"))[1]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    np.save(tmp_path / "p.npy", np.full((300, 3), 1 / 3))
    res = runner.invoke(main, ["select", "--features", str(tmp_path / "f" / "manifest.json"), "--probs",
                               str(tmp_path / "p.npy"), "--budget", "5", "--out", str(tmp_path / "q.npy")])
    assert res.exit_code == 1 and "truncated" in res.output and shard.name in res.output
    assert "Traceback" not in res.output


def test_csv_row_with_more_cells_than_the_header_is_refused_not_a_traceback(tmp_path):
    pool, y, s_dir = _session(tmp_path)
    with open_session(s_dir) as s:
        b = s.next(2)
        paths = s.pool["pool_paths"]
        (tmp_path / "x.csv").write_text("image,label\n" + "\n".join(f"{paths[i]},class {y[i]},extra" for i in b["indices"]) + "\n")
        with pytest.raises(SessionError, match="line 2 has 3 cells but the header 2 columns"):
            s.import_labels(tmp_path / "x.csv")
