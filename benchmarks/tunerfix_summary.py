"""Issue 12, tuner side: the default tuner vs AnchoredTuner(label_smoothing=eps), from the study records.

Reads ``study_calibrated_mix.json`` (default tuner ``anchored``: ablation part at 1 %, 5 seeds, 4 sets;
budgets part, 3 seeds, 4 sets) and the label-smoothing runs ``tunerfix_ablation_ls*.json`` /
``tunerfix_budgets_ls*.json`` (written by ``study_calibrated_mix.py --tuner anchored-ls --name ...``), and
writes ``benchmarks/results/tunerfix_summary.{md,json}``::

    OMP_NUM_THREADS=1 python benchmarks/tunerfix_summary.py
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy import stats

from vlal._io import write_text_atomic

ROOT = Path(__file__).resolve().parents[1]
RES = ROOT / "benchmarks" / "results"
DATASETS = ("dtd", "caltech101", "flowers102", "imagenet_real_even")
STRATEGIES = ("calibrated-mix", "cec", "leastconf", "margin", "entropy", "random", "coreset", "badge")
BASELINES = ("leastconf", "margin", "entropy", "random", "coreset", "badge")


def table(records, part, rnd):
    return {(r["dataset"], r["seed"], r["strategy"]): r["accuracy"] for r in records
            if r.get("part") == part and r["round"] == rnd}


def paired(acc_a, acc_b, keys):
    d = np.array([acc_a[k] - acc_b[k] for k in keys])
    h = stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size) if d.size > 1 else float("nan")
    return float(d.mean()), float(h), int(d.size), int((d > 0).sum())


def fmt(p):
    return f"{p[0]:+.2f} ± {p[1]:.2f} ({p[3]}/{p[2]})"


def ablation_section(tuners, datasets):
    """tuners: {label: records}; the 1 % table per tuner, then the tuner effect per strategy."""
    out, js = [], {}
    tabs = {lab: table(rec, "ablation", 1) for lab, rec in tuners.items()}
    zs = {}
    for rec in tuners.values():
        for r in rec:
            if r.get("part") == "ablation" and r["round"] == 0:
                zs.setdefault(r["dataset"], []).append(r["accuracy"])
    out += ["## 1 % (one round), 4 dev sets x 5 seeds", "",
            "Test accuracy (%), mean over 5 seeds; paired differences over the 20 dataset x seed pairs, "
            "mean ± 95 % CI half-width (paired t) (wins / pairs). Best baseline = highest 4-set mean among "
            f"{', '.join(BASELINES)} under that tuner.", ""]
    for lab, t in tabs.items():
        seeds = sorted({k[1] for k in t})
        mu = {s: {d: float(np.mean([t[(d, e, s)] for e in seeds])) for d in datasets} for s in STRATEGIES}
        avg = {s: float(np.mean(list(mu[s].values()))) for s in STRATEGIES}
        best = max(BASELINES, key=avg.get)
        keys = [(d, e) for d in datasets for e in seeds]
        out += [f"### tuner: {lab}", "", "| strategy | " + " | ".join(datasets) + f" | 4-set mean | vs CEC | vs best baseline ({best}) |",
                "|---|" + "---|" * (len(datasets) + 3),
                "| zero-shot | " + " | ".join(f"{np.mean(zs[d]):.1f}" for d in datasets)
                + f" | {np.mean([np.mean(zs[d]) for d in datasets]):.1f} | | |"]
        js[lab] = {"means": mu, "four_set": avg, "best_baseline": best, "vs_cec": {}, "vs_best": {}}
        for s in STRATEGIES:
            a = {k: t[(*k, s)] for k in keys}
            c = paired(a, {k: t[(*k, "cec")] for k in keys}, keys) if s != "cec" else None
            b = paired(a, {k: t[(*k, best)] for k in keys}, keys) if s != best else None
            js[lab]["vs_cec"][s], js[lab]["vs_best"][s] = c, b
            out.append(f"| {s} | " + " | ".join(f"{mu[s][d]:.1f}" for d in datasets) + f" | {avg[s]:.1f} | "
                       f"{fmt(c) if c else ''} | {fmt(b) if b else ''} |")
        out.append("")
    labs = list(tabs)
    base = labs[0]
    for lab in labs[1:]:
        out += [f"### tuner effect: {lab} minus {base}, same picks (paired over dataset x seed)", "",
                "| strategy | " + " | ".join(datasets) + " | 4 sets (n = 20) |", "|---|" + "---|" * (len(datasets) + 1)]
        js[f"effect {lab}"] = {}
        for s in STRATEGIES:
            keys = sorted((d, e) for d, e, st in tabs[lab] if st == s)
            per = {d: float(np.mean([tabs[lab][(d, e, s)] - tabs[base][(d, e, s)] for d2, e in keys if d2 == d]))
                   for d in datasets}
            p = paired({k: tabs[lab][(*k, s)] for k in keys}, {k: tabs[base][(*k, s)] for k in keys}, keys)
            js[f"effect {lab}"][s] = {"per_dataset": per, "paired": p}
            out.append(f"| {s} | " + " | ".join(f"{per[d]:+.2f}" for d in datasets) + f" | {fmt(p)} |")
        out.append("")
    return out, js


def budgets_section(tuners, datasets):
    out, js = ["## 1 / 2 / 5 % (five rounds of 1 %), 3 seeds", "",
               f"Sets: {', '.join(datasets)}. Test accuracy (%), mean over 3 seeds; zero-shot is round 0.", ""], {}
    strategies = None
    for lab, rec in tuners.items():
        rec = [r for r in rec if r.get("part") == "budgets" and r["dataset"] in datasets]
        strategies = strategies or list(dict.fromkeys(r["strategy"] for r in rec))
        out += [f"### tuner: {lab}", "", "| dataset | B (%) | " + " | ".join(strategies) + " | zero-shot | calibrated-mix - cec (3 seeds) |",
                "|---|---|" + "---|" * (len(strategies) + 2)]
        for d in datasets:
            z = np.mean([r["accuracy"] for r in rec if r["dataset"] == d and r["round"] == 0])
            for rnd in (1, 2, 5):
                t = {(r["seed"], r["strategy"]): r["accuracy"] for r in rec if r["dataset"] == d and r["round"] == rnd}
                m = {s: float(np.mean([v for (e, st), v in t.items() if st == s])) for s in strategies}
                seeds = sorted({e for e, _ in t})
                diff = np.array([t[(e, "calibrated-mix")] - t[(e, "cec")] for e in seeds])
                js.setdefault(lab, {}).setdefault(d, {})[rnd] = {"means": m, "zero_shot": float(z), "cm_minus_cec": diff.tolist()}
                out.append(f"| {d if rnd == 1 else ''} | {rnd} | " + " | ".join(f"{m[s]:.1f}" for s in strategies)
                           + f" | {z:.1f} | {diff.mean():+.2f} |")
        out.append("")
    return out, js


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoothing", default="01", help="suffixes of the label-smoothing runs, comma-separated (ls01 = 0.1)")
    ap.add_argument("--budget-datasets", default="dtd,imagenet_real_even")
    a = ap.parse_args(argv)
    default = json.loads((RES / "study_calibrated_mix.json").read_text())["records"]
    abl = {"anchored (default)": default}
    bud = {"anchored (default)": default}
    cmds = []
    for suf in a.smoothing.split(","):
        eps = float("0." + suf[1:]) if suf.startswith("0") else float(suf)
        p = RES / f"tunerfix_ablation_ls{suf}.json"
        if p.exists():
            d = json.loads(p.read_text())
            abl[f"anchored, label_smoothing={eps:g}"] = d["records"]
            cmds.append(d["command"])
        p = RES / f"tunerfix_budgets_ls{suf}.json"
        if p.exists():
            d = json.loads(p.read_text())
            bud[f"anchored, label_smoothing={eps:g}"] = d["records"]
            cmds.append(d["command"])
    cmd = "OMP_NUM_THREADS=1 python benchmarks/tunerfix_summary.py " + " ".join(argv if argv is not None else sys.argv[1:])
    md = ["# tunerfix_summary", "", "Issue 12, tuner side. The default tuner's figures are the records of "
          "`study_calibrated_mix.json` (not re-run); the label-smoothing figures come from these commands "
          "(`;` inside `--only` separates strategy names, quote it in a shell):", "",
          *[f"    {c}" for c in cmds], "", "This page:", "", f"    {cmd}", ""]
    a_md, a_js = ablation_section(abl, DATASETS)
    b_md, b_js = budgets_section(bud, [d for d in a.budget_datasets.split(",") if d])
    md += a_md + b_md
    write_text_atomic(RES / "tunerfix_summary.json", json.dumps({"command": cmd, "ablation": a_js, "budgets": b_js}, indent=1, default=str))
    write_text_atomic(RES / "tunerfix_summary.md", "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
