"""How far is issue 12's target from everything measured? (stop 24; reads records, runs nothing)

Reads the 1 % evaluation records of ``benchmarks/results/study_calibrated_mix.json`` (one round,
seeds 0-4, the default tuner ``anchored``), keeps every strategy or variant run on all dataset x seed
pairs, and reports two hindsight choices made **on the test results** (bounds, not strategies):

- the best variant chosen separately for each dataset (its mean over the seeds);
- the best variant chosen separately for each run (dataset and seed).

Each is compared on the 4-set mean with least confidence (the best baseline), CEC and lookahead.

    python benchmarks/best_of_measured.py

Writes ``benchmarks/results/best_of_measured.md``.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from _study import paired_text
from vlal._io import write_text_atomic

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DATASETS = ("dtd", "caltech101", "flowers102", "imagenet_real_even")


def one_percent_runs(path: Path) -> tuple[dict[str, dict[tuple, float]], list[tuple], str]:
    """``{strategy: {(dataset, seed): accuracy}}`` of the strategies run on every pair, the pairs, the tuner."""
    data = json.loads(path.read_text())
    acc: dict[str, dict[tuple, float]] = defaultdict(dict)
    for r in data["records"]:
        if r["part"] == "ablation" and r["round"] == 1:
            acc[r["strategy"]][(r["dataset"], r["seed"])] = r["accuracy"]
    pairs = sorted({p for v in acc.values() for p in v}, key=lambda p: (DATASETS.index(p[0]), p[1]))
    return {s: v for s, v in acc.items() if len(v) == len(pairs)}, pairs, data["tuner"]


def report(acc, pairs, tuner: str) -> str:
    seeds = sorted({s for _, s in pairs})
    per_set = {}
    for ds in DATASETS:
        means = {s: np.mean([v[(ds, k)] for k in seeds]) for s, v in acc.items()}
        per_set[ds] = max(means, key=means.get)
    by_set = np.array([acc[per_set[ds]][(ds, k)] for ds, k in pairs])
    by_run = np.array([max(v[p] for v in acc.values()) for p in pairs])
    rows = {name: np.array([acc[name][p] for p in pairs]) for name in ("lookahead", "cec", "leastconf")}

    def means(x):
        return [float(np.mean([a for a, (ds, _) in zip(x, pairs) if ds == d])) for d in DATASETS]

    lines = ["# best_of_measured", "",
             f"Issue 12's target against everything measured: {len(acc)} strategies and variants run on all "
             f"{len(pairs)} dataset x seed pairs at 1 % (one round, seeds {seeds[0]}-{seeds[-1]}, tuner: {tuner}; "
             "records of `study_calibrated_mix.json`). The two 'best of' rows choose on the **test results** "
             "(hindsight): they bound what a choice among the measured strategies could reach, they are not "
             "strategies. Method: `benchmarks/best_of_measured.py`.", "",
             "    python benchmarks/best_of_measured.py", "",
             "| | " + " | ".join(DATASETS) + " | 4-set mean | minus leastconf (paired, 95 % CI) | minus CEC |",
             "|---|" + "---|" * (len(DATASETS) + 3)]
    for label, x in (("best variant per dataset", by_set), ("best variant per run (dataset, seed)", by_run),
                     ("lookahead", rows["lookahead"]), ("CEC", rows["cec"]), ("least confidence", rows["leastconf"])):
        d_lc = paired_text(x - rows["leastconf"]) if label != "least confidence" else ""
        d_cec = paired_text(x - rows["cec"]) if label != "CEC" else ""
        lines.append(f"| {label} | " + " | ".join(f"{m:.1f}" for m in means(x)) + f" | {x.mean():.2f} | {d_lc} | {d_cec} |")
    lines += ["", "Best variant per dataset: " + "; ".join(f"{ds}: `{per_set[ds]}`" for ds in DATASETS) + ".", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    acc, pairs, tuner = one_percent_runs(RESULTS / "study_calibrated_mix.json")
    text = report(acc, pairs, tuner)
    write_text_atomic(RESULTS / "best_of_measured.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
