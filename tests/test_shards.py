"""Sharded float16 features on disk (vlal.shards) and CEC streaming over them (vlal._scale)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import vlal
from vlal import _scale, scoring
from vlal.exceptions import VlalInputError
from vlal.shards import ShardedFeatures, ShardWriter, load_manifest, write_shards


def _pool(n=3000, d=32, k=10, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d))
    y = rng.integers(0, k, size=n)
    x = centres[y] + 0.5 * rng.normal(size=(n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    logits = 8.0 * x @ (centres / np.linalg.norm(centres, axis=1, keepdims=True)).T
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    return x.astype(np.float32), p.astype(np.float32), y


@pytest.fixture()
def shards(tmp_path):
    x, p, y = _pool()
    fm = write_shards(tmp_path / "f", x, shard_rows=700, model="test", weights=None,
                      paths=[f"img{i}.png" for i in range(len(x))])
    pm = write_shards(tmp_path / "p", p, shard_rows=1000)
    return x, p, y, ShardedFeatures(fm), ShardedFeatures(pm)


def test_round_trip_slices_and_indices(shards):
    x, _, _, f, _ = shards
    x16 = x.astype(np.float16)
    assert f.shape == x.shape and f.dtype == np.float16 and len(f) == len(x)
    assert len(f.offsets) == 6  # 3000 rows in shards of 700: 5 shards
    np.testing.assert_array_equal(f[650:1450], x16[650:1450])  # spans three shards
    np.testing.assert_array_equal(f[::7], x16[::7])
    idx = np.array([2999, 0, 700, 699, 1401, 5, 5, -1])
    np.testing.assert_array_equal(f[idx], x16[idx])  # order kept, duplicates, negative
    mask = np.zeros(len(x), bool)
    mask[[3, 900, 2100]] = True
    np.testing.assert_array_equal(f[mask], x16[mask])
    np.testing.assert_array_equal(f[17], x16[17])
    assert f.read(slice(10, 20), dtype=np.float32).dtype == np.float32
    assert f.paths[:2] == ["img0.png", "img1.png"]
    with pytest.raises(IndexError):
        f[np.array([3000])]
    np.testing.assert_array_equal(np.asarray(f), x16)


def test_materialisation_refused_above_limit(shards, monkeypatch):
    *_, f, _ = shards
    monkeypatch.setattr("vlal.shards.MATERIALIZE_MAX_BYTES", 1000)
    with pytest.raises(VlalInputError, match="refusing to load"):
        np.asarray(f)
    assert f[:10].shape == (10, 32)  # row reads still work


def test_manifest_checks(tmp_path, shards):
    *_, f, _ = shards
    m = json.loads((f.root / "manifest.json").read_text())
    assert m["format"] == "vlal-shards" and m["dtype"] == "float16" and m["d"] == 32 and m["n"] == 3000
    assert m["model"] == "test" and m["paths"] == "paths.txt"
    assert not [p for p in f.root.iterdir() if p.name.endswith(".tmp")]  # atomic writes leave nothing

    def bad(change, match):
        mm = dict(m, **change)
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(mm))
        # shard files are resolved next to the manifest: point at the real folder
        path = f.root / "bad.json"
        path.write_text(json.dumps(mm))
        with pytest.raises(VlalInputError, match=match):
            ShardedFeatures(path)

    bad({"format": "x"}, "format")
    bad({"n": 5}, "shards hold 3000")
    bad({"dtype": "int8"}, "dtype")
    bad({"shards": [{"file": "../escape.npy", "rows": 3000}]}, "plain file name")
    bad({"shards": [{"file": "features-00000.npy", "rows": 3000}], "n": 3000}, "manifest says")
    bad({"shards": [m["shards"][0]] + m["shards"][:-1]}, r"features-00000\.npy'\] listed more than once")
    with pytest.raises(VlalInputError, match="does not exist"):
        load_manifest(tmp_path / "nothing")


def test_writer_rejects_bad_blocks(tmp_path):
    w = ShardWriter(tmp_path / "w", 4)
    with pytest.raises(VlalInputError, match="shape"):
        w.write(np.zeros((3, 5)))
    with pytest.raises(VlalInputError, match="NaN"):
        w.write(np.array([[1.0, np.nan, 0, 0]]))
    with pytest.raises(VlalInputError, match="NaN or inf"):
        w.write(np.full((1, 4), 1e6))  # beyond float16
    with pytest.raises(VlalInputError, match="no rows"):
        w.close()


def test_interrupted_rewrite_leaves_no_manifest_never_mixed_rows(tmp_path):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(300, 8)).astype(np.float32), rng.normal(size=(300, 8)).astype(np.float32)
    write_shards(tmp_path / "A", a, shard_rows=100)
    with pytest.raises(KeyboardInterrupt):
        with ShardWriter(tmp_path / "A", 8, shard_rows=100) as w:
            w.write(b[:150])  # one new shard replaced, then the run stops
            raise KeyboardInterrupt
    assert not (tmp_path / "A" / "manifest.json").exists()
    with pytest.raises(VlalInputError, match="does not exist"):
        vlal.shards.open_features(tmp_path / "A")
    write_shards(tmp_path / "A", b, shard_rows=100)  # a finished rewrite reads back whole
    np.testing.assert_array_equal(np.asarray(vlal.shards.open_features(tmp_path / "A")[:]), b.astype(np.float16))


def test_one_manifest_per_folder(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 8)).astype(np.float32)
    write_shards(tmp_path / "F", x, paths=[f"{i}.png" for i in range(50)])
    for kw in ({"prefix": "probs"},):
        with pytest.raises(VlalInputError, match="already holds the manifest of shards 'features'"):
            ShardWriter(tmp_path / "F", 5, **kw)
    with pytest.raises(VlalInputError, match="already holds"):
        write_shards(tmp_path / "F", x[:, :5], prefix="probs", paths=[str(i) for i in range(50)])
    f = vlal.shards.open_features(tmp_path / "F")  # untouched: shape, rows and paths
    assert f.shape == (50, 8) and (tmp_path / "F" / "paths.txt").read_text().startswith("0.png\n")
    (tmp_path / "G").mkdir()
    (tmp_path / "G" / "manifest.json").write_text("not json")
    with pytest.raises(VlalInputError, match="not a vlal shard manifest"):
        ShardWriter(tmp_path / "G", 4)
    assert (tmp_path / "G" / "manifest.json").read_text() == "not json"
    for bad in ("../x", "a/b", ".hidden", "", "-x", 3):
        with pytest.raises(VlalInputError, match="prefix"):
            ShardWriter(tmp_path / "H", 4, prefix=bad)
    assert not list(tmp_path.glob("x-*")) and not (tmp_path / "H").exists()


def test_small_sharded_pool_gives_the_in_memory_selection(shards):
    x, p, _, f, pf = shards
    labeled = np.arange(0, 3000, 50)
    got = vlal.CEC(random_state=3).select(f, pf, 40, labeled=labeled)
    want = vlal.CEC(random_state=3).select(x.astype(np.float16).astype(np.float32),
                                           p.astype(np.float16).astype(np.float32), 40, labeled=labeled)
    np.testing.assert_array_equal(got, want)
    # a strategy without a streaming path reads small shards through __array__
    e = vlal.registry.make_strategy("entropy").select(f, pf, 5)
    assert e.shape == (5,)


def test_topn_and_entropy_blocks_match_scoring():
    _, p, _ = _pool(n=2000, k=12, seed=1)
    top = _scale._TopN(10, p.shape[1])
    for s in range(0, len(p), 300):
        top.update(p[s : s + 300])
    q = scoring.contextual_prior(p, 10)
    np.testing.assert_allclose(top.mean(), q, rtol=1e-6)
    inv_q = (1.0 / q).astype(np.float32)
    np.testing.assert_allclose(_scale._calibrated_entropy_block(p, inv_q), scoring.calibrated_entropy(p, 10),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(_scale._calibrated_entropy_block(p, None), scoring.entropy(p), rtol=1e-4, atol=1e-5)


def test_streamed_cec(shards, monkeypatch):
    x, p, y, f, pf = shards
    monkeypatch.setattr(_scale, "STREAM_MIN_BYTES", 0)
    labeled = np.arange(0, 3000, 10)
    c = vlal.CEC(random_state=0)
    picks = c.select(f, pf, 30, labeled=labeled)
    assert picks.shape == (30,) and np.unique(picks).size == 30
    assert not np.isin(picks, labeled).any()
    st = c.stream_stats_
    assert st["recall_at_k"] >= 0.9  # measured against exact search on sampled rows
    assert st["sq8_dist_err"]["median"] < 0.02
    assert set(st["stages_s"]) >= {"prior", "entropy", "index", "tune", "knn", "kmeans", "query"}
    assert np.unique(y[picks]).size >= 8  # 10 classes; a random draw of 30 covers ~9.6
    # same seed, same picks
    np.testing.assert_array_equal(picks, vlal.CEC(random_state=0).select(f, pf, 30, labeled=labeled))
    with pytest.raises(VlalInputError, match="greedy"):
        vlal.CEC(clustering="greedy").select(f, pf, 5)


def test_streamed_cec_never_picks_copies(tmp_path, monkeypatch):
    # 300 images, each 20 times: the streamed path keeps the duplicate rule of the in-memory one
    rng = np.random.default_rng(1)
    b = rng.normal(size=(300, 32)).astype(np.float32)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    x = np.repeat(b, 20, axis=0)
    logits = 2.0 * rng.normal(size=(300, 10))
    p = np.repeat(np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True), 20, axis=0).astype(np.float32)
    f = ShardedFeatures(write_shards(tmp_path / "f", x, shard_rows=1000))
    pf = ShardedFeatures(write_shards(tmp_path / "p", p, shard_rows=1000))
    monkeypatch.setattr(_scale, "STREAM_MIN_BYTES", 0)
    for budget in (300, 350):
        picks = vlal.CEC(random_state=0).select(f, pf, budget)
        assert np.unique(picks).size == budget
        assert np.unique(picks // 20).size == 300  # every image once, copies only past the 300th pick
    picks = vlal.CEC(random_state=0).select(f, pf, 40, labeled=np.arange(0, 6000, 40))  # 150 images labeled
    assert np.unique(picks // 20).size == 40 and not np.isin(picks // 20, np.arange(0, 300, 2)).any()


def test_streamed_cec_never_picks_rescaled_copies(tmp_path, monkeypatch):
    # 300 images, each 20 times, every row scaled by its own factor and stored as float16: the
    # copies are not bitwise equal after normalisation; the streamed path groups them by the
    # copy tolerance (2e-3 for float16 shards), as the in-memory path does
    rng = np.random.default_rng(2)
    b = rng.normal(size=(300, 32)).astype(np.float32)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    x = np.repeat(b, 20, axis=0) * rng.uniform(0.5, 2.0, size=(6000, 1)).astype(np.float32)
    logits = 2.0 * rng.normal(size=(300, 10))
    p = np.repeat(np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True), 20, axis=0).astype(np.float32)
    f = ShardedFeatures(write_shards(tmp_path / "f", x.astype(np.float16), shard_rows=1000))
    pf = ShardedFeatures(write_shards(tmp_path / "p", p, shard_rows=1000))
    z = np.asarray(f, dtype=np.float32)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    assert (z[::20] != z[1::20]).any(axis=1).mean() > 0.5  # most copies differ in some bit
    monkeypatch.setattr(_scale, "STREAM_MIN_BYTES", 0)
    c = vlal.CEC(random_state=0)
    picks = c.select(f, pf, 300)
    assert np.unique(picks // 20).size == 300
    assert c.stream_stats_["copy_groups"] == 6000 - 300 and "groups" in c.stream_stats_["stages_s"]
    picks = vlal.CEC(random_state=0).select(f, pf, 40, labeled=np.arange(0, 6000, 40))  # 150 images labeled
    assert np.unique(picks // 20).size == 40 and not np.isin(picks // 20, np.arange(0, 300, 2)).any()


def test_streamed_cec_small_pools_warn_as_in_memory(tmp_path, monkeypatch):
    """Stop 23 review: streamed CEC skipped the k warning and raised a RuntimeWarning on a one-row pool."""
    import warnings

    monkeypatch.setattr(_scale, "STREAM_MIN_BYTES", 0)
    rng = np.random.default_rng(0)
    for n in (1, 10):
        x = rng.normal(size=(n, 8)).astype(np.float32)
        p = rng.dirichlet(np.ones(3), n).astype(np.float32)
        f = ShardedFeatures(write_shards(tmp_path / f"f{n}", x))
        pf = ShardedFeatures(write_shards(tmp_path / f"p{n}", p))
        with warnings.catch_warnings(record=True) as got:
            warnings.simplefilter("always")
            picks = vlal.CEC(random_state=0).select(f, pf, 1)
        assert picks.shape == (1,) and 0 <= picks[0] < n
        msgs = [str(w.message) for w in got]
        assert not [w for w in got if issubclass(w.category, RuntimeWarning)], msgs
        assert any("k=20 >= number of candidates (10); using k=9" in m for m in msgs) == (n == 10), msgs


def test_streamed_query_step_is_exact_nearest(shards, monkeypatch):
    x, *_ , f, _ = shards
    rng = np.random.default_rng(0)
    cand = np.arange(len(x))
    idx = _scale.CompressedIVF(x, len(x), 0, nlist=20)
    idx.add(x)
    idx.finish()
    centres = x[rng.choice(len(x), 15, replace=False)] + 0.01 * rng.normal(size=(15, x.shape[1])).astype(np.float32)
    read = _scale._reader(f, None, "features")
    got = _scale._nearest_exact(idx, centres, read, cand, len(x), f)
    want = scoring.nearest_to_centers(np.asarray(f, dtype=np.float32) / np.linalg.norm(
        np.asarray(f, dtype=np.float32), axis=1, keepdims=True), centres, knn_index="exact")
    np.testing.assert_array_equal(got, want)


def test_streamed_probs_checked(tmp_path, shards, monkeypatch):
    x, p, _, f, _ = shards
    monkeypatch.setattr(_scale, "STREAM_MIN_BYTES", 0)
    bad = p.copy()
    bad[1234] *= 3
    pf = ShardedFeatures(write_shards(tmp_path / "bad", bad))
    with pytest.raises(VlalInputError, match="sums to"):
        vlal.CEC().select(f, pf, 5)


def test_cli_select_reads_manifests(shards, tmp_path):
    from click.testing import CliRunner

    from vlal.cli import main

    *_, f, pf = shards
    out = tmp_path / "q.npy"
    r = CliRunner().invoke(main, ["select", "--features", str(f.root / "manifest.json"), "--probs", str(pf.root),
                                  "--budget", "12", "--out", str(out)])
    assert r.exit_code == 0, r.output
    q = np.load(out)
    assert q.shape == (12,) and np.unique(q).size == 12
    # the features' own manifest as --probs (a Ray embed writes no probabilities): named, not "negative values"
    r = CliRunner().invoke(main, ["select", "--features", str(f.root), "--probs", str(f.root / "manifest.json"),
                                  "--budget", "12", "--out", str(tmp_path / "q2.npy")])
    assert r.exit_code == 2 and "is the shard manifest of the features" in r.output
    assert not (tmp_path / "q2.npy").exists()
