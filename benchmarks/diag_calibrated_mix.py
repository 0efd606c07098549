"""Diagnosis for issue 12: why do 1 % of labels lower the anchored tuner's accuracy on imagenet_real_even?

One round of 1 % with the default tuner (``anchored``), as in ``study_calibrated_mix.py --part ablation``.
For each strategy and seed, the picks (zero-shot correct? classes covered) and the test images
whose prediction changed after tuning, split into: gained / lost among the test images of a
labeled class, and lost to a labeled class by a test image of another class ("taken over").
Then, for ``calibrated-mix`` and ``random``, the effect of each pick *in context*: the tuner fitted on
all picks but that one (leave-one-out), and the difference in correct test images, related to
properties of the pick known at query time (zero-shot confidence, calibrated-entropy rank,
typicality rank, kNN pseudo-label purity) and, for the record only, the oracle share of the
pick's 20 nearest pool rows that belong to its own class.

Writes ``benchmarks/results/diag_calibrated_mix.{md,json}`` (one section per dataset)::

    OMP_NUM_THREADS=1 python benchmarks/diag_calibrated_mix.py --datasets imagenet_real_even,flowers102,dtd --seeds 0,1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from vlal import make_strategy
from vlal._io import write_text_atomic
from vlal.data import load_features, zero_shot_proxy
from vlal.loop import round_budget
from vlal.scoring import calibrate, calibrated_entropy, contextual_prior
from vlal.strategies.calibrated_mix import pseudo_label_purity, rank01, typicality
from vlal.tuners import DEFAULT_TUNER, make_tuner

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("VLAL_DATA", ROOT.parent / "shared" / "data" / "clip-vitb32"))
STRATEGIES = "calibrated-mix;cec;leastconf;margin;random;coreset;calibrated-mix[mix=0.0];calibrated-mix[density='purity',density_k='class']"
LOO = ("calibrated-mix", "random")
PROPS = ("zs_maxprob", "zs_correct", "unc_rank", "typ_rank", "purity", "oracle_same_class_nn20")


TUNER_KW: dict = {}  # --label-smoothing eps > 0: {"label_smoothing": eps} (issue 12, tuner side)


def predict(w0, x, y, xt):
    t = make_tuner(DEFAULT_TUNER, w0, **TUNER_KW)
    if len(y):
        t.fit(x, y)
    return np.asarray(t.predict_proba(xt)).argmax(1)


def one_dataset(name, seeds, strategies):
    ds = load_features(DATA / f"{name}.npz")
    runs, loo = [], []
    for seed in seeds:
        w0, keep = zero_shot_proxy(ds, random_state=seed)
        x, y = ds.pool_features[keep].astype(np.float32), ds.pool_labels[keep]
        xt, yt = ds.test_features.astype(np.float32), ds.test_labels
        z = x / np.linalg.norm(x, axis=1, keepdims=True)
        p = np.asarray(make_tuner(DEFAULT_TUNER, w0).predict_proba(x)).astype(np.float64)
        zpred = p.argmax(1)
        zt = predict(w0, x[:0], y[:0], xt)
        b = round_budget(x.shape[0], 0.01)
        unc = rank01(calibrated_entropy(p, 10))
        typ = rank01(typicality(z, 20))
        pseudo = calibrate(p, contextual_prior(p, 10)).argmax(1)
        pur = pseudo_label_purity(z, pseudo, 20)
        sim = z @ z.T
        np.fill_diagonal(sim, -np.inf)
        nn20 = np.argsort(-sim, axis=1)[:, :20]
        for spec in strategies:
            picks = np.asarray(make_strategy(spec, random_state=np.random.default_rng(seed)).select(x, p, b))
            py = y[picks]
            pred = predict(w0, x[picks], py, xt)
            lab = np.unique(py)
            in_lab = np.isin(yt, lab)
            gained, lost = (pred == yt) & (zt != yt), (pred != yt) & (zt == yt)
            runs.append({
                "dataset": name, "seed": seed, "strategy": spec, "budget": int(b), "n_test": int(yt.size),
                "zero_shot": 100 * float((zt == yt).mean()), "accuracy": 100 * float((pred == yt).mean()),
                "picks_zs_correct": int((zpred[picks] == py).sum()), "classes_labeled": int(lab.size),
                "test_of_labeled_classes": int(in_lab.sum()),
                "gained_labeled_class": int((gained & in_lab).sum()), "lost_labeled_class": int((lost & in_lab).sum()),
                "taken_over": int((lost & ~in_lab & np.isin(pred, lab)).sum()),
                "gained_other": int((gained & ~in_lab).sum()), "lost_other": int((lost & ~in_lab & ~np.isin(pred, lab)).sum()),
                "pick_unc_rank": float(unc[picks].mean()), "pick_typ_rank": float(typ[picks].mean()),
                "pick_purity": float(pur[picks].mean()),
            })
            print(json.dumps(runs[-1]), flush=True)
            if spec in LOO:
                full = int((pred == yt).sum())
                for j, i in enumerate(picks):
                    rest = np.delete(picks, j)
                    pr = predict(w0, x[rest], y[rest], xt)
                    loo.append({"dataset": name, "seed": seed, "strategy": spec, "row": int(i),
                                "effect": full - int((pr == yt).sum()),  # correct test images this pick adds
                                "zs_maxprob": float(p[i].max()), "zs_correct": float(zpred[i] == y[i]),
                                "unc_rank": float(unc[i]), "typ_rank": float(typ[i]), "purity": float(pur[i]),
                                "oracle_same_class_nn20": float((y[nn20[i]] == y[i]).mean())})
    return runs, loo


def summary_md(runs, loo, name):
    r = [x for x in runs if x["dataset"] == name]
    lines = [f"## {name}", "",
             f"Budget {r[0]['budget']} rows (1 %), {r[0]['n_test']} test images, zero-shot {r[0]['zero_shot']:.1f} %. "
             f"Mean over seeds {sorted({x['seed'] for x in r})}; counts are test images.", "",
             "| strategy | accuracy | picks zero-shot correct | classes labeled | gained (labeled classes) | lost (labeled classes) "
             "| taken over by a labeled class | gained / lost elsewhere | pick uncertainty rank | pick typicality rank | pick purity |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for spec in dict.fromkeys(x["strategy"] for x in r):
        q = [x for x in r if x["strategy"] == spec]
        m = {k: float(np.mean([x[k] for x in q])) for k in q[0] if isinstance(q[0][k], (int, float)) and k != "seed"}
        lines.append(f"| {spec} | {m['accuracy']:.1f} | {m['picks_zs_correct']:.1f} / {m['budget']:.0f} | {m['classes_labeled']:.1f} "
                     f"| {m['gained_labeled_class']:.1f} | {m['lost_labeled_class']:.1f} | {m['taken_over']:.1f} "
                     f"| {m['gained_other']:.1f} / {m['lost_other']:.1f} | {m['pick_unc_rank']:.2f} | {m['pick_typ_rank']:.2f} "
                     f"| {m['pick_purity']:.2f} |")
    q = [x for x in loo if x["dataset"] == name]
    if q:
        eff = np.array([x["effect"] for x in q], float)
        lines += ["", f"Leave-one-out effect of each pick in context (strategies {', '.join(LOO)}; {eff.size} picks): "
                  f"mean {eff.mean():+.2f} test images, {np.mean(eff > 0):.0%} of picks help, {np.mean(eff < 0):.0%} hurt.", "",
                  "| pick property (known at query time unless marked oracle) | Spearman rho with the effect | mean effect, lower half | mean effect, upper half |",
                  "|---|---|---|---|"]
        for k in PROPS:
            v = np.array([x[k] for x in q], float)
            lo = v <= np.median(v) if k != "zs_correct" else v == 0
            rho = spearmanr(v, eff)[0] if np.ptp(v) > 0 else float("nan")
            lines.append(f"| {k} | {rho:+.2f} | {eff[lo].mean():+.2f} | {eff[~lo].mean() if (~lo).any() else float('nan'):+.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="imagenet_real_even,flowers102,dtd")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--strategies", default=STRATEGIES, help="strategy specs separated by ';'")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "diag_calibrated_mix"))
    ap.add_argument("--label-smoothing", type=float, default=0.0,
                    help="fit the default tuner with this label_smoothing (0 = library defaults)")
    a = ap.parse_args(argv)
    TUNER_KW.clear()
    if a.label_smoothing:
        TUNER_KW["label_smoothing"] = a.label_smoothing
    seeds = [int(s) for s in a.seeds.split(",")]
    runs, loo = [], []
    for name in a.datasets.split(","):
        r, l = one_dataset(name, seeds, a.strategies.split(";"))
        runs += r
        loo += l
    cmd = "OMP_NUM_THREADS=1 python benchmarks/diag_calibrated_mix.py " + " ".join(argv if argv is not None else sys.argv[1:])
    md = ["# diag_calibrated_mix", "", (f"Tuner: vlal default `{DEFAULT_TUNER}` ("
           + (", ".join(f"{k}={v:g}" for k, v in TUNER_KW.items()) + ", library defaults otherwise" if TUNER_KW
              else "library defaults") + "). Command:"), "", f"    {cmd}", "",
          "'taken over' = test images that zero-shot classified correctly, of a class without a label, that the tuned model "
          "now assigns to one of the labeled classes. Leave-one-out effect = correct test images with all picks minus "
          "correct test images without this pick (positive = the pick helps).", ""]
    md += [summary_md(runs, loo, name) for name in a.datasets.split(",")]
    out = Path(a.out)
    write_text_atomic(out.with_suffix(".json"), json.dumps({"command": cmd, "runs": runs, "loo": loo}, indent=1))
    write_text_atomic(out.with_suffix(".md"), "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
