"""Files: nothing half-written, nothing outside the target, no pickles; CLI conventions (issue 8)."""

from __future__ import annotations

import ast
import csv
import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import vlal
import vlal._io as vio
from vlal import VlalInputError
from vlal.bench import check_prefix, check_strategy_tuner, default_report_rounds, markdown_table, run_benchmark, \
    write_results
from vlal.cli import main
from vlal.data import FeatureDataset, load_features, make_synthetic, zero_shot_proxy
from vlal.loop import run_active_learning
from vlal.tuners import DEFAULT_TUNER, make_tuner

SRC = Path(vlal.__file__).resolve().parent


def _no_temp_files(folder: Path):
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp") or ".tmp." in p.name]


def _error_line(output: str) -> str:
    lines = [ln for ln in output.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1, output
    assert "Traceback" not in output
    return lines[0]


# ------------------------------------------------------------------ the atomic-write helper


def test_atomic_helpers_write_exact_content(tmp_path):
    vio.write_text_atomic(tmp_path / "a.txt", "héllo\n")
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo\n"
    vio.write_bytes_atomic(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    vio.write_json_atomic(tmp_path / "c.json", {"x": [1, 2.5]})
    assert json.loads((tmp_path / "c.json").read_text()) == {"x": [1, 2.5]}
    vio.save_npy_atomic(tmp_path / "d.npy", np.arange(4))
    np.testing.assert_array_equal(np.load(tmp_path / "d.npy"), np.arange(4))
    vio.savez_atomic(tmp_path / "e.npz", a=np.ones(2), b=np.array(["x", "y"]))
    with np.load(tmp_path / "e.npz") as z:
        assert z["b"].tolist() == ["x", "y"] and z["a"].sum() == 2
    assert not _no_temp_files(tmp_path)
    with pytest.raises(ValueError, match="object"):
        vio.save_npy_atomic(tmp_path / "f.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="object"):
        vio.savez_atomic(tmp_path / "g.npz", a=np.array([None], dtype=object))
    assert not (tmp_path / "f.npy").exists() and not (tmp_path / "g.npz").exists()


def test_atomic_files_get_the_mode_open_would_give(tmp_path):
    old = os.umask(0o022)
    try:
        vio.write_text_atomic(tmp_path / "new.txt", "x")
        assert (tmp_path / "new.txt").stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
        (tmp_path / "kept.txt").write_text("y")
        os.chmod(tmp_path / "kept.txt", 0o640)
        vio.write_text_atomic(tmp_path / "kept.txt", "z")
        assert (tmp_path / "kept.txt").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)


def test_atomic_write_failure_keeps_old_file(tmp_path):
    target = tmp_path / "t.txt"
    target.write_text("old")
    for exc in (OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()):
        with pytest.raises(type(exc)):
            with vio.atomic_write(target, "w") as fh:
                fh.write("new, half")
                raise exc
        assert target.read_text() == "old"
        assert not _no_temp_files(tmp_path)


# ------------------------------------------------------------------ numpy loaders: never unpickle


def test_every_numpy_loader_passes_allow_pickle_false():
    offenders = []
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load"
                    and isinstance(node.func.value, ast.Name) and node.func.value.id in ("np", "numpy")):
                kw = {k.arg: k.value for k in node.keywords}
                ok = isinstance(kw.get("allow_pickle"), ast.Constant) and kw["allow_pickle"].value is False
                if not ok:
                    offenders.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert not offenders, f"np.load without allow_pickle=False: {offenders}"


def _obj_npz(path):
    ds = make_synthetic(n_pool=30, n_test=10, n_classes=3, dim=4)
    np.savez(path, pool_features=ds.pool_features, pool_labels=ds.pool_labels, test_features=ds.test_features,
             test_labels=ds.test_labels, class_names=np.array([{"evil": 1}, 2, 3], dtype=object))
    return path


def test_object_arrays_are_refused_with_one_line(tmp_path):
    path = _obj_npz(tmp_path / "obj.npz")
    with pytest.raises(VlalInputError, match="object array"):
        load_features(path)
    res = CliRunner().invoke(main, ["bench", "--data", str(path), "--rounds", "1", "--seeds", "1", "--quiet",
                                    "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "object array" in _error_line(res.output)


def _select(tmp_path, *extra, features=None, probs=None):
    rng = np.random.default_rng(0)
    if features is None:
        features = tmp_path / "f.npy"
        np.save(features, rng.normal(size=(40, 5)).astype(np.float32))
    if probs is None:
        probs = tmp_path / "p.npy"
        np.save(probs, rng.dirichlet(np.ones(3), size=40))
    return CliRunner().invoke(main, ["select", "--features", str(features), "--probs", str(probs), "--budget", "4",
                                     "--strategy", "random", *extra])


@pytest.mark.parametrize("kind", ["object_npy", "object_npz", "badzip", "truncated_npy", "not_npy"])
def test_select_bad_input_files_are_one_line_errors(tmp_path, kind):
    bad = tmp_path / ("bad.npz" if "npz" in kind or kind == "badzip" else "bad.npy")
    if kind == "object_npy":
        np.save(bad, np.array([[{"a": 1}] * 5] * 40, dtype=object), allow_pickle=True)
    elif kind == "object_npz":
        np.savez(bad, pool_features=np.array([[None] * 5] * 40, dtype=object))
    elif kind == "badzip":
        bad.write_bytes(b"PK\x03\x04 not really a zip")
    elif kind == "truncated_npy":
        np.save(bad, np.ones((40, 5), dtype=np.float32))
        bad.write_bytes(bad.read_bytes()[:200])
    else:
        bad.write_text("1 2 3\n")
    res = _select(tmp_path, "--out", str(tmp_path / "q.npy"), features=bad)
    assert res.exit_code != 0
    line = _error_line(res.output)
    assert "--features" in line and "cannot read" in line
    assert not (tmp_path / "q.npy").exists()


# ------------------------------------------------------------------ select --out: atomic, one-line OS errors


@pytest.mark.parametrize("suffix", [".txt", ".npy"])
def test_select_out_on_full_disk_leaves_old_file_whole(tmp_path, monkeypatch, suffix):
    out = tmp_path / f"q{suffix}"
    out.write_bytes(b"previous answer\n")

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(vio.os, "fsync", full_disk)
    res = _select(tmp_path, "--out", str(out))
    assert res.exit_code != 0 and "No space left on device" in _error_line(res.output)
    assert out.read_bytes() == b"previous answer\n"  # not truncated, not a shorter answer
    assert not _no_temp_files(tmp_path)


def test_select_out_on_read_only_file_system(tmp_path, monkeypatch):
    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(vio.tempfile, "mkstemp", read_only)
    res = _select(tmp_path, "--out", str(tmp_path / "q.txt"))
    assert res.exit_code != 0 and "Read-only file system" in _error_line(res.output)
    assert not (tmp_path / "q.txt").exists()


def test_select_text_output_is_complete(tmp_path):
    res = _select(tmp_path, "--out", str(tmp_path / "q.txt"))
    assert res.exit_code == 0, res.output
    assert len((tmp_path / "q.txt").read_text().split()) == 4


def test_select_messages_name_cli_flags_and_labels_must_be_integers(tmp_path):
    np.save(tmp_path / "lab.npy", np.array([0, 1, 2]))
    np.save(tmp_path / "lbl_float.npy", np.array([0.0, 1.0, 2.0]))
    np.save(tmp_path / "lbl_frac.npy", np.array([0.5, 1.0, 2.0]))
    np.save(tmp_path / "lab_float.npy", np.array([0.0, 1.0, 2.0]))
    for lbl in ("lbl_float.npy", "lbl_frac.npy"):
        res = _select(tmp_path, "--labeled", str(tmp_path / "lab.npy"), "--labels", str(tmp_path / lbl),
                      "--out", str(tmp_path / "q.npy"))
        line = _error_line(res.output)
        assert res.exit_code != 0 and "--labels" in line and "integer" in line
    # floats in --labeled are refused the same way, and the message names the flag
    res = _select(tmp_path, "--labeled", str(tmp_path / "lab_float.npy"), "--out", str(tmp_path / "q.npy"))
    line = _error_line(res.output)
    assert res.exit_code != 0 and "--labeled" in line and "integer" in line
    np.save(tmp_path / "lab_big.npy", np.array([0, 99]))
    res = _select(tmp_path, "--labeled", str(tmp_path / "lab_big.npy"), "--out", str(tmp_path / "q.npy"))
    assert res.exit_code != 0 and "--labeled" in _error_line(res.output)
    res = CliRunner().invoke(main, ["select", "--features", str(tmp_path / "f.npy"), "--probs",
                                    str(tmp_path / "p.npy"), "--budget", "400", "--out", str(tmp_path / "q.npy")])
    assert res.exit_code != 0 and "--budget" in _error_line(res.output)


# ------------------------------------------------------------------ bench outputs


def _small_npz(path, n_pool=120, n_classes=4, dim=8, text=False, seed=0):
    ds = make_synthetic(n_pool=n_pool, n_test=60, n_classes=n_classes, dim=dim, random_state=seed)
    extra = {}
    if text:
        extra["text_features"], _ = zero_shot_proxy(ds, 0)
    np.savez(path, pool_features=ds.pool_features, pool_labels=ds.pool_labels, test_features=ds.test_features,
             test_labels=ds.test_labels, **extra)
    return path


def test_bench_checks_output_folder_before_computing(tmp_path, monkeypatch):
    import vlal.bench as bench

    def must_not_run(*a, **k):
        raise AssertionError("computed before checking the output folder")

    monkeypatch.setattr(bench, "run_benchmark", must_not_run)
    data = _small_npz(tmp_path / "d.npz")
    args = ["bench", "--data", str(data), "--rounds", "1", "--seeds", "1", "--quiet"]

    def no_write(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")

    with monkeypatch.context() as m:
        m.setattr(vio.tempfile, "mkstemp", no_write)
        res = CliRunner().invoke(main, args + ["--out", str(tmp_path / "ro")])
    assert res.exit_code != 0 and "not writable" in _error_line(res.output)
    (tmp_path / "o2").mkdir()
    (tmp_path / "o2" / "bench.csv").mkdir()  # an output name taken by a folder
    res = CliRunner().invoke(main, args + ["--out", str(tmp_path / "o2")])
    assert res.exit_code != 0 and "is a folder" in _error_line(res.output)


def test_write_results_never_leaves_a_mixed_set(tmp_path, monkeypatch):
    import vlal.bench as bench

    ds = make_synthetic(n_pool=80, n_test=40, n_classes=3, dim=4)
    rec = run_benchmark(ds, ["random"], n_rounds=1, seeds=[0], budget_fraction=0.05, progress=False)
    write_results(rec, tmp_path, "r")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    rec2 = [dict(r, accuracy=1.0) for r in rec]

    def broken_plot(records, path):
        raise RuntimeError("plot failed")

    monkeypatch.setattr(bench, "plot_curves", broken_plot)
    with pytest.raises(RuntimeError):
        write_results(rec2, tmp_path, "r")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # all old, none new


def test_prefix_is_a_file_name_stem(tmp_path):
    for bad in ("../../x", "a/b", "..", ".hidden", "", "-rf", "x\\y", "a b", "x;rm", "t\n", "a*"):
        with pytest.raises(VlalInputError, match="prefix"):
            check_prefix(bad)
    assert check_prefix("table1") == "table1" and check_prefix("hparam_k.dtd") == "hparam_k.dtd"
    assert check_prefix("résultats-1") == "résultats-1"  # letters of any script, as the message says
    out = tmp_path / "a" / "b"
    res = CliRunner().invoke(main, ["bench", "--rounds", "1", "--seeds", "1", "--quiet", "--out", str(out),
                                    "--prefix", "../../x"])
    assert res.exit_code != 0 and "--prefix" in _error_line(res.output)
    assert not list(tmp_path.rglob("x.*"))
    ds = make_synthetic(n_pool=60, n_test=20, n_classes=3, dim=4)
    rec = run_benchmark(ds, ["random"], n_rounds=1, seeds=[0], progress=False)
    with pytest.raises(VlalInputError, match="prefix"):
        write_results(rec, out, "../escape")
    assert not list(tmp_path.rglob("escape.*"))


# ------------------------------------------------------------------ conventions of the tables


def test_default_report_rounds_always_include_the_last():
    assert default_report_rounds(3) == [1, 2, 3]
    assert default_report_rounds(6) == [1, 2, 5, 6]
    assert default_report_rounds(5) == [1, 2, 5]
    assert default_report_rounds(1) == [1]


def test_bench_table_shows_last_round_and_one_seed_without_spread(tmp_path):
    data = _small_npz(tmp_path / "d.npz", n_pool=200)
    out = tmp_path / "o"
    res = CliRunner().invoke(main, ["bench", "--data", str(data), "--strategies", "random,entropy", "--rounds", "3",
                                    "--seeds", "1", "--budget-fraction", "0.02", "--quiet", "--out", str(out)])
    assert res.exit_code == 0, res.output
    md = (out / "bench.md").read_text()
    rows = [ln for ln in md.splitlines() if ln.startswith("| d |") or ln.startswith("|  |")]
    assert [r.split("|")[2].strip() for r in rows] == ["2", "4", "6"]  # rounds 1, 2 and the last, 3
    assert "±" not in md and "one seed" in md
    with open(out / "bench.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            for key in ("accuracy", "select_seconds", "budget_pct"):
                dec = row[key].partition(".")[2]
                assert len(dec) <= 6, (key, row[key])
            assert len(row["accuracy"].partition(".")[2]) <= 4
    res = CliRunner().invoke(main, ["bench", "--data", str(data), "--rounds", "3", "--seeds", "1", "--quiet",
                                    "--report-rounds", "1,5", "--out", str(tmp_path / "o3")])
    assert res.exit_code != 0 and "--report-rounds" in _error_line(res.output)
    assert not (tmp_path / "o3" / "bench.md").exists()
    res = CliRunner().invoke(main, ["bench", "--data", str(data), "--rounds", "3", "--seeds", "1", "--quiet",
                                    "--strategies", "random", "--budget-fraction", "0.02",
                                    "--report-rounds", "3,1,3", "--out", str(tmp_path / "o4")])
    assert res.exit_code == 0, res.output
    rows = [ln for ln in (tmp_path / "o4" / "bench.md").read_text().splitlines() if ln.startswith(("| d |", "|  |"))]
    assert [r.split("|")[2].strip() for r in rows] == ["2", "6"]  # round order, each once


def test_two_seeds_show_spread():
    ds = make_synthetic(n_pool=100, n_test=40, n_classes=3, dim=4)
    rec = run_benchmark(ds, ["random"], n_rounds=1, seeds=[0, 1], budget_fraction=0.05, progress=False)
    assert "±" in markdown_table(rec)


def test_table_says_when_zero_shot_is_the_proxy(tmp_path):
    proxy = load_features(_small_npz(tmp_path / "noText.npz", n_pool=150, n_classes=5))
    text = load_features(_small_npz(tmp_path / "withText.npz", n_pool=150, n_classes=5, text=True))
    rec = run_benchmark(proxy, ["random"], n_rounds=1, seeds=[0], budget_fraction=0.05, progress=False)
    assert {r["zero_shot"] for r in rec} == {"proxy"} and {r["proxy_removed"] for r in rec} == {5}
    table = markdown_table(rec)
    assert "†" in table and "one-shot prototype proxy" in table and "5 from noText" in table
    rec_t = run_benchmark(text, ["random"], n_rounds=1, seeds=[0], budget_fraction=0.05, progress=False)
    assert {r["zero_shot"] for r in rec_t} == {"text"} and {r["proxy_removed"] for r in rec_t} == {0}
    assert "†" not in markdown_table(rec_t)
    both = markdown_table(rec + rec_t)
    assert "5 from noText" in both and "withText" not in both.split("†")[-1]


def test_loop_and_bench_share_accuracy_and_row_conventions(tmp_path):
    ds = make_synthetic(n_pool=150, n_test=60, n_classes=4, dim=8)
    rec = run_benchmark(ds, ["entropy"], n_rounds=2, seeds=[0], budget_fraction=0.04, progress=False,
                        run_dir=tmp_path)
    w0, keep = zero_shot_proxy(ds, random_state=0)
    res = run_active_learning(vlal.make_strategy("entropy", random_state=np.random.default_rng(0)),
                              make_tuner(DEFAULT_TUNER, w0), ds.pool_features[keep], ds.pool_labels[keep], ds.test_features,
                              ds.test_labels, n_rounds=2, budget=6)
    assert all(1.0 < a <= 100.0 for a in res.accuracies)  # percent, not a fraction
    np.testing.assert_allclose(res.accuracies, [r["accuracy"] for r in rec], atol=1e-4)
    run_file = json.loads(next(tmp_path.glob("*.json")).read_text())
    rows = np.array(run_file["labeled_file_rows"])
    np.testing.assert_array_equal(rows, np.flatnonzero(keep)[res.labeled])  # rows of the file
    np.testing.assert_array_equal(ds.pool_labels[rows], run_file["labels"])


# ------------------------------------------------------------------ ALFA-Mix with image-level tuners (item 3)


def test_alfamix_with_image_tuner_is_refused_before_any_work(tmp_path):
    with pytest.raises(VlalInputError, match="alfamix.*images"):
        check_strategy_tuner(["random", "alfamix"], "paths")
    check_strategy_tuner(["alfamix"], "features")  # fine with feature tuners
    base = make_synthetic(n_pool=60, n_test=20, n_classes=3, dim=4)
    ds = FeatureDataset("imgs", base.pool_features, base.pool_labels, base.test_features, base.test_labels,
                        pool_paths=np.array([f"p{i}.png" for i in range(60)]),
                        test_paths=np.array([f"t{i}.png" for i in range(20)]))
    made = []
    with pytest.raises(VlalInputError, match="alfamix"):
        run_benchmark(ds, ["random", "alfamix"], n_rounds=2, seeds=[0], tuner_inputs="paths",
                      tuner_factory=lambda w0: made.append(w0), progress=False)
    assert made == []

    class Tuner:
        calls = 0

        def fit(self, x, y):
            Tuner.calls += 1

        def predict_proba(self, x):
            Tuner.calls += 1
            return np.full((len(x), 3), 1 / 3)

    with pytest.raises(VlalInputError, match="images"):
        run_active_learning(vlal.make_strategy("alfamix"), Tuner(), base.pool_features, base.pool_labels,
                            list(ds.test_paths), base.test_labels, pool_inputs=list(ds.pool_paths))
    assert Tuner.calls == 0
    res = CliRunner().invoke(main, ["bench", "--tuner", "vpt", "--strategies", "alfamix", "--rounds", "1",
                                    "--seeds", "1", "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "alfamix" in _error_line(res.output)


# ------------------------------------------------------------------ CLIP model of the file (item 6)


def test_bench_refuses_a_clip_model_other_than_the_files(tmp_path):
    ds = make_synthetic(n_pool=40, n_test=20, n_classes=3, dim=4)
    np.savez(tmp_path / "e.npz", pool_features=ds.pool_features, pool_labels=ds.pool_labels,
             test_features=ds.test_features, test_labels=ds.test_labels, class_names=np.array(["a", "b", "c"]),
             model_name=np.array("ViT-B-32"))
    res = CliRunner().invoke(main, ["bench", "--data", str(tmp_path / "e.npz"), "--tuner", "coop", "--clip-model",
                                    "ViT-B-16", "--rounds", "1", "--seeds", "1", "--quiet", "--out",
                                    str(tmp_path / "o")])
    line = _error_line(res.output)
    assert res.exit_code != 0 and "ViT-B-16" in line and "ViT-B-32" in line
    from vlal.cli import _clip_tuner  # the file's model is the default

    ds_e = load_features(tmp_path / "e.npz")
    with pytest.raises(VlalInputError, match="differs"):
        _clip_tuner("coop", ds_e, "ViT-B/16", None, None, {"model_name": "ViT-B-32", "pretrained": None, "weights_id": None})
