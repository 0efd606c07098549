"""Shared by the issue-12 study scripts: paired differences with a 95 % CI (paired t), writing a report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy import stats

from vlal._io import write_text_atomic


def paired_ci(diff) -> tuple[float, float, int, int]:
    """``(mean, half-width of the 95 % CI, n, wins)`` of paired differences (NaN half-width below 2 pairs)."""
    d = np.asarray(diff, dtype=np.float64)
    half = float(stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else float("nan")
    return float(d.mean()), half, int(d.size), int((d > 0).sum())


def paired_text(diff, sep: str = " ") -> str:
    """``"+0.43 ± 0.43 (13/20)"``; ``sep=" | "`` gives ``"+0.43 ± 0.43 | 13/20"`` (two table cells)."""
    m, h, n, w = paired_ci(diff)
    return f"{m:+.2f} ± {h:.2f} | {w}/{n}" if sep.strip() == "|" else f"{m:+.2f} ± {h:.2f} ({w}/{n})"


def run_resumable(run, argv, args, out: Path, script: str, order: tuple, report, show) -> None:
    """Run ``run(dataset, seed)`` for every pair of ``args.datasets`` x ``args.seeds`` not yet in
    ``out`` (JSON ``{"records", "commands"}``, rewritten atomically after each run, so a stopped
    study resumes), ``args.jobs`` processes at a time; then sort the records by ``order`` and
    seed and write ``report(records, commands) -> str`` to ``out.md``. ``show(rec)`` prints a run."""
    from concurrent.futures import ProcessPoolExecutor

    stored = json.loads(out.read_text()) if out.exists() else {"records": [], "commands": []}
    recs = stored["records"]
    done = {(r["dataset"], r["seed"]) for r in recs}
    todo = [(d, int(s)) for d in args.datasets.split(",") for s in args.seeds.split(",") if (d, int(s)) not in done]
    command = (f"OMP_NUM_THREADS=1 python benchmarks/{script} " + " ".join(argv)).strip()
    commands = stored["commands"] + [command]
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for rec in (job.result() for job in [pool.submit(run, d, s) for d, s in todo]):
            recs.append(rec)
            print(show(rec), flush=True)
            write_text_atomic(out, json.dumps({"records": recs, "commands": commands}, indent=1))
    recs.sort(key=lambda r: (order.index(r["dataset"]) if r["dataset"] in order else 99, r["seed"]))
    write_text_atomic(out, json.dumps({"records": recs, "commands": commands}, indent=1))
    text = report(recs, "\n    ".join(commands))
    write_text_atomic(out.with_suffix(".md"), text)
    print(text)


def write_report(out: Path, records: list, lines: list[str]) -> None:
    """``out.json`` (the records) and ``out.md`` (the lines), each written atomically; the table is printed."""
    write_text_atomic(out.with_suffix(".json"), json.dumps({"records": records}, indent=1))
    write_text_atomic(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
