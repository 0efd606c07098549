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


def write_report(out: Path, records: list, lines: list[str]) -> None:
    """``out.json`` (the records) and ``out.md`` (the lines), each written atomically; the table is printed."""
    write_text_atomic(out.with_suffix(".json"), json.dumps({"records": records}, indent=1))
    write_text_atomic(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
