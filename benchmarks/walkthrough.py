"""Walk-through length of one query: how many vlal functions a ``pool`` passes through.

Issue 10 (item 1) measures the layering of the middle of vlal by following one argument,
the pool features, from ``Strategy.select`` through the code. This script makes that
count re-runnable.

Method
------
A tiny in-memory pool (n = 300 rows, d = 16, K = 5 classes, budget 4, nothing labeled,
exact kNN, exact K-Means) is queried once with ``sys.setprofile`` installed. Every Python
``call`` event whose code lives in ``src/vlal`` is recorded with its module. A call is
*on the pool's path* when one of its arguments is a 2-D array (or a ``Pool``) whose
first dimension is the pool size ``n`` (the features, their normalised copy, the
probabilities), i.e. it received the pool or something computed row-for-row from it.
Reported, for the calls on the path (and, in brackets, for all vlal calls):

- ``calls``: function boundaries crossed (call events);
- ``functions``: distinct functions entered;
- ``re-entries``: how many times the sequence of modules of those calls goes back to a
  module it had left earlier (a transition ``a -> b`` where ``b`` was visited before
  and ``b != a``).

Run: ``python benchmarks/walkthrough.py [strategy ...]`` (default ``cec``); results are
printed and written to ``benchmarks/results/walkthrough.md`` when ``--write`` is given
(its ``## Before`` section, figures recorded at an earlier commit, is kept).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

import vlal
from vlal._io import write_text_atomic
from vlal.strategies.base import Pool

PKG = os.path.dirname(os.path.abspath(vlal.__file__)) + os.sep
N, D, K, BUDGET = 300, 16, 5, 4
BEFORE = "## Before"  # a section of the results file that --write keeps


def _module(code) -> str:
    path = os.path.abspath(code.co_filename)
    return path[len(PKG):].removesuffix(".py").replace(os.sep, ".")


def _on_path(frame) -> bool:
    code = frame.f_code
    for name in code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]:
        v = frame.f_locals.get(name)
        if isinstance(v, Pool) or (isinstance(v, np.ndarray) and v.ndim == 2 and v.shape[0] == N):
            return True
    return False


def walk(name: str) -> dict:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, D)).astype(np.float32)
    p = rng.dirichlet(np.ones(K), size=N).astype(np.float32)
    spec = {"cec": "cec[knn_index=exact,kmeans_mode=exact]", "gcnal": "gcnal[n_steps=2]"}.get(name, name)
    strategy = vlal.make_strategy(spec, random_state=0)
    labeled = np.arange(0, N, 30)
    kw = dict(labeled=labeled, labels=rng.integers(K, size=labeled.size)) if strategy._needs_labeled() else {}
    strategy.select(x, p, BUDGET, **kw)  # warm imports, so that only the query is traced
    events: list[tuple[str, str, bool]] = []

    def prof(frame, event, arg):
        if event == "call" and os.path.abspath(frame.f_code.co_filename).startswith(PKG):
            code = frame.f_code
            if code.co_name.startswith("<"):  # comprehensions, lambdas
                return
            events.append((_module(code), f"{_module(code)}.{code.co_qualname}", _on_path(frame)))

    sys.setprofile(prof)
    try:
        strategy.select(x, p, BUDGET, **kw)
    finally:
        sys.setprofile(None)

    def summary(evs):
        mods = [m for m, _, _ in evs]
        seen, back = set(), 0
        for i, m in enumerate(mods):
            if i and m != mods[i - 1] and m in seen:
                back += 1
            seen.add(m)
        return {"calls": len(evs), "functions": len({f for _, f, _ in evs}), "re-entries": back,
                "path": [f for _, f, _ in evs]}

    return {"on_path": summary([e for e in events if e[2]]), "all": summary(events)}


def main(argv: list[str]) -> int:
    write = "--write" in argv
    names = [a for a in argv if not a.startswith("--")] or ["cec"]
    lines = ["# Walk-through of one query (benchmarks/walkthrough.py)", "",
             f"n = {N}, d = {D}, K = {K}, budget {BUDGET}, nothing labeled (10 rows for those that need them); calls into vlal functions "
             "(on the pool's path / all).", "",
             "| strategy | calls | functions | re-entries |", "|---|---|---|---|"]
    for name in names:
        r = walk(name)
        a, b = r["on_path"], r["all"]
        lines.append(f"| {name} | {a['calls']} / {b['calls']} | {a['functions']} / {b['functions']} | "
                     f"{a['re-entries']} / {b['re-entries']} |")
        print(f"{name}: path {a['calls']} calls, {a['functions']} functions, {a['re-entries']} re-entries "
              f"(all vlal: {b['calls']} / {b['functions']} / {b['re-entries']})")
        if "-v" in argv:
            print("  " + "\n  ".join(a["path"]))
    if write:
        out = Path(__file__).parent / "results" / "walkthrough.md"
        # keep the recorded "## Before" section (figures of an earlier commit) below the new table
        kept = out.read_text().partition(BEFORE)[2] if out.exists() else ""
        text = "\n".join(lines) + "\n" + (f"\n{BEFORE}{kept}" if kept else "")
        write_text_atomic(out, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
