"""CLIP adapters (vlal.clip): loading offline, encoding, Eq. 1, prompt tuners, cache, CLI.

Everything runs on a tiny open_clip architecture registered here (ViT: 2 layers, width
64, 16-px patches on 32x32 images; text: 2 layers, width 64; embedding 32), with random
weights: fast on CPU, and nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")
PIL_Image = pytest.importorskip("PIL.Image")

from vlal import CEC, VlalInputError, WeightsNotFoundError  # noqa: E402
from vlal.loop import Tuner, run_active_learning  # noqa: E402
from vlal.tuners import cosine_softmax  # noqa: E402

pytestmark = pytest.mark.clip

TINY = "vlal-tiny-test"
TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
NAMES = ["cat", "dog", "sea_lion"]


@pytest.fixture(scope="module")
def tiny_name(tmp_path_factory):
    path = tmp_path_factory.mktemp("open_clip_cfg") / f"{TINY}.json"
    path.write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(path)
    return TINY


@pytest.fixture(scope="module")
def clip(tiny_name):
    from vlal.clip import RandomWeightsWarning, load_clip

    with pytest.warns(RandomWeightsWarning, match="RANDOM weights"):
        model = load_clip(tiny_name, None)
    return model


@pytest.fixture(scope="module")
def task():
    """3 classes x 4 preprocessed 32x32 images, each class around its own random image."""
    g = torch.Generator().manual_seed(0)
    y = np.repeat(np.arange(3), 4)
    base = torch.randn(3, 3, 32, 32, generator=g)
    x = base[torch.from_numpy(y)] + 0.3 * torch.randn(len(y), 3, 32, 32, generator=g)
    return x, y


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """An image folder with class sub-folders (2 PNG images of 40x48 pixels per class)."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for c, name in enumerate(NAMES):
        (root / name).mkdir()
        for i in range(2):
            arr = np.clip(rng.normal(60 + 70 * c, 40, size=(40, 48, 3)), 0, 255).astype(np.uint8)
            PIL_Image.fromarray(arr).save(root / name / f"img{i}.png")
    return root


def make_tuner(kind, clip, **kw):
    from vlal.clip import VPT, CoOp, MaPLe

    if kind == "CoOp":
        return CoOp(clip, NAMES, **kw)
    if kind == "VPT":
        return VPT(clip, NAMES, **kw)
    return MaPLe(clip, NAMES, prompt_depth=2, **kw)


def tuner_inputs(kind, clip, x):
    """CoOp trains on cached features; VPT and MaPLe on images."""
    from vlal.clip import encode_images

    return encode_images(clip, x, progress=False) if kind == "CoOp" else x


TUNERS = ["CoOp", "VPT", "MaPLe"]


# --------------------------------------------------------------------------- import


def test_import_vlal_and_clip_cli_do_not_load_torch():
    code = (
        "import sys, vlal, vlal.clip, vlal.clip.cli; "
        "bad = [m for m in ('torch', 'open_clip') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- loading


def test_missing_weights_fail_fast_with_instructions(tiny_name, tmp_path):
    from vlal.clip import load_clip

    t0 = time.perf_counter()
    with pytest.raises(WeightsNotFoundError) as err:
        load_clip("ViT-B-32", "openai", cache_dir=str(tmp_path))
    assert time.perf_counter() - t0 < 3.0
    assert 'pretrained="/path/to/ViT-B-32.pt"' in str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    with pytest.raises(WeightsNotFoundError, match="no such file"):
        load_clip("ViT-B-32", str(tmp_path / "ViT-B-32.pt"))
    with pytest.raises(VlalInputError, match="neither a file nor an open_clip tag"):
        load_clip("ViT-B-32", "no-such-tag")
    with pytest.raises(VlalInputError, match="unknown open_clip model"):
        load_clip("ViT-Nope-1", None)


def test_load_local_checkpoint_file(clip, tmp_path):
    from vlal.clip import load_clip
    from vlal.clip._loading import _is_torchscript

    ckpt = tmp_path / "tiny.pt"
    torch.save(clip.model.state_dict(), ckpt)
    loaded = load_clip(clip.model_name, str(ckpt))
    assert loaded.pretrained == str(ckpt) and str(ckpt) in loaded.weights_id and not loaded.is_random
    for (k, a), b in zip(clip.model.state_dict().items(), loaded.model.state_dict().values()):
        assert torch.equal(a, b), k
    assert all(not p.requires_grad for p in loaded.model.parameters())
    assert not _is_torchscript(str(ckpt))
    scripted = tmp_path / "scripted.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(torch.nn.Linear(2, 2)).save(str(scripted))
    assert _is_torchscript(str(scripted))


def test_local_dir_weights_id_names_the_file_open_clip_loads(clip, tmp_path, task):
    """Stop 23 review: with a .bin and a .safetensors in a local-dir: folder, vlal identified the weights
    by the .bin while open_clip loaded the .safetensors, so the embed cache could return stale features."""
    from safetensors.torch import save_file

    from vlal.clip import RandomWeightsWarning, encode_images, load_clip
    from vlal.clip._loading import ModelSpecError

    folder = tmp_path / "tinydir"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CFG, "preprocess_cfg": {}}))
    torch.save(clip.model.state_dict(), folder / "open_clip_pytorch_model.bin")  # seed-0 weights
    with pytest.warns(RandomWeightsWarning):
        other = load_clip(clip.model_name, None, seed=1)
    save_file({k: v.contiguous() for k, v in other.model.state_dict().items()},
              str(folder / "open_clip_pytorch_model.safetensors"))  # seed-1 weights: open_clip prefers these
    loaded = load_clip(f"local-dir:{folder}")  # pretrained may be left out here
    assert "open_clip_pytorch_model.safetensors" in loaded.weights_id
    x = task[0][:3]
    np.testing.assert_allclose(encode_images(loaded, x, progress=False), encode_images(other, x, progress=False), atol=1e-5)
    with pytest.raises(ModelSpecError, match="pretrained is required"):
        load_clip(clip.model_name)


def test_random_weights_are_seeded(clip):
    from vlal.clip import RandomWeightsWarning, load_clip

    with pytest.warns(RandomWeightsWarning):
        again = load_clip(clip.model_name, None, seed=0)
    p0 = next(iter(clip.model.parameters()))
    assert torch.equal(p0, next(iter(again.model.parameters())))


# --------------------------------------------------------------------------- encoding


def test_encode_images_all_input_forms(clip, folder):
    from vlal.clip import as_image_source, encode_images

    f_dir = encode_images(clip, folder, batch_size=4, progress=False)
    assert f_dir.shape == (6, clip.embed_dim) and f_dir.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(f_dir, axis=1), 1.0, atol=1e-5)
    src = as_image_source(folder)
    assert src.class_names == NAMES and src.labels.tolist() == [0, 0, 1, 1, 2, 2]
    paths = src.paths()
    np.testing.assert_allclose(encode_images(clip, paths, progress=False), f_dir, atol=1e-6)
    pils = [PIL_Image.open(p) for p in paths]
    np.testing.assert_allclose(encode_images(clip, pils, progress=False), f_dir, atol=1e-6)
    tensor = torch.stack([clip.preprocess(im.convert("RGB")) for im in pils])
    np.testing.assert_allclose(encode_images(clip, tensor, batch_size=5, progress=False), f_dir, atol=1e-6)
    with pytest.raises(VlalInputError, match="feature matrix"):
        encode_images(clip, np.zeros((4, 32), dtype=np.float32), progress=False)


def test_encode_class_names(clip):
    from vlal.clip import encode_class_names

    t = encode_class_names(clip, NAMES)
    assert t.shape == (3, clip.embed_dim) and t.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-5)
    with torch.no_grad():
        prompts = ["a photo of a cat.", "a photo of a dog.", "a photo of a sea lion."]
        direct = clip.model.encode_text(clip.tokenizer(prompts))
    np.testing.assert_allclose(t, torch.nn.functional.normalize(direct, dim=-1).numpy(), atol=1e-5)
    two = encode_class_names(clip, NAMES, ["a photo of a {}.", "a sketch of a {}."])
    np.testing.assert_allclose(np.linalg.norm(two, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(two, t)
    with pytest.raises(VlalInputError):
        encode_class_names(clip, NAMES, "no placeholder")


def test_zero_shot_proba_equals_direct_torch(clip, task):
    from vlal.clip import encode_class_names, encode_images, zero_shot_proba

    x, _ = task
    f = encode_images(clip, x, progress=False)
    t = encode_class_names(clip, NAMES)
    p = zero_shot_proba(f, t)
    with torch.no_grad():
        fi = torch.nn.functional.normalize(clip.model.encode_image(x), dim=-1)
        ids = clip.tokenizer([f"a photo of a {n.replace('_', ' ')}." for n in NAMES])
        ft = torch.nn.functional.normalize(clip.model.encode_text(ids), dim=-1)
        direct = torch.softmax(fi @ ft.T / 0.01, dim=-1).numpy()
    assert p.shape == (12, 3) and p.dtype == np.float32
    np.testing.assert_allclose(p, direct, atol=2e-4)
    np.testing.assert_allclose(p, cosine_softmax(f, t, 0.01), atol=1e-5)
    np.testing.assert_allclose(zero_shot_proba(f, t, temperature=1.0).sum(axis=1), 1.0, atol=1e-6)
    with pytest.raises(VlalInputError):
        zero_shot_proba(f, t[:, :5])


def test_prompted_forwards_without_prompts_match_open_clip(clip, task):
    from vlal.clip._towers import encode_image_prompted, encode_text_prompted, text_tower

    x, _ = task
    with torch.no_grad():
        torch.testing.assert_close(encode_image_prompted(clip.model.visual, x), clip.model.visual(x))
        ids = clip.tokenizer(["a photo of a cat.", "a much longer prompt about a sea lion on a rock."])
        tower = text_tower(clip.model)
        mine = encode_text_prompted(tower, tower.token_embedding(ids), ids)
        torch.testing.assert_close(mine, clip.model.encode_text(ids), atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------- tuners


def test_coop_before_fit_is_zero_shot(clip, task):
    from vlal.clip import encode_class_names, encode_images, zero_shot_proba

    x, y = task
    coop = make_tuner("CoOp", clip)
    assert coop.n_ctx == 4 and coop.prompts.ctx.shape == (4, 64)
    f = encode_images(clip, x, progress=False)
    np.testing.assert_allclose(coop.predict_proba(f), zero_shot_proba(f, encode_class_names(clip, NAMES)), atol=1e-4)
    np.testing.assert_allclose(coop.predict_proba(x), coop.predict_proba(f), atol=1e-5)  # images accepted too
    assert isinstance(coop, Tuner)


@pytest.mark.parametrize("kind", ["VPT", "MaPLe"])
def test_image_tuners_before_fit_are_zero_shot_and_need_images(kind, clip, task):
    from vlal.clip import encode_class_names, encode_images, zero_shot_proba

    x, _ = task
    tuner = make_tuner(kind, clip)
    f = encode_images(clip, x, progress=False)
    np.testing.assert_allclose(tuner.predict_proba(x), zero_shot_proba(f, encode_class_names(clip, NAMES)), atol=1e-4)
    with pytest.raises(VlalInputError, match="feature matrix"):
        tuner.predict_proba(f)


@pytest.mark.parametrize("kind", TUNERS)
def test_only_prompt_parameters_get_gradients(kind, clip, task):
    x, y = task
    tuner = make_tuner(kind, clip)
    assert all(not p.requires_grad for p in clip.model.parameters())
    clip_ids = {id(p) for p in clip.model.parameters()}
    assert tuner.prompt_parameters() and not any(id(p) in clip_ids for p in tuner.prompt_parameters())
    loss = tuner.training_loss(tuner_inputs(kind, clip, x), y)
    loss.backward()
    assert all(p.grad is None for p in clip.model.parameters())
    for p in tuner.prompt_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", TUNERS)
def test_training_loss_falls(kind, clip, task):
    x, y = task
    inputs = tuner_inputs(kind, clip, x)
    kw = {} if kind == "CoOp" else {"augment": False}
    tuner = make_tuner(kind, clip, epochs=20, batch_size=12, warmup_epochs=0, **kw)
    before = tuner.training_loss(inputs, y).item()
    tuner.fit(inputs, y)
    after = tuner.training_loss(inputs, y).item()
    assert len(tuner.loss_history_) == 20 and tuner.tuned
    assert after < 0.8 * before, (before, after, tuner.loss_history_)
    assert tuner.loss_history_[-1] < tuner.loss_history_[0]


@pytest.mark.parametrize("kind", TUNERS)
def test_fit_restarts_from_initial_prompts_and_save_load_round_trip(kind, clip, task, tmp_path):
    x, y = task
    inputs = tuner_inputs(kind, clip, x)
    tuner = make_tuner(kind, clip, epochs=2, batch_size=4)
    zero_shot = tuner.predict_proba(inputs)
    tuner.fit(inputs[:6], y[:6])
    p1 = tuner.predict_proba(inputs)
    assert p1.shape == (12, 3) and p1.dtype == np.float32
    np.testing.assert_allclose(p1.sum(axis=1), 1.0, atol=1e-5)
    assert not np.allclose(p1, zero_shot, atol=1e-6)
    tuner.fit(inputs[:6], y[:6])  # restarts: the same prompts again
    np.testing.assert_allclose(tuner.predict_proba(inputs), p1, atol=1e-6)
    path = tmp_path / f"{kind}.pt"
    tuner.save_prompts(path)
    fresh = make_tuner(kind, clip, epochs=2, batch_size=4)
    fresh.load_prompts(path)
    np.testing.assert_array_equal(fresh.predict_proba(inputs), p1)
    tuner.fit(inputs[:0], y[:0])  # no labels: back to zero-shot
    np.testing.assert_allclose(tuner.predict_proba(inputs), zero_shot, atol=1e-6)
    other = make_tuner("CoOp" if kind != "CoOp" else "VPT", clip)
    with pytest.raises(VlalInputError, match="prompts; this tuner is"):
        other.load_prompts(path)


@pytest.mark.filterwarnings("ignore::vlal.clip.RandomWeightsWarning")
def test_load_prompts_refuses_what_does_not_belong_and_names_it(clip, task, tmp_path):
    """Stop 23 review: prompts of other weights loaded with a warning only; template and temperature were not
    checked; unreadable files raised KeyError / RuntimeError / torch's hint to load unsafely."""
    import pickle

    from vlal.clip import load_clip

    x, y = task
    f = tuner_inputs("CoOp", clip, x)
    tuner = make_tuner("CoOp", clip, epochs=1, batch_size=4).fit(f[:6], y[:6])
    good = tmp_path / "p.pt"
    tuner.save_prompts(good)
    before = make_tuner("CoOp", clip, epochs=1)
    p0 = before.predict_proba(f)
    other_clip = load_clip(clip.model_name, None, seed=1)  # same architecture, other weights
    with pytest.raises(VlalInputError, match="other_weights=True"):
        make_tuner("CoOp", other_clip, epochs=1).load_prompts(good)
    with pytest.warns(UserWarning, match="was tuned on"):
        make_tuner("CoOp", other_clip, epochs=1).load_prompts(good, other_weights=True)
    with pytest.raises(VlalInputError, match="template"):
        make_tuner("CoOp", clip, epochs=1, template="itap of a {}.").load_prompts(good)
    with pytest.raises(VlalInputError, match="temperature"):
        make_tuner("CoOp", clip, epochs=1, temperature=1.0).load_prompts(good)
    blob = torch.load(good, weights_only=True)
    bad_files = {"text.pt": b"hello", "evil.pt": pickle.dumps(print)}
    for name, data in bad_files.items():
        (tmp_path / name).write_bytes(data)
    torch.save({"format": "vlal-prompts"}, tmp_path / "nokeys.pt")
    torch.save({**blob, "state": {k: torch.full_like(v, float("nan")) for k, v in blob["state"].items()}}, tmp_path / "nan.pt")
    torch.save({**blob, "state": {**blob["state"], "extra": torch.zeros(2)}}, tmp_path / "extra.pt")
    for name, msg in (("text.pt", "not a vlal prompt file"), ("evil.pt", "not a vlal prompt file"),
                      ("nokeys.pt", "missing"), ("nan.pt", "NaN"), ("extra.pt", "do not fit")):
        with pytest.raises(VlalInputError, match=msg) as err:
            before.load_prompts(tmp_path / name)
        assert "weights_only=False" not in str(err.value)
        np.testing.assert_array_equal(before.predict_proba(f), p0)  # nothing loaded
    before.load_prompts(good)
    np.testing.assert_array_equal(before.predict_proba(f), tuner.predict_proba(f))


def test_image_and_template_inputs_that_cannot_be_right_are_refused(clip, task):
    """Stop 23 review: raw uint8 pixels, NaN images, other image sizes, templates with two fields or none, zero
    feature rows were accepted (meaningless features) or failed deep inside torch."""
    from vlal.clip import encode_images
    from vlal.clip._encode import prompt_texts

    x, y = task
    for bad, msg in ((torch.randint(0, 255, (2, 3, 32, 32), dtype=torch.uint8), "preprocessed float"),
                     (torch.full((1, 3, 32, 32), float("nan")), "NaN"),
                     (torch.rand(2, 3, 64, 64), r"\(32, 32\) pixels")):
        with pytest.raises(VlalInputError, match=msg):
            encode_images(clip, bad, progress=False)
    for template in ("a {} and {}", "a {x} {}", "a photo of {{}}", "a photo", "a {0!r}", "a {"):
        with pytest.raises(VlalInputError, match="exactly one"):
            prompt_texts(["cat", "dog"], template)
    assert prompt_texts(["cat"], "a {{literal}} {}") == ["a {literal} cat"]
    with pytest.warns(UserWarning, match="class names repeat"):
        prompt_texts(["cat", "dog", "dog"])
    with pytest.raises(VlalInputError, match="zero norm"):
        make_tuner("CoOp", clip, epochs=1).fit(np.zeros((3, 32), np.float32), y[:3])


def test_tuner_input_errors(clip, task):
    from vlal.clip import CoOp, MaPLe

    x, y = task
    coop = make_tuner("CoOp", clip, epochs=1)
    f = tuner_inputs("CoOp", clip, x)
    with pytest.raises(VlalInputError, match="class ids"):
        coop.fit(f, y + 5)
    with pytest.raises(VlalInputError, match="labels"):
        coop.fit(f, y[:3])
    with pytest.raises(VlalInputError, match="d="):
        coop.predict_proba(f[:, :8])
    with pytest.raises(VlalInputError, match="prompt_depth"):
        MaPLe(clip, NAMES)  # J = 9 > 2 layers of the tiny model
    with pytest.raises(VlalInputError, match="tokens"):
        CoOp(clip, NAMES, n_ctx=6)


@pytest.mark.parametrize("kind", TUNERS)
def test_tuner_runs_inside_the_active_learning_loop(kind, clip, task, folder):
    from vlal.clip import as_image_source, encode_images

    x, y = task
    feats = encode_images(clip, x, progress=False)
    tuner = make_tuner(kind, clip, epochs=2, batch_size=4)
    if kind == "CoOp":
        pool_inputs, test_inputs, test_y = None, feats, y
    elif kind == "VPT":
        pool_inputs, test_inputs, test_y = x, x, y
    else:  # MaPLe straight from image files
        src = as_image_source(folder)
        pool_inputs, test_inputs, test_y = src.paths(), src.paths(), src.labels
        feats = encode_images(clip, src, progress=False)
        y = src.labels
    result = run_active_learning(
        CEC(k=3, random_state=0), tuner, feats, y, test_inputs, test_y, n_rounds=2, budget=2, pool_inputs=pool_inputs
    )
    assert [r.n_labeled for r in result.rounds] == [0, 2, 4]
    assert all(0.0 <= r.accuracy <= 100.0 for r in result.rounds)  # percent
    assert tuner.tuned and len(np.unique(result.labeled)) == 4


# --------------------------------------------------------------------------- embed / cache / CLI


def test_embed_writes_benchmark_keys_and_reuses_cache(clip, folder, tmp_path, monkeypatch):
    import vlal.clip._encode as enc
    from vlal.clip import embed
    from vlal.data import load_features

    calls = []
    real = enc.encode_images
    monkeypatch.setattr(enc, "encode_images", lambda *a, **k: calls.append(1) or real(*a, **k))
    out = tmp_path / "emb.npz"
    res = embed(clip, folder, out, test_images=folder, progress=False)
    assert len(calls) == 2
    with np.load(out, allow_pickle=False) as z:
        for key in ("pool_features", "pool_labels", "test_features", "test_labels", "class_names", "text_features",
                    "model_name", "pretrained", "image_size", "image_mean", "image_std"):
            assert key in z.files, key
        assert z["class_names"].tolist() == NAMES and str(z["model_name"]) == TINY
        assert z["image_size"].tolist() == [32, 32]
        np.testing.assert_allclose(z["image_mean"], clip.preprocess_cfg["mean"])
    ds = load_features(out)
    assert ds.pool_features.shape == (6, 32) and ds.class_embeddings.shape == (3, 32)

    embed(clip, folder, out, test_images=folder, progress=False)
    assert len(calls) == 2  # everything reused
    embed(clip, folder, out, test_images=folder, class_names=["a", "b", "c"], progress=False)
    assert len(calls) == 2  # new class names: only the text features change
    other_pp = dataclasses.replace(clip, preprocess_cfg={**clip.preprocess_cfg, "mean": (0.5, 0.5, 0.5)})
    embed(other_pp, folder, out, test_images=folder, progress=False)
    assert len(calls) == 4  # other preprocessing: re-encoded
    embed(clip, folder, out, test_images=folder, progress=False)
    assert len(calls) == 6
    embed(clip, folder, out, test_images=folder, progress=False, reuse_cache=False)
    assert len(calls) == 8
    img = folder / NAMES[0] / "img0.png"
    arr = np.asarray(PIL_Image.open(img)).copy()
    arr[15:25, 18:30] = 255 - arr[15:25, 18:30]
    PIL_Image.fromarray(arr).save(img)
    os.utime(img, ns=(time.time_ns(), time.time_ns() + 10**9))
    res2 = embed(clip, folder, out, progress=False)
    assert len(calls) == 9  # changed image: pool re-encoded
    assert not np.array_equal(res2["pool_features"][0], res["pool_features"][0])
    np.testing.assert_array_equal(res2["pool_features"][2:], res["pool_features"][2:])


def test_embed_class_names_must_match_the_sub_folders(clip, folder, tmp_path):
    # labels are the sorted sub-folders: names in another order, or another count, would mislabel silently
    from vlal.clip import embed

    for names, msg in ((["dog", "cat", "sea_lion"], "in another order"), (["cat", "dog"], "2 names but the pool has 3"),
                       (["a", "b", "c", "d"], "4 names but the pool has 3")):
        with pytest.raises(VlalInputError, match=msg):
            embed(clip, folder, tmp_path / "e.npz", class_names=names, progress=False)
        assert not (tmp_path / "e.npz").exists()
    res = embed(clip, folder, None, class_names=["Cat", "Dog", "Sea lion"], progress=False)  # readable names: fine
    assert res["class_names"].tolist() == ["Cat", "Dog", "Sea lion"]


def test_cli_embed(clip, folder, tmp_path):
    from click.testing import CliRunner

    from vlal.clip.cli import embed

    out = tmp_path / "cli.npz"
    runner = CliRunner()
    res = runner.invoke(embed, [str(folder), str(out), "--model", TINY, "--pretrained", "none",
                                "--test-images", str(folder), "--batch-size", "4"])
    assert res.exit_code == 0, res.output
    assert "RANDOM weights" in res.output and "pool: 6 images, d=32, 3 classes" in res.output
    with np.load(out) as z:
        assert z["pool_features"].shape == (6, 32) and z["test_labels"].tolist() == [0, 0, 1, 1, 2, 2]
    missing = str(tmp_path / "ViT-B-32.pt")
    res = runner.invoke(embed, [str(folder), str(out), "--model", "ViT-B-32", "--pretrained", missing])
    assert res.exit_code != 0 and "--pretrained /path/to/ViT-B-32.pt" in res.output  # the CLI's flags
    assert "load_clip(" not in res.output and "allow_download=True" not in res.output


def test_cli_embed_then_select(clip, folder, tmp_path):
    """`vlal embed` writes the pool's zero-shot probs, so `vlal select` runs on its file alone."""
    from click.testing import CliRunner

    from vlal import zero_shot_probs
    from vlal.cli import main

    out = tmp_path / "pool.npz"
    runner = CliRunner()
    res = runner.invoke(main, ["embed", str(folder), str(out), "--model", TINY, "--pretrained", "none"])
    assert res.exit_code == 0, res.output
    with np.load(out) as z:
        np.testing.assert_allclose(z["probs"], zero_shot_probs(z["pool_features"], z["text_features"], 0.01),
                                   atol=1e-5)
    picks = tmp_path / "q.txt"
    res = runner.invoke(main, ["select", "--features", str(out), "--probs", str(out), "--budget", "2",
                               "--strategy", "entropy", "--out", str(picks)])
    assert res.exit_code == 0, res.output
    assert len(set(picks.read_text().split())) == 2


def test_cli_embed_names_an_unreadable_image(folder, tmp_path, tiny_name):  # tiny_name registers TINY
    import shutil

    from click.testing import CliRunner

    from vlal.cli import main

    imgs = tmp_path / "imgs"
    shutil.copytree(folder, imgs)
    bad = imgs / NAMES[1] / "bad.jpg"
    bad.write_text("not an image")
    out = tmp_path / "e.npz"
    res = CliRunner().invoke(main, ["embed", str(imgs), str(out), "--model", TINY, "--pretrained", "none"])
    assert res.exit_code == 1 and "cannot read image" in res.output and "bad.jpg" in res.output  # what it read
    assert res.exception is None or isinstance(res.exception, SystemExit)  # a clean error, no traceback
    assert not out.exists()
    res = CliRunner().invoke(main, ["embed", str(folder), str(tmp_path / "e.txt"), "--model", TINY, "--pretrained", "none"])
    assert res.exit_code == 2 and "OUT.npz" in res.output and not (tmp_path / "e.txt").exists()
    # a model name that names nothing is wrong on its face (2); a checkpoint it cannot use is what it read (1)
    res = CliRunner().invoke(main, ["embed", str(folder), str(out), "--model", "no-such-model", "--pretrained", "none"])
    assert res.exit_code == 2 and "unknown open_clip model" in res.output
    (tmp_path / "w.pt").write_text("not a checkpoint")
    res = CliRunner().invoke(main, ["embed", str(folder), str(out), "--model", TINY, "--pretrained", str(tmp_path / "w.pt")])
    assert res.exit_code == 1 and "w.pt" in res.output and "Usage:" not in res.output and not out.exists()


@pytest.mark.filterwarnings("ignore:k=20 >= number of candidates")
def test_harness_runs_coop_on_an_embed_file(clip, folder, tmp_path):
    """`vlal.bench.run_benchmark` takes CoOp through ``tuner_factory`` on an `embed` file."""
    from vlal.bench import run_benchmark
    from vlal.clip import CoOp, embed
    from vlal.data import load_features

    embed(clip, folder, tmp_path / "e.npz", test_images=folder, progress=False)
    ds = load_features(tmp_path / "e.npz")
    records = run_benchmark(ds, ["cec"], n_rounds=1, seeds=(0,), budget_fraction=0.5, progress=False,
                            tuner_factory=lambda w0: CoOp(clip, NAMES, epochs=2))
    assert [r["n_labeled"] for r in records] == [0, 3]


def _fake_hf_cache(root, repo_id, files: dict) -> None:
    """Lay files out as huggingface_hub's cache does (refs/main -> snapshots/<rev>/)."""
    repo = root / ("models--" + repo_id.replace("/", "--"))
    rev = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(rev)
    snap = repo / "snapshots" / rev
    snap.mkdir(parents=True)
    for name, write in files.items():
        write(snap / name)


def test_tags_resolve_from_local_caches_only(clip, tmp_path, monkeypatch):
    from open_clip import pretrained as oc_pretrained

    from vlal.clip import load_clip

    monkeypatch.setitem(oc_pretrained._PRETRAINED, TINY, {
        "hubtag": {"hf_hub": "vlal-test/tiny/", "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)},
        "urltag": {"url": "https://example.invalid/tiny-weights.pt"},
    })
    state = clip.model.state_dict()
    with pytest.raises(WeightsNotFoundError, match="vlal-test/tiny"):
        load_clip(TINY, "hubtag", cache_dir=str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match="tiny-weights.pt"):
        load_clip(TINY, "urltag", cache_dir=str(tmp_path))

    _fake_hf_cache(tmp_path, "vlal-test/tiny", {
        "open_clip_pytorch_model.bin": lambda p: torch.save(state, p),
        "open_clip_config.json": lambda p: p.write_text(json.dumps({"model_cfg": TINY_CFG})),
    })
    from_hub = load_clip(TINY, "hubtag", cache_dir=str(tmp_path))
    assert from_hub.pretrained == "hubtag" and from_hub.weights_id == "hubtag"
    assert tuple(from_hub.preprocess_cfg["mean"]) == (0.5, 0.5, 0.5)  # the tag's preprocessing
    torch.save(state, tmp_path / "tiny-weights.pt")
    from_url = load_clip(TINY, "urltag", cache_dir=str(tmp_path))
    for m in (from_hub, from_url):
        assert all(torch.equal(a, b) for a, b in zip(state.values(), m.model.state_dict().values()))
    hub = load_clip("hf-hub:vlal-test/tiny", None, cache_dir=str(tmp_path))
    assert hub.model_name == "hf-hub:vlal-test/tiny" and not hub.is_random
    assert all(torch.equal(a, b) for a, b in zip(state.values(), hub.model.state_dict().values()))
    with pytest.raises(WeightsNotFoundError):
        load_clip("hf-hub:vlal-test/absent", None, cache_dir=str(tmp_path))


@pytest.mark.filterwarnings("ignore:k=20 >= number of candidates")
@pytest.mark.filterwarnings("ignore::vlal.clip.RandomWeightsWarning")
@pytest.mark.parametrize("kind", ["coop", "vpt"])
def test_bench_cli_with_clip_tuner(kind, clip, folder, tmp_path):
    """`vlal bench --tuner coop|vpt` runs the loop with a CLIP prompt tuner on an `embed` file
    (VPT consumes the stored image paths)."""
    import json

    from click.testing import CliRunner

    from vlal.cli import main
    from vlal.clip import embed

    embed(clip, folder, tmp_path / "e.npz", test_images=folder, progress=False)
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["bench", "--data", str(tmp_path / "e.npz"), "--strategies", "random,cec",
                                    "--rounds", "1", "--seeds", "1", "--budget-fraction", "0.5", "--tuner", kind,
                                    "--clip-model", TINY, "--pretrained", "none", "--epochs", "1", "--quiet",
                                    "--out", str(out)])
    assert res.exit_code == 0, res.output
    recs = json.loads((out / "bench.json").read_text())["records"]
    assert sorted({r["n_labeled"] for r in recs}) == [0, 3]


@pytest.mark.filterwarnings("ignore::vlal.clip.RandomWeightsWarning")
def test_bench_clip_tuner_refuses_other_weights_than_the_embedding(clip, folder, tmp_path):
    """Stop 23 review: `vlal bench --tuner coop` compared model names only, so the text tower of other weights
    met the image features silently."""
    from click.testing import CliRunner

    from vlal.cli import main
    from vlal.clip import embed

    embed(clip, folder, tmp_path / "e.npz", test_images=folder, progress=False)  # random weights, seed 0
    ckpt = tmp_path / "other.pt"
    torch.save({k: v + 0.01 for k, v in clip.model.state_dict().items()}, ckpt)
    common = ["bench", "--data", str(tmp_path / "e.npz"), "--strategies", "random", "--rounds", "1", "--seeds", "1",
              "--budget-fraction", "0.5", "--tuner", "coop", "--clip-model", TINY, "--epochs", "1", "--quiet"]
    res = CliRunner().invoke(main, common + ["--pretrained", str(ckpt), "--out", str(tmp_path / "o1")])
    assert res.exit_code == 1 and "loads other weights" in res.output and not (tmp_path / "o1").exists()
    res = CliRunner().invoke(main, common + ["--pretrained", "none", "--out", str(tmp_path / "o2")])  # the same ones
    assert res.exit_code == 0, res.output
