"""`vlal bench` keeps its work (issue 13 item 4): per-run files, --resume, per-round progress, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import vlal
from vlal import VlalInputError
from vlal.bench import run_benchmark
from vlal.cli import main
from vlal.data import make_synthetic

SRC = Path(vlal.__file__).resolve().parents[1]


def _npz(path, n_pool=800):
    ds = make_synthetic(n_pool=n_pool, n_test=300, n_classes=8, dim=16)
    np.savez(path, pool_features=ds.pool_features, pool_labels=ds.pool_labels, test_features=ds.test_features,
             test_labels=ds.test_labels)
    return path


def _bench_args(data, out):
    return ["bench", "--data", str(data), "--strategies", "random,entropy,cec", "--rounds", "3", "--seeds", "3",
            "--budget-fraction", "0.02", "--out", str(out), "--quiet"]


def _run_files(out):
    folder = Path(out) / "bench.runs"
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def _spawn(args, cwd):
    env = dict(os.environ, PYTHONPATH=str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "vlal.cli", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for_runs(proc, out, n=1, timeout=120):
    t0 = time.time()
    while len(_run_files(out)) < n:
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t0 < timeout
        time.sleep(0.01)


def test_resume_reads_finished_runs_back_and_redoes_none(tmp_path, monkeypatch):
    import vlal.bench as bench

    ds = make_synthetic(n_pool=150, n_test=60, n_classes=4, dim=8)
    kw = dict(n_rounds=2, seeds=[0, 1], budget_fraction=0.04, progress=False, run_dir=tmp_path / "runs")
    full = run_benchmark(ds, ["random", "entropy"], **kw)
    files = _run_files_in(tmp_path / "runs")
    assert len(files) == 4
    files[1].unlink()  # as if killed before this run finished
    calls = []
    real = bench.run_active_learning
    monkeypatch.setattr(bench, "run_active_learning", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = run_benchmark(ds, ["random", "entropy"], resume=True, **kw)
    assert len(calls) == 1  # only the missing run
    strip = lambda recs: [{k: v for k, v in r.items() if k != "select_seconds"} for r in recs]  # noqa: E731
    assert strip(again) == strip(full)
    with pytest.raises(VlalInputError, match="other settings.*budget_fraction"):
        run_benchmark(ds, ["random"], resume=True, **dict(kw, budget_fraction=0.08))
    other = make_synthetic(n_pool=150, n_test=60, n_classes=4, dim=8, random_state=1)
    with pytest.raises(VlalInputError, match="data_fingerprint"):
        run_benchmark(other, ["random"], resume=True, **kw)


@pytest.mark.parametrize("edit, match", [
    (lambda b: b["records"][1].update(accuracy=999.0), r"accuracy 999\.0 .* not a percentage"),
    (lambda b: b["records"][1].update(accuracy=None), "not a percentage"),
    (lambda b: b.update(records=b["records"][:1] + b["records"][2:]), "without gaps"),
    (lambda b: b["records"][0].update(dataset="zzz"), "another"),
    (lambda b: b.pop("records"), "non-empty list of records"),
    (lambda b: b["records"][1].pop("tuner"), "fields"),
    (lambda b: b["records"][2].update(n_labeled=1), "rising from 0"),
    (lambda b: b.update(labeled_file_rows=[10 ** 6] + b["labeled_file_rows"][1:]), r"outside the data file's pool"),
    (lambda b: b.update(labels=[(b["labels"][0] + 1) % 4] + b["labels"][1:]), "labels differ"),
    (lambda b: b.update(labels=b["labels"][:-1]), "one per label"),
])
def test_resume_refuses_a_run_file_vlal_cannot_have_written(tmp_path, edit, match):
    """An edited run file is refused (its numbers went into the tables unchecked), not silently reported."""
    ds = make_synthetic(n_pool=150, n_test=60, n_classes=4, dim=8)
    kw = dict(n_rounds=2, seeds=[0], budget_fraction=0.04, progress=False, run_dir=tmp_path / "runs")
    run_benchmark(ds, ["random"], **kw)
    path, = _run_files_in(tmp_path / "runs")
    blob = json.loads(path.read_text())
    edit(blob)
    path.write_text(json.dumps(blob))
    with pytest.raises(VlalInputError, match=f"cannot resume from .*{match}"):
        run_benchmark(ds, ["random"], resume=True, **kw)


def _run_files_in(folder):
    return sorted(Path(folder).glob("*.json"))


def test_progress_bar_advances_per_round(capsys):
    ds = make_synthetic(n_pool=100, n_test=40, n_classes=3, dim=4)
    run_benchmark(ds, ["random", "entropy"], n_rounds=3, seeds=[0], budget_fraction=0.05, progress=True)
    err = capsys.readouterr().err
    assert "6/6" in err and "round" in err  # 1 seed x 2 strategies x 3 rounds, unit = round


@pytest.mark.slow
def test_killed_bench_resumes_to_byte_identical_tables(tmp_path):
    data = _npz(tmp_path / "d.npz")
    out = tmp_path / "out"
    # reference: uninterrupted
    ref = subprocess.run([sys.executable, "-m", "vlal.cli", *_bench_args("d.npz", "out")], cwd=tmp_path,
                         env=dict(os.environ, PYTHONPATH=str(SRC), OMP_NUM_THREADS="1"), capture_output=True,
                         text=True)
    assert ref.returncode == 0, ref.stderr
    ref_md = (out / "bench.md").read_bytes()
    ref_json = json.loads((out / "bench.json").read_text())
    import shutil

    shutil.rmtree(out)
    assert data.exists()
    # killed (SIGKILL) once the first run is on disk
    proc = _spawn(_bench_args("d.npz", "out"), tmp_path)
    _wait_for_runs(proc, out, 1)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    kept = _run_files(out)
    assert 1 <= len(kept) < 9, len(kept)
    for f in kept:  # every kept file is whole
        assert json.loads(f.read_text())["format"] == "vlal-bench-run"
    assert not (out / "bench.md").exists()
    stamps = {f.name: (f.stat().st_ino, f.stat().st_mtime_ns) for f in kept}
    # without --resume: refused, nothing lost
    res = CliRunner().invoke(main, _bench_args(data, out))
    assert res.exit_code != 0 and "--resume" in res.output and len(_run_files(out)) == len(kept)
    # resume
    res = subprocess.run([sys.executable, "-m", "vlal.cli", *_bench_args("d.npz", "out"), "--resume"], cwd=tmp_path,
                         env=dict(os.environ, PYTHONPATH=str(SRC), OMP_NUM_THREADS="1"), capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stderr
    assert (out / "bench.md").read_bytes() == ref_md  # byte-identical table (and command line)
    got = json.loads((out / "bench.json").read_text())
    strip = lambda recs: [{k: v for k, v in r.items() if k != "select_seconds"} for r in recs]  # noqa: E731
    assert got["command"] == ref_json["command"] and strip(got["records"]) == strip(ref_json["records"])
    for f in _run_files(out):  # finished runs were not redone
        if f.name in stamps:
            assert (f.stat().st_ino, f.stat().st_mtime_ns) == stamps[f.name]
    assert len(_run_files(out)) == 9 and (out / "bench.runs" / "COMPLETE").exists()


@pytest.mark.slow
def test_ctrl_c_says_what_was_kept_in_one_line(tmp_path):
    _npz(tmp_path / "d.npz")
    out = tmp_path / "out"
    proc = _spawn(_bench_args("d.npz", "out"), tmp_path)
    _wait_for_runs(proc, out, 1)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before Ctrl-C arrived")
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    n = len(_run_files(out))
    assert lines[0].startswith(f"interrupted: {n} of 9 finished run(s) kept in ") and lines[0].endswith("--resume")
    assert not (out / "bench.md").exists()
