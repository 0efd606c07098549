"""How much a label's effect can be predicted before it is known (issue 12, lookahead study).

For each development seed (5-9, one round of 1 %, default tuner ``anchored``) and dataset: draw
``--candidates`` pool rows at random, add the rows ``lookahead`` picks (recomputed with the
benchmark's seed and Generator, so the same picks as ``benchmarks/lookahead_dev.py``), and for every
candidate ``x`` fit the real tuner on the single label ``(x, y)``:

- *true effect*: change of pool accuracy (%) with the oracle's label ``y(x)``;
- *belief effect*: the expected change of pool accuracy under the calibrated zero-shot beliefs
  (Eq. 5, ``top_n = 10``), averaged over the three most likely labels of ``x`` (weights = belief),
  i.e. the real-tuner version of ``lookahead``'s expected gain.

Then the tuner is fitted on ``b`` rows (the budget) chosen four ways and scored on the test split:
lookahead's picks, the top ``b`` candidates by true effect (an oracle, not a strategy), the top
``b`` by belief effect, and the first ``b`` random candidates. Writes
``benchmarks/results/lookahead_headroom.{json,md}``.

    OMP_NUM_THREADS=1 python benchmarks/lookahead_headroom.py [--datasets dtd,caltech101] [--candidates 300]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

from _study import paired_ci
from vlal import make_strategy
from vlal._io import write_text_atomic
from vlal.bench import round_budget
from vlal.data import load_features, zero_shot_proxy
from vlal.scoring import (_build_knn_index, _calibrate_block, _calibrated_entropy, _contextual_prior,
                          _neighbor_uncertainty)
from vlal.strategies.calibrated_mix import rank01, typicality
from vlal.strategies.lookahead import class_share_curve, common_direction_similarity, lookahead_gain
from vlal.tuners import AnchoredTuner

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("VLAL_DATA", ROOT.parent / "shared" / "data" / "clip-vitb32"))
WAYS = ("lookahead", "top true effect (oracle)", "top belief effect", "random")


def accuracy(tuner, x, y):
    return 100.0 * float((tuner.predict_proba(x).argmax(1) == y).mean())


def one_seed(ds, seed: int, n_cand: int) -> dict:
    w0, keep = zero_shot_proxy(ds, random_state=seed)
    x, y = ds.pool_features[keep].astype(np.float32), ds.pool_labels[keep]
    xt, yt = ds.test_features.astype(np.float32), ds.test_labels
    n = y.size
    b = round_budget(n, 0.01)
    p0 = AnchoredTuner(w0).predict_proba(x).astype(np.float64)
    belief = _calibrate_block(p0, _contextual_prior(p0, 10))
    pred0 = p0.argmax(1)
    rows = np.arange(n)
    # lookahead's picks, as the benchmark makes them (same seed, same Generator)
    la = np.asarray(make_strategy("lookahead", random_state=np.random.default_rng(seed)).select(x, p0, b))
    rng = np.random.default_rng([seed, 17])
    rand = rng.choice(n, min(n_cand, n), replace=False)
    if rand.size < b:
        raise ValueError(f"--candidates ({n_cand}) must be at least the budget ({b}): the random arm uses b of them")
    cand = np.concatenate([rand, la[~np.isin(la, rand)]])
    base_true = (pred0 == y).mean() * 100
    base_bel = belief[rows, pred0].sum()
    true_eff = np.empty(cand.size)
    bel_eff = np.zeros(cand.size)
    for i, c in enumerate(cand):
        top = np.argsort(-belief[c])[:3]
        wts = belief[c, top] / belief[c, top].sum()
        for lab, wt in zip(top, wts):
            pr = AnchoredTuner(w0).fit(x[[c]], [lab]).predict_proba(x).argmax(1)
            gain = belief[rows, pr].sum() - base_bel
            # the candidate itself is of class `lab` under this hypothesis
            gain += float(pr[c] == lab) - belief[c, pr[c]] - float(pred0[c] == lab) + belief[c, pred0[c]]
            bel_eff[i] += wt * 100.0 * gain / n
        pr = AnchoredTuner(w0).fit(x[[c]], y[[c]]).predict_proba(x).argmax(1)
        true_eff[i] = 100.0 * (pr == y).mean() - base_true
    picks = {
        "lookahead": la,
        "top true effect (oracle)": cand[np.argsort(-true_eff, kind="stable")[:b]],
        "top belief effect": cand[np.argsort(-bel_eff, kind="stable")[:b]],
        "random": rand[:b],
    }
    test = {k: accuracy(AnchoredTuner(w0).fit(x[v], y[v]), xt, yt) for k, v in picks.items()}
    return {"dataset": ds.name, "seed": seed, "budget": b, "n_candidates": int(cand.size),
            "zero_shot": accuracy(AnchoredTuner(w0), xt, yt), "test_accuracy": test,
            "spearman_belief_vs_true": float(stats.spearmanr(bel_eff, true_eff)[0]),
            "spearman_uncertainty_vs_true": float(stats.spearmanr(1 - p0[cand].max(1), true_eff)[0]),
            "mean_true_effect": float(true_eff.mean()), "share_true_effect_positive": float((true_eff > 0).mean()),
            # per candidate (pool row after the proxy, effects in accuracy points) for later analysis
            "candidates": cand.tolist(), "true_effect": np.round(true_eff, 4).tolist(), "belief_effect": np.round(bel_eff, 4).tolist()}


PROPS = ("CEC uncertainty U", "least confidence", "margin", "expected gain G", "lookahead score w", "typicality",
         "zero-shot wrong at x (oracle)")


def property_rhos(recs: list[dict], datasets: dict) -> dict:
    """Spearman rho, per run, between each candidate property (known at query time, but the last)
    and the candidate's true single-label effect; mean over the seeds of each data set."""
    out: dict = {}
    for r in recs:
        ds = datasets[r["dataset"]]
        w0, keep = zero_shot_proxy(ds, random_state=r["seed"])
        x, y = ds.pool_features[keep].astype(np.float32), ds.pool_labels[keep]
        p = AnchoredTuner(w0).predict_proba(x).astype(np.float64)
        z = x / np.linalg.norm(x, axis=1, keepdims=True)
        z64 = z.astype(np.float64)
        belief = _calibrate_block(p, _contextual_prior(p, 10))
        h = _calibrated_entropy(p, 10)
        u_cec = h + _neighbor_uncertainty(z, h, 20, 0.1, _build_knn_index(z, "auto", None, "auto"), "auto")
        mean = z64.mean(axis=0)
        s_pts, pi_pts = class_share_curve(z64, belief)
        c = np.asarray(r["candidates"])
        g = lookahead_gain(np.log(np.maximum(p, 1e-300)), belief, common_direction_similarity(z64[c], z64, mean / np.linalg.norm(mean)),
                           c, 4.0, 3, np.interp(z64[c] @ z64.T, s_pts, pi_pts))
        srt = np.sort(p, axis=1)
        props = dict(zip(PROPS, (u_cec[c], 1 - p.max(1)[c], (srt[:, -2] - srt[:, -1])[c], g,
                                 0.5 * rank01(g) + 0.5 * rank01(u_cec[c]), typicality(z, 20)[c],
                                 (p.argmax(1) != y)[c].astype(float))))
        for k, v in props.items():
            out.setdefault(r["dataset"], {}).setdefault(k, []).append(float(stats.spearmanr(v, r["true_effect"])[0]))
    return {d: {k: float(np.mean(v)) for k, v in per.items()} for d, per in out.items()}


def report(recs: list[dict], command: str, rhos: dict | None = None) -> str:
    names = list(dict.fromkeys(r["dataset"] for r in recs))
    lines = ["# lookahead_headroom", "",
             "Can a label's effect be predicted before the label is known? Development seeds 5-9, one round of 1 %, "
             "tuner `anchored` (the default), zero-shot as in the benchmark (real CLIP text embeddings for "
             "imagenet_real_even, the one-shot proxy for the others). See `benchmarks/lookahead_headroom.py` for the method.",
             "", f"    {command}", "",
             "Test accuracy (%) after fitting on `b` labels, mean over seeds:", "",
             "| dataset | seeds | b | candidates | zero-shot | " + " | ".join(WAYS) + " | rho(belief effect, true effect) | rho(1 - max p, true effect) |",
             "|---|---|---|---|---|" + "---|" * len(WAYS) + "---|---|"]
    for d in names:
        rs = [r for r in recs if r["dataset"] == d]
        cells = [f"{np.mean([r['test_accuracy'][w] for r in rs]):.1f}" for w in WAYS]
        lines.append(f"| {d} | {len(rs)} | {rs[0]['budget']} | {rs[0]['n_candidates']} | {np.mean([r['zero_shot'] for r in rs]):.1f} | "
                     + " | ".join(cells) + f" | {np.mean([r['spearman_belief_vs_true'] for r in rs]):+.2f} | "
                     f"{np.mean([r['spearman_uncertainty_vs_true'] for r in rs]):+.2f} |")
    lines += ["", "Paired differences over all dataset x seed pairs (mean ± 95 % CI, paired t):", ""]
    for a, b in (("top true effect (oracle)", "lookahead"), ("top belief effect", "lookahead"), ("top belief effect", "random")):
        m, h, n, w = paired_ci([r["test_accuracy"][a] - r["test_accuracy"][b] for r in recs])
        lines.append(f"- {a} minus {b}: {m:+.2f} ± {h:.2f} ({w}/{n} wins)")
    if rhos:
        lines += ["", "What predicts a candidate's true single-label effect? Spearman rho between a property of the "
                  "candidate and its true effect, per run, mean over the seeds (the last property needs the label):", "",
                  "| dataset | " + " | ".join(PROPS) + " |", "|---|" + "---|" * len(PROPS)]
        for d, per in rhos.items():
            lines.append(f"| {d} | " + " | ".join(f"{per[k]:+.2f}" for k in PROPS) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default="dtd,caltech101,flowers102,imagenet_real_even")
    ap.add_argument("--seeds", default="5,6,7,8,9")
    ap.add_argument("--candidates", type=int, default=300, help="random pool rows per run (plus lookahead's picks)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "lookahead_headroom"))
    ap.add_argument("--report-only", action="store_true", help="re-make the .md from the stored records")
    args = ap.parse_args(argv)
    out = Path(args.out)
    recs = json.loads(out.with_suffix(".json").read_text())["records"] if out.with_suffix(".json").exists() else []
    done = {(r["dataset"], r["seed"]) for r in recs}
    for name in [] if args.report_only else args.datasets.split(","):
        ds = load_features(DATA / f"{name}.npz")
        for seed in (int(s) for s in args.seeds.split(",")):
            if (name, seed) in done:
                continue
            t0 = time.time()
            recs.append(one_seed(ds, seed, args.candidates))
            print(name, seed, recs[-1]["test_accuracy"], f"{time.time() - t0:.0f} s", flush=True)
            prev = json.loads(out.with_suffix(".json").read_text()).get("commands", []) if out.with_suffix(".json").exists() else []
            write_text_atomic(out.with_suffix(".json"), json.dumps({"records": recs, "commands": prev}, indent=1))
    command = "OMP_NUM_THREADS=1 python benchmarks/lookahead_headroom.py " + " ".join(argv if argv is not None else sys.argv[1:])
    stored = json.loads(out.with_suffix(".json").read_text()) if out.with_suffix(".json").exists() else {}
    commands = stored.get("commands", [])
    if not args.report_only:
        commands = commands + [command.strip()]
        write_text_atomic(out.with_suffix(".json"), json.dumps({"records": recs, "commands": commands}, indent=1))
    command = "\n    ".join(commands + ([command.strip()] if args.report_only else []))
    rhos = property_rhos(recs, {d: load_features(DATA / f"{d}.npz") for d in dict.fromkeys(r["dataset"] for r in recs)})
    text = report(recs, command.strip(), rhos)
    write_text_atomic(out.with_suffix(".md"), text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
