"""The loop, the tuners, the harness and the CLI, end to end (real DTD features where present)."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

import vlal
from vlal.bench import markdown_table, run_benchmark, write_results
from vlal.cli import main
from vlal.data import FeatureDataset, load_features, make_synthetic, zero_shot_proxy
from vlal.exceptions import VlalInputError
from vlal.loop import run_active_learning, round_budget
from vlal.tuners import FeatureSpaceTuner, ZeroShotClassifier, cosine_softmax

from conftest import real_data


def test_cosine_softmax_eq1():
    x = np.array([[1.0, 0.0], [0.0, 2.0]])
    w = np.array([[1.0, 0.0], [0.0, 1.0]])
    p = cosine_softmax(x, w, temperature=0.5)
    e = np.exp(2.0)  # cos = 1 vs 0, / T = 0.5
    np.testing.assert_allclose(p[0], [e / (e + 1), 1 / (e + 1)], rtol=1e-6)
    np.testing.assert_allclose(p[1], [1 / (e + 1), e / (e + 1)], rtol=1e-6)


def test_feature_tuner_restarts_from_zero_shot_and_learns():
    ds = make_synthetic(n_pool=300, n_test=300, n_classes=5, dim=16)
    w0, _ = zero_shot_proxy(ds, 0)
    t = FeatureSpaceTuner(w0)
    p0 = t.predict_proba(ds.test_features)
    np.testing.assert_allclose(p0, ZeroShotClassifier(w0).predict_proba(ds.test_features))
    t.fit(ds.pool_features, ds.pool_labels)
    acc_full = (t.predict_proba(ds.test_features).argmax(1) == ds.test_labels).mean()
    acc0 = (p0.argmax(1) == ds.test_labels).mean()
    assert acc_full > acc0
    t.fit(ds.pool_features[:0], ds.pool_labels[:0])  # empty fit = back to zero-shot
    np.testing.assert_allclose(t.predict_proba(ds.test_features), p0, atol=1e-6)
    with pytest.raises(ValueError, match="labels"):
        t.fit(ds.pool_features[:3], np.array([0, 1, 99]))


def test_round_budget():
    assert round_budget(1128) == 11 and round_budget(50) == 1
    with pytest.raises(ValueError):
        round_budget(100, 0)


class _CountingOracle:
    def __init__(self, y):
        self.y, self.asked = y, []

    def __call__(self, idx):
        self.asked.append(np.array(idx))
        return self.y[idx]


def test_loop_never_loses_a_label():
    ds = make_synthetic(n_pool=200, n_test=100, n_classes=4, dim=8)
    w0, _ = zero_shot_proxy(ds, 0)
    oracle = _CountingOracle(ds.pool_labels)
    res = run_active_learning(vlal.CEC(k=5, random_state=0), FeatureSpaceTuner(w0), ds.pool_features, oracle,
                              ds.test_features, ds.test_labels, n_rounds=3, budget=7)
    assert [r.n_labeled for r in res.rounds] == [0, 7, 14, 21]
    asked = np.concatenate(oracle.asked)
    np.testing.assert_array_equal(res.labeled, asked)
    np.testing.assert_array_equal(res.labels, ds.pool_labels[asked])
    assert len(set(asked.tolist())) == 21


def test_loop_exhausts_pool_and_stops():
    ds = make_synthetic(n_pool=10, n_test=20, n_classes=2, dim=4, n_shots=1)
    w0, _ = zero_shot_proxy(ds, 0)
    with pytest.warns(UserWarning, match=r"fully labeled after 3 of the 5 rounds"):
        res = run_active_learning(vlal.Random(0), FeatureSpaceTuner(w0), ds.pool_features, ds.pool_labels,
                                  ds.test_features, ds.test_labels, n_rounds=5, budget=4)
    assert [r.n_labeled for r in res.rounds] == [0, 4, 8, 10]


def test_zero_shot_proxy_removes_pool_prototypes():
    ds = make_synthetic(n_pool=100, n_test=10, n_classes=3, dim=4)
    ds_noshot = FeatureDataset("x", ds.pool_features, ds.pool_labels, ds.test_features, ds.test_labels)
    w0, keep = zero_shot_proxy(ds_noshot, 0)
    assert keep.sum() == 97 and w0.shape == (3, 4)
    removed = ds.pool_features[~keep]
    np.testing.assert_allclose(np.sort(removed, axis=0), np.sort(w0, axis=0), atol=1e-6)
    w1, keep1 = zero_shot_proxy(ds, 0)  # shots present: pool untouched
    assert keep1.all()


def test_benchmark_records_and_table():
    ds = make_synthetic(n_pool=300, n_test=200, n_classes=5, dim=16)
    rec = run_benchmark(ds, ["random", "cec"], n_rounds=2, seeds=[0, 1], budget_fraction=0.02, progress=False)
    assert len(rec) == 2 * 2 * 3
    # identical zero-shot proxy across strategies for one seed
    zs = {(r["seed"], r["strategy"]): r["accuracy"] for r in rec if r["round"] == 0}
    assert zs[(0, "random")] == zs[(0, "cec")]
    table = markdown_table(rec, report_rounds=(1, 2))
    assert "| synthetic | 2 |" in table and "±" in table


@pytest.mark.slow
def test_bench_cli_on_real_dtd(tmp_path):
    path = real_data("dtd")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["bench", "--data", str(path), "--strategies", "random,entropy,cec",
                                       "--rounds", "2", "--seeds", "1", "--out", str(out), "--quiet",
                                       "--report-rounds", "1,2"])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "bench.json").read_text())
    recs = data["records"]
    assert {r["strategy"] for r in recs} == {"random", "entropy", "cec"}
    ds = load_features(path)
    b = round_budget(ds.pool_features.shape[0] - ds.n_classes)  # K prototypes leave the pool
    assert sorted({r["n_labeled"] for r in recs}) == [0, b, 2 * b]
    assert all(0 <= r["accuracy"] <= 100 for r in recs)
    assert (out / "bench.png").stat().st_size > 1000
    assert "| dtd | 1 |" in (out / "bench.md").read_text()


def test_select_cli(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 6)).astype(np.float32)
    p = rng.dirichlet(np.ones(3), size=50)
    np.save(tmp_path / "f.npy", x)
    np.savez(tmp_path / "p.npz", probs=p)
    np.save(tmp_path / "lab.npy", np.arange(5))
    r = CliRunner().invoke(main, ["select", "--features", str(tmp_path / "f.npy"), "--probs", str(tmp_path / "p.npz"),
                                  "--budget", "4", "--labeled", str(tmp_path / "lab.npy"), "--out", str(tmp_path / "q.npy")])
    assert r.exit_code == 0, r.output
    q = np.load(tmp_path / "q.npy")
    np.testing.assert_array_equal(q, vlal.CEC(random_state=0).select(x, p, 4, labeled=np.arange(5)))
    bad = CliRunner().invoke(main, ["select", "--features", str(tmp_path / "f.npy"), "--probs", str(tmp_path / "f.npy"),
                                    "--budget", "4"])
    assert bad.exit_code != 0 and "probs" in bad.output
    unknown = CliRunner().invoke(main, ["bench", "--strategies", "nope", "--rounds", "1", "--seeds", "1",
                                        "--out", str(tmp_path / "o")])
    assert unknown.exit_code != 0 and "unknown strategy" in unknown.output


def test_benchmark_rounds_draw_afresh_on_class_sorted_pool():
    # pool stored in class order (as the real files are): an int seed reused every round
    # would keep querying the same region; the harness must not
    ds = make_synthetic(n_pool=500, n_test=50, n_classes=10, dim=8)
    order = np.argsort(ds.pool_labels, kind="stable")
    ds = FeatureDataset("sorted", ds.pool_features[order], ds.pool_labels[order], ds.test_features,
                        ds.test_labels, ds.shot_features, ds.shot_labels)
    w0, _ = zero_shot_proxy(ds, 0)
    res = run_active_learning(vlal.Random(np.random.default_rng(0)), FeatureSpaceTuner(w0), ds.pool_features,
                              ds.pool_labels, ds.test_features, ds.test_labels, n_rounds=4, budget=5)
    assert np.unique(res.labels).size >= 6


def test_benchmark_gives_strategies_a_generator(monkeypatch):
    import vlal.bench as bench

    seen = []

    def spy(name, random_state=None):
        seen.append(random_state)
        return vlal.make_strategy(name, random_state)

    monkeypatch.setattr(bench, "make_strategy", spy)
    ds = make_synthetic(n_pool=100, n_test=20, n_classes=3, dim=4)
    bench.run_benchmark(ds, ["random"], n_rounds=1, seeds=[0], progress=False)
    assert any(isinstance(r, np.random.Generator) for r in seen)


def test_budget_pct_when_pool_runs_out():
    ds = make_synthetic(n_pool=40, n_test=20, n_classes=2, dim=4)
    with pytest.warns(UserWarning, match=r"fully labeled after 2 of the 3 rounds"):
        rec = run_benchmark(ds, ["random"], n_rounds=3, seeds=[0], budget_fraction=0.6, progress=False)
    assert [r["budget_pct"] for r in rec] == [0.0, 60.0, 100.0]
    table = markdown_table(rec, report_rounds=(1, 2, 3))
    assert "| 100 |" in table and "nan" not in table


def test_cli_errors_are_one_line(tmp_path):
    runner = CliRunner()
    np.save(tmp_path / "f.npy", np.ones((3, 2)))
    np.save(tmp_path / "p.npy", np.full((3, 2), 0.5))
    cases = [
        (["bench", "--data", str(tmp_path / "f.npy"), "--rounds", "1", "--seeds", "1"], "expected an .npz"),
        (["bench", "--strategies", "", "--rounds", "1", "--seeds", "1", "--out", str(tmp_path)], "strategies is empty"),
        (["select", "--features", str(tmp_path / "f.npy"), "--probs", str(tmp_path / "f.npy"), "--budget", "1",
          "--out", str(tmp_path / "q.json")], ".npy, .txt or .csv"),
        (["select", "--features", str(tmp_path / "f.npy"), "--probs", str(tmp_path / "p.npy"), "--budget", "1",
          "--seed", "-1", "--out", str(tmp_path / "q.npy")], "Invalid value for '--seed'"),
    ]
    for args, msg in cases:
        res = runner.invoke(main, args)
        assert res.exit_code != 0 and msg in res.output, (args, res.output)
        assert "Traceback" not in res.output


def test_readme_python_examples_run():
    """The README's Python blocks run as written (the loop block on real DTD when present)."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "import" in b]
    assert len(blocks) >= 2
    exec(compile(blocks[0], "README-quickstart", "exec"), {})
    # every block runs as written from a fresh clone: nothing outside the checkout is read
    assert not any("shared/data" in b for b in blocks)
    ns = {}
    exec(compile(blocks[1], "README-loop", "exec"), ns)
    res, keep, ds = ns["result"], ns["keep"], ns["ds"]
    assert len(res.rounds) == 7 and all(0 <= a <= 100 for a in res.accuracies)
    # file rows of the picks carry the labels the oracle gave
    np.testing.assert_array_equal(ds.pool_labels[ns["file_rows"]], res.labels)


@pytest.mark.parametrize("bad,msg", [
    (lambda y: y + 100, r"test_labels: class \d+ is outside \[0, 3\)"),
    (lambda y: np.array([f"c{v}" for v in y]), r"test_labels must hold integer class ids.*map class names"),
    (lambda y: y[:-1], r"test_labels must have shape \(20,\)"),
    (lambda y: y + 0.5, r"test_labels must hold integer class ids.*astype\(int\)"),
])
def test_loop_rejects_bad_test_labels(bad, msg):
    ds = make_synthetic(n_pool=60, n_test=20, n_classes=3, dim=4)
    w0, _ = zero_shot_proxy(ds, 0)
    with pytest.raises(VlalInputError, match=msg):  # was: accuracies of 0 % or a numpy broadcast error
        run_active_learning(vlal.Random(0), FeatureSpaceTuner(w0), ds.pool_features, ds.pool_labels,
                            ds.test_features, bad(ds.test_labels), n_rounds=1, budget=5)


@pytest.mark.parametrize("bad,msg", [
    (lambda y: y + 0.5, r"oracle must hold integer class ids"),
    (lambda y: np.array([f"c{v}" for v in y]), r"oracle must hold integer class ids"),
    (lambda y: y - 1, r"oracle: class -1 is outside"),
])
def test_loop_rejects_bad_oracle_labels(bad, msg):
    ds = make_synthetic(n_pool=60, n_test=20, n_classes=3, dim=4)
    w0, _ = zero_shot_proxy(ds, 0)
    with pytest.raises(VlalInputError, match=msg):  # was: silently truncated floats, a raw int() error
        run_active_learning(vlal.Random(0), FeatureSpaceTuner(w0), ds.pool_features, bad(ds.pool_labels),
                            ds.test_features, ds.test_labels, n_rounds=1, budget=5)
    with pytest.raises(VlalInputError, match="the oracle's labels: class 7 is outside"):
        run_active_learning(vlal.Random(0), FeatureSpaceTuner(w0), ds.pool_features, lambda idx: np.full(idx.size, 7),
                            ds.test_features, ds.test_labels, n_rounds=1, budget=5)


@pytest.mark.parametrize("test_x, oracle, msg", [
    (lambda x: x[:, :2], None, r"test_inputs has d=2 but pool_features has d=4"),  # was: "features has d=2 ..."
    (lambda x: x[:0], None, r"test_inputs must be non-empty"),
    (lambda x: x, lambda idx: None, r"the oracle returned None for 5 queries"),  # was: a bare TypeError
    (lambda x: x, lambda idx: 3, r"the oracle must return a sequence of labels; got int"),
    (lambda x: None, None, r"test_inputs must be the evaluation set .*got NoneType"),
    (lambda x: 1.0, None, r"test_inputs must be the evaluation set .*got float"),
])
def test_loop_names_test_inputs_and_the_oracle(test_x, oracle, msg):
    ds = make_synthetic(n_pool=60, n_test=20, n_classes=3, dim=4)
    w0, _ = zero_shot_proxy(ds, 0)
    with pytest.raises(VlalInputError, match=msg):
        run_active_learning(vlal.Random(0), FeatureSpaceTuner(w0), ds.pool_features,
                            ds.pool_labels if oracle is None else oracle, test_x(ds.test_features), ds.test_labels,
                            n_rounds=1, budget=5)


def test_loop_lets_the_oracles_own_errors_through():
    # a generator oracle that fails inside: its own TypeError, not "must return a sequence"
    ds = make_synthetic(n_pool=60, n_test=20, n_classes=3, dim=4)
    w0, _ = zero_shot_proxy(ds, 0)

    def oracle(idx):
        for j in idx:
            yield len(j)  # a bug in the user's oracle

    with pytest.raises(TypeError, match="has no len"):
        run_active_learning(vlal.Random(0), FeatureSpaceTuner(w0), ds.pool_features, oracle,
                            ds.test_features, ds.test_labels, n_rounds=1, budget=5)


def test_cli_select_refuses_to_overwrite_an_input(tmp_path):
    f, p = tmp_path / "f.npy", tmp_path / "p.npy"
    np.save(f, np.random.default_rng(0).random((40, 6)).astype(np.float32))
    np.save(p, np.random.default_rng(1).dirichlet(np.ones(3), 40))
    before = f.read_bytes()
    res = CliRunner().invoke(main, ["select", "--features", str(f), "--probs", str(p), "--budget", "3",
                                    "--out", str(f)])
    assert res.exit_code == 2 and "is an input file (--features)" in res.output
    assert f.read_bytes() == before  # the features are still there
    from vlal.shards import write_shards

    write_shards(tmp_path / "sh", np.load(f), shard_rows=16)  # a shard behind a manifest counts too
    shard = tmp_path / "sh" / "features-00001.npy"
    before = shard.read_bytes()
    res = CliRunner().invoke(main, ["select", "--features", str(tmp_path / "sh"), "--probs", str(p), "--budget", "3",
                                    "--out", str(shard)])
    assert res.exit_code == 2 and "is an input file (--features)" in res.output
    assert shard.read_bytes() == before


def test_loop_accepts_ints_in_an_object_array_and_a_generator_oracle():
    ds = make_synthetic(n_pool=60, n_test=20, n_classes=3, dim=4)
    w0, _ = zero_shot_proxy(ds, 0)
    ref = run_active_learning(vlal.Random(0), FeatureSpaceTuner(w0), ds.pool_features, ds.pool_labels,
                              ds.test_features, ds.test_labels, n_rounds=2, budget=5)
    got = run_active_learning(vlal.Random(0), FeatureSpaceTuner(w0), ds.pool_features,
                              lambda idx: (int(ds.pool_labels[i]) for i in idx),
                              ds.test_features, ds.test_labels.astype(object), n_rounds=2, budget=5)
    assert got.accuracies.tolist() == ref.accuracies.tolist()
