"""GPUs that faiss sees but cannot run on (e.g. PyPI's faiss-gpu-cu12 on an H200, whose
kernels abort with "no kernel image is available"): ``use_gpu="auto"`` falls back to the
CPU with a warning, ``use_gpu=True`` raises. The child-process check is simulated here;
on a real H200 it was seen by ``benchmarks/gpu/run_gpu_check.sh``."""

import warnings

import numpy as np
import pytest

import vlal
from vlal._faiss import device

from conftest import make_pool

ABORTING_PROBE = (
    "import os, sys\n"
    "print('Faiss assertion err__ == cudaSuccess failed in runL2Norm; details: CUDA error 209 "
    "no kernel image is available for execution on the device', file=sys.stderr)\n"
    "sys.stderr.flush()\n"
    "os.abort()\n"
)


@pytest.fixture
def fake_gpu(monkeypatch):
    """One visible GPU and a chosen child-process check; the cached status is reset around the test."""

    def use(probe: str):
        monkeypatch.setattr(device, "_visible_gpus", lambda: 1)
        monkeypatch.setattr(device, "_PROBE", probe)
        monkeypatch.setattr(device, "_warned", [])
        monkeypatch.delenv("VLAL_GPU_PROBE", raising=False)
        device._probe.cache_clear()

    yield use
    device._probe.cache_clear()


def test_unusable_gpu_counts_as_none_and_names_the_cuda_error(fake_gpu):
    fake_gpu(ABORTING_PROBE)
    usable, why = device.gpu_status()
    assert usable == 0 and device.num_gpus() == 0
    assert "no kernel image is available" in why and "exit status" in why


def test_auto_falls_back_to_the_cpu_with_one_warning(fake_gpu):
    fake_gpu(ABORTING_PROBE)
    with pytest.warns(RuntimeWarning, match="cannot run on them.*use_gpu='auto' runs on the CPU.*7.0-8.9"):
        assert device.resolve_use_gpu("auto") is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second call stays quiet
        assert device.resolve_use_gpu("auto") is False


def test_true_raises_with_the_reason(fake_gpu):
    fake_gpu(ABORTING_PROBE)
    with pytest.raises(ValueError, match="use_gpu=True but faiss cannot run on the GPU.*no kernel image"):
        device.resolve_use_gpu(True)
    assert device.resolve_use_gpu(False) is False


def test_cec_with_auto_selects_on_the_cpu_when_the_gpu_is_unusable(fake_gpu):
    fake_gpu(ABORTING_PROBE)
    x, p, _ = make_pool(n=200, d=8)
    with pytest.warns(RuntimeWarning, match="cannot run on them") as rec:
        picks = vlal.CEC(k=5, random_state=0).select(x, p, 10)
    assert rec[0].filename == __file__  # the warning names the caller's line, not vlal's
    ref = vlal.CEC(k=5, random_state=0, use_gpu=False).select(x, p, 10)
    np.testing.assert_array_equal(picks, ref)
    with pytest.raises(ValueError, match="use_gpu"):
        vlal.CEC(k=5, random_state=0, use_gpu=True).select(x, p, 10)


def test_working_gpu_is_used_and_checked_once(fake_gpu, tmp_path):
    marker = tmp_path / "runs"
    fake_gpu(f"open({str(marker)!r}, 'a').write('x')\n")
    assert device.gpu_status() == (1, None)
    assert device.resolve_use_gpu("auto") is True and device.resolve_use_gpu(True) is True
    assert marker.read_text() == "x"  # the child ran once; the result is cached


def test_probe_can_be_switched_off(fake_gpu, monkeypatch):
    fake_gpu(ABORTING_PROBE)
    monkeypatch.setenv("VLAL_GPU_PROBE", "0")
    assert device.gpu_status() == (1, None)  # faiss' own count is trusted
