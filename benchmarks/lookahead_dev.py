"""Development runs of ``lookahead`` (issue 12): one round of 1 %, seeds 5-9 (not the evaluation
seeds 0-4), the four sets, default tuner. Writes ``benchmarks/results/lookahead_dev.{json,md}``.

    OMP_NUM_THREADS=1 python benchmarks/lookahead_dev.py
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

from _study import paired_text, write_report
from vlal.bench import run_benchmark
from vlal.data import load_features

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("VLAL_DATA", ROOT.parent / "shared" / "data" / "clip-vitb32"))
DATASETS = ("dtd", "caltech101", "flowers102", "imagenet_real_even")
SEEDS = (5, 6, 7, 8, 9)
SPECS = {
    "cec": "cec",
    "calibrated-mix": "calibrated-mix",
    "leastconf": "leastconf",
    "lookahead (defaults: beta=4, n_labels=3, mix=0.5, cluster, share)": "lookahead",
    "G only (mix=0)": "lookahead[mix=0.0]",
    "uncertainty only in this pipeline (mix=1)": "lookahead[mix=1.0]",
    "typicality instead of G (calibrated-mix[mix=0.5])": "calibrated-mix[mix=0.5]",
    "no class-share term (share=False)": "lookahead[share=False]",
    "beta=2": "lookahead[beta=2.0]",
    "beta=8": "lookahead[beta=8.0]",
    "beta=16": "lookahead[beta=16.0]",
    "mix=0.3": "lookahead[mix=0.3]",
    "mix=0.7": "lookahead[mix=0.7]",
    "n_labels=1": "lookahead[n_labels=1]",
    "n_labels=5": "lookahead[n_labels=5]",
    "greedy with simulated updates, G only": "lookahead[diversity='greedy',mix=0.0]",
    "tempered belief (temper=0.3)": "lookahead[temper=0.3]",
    "kNN-smoothed belief (smooth=10)": "lookahead[smooth=10]",
}


def main():
    out = ROOT / "benchmarks" / "results" / "lookahead_dev"
    recs = []
    for name in DATASETS:
        ds = load_features(DATA / f"{name}.npz")
        t0 = time.time()
        recs += [r for r in run_benchmark(ds, list(SPECS.values()), n_rounds=1, seeds=SEEDS, progress=False)]
        print(f"{name}: {time.time() - t0:.0f} s", flush=True)
    acc = {(r["strategy"], r["dataset"], r["seed"]): r["accuracy"] for r in recs if r["round"] == 1}
    zs = {d: np.mean([r["accuracy"] for r in recs if r["round"] == 0 and r["dataset"] == d]) for d in DATASETS}
    lines = ["# lookahead_dev", "", "One round of 1 %, default tuner (`anchored`), development seeds 5-9 (the evaluation "
             "seeds 0-4 were not used for any choice). Accuracy (%), mean over seeds; paired differences over the 20 "
             "dataset x seed pairs, mean ± 95 % CI (paired t), wins.", "", "    OMP_NUM_THREADS=1 python benchmarks/lookahead_dev.py", "",
             "| variant | spec | " + " | ".join(DATASETS) + " | 4-set mean | vs cec | wins |", "|---|---|" + "---|" * (len(DATASETS) + 3),
             "| zero-shot | | " + " | ".join(f"{zs[d]:.1f}" for d in DATASETS) + f" | {np.mean(list(zs.values())):.1f} | | |"]
    for label, spec in SPECS.items():
        mu = [np.mean([acc[(spec, d, s)] for s in SEEDS]) for d in DATASETS]
        diff = np.array([acc[(spec, d, s)] - acc[("cec", d, s)] for d in DATASETS for s in SEEDS])
        vs = "" if spec == "cec" else paired_text(diff, " | ")
        lines.append(f"| {label} | `{spec}` | " + " | ".join(f"{m:.1f}" for m in mu) + f" | {np.mean(mu):.2f} | {vs or ' | '} |")
    write_report(out, recs, lines)


if __name__ == "__main__":
    sys.exit(main())
