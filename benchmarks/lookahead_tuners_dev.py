"""Issue 12, stop 21: do the 1 % development figures depend on the tuner? Seeds 5-9, one round of 1 %.

Strategies random, least confidence, CEC, calibrated-mix and lookahead under the default tuner
(``anchored``) and two settings of it that pull a class less at its first labels: ``power = 1``
(penalty ``1 / (1 + n_c)`` instead of ``1 / (1 + n_c)^3``) and label smoothing ``eps = 0.1`` scaled
by the share of classes without a label (``label_smoothing=0.1, smoothing_by_unlabeled=True``).
Writes ``benchmarks/results/lookahead_tuners_dev.{json,md}``.

    OMP_NUM_THREADS=1 python benchmarks/lookahead_tuners_dev.py
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from _study import paired_text, write_report
from vlal.bench import run_benchmark
from vlal.data import load_features
from vlal.tuners import AnchoredTuner

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("VLAL_DATA", ROOT.parent / "shared" / "data" / "clip-vitb32"))
DATASETS = ("dtd", "caltech101", "flowers102", "imagenet_real_even")
SEEDS = (5, 6, 7, 8, 9)
SPECS = ("random", "leastconf", "cec", "calibrated-mix", "lookahead")
TUNERS = {
    "anchored (default)": {},
    "anchored[power=1]": {"power": 1.0},
    "anchored[label_smoothing=0.1, smoothing_by_unlabeled=True]": {"label_smoothing": 0.1, "smoothing_by_unlabeled": True},
}


def main():
    out = ROOT / "benchmarks" / "results" / "lookahead_tuners_dev"
    recs = []
    for name in DATASETS:
        ds = load_features(DATA / f"{name}.npz")
        for tuner, kw in TUNERS.items():
            for r in run_benchmark(ds, list(SPECS), n_rounds=1, seeds=SEEDS, progress=False,
                                   tuner_factory=lambda w0, kw=kw: AnchoredTuner(w0, **kw), tuner_name=tuner):
                recs.append(r)
        print(name, flush=True)
    acc = {(r["tuner"], r["strategy"], r["dataset"], r["seed"]): r["accuracy"] for r in recs if r["round"] == 1}
    zs = {d: np.mean([r["accuracy"] for r in recs if r["round"] == 0 and r["dataset"] == d]) for d in DATASETS}
    lines = ["# lookahead_tuners_dev", "", "Issue 12, stop 21. One round of 1 %, development seeds 5-9; accuracy (%), mean over "
             "seeds; paired differences over the 20 dataset x seed pairs, mean ± 95 % CI (paired t), wins. "
             "See `benchmarks/lookahead_tuners_dev.py` for the tuner settings.", "",
             "    OMP_NUM_THREADS=1 python benchmarks/lookahead_tuners_dev.py", "",
             "| tuner | strategy | " + " | ".join(DATASETS) + " | 4-set mean | lookahead minus it |",
             "|---|---|" + "---|" * (len(DATASETS) + 2),
             "| (zero-shot) | | " + " | ".join(f"{zs[d]:.1f}" for d in DATASETS) + f" | {np.mean(list(zs.values())):.2f} | |"]
    for tuner in TUNERS:
        for spec in SPECS:
            mu = [np.mean([acc[(tuner, spec, d, s)] for s in SEEDS]) for d in DATASETS]
            cell = ""
            if spec != "lookahead":
                cell = paired_text([acc[(tuner, "lookahead", d, s)] - acc[(tuner, spec, d, s)] for d in DATASETS for s in SEEDS])
            lines.append(f"| {tuner} | {spec} | " + " | ".join(f"{m:.1f}" for m in mu) + f" | {np.mean(mu):.2f} | {cell} |")
    write_report(out, recs, lines)


if __name__ == "__main__":
    sys.exit(main())
