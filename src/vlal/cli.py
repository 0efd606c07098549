"""The ``vlal`` command line: ``vlal select``, ``vlal bench``, ``vlal strategies``."""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
import zipfile
from pathlib import Path

import click
import numpy as np

from .exceptions import BudgetExceededError, VlalInputError
from .tuners import DEFAULT_TUNER as _DEFAULT_TUNER
from .tuners import TUNER_ALIASES as _TUNER_ALIASES
from .tuners import TUNERS as _TUNERS
from .tuners import available_tuners as _available_tuners

_FEATURE_TUNERS = _available_tuners(feature_only=True)
_CLIP_TUNERS = [n for n in _available_tuners() if n not in _FEATURE_TUNERS]
_TUNER_CHOICES = _available_tuners() + list(_TUNER_ALIASES)


def _is_manifest(p: Path) -> bool:
    """``p`` names a shard manifest: a ``.json`` file, or a folder holding ``manifest.json``."""
    return p.suffix.lower() == ".json" or (p.is_dir() and (p / "manifest.json").is_file())


class DataError(click.ClickException):
    """What a command read is unusable (exit status 1, README rule), the message led by the option."""

    def __init__(self, flag: str, message: str):
        super().__init__(f"{flag}: {message}")


def _load_array(spec: str, default_key: str, flag: str) -> np.ndarray:
    """``file.npy`` or ``file.npz`` (key ``default_key``) or ``file.npz:key``; memory-mapped for .npy.

    Never unpickles (``allow_pickle=False``): object arrays, truncated or non-numpy files
    and broken zips are refused with a one-line error naming ``flag``. A path that is wrong on
    its face (missing, not .npy/.npz/manifest, ``:KEY`` on another file) is a usage error (exit
    2); a file that cannot be read or lacks the key is a :class:`DataError` (exit 1).
    """
    path, _, key = spec.partition(":") if spec.count(":") == 1 and not Path(spec).exists() else (spec, "", "")
    p = Path(path)
    if not p.exists():
        raise click.BadParameter(f"no such file: {p}", param_hint=flag)
    if key and p.suffix.lower() != ".npz":
        raise click.BadParameter(f"{spec}: ':KEY' names an array inside an .npz; {p.name} is not one", param_hint=flag)
    if _is_manifest(p):
        from .shards import ShardedFeatures  # float16 shards + manifest: read lazily, never whole

        try:
            return ShardedFeatures(p)
        except (VlalInputError, OSError) as err:
            from ._io import describe_os_error

            raise DataError(flag, describe_os_error(err) if isinstance(err, OSError) else str(err)) from None
    if p.suffix.lower() not in (".npy", ".npz"):
        raise click.BadParameter(f"{p}: expected a .npy or .npz file", param_hint=flag)
    try:
        if p.suffix.lower() == ".npy":
            return np.load(p, mmap_mode="r", allow_pickle=False)
        with np.load(p, allow_pickle=False) as z:
            k = key or default_key
            if k not in z.files:
                hint = ""
                if k == "probs" and "pool_features" in z.files:
                    hint = ("; a `vlal embed` file holds probs only when the classes are known (class sub-folders "
                            "or --class-names), else compute them: vlal.zero_shot_probs")
                raise DataError(flag, f"{p} has no key {k!r}; keys: {z.files} (use FILE.npz:KEY){hint}")
            return z[k]
    except click.ClickException:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as err:
        from ._io import numpy_read_error

        why = numpy_read_error(err)
        raise DataError(flag, f"cannot read {p} as a numpy file: {why}") from err


def _write_indices(path: Path, idx: np.ndarray) -> None:
    """Indices to ``.npy`` (binary) or ``.txt``/``.csv`` (one per line), atomically."""
    from ._io import save_npy_atomic, write_text_atomic

    if path.suffix.lower() == ".npy":
        save_npy_atomic(path, idx)
    else:
        write_text_atomic(path, "".join(f"{int(i)}\n" for i in idx))


#: Python argument names of ``Strategy.select`` -> the ``vlal select`` flags.
_SELECT_FLAGS = {"features": "--features", "probs": "--probs", "budget": "--budget", "labeled": "--labeled",
                 "labels": "--labels", "random_state": "--seed"}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vlal")
def main():
    """Active-learning query strategies for vision-language models (CEC and baselines)."""


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Warnings of the command line as one line each (no file:line inside click or vlal)."""
    click.echo(f"Warning: {message}", err=True)


def console_main():
    """The ``vlal`` console script: :func:`main` with one-line warnings."""
    import warnings

    warnings.showwarning = _show_warning
    main()


@main.command("strategies")
def strategies_cmd():
    """List the strategy names accepted by --strategy / --strategies."""
    from .registry import available_strategies

    for name in available_strategies():
        click.echo(name)


def _input_files(given) -> list[Path]:
    """The files an input option reads (``FILE.npz:KEY`` -> ``FILE.npz``; a shard manifest or
    its folder -> the manifest and every shard it lists), resolved."""
    text = str(given)
    path = Path(text.rsplit(":", 1)[0]) if ":" in text and not Path(text).exists() else Path(text)
    files = [path.resolve()]
    if _is_manifest(path):
        from .shards import load_manifest

        try:
            m = load_manifest(path)
        except VlalInputError:
            return files  # reported when the input is read
        files += [(Path(m["root"]) / s["file"]).resolve() for s in m["shards"]]
        files.append((Path(m["root"]) / "manifest.json").resolve())
    return files


@main.command("select")
@click.option("--features", required=True, help="Pool features (n, d): .npy, .npz (key pool_features), FILE.npz:KEY "
              "or a shard manifest.json (see vlal.shards; streamed by cec).")
@click.option("--probs", required=True, help="Class probabilities (n, K): .npy, .npz (key probs), FILE.npz:KEY "
              "or a shard manifest.json.")
@click.option("--budget", required=True, type=int, help="Number of rows to query.")
@click.option("--strategy", default="cec", show_default=True, help="Strategy name (see `vlal strategies`).")
@click.option("--labeled", default=None, help="Indices (or a boolean mask) of labeled rows: .npy/.npz.")
@click.option("--labels", default=None, help="Classes of the labeled rows (label-aware strategies): .npy/.npz.")
@click.option("--seed", default=None, type=click.IntRange(min=0),
              help="random_state of the strategy [default: 0, or the random_state in the --strategy name].")
@click.option("--out", default="queried.npy", show_default=True, type=click.Path(dir_okay=False), help="Where to write the chosen indices (.npy; .txt/.csv for text); missing parent folders are created; "
              "an existing file is replaced (atomically), a read-only one is refused.")
def select_cmd(features, probs, budget, strategy, labeled, labels, seed, out):
    """Choose BUDGET pool rows to label and write their indices."""
    from ._io import check_writable_dir
    from ._validation import integer_class_ids
    from .registry import make_strategy

    outp = Path(out)
    if outp.suffix.lower() not in (".npy", ".txt", ".csv"):
        raise click.BadParameter(f"{out}: use a .npy, .txt or .csv file name", param_hint="--out")
    if outp.is_file() and (not os.access(outp, os.W_OK) or not outp.stat().st_mode & 0o222):
        # (an atomic rename would replace it all the same; the mode bits also hold for root)
        raise click.BadParameter(f"{out} exists and is read-only: vlal does not replace it; choose another file "
                                 "name or make it writable", param_hint="--out")
    for opt, given in (("--features", features), ("--probs", probs), ("--labeled", labeled), ("--labels", labels)):
        if given is not None and outp.resolve() in _input_files(given):
            raise click.BadParameter(f"{out} is an input file ({opt}): writing the picks there would destroy "
                                     "that input; choose another file name", param_hint="--out")
    if _is_manifest(Path(str(probs))) and set(_input_files(probs)) & set(_input_files(features)):
        raise click.BadParameter(f"{probs} is the shard manifest of the features (--features): probabilities are "
                                 "their own (n, K) shards; write them with vlal.shards.ShardWriter "
                                 "(docs/scale.md, 'What a user runs', step 2)", param_hint="--probs")
    with _user_errors():
        check_writable_dir(outp.parent if str(outp.parent) else ".", "folder of --out")
        if seed is None and "random_state" not in strategy:
            seed = 0
        try:
            strat = make_strategy(strategy, random_state=seed)
        except VlalInputError as err:
            msg = str(err).replace("as make_strategy's keyword", "as --seed")
            raise click.BadParameter(msg, param_hint="--strategy") from err
        f = _load_array(features, "pool_features", "--features")
        p = _load_array(probs, "probs", "--probs")
        lab = None if labeled is None else _load_array(labeled, "labeled", "--labeled")
        lbl = None if labels is None else _load_array(labels, "labels", "--labels")
        if lbl is not None:  # as --labeled: class ids are integers; 1.0 or 0.7 in a file is a mistake upstream
            try:
                integer_class_ids(lbl, "--labels")
            except VlalInputError as err:
                raise DataError("--labels", str(err).replace("--labels ", "", 1)) from None
        try:
            idx = strat.select(f, p, budget, labeled=lab, labels=lbl)
        except VlalInputError as err:  # name the CLI flag, not the Python argument
            arg = str(err).split(" ", 1)[0].split("=", 1)[0].rstrip(":,")
            flag = _SELECT_FLAGS.get(arg)
            msg = str(err).replace("pass labels=<one class per labeled row>", "pass --labels FILE (one class per "
                                   "labeled row)")
            if "labels was not given" in msg:
                flag = "--labels"
            if flag is None:
                raise click.ClickException(msg) from err
            if flag == "--seed" or (flag == "--budget" and not isinstance(err, BudgetExceededError)):
                raise click.BadParameter(msg, param_hint=flag) from err  # wrong on its face
            raise DataError(flag, msg) from err  # what the files hold (a budget above the pool included)
        _write_indices(outp, idx)
    click.echo(f"{strat!r}: queried {idx.size} of {f.shape[0]} rows -> {outp}")


@main.command("bench")
@click.option("--data", "data", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Feature .npz (repeatable). Default: the embedded synthetic pool.")
@click.option("--strategies", default="random,entropy,cec", show_default=True, help="Comma-separated strategy names.")
@click.option("--rounds", default=6, type=click.IntRange(min=1), show_default=True)
@click.option("--seeds", default=3, type=click.IntRange(min=1), show_default=True, help="Number of seeds (0..N-1).")
@click.option("--budget-fraction", default=0.01, type=click.FloatRange(0, 1, min_open=True), show_default=True,
              help="Queries per round as a fraction of the initial pool (at least 1 row; a round that finds "
                   "fewer rows left labels the rest of the pool, and the tables show the true share).")
@click.option("--out", default="bench-out", show_default=True, type=click.Path(file_okay=False),
              help="Folder of the tables, plots and run files (created, with its parents, if missing).")
@click.option("--prefix", default="bench", show_default=True,
              help="File name stem of the outputs (a name, not a path: the files go to --out).")
@click.option("--report-rounds", default=None,
              help="Rounds shown in the table, comma-separated. Default: 1, 2, 5 where they exist, and the last round.")
@click.option("--tuner", type=click.Choice(_TUNER_CHOICES), default=_DEFAULT_TUNER, show_default=True,
              help="Classifier re-tuned each round. Feature-space stand-ins (no CLIP weights): "
                   + ", ".join(_FEATURE_TUNERS) + " (see vlal.tuners; "
                   + "; ".join(f"'{a}' = old name of '{n}'" for a, n in _TUNER_ALIASES.items()) + "). "
                   + "/".join(_CLIP_TUNERS) + " = CLIP prompt tuners (need the [clip] extra, --pretrained, "
                   "and a file from `vlal embed`).")
@click.option("--clip-model", default=None,
              help="open_clip model name (CLIP tuners). Default: the model recorded in the --data file "
                   "(ViT-B-32 if none is recorded); a different one is an error.")
@click.option("--pretrained", default=None, help="open_clip tag or local checkpoint path (CLIP tuners); none = random weights.")
@click.option("--epochs", default=None, type=click.IntRange(min=1), help="Override the CLIP tuner's epochs.")
@click.option("--resume", is_flag=True,
              help="Continue an interrupted run in --out: finished (dataset, strategy, seed) runs kept in "
                   "OUT/PREFIX.runs are read back, not redone (the final tables equal an uninterrupted run's).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def bench_cmd(data, strategies, rounds, seeds, budget_fraction, out, prefix, report_rounds, tuner, clip_model,
              pretrained, epochs, resume, quiet):
    """Run the paper's benchmark protocol and write CSV, JSON, a Markdown table and a plot.

    Each finished (dataset, strategy, seed) run is written at once to OUT/PREFIX.runs/, so
    an interrupted run (Ctrl-C, a kill, a crash) continues with --resume. See
    docs/benchmark.md (paper Sec. 5-6).
    """
    from ._io import check_writable_dir, write_text_atomic
    from .bench import check_prefix, check_strategy_tuner, run_benchmark, write_results
    from .data import make_synthetic

    from .registry import split_top_level

    names = [s.strip() for s in split_top_level(strategies)]
    if not any(names):
        raise click.BadParameter("strategies is empty: name at least one (see `vlal strategies`)",
                                 param_hint="--strategies")
    if any(not n for n in names):
        raise click.BadParameter(f"{strategies!r} has an empty strategy name (two commas, or one at an end)",
                                 param_hint="--strategies")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:  # the tables and run files key each run by its strategy name
        raise click.BadParameter(f"{', '.join(dup)}: given more than once", param_hint="--strategies")
    seeded = [n for n in names if "random_state" in n]
    if seeded:  # the bench seeds every run itself (--seeds)
        raise click.BadParameter(f"{', '.join(seeded)}: the benchmark sets each run's random_state from --seeds; "
                                 "remove random_state from the name", param_hint="--strategies")
    wrong = [d for d in data if Path(d).suffix.lower() != ".npz"]
    if wrong:  # wrong on its face (exit 2), as a wrong suffix in `vlal select`
        raise click.BadParameter(f"{wrong[0]}: expected an .npz with pool_features, pool_labels, test_features, "
                                 "test_labels (what `vlal embed` writes)", param_hint="--data")
    stems = [Path(d).stem for d in data]
    twice = sorted({st for st in stems if stems.count(st) > 1})
    if twice:  # the tables, the run files and --resume key each data set by its file name
        raise click.BadParameter(
            f"{', '.join(twice)}: given more than once (or two files with the same name); each data set is "
            "named by its file name in the tables and run files: rename one", param_hint="--data")
    rr = None
    if report_rounds is not None:
        try:
            rr = [int(x) for x in report_rounds.split(",") if x.strip()]
        except ValueError as err:
            raise click.BadParameter(f"must be comma-separated integers: {report_rounds!r}",
                                     param_hint="--report-rounds") from err
        bad = [r for r in rr if not 1 <= r <= rounds]
        if bad or not rr:
            raise click.BadParameter(f"{bad or report_rounds!r}: rounds must lie in 1..--rounds ({rounds})",
                                     param_hint="--report-rounds")
        rr = sorted(set(rr))  # table rows in round order, each once
    try:
        prefix = check_prefix(prefix)
    except VlalInputError as err:
        raise click.BadParameter(str(err), param_hint="--prefix") from err
    argv = [a for a in sys.argv[1:] if a != "--resume"]
    command = "vlal " + " ".join(shlex.quote(a) for a in argv)
    out_dir = Path(out)
    run_dir = out_dir / f"{prefix}.runs"
    complete = run_dir / "COMPLETE"
    with _user_errors("bench"):
        from .registry import make_strategy

        for name in names:  # bad names, tuner or data: fail before any folder is made
            try:
                make_strategy(name)
            except VlalInputError as err:  # a usage error of --strategies, as in `vlal select --strategy`
                raise click.BadParameter(str(err), param_hint="--strategies") from err
        check_strategy_tuner(names, _bench_inputs(tuner))
        clip_tuner = _TUNERS[_TUNER_ALIASES.get(tuner, tuner)].factory is None  # a CLIP prompt tuner
        if clip_tuner:
            import importlib.util

            missing = [m for m in ("torch", "open_clip") if importlib.util.find_spec(m) is None]
            if missing:
                raise VlalInputError(f"--tuner {tuner} runs CLIP and needs the [clip] extra ({', '.join(missing)} "
                                     "not installed): pip install -e '.[clip]' in the vlal checkout")
        datasets = [_load_dataset(p) for p in data] if data else [make_synthetic()]
        if clip_tuner:
            nameless = [ds.name for ds in datasets if ds.class_names is None]
            if nameless:  # the CLIP tuner's prompts need them (checked again, per data set, by _clip_tuner)
                raise VlalInputError(f"--tuner {tuner} needs class names in {', '.join(map(repr, nameless))}: write "
                                     "the file with `vlal embed` from a folder of class sub-folders (or `vlal embed "
                                     "--class-names`)")
        # the tuners (and CLIP weights, checked against each file's) before any folder is made
        tuners = [_clip_tuner(tuner, ds, clip_model, pretrained, epochs, _recorded_model(data[i]) if data else None)
                  for i, ds in enumerate(datasets)]
        # before any work: an unusable output folder fails now, not after hours
        check_writable_dir(out_dir, "--out folder")
        for kind in ("csv", "json", "md", "png"):
            if (out_dir / f"{prefix}.{kind}").is_dir():
                raise VlalInputError(f"{out_dir / f'{prefix}.{kind}'} is a folder; choose another --out or --prefix")
        kept = sorted(run_dir.glob("*.json")) if run_dir.is_dir() else []
        if kept and not resume:
            if not complete.exists():
                raise VlalInputError(
                    f"{run_dir} holds {len(kept)} finished run(s) of an interrupted `vlal bench`: add --resume to "
                    "continue it, or delete that folder to start afresh"
                )
            for f in kept + [complete]:  # the previous run completed: its tables are written; start afresh
                f.unlink()
        check_writable_dir(run_dir, "run folder")
    note = None
    if not data:
        note = ("**Synthetic data**: the embedded default pool of `vlal.data.make_synthetic()` (clustered unit "
                "vectors, long-tailed classes, one-shot prototype zero-shot proxy); not CLIP features.")
        click.echo("No --data given: running on the embedded SYNTHETIC pool (not CLIP features).")
    records = []
    n_total = len(datasets) * len(names) * seeds
    try:
        with _user_errors("bench"):
            for ds, (factory, inputs, model_used) in zip(datasets, tuners):
                tuner_name = _TUNER_ALIASES.get(tuner, tuner)
                settings = {"tuner": tuner_name, "clip_model": model_used, "pretrained": pretrained, "epochs": epochs}
                records += run_benchmark(ds, names, n_rounds=rounds, seeds=range(seeds),
                                         budget_fraction=budget_fraction, tuner_factory=factory, tuner_inputs=inputs,
                                         progress=not quiet, run_dir=run_dir, resume=resume, settings=settings,
                                         tuner_name=tuner_name)
            paths = write_results(records, out_dir, prefix, command=command, report_rounds=rr, note=note)
            write_text_atomic(complete, "all runs finished; tables written\n")
    except KeyboardInterrupt:
        n_kept = len(list(run_dir.glob("*.json"))) if run_dir.is_dir() else 0
        click.echo(f"interrupted: {n_kept} of {n_total} finished run(s) kept in {run_dir}; "
                   f"continue with: {command} --resume", err=True)
        sys.exit(130)
    click.echo(paths["md"].read_text())
    click.echo("wrote " + ", ".join(str(p) for p in paths.values()) + f" (runs: {run_dir})")


def _load_dataset(path):
    """:func:`vlal.data.load_features`, its errors led by ``--data`` (exit 1: what the file holds)."""
    from .data import load_features

    try:
        return load_features(path)
    except (VlalInputError, FileNotFoundError) as err:
        raise DataError("--data", str(err)) from None


@contextlib.contextmanager
def _user_errors(interface: str = "python"):
    """Show bad input, missing files/extras and unwritable outputs as one-line CLI errors."""
    from .exceptions import WeightsNotFoundError

    try:
        yield
    except (click.ClickException, BrokenPipeError):  # a closed stdout (`| head`): click's own quiet exit
        raise
    except WeightsNotFoundError as err:
        from .clip._loading import weights_message_for

        raise click.ClickException(weights_message_for(err, interface)) from err
    except (VlalInputError, ImportError, zipfile.BadZipFile) as err:
        raise click.ClickException(str(err)) from err
    except OSError as err:  # missing file, read-only or full disk, not a folder, ...
        from ._io import describe_os_error

        raise click.ClickException(describe_os_error(err)) from err


def _recorded_model(path) -> dict | None:
    """What embedded a ``vlal embed`` file: ``{"model_name", "pretrained", "weights_id"}`` (the last two
    None when the file does not say), or None for a file without a ``model_name`` key."""
    import json

    with np.load(path, allow_pickle=False) as z:
        if "model_name" not in z.files:
            return None
        rec = {"model_name": str(z["model_name"]), "pretrained": None, "weights_id": None}
        if "embed_meta" in z.files:
            try:
                meta = json.loads(str(z["embed_meta"]))
            except ValueError:
                meta = {}
            if isinstance(meta, dict):
                rec.update({k: meta.get(k) for k in ("pretrained", "weights_id") if isinstance(meta.get(k), str)})
        return rec


def _clip_tuner(kind, ds, model_name, pretrained, epochs, recorded=None):
    """``(tuner_factory, tuner_inputs, model_name)`` for ``vlal bench --tuner``; a registry name of vlal.tuners (built from ``W0``) or a CLIP prompt tuner.

    The CLIP model defaults to the one recorded in the file; another ``--clip-model`` is an
    error (its text tower would meet image features of another model).
    """
    kind = _TUNER_ALIASES.get(kind, kind)
    spec = _TUNERS[kind]
    if spec.factory is not None:  # a feature-space tuner, built from W0
        from .tuners import make_tuner

        return (lambda w0: make_tuner(kind, w0)), _bench_inputs(kind), None
    if ds.class_names is None:
        raise VlalInputError(f"--tuner {kind} needs class names in {ds.name!r}: write it with `vlal embed` from a folder of class sub-folders (or `vlal embed --class-names`)")
    def norm(m):  # "ViT-B/32" = "ViT-B-32"; local-dir: and hf-hub: names are paths and repos, kept as given
        m = str(m)
        return m if m.startswith(("local-dir:", "hf-hub:")) else m.replace("/", "-")

    rec_name = None if recorded is None else recorded["model_name"]
    if rec_name is not None and model_name is not None and norm(model_name) != norm(rec_name):
        raise VlalInputError(
            f"--clip-model {model_name} differs from {rec_name}, the model that embedded {ds.name!r}: a CLIP tuner "
            "needs the text tower of the model that made the image features (omit --clip-model to use the file's)"
        )
    name = norm(model_name or rec_name or "ViT-B-32")
    from . import clip  # needs the [clip] extra

    model = clip.load_clip(name, None if pretrained in (None, "none") else pretrained)
    from .clip._loading import same_weights

    if recorded is not None and recorded["weights_id"] and not same_weights(recorded["weights_id"], model.weights_id):
        raise VlalInputError(
            f"--pretrained {pretrained} loads other weights ({model.weights_id.split('|')[0]}) than those that embedded "
            f"{ds.name!r} ({recorded['pretrained'] or recorded['weights_id'].split('|')[0]}): a CLIP tuner needs the "
            "text tower of the weights that made the image features; pass those, or re-embed with `vlal embed`")
    cls = getattr(clip, spec.clip_class)
    kw = {} if epochs is None else {"epochs": epochs}
    names = [str(n) for n in ds.class_names]
    return (lambda w0: cls(model, names, **kw)), _bench_inputs(kind), name


def _bench_inputs(tuner: str) -> str:
    """``run_benchmark``'s ``tuner_inputs`` for a registry name: image tuners read the stored image paths."""
    return "paths" if _TUNERS[_TUNER_ALIASES.get(tuner, tuner)].inputs == "images" else "features"


from .clip.cli import embed as _embed_cmd  # noqa: E402  (click only; torch loads when it runs)

main.add_command(_embed_cmd)

from .session_cli import session as _session_group  # noqa: E402  (click only)

main.add_command(_session_group)

if __name__ == "__main__":  # python -m vlal.cli
    console_main()
