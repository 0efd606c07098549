"""Can the batch be chosen on *beliefs* instead of true labels? (issue 12, stop 23; a diagnostic, not a strategy)

``lookahead_batch_oracle.py`` showed that hill-climbing lookahead's batch on the **true** pool labels
gains +1.4 points at 1 %. A strategy cannot see those labels; the closest thing it can compute is
the *expected* pool accuracy after tuning, under its beliefs. This script asks whether that
expectation ranks batches as the truth does, before anyone builds a climb on it.

For each run (development seeds 5-9, one round of 1 %, default tuner ``anchored``, zero-shot as
in the benchmark) it takes lookahead's ``b`` picks and ``--batches`` neighbouring batches (1-3
random one-row swaps each) and scores every batch four ways:

- ``true``: pool accuracy of the real tuner fitted on the batch's true labels (the oracle's objective);
- ``plain``: ``E[pool accuracy]`` with the batch's labels drawn from the calibrated beliefs ``p^``
  (CEC's Eq. 5), ``--samples`` draws (the same draws for every batch: common random numbers), the
  real tuner fitted on each draw, a prediction ``c`` on row ``j`` counted as ``p^_j(c)``;
- ``share``: as ``plain``, but a row ``j`` is taken to share the label of its most similar pick
  ``x`` with probability ``pi(cos(x, j))`` (lookahead's class-share curve), i.e. counted as
  ``pi [c = y_x] + (1 - pi) p^_j(c)``;
- ``share, picks' labels known``: ``share`` with the batch's true labels instead of draws (which
  part fails: not knowing the picks' labels, or the beliefs about the rest of the pool?).

Reported: Spearman rho between each score's change (batch minus lookahead's) and the true change,
over the neighbouring batches; and how many neighbours truly improve on lookahead.

    OMP_NUM_THREADS=1 python benchmarks/lookahead_batch_belief.py [--datasets dtd] [--seeds 5,6] [--batches 40] [--samples 8] [--jobs 2]

Writes ``benchmarks/results/lookahead_batch_belief.{json,md}`` (the JSON after each finished run, so
an interrupted study resumes).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from _study import run_resumable
from vlal import make_strategy
from vlal.bench import round_budget
from vlal.data import load_features, zero_shot_proxy
from vlal.scoring import _calibrate_block, _contextual_prior
from vlal.strategies.lookahead import class_share_curve
from vlal.tuners import AnchoredTuner

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("VLAL_DATA", ROOT.parent / "shared" / "data" / "clip-vitb32"))
DATASETS = ("dtd", "caltech101", "flowers102", "imagenet_real_even")
SCORES = ("plain", "share", "share, picks' labels known")


def neighbours(batch, n: int, count: int, rng) -> list[np.ndarray]:
    """``count`` batches that differ from ``batch`` in 1-3 positions (a replacement already in the batch is skipped)."""
    out = []
    for _ in range(count):
        trial = np.array(batch)
        for _ in range(int(rng.integers(1, 4))):
            i, c = int(rng.integers(trial.size)), int(rng.integers(n))
            if c not in trial:
                trial[i] = c
        out.append(trial)
    return out


def one_run(name: str, seed: int, n_batches: int, n_samples: int) -> dict:
    t0 = time.time()
    ds = load_features(DATA / f"{name}.npz")
    w0, keep = zero_shot_proxy(ds, random_state=seed)
    x, y = ds.pool_features[keep].astype(np.float32), ds.pool_labels[keep]
    n, b = y.size, round_budget(y.size, 0.01)
    p = AnchoredTuner(w0).predict_proba(x).astype(np.float64)
    belief = _calibrate_block(p, _contextual_prior(p, 10))
    z = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float64)
    s_pts, pi_pts = class_share_curve(z, belief)
    la = np.asarray(make_strategy("lookahead", random_state=np.random.default_rng(seed)).select(x, p, b))
    rng = np.random.default_rng([seed, 23])
    cum = np.cumsum(belief, axis=1)
    draws = np.stack([np.minimum((rng.random(n)[:, None] > cum).sum(1), p.shape[1] - 1) for _ in range(n_samples)])
    rows = np.arange(n)

    def predict(batch, labels):
        return AnchoredTuner(w0).fit(x[batch], labels).predict_proba(x).argmax(1)

    def scores(batch) -> list[float]:
        sim = z @ z[batch].T
        near, pi = sim.argmax(1), np.interp(sim.max(1), s_pts, pi_pts)
        pred_true = predict(batch, y[batch])
        plain, share = [], []
        for d in draws:
            pred = predict(batch, d[batch])
            plain.append(belief[rows, pred].mean())
            share.append(((1 - pi) * belief[rows, pred] + pi * (pred == d[batch][near])).mean())
        known = ((1 - pi) * belief[rows, pred_true] + pi * (pred_true == y[batch][near])).mean()
        return [100.0 * float(v) for v in ((pred_true == y).mean(), np.mean(plain), np.mean(share), known)]

    base = np.array(scores(la))
    delta = np.array([np.array(scores(bt)) - base for bt in neighbours(la, n, n_batches, rng)])
    rho = {k: float(spearmanr(delta[:, 0], delta[:, i + 1])[0]) for i, k in enumerate(SCORES)}
    picked = {k: float(delta[int(np.argmax(delta[:, i + 1])), 0]) for i, k in enumerate(SCORES)}
    return {"dataset": name, "seed": seed, "budget": b, "batches": n_batches, "samples": n_samples,
            "rho": rho, "true_delta_of_best_by": picked, "best_true_delta": float(delta[:, 0].max()),
            "truly_better": float((delta[:, 0] > 0).mean()), "seconds": round(time.time() - t0, 1)}


def report(recs: list[dict], command: str) -> str:
    names = [d for d in DATASETS if any(r["dataset"] == d for r in recs)]
    lines = ["# lookahead_batch_belief", "",
             "Does the expected pool accuracy under the beliefs rank batches as the true pool accuracy does? "
             "Development seeds 5-9, one round of 1 %, tuner `anchored` (the default); neighbours of lookahead's "
             "batch (1-3 random swaps). Method: `benchmarks/lookahead_batch_belief.py`.", "",
             f"    {command}", "",
             "Spearman rho between each score's change and the true change of pool accuracy (mean over seeds; "
             "1 = ranks batches as the truth does, 0 = no information); in brackets the true change (points) of the "
             "neighbour that score ranks best:", "",
             "| dataset | seeds | b | neighbours (truly better) | best true change | " + " | ".join(SCORES) + " |",
             "|---|---|---|---|---|" + "---|" * len(SCORES)]
    for d in names:
        rs = [r for r in recs if r["dataset"] == d]
        cells = [f"{np.mean([r['rho'][k] for r in rs]):+.2f} ({np.mean([r['true_delta_of_best_by'][k] for r in rs]):+.2f})"
                 for k in SCORES]
        lines.append(f"| {d} | {len(rs)} | {rs[0]['budget']} | {rs[0]['batches']} ({np.mean([r['truly_better'] for r in rs]):.0%}) | "
                     f"{np.mean([r['best_true_delta'] for r in rs]):+.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--seeds", default="5,6,7,8,9")
    ap.add_argument("--batches", type=int, default=40, help="neighbouring batches per run")
    ap.add_argument("--samples", type=int, default=8, help="label draws per batch for the belief scores")
    ap.add_argument("--jobs", type=int, default=2, help="runs in parallel (processes)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "lookahead_batch_belief"))
    args = ap.parse_args(argv)
    run_resumable(partial(one_run, n_batches=args.batches, n_samples=args.samples),
                  sys.argv[1:] if argv is None else argv, args, Path(args.out).with_suffix(".json"),
                  "lookahead_batch_belief.py", DATASETS, report,
                  lambda r: f"{r['dataset']} {r['seed']} {({k: round(v, 2) for k, v in r['rho'].items()})} {r['seconds']:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
