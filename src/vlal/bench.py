"""Benchmark harness: the paper's protocol on cached features, tables and plots.

For every seed, one zero-shot proxy is built and shared by all strategies of the
comparison (so differences come from the strategies alone); each strategy then runs
the loop of :func:`vlal.loop.run_active_learning` with a fresh feature-space tuner.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import warnings
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from ._io import write_bytes_atomic, write_json_atomic, write_text_atomic
from ._validation import is_json_ints
from .data import FeatureDataset, zero_shot_proxy
from .exceptions import VlalInputError
from ._warnings import warn_caller
from .loop import ZERO_SHOT_MARGIN, BelowZeroShotWarning, check_strategy_tuner, round_budget, run_active_learning
from .registry import make_strategy
from .tuners import DEFAULT_TUNER, make_tuner

__all__ = ["run_benchmark", "summarize", "markdown_table", "plot_curves", "write_results", "check_prefix",
           "default_report_rounds", "RUN_FILE_FORMAT"]

FIELDS = ["dataset", "strategy", "seed", "round", "n_labeled", "budget_pct", "accuracy", "select_seconds",
          "zero_shot", "proxy_removed", "tuner", "below_zero_shot"]

#: ``format`` of the per-run files that ``run_benchmark(run_dir=...)`` writes.
RUN_FILE_FORMAT = "vlal-bench-run"
_RUN_FILE_VERSION = 1
#: Stored precision: accuracy in percent to 4 decimals, seconds to microseconds.
_ACC_DECIMALS, _SEC_DECIMALS = 4, 6


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
    run_dir=None,
    resume: bool = False,
    settings: dict | None = None,
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
        With ``"paths"``, strategies that probe the model in feature space (ALFA-Mix) are
        refused before any work (see :func:`check_strategy_tuner`).
    progress : bool
        tqdm progress bar that advances once per round, with an ETA.
    run_dir : path, optional
        Folder where each finished (dataset, strategy, seed) run is written at once, as a
        JSON file (atomically): its records, settings, and the queried rows as rows of
        the *file* (``labeled_file_rows``, in query order, with their ``labels``).
    resume : bool, default False
        With ``run_dir``: runs whose file exists there are read back instead of being run
        again (their settings must match, else :class:`~vlal.VlalInputError`); the records
        then equal those of an uninterrupted run, in the same order.
    settings : dict, optional
        JSON-able description of what else defines a run (tuner, CLIP weights, ...); stored
        in the run files and compared on resume.
    tuner_name : str, optional
        Written in the records' ``tuner`` field (default: the default tuner's name when
        ``tuner_factory`` is None, else ``"custom"``).
    zero_shot_margin : float or None, default 3.0
        The loop's guard (see :func:`~vlal.loop.run_active_learning`): rounds more than this
        many percentage points below zero-shot are flagged ``below_zero_shot`` in the records, and one
        :class:`~vlal.loop.BelowZeroShotWarning` summarising them is raised at the end.

    Returns
    -------
    list of dict
        Keys (``FIELDS``): dataset, strategy, seed, round, n_labeled, budget_pct,
        accuracy (test accuracy in **percent**, 4 decimals, as
        :class:`~vlal.loop.RoundResult`), select_seconds, zero_shot (``"text"``: the file's
        text embeddings; ``"proxy"``: the one-shot prototype proxy) and proxy_removed
        (pool rows the proxy took out), tuner (its registry name) and below_zero_shot (the
        loop's guard). Round 0 is zero-shot.

    Raises
    ------
    vlal.VlalInputError
        Unknown strategy, empty ``strategies``, bad ``tuner_inputs``, a strategy that cannot
        work with the tuner, a run file of other settings on resume.
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
    seeds = [int(s) for s in seeds]
    strategies = list(strategies)
    if not strategies:
        raise VlalInputError("strategies is empty: name at least one (see `vlal strategies`)")
    twice = sorted({str(n) for n in strategies if strategies.count(n) > 1})
    if twice:  # records are keyed by the name: a repeat would be reported as spread over seeds
        raise VlalInputError(f"strategies names {', '.join(twice)} more than once; name each strategy once")
    for name in strategies:  # fail before any work: a typo, or a missing extra (GCNAL: torch)
        make_strategy(name).check_dependencies()
    check_strategy_tuner(strategies, tuner_inputs)

    run_settings = None
    done: dict = {}
    if run_dir is not None:
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        run_settings = json.loads(json.dumps({
            "n_rounds": int(n_rounds), "budget_fraction": float(budget_fraction), "tuner_inputs": tuner_inputs,
            "data_fingerprint": _fingerprint(dataset), **(settings or {}),
        }))
        if resume:
            for seed in seeds:
                for name in strategies:
                    path = run_dir / _run_file_name(dataset.name, name, seed)
                    if path.exists():
                        done[(seed, name)] = _read_run_file(path, dataset.name, name, seed, run_settings,
                                                            pool_labels=dataset.pool_labels)

    records: list[dict] = []
    bar = tqdm(total=len(seeds) * len(strategies) * n_rounds, initial=len(done) * n_rounds,
               desc=dataset.name, unit="round", disable=not progress)
    try:
        for seed in seeds:
            if all((seed, name) in done for name in strategies):
                for name in strategies:
                    records += done[(seed, name)]
                continue
            w0, keep = zero_shot_proxy(dataset, random_state=seed)
            pool_x, pool_y = dataset.pool_features[keep], dataset.pool_labels[keep]
            file_rows = np.flatnonzero(keep)
            n_pool = pool_x.shape[0]
            b = round_budget(n_pool, budget_fraction)
            # B % is nominal (round x fraction) while the per-round budget is within 10 % of
            # fraction x pool; a tiny pool or fraction (rounded up to whole rows) shows the true share
            nominal = abs(b - budget_fraction * n_pool) <= 0.1 * budget_fraction * n_pool
            paths = tuner_inputs == "paths"
            pool_inputs = np.asarray(dataset.pool_paths)[keep].tolist() if paths else None
            test_inputs = np.asarray(dataset.test_paths).tolist() if paths else dataset.test_features
            zs_kind = "text" if dataset.class_embeddings is not None else "proxy"
            for name in strategies:
                if (seed, name) in done:
                    records += done[(seed, name)]
                    continue
                bar.set_postfix_str(f"seed={seed} {name}")
                ticks = []

                def tick(res, _ticks=ticks):
                    if res.round > 0:
                        _ticks.append(res.round)
                        bar.update()

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
                        callback=tick,
                        zero_shot_margin=zero_shot_margin,
                    )
                bar.update(n_rounds - len(ticks))  # the pool ran out early
                run_records = [
                    {
                        "dataset": dataset.name,
                        "strategy": name,
                        "seed": seed,
                        "round": r.round,
                        "n_labeled": r.n_labeled,
                        # nominal B (round x fraction), or the true share once the pool ran out
                        "budget_pct": round(100.0 * (r.round * budget_fraction if nominal and r.n_labeled == r.round * b
                                                     else r.n_labeled / n_pool), 6),
                        "accuracy": round(float(r.accuracy), _ACC_DECIMALS),  # percent (loop convention)
                        "select_seconds": round(float(r.select_seconds), _SEC_DECIMALS),
                        "zero_shot": zs_kind,
                        "proxy_removed": int(keep.size - n_pool),
                        "tuner": tuner_name,
                        "below_zero_shot": bool(r.below_zero_shot),
                    }
                    for r in result.rounds
                ]
                if run_dir is not None:
                    _write_run_file(run_dir / _run_file_name(dataset.name, name, seed), dataset.name, name, seed,
                                    run_settings, run_records, file_rows[result.labeled], result.labels)
                records += run_records
    finally:
        bar.close()
    flagged = sorted({(r["strategy"], r["seed"]) for r in records if r.get("below_zero_shot")})
    if flagged:
        warn_caller(
            f"{dataset.name}: {sum(bool(r.get('below_zero_shot')) for r in records)} round(s) ended more than "
            f"{zero_shot_margin:g} points below zero-shot (tuner {tuner_name}; runs (strategy, seed): "
            f"{flagged[:6]}{' ...' if len(flagged) > 6 else ''}); see the records' below_zero_shot field",
            BelowZeroShotWarning)
    return records


def _fingerprint(ds: FeatureDataset) -> str:
    """SHA-256 of the arrays that define a dataset (for resume: same data, same runs)."""
    h = hashlib.sha256()
    for key in ("pool_features", "pool_labels", "test_features", "test_labels", "shot_features", "shot_labels",
                "class_embeddings"):
        arr = getattr(ds, key)
        h.update(key.encode())
        if arr is None:
            continue
        arr = np.asarray(arr)
        h.update(f"{arr.dtype.str}{arr.shape}".encode())
        step = max(1, (1 << 24) // max(1, arr[:1].nbytes))
        for i in range(0, max(arr.shape[0], 1), step):
            h.update(np.ascontiguousarray(arr[i:i + step]).tobytes())
    return h.hexdigest()


def _run_file_name(dataset: str, strategy: str, seed: int) -> str:
    stem = re.sub(r"[^A-Za-z0-9._=-]+", "-", f"{dataset}__{strategy}")[:80].strip(".")
    tag = hashlib.sha256(json.dumps([dataset, strategy, int(seed)]).encode()).hexdigest()[:10]
    return f"{stem}__seed{int(seed)}__{tag}.json"


def _write_run_file(path: Path, dataset: str, strategy: str, seed: int, settings: dict, records: list[dict],
                    file_rows: np.ndarray, labels: np.ndarray) -> None:
    write_json_atomic(path, {
        "format": RUN_FILE_FORMAT, "version": _RUN_FILE_VERSION, "dataset": dataset, "strategy": strategy,
        "seed": int(seed), "settings": settings, "records": records,
        "labeled_file_rows": [int(i) for i in file_rows], "labels": [int(v) for v in labels],
    }, indent=1)


def _read_run_file(path: Path, dataset: str, strategy: str, seed: int, settings: dict, *,
                   pool_labels: np.ndarray | None = None) -> list[dict]:
    try:
        blob = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise VlalInputError(f"cannot resume from {path}: unreadable ({err}); delete it to redo that run") from err
    if not isinstance(blob, dict) or blob.get("format") != RUN_FILE_FORMAT:
        raise VlalInputError(f"cannot resume from {path}: not a vlal bench run file")
    if (blob.get("dataset"), blob.get("strategy"), blob.get("seed")) != (dataset, strategy, int(seed)):
        raise VlalInputError(f"cannot resume from {path}: it holds another run "
                             f"({blob.get('dataset')}, {blob.get('strategy')}, seed {blob.get('seed')})")
    old = blob.get("settings") or {}
    diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
    if diff:
        raise VlalInputError(
            f"cannot resume: {path} was made with other settings ({', '.join(diff)} differ: "
            + "; ".join(f"{k}: {old.get(k)!r} then, {settings.get(k)!r} now" for k in diff[:3])
            + "); run without --resume (after deleting that folder) to start afresh"
        )
    _check_run_records(path, blob, (dataset, strategy, int(seed)), int(settings.get("n_rounds", 0)), pool_labels)
    return list(blob["records"])


def _check_run_records(path: Path, blob: dict, key: tuple, n_rounds: int, pool_labels: np.ndarray | None) -> None:
    """Refuse a run file whose records or labeled rows vlal cannot have written (edited or damaged):
    its numbers would go into the tables unchecked."""
    def bad(what: str) -> VlalInputError:
        return VlalInputError(f"cannot resume from {path}: {what}; the file was edited or damaged, delete it "
                              "to redo that run")

    recs = blob.get("records")
    if not isinstance(recs, list) or not recs or not all(isinstance(r, dict) and set(FIELDS) <= set(r) for r in recs):
        raise bad(f"records must be a non-empty list of records with the fields {FIELDS}")
    if any((r["dataset"], r["strategy"], r["seed"]) != key for r in recs):
        raise bad("a record names another (dataset, strategy, seed)")
    rounds = [r["round"] for r in recs]
    if rounds != list(range(len(recs))) or (n_rounds and len(recs) > n_rounds + 1):
        raise bad(f"rounds must run 0, 1, ... without gaps (at most {n_rounds}); got {rounds[:8]}")
    for r in recs:
        acc = r["accuracy"]
        if isinstance(acc, bool) or not isinstance(acc, (int, float)) or not 0.0 <= acc <= 100.0:
            raise bad(f"accuracy {acc!r} of round {r['round']} is not a percentage in [0, 100]")
    n_lab = [r["n_labeled"] for r in recs]
    if not is_json_ints(n_lab) or n_lab[0] != 0 or n_lab != sorted(n_lab):
        raise bad(f"n_labeled must be integers rising from 0; got {n_lab[:8]}")
    rows, labels = blob.get("labeled_file_rows"), blob.get("labels")
    if not is_json_ints(rows) or not is_json_ints(labels) or len(rows) != len(labels) or len(rows) != n_lab[-1] or len(set(rows)) != len(rows):
        raise bad("labeled_file_rows and labels must be distinct integer rows and their classes, one per label "
                  f"of the last round ({n_lab[-1]})")
    if pool_labels is not None:
        n_rows = pool_labels.shape[0]
        if any(not 0 <= v < n_rows for v in rows):
            raise bad(f"labeled_file_rows holds rows outside the data file's pool [0, {n_rows})")
        if not np.array_equal(pool_labels[np.asarray(rows, dtype=np.int64)], np.asarray(labels, dtype=np.int64)):
            raise bad("labels differ from the data file's labels of labeled_file_rows")


def summarize(records: list[dict]) -> dict:
    """Mean and std (over seeds, ddof=0) of accuracy per (dataset, strategy, round)."""
    groups: dict = {}
    for r in records:
        groups.setdefault((r["dataset"], r["strategy"], r["round"]), []).append(r["accuracy"])
    return {k: (float(np.mean(v)), float(np.std(v)), len(v)) for k, v in groups.items()}


def _pct(p: float) -> str:
    """Budget share for the table: at most 2 decimals, no trailing zeros (1, 2.5, 4.17)."""
    return f"{p:.2f}".rstrip("0").rstrip(".") if np.isfinite(p) else f"{p}"


def default_report_rounds(last_round: int) -> list[int]:
    """The table's rounds: the paper's 1, 2, 5 (B = 1, 2, 5 %) where they exist, and always the last."""
    last = int(last_round)
    return sorted({r for r in (1, 2, 5) if r <= last} | ({last} if last >= 1 else set()))


def _cell(m: float, sd: float, n: int) -> str:
    return f"{m:.1f} ± {sd:.1f}" if n > 1 else f"{m:.1f}"  # one seed: no spread to show


def markdown_table(records: list[dict], report_rounds: Sequence[int] | None = None) -> str:
    """Table-1 layout: one block of rows per dataset (B = budget %), one column per strategy,
    ``mean ± std`` over seeds (the mean alone with one seed), the zero-shot accuracy in the
    last column; with several datasets an ``Average`` block (mean of the per-dataset means)
    closes the table.

    ``report_rounds`` default: :func:`default_report_rounds` of the last round present.
    When the zero-shot of a dataset is the one-shot prototype proxy (records with
    ``zero_shot == "proxy"``: the file has no ``text_features``), its zero-shot cell is
    marked † and a line under the table says so, with the number of pool rows the proxy
    removed.
    """
    stats = summarize(records)
    if report_rounds is None:
        report_rounds = default_report_rounds(max((r["round"] for r in records), default=0))
    datasets = list(dict.fromkeys(r["dataset"] for r in records))
    strategies = list(dict.fromkeys(r["strategy"] for r in records))
    pct_of = {(r["dataset"], r["round"]): r["budget_pct"] for r in records}
    proxy = {r["dataset"]: int(r.get("proxy_removed", 0)) for r in records if r.get("zero_shot") == "proxy"}
    header = "| Dataset | B (%) | " + " | ".join(strategies) + " | Zero-shot |"
    lines = [header, "|" + "---|" * (len(strategies) + 3)]
    avg: dict = {}
    for ds in datasets:
        zs = [stats[(ds, s, 0)][0] for s in strategies if (ds, s, 0) in stats]
        zs_mean = float(np.mean(zs)) if zs else float("nan")
        avg.setdefault(("zs",), []).append(zs_mean)
        zs_cell = f"{zs_mean:.1f}" + (" †" if ds in proxy else "")
        first = True
        for i, r in enumerate(report_rounds):
            if not any((ds, s, r) in stats for s in strategies):
                continue  # the pool ran out before this round
            cells = []
            best = max((stats[(ds, s, r)][0] for s in strategies if (ds, s, r) in stats), default=None)
            for s in strategies:
                if (ds, s, r) not in stats:
                    cells.append("-")
                    continue
                m, sd, n = stats[(ds, s, r)]
                avg.setdefault((s, i), []).append(m)
                cell = _cell(m, sd, n)
                cells.append(f"**{cell}**" if best is not None and m == best else cell)
            pct = _pct(pct_of.get((ds, r), float("nan")))
            lines.append(f"| {ds if first else ''} | {pct} | " + " | ".join(cells) + f" | {zs_cell if first else ''} |")
            first = False
    if len(datasets) > 1:
        first = True
        for i, r in enumerate(report_rounds):
            means = {s: float(np.mean(avg[(s, i)])) for s in strategies if len(avg.get((s, i), [])) == len(datasets)}
            if not means:
                continue
            best = max(means.values(), default=None)
            cells = [("-" if s not in means else (f"**{means[s]:.1f}**" if means[s] == best else f"{means[s]:.1f}")) for s in strategies]
            pct = _pct(pct_of.get((datasets[0], r), float("nan")))
            zs = f"{np.mean(avg[('zs',)]):.1f}" if first else ""
            lines.append(f"| {'Average' if first else ''} | {pct} | " + " | ".join(cells) + f" | {zs} |")
            first = False
    out = "\n".join(lines) + "\n"
    if proxy:
        removed = ", ".join(f"{n} from {ds}" for ds, n in proxy.items())
        out += (f"\n† Zero-shot = the one-shot prototype proxy, not CLIP text embeddings (the file has no "
                f"text_features): one image per class is the class embedding; pool rows removed by the proxy: "
                f"{removed}.\n")
    return out


def plot_curves(records: list[dict], path) -> None:
    """Accuracy vs round (mean ± std over seeds), one panel per dataset, like the paper's Fig. 5.

    ``path``: a file name or a binary file object; PNG is written. (Written as is: use
    :func:`write_results` for an atomic file.)
    """
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
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)


def check_prefix(prefix: str) -> str:
    """A file-name stem for the outputs: no folder part, no ``..``, nothing hidden or empty.

    Raises
    ------
    vlal.VlalInputError
        ``prefix`` holds anything but letters, digits, ``_``, ``-`` and ``.``, starts with ``.``
        or ``-``, or is empty (outputs must land inside the output folder).
    """
    p = str(prefix)
    if not re.fullmatch(r"\w[\w.-]*", p):  # letters (any script), digits, '_', then also '.' and '-'
        raise VlalInputError(
            f"prefix must be a plain file-name stem (letters, digits, '_', '-', '.'; no folders, not starting "
            f"with '.' or '-'); got {prefix!r}. Choose the folder with --out / out_dir"
        )
    return p


def _render_png(records: list[dict]) -> bytes:
    buf = io.BytesIO()
    plot_curves(records, buf)
    return buf.getvalue()


def write_results(records: list[dict], out_dir, prefix: str = "bench", command: str | None = None,
                  report_rounds: Sequence[int] | None = None, note: str | None = None) -> dict[str, Path]:
    """Write ``{prefix}.csv``, ``{prefix}.json``, ``{prefix}.md`` and ``{prefix}.png`` to ``out_dir``.

    Every file is rendered in memory first, then each is written to a temporary name in
    ``out_dir``, fsync-ed and renamed over its target (:mod:`vlal._io`): a crash never
    leaves a truncated file, and a failure while rendering leaves all old files as they
    were. Stored figures are rounded (accuracy: 4 decimals of a percent).

    Returns the paths written, by kind.

    Raises
    ------
    vlal.VlalInputError
        ``prefix`` is not a plain file-name stem (see :func:`check_prefix`).
    OSError
        ``out_dir`` cannot be created or written (nothing is half-written).
    """
    prefix = check_prefix(prefix)
    out = Path(out_dir)
    paths = {k: out / f"{prefix}.{k}" for k in ("csv", "json", "md", "png")}
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=FIELDS, extrasaction="ignore", lineterminator="\r\n")
    w.writeheader()
    w.writerows(records)
    csv_text = buf.getvalue()
    json_text = json.dumps({"command": command, "records": records}, indent=1)
    md = [f"# {prefix}", ""]
    if note:
        md += [note, ""]
    if command:
        md += ["Command:", "", f"    {command}", ""]
    seeds = sorted({r["seed"] for r in records})
    spread = f"mean ± std over seeds {seeds}" if len(seeds) > 1 else f"one seed ({seeds[0] if seeds else '-'}), no spread"
    tuners = sorted({str(r.get("tuner", "?")) for r in records})
    md += [f"Test accuracy (%), {spread}; B = labeled budget as % of the pool; best per row in bold; "
           f"tuner: {', '.join(tuners)}; Zero-shot = round 0 of the same data.", ""]
    low = [r for r in records if r.get("below_zero_shot")]
    if low:
        md += [f"**Guard**: {len(low)} of {sum(r['round'] > 0 for r in records)} rounds ended more than "
               f"{ZERO_SHOT_MARGIN:g} points below zero-shot (`below_zero_shot` in the CSV).", ""]
    md.append(markdown_table(records, report_rounds))
    md_text = "\n".join(md)
    png = _render_png(records)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(paths["csv"], csv_text, newline="")
    write_text_atomic(paths["json"], json_text)
    write_bytes_atomic(paths["png"], png)
    write_text_atomic(paths["md"], md_text)
    return paths
