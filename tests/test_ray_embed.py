"""Distributed embedding on Ray (vlal.clip.embed_ray): same rows as the single-process path, and
complete output when an actor dies mid-job. A local Ray cluster (2 CPUs), a tiny random-weight
open_clip model and a few hundred generated images."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]'): the Ray embedding is not tested")
pytest.importorskip("ray.data", reason="ray[data] is not installed")
torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")
PIL_Image = pytest.importorskip("PIL.Image")

pytestmark = [pytest.mark.clip, pytest.mark.slow]

TINY = "vlal-tiny-ray"
TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
N_IMAGES = 240


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray")
    cfg = root / f"{TINY}.json"
    cfg.write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(cfg)
    images = root / "images"
    rng = np.random.default_rng(0)
    for c in range(3):
        (images / f"class{c}").mkdir(parents=True)
        for i in range(N_IMAGES // 3):
            arr = np.clip(rng.normal(60 + 60 * c, 50, size=(36, 40, 3)), 0, 255).astype(np.uint8)
            PIL_Image.fromarray(arr).save(images / f"class{c}" / f"img{i:03d}.png")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield root, images, str(cfg)
    ray.shutdown()


def _single_process(images):
    from vlal.clip import encode_images, load_clip, scan_image_folder

    with pytest.warns(UserWarning):
        clip = load_clip(TINY, None)
    folder = scan_image_folder(images)
    return encode_images(clip, [str(p) for p in folder.paths], progress=False), folder


def test_ray_matches_single_process_and_survives_a_killed_actor(setup, monkeypatch):
    from vlal.clip import embed_ray
    from vlal.shards import ShardedFeatures

    root, images, cfg = setup
    want, folder = _single_process(images)

    manifest = embed_ray(images, root / "out", model_name=TINY, pretrained=None, batch_size=16, num_actors=2,
                         shard_rows=100, model_config=cfg)
    got = ShardedFeatures(manifest)
    assert got.shape == want.shape and len(got.offsets) == 4  # 240 rows in shards of 100
    np.testing.assert_allclose(got.read(slice(None), np.float32), want.astype(np.float16).astype(np.float32),
                               atol=1e-5)  # same rows, same order (float16 storage)
    assert np.abs(got.read(slice(None), np.float32) - want).max() < 2e-3  # float16 rounding only
    assert got.paths == [str(p.resolve()) for p in folder.paths]  # absolute: readable from any folder
    m = json.loads(manifest.read_text())
    assert m["model"] == TINY and m["weights"].startswith("random") and m["preprocessing"]["image_size"] == [32, 32]
    np.testing.assert_array_equal(np.load(root / "out" / "labels.npy"), folder.labels)

    # an actor dies (os._exit) while encoding the batch holding row 150: Ray restarts it and re-runs the batch
    crash = root / "crash"
    crash.write_text("150")
    import vlal.clip._ray as ray_module

    monkeypatch.setattr(ray_module, "_CRASH_FILE", str(crash))
    manifest2 = embed_ray(images, root / "out2", model_name=TINY, pretrained=None, batch_size=16, num_actors=2,
                          shard_rows=100, model_config=cfg)
    assert not crash.exists()  # the hook fired: an actor really died
    again = ShardedFeatures(manifest2).read(slice(None), np.float32)
    np.testing.assert_array_equal(again, got.read(slice(None), np.float32))  # complete, same order


def test_ray_errors_are_one_line_and_a_rewrite_leaves_no_stale_labels(setup):
    """Stop 23 review: an unreadable image surfaced as Ray's 80-line wrapper; a GPU request on a cluster
    without GPUs waited forever; re-embedding a flat folder kept the earlier run's labels.npy."""
    from vlal import VlalInputError
    from vlal.clip import embed_ray
    from vlal.shards import ShardedFeatures

    root, images, cfg = setup
    flat = root / "flat"
    flat.mkdir()
    for p in sorted((images / "class0").iterdir())[:20]:
        (flat / p.name).write_bytes(p.read_bytes())
    out = root / "re"
    embed_ray(images, out, model_name=TINY, pretrained=None, batch_size=16, num_actors=2, model_config=cfg)
    assert (out / "labels.npy").exists() and (out / "class_names.txt").exists()
    embed_ray(flat, out, model_name=TINY, pretrained=None, batch_size=16, num_actors=2, model_config=cfg)
    assert ShardedFeatures(out).shape[0] == 20
    assert not (out / "labels.npy").exists() and not (out / "class_names.txt").exists()
    with pytest.raises(VlalInputError, match="no GPU"):
        embed_ray(flat, root / "gpu", model_name=TINY, pretrained=None, use_gpu=True, model_config=cfg)
    (flat / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(VlalInputError, match="broken.png") as err:
        embed_ray(flat, root / "bad", model_name=TINY, pretrained=None, batch_size=4, num_actors=2, model_config=cfg)
    assert len(str(err.value).splitlines()) == 1 and "UDF" not in str(err.value)
    # workers that cannot build the model (here: its config registered in this process, not passed to
    # them) fail before the actor pool starts, naming the node, instead of a pool waiting on actors
    with pytest.raises(VlalInputError, match="a Ray node cannot build the encoder .*unknown open_clip model"):
        embed_ray(flat, root / "noconfig", model_name=TINY, pretrained=None, batch_size=4, num_actors=1)
    assert not (root / "noconfig").exists()  # nothing written
    # the CLI takes an existing folder as OUT (a re-run after a kill) and refuses a file, before Ray starts
    from click.testing import CliRunner

    from vlal.cli import main

    (root / "afile").write_text("x")
    res = CliRunner().invoke(main, ["embed", str(flat), str(root / "afile"), "--engine", "ray", "--model", TINY,
                                    "--pretrained", "none"])
    assert res.exit_code == 2 and "writes a folder" in res.output


def test_node_weights_ids_compare_path_and_size_not_mtime():
    """A node's copy of the weights may have another modification time, not another size or path."""
    from vlal.clip._ray import _same_file

    assert _same_file("/w/b32.pt|1000|111", "/w/b32.pt|1000|222")
    assert _same_file("/w/b32.pt|1000|111|quick_gelu", "/w/b32.pt|1000|5|quick_gelu")
    assert not _same_file("/w/b32.pt|1000|111", "/w/b32.pt|999|111")  # another file under that path
    assert not _same_file("/w/b32.pt|1000|111", "/v/b32.pt|1000|111")
    assert not _same_file("/w/b32.pt|1000|111|quick_gelu", "/w/b32.pt|1000|111")
    assert _same_file("random:seed=0", "random:seed=0") and not _same_file("random:seed=0", "random:seed=1")
    assert _same_file("openai", "openai") and not _same_file("openai", "laion2b_s34b_b79k")
