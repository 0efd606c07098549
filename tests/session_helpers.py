"""Shared helpers of the session tests: a small synthetic pool file and an oracle that labels batches."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np


def make_pool_file(path, n=300, k=5, d=16, n_test=100, seed=0, paths=True) -> tuple[Path, np.ndarray]:
    """An .npz laid out like `vlal embed` output; returns (path, oracle labels of the pool)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d))
    y = rng.integers(0, k, n)
    x = centers[y] + 0.8 * rng.normal(size=(n, d))
    yt = rng.integers(0, k, n_test)
    xt = centers[yt] + 0.8 * rng.normal(size=(n_test, d))
    arrays = dict(
        pool_features=x.astype(np.float32),
        text_features=(centers + 0.7 * rng.normal(size=centers.shape)).astype(np.float32),
        class_names=np.array([f"class {i}" for i in range(k)]),
        pool_labels=y,
        test_features=xt.astype(np.float32),
        test_labels=yt,
    )
    if paths:
        arrays["pool_paths"] = np.array([str(Path(path).parent / "img" / f"{i:04d}.png") for i in range(n)])
    np.savez(path, **arrays)
    return Path(path), y


def write_csv_labels(session_dir, out, oracle, class_names, rows=None) -> Path:
    """Label the open batch of a session from `oracle` as a CSV image,label."""
    state = json.loads((Path(session_dir) / "state.json").read_text())
    pool_paths = np.load(Path(session_dir) / "pool.npz")["pool_paths"]
    with open(out, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "label"])
        for i in state["open_batch"]["indices"] if rows is None else rows:
            w.writerow([pool_paths[i], class_names[oracle[i]]])
    return Path(out)


def ls_export(tasks_file, labeler) -> list:
    """A Label Studio JSON export of an import file: ``labeler(task) -> list of annotation dicts``."""
    out = []
    for n, task in enumerate(json.loads(Path(tasks_file).read_text())):
        anns = labeler(task)
        out.append({"id": 100 + n, "data": task["data"], "annotations": anns, "predictions": [n]})
    return out


def choice(label, cancelled=False) -> dict:
    return {"id": 1, "was_cancelled": cancelled,
            "result": [] if cancelled else [{"from_name": "label", "to_name": "image", "type": "choices",
                                             "value": {"choices": [label]}}]}
