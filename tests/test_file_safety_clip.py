"""No input file runs code: crafted checkpoints (item 0 of issue 8), through load_clip and the CLI."""

from __future__ import annotations

import json
import os
import warnings
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")
pytest.importorskip("PIL.Image")

from vlal import VlalInputError  # noqa: E402
from vlal.cli import main  # noqa: E402

pytestmark = pytest.mark.clip

TINY = "vlal-tiny-safety"
TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / f"{TINY}.json"
    path.write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(path)
    return TINY


class _Payload:
    """Unpickling this object creates ``marker`` (builtins.open in write mode)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _evil_checkpoint(path, marker, extra_entries=()):
    torch.save({"state_dict": {"w": torch.ones(2)}, "payload": _Payload(marker)}, path)
    with zipfile.ZipFile(path, "a") as z:
        root = z.namelist()[0].split("/")[0]  # torch.save's archive folder (the file's stem)
        for name in extra_entries:
            z.writestr(name.format(root=root), b"\x80\x02}q\x00.")
    return path


def _evil_torchscript_lookalike(path, marker):
    """The real TorchScript layout (root/data.pkl, root/constants.pkl, root/code/*.py) with a
    data.pkl that, unpickled by Python, would run the payload."""
    import pickle

    with zipfile.ZipFile(path, "w") as z:
        z.writestr("arch/data.pkl", pickle.dumps(_Payload(marker), protocol=2))
        z.writestr("arch/constants.pkl", pickle.dumps((), protocol=2))
        z.writestr("arch/code/__torch__/m.py", "class M(Module):\n  pass\n")
        z.writestr("arch/version", "3\n")
    return path


@pytest.mark.parametrize("extra", [("{root}/xconstants.pkl",), ("{root}/code/evil.py",), ("{root}/constants.pkl",),
                                   ("{root}/xconstants.pkl", "{root}/code/evil.py"), ("x/xconstants.pkl",)])
def test_crafted_checkpoint_never_runs_code_in_load_clip(tiny, tmp_path, extra):
    from vlal.clip import load_clip
    from vlal.clip._loading import _is_torchscript

    marker = tmp_path / "PWNED"
    ckpt = _evil_checkpoint(tmp_path / "evil.pt", marker, extra)
    assert not _is_torchscript(str(ckpt))  # names alone do not make a TorchScript archive
    with pytest.raises(VlalInputError, match="(refused to|cannot) load checkpoint"):
        load_clip(tiny, str(ckpt))
    assert not marker.exists()


def test_torchscript_lookalike_goes_to_jit_loader_and_runs_nothing(tiny, tmp_path):
    from vlal.clip import load_clip
    from vlal.clip._loading import _is_torchscript

    marker = tmp_path / "PWNED"
    ckpt = _evil_torchscript_lookalike(tmp_path / "evil_ts.pt", marker)
    assert _is_torchscript(str(ckpt))
    with pytest.raises(VlalInputError, match="refused to load checkpoint"):
        load_clip(tiny, str(ckpt))
    assert not marker.exists()


def test_torchscript_archive_with_setstate_is_refused_before_jit_load(tiny, tmp_path):
    """torch.jit.load runs a scripted class's __setstate__ while loading: such archives are refused."""
    from typing import Tuple

    from vlal.clip import load_clip
    from vlal.clip._loading import _is_torchscript

    class Hook(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.ones(2)

        def forward(self, x):
            return x * self.w

        @torch.jit.export
        def __getstate__(self) -> Tuple[torch.Tensor, bool]:
            return self.w, self.training

        @torch.jit.export
        def __setstate__(self, state: Tuple[torch.Tensor, bool]) -> None:
            raise RuntimeError("CODE RAN")

    path = tmp_path / "hook_ts.pt"
    torch.jit.script(Hook()).save(str(path))
    assert _is_torchscript(str(path))
    with pytest.raises(Exception, match="CODE RAN"):  # what torch.jit.load itself does (torch.jit.Error)
        torch.jit.load(str(path))
    with pytest.raises(VlalInputError, match=r"defines __setstate__ .*torch\.jit\.load would run"):
        load_clip(tiny, str(path))


def test_numpy_files_as_checkpoints_give_one_line_errors(tiny, tmp_path):
    """Stop 22 review: open_clip reads .npy/.npz as big_vision weights; errors were raw tracebacks."""
    from vlal.clip import load_clip

    np.save(tmp_path / "evil.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(tmp_path / "plain.npy", np.ones(3))
    with pytest.raises(VlalInputError, match="refused to load checkpoint .*evil.npy"):
        load_clip(tiny, str(tmp_path / "evil.npy"))
    with pytest.raises(VlalInputError, match=r"cannot load checkpoint .*plain\.npy into"):
        load_clip(tiny, str(tmp_path / "plain.npy"))


def test_crafted_checkpoint_never_runs_code_in_embed_cli(tiny, tmp_path):
    from PIL import Image

    marker = tmp_path / "PWNED"
    ckpt = _evil_checkpoint(tmp_path / "evil.pt", marker, ("{root}/xconstants.pkl",))
    imgs = tmp_path / "imgs" / "cat"
    imgs.mkdir(parents=True)
    Image.new("RGB", (8, 8), (200, 10, 10)).save(imgs / "a.png")
    res = CliRunner().invoke(main, ["embed", str(tmp_path / "imgs"), str(tmp_path / "out.npz"), "--model", tiny,
                                    "--pretrained", str(ckpt)])
    assert res.exit_code != 0
    assert "refused to load checkpoint" in res.output and "Traceback" not in res.output
    assert not marker.exists() and not (tmp_path / "out.npz").exists()


def test_real_torchscript_archive_loads_through_jit(tiny, tmp_path):
    from vlal.clip import load_clip

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        src = open_clip.create_model(tiny)
        torch.jit.script(src.eval()).save(str(tmp_path / "scripted.pt"))
    state = torch.random.get_rng_state()
    loaded = load_clip(tiny, str(tmp_path / "scripted.pt"))
    assert torch.equal(state, torch.random.get_rng_state())  # caller's RNG untouched
    ref = src.state_dict()
    for k, v in loaded.model.state_dict().items():
        assert torch.equal(v, ref[k]), k
    assert loaded.weights_id.endswith("|quick_gelu")  # OpenAI TorchScript files are QuickGELU models


def test_plain_state_dict_checkpoint_still_loads(tiny, tmp_path):
    from vlal.clip import load_clip

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        src = open_clip.create_model(tiny)
    torch.save(src.state_dict(), tmp_path / "w.pt")
    loaded = load_clip(tiny, str(tmp_path / "w.pt"))
    a = next(iter(src.state_dict().values()))
    assert torch.equal(a, next(iter(loaded.model.state_dict().values())))


def test_bench_missing_weights_message_names_cli_flags(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    np.savez(tmp_path / "e.npz", pool_features=x, pool_labels=np.arange(12) % 3, test_features=x,
             test_labels=np.arange(12) % 3, class_names=np.array(["a", "b", "c"]), model_name=np.array("ViT-B-32"))
    res = CliRunner().invoke(main, ["bench", "--data", str(tmp_path / "e.npz"), "--tuner", "coop", "--pretrained",
                                    str(tmp_path / "nope" / "ViT-B-32.pt"), "--rounds", "1", "--seeds", "1",
                                    "--quiet", "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "--pretrained /path/to/ViT-B-32.pt" in res.output
    assert "load_clip(" not in res.output and "allow_download" not in res.output
