"""Per-round cost of the CLIP prompt tuners (CoOp, VPT, MaPLe) on this machine, extrapolated.

One active-learning round = re-tune from the initial prompts on all labels so far, then
predict the pool (for the next query) and the test set. Training for the paper's 200
epochs on CPU takes far too long to run here, so this script times single optimisation
steps (forward + backward + SGD update through the frozen CLIP, public API
``training_loss``) at the batch sizes a fit uses, and multiplies by the number of steps
of the schedule; prediction is timed on one batch and scaled to the pool / test sizes.
Random weights are fine for timing (same arithmetic).

    python benchmarks/bench_tuners.py                      # ViT-B-32, random init, CPU
    python benchmarks/bench_tuners.py --pretrained /path/to/ViT-B-32.pt --device cuda

Writes a Markdown table (default benchmarks/results/tuner_timing.md).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from vlal.clip import VPT, CoOp, MaPLe, RandomWeightsWarning, load_clip


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def steps_per_epoch(n: int, batch: int) -> int:
    # the tuners drop the last partial batch once n >= batch (as Dassl's loader does)
    return n // batch if n >= batch else 1


def step_seconds(tuner, inputs, y, b: int, repeats: int = 3) -> float:
    """Seconds of one SGD step on a batch of ``b`` rows (best of ``repeats``, after the first)."""
    opt = torch.optim.SGD(tuner.prompt_parameters(), lr=1e-3, momentum=0.9)

    def step():
        loss = tuner.training_loss(inputs[:b], y[:b])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up
    return min(timed(step) for _ in range(repeats))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--pretrained", default=None, help="checkpoint file or cached tag (default: random weights)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--classes", type=int, default=100, help="K (Caltech101 has 100 in CoOp's split)")
    ap.add_argument("--pool", type=int, default=1600, help="pool size; labeled sets are 1 %% and 5 %% of it")
    ap.add_argument("--test", type=int, default=2500, help="test-set size (for the prediction cost)")
    ap.add_argument("--tuners", default="CoOp,VPT,MaPLe")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (default 1: on a shared CPU, more threads than free cores make "
                         "every matrix product wait for the busiest one)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "tuner_timing.md"))
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        clip = load_clip(args.model, args.pretrained, device=args.device)
    size = clip.image_size
    names = [f"object kind {i}" for i in range(args.classes)]
    labeled = [max(1, round(0.01 * args.pool)), max(1, round(0.05 * args.pool))]
    g = torch.Generator().manual_seed(0)
    paper = {"epochs": 200, "batch_size": 32}
    rows = []
    load_before = os.getloadavg()[0]
    for kind in args.tuners.split(","):
        cls = {"CoOp": CoOp, "VPT": VPT, "MaPLe": MaPLe}[kind]
        settings = [("paper: 200 ep, batch 32", 200, 32)]
        if kind != "CoOp":
            settings.append(("own default: 5 ep, batch 4", 5, 4))
        n_max = max(labeled)
        y = np.arange(n_max) % args.classes
        if kind == "CoOp":
            inputs = torch.nn.functional.normalize(torch.randn(n_max, clip.embed_dim, generator=g), dim=-1).numpy()
        else:
            inputs = torch.randn(n_max, 3, *size, generator=g)
        setup = min(timed(lambda: cls(clip, names)) for _ in range(2))  # zero-shot text features, prompt init
        tuner = cls(clip, names)
        # a step costs the same whatever n is: time each batch size once
        sizes = sorted({min(n, bs) for n in labeled for _, _, bs in settings})
        step = {b: step_seconds(tuner, inputs, y, b) for b in sizes}
        # prediction after a fit: pool (for the next query) + test
        tuner.tuned = True  # prompted forward, as after a fit
        if kind == "CoOp":
            feats = np.repeat(inputs, math.ceil(args.pool / n_max), axis=0)[: args.pool]
            pred_per_img = min(timed(lambda: tuner.predict_proba(feats)) for _ in range(2)) / args.pool
        else:
            batch = torch.randn(32, 3, *size, generator=g)
            pred_per_img = min(timed(lambda: tuner.predict_proba(batch)) for _ in range(2)) / 32
        predict = pred_per_img * (args.pool + args.test)
        for n in labeled:
            for label, epochs, bs in settings:
                b = min(n, bs)
                steps = epochs * steps_per_epoch(n, bs)
                fit = setup + steps * step[b]
                rows.append((kind, label, n, steps, b, step[b], fit, predict))
                print(f"{kind:5s} {label:27s} n={n:3d} steps={steps:4d} x {b:2d} img  step={step[b]:6.3f}s "
                      f"fit~{fit / 60:7.1f} min  predict~{predict / 60:6.1f} min", flush=True)
    load_after = os.getloadavg()[0]

    meta = (
        f"model {clip.model_name} ({'random weights' if clip.is_random else clip.pretrained}), "
        f"device {args.device}, torch {torch.__version__} with {torch.get_num_threads()} thread(s), "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs; "
        f"K = {args.classes} classes, pool {args.pool}, test {args.test}; "
        f"1-min load average {load_before:.1f} before and {load_after:.1f} after"
    )
    lines = [
        "# Per-round cost of the CLIP prompt tuners (extrapolated)",
        "",
        f"Measured with `benchmarks/bench_tuners.py`: {meta}.",
        "",
        "**These figures are extrapolated, not measured end to end**: single SGD steps (forward +",
        "backward through the frozen model + update) were timed at the batch size of the schedule and",
        "multiplied by its number of steps, plus the tuner's set-up; prediction was timed on one batch",
        "and scaled to pool + test. The CPU was shared with other jobs, so expect noise of tens of per",
        "cent. Labeled sets n are 1 % and 5 % of the pool (rounds 1 and 5 of the paper's protocol); a",
        "fit drops the last partial batch once n >= batch size (Dassl's loader), so n = 80 at batch 32",
        "is 2 steps per epoch.",
        "",
        "| tuner | settings | labeled n | steps x images | s / step | fit / round (min) "
        "| predict pool + test (min) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for kind, label, n, steps, b, step, fit, predict in rows:
        lines.append(
            f"| {kind} | {label} | {n} | {steps} x {b} | {step:.3f} | {fit / 60:.1f} | {predict / 60:.1f} |"
        )
    lines += [
        "",
        "Reading the table: a CoOp step is one text-encoder pass (forward + backward) over the K class",
        "prompts, cut after the end-of-text token (exact under the causal mask), so it hardly depends on",
        "the batch; its prediction is one more text pass plus a matrix product with cached features. VPT",
        "and MaPLe steps run the image transformer on the batch (MaPLe also the text encoder), and their",
        "prediction runs the prompted image transformer over every pool and test image each round.",
        "The paper's protocol (6 rounds x 3 seeds x 7 strategies x 6 datasets) is therefore a GPU job;",
        "on this CPU only CoOp on cached features is within reach, at roughly the fit times above.",
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
