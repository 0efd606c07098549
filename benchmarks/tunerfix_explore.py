"""Exploration for issue 12 (tuner side): tuner variants evaluated on fixed 1 % picks.

At 1 % (one round, nothing labeled before) a strategy's picks depend only on the zero-shot
probabilities, not on the tuner, so the picks of every strategy are computed once (exactly as
:func:`vlal.bench.run_benchmark` does: ``make_strategy(name, random_state=default_rng(seed))`` on
the zero-shot pool probabilities) and each tuner variant is fitted on them. Reports test accuracy
and the 'taken over' count of ``diag_calibrated_mix.py`` per variant.

    OMP_NUM_THREADS=1 python benchmarks/tunerfix_explore.py --datasets imagenet_real_even,flowers102,dtd --seeds 0,1
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
from scipy.special import softmax

from vlal import make_strategy
from vlal._io import write_text_atomic
from vlal.data import load_features, zero_shot_proxy
from vlal.loop import round_budget
from vlal.tuners import AnchoredTuner

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("VLAL_DATA", ROOT.parent / "shared" / "data" / "clip-vitb32"))
STRATEGIES = ("calibrated-mix", "cec", "leastconf", "margin", "entropy", "random", "coreset", "badge")


def picks_for(name, seeds, strategies, cache):
    ds = load_features(DATA / f"{name}.npz")
    out = {}
    for seed in seeds:
        w0, keep = zero_shot_proxy(ds, random_state=seed)
        x = ds.pool_features[keep]
        p = np.asarray(AnchoredTuner(w0).predict_proba(x))
        b = round_budget(x.shape[0], 0.01)
        for s in strategies:
            key = f"{name}|{seed}|{s}"
            if key not in cache:
                cache[key] = [int(i) for i in make_strategy(s, random_state=np.random.default_rng(seed)).select(x, p, b)]
            out[(seed, s)] = np.asarray(cache[key])
    return ds, out


def logits(x, w, T=0.01):
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    w = w / np.linalg.norm(w, axis=1, keepdims=True)
    return x.astype(np.float64) @ w.astype(np.float64).T / T


def variant_predict(v, w0, xl, yl, ref, xt):
    """Test predictions of variant ``v`` (a dict) fitted on (xl, yl); ``ref`` = unlabeled pool features."""
    kw = {k: v[k] for k in ("strength", "power", "n_common") if k in v}
    if "smooth" in v:
        kw["label_smoothing"] = v["smooth"]
    t = AnchoredTuner(w0, **kw)
    if "kd" in v:
        _fit_soft(t, xl, yl, v)
    else:
        t.fit(xl, yl)
    w = t.class_embeddings
    st, s0t = logits(xt, w), logits(xt, w0)
    lab = np.unique(yl)
    b = np.zeros(w0.shape[0])
    mode = v.get("bias")
    if mode:
        if mode.startswith("L"):  # labeled non-members
            g = logits(xl, w) - logits(xl, w0)
            for c in lab:
                b[c] = g[yl != c, c].mean() if (yl != c).any() else 0.0
        elif mode.startswith("R"):
            g = logits(ref, w) - logits(ref, w0)
            q = v.get("q")
            gl = g[:, lab]
            b[lab] = gl.mean(0) if q is None else np.quantile(gl, q, axis=0)
        elif mode == "cap":  # no labeled class above gamma * max(zero-shot mass, 1/K) on the pool
            sr, s0r = logits(ref, w), logits(ref, w0)
            m0 = softmax(s0r, axis=1).mean(0)
            cap = v["gamma"] * np.maximum(m0, 1.0 / w0.shape[0])
            for _ in range(50):
                m = softmax(sr - b, axis=1).mean(0)
                b[lab] = np.maximum(0.0, b[lab] + np.log(m[lab] / cap[lab]))
        elif mode == "prior":
            sr, s0r = logits(ref, w), logits(ref, w0)
            m0 = softmax(s0r, axis=1).mean(0)
            for _ in range(30):
                m = softmax(sr - b, axis=1).mean(0)
                b[lab] += np.log(m[lab] / m0[lab])
        if v.get("clip0"):
            b = np.maximum(b, 0.0)
    return (st - b).argmax(1), s0t.argmax(1)


def _fit_soft(t, xl, yl, v):
    """AnchoredTuner.fit with soft targets: a share ``kd`` of the zero-shot prediction."""
    from scipy.optimize import minimize
    from vlal.tuners import _check_fit, _cosine_ce, _onehot
    from vlal._validation import l2_normalize
    x, y = _check_fit(xl, yl, t.n_classes)
    w0 = t.initial_embeddings.astype(np.float64)
    K, d = w0.shape
    lam = t.penalties(y)[:, None]
    u = np.linalg.svd(x, full_matrices=False)[2][: t.n_common].T
    tgt = _onehot(y, K)
    tgt = (1 - v["kd"]) * tgt + v["kd"] * softmax(x @ w0.T / t.temperature, axis=1)

    def project(a):
        return a - (a @ u) @ u.T

    def loss_grad(flat):
        dlt = project(flat.reshape(K, d))
        loss, g, _ = _cosine_ce(w0 + dlt, x, tgt, t.temperature)
        loss += float((lam * dlt * dlt).sum())
        return loss, project(g + 2 * lam * dlt).ravel()

    res = minimize(loss_grad, np.zeros(K * d), jac=True, method="L-BFGS-B", options={"maxiter": t.max_iter})
    t.class_embeddings = l2_normalize(w0 + project(res.x.reshape(K, d)), "class_embeddings")


VARIANTS = {
    "anchored (default)": {},
    "n_common=2": {"n_common": 2},
    "n_common=4": {"n_common": 4},
    "n_common=8": {"n_common": 8},
    "strength=4": {"strength": 4.0},
    "bias: labeled non-members mean": {"bias": "L"},
    "bias: pool mean gain": {"bias": "R"},
    "bias: pool median gain": {"bias": "R", "q": 0.5},
    "bias: pool q90 gain": {"bias": "R", "q": 0.9},
    "prior match on pool": {"bias": "prior"},
    "cap 1.0": {"bias": "cap", "gamma": 1.0},
    "cap 1.5": {"bias": "cap", "gamma": 1.5},
    "cap 2.0": {"bias": "cap", "gamma": 2.0},
    "smooth 0.1": {"smooth": 0.1},
    "smooth 0.3": {"smooth": 0.3},
    "smooth 0.05": {"smooth": 0.05},
    "smooth 0.2": {"smooth": 0.2},
    "smooth 0.1 + cap 2.0": {"smooth": 0.1, "bias": "cap", "gamma": 2.0},
    "smooth 0.1 + cap 1.5": {"smooth": 0.1, "bias": "cap", "gamma": 1.5},
    "smooth 0.3 + cap 2.0": {"smooth": 0.3, "bias": "cap", "gamma": 2.0},
    "kd 0.3": {"kd": 0.3},
    "kd 0.6": {"kd": 0.6},
}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default="imagenet_real_even,flowers102,dtd")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--variants", default="", help="names separated by ';' (default all)")
    ap.add_argument("--cache", default="/tmp/tunerfix_picks.json")
    ap.add_argument("--out", default="", help="writes OUT.json and OUT.md")
    a = ap.parse_args(argv)
    seeds = [int(s) for s in a.seeds.split(",")]
    strategies = a.strategies.split(",")
    variants = {k: VARIANTS[k] for k in (a.variants.split(";") if a.variants else VARIANTS)}
    cache = json.loads(Path(a.cache).read_text()) if Path(a.cache).exists() else {}
    rows = []
    for name in a.datasets.split(","):
        t0 = time.time()
        ds, picks = picks_for(name, seeds, strategies, cache)
        write_text_atomic(Path(a.cache), json.dumps(cache))
        for seed in seeds:
            w0, keep = zero_shot_proxy(ds, random_state=seed)
            x, y = ds.pool_features[keep], ds.pool_labels[keep]
            xt, yt = ds.test_features, ds.test_labels
            for s in strategies:
                pk = picks[(seed, s)]
                lab = np.unique(y[pk])
                in_lab = np.isin(yt, lab)
                for vn, v in variants.items():
                    pred, zt = variant_predict(v, w0, x[pk], y[pk], x, xt)
                    lost = (pred != yt) & (zt == yt)
                    gained = (pred == yt) & (zt != yt)
                    rows.append({"dataset": name, "seed": seed, "strategy": s, "variant": vn,
                                 "accuracy": 100 * float((pred == yt).mean()), "zero_shot": 100 * float((zt == yt).mean()),
                                 "gained_labeled": int((gained & in_lab).sum()), "lost_labeled": int((lost & in_lab).sum()),
                                 "taken_over": int((lost & ~in_lab & np.isin(pred, lab)).sum())})
        print(f"{name}: {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    md = summary_md(rows, a.datasets.split(","), strategies, variants, seeds)
    print(md)
    if a.out:
        cmd = "OMP_NUM_THREADS=1 python benchmarks/tunerfix_explore.py " + shlex.join(argv if argv is not None else sys.argv[1:])
        head = ["# tunerfix_explore", "", (__doc__ or "").strip().splitlines()[0], "", "Command:", "", f"    {cmd}", "", NOTE, ""]
        write_text_atomic(Path(a.out).with_suffix(".json"), json.dumps({"command": cmd, "rows": rows}, indent=1))
        write_text_atomic(Path(a.out).with_suffix(".md"), "\n".join(head) + md)


NOTE = ("Picks of each strategy are fixed (one round of 1 %, nothing labeled before: they depend only on the zero-shot "
        "probabilities, as in `vlal.bench.run_benchmark`); only the tuner fitted on them changes. 'gained' = test images "
        "of a labeled class that zero-shot got wrong and the tuned model gets right; 'taken' = test images of a class "
        "without a label that zero-shot got right and the tuned model gives to a labeled class (as in "
        "`diag_calibrated_mix.md`). Variants: `n_common`, `strength` = AnchoredTuner parameters; 'bias' = a per-class "
        "logit offset subtracted after fitting, from the logit gains of the labeled classes on the labeled images of "
        "other classes (L) or on the unlabeled pool (mean / median / 90th percentile); 'prior match' = offsets that keep "
        "each labeled class's mean probability on the pool at zero-shot's; 'cap g' = offsets (>= 0) so that no labeled "
        "class's mean probability on the pool exceeds g x max(zero-shot's, 1/K); 'smooth e' = label smoothing e in the "
        "fit (AnchoredTuner(label_smoothing=e)); 'kd e' = targets (1 - e) onehot + e x zero-shot probabilities.")


def summary_md(rows, dsets, strategies, variants, seeds):
    lines = [f"## Accuracy (%), mean over {len(strategies)} strategies x {len(seeds)} seeds; gained / taken in test images", "",
             "| variant | " + " | ".join(f"{d}: acc / gained / taken" for d in dsets) + " | mean acc | calibrated-mix - cec |",
             "|---|" + "---|" * (len(dsets) + 2)]
    for vn in variants:
        cells, accs = [], []
        for d in dsets:
            q = [r for r in rows if r["variant"] == vn and r["dataset"] == d]
            acc = np.mean([r["accuracy"] for r in q])
            accs.append(acc)
            cells.append(f"{acc:.1f} / {np.mean([r['gained_labeled'] for r in q]):.1f} / {np.mean([r['taken_over'] for r in q]):.1f}")

        def m(s, vn=vn):
            return np.mean([r["accuracy"] for r in rows if r["variant"] == vn and r["strategy"] == s])
        cm = m("calibrated-mix") - m("cec") if {"calibrated-mix", "cec"} <= set(strategies) else float("nan")
        lines.append(f"| {vn} | " + " | ".join(cells) + f" | {np.mean(accs):.2f} | {cm:+.2f} |")
    for d in dsets:
        zs = np.mean([r["zero_shot"] for r in rows if r["dataset"] == d])
        lines += ["", f"## {d}: accuracy (%) per strategy, mean over seeds (zero-shot {zs:.1f})", "",
                  "| variant | " + " | ".join(strategies) + " |", "|---|" + "---|" * len(strategies)]
        for vn in variants:
            lines.append(f"| {vn} | " + " | ".join(
                f"{np.mean([r['accuracy'] for r in rows if r['variant'] == vn and r['strategy'] == s and r['dataset'] == d]):.1f}"
                for s in strategies) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
