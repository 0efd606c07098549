"""Guard for behaviour-unchanged refactors: the exact picks of every registered strategy.

For each real dataset (``dtd``, ``caltech101``, ``flowers102``; skipped when absent) and
each name of :func:`vlal.available_strategies` (wrappers as ``pcb(entropy)`` and
``pcb(cec)``), two rounds are run with fixed seeds and fixed probabilities: round 0
from the zero-shot proxy (:func:`vlal.data.zero_shot_proxy`, Eq. 1 cosine softmax at
temperature 0.01), round 1 from prototypes moved towards the labeled class means. The
SHA-256 of the picks of each round is compared with ``tests/data/picks_guard.json``.

Exact picks depend on the floating-point kernels the machine runs (OpenBLAS picks AVX2 or
AVX-512 code at run time, and faiss loads its AVX2 or AVX-512 build): ALFA-Mix's round-1
picks changed between two of this project's machines with the same packages. The fixture
therefore keeps one record per machine kind (:func:`machine_key`); on a kind without a
record the test skips and says so, so record the kind before refactoring on it.

Regenerate (only when a change of picks is intended and explained in the commit):
``VLAL_REGEN_PICKS_GUARD=1 pytest tests/test_picks_guard.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

import vlal
from vlal.data import load_features, zero_shot_proxy

from conftest import real_data

GUARD = Path(__file__).parent / "data" / "picks_guard.json"
REGEN = os.environ.get("VLAL_REGEN_PICKS_GUARD") == "1"
DATASETS = ("dtd", "caltech101", "flowers102")
BUDGET = 16
ROUNDS = 2
#: Constructor overrides that keep the guard fast (GCNAL trains its graph network for 200 steps).
PARAMS = {"gcnal": "gcnal[n_steps=20]"}


def machine_key() -> str:
    """``"<OpenBLAS core>/<faiss build>"``, e.g. ``"SkylakeX/AVX512"``: what decides the float kernels."""
    import faiss
    from threadpoolctl import threadpool_info

    cores = sorted({str(i.get("architecture")) for i in threadpool_info() if i.get("internal_api") == "openblas"})
    opts = faiss.get_compile_options() if hasattr(faiss, "get_compile_options") else ""
    build = next((o for o in ("AVX512_SPR", "AVX512", "AVX2", "NEON", "SVE") if o in opts), "GENERIC")
    return f"{'+'.join(cores) or 'no-openblas'}/{build}"


def _names() -> list[str]:
    out = []
    for name in vlal.available_strategies():
        if name.endswith("(<base>)"):
            w = name[: -len("(<base>)")]
            out += [f"{w}(entropy)", f"{w}(cec)"]
        else:
            out.append(PARAMS.get(name, name))
    return out


def _probs(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    z = x / np.linalg.norm(x, axis=1, keepdims=True)
    w = w / np.linalg.norm(w, axis=1, keepdims=True)
    logits = (z @ w.T) / 0.01
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


def _run(name: str, x: np.ndarray, y: np.ndarray, w0: np.ndarray) -> list[str]:
    labeled = np.empty(0, dtype=np.int64)
    w = w0
    hashes = []
    for r in range(ROUNDS):
        probs = _probs(x, w)
        strategy = vlal.make_strategy(name, random_state=r)
        picks = strategy.select(x, probs, BUDGET, labeled=labeled, labels=y[labeled])
        picks = np.asarray(picks, dtype=np.int64)
        hashes.append(hashlib.sha256(picks.tobytes()).hexdigest())
        labeled = np.concatenate([labeled, picks])
        # Fixed "tuner": move each labeled class's prototype halfway to its labeled mean.
        w = w0.copy()
        for c in np.unique(y[labeled]):
            w[c] = 0.5 * w0[c] + 0.5 * x[labeled[y[labeled] == c]].mean(axis=0)
    return hashes


@pytest.fixture(scope="module")
def recorded():
    data = json.loads(GUARD.read_text()) if GUARD.exists() else {}
    key = machine_key()
    yield data.setdefault(key, {})
    if REGEN:
        tmp = GUARD.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, GUARD)


@pytest.mark.parametrize("dataset", DATASETS)
def test_picks_unchanged(dataset, recorded):
    ds = load_features(real_data(dataset))
    w0, keep = zero_shot_proxy(ds, random_state=0)
    x = np.ascontiguousarray(ds.pool_features[keep], dtype=np.float32)
    y = ds.pool_labels[keep]
    got = {name: _run(name, x, y, w0) for name in _names()}
    if REGEN:
        recorded[dataset] = got
        return
    if not recorded:
        pytest.skip(f"no picks recorded for this machine kind ({machine_key()}); record them on main with "
                    "VLAL_REGEN_PICKS_GUARD=1 before a refactor")
    assert dataset in recorded, f"no recorded picks for {dataset}; regenerate with VLAL_REGEN_PICKS_GUARD=1"
    want = recorded[dataset]
    missing = sorted(set(got) - set(want))
    changed = sorted(n for n in got if n in want and got[n] != want[n])
    assert not changed, f"{dataset}: picks changed for {changed}"
    assert not missing, f"{dataset}: strategies without recorded picks: {missing} (regenerate the guard)"
