"""CEC on a pool that does not fit in memory: 10^7 rows as float16 shards on disk (issue 14).

Two steps, each its own process (so that the selection's peak RSS, ``VmHWM``, is its own)::

    python benchmarks/bench_scale.py generate --n 10000000 --dir /work/tmp-scale
    python benchmarks/bench_scale.py select   --dir /work/tmp-scale --budget 10000

``generate`` writes a synthetic CLIP-like pool (the model of ``bench_select.make_clip_like_pool``:
clustered unit vectors, d = 512, here K = 1000 classes) block by block as float16 feature shards,
its class probabilities (one-prototype-per-class softmax at T = 0.01, the zero-shot proxy of
``bench_select``) as float16 probability shards, and the true labels. Nothing of size n x d is
ever held in memory.

``select`` opens both manifests as :class:`vlal.shards.ShardedFeatures` and runs ``vlal.CEC``
(which streams them, ``vlal._scale``): wall time per stage, peak RSS, recall@20 of the
compressed kNN index against exact search on sampled rows, the machine's load average
sampled every 15 s during the run, and the class coverage of the picks. The result is written
as JSON (``--out``); ``--append-md`` adds the row to ``benchmarks/results/select_scaling.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import sys
import threading
import time
from pathlib import Path

import numpy as np

from vlal._io import write_text_atomic

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
D, T = 512, 0.01


def clip_like_blocks(n: int, n_classes: int, seed: int = 0, chunk: int = 65536, modes: int = 4, beta: float = 0.9):
    """Yield ``(x, y)`` blocks of the ``bench_select.make_clip_like_pool`` model, plus the
    prototypes first (``("protos", protos)``)."""
    rng = np.random.default_rng(seed)
    d = D
    lam = np.arange(1, d + 1, dtype=np.float64) ** (-beta)
    lam = np.sqrt(lam / lam.sum())
    g = rng.normal(size=d)
    g /= np.linalg.norm(g)
    centres = 1.6 * g + rng.normal(size=(n_classes, d)) * lam
    mode_c = centres[:, None, :] + 0.6 * rng.normal(size=(n_classes, modes, d)) * lam
    # within-mode noise 0.75 lam_j plus isotropic 0.02 / sqrt(d): one Gaussian draw of the summed variance
    std = np.sqrt((0.75 * lam) ** 2 + 0.02**2 / d).astype(np.float32)

    def draw(y, m):
        x = rng.standard_normal(size=(y.size, d), dtype=np.float32)
        x *= std
        x += mode_c[y, m]
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    yield "protos", draw(np.arange(n_classes), rng.integers(0, modes, size=n_classes))
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        y = rng.integers(0, n_classes, size=e - s)
        yield draw(y, rng.integers(0, modes, size=e - s)), y


def real_blocks(n: int, seed: int = 0, chunk: int = 65536):
    """As :func:`clip_like_blocks` for the realistic pool of ``bench_select.make_real_clip_pool``:
    real CLIP rows (shared/data/clip-vitb32, 749 classes) drawn with replacement + N(0, 0.02)
    per coordinate, re-normalised; prototypes first."""
    sys.path.insert(0, str(HERE))
    import bench_select

    rng = np.random.default_rng(seed)
    feats, labels, offset = [], [], 0
    for name in bench_select.REAL_FILES:
        with np.load(bench_select.REAL_DATA / f"{name}.npz") as f:
            feats.append(np.asarray(f["pool_features"], dtype=np.float32))
            labels.append(np.asarray(f["pool_labels"], dtype=np.int64) + offset)
            offset = int(labels[-1].max()) + 1
    src, src_y = np.concatenate(feats), np.concatenate(labels)

    def draw(rows):
        x = src[rows] + 0.02 * rng.standard_normal(size=(rows.size, src.shape[1]), dtype=np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    yield "protos", draw(np.array([rng.choice(np.flatnonzero(src_y == c)) for c in range(offset)]))
    for s in range(0, n, chunk):
        rows = rng.integers(0, src.shape[0], size=min(chunk, n - s))
        yield draw(rows), src_y[rows]


def softmax_probs(x: np.ndarray, w: np.ndarray, temperature: float = T) -> np.ndarray:
    logits = (x @ w.T) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=1, keepdims=True)
    return logits


def _to_float16(x: np.ndarray) -> np.ndarray:
    """float32 -> float16, bit-identical to ``x.astype(np.float16)``. numpy's cast takes a slow
    path for float16 subnormals, which are ~98 % of a K = 1000 softmax at T = 0.01 (4.5 s per
    65,536 x 1000 block here); torch's cast, when installed, takes 0.2 s."""
    try:
        import torch
    except ImportError:
        return x.astype(np.float16)
    return torch.from_numpy(np.ascontiguousarray(x)).to(torch.float16).numpy()


def generate(args) -> None:
    from vlal._io import save_npy_atomic
    from vlal.shards import ShardWriter

    root = Path(args.dir)
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    gen = (real_blocks(args.n, seed=args.seed) if args.pool == "real"
           else clip_like_blocks(args.n, args.classes, seed=args.seed))
    _, protos = next(gen)
    n_classes = protos.shape[0]
    w = (protos / np.linalg.norm(protos, axis=1, keepdims=True)).astype(np.float32)
    labels = np.empty(args.n, dtype=np.int16)
    meta = dict(model="real CLIP ViT-B/32 rows + noise 0.02" if args.pool == "real" else "synthetic CLIP-like", weights=None,
                preprocessing={"generator": "benchmarks/bench_scale.py", "pool": args.pool, "seed": args.seed,
                               "classes": int(n_classes)})
    pos = 0
    with ShardWriter(root / "features", D, **meta, normalized=True) as fw, \
            ShardWriter(root / "probs", n_classes, prefix="probs", shard_rows=2**19, **meta) as pw:
        for x, y in gen:
            fw.write(_to_float16(x))
            pw.write(_to_float16(softmax_probs(x, w)))
            labels[pos : pos + y.size] = y
            pos += y.size
            if (pos // 65536) % 16 == 0:
                print(f"generate: {pos}/{args.n} rows, {time.perf_counter() - t0:.0f} s", flush=True)
    save_npy_atomic(root / "labels.npy", labels)
    print(f"generate: done in {time.perf_counter() - t0:.0f} s", flush=True)


def _vm(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 2**20  # kB -> GiB
    return float("nan")


def select(args) -> None:
    import vlal
    from vlal import _scale
    from vlal.shards import ShardedFeatures

    root = Path(args.dir)
    loads = []
    stop = threading.Event()

    partial = Path(args.out).with_suffix(".partial.json")
    cec = None

    def sample_load():
        # Load average every 15 s; the stages finished so far go to OUT.partial.json, so a
        # run stopped early still leaves its measured figures.
        while not stop.wait(15):
            loads.append(os.getloadavg()[0])
            st = getattr(cec, "stream_stats_", None)
            if st is not None:
                snap = {"stats": {k: v for k, v in st.items()}, "peak_rss_gib": round(_vm("VmHWM"), 2),
                        "elapsed_s": round(time.perf_counter() - t0, 1), "load_avg_1min": loads[-20:]}
                write_text_atomic(partial, json.dumps(snap, indent=1, default=str) + "\n")

    t0 = time.perf_counter()
    threading.Thread(target=sample_load, daemon=True).start()
    feats = ShardedFeatures(root / "features")
    probs = ShardedFeatures(root / "probs")
    labels = np.load(root / "labels.npy")
    print(feats, probs, f"RSS after open: {_vm('VmRSS'):.2f} GiB", flush=True)
    load_before = os.getloadavg()
    cec = vlal.CEC(random_state=args.seed)
    cpu0 = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
    t0 = time.perf_counter()
    _scale.LOG = print
    if args.stream:
        _scale.STREAM_MIN_BYTES = 0
    picks = cec.select(feats, probs, args.budget)
    wall = time.perf_counter() - t0
    stop.set()
    stats = cec.stream_stats_
    res = {
        "n": feats.shape[0], "d": feats.shape[1], "classes": probs.shape[1], "budget": args.budget,
        "pool": (feats.manifest.get("preprocessing") or {}).get("pool", "synthetic"),
        "wall_s": round(wall, 1), "stages_s": {k: round(v, 1) for k, v in stats["stages_s"].items()},
        "peak_rss_gib": round(_vm("VmHWM"), 2),
        "cpu_s": round(sum(resource.getrusage(resource.RUSAGE_SELF)[:2]) - cpu0, 1),
        "recall_at_20": round(stats["recall_at_k"], 4), "recall_by_nprobe": stats["recall_by_nprobe"],
        "recall_queries": stats["recall_queries"], "nlist": stats["nlist"], "nprobe": stats["nprobe"],
        "index_gib": round(stats["index_bytes"] / 2**30, 2), "sq8_dist_err": stats["sq8_dist_err"],
        "classes_covered": int(np.unique(labels[picks]).size),
        "picks_distinct": int(np.unique(picks).size),
        "load_avg_1min": {"before": round(load_before[0], 2), "mean": round(float(np.mean(loads)), 2) if loads else None,
                          "max": round(float(np.max(loads)), 2) if loads else None, "samples": len(loads)},
        "cores": os.cpu_count(), "machine": platform.processor() or platform.machine(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "features_gib_on_disk": round(feats.nbytes / 2**30, 2), "probs_gib_on_disk": round(probs.nbytes / 2**30, 2),
        "omp_threads": os.environ.get("OMP_NUM_THREADS"),
        "command": "python benchmarks/bench_scale.py " + " ".join(sys.argv[1:]),
    }
    print(json.dumps(res, indent=1), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, json.dumps(res, indent=1) + "\n")


def report(args) -> None:
    """Add (or replace, by n) the runs of ``args.results`` in select_scaling.{json,md}."""
    sys.path.insert(0, str(HERE))
    import bench_select

    path = Path(args.out_dir) / "select_scaling.json"
    rep = json.loads(path.read_text())
    rows = {(r["n"], r.get("pool", "synthetic")): r for r in rep.get("streamed", [])}
    for f in args.results:
        r = json.loads(Path(f).read_text())
        if args.note:
            r["note"] = args.note
        rows[(r["n"], r.get("pool", "synthetic"))] = r
    rep["streamed"] = [rows[key] for key in sorted(rows)]
    write_text_atomic(path, json.dumps(rep, indent=1, default=float))
    write_text_atomic(Path(args.out_dir) / "select_scaling.md", bench_select.markdown(rep))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate")
    g.add_argument("--n", type=int, default=10_000_000)
    g.add_argument("--classes", type=int, default=1000)
    g.add_argument("--dir", required=True, help="where the shards go (10^7 rows: about 11 GB of features)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--pool", choices=("synthetic", "real"), default="synthetic",
                   help="synthetic CLIP-like (K = --classes) or real CLIP rows + noise (K = 749)")
    s = sub.add_parser("select")
    s.add_argument("--dir", required=True, help="the folder `generate` wrote")
    s.add_argument("--budget", type=int, default=10_000)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", default=str(RESULTS / "select_scaling_1e7.json"))
    s.add_argument("--stream", action="store_true", help="stream even a small pool (vlal._scale.STREAM_MIN_BYTES = 0)")
    r = sub.add_parser("report", help="add result JSON files to benchmarks/results/select_scaling.{json,md}")
    r.add_argument("results", nargs="+")
    r.add_argument("--out-dir", default=str(RESULTS))
    r.add_argument("--note", default=None)
    args = ap.parse_args(argv)
    {"generate": generate, "select": select, "report": report}[args.cmd](args)


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent / "src"))
    main()
