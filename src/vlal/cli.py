"""The ``vlal`` command line: ``vlal select``, ``vlal bench``, ``vlal strategies``."""

from __future__ import annotations

import contextlib
import shlex
import sys
from pathlib import Path

import click
import numpy as np

from .exceptions import VlalInputError


def _load_array(spec: str, default_key: str) -> np.ndarray:
    """``file.npy`` or ``file.npz`` (key ``default_key``) or ``file.npz:key``; memory-mapped for .npy."""
    path, _, key = spec.partition(":") if spec.count(":") == 1 and not Path(spec).exists() else (spec, "", "")
    p = Path(path)
    if not p.exists():
        raise click.BadParameter(f"no such file: {p}")
    if p.suffix == ".json" or (p.is_dir() and (p / "manifest.json").is_file()):
        from .shards import ShardedFeatures  # float16 shards + manifest: read lazily, never whole

        return ShardedFeatures(p)
    if p.suffix == ".npy":
        return np.load(p, mmap_mode="r")
    if p.suffix == ".npz":
        with np.load(p) as z:
            k = key or default_key
            if k not in z.files:
                raise click.BadParameter(f"{p} has no key {k!r}; keys: {z.files} (use FILE.npz:KEY)")
            return z[k]
    raise click.BadParameter(f"{p}: expected a .npy or .npz file")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vlal")
def main():
    """Active-learning query strategies for vision-language models (CEC and baselines)."""


@main.command("strategies")
def strategies_cmd():
    """List the strategy names accepted by --strategy / --strategies."""
    from .registry import available_strategies

    for name in available_strategies():
        click.echo(name)


@main.command("select")
@click.option("--features", required=True, help="Pool features (n, d): .npy, .npz (key pool_features), FILE.npz:KEY "
              "or a shard manifest.json (see vlal.shards; streamed by cec).")
@click.option("--probs", required=True, help="Class probabilities (n, K): .npy, .npz (key probs), FILE.npz:KEY "
              "or a shard manifest.json.")
@click.option("--budget", required=True, type=int, help="Number of rows to query.")
@click.option("--strategy", default="cec", show_default=True, help="Strategy name (see `vlal strategies`).")
@click.option("--labeled", default=None, help="Indices (or a boolean mask) of labeled rows: .npy/.npz.")
@click.option("--labels", default=None, help="Classes of the labeled rows (label-aware strategies): .npy/.npz.")
@click.option("--seed", default=0, type=int, show_default=True, help="random_state of the strategy.")
@click.option("--out", default="queried.npy", show_default=True, type=click.Path(dir_okay=False), help="Where to write the chosen indices (.npy; .txt/.csv for text).")
def select_cmd(features, probs, budget, strategy, labeled, labels, seed, out):
    """Choose BUDGET pool rows to label and write their indices."""
    from .registry import make_strategy

    outp = Path(out)
    if outp.suffix not in (".npy", ".txt", ".csv"):
        raise click.BadParameter(f"{out}: use a .npy, .txt or .csv file name", param_hint="--out")
    with _user_errors():
        strat = make_strategy(strategy, random_state=seed)
        f = _load_array(features, "pool_features")
        p = _load_array(probs, "probs")
        lab = None if labeled is None else _load_array(labeled, "labeled")
        lbl = None if labels is None else _load_array(labels, "labels")
        idx = strat.select(f, p, budget, labeled=lab, labels=lbl)
        if outp.suffix == ".npy":
            np.save(outp, idx)
        else:
            np.savetxt(outp, idx, fmt="%d")
    click.echo(f"{strat!r}: queried {idx.size} of {f.shape[0]} rows -> {outp}")


@main.command("bench")
@click.option("--data", "data", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Feature .npz (repeatable). Default: the embedded synthetic pool.")
@click.option("--strategies", default="random,entropy,cec", show_default=True, help="Comma-separated strategy names.")
@click.option("--rounds", default=6, type=click.IntRange(min=1), show_default=True)
@click.option("--seeds", default=3, type=click.IntRange(min=1), show_default=True, help="Number of seeds (0..N-1).")
@click.option("--budget-fraction", default=0.01, type=click.FloatRange(0, 1, min_open=True), show_default=True,
              help="Queries per round as a fraction of the initial pool.")
@click.option("--out", default="bench-out", show_default=True, type=click.Path(file_okay=False))
@click.option("--prefix", default="bench", show_default=True, help="File name stem of the outputs.")
@click.option("--report-rounds", default="1,2,5", show_default=True, help="Rounds shown in the table.")
@click.option("--tuner", type=click.Choice(["feature", "coop", "vpt", "maple"]), default="feature", show_default=True,
              help="feature = the feature-space stand-in for CoOp; coop/vpt/maple = CLIP prompt tuners "
                   "(need the [clip] extra, --clip-model/--pretrained, and a file from `vlal embed`).")
@click.option("--clip-model", default="ViT-B-32", show_default=True, help="open_clip model name (CLIP tuners).")
@click.option("--pretrained", default=None, help="open_clip tag or local checkpoint path (CLIP tuners); none = random weights.")
@click.option("--epochs", default=None, type=click.IntRange(min=1), help="Override the CLIP tuner's epochs.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def bench_cmd(data, strategies, rounds, seeds, budget_fraction, out, prefix, report_rounds, tuner, clip_model,
              pretrained, epochs, quiet):
    """Run the paper's benchmark protocol and write CSV, JSON, a Markdown table and a plot.

    See docs/benchmark.md (paper Sec. 5-6).
    """
    from .bench import run_benchmark, write_results
    from .data import load_features, make_synthetic

    names = [s.strip() for s in _split_top_level(strategies) if s.strip()]
    try:
        rr = [int(x) for x in report_rounds.split(",") if x.strip()]
    except ValueError as err:
        raise click.BadParameter(f"--report-rounds must be comma-separated integers: {report_rounds!r}") from err
    with _user_errors():
        datasets = [load_features(p) for p in data] if data else [make_synthetic()]
    note = None
    if not data:
        note = ("**Synthetic data**: the embedded default pool of `vlal.data.make_synthetic()` (clustered unit "
                "vectors, long-tailed classes, one-shot prototype zero-shot proxy); not CLIP features.")
        click.echo("No --data given: running on the embedded SYNTHETIC pool (not CLIP features).")
    records = []
    with _user_errors():
        for ds in datasets:
            factory, inputs = _clip_tuner(tuner, ds, clip_model, pretrained, epochs)
            records += run_benchmark(ds, names, n_rounds=rounds, seeds=range(seeds), budget_fraction=budget_fraction,
                                     tuner_factory=factory, tuner_inputs=inputs, progress=not quiet)
    dropped = [r for r in rr if r > rounds]
    if dropped:
        click.echo(f"note: --report-rounds {dropped} exceed --rounds {rounds} and are not shown", err=True)
    rr = [r for r in rr if r <= rounds] or [rounds]
    command = "vlal " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    with _user_errors():
        paths = write_results(records, out, prefix, command=command, report_rounds=rr, note=note)
    click.echo(paths["md"].read_text())
    click.echo("wrote " + ", ".join(str(p) for p in paths.values()))


@contextlib.contextmanager
def _user_errors():
    """Show bad input, missing files/extras and unwritable outputs as one-line CLI errors."""
    try:
        yield
    except (VlalInputError, FileNotFoundError, ImportError, PermissionError, IsADirectoryError,
            NotADirectoryError) as err:
        raise click.ClickException(str(err)) from err


def _clip_tuner(kind, ds, model_name, pretrained, epochs):
    """``(tuner_factory, tuner_inputs)`` for ``vlal bench --tuner``; the feature tuner is the default."""
    if kind == "feature":
        return None, "features"
    if ds.class_names is None:
        raise VlalInputError(f"--tuner {kind} needs class names in {ds.name!r}: write it with `vlal embed` from a folder of class sub-folders (or `vlal embed --class-names`)")
    from . import clip  # needs the [clip] extra

    model = clip.load_clip(model_name, None if pretrained in (None, "none") else pretrained)
    cls = {"coop": clip.CoOp, "vpt": clip.VPT, "maple": clip.MaPLe}[kind]
    kw = {} if epochs is None else {"epochs": epochs}
    names = [str(n) for n in ds.class_names]
    return (lambda w0: cls(model, names, **kw)), ("features" if kind == "coop" else "paths")


def _split_top_level(s: str) -> list[str]:
    """Split on commas that are not inside brackets: "pcb(cec),cec[k=10,alpha=1]"."""
    parts, depth, cur = [], 0, ""
    for ch in s:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return parts


from .clip.cli import embed as _embed_cmd  # noqa: E402  (click only; torch loads when it runs)

main.add_command(_embed_cmd)

if __name__ == "__main__":  # pragma: no cover
    main()
