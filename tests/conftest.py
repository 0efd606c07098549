import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# ../shared/data beside the checkout (CI lays it there too); VLAL_DATA overrides.
DATA_DIR = Path(os.environ.get("VLAL_DATA", Path(__file__).resolve().parents[2] / "shared" / "data" / "clip-vitb32"))


def real_data(name: str) -> Path:
    path = DATA_DIR / f"{name}.npz"
    if not path.exists():
        pytest.skip(f"real CLIP features not found at {path}")
    return path


def make_pool(n=60, d=8, n_classes=4, seed=0, dtype=np.float32):
    """A small clustered pool with softmax probabilities: ``(x (n, d), probs (n, n_classes), y (n,))``."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_classes, d))
    y = rng.integers(0, n_classes, size=n)
    x = centers[y] + 0.3 * rng.normal(size=(n, d))
    logits = 3.0 * x @ centers.T / d
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return x.astype(dtype), p.astype(dtype), y


@pytest.fixture
def pool():
    return make_pool()


@pytest.fixture
def bench_script(monkeypatch):
    """``bench_script("name")`` imports ``benchmarks/name.py`` as a module; it is unloaded after the test."""
    import importlib
    import sys

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    loaded = []

    def load(name: str):
        loaded.append(name)
        return importlib.import_module(name)

    yield load
    for name in loaded:
        sys.modules.pop(name, None)
