"""Validate the feature-space tuners: test accuracy against the number of random labels.

    OMP_NUM_THREADS=1 python benchmarks/validate_tuners.py [--data-dir ../shared/data/clip-vitb32] [--seeds 3]

For each data set (imagenet_real_even with its real CLIP text classifier as ``W0``; DTD,
Caltech101, Flowers102 with the zero-shot proxy of method.md), each seed and each number
of labels (0, 25, 125, 500, all of the pool, drawn at random without replacement), every
feature-space tuner of ``vlal.tuners`` is fitted from zero-shot and scored on the test
split. Then the issue-11 targets are measured for the default tuner with the loop's own
protocol (random picks): imagenet_real_even, 6 rounds of 1 %; DTD, one round of 25 %.

Writes benchmarks/results/tuner_validation.{csv,json,md,png} (atomically).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from vlal._io import write_bytes_atomic
from vlal.bench import run_benchmark
from vlal.data import load_features, zero_shot_proxy
from vlal.tuners import DEFAULT_TUNER, available_tuners, make_tuner

DATASETS = ("imagenet_real_even", "dtd", "caltech101", "flowers102")
COUNTS = (0, 25, 125, 500, "all")

# Published few-shot ImageNet accuracies (%), CLIP RN50, from the Tip-Adapter paper
# (Zhang et al., ECCV 2022, arXiv 2207.09519, few-shot ImageNet table). Shots per class: 1, 2, 4, 8, 16.
PUBLISHED = {
    "Zero-shot CLIP": [60.33] * 5,
    "Linear-probe CLIP": [22.17, 31.90, 41.20, 49.52, 56.13],
    "CoOp": [57.15, 57.81, 59.99, 61.56, 62.95],
    "Tip-Adapter": [60.70, 60.96, 60.98, 61.45, 62.03],
    "Tip-Adapter-F": [61.32, 61.69, 62.52, 64.00, 65.51],
}


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, data)


def sweep(data_dir: Path, tuners, seeds, log=print, slow=(), slow_max_labels=125) -> list[dict]:
    rows = []
    for name in DATASETS:
        ds = load_features(data_dir / f"{name}.npz")
        for seed in seeds:
            w0, keep = zero_shot_proxy(ds, random_state=seed)
            x, y = ds.pool_features[keep], ds.pool_labels[keep]
            xt, yt = ds.test_features, ds.test_labels
            order = np.random.default_rng(seed).permutation(x.shape[0])
            for count in COUNTS:
                n = x.shape[0] if count == "all" else min(int(count), x.shape[0])
                idx = order[:n]
                for t in tuners:
                    if t in slow and (seed != seeds[0] or (w0.shape[0] > 200 and n > slow_max_labels)):
                        continue  # O(K d^2) per SGD step: first seed only, and few labels when K is large
                    t0 = time.perf_counter()
                    tuner = make_tuner(t, w0).fit(x[idx], y[idx])
                    fit_s = time.perf_counter() - t0
                    acc = 100.0 * float(np.mean(np.asarray(tuner.predict_proba(xt)).argmax(1) == yt))
                    rows.append({"dataset": name, "seed": seed, "labels": n, "count": str(count), "tuner": t,
                                 "labels_per_class": round(n / w0.shape[0], 3), "accuracy": round(acc, 2),
                                 "fit_seconds": round(fit_s, 3)})
                    log(f"{name} seed={seed} n={n} {t}: {acc:.1f} % ({fit_s:.1f} s)")
    return rows


def loop_targets(data_dir: Path, seeds, tuner=DEFAULT_TUNER) -> dict:
    fac = lambda w0: make_tuner(tuner, w0)  # noqa: E731
    out = {"tuner": tuner}
    rec = run_benchmark(load_features(data_dir / "imagenet_real_even.npz"), ["random"], n_rounds=6, seeds=seeds,
                        tuner_factory=fac, tuner_name=tuner, progress=False, zero_shot_margin=None)
    acc = np.array([[r["accuracy"] for r in rec if r["seed"] == s] for s in seeds])
    mean = acc.mean(0)
    out["imagenet_rounds_mean"] = [round(float(v), 2) for v in mean]
    out["imagenet_labels"] = [r["n_labeled"] for r in rec if r["seed"] == seeds[0]]
    out["imagenet_worst_drop"] = round(float(mean[0] - mean[1:].min()), 2)
    rec = run_benchmark(load_features(data_dir / "dtd.npz"), ["random"], n_rounds=1, budget_fraction=0.25, seeds=seeds,
                        tuner_factory=fac, tuner_name=tuner, progress=False, zero_shot_margin=None)
    q = [r["accuracy"] for r in rec if r["round"] == 1]
    out["dtd_quarter"] = [round(float(v), 2) for v in q]
    out["dtd_quarter_mean"] = round(float(np.mean(q)), 2)
    out["dtd_quarter_labels"] = [r["n_labeled"] for r in rec if r["round"] == 1][0]
    out["dtd_zero_shot_mean"] = round(float(np.mean([r["accuracy"] for r in rec if r["round"] == 0])), 2)
    return out


READING = """## Where the stand-ins differ from the published figures

Measured above (3 seeds; coop-shared / kgcoop 1 seed), compared with the published ImageNet table
(RN50 there, ViT-B/32 here, so compare gaps to zero-shot, not absolute accuracies):

- **anchored (default)**: -1.4 / -1.7 points at 0.05 / 0.25 labels per class, -1.0 at 1 per class,
  -0.1 at about 5 per class. Published CoOp: -3.2 at 1 shot, -0.3 at 4 shots: the same shape, a
  smaller dip. Unlike Tip-Adapter-F it does not gain over zero-shot on ImageNet with about 5 shots
  (the pull to zero-shot is still strong at 5 labels per class: 1/216 of an unlabeled class's).
  On the proxy sets it learns almost as fast as free embeddings (DTD 66.6 vs 66.2 % with the whole pool).
- **coop-shared** (CoOp's SGD budget, shared transform): -5.9 / -4.3 at 0.05 / 0.25 labels per
  class, worse than published CoOp at 1 shot (-3.2) with far fewer labels: a linear transform of
  the text embeddings over-adapts at CoOp's learning rate; kgcoop's pull (lambda 8) cuts the loss by 0.7-1.5 points.
- **tip-adapter** (alpha 1, beta 5.5): within +0.2 of zero-shot up to 1 label per class and +1.0 with
  about 5, as published (+0.4 at 1 shot, +0.7 at 4). On the proxy sets it barely moves (prototype
  logits spread far more than real text logits, so a cache of weight 1 hardly counts), and with the
  whole, unbalanced Flowers102 pool it falls to 49.7 % (zero-shot 64.3 %): cache sums grow with the
  number of labels of a class, which favours the most-labeled classes (the paper's caches are balanced).
- **tip-adapter-f**: +0.0..0.1 up to 1 label per class, +2.1 with about 5 (published: +1.0 at 1 shot,
  +2.2 at 4): the published shape.
- **clap**: -9 to -12 points at 0.05-1 label per class, unlike the paper (gains at 1 shot). Here the
  constraint is CLAP's mean over classes of alpha_c ||w_c - t_c||^2 with unit-norm t_c: with K = 500
  each class's weight is alpha_c / 500, far weaker than with CLAP's un-normalised text embeddings,
  and the active-learning label sets leave most classes unlabeled. A faithful CLAP needs its scale.
- **free**: the collapse of issue 11 (74.3 -> 40-55 %; more labels do not help below 1 per class).
"""


def summarize(rows):
    stats = {}
    for r in rows:
        stats.setdefault((r["dataset"], r["tuner"], r["count"]), []).append(r)
    return {k: (float(np.mean([r["accuracy"] for r in v])), float(np.std([r["accuracy"] for r in v])),
                float(np.mean([r["labels"] for r in v])), float(np.mean([r["fit_seconds"] for r in v])))
            for k, v in stats.items()}


def markdown(rows, tuners, seeds, targets, command) -> str:
    st = summarize(rows)
    lines = ["# Tuner validation: accuracy against the number of random labels", "",
             f"Command: `{command}`", "",
             "Test accuracy (%), mean ± std over seeds " + str(list(seeds)) + "; labels drawn at random from the pool "
             "(same draw for every tuner); every tuner re-fitted from zero-shot. `imagenet_real_even`: real CLIP "
             "ViT-B/32 zero-shot text classifier as W0 (zero-shot 74.3 %); DTD / Caltech101 / Flowers102: one-shot "
             "prototype zero-shot proxy of method.md (a different, image-space prior). Column 0 = zero-shot. "
             "coop-shared and kgcoop (O(K d^2) per SGD step) ran on the first seed only (std 0.0), and on "
             "imagenet_real_even (K = 500) up to 125 labels only (CPU budget of this run).", ""]
    for ds in DATASETS:
        n_all = [st[(ds, tuners[0], c)][2] for c in map(str, COUNTS) if (ds, tuners[0], c) in st]
        if not n_all:
            continue
        lines += [f"## {ds}", "", "| tuner | " + " | ".join(f"{int(n)}" for n in n_all) + " | fit (s) at all |",
                  "|---|" + "---|" * (len(n_all) + 1)]
        for t in tuners:
            cells = [f"{st[(ds, t, c)][0]:.1f} ± {st[(ds, t, c)][1]:.1f}" if (ds, t, c) in st else "-"
                     for c in map(str, COUNTS) if (ds, tuners[0], c) in st]
            fit = st.get((ds, t, "all"), (0, 0, 0, float("nan")))[3]
            lines.append(f"| {t}{' (default)' if t == DEFAULT_TUNER else ''} | " + " | ".join(cells) + f" | {fit:.1f} |")
        lines.append("")
    if targets:
        t = targets
        lines += ["## Issue-11 targets (default tuner, the loop's protocol, random picks)", "",
                  f"- imagenet_real_even, 6 rounds of 1 % ({t['imagenet_labels']} labels), mean over seeds: "
                  f"{t['imagenet_rounds_mean']} -> worst round {t['imagenet_worst_drop']:.2f} points below zero-shot "
                  f"(target: at most 3) -> **{'met' if t['imagenet_worst_drop'] <= 3 else 'NOT met'}**.",
                  f"- DTD, a quarter of the pool labeled at random ({t['dtd_quarter_labels']} labels): {t['dtd_quarter']} "
                  f"-> mean {t['dtd_quarter_mean']:.1f} % (zero-shot proxy {t['dtd_zero_shot_mean']:.1f} %; target: "
                  f">= 50) -> **{'met' if t['dtd_quarter_mean'] >= 50 else 'NOT met'}**.", ""]
    lines += [READING, "## Published few-shot figures (ImageNet, CLIP RN50, Tip-Adapter paper)", "",
              "| method | 1 shot | 2 | 4 | 8 | 16 |", "|---|---|---|---|---|---|"]
    for k, v in PUBLISHED.items():
        lines.append(f"| {k} | " + " | ".join(f"{a:.2f}" for a in v) + " |")
    lines += ["", "Shape expected from these figures: adaptation methods built on the zero-shot classifier stay within "
              "about 3 points of zero-shot at 1 shot per class (CoOp -3.2, Tip-Adapter +0.4, Tip-Adapter-F +1.0) and "
              "gain with more shots; a linear probe trained from scratch is far below. Here `imagenet_real_even` has "
              "500 classes and about 5 pool images per class, so 25 / 125 / 500 labels are 0.05 / 0.25 / 1 label per "
              "class and `all` is about 5 per class: the published 1-shot column compares with the `500` column.", ""]
    return "\n".join(lines) + "\n"


def plot(rows, tuners, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    st = summarize(rows)
    fig, axes = plt.subplots(1, len(DATASETS), figsize=(5.0 * len(DATASETS), 4.2), squeeze=False)
    for ax, ds in zip(axes[0], DATASETS):
        for t in tuners:
            pts = [st[(ds, t, c)] for c in map(str, COUNTS) if (ds, t, c) in st]
            if not pts:
                continue
            m, sd, n, _ = map(np.asarray, zip(*pts))
            ax.errorbar(np.arange(len(n)), m, yerr=sd, marker="o", ms=3, capsize=2, label=t,
                        lw=2.4 if t == DEFAULT_TUNER else 1.2, color="black" if t == DEFAULT_TUNER else None)
            ax.set_xticks(np.arange(len(n)), [str(int(v)) for v in n])
        zs = st.get((ds, "zero-shot", "0"))
        if zs:
            ax.axhline(zs[0], color="grey", ls="--", lw=1)
        ax.set_title(ds)
        ax.set_xlabel("random labels")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    _write_atomic(path, buf.getvalue())


def main():
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=os.environ.get("VLAL_DATA", str(here.parents[1] / "shared" / "data" / "clip-vitb32")))
    ap.add_argument("--out-dir", default=str(here / "results"))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--tuners", default=",".join(available_tuners(feature_only=True)))
    ap.add_argument("--no-targets", action="store_true")
    ap.add_argument("--slow-tuners", default="coop-shared,kgcoop", help="run on the first seed only")
    ap.add_argument("--from-json", action="store_true", help="re-write md/png from the existing tuner_validation.json")
    args = ap.parse_args()
    data_dir, out = Path(args.data_dir), Path(args.out_dir)
    tuners = [t for t in args.tuners.split(",") if t]
    seeds = list(range(args.seeds))
    if args.from_json:
        saved = json.loads((out / "tuner_validation.json").read_text())
        rows, targets, command = saved["records"], saved["targets"], saved["command"]
        tuners = list(dict.fromkeys(r["tuner"] for r in rows))
        seeds = sorted({r["seed"] for r in rows})
        _write_atomic(out / "tuner_validation.md", markdown(rows, tuners, seeds, targets, command).encode())
        plot(rows, tuners, out / "tuner_validation.png")
        return
    rows = sweep(data_dir, tuners, seeds, log=lambda s: print(s, flush=True), slow=set(args.slow_tuners.split(",")))
    targets = None if args.no_targets else loop_targets(data_dir, seeds)
    print(targets, flush=True)
    command = "python benchmarks/validate_tuners.py " + " ".join(sys.argv[1:])
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    _write_atomic(out / "tuner_validation.csv", buf.getvalue().encode())
    _write_atomic(out / "tuner_validation.json",
                  json.dumps({"command": command, "targets": targets, "published": PUBLISHED, "records": rows},
                             indent=1).encode())
    _write_atomic(out / "tuner_validation.md", markdown(rows, tuners, seeds, targets, command).encode())
    plot(rows, tuners, out / "tuner_validation.png")


if __name__ == "__main__":
    main()
