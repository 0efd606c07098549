"""Variants of ``lookahead`` tried in stop 21 (issue 12), all rejected; kept so the figures can be re-made.

One round of 1 %, development seeds 5-9, the four sets, default tuner ``anchored``. The variants
are a subclass of :class:`vlal.LookAhead` registered here only (``la-variant``), not part of vlal:

- ``pick``: which score chooses the row inside each cluster (``w`` = lookahead's mixed score, ``G``
  the expected gain, ``U`` CEC's uncertainty, ``center`` nearest to the cluster centre);
- ``cw``: the K-Means weights (``w``, ``U``, ``G`` ranks, or ``uniform``); ``gpow``: weights ** gpow;
- ``n_init``: K-Means restarts (lowest weighted objective kept); ``over``: ``over * b`` clusters,
  the ``b`` of most weight kept;
- ``comb``: how the two ranks are mixed (``arith`` as lookahead, ``geo`` weighted geometric mean,
  ``min``); ``typ``: a third rank, TypiClust typicality, mixed in with this weight;
- ``unc``: the uncertainty rank (``cec`` = H^ + H_NN as lookahead, ``H`` calibrated entropy
  only, ``lc`` least confidence, ``margin``);
- ``bel="oracle"``: the expected gain computed with the **true** pool labels as beliefs (an oracle,
  not a strategy; ``oracle0.5``: half true label, half calibrated belief).
- ``errors="known"`` (stop 22, an oracle): the rows zero-shot gets wrong are known; inside each cluster a
  wrong row is picked first (then by ``w``), and ``"known-weights"`` also multiplies the K-Means
  weights by ``0.1 + wrong``. It asks how much of ``lookahead_batch_oracle.md``'s gain is knowing
  where zero-shot errs.

Always as lookahead's defaults (LookAhead's ``diversity``, ``share``, ``temper``, ``smooth`` and
``max_effect_rows`` are accepted but not read here): one pick per weighted cluster, the class-share
term on, beliefs untempered and unsmoothed, every row counted in ``G``.

    OMP_NUM_THREADS=1 python benchmarks/lookahead_variants.py [--only "la-variant[errors='known']"]

``--only`` runs the named specs (``;``-separated) and keeps the stored records of all others.
Writes ``benchmarks/results/lookahead_variants.{json,md}``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

import vlal.bench as vbench
from _study import paired_text, write_report
from vlal import LookAhead
from vlal._validation import seed_int
from vlal.bench import run_benchmark
from vlal.data import load_features
from vlal.scoring import _build_knn_index, _calibrated_entropy, _neighbor_uncertainty
from vlal.strategies._register import register
from vlal.strategies.calibrated_mix import _cluster, rank01, typicality
from vlal.strategies.lookahead import _best_per_group, class_share_curve, common_direction_similarity, lookahead_gain

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("VLAL_DATA", ROOT.parent / "shared" / "data" / "clip-vitb32"))
DATASETS = ("dtd", "caltech101", "flowers102", "imagenet_real_even")
SEEDS = (5, 6, 7, 8, 9)
BASES = ("cec", "leastconf", "lookahead")
VARIANTS = [
    "la-variant",  # must equal lookahead (checked below)
    "la-variant[pick='G']", "la-variant[pick='U']", "la-variant[pick='center']",
    "la-variant[cw='U']", "la-variant[cw='G']", "la-variant[cw='uniform']",
    "la-variant[gpow=0.5]", "la-variant[gpow=2.0]", "la-variant[gpow=4.0]",
    "la-variant[n_init=5]", "la-variant[over=2.0]", "la-variant[n_iter=5]", "la-variant[n_iter=50]",
    "la-variant[comb='geo']", "la-variant[comb='min']", "la-variant[typ=0.2]",
    "la-variant[unc='H']", "la-variant[unc='lc']", "la-variant[unc='margin']",
    "la-variant[bel='oracle']", "la-variant[bel='oracle',mix=0.0]",
    "la-variant[bel='oracle0.5']", "la-variant[bel='oracle0.5',mix=0.0]",
    "la-variant[errors='known']", "la-variant[errors='known-weights']",
]
ORACLE: dict[bytes, np.ndarray] = {}  # first pool rows -> the pool's true labels (bel="oracle", errors="known")


@register("la-variant")
class LookAheadVariant(LookAhead):
    """lookahead with the knobs listed in the module docstring (defaults = lookahead)."""

    def __init__(self, bel="belief", pick="w", cw="w", gpow=1.0, n_init=1, over=1.0, comb="arith", typ=0.0, unc="cec",
                 errors="unknown", **kw):
        super().__init__(**kw)
        self.errors = errors
        self.bel, self.pick, self.cw, self.gpow, self.n_init = bel, pick, cw, gpow, n_init
        self.over, self.comb, self.typ, self.unc = over, comb, typ, unc

    def _query(self, pool, budget, rng):
        self._check_params()
        cand, z, p, logits, belief = self._candidate_inputs(pool)
        m = cand.size
        truth = ORACLE[np.asarray(pool.features[:4]).tobytes()][cand] if self.bel != "belief" or self.errors != "unknown" else None
        wrong = np.zeros(m) if truth is None else (p.argmax(1) != truth).astype(np.float64)
        if self.bel.startswith("oracle"):
            lam = float(self.bel[len("oracle"):] or 1.0)
            belief = lam * np.eye(p.shape[1])[truth] + (1 - lam) * belief
        zf = z.astype(np.float32)
        index = _build_knn_index(zf, "auto", None, "auto")
        u = z.mean(axis=0)
        u /= np.linalg.norm(u)
        s_pts, pi_pts = class_share_curve(z, belief)
        g = lookahead_gain(logits, belief, common_direction_similarity(z, z, u), np.arange(m), float(self.beta),
                           int(self.n_labels), np.interp(z @ z.T, s_pts, pi_pts))
        if self.unc == "lc":
            unc = 1 - p.max(1)
        elif self.unc == "margin":
            s = np.sort(p, axis=1)
            unc = s[:, -2] - s[:, -1]
        else:
            unc = _calibrated_entropy(p, int(self.top_n))
            if self.unc == "cec":
                unc = unc + _neighbor_uncertainty(zf, unc, int(self.k), float(self.alpha), index, "auto")
        rg, ru, mix = rank01(g), rank01(unc), float(self.mix)
        if self.comb == "geo":
            w = np.exp((1 - mix) * np.log(rg + 1e-3) + mix * np.log(ru + 1e-3))
        elif self.comb == "min":
            w = np.minimum(rg, ru)
        else:
            w = (1 - mix) * rg + mix * ru
        if self.typ > 0:
            w = (1 - self.typ) * rank01(w) + self.typ * rank01(typicality(zf, 20))
        seed = seed_int(self.random_state, rng)
        tie = np.random.default_rng([seed, 1]).permutation(m)
        weights = np.ones(m) if self.cw == "uniform" else rank01({"w": w, "U": unc, "G": g}[self.cw]) + 1e-3
        weights = weights ** float(self.gpow)
        if self.errors == "known-weights":
            weights = weights * (0.1 + wrong)
        nc = min(m, int(round(float(self.over) * budget)))
        best = None
        for i in range(int(self.n_init)):
            centres, assign = _cluster(zf, weights, nc, seed + 7919 * i, int(self.n_iter), "k-means++", "auto")
            obj = float((weights * ((zf - centres[assign]) ** 2).sum(1)).sum())
            if best is None or obj < best[0]:
                best = (obj, centres, assign)
        _, centres, assign = best
        key = -((zf - centres[assign]) ** 2).sum(1) if self.pick == "center" else {"w": w, "G": g, "U": unc}[self.pick]
        if self.errors != "unknown":  # a row zero-shot gets wrong first (key <= 1 for w, G and U ranks do not matter)
            key = key + (np.ptp(key) + 1.0) * wrong
        order = np.lexsort((tie, -key))
        if nc > budget:  # keep the budget clusters of most weight
            kept = np.argsort(-np.bincount(assign, weights=weights, minlength=nc))[:budget]
            order = np.concatenate([order[np.isin(assign[order], kept)], order[~np.isin(assign[order], kept)]])
            assign = np.where(np.isin(assign, kept), assign, -1 - np.arange(m))  # rows of dropped clusters: singletons
        return cand[_best_per_group(order, assign, budget)], w


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    out = ROOT / "benchmarks" / "results" / "lookahead_variants"
    orig = vbench.zero_shot_proxy

    def proxy_with_truth(ds, random_state=None):  # lets bel="oracle" see the pool's true labels
        w0, keep = orig(ds, random_state=random_state)
        ORACLE[np.asarray(ds.pool_features[keep][:4]).tobytes()] = ds.pool_labels[keep]
        return w0, keep

    vbench.zero_shot_proxy = proxy_with_truth
    specs = list(BASES) + VARIANTS
    only = [s.strip() for s in (argv or [])[1].split(";")] if argv and argv[0] == "--only" else None
    recs = []
    if only is not None:  # keep the stored records of every other spec
        unknown = sorted(set(only) - set(specs))
        if unknown:
            raise SystemExit(f"--only: not in VARIANTS/BASES: {unknown}")
        recs = [r for r in json.loads(out.with_suffix(".json").read_text())["records"] if r["strategy"] not in only]
    for name in DATASETS:
        ds = load_features(DATA / f"{name}.npz")
        t0 = time.time()
        new = run_benchmark(ds, only or specs, n_rounds=1, seeds=SEEDS, progress=False)
        recs += new if only is None else [r for r in new if r["round"] == 1]
        print(f"{name}: {time.time() - t0:.0f} s", flush=True)
    acc = {(r["strategy"], r["dataset"], r["seed"]): r["accuracy"] for r in recs if r["round"] == 1}
    zs = {d: np.mean([r["accuracy"] for r in recs if r["round"] == 0 and r["dataset"] == d]) for d in DATASETS}
    same = all(acc[("la-variant", d, s)] == acc[("lookahead", d, s)] for d in DATASETS for s in SEEDS)
    lines = ["# lookahead_variants", "", "Stop 21 (issue 12): variants of `lookahead` on the development seeds 5-9, one round of 1 %, "
             "default tuner (`anchored`). Accuracy (%), mean over seeds; paired differences over the 20 dataset x seed "
             "pairs, mean ± 95 % CI (paired t), wins. The knobs are described in `benchmarks/lookahead_variants.py`.", "",
             "    OMP_NUM_THREADS=1 python benchmarks/lookahead_variants.py",
             "    OMP_NUM_THREADS=1 python benchmarks/lookahead_variants.py --only \"la-variant[errors='known'];la-variant[errors='known-weights']\"  # stop 22", "",
             f"`la-variant` with its defaults reproduces `lookahead` on every run: {same}.", "",
             "| spec | " + " | ".join(DATASETS) + " | 4-set mean | vs cec | vs leastconf | vs lookahead |",
             "|---|" + "---|" * (len(DATASETS) + 4),
             "| zero-shot | " + " | ".join(f"{zs[d]:.1f}" for d in DATASETS) + f" | {np.mean(list(zs.values())):.1f} | | | |"]
    for spec in specs:
        mu = [np.mean([acc[(spec, d, s)] for s in SEEDS]) for d in DATASETS]
        cells = []
        for base in BASES:
            if base == spec:
                cells.append("")
                continue
            cells.append(paired_text([acc[(spec, d, s)] - acc[(base, d, s)] for d in DATASETS for s in SEEDS]))
        lines.append(f"| `{spec}` | " + " | ".join(f"{v:.1f}" for v in mu) + f" | {np.mean(mu):.2f} | " + " | ".join(cells) + " |")
    write_report(out, recs, lines)


if __name__ == "__main__":
    sys.exit(main())
