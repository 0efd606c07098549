"""How much could a better *batch* gain over lookahead at 1 %? (issue 12, stop 22; an oracle, not a strategy)

``lookahead_headroom.py`` bounded rankings of single picks. This script bounds batch composition:
for each development seed (5-9, one round of 1 %, default tuner ``anchored``, zero-shot as in the
benchmark) it starts from ``lookahead``'s ``b`` picks (recomputed with the benchmark's seed and
Generator) and hill-climbs on the **true pool labels**: ``--swaps`` times, replace one pick
(position drawn uniformly) by one pool row (drawn uniformly), fit the real tuner on the ``b`` true
labels, and keep the swap if pool accuracy rises. The final batch is scored on the test split,
which the climb never sees. The result says how far a strategy that knew every pool label could get
by choosing the batch; what the winning batches share says what a strategy would have to predict.

Also measured on the same runs: how well scores known at query time predict where zero-shot is
*wrong* on the pool (ROC AUC), because the climbed batches differ from lookahead's mostly there.

    OMP_NUM_THREADS=1 python benchmarks/lookahead_batch_oracle.py [--datasets dtd] [--seeds 5,6] [--swaps 300] [--jobs 2]

Writes ``benchmarks/results/lookahead_batch_oracle.{json,md}`` (the JSON after each finished run,
so an interrupted study resumes where it stopped).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from _study import paired_ci, run_resumable
from vlal import make_strategy
from vlal.bench import round_budget
from vlal.data import load_features, zero_shot_proxy
from vlal.scoring import (_build_knn_index, _calibrate_block, _calibrated_entropy, _contextual_prior, _drop_self,
                          _knn, _neighbor_uncertainty)
from vlal.tuners import AnchoredTuner

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("VLAL_DATA", ROOT.parent / "shared" / "data" / "clip-vitb32"))
DATASETS = ("dtd", "caltech101", "flowers102", "imagenet_real_even")
ERROR_SCORES = ("least confidence", "calibrated least confidence", "margin", "calibrated entropy",
                "CEC uncertainty U", "kNN disagreement")


def _accuracy(tuner, x, y) -> float:
    return 100.0 * float((tuner.predict_proba(x).argmax(1) == y).mean())


def batch_properties(rows, p, y) -> dict:
    """What a batch is made of: zero-shot wrong share, mean zero-shot max probability, distinct classes."""
    rows = np.asarray(rows)
    return {"zero_shot_wrong": float((p[rows].argmax(1) != y[rows]).mean()),
            "max_p": float(p[rows].max(1).mean()), "distinct_classes": int(np.unique(y[rows]).size)}


def error_scores(x, p) -> dict:
    """Scores known at query time (larger = more likely wrong), shape (n,) each, by name."""
    z = x / np.linalg.norm(x, axis=1, keepdims=True)
    h = _calibrated_entropy(p, 10)
    index = _build_knn_index(z, "auto", None, "auto")
    u = h + _neighbor_uncertainty(z, h, 20, 0.1, index, "auto")
    belief = _calibrate_block(p, _contextual_prior(p, 10))
    pred = p.argmax(1)
    rows = np.arange(z.shape[0])
    _, nn = _drop_self(rows, *_knn(z, z, 21), 20)
    srt = np.sort(p, axis=1)
    return dict(zip(ERROR_SCORES, (1 - p.max(1), 1 - belief.max(1), srt[:, -2] - srt[:, -1], h, u,
                                   (pred[nn] != pred[:, None]).mean(1))))


def hill_climb(fit_pool_accuracy, start, n: int, swaps: int, rng) -> tuple[np.ndarray, float, int]:
    """Greedy swaps from ``start``: ``(batch, its objective, accepted swaps)``; the objective never falls."""
    batch = np.array(start)
    best = fit_pool_accuracy(batch)
    accepted = 0
    for _ in range(swaps):
        i, c = int(rng.integers(batch.size)), int(rng.integers(n))
        if c in batch:
            continue
        trial = batch.copy()
        trial[i] = c
        value = fit_pool_accuracy(trial)
        if value > best:
            batch, best, accepted = trial, value, accepted + 1
    return batch, best, accepted


def one_run(name: str, seed: int, swaps: int) -> dict:
    t0 = time.time()
    ds = load_features(DATA / f"{name}.npz")
    w0, keep = zero_shot_proxy(ds, random_state=seed)
    x, y = ds.pool_features[keep].astype(np.float32), ds.pool_labels[keep]
    xt, yt = ds.test_features.astype(np.float32), ds.test_labels
    b = round_budget(y.size, 0.01)
    p = AnchoredTuner(w0).predict_proba(x).astype(np.float64)
    la = np.asarray(make_strategy("lookahead", random_state=np.random.default_rng(seed)).select(x, p, b))

    def fit(rows):
        return AnchoredTuner(w0).fit(x[rows], y[rows])

    batch, pool_acc, accepted = hill_climb(lambda r: _accuracy(fit(r), x, y), la, y.size, swaps,
                                           np.random.default_rng([seed, 99]))
    wrong = p.argmax(1) != y
    t_la = fit(la)  # fitted once for both of its scores
    return {"dataset": name, "seed": seed, "budget": b, "swaps": swaps, "accepted": accepted,
            "zero_shot": _accuracy(AnchoredTuner(w0), xt, yt),
            "lookahead": {"test": _accuracy(t_la, xt, yt), "pool": _accuracy(t_la, x, y), **batch_properties(la, p, y)},
            "oracle batch": {"test": _accuracy(fit(batch), xt, yt), "pool": pool_acc, **batch_properties(batch, p, y)},
            "pool_zero_shot_wrong": float(wrong.mean()),
            "error_auc": {k: float(roc_auc_score(wrong, v)) for k, v in error_scores(x, p).items()},
            "seconds": round(time.time() - t0, 1)}


def report(recs: list[dict], command: str) -> str:
    names = [d for d in DATASETS if any(r["dataset"] == d for r in recs)]
    arms = ("lookahead", "oracle batch")
    lines = ["# lookahead_batch_oracle", "",
             "How far could the choice of the batch go? Development seeds 5-9, one round of 1 %, tuner `anchored` "
             "(the default), zero-shot as in the benchmark (real CLIP text embeddings for imagenet_real_even, the "
             "one-shot proxy for the others). `oracle batch`: lookahead's picks improved by hill-climbing on the "
             "**true pool labels** (random one-row swaps, kept when pool accuracy rises; the test split is never "
             "seen). An oracle, not a strategy. Method: `benchmarks/lookahead_batch_oracle.py`.", "",
             f"    {command}", "",
             "Test accuracy (%), mean over seeds; pool accuracy (the climb's objective) in brackets:", "",
             "| dataset | seeds | b | swaps (accepted) | zero-shot | lookahead | oracle batch | oracle - lookahead |",
             "|---|---|---|---|---|---|---|---|"]
    for d in names:
        rs = [r for r in recs if r["dataset"] == d]
        cells = [f"{np.mean([r[a]['test'] for r in rs]):.1f} ({np.mean([r[a]['pool'] for r in rs]):.1f})" for a in arms]
        m, h, n, w = paired_ci([r["oracle batch"]["test"] - r["lookahead"]["test"] for r in rs])
        lines.append(f"| {d} | {len(rs)} | {rs[0]['budget']} | {rs[0]['swaps']} ({np.mean([r['accepted'] for r in rs]):.0f}) | "
                     f"{np.mean([r['zero_shot'] for r in rs]):.1f} | " + " | ".join(cells) + f" | {m:+.2f} ± {h:.2f} ({w}/{n}) |")
    if len(names) > 1:
        per = {a: np.mean([np.mean([r[a]["test"] for r in recs if r["dataset"] == d]) for d in names]) for a in arms}
        m, h, n, w = paired_ci([r["oracle batch"]["test"] - r["lookahead"]["test"] for r in recs])
        lines.append(f"| mean of {len(names)} sets | | | | {np.mean([np.mean([r['zero_shot'] for r in recs if r['dataset'] == d]) for d in names]):.2f} | "
                     f"{per['lookahead']:.2f} | {per['oracle batch']:.2f} | {m:+.2f} ± {h:.2f} ({w}/{n}) |")
    lines += ["", "What the batches are made of (mean over seeds): share of picks that zero-shot gets wrong, "
              "mean zero-shot max probability of the picks, distinct true classes among the `b` picks; "
              "pool share zero-shot gets wrong for reference:", "",
              "| dataset | pool wrong | lookahead: wrong / max p / classes | oracle batch: wrong / max p / classes |",
              "|---|---|---|---|"]
    for d in names:
        rs = [r for r in recs if r["dataset"] == d]
        cells = [" / ".join((f"{np.mean([r[a]['zero_shot_wrong'] for r in rs]):.2f}", f"{np.mean([r[a]['max_p'] for r in rs]):.2f}",
                             f"{np.mean([r[a]['distinct_classes'] for r in rs]):.1f} of {rs[0]['budget']}")) for a in arms]
        lines.append(f"| {d} | {np.mean([r['pool_zero_shot_wrong'] for r in rs]):.2f} | " + " | ".join(cells) + " |")
    lines += ["", "Can a score known at query time find the rows zero-shot gets wrong? ROC AUC on the pool "
              "(1 = perfect, 0.5 = chance), mean over seeds; kNN disagreement = share of the 20 nearest pool rows "
              "predicted as another class:", "",
              "| dataset | " + " | ".join(ERROR_SCORES) + " |", "|---|" + "---|" * len(ERROR_SCORES)]
    for d in names:
        rs = [r for r in recs if r["dataset"] == d]
        lines.append(f"| {d} | " + " | ".join(f"{np.mean([r['error_auc'][k] for r in rs]):.3f}" for k in ERROR_SCORES) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--seeds", default="5,6,7,8,9")
    ap.add_argument("--swaps", type=int, default=300, help="hill-climbing steps per run")
    ap.add_argument("--jobs", type=int, default=2, help="runs in parallel (processes)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "lookahead_batch_oracle"))
    args = ap.parse_args(argv)
    run_resumable(partial(one_run, swaps=args.swaps), sys.argv[1:] if argv is None else argv, args,
                  Path(args.out).with_suffix(".json"), "lookahead_batch_oracle.py", DATASETS, report,
                  lambda r: f"{r['dataset']} {r['seed']} "
                            f"{({a: round(r[a]['test'], 2) for a in ('lookahead', 'oracle batch')})} {r['seconds']:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
