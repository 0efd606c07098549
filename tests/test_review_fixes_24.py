"""Findings of the stop-24 new-user review (README only), each reproduced and checked fixed."""

from __future__ import annotations

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
