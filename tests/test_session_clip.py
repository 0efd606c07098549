"""`vlal session init --images`: embedding a flat image folder with (random-weight) CLIP."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

os.environ.setdefault("HF_HUB_OFFLINE", "1")
open_clip = pytest.importorskip("open_clip")
Image = pytest.importorskip("PIL.Image")

from vlal.cli import main  # noqa: E402

pytestmark = pytest.mark.clip
TINY_CFG = {  # a tiny architecture with random weights: fast on CPU, nothing downloaded
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def test_init_from_image_folder_with_random_weights(tmp_path):
    cfg = tmp_path / "vlal-tiny-session.json"
    cfg.write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(cfg)
    imgs = tmp_path / "photos"
    imgs.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(imgs / f"{i:02d}.png")
    (tmp_path / "classes.txt").write_text("cat\ndog\nsea lion\n")
    r = CliRunner()
    s = tmp_path / "sess"
    res = r.invoke(main, ["session", "init", str(s), "--images", str(imgs), "--classes", str(tmp_path / "classes.txt"),
                          "--pretrained", "none", "--model", "vlal-tiny-session"])
    assert res.exit_code == 0, res.output
    assert "RANDOM weights" in res.output and "8 images, 3 classes" in res.output
    assert (tmp_path / "sess.embed.npz").is_file()
    with np.load(s / "pool.npz") as z:
        assert z["pool_features"].shape == (8, 32) and z["text_features"].shape == (3, 32)
        assert sorted(os.path.basename(p) for p in z["pool_paths"]) == [f"{i:02d}.png" for i in range(8)]
    res = r.invoke(main, ["session", "next", str(s), "--budget", "3"])
    assert res.exit_code == 0, res.output
    tasks = json.loads((s / "batches" / "round-001.labelstudio.json").read_text())
    assert len(tasks) == 3 and all(t["data"]["image"].startswith("/data/local-files/?d=photos/") for t in tasks)
    # --images needs --pretrained
    res = r.invoke(main, ["session", "init", str(tmp_path / "x"), "--images", str(imgs)])
    assert res.exit_code != 0 and "--pretrained" in res.output
