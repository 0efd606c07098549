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


def test_ray_matches_single_process_and_survives_a_killed_actor(setup):
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
    assert got.paths == [str(p) for p in folder.paths]
    m = json.loads(manifest.read_text())
    assert m["model"] == TINY and m["weights"].startswith("random") and m["preprocessing"]["image_size"] == [32, 32]
    np.testing.assert_array_equal(np.load(root / "out" / "labels.npy"), folder.labels)

    # an actor dies (os._exit) while encoding the batch holding row 150: Ray restarts it and re-runs the batch
    crash = root / "crash"
    crash.write_text("150")
    manifest2 = embed_ray(images, root / "out2", model_name=TINY, pretrained=None, batch_size=16, num_actors=2,
                          shard_rows=100, model_config=cfg, _crash_file=str(crash))
    assert not crash.exists()  # the hook fired: an actor really died
    again = ShardedFeatures(manifest2).read(slice(None), np.float32)
    np.testing.assert_array_equal(again, got.read(slice(None), np.float32))  # complete, same order
