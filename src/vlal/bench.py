"""Benchmark harness: the paper's protocol on cached features, tables and plots.

For every seed, one zero-shot proxy is built and shared by all strategies of the
comparison (so differences come from the strategies alone); each strategy then runs
the loop of :func:`vlal.loop.run_active_learning` with a fresh feature-space tuner.
"""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from .data import FeatureDataset, zero_shot_proxy
from .exceptions import VlalInputError
from .loop import ZERO_SHOT_MARGIN, BelowZeroShotWarning, round_budget, run_active_learning
from .registry import make_strategy
from .tuners import DEFAULT_TUNER, make_tuner

__all__ = ["run_benchmark", "summarize", "markdown_table", "plot_curves", "write_results"]

FIELDS = ["dataset", "strategy", "seed", "round", "n_labeled", "budget_pct", "accuracy", "select_seconds", "tuner",
          "below_zero_shot"]


def run_benchmark(
    dataset: FeatureDataset,
    strategies: Sequence[str],
    *,
    n_rounds: int = 6,
    seeds: Iterable[int] = (0, 1, 2),
    budget_fraction: float = 0.01,
    tuner_factory: Callable[[np.ndarray], object] | None = None,
    tuner_inputs: str = "features",
    progress: bool = True,
    tuner_name: str | None = None,
    zero_shot_margin: float | None = ZERO_SHOT_MARGIN,
) -> list[dict]:
    """Run every strategy for every seed on ``dataset``; one record per (strategy, seed, round).

    Parameters
    ----------
    dataset : FeatureDataset
    strategies : sequence of str
        Names understood by :func:`vlal.make_strategy` (e.g. ``"cec"``, ``"pcb(entropy)"``).
    n_rounds : int, default 6
    seeds : iterable of int, default (0, 1, 2)
        Each seed fixes the zero-shot proxy and seeds the strategies' ``random_state``
        (a ``numpy.random.Generator``, so each round draws afresh).
    budget_fraction : float, default 0.01
        Queries per round as a fraction of the initial pool (at least 1).
    tuner_factory : callable ``W0 -> Tuner``, optional
        Default: the registry's default tuner (:data:`vlal.tuners.DEFAULT_TUNER`,
        :class:`~vlal.tuners.AnchoredTuner`). E.g.
        ``lambda w0: vlal.clip.CoOp(clip, class_names)`` for the paper's CoOp.
    tuner_inputs : {"features", "paths"}, default "features"
        What the tuner consumes: the cached features (feature-space tuner, CoOp), or the
        image paths stored by ``vlal embed`` (VPT, MaPLe, which run the image encoder).
    progress : bool
        tqdm progress bar over (seed, strategy) runs.
    tuner_name : str, optional
        Written in the records' ``tuner`` field (default: the default tuner's name when
        ``tuner_factory`` is None, else ``"custom"``).
    zero_shot_margin : float or None, default 0.03
        The loop's guard (see :func:`~vlal.loop.run_active_learning`): rounds more than this
        fraction below zero-shot are flagged ``below_zero_shot`` in the records, and one
        :class:`~vlal.loop.BelowZeroShotWarning` summarising them is raised at the end.

    Returns
    -------
    list of dict
        Keys: dataset, strategy, seed, round, n_labeled, budget_pct, accuracy (percent),
        select_seconds, tuner, below_zero_shot. Round 0 is zero-shot.
    """
    from tqdm.auto import tqdm

    if tuner_factory is None:
        tuner_name = tuner_name or DEFAULT_TUNER
        tuner_factory = lambda w0: make_tuner(DEFAULT_TUNER, w0)  # noqa: E731
    tuner_name = tuner_name or "custom"
    if tuner_inputs not in ("features", "paths"):
        raise VlalInputError(f"tuner_inputs must be 'features' or 'paths'; got {tuner_inputs!r}")
    if tuner_inputs == "paths" and (dataset.pool_paths is None or dataset.test_paths is None):
        raise VlalInputError(f"tuner_inputs='paths' needs pool_paths and test_paths in {dataset.name!r} "
                             "(write the file with `vlal embed`)")
    seeds = list(seeds)
    strategies = list(strategies)
    if not strategies:
        raise VlalInputError("strategies is empty: name at least one (see `vlal strategies`)")
    for name in strategies:  # fail before any work: a typo, or a missing extra (GCNAL: torch)
        make_strategy(name).check_dependencies()
    records: list[dict] = []
    bar = tqdm(total=len(seeds) * len(strategies), desc=dataset.name, disable=not progress)
    for seed in seeds:
        w0, keep = zero_shot_proxy(dataset, random_state=seed)
        pool_x, pool_y = dataset.pool_features[keep], dataset.pool_labels[keep]
        n_pool = pool_x.shape[0]
        b = round_budget(n_pool, budget_fraction)
        paths = tuner_inputs == "paths"
        pool_inputs = np.asarray(dataset.pool_paths)[keep].tolist() if paths else None
        test_inputs = np.asarray(dataset.test_paths).tolist() if paths else dataset.test_features
        for name in strategies:
            bar.set_postfix_str(f"seed={seed} {name}")
            with warnings.catch_warnings():  # flagged per record and summarised once below
                warnings.simplefilter("ignore", BelowZeroShotWarning)
                result = run_active_learning(
                    # A Generator, not the int: every round then draws afresh (reproducibly). An
                    # int seed would repeat the same draws each round, and on a pool stored in
                    # class order Random would keep querying the same few classes.
                    make_strategy(name, random_state=np.random.default_rng(seed)),
                    tuner_factory(w0),
                    pool_x,
                    pool_y,
                    test_inputs,
                    dataset.test_labels,
                    n_rounds=n_rounds,
                    budget=b,
                    pool_inputs=pool_inputs,
                    zero_shot_margin=zero_shot_margin,
                )
            for r in result.rounds:
                records.append(
                    {
                        "dataset": dataset.name,
                        "strategy": name,
                        "seed": int(seed),
                        "round": r.round,
                        "n_labeled": r.n_labeled,
                        # nominal B (round x fraction), or the true share once the pool ran out
                        "budget_pct": round(100.0 * (r.round * budget_fraction if r.n_labeled == r.round * b
                                                     else r.n_labeled / n_pool), 6),
                        "accuracy": 100.0 * r.accuracy,
                        "select_seconds": r.select_seconds,
                        "tuner": tuner_name,
                        "below_zero_shot": bool(r.below_zero_shot),
                    }
                )
            bar.update()
    bar.close()
    flagged = sorted({(r["strategy"], r["seed"]) for r in records if r["below_zero_shot"]})
    if flagged:
        warnings.warn(
            f"{dataset.name}: {sum(r['below_zero_shot'] for r in records)} round(s) ended more than "
            f"{100 * zero_shot_margin:g} points below zero-shot (tuner {tuner_name}; runs (strategy, seed): "
            f"{flagged[:6]}{' ...' if len(flagged) > 6 else ''}); see the records' below_zero_shot field",
            BelowZeroShotWarning, stacklevel=2)
    return records


def summarize(records: list[dict]) -> dict:
    """Mean and std (over seeds, ddof=0) of accuracy per (dataset, strategy, round)."""
    groups: dict = {}
    for r in records:
        groups.setdefault((r["dataset"], r["strategy"], r["round"]), []).append(r["accuracy"])
    return {k: (float(np.mean(v)), float(np.std(v)), len(v)) for k, v in groups.items()}


def _pct(p: float) -> str:
    return f"{p:g}"


def markdown_table(records: list[dict], report_rounds: Sequence[int] = (1, 2, 5)) -> str:
    """Table-1 layout: one block of rows per dataset (B = budget %), one column per strategy,
    ``mean ± std`` over seeds, the zero-shot accuracy in the last column; with several
    datasets an ``Average`` block (mean of the per-dataset means) closes the table.
    """
    stats = summarize(records)
    datasets = list(dict.fromkeys(r["dataset"] for r in records))
    strategies = list(dict.fromkeys(r["strategy"] for r in records))
    pct_of = {(r["dataset"], r["round"]): r["budget_pct"] for r in records}
    header = "| Dataset | B (%) | " + " | ".join(strategies) + " | Zero-shot |"
    lines = [header, "|" + "---|" * (len(strategies) + 3)]
    avg: dict = {}
    for ds in datasets:
        zs = [stats[(ds, s, 0)][0] for s in strategies if (ds, s, 0) in stats]
        zs_mean = float(np.mean(zs)) if zs else float("nan")
        avg.setdefault(("zs",), []).append(zs_mean)
        for i, r in enumerate(report_rounds):
            if not any((ds, s, r) in stats for s in strategies):
                continue  # the pool ran out before this round
            cells = []
            best = max((stats[(ds, s, r)][0] for s in strategies if (ds, s, r) in stats), default=None)
            for s in strategies:
                if (ds, s, r) not in stats:
                    cells.append("-")
                    continue
                m, sd, _ = stats[(ds, s, r)]
                avg.setdefault((s, i), []).append(m)
                cell = f"{m:.1f} ± {sd:.1f}"
                cells.append(f"**{cell}**" if best is not None and m == best else cell)
            pct = _pct(pct_of.get((ds, r), float("nan")))
            lines.append(f"| {ds if i == 0 else ''} | {pct} | " + " | ".join(cells) + f" | {f'{zs_mean:.1f}' if i == 0 else ''} |")
    if len(datasets) > 1:
        for i, r in enumerate(report_rounds):
            means = {s: float(np.mean(avg[(s, i)])) for s in strategies if len(avg.get((s, i), [])) == len(datasets)}
            if not means:
                continue
            best = max(means.values(), default=None)
            cells = [("-" if s not in means else (f"**{means[s]:.1f}**" if means[s] == best else f"{means[s]:.1f}")) for s in strategies]
            pct = _pct(pct_of.get((datasets[0], r), float("nan")))
            zs = f"{np.mean(avg[('zs',)]):.1f}" if i == 0 else ""
            lines.append(f"| {'Average' if i == 0 else ''} | {pct} | " + " | ".join(cells) + f" | {zs} |")
    return "\n".join(lines) + "\n"


def plot_curves(records: list[dict], path) -> None:
    """Accuracy vs round (mean ± std over seeds), one panel per dataset, like the paper's Fig. 5."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stats = summarize(records)
    datasets = list(dict.fromkeys(r["dataset"] for r in records))
    strategies = list(dict.fromkeys(r["strategy"] for r in records))
    rounds = sorted({r["round"] for r in records})
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.2 * len(datasets), 4.2), squeeze=False)
    cmap = plt.get_cmap("tab10" if len(strategies) <= 10 else "tab20")
    colors = {s: ("black" if s == "cec" else cmap(i % cmap.N)) for i, s in enumerate(strategies)}
    for ax, ds in zip(axes[0], datasets):
        for s in strategies:
            pts = [(r, *stats[(ds, s, r)][:2]) for r in rounds if (ds, s, r) in stats]
            if not pts:
                continue
            x, m, sd = map(np.asarray, zip(*pts))
            ax.plot(x, m, marker="o", ms=3, label=s, color=colors[s], lw=2.4 if s == "cec" else 1.3)
            ax.fill_between(x, m - sd, m + sd, color=colors[s], alpha=0.10)
        ax.set_title(ds)
        ax.set_xlabel("round (0 = zero-shot)")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_results(records: list[dict], out_dir, prefix: str = "bench", command: str | None = None,
                  report_rounds: Sequence[int] = (1, 2, 5), note: str | None = None) -> dict[str, Path]:
    """Write ``{prefix}.csv``, ``{prefix}.json``, ``{prefix}.md`` and ``{prefix}.png`` to ``out_dir``.

    Returns the paths written, by kind.
    """
    out = Path(out_dir)
    paths = {k: out / f"{prefix}.{k}" for k in ("csv", "json", "md", "png")}
    paths["csv"].parent.mkdir(parents=True, exist_ok=True)
    with open(paths["csv"], "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(records)
    paths["json"].write_text(json.dumps({"command": command, "records": records}, indent=1))
    md = [f"# {prefix}", ""]
    if note:
        md += [note, ""]
    if command:
        md += ["Command:", "", f"    {command}", ""]
    seeds = sorted({r["seed"] for r in records})
    tuners = sorted({str(r.get("tuner", "?")) for r in records})
    md += [f"Test accuracy (%), mean ± std over seeds {seeds}; B = labeled budget as % of the pool; best per row in bold; "
           f"tuner: {', '.join(tuners)}; Zero-shot = round 0 of the same data.", ""]
    low = [r for r in records if r.get("below_zero_shot")]
    if low:
        md += [f"**Guard**: {len(low)} of {sum(r['round'] > 0 for r in records)} rounds ended more than 3 points below "
               "zero-shot (`below_zero_shot` in the CSV).", ""]
    md.append(markdown_table(records, report_rounds))
    paths["md"].write_text("\n".join(md))
    plot_curves(records, paths["png"])
    return paths
