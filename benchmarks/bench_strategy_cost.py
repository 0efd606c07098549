"""Wall time of one query of 500 picks for the strategies the README recommends (its cost figures).

Two pools of 5 * 10^4 rows, d = 512, K = 100 classes, probabilities from a one-prototype-per-class
softmax at T = 0.01 (the zero-shot proxy), nothing labeled:

- ``clustered``: CLIP-like clustered unit rows (``bench_select.make_clip_like_pool``);
- ``gaussian``: i.i.d. Gaussian rows (no cluster structure: the worst case for k-means++ seeding).

Each strategy runs once per pool (after one untimed 2,000-row warm-up of the same strategy, so
that imports and thread pools are not timed), in this process, with the machine's default
threads. Figures depend on the machine: ``platform`` and the CPU count are recorded.

    python benchmarks/bench_strategy_cost.py [--n 50000] [--budget 500] [--strategies ...]

Writes ``benchmarks/results/strategy_cost.{json,md}`` (atomically).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from bench_select import make_clip_like_pool, prototype_softmax
from vlal import make_strategy
from vlal._io import write_text_atomic

ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = ("margin", "cec", "calibrated-mix", "calibrated-mix[init='random']", "lookahead")


def pools(n: int, d: int = 512, k: int = 100, seed: int = 0):
    x, _, protos = make_clip_like_pool(n, d, k, seed=seed)
    yield "clustered", x, prototype_softmax(x, protos)
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(n, d)).astype(np.float32)
    yield "gaussian", g, prototype_softmax(g, rng.normal(size=(k, d)).astype(np.float32))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--budget", type=int, default=500)
    ap.add_argument("--strategies", default=";".join(STRATEGIES), help="';'-separated strategy names")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "strategy_cost"))
    args = ap.parse_args(argv)
    names = [s for s in args.strategies.split(";") if s]
    rows = []
    for pool, x, p in pools(args.n):
        for name in names:
            make_strategy(name, random_state=0).select(x[:2000], p[:2000], 20)  # warm-up, not timed
            t = time.perf_counter()
            picks = make_strategy(name, random_state=0).select(x, p, args.budget)
            sec = time.perf_counter() - t
            rows.append({"pool": pool, "strategy": name, "seconds": round(sec, 2), "distinct": int(np.unique(picks).size)})
            print(f"{pool:9s} {name:32s} {sec:8.1f} s", flush=True)
    command = "python benchmarks/bench_strategy_cost.py" + ("" if argv is None and len(sys.argv) == 1 else
                                                            " " + " ".join(sys.argv[1:] if argv is None else argv))
    meta = {"command": command, "n": args.n, "d": 512, "K": 100, "budget": args.budget,
            "machine": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()}
    out = Path(args.out)
    write_text_atomic(out.with_suffix(".json"), json.dumps({"meta": meta, "rows": rows}, indent=1))
    pools_seen = list(dict.fromkeys(r["pool"] for r in rows))
    lines = ["# strategy_cost", "",
             f"One query of {args.budget} picks from {args.n} rows (d = 512, K = 100, nothing labeled), wall time in "
             f"seconds on {meta['cpus']} CPUs ({meta['machine']}). Method: `benchmarks/bench_strategy_cost.py`.", "",
             f"    {command}", "",
             "| strategy | " + " | ".join(pools_seen) + " |", "|---|" + "---|" * len(pools_seen)]
    for name in names:
        cells = [f"{r['seconds']:.1f}" for pl in pools_seen for r in rows if r["pool"] == pl and r["strategy"] == name]
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    write_text_atomic(out.with_suffix(".md"), "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
