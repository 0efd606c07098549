"""``vlal session``: a labeling session on disk (see :mod:`vlal.session` and docs/labeling.md).

Imports only click at import time; numpy and the strategies load when a command runs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

__all__ = ["session"]


def _errors(fn):
    """Bad input, a locked session, a rejected import: one clear CLI error, exit status 1."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from .exceptions import VlalInputError

        try:
            return fn(*args, **kwargs)
        except (VlalInputError, ImportError) as err:
            raise click.ClickException(str(err)) from err
        except BrokenPipeError:  # stdout closed by the reader (`| head`) after the work was done: no error text
            raise
        except OSError as err:  # e.g. a session folder this user cannot write: say which session
            from ._io import describe_os_error

            where = kwargs.get("path")
            raise click.ClickException(f"session {where}: {describe_os_error(err)}" if where else
                                       describe_os_error(err)) from err

    return wrapper


def _open(path):
    from .session import open_session

    return open_session(path, command="vlal " + " ".join(sys.argv[1:3]))


@click.group("session")
def session():
    """A labeling session: query a batch, label it (Label Studio or CSV), import, repeat.

    \b
    vlal session init SESSION --features pool.npz        (or --images DIR --pretrained ...)
    vlal session next SESSION --budget 20                -> batch CSV + Label Studio tasks
    vlal session import SESSION export.json              (Label Studio JSON export, or CSV image,label)
    vlal session status SESSION
    """


@session.command("init")
@click.argument("path", type=click.Path(file_okay=False, path_type=Path))
@click.option("--features", "features_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="An .npz from `vlal embed` (pool_features, text_features, class_names, pool_paths).")
@click.option("--images", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Instead: a folder of images, embedded now with CLIP into SESSION.embed.npz (needs [clip]).")
@click.option("--classes", "classes_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Text file, one class name per line (needed for a flat image folder).")
@click.option("--pretrained", default=None,
              help="With --images: a local checkpoint or cached open_clip tag, or 'none' for RANDOM weights "
                   "(testing only: features are meaningless).")
@click.option("--model", "model_name", default="ViT-B-32", show_default=True, help="With --images: open_clip model.")
@click.option("--strategy", default="cec", show_default=True,
              help="Strategy name with parameters, e.g. cec or 'cec[k=10,alpha=0.05]' (see `vlal strategies`).")
@click.option("--tuner", default="anchored", show_default=True,
              help="Feature-space tuner re-fitted from zero-shot after each import: anchored, coop-shared, kgcoop, "
                   "tip-adapter, tip-adapter-f, clap, free, zero-shot (see vlal.tuners); parameters as free[max_iter=50].")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--heldout", default="auto", show_default=True,
              help="Labeled split for accuracy per round: auto (test split of the features file), none, or FILE.npz.")
@_errors
def init_cmd(path, features_file, images, classes_file, pretrained, model_name, strategy, tuner, seed, heldout):
    """Create the session folder PATH."""
    from .session import init_session

    if (features_file is None) == (images is None):
        raise click.UsageError("give exactly one of --features FILE.npz or --images FOLDER")
    _check_init_options(strategy, tuner, heldout)
    names = None
    if classes_file is not None:
        # utf-8-sig: a byte-order mark (Windows Notepad) would become part of the first class name
        names = [ln.strip() for ln in classes_file.read_text(encoding="utf-8-sig").splitlines() if ln.strip()]
    if images is not None:
        if pretrained is None:
            raise click.UsageError("--images needs --pretrained (a checkpoint, a cached tag, or 'none' for random weights)")
        import warnings

        from .clip import RandomWeightsWarning, embed, load_clip

        spec = None if pretrained.strip().lower() in ("none", "random") else pretrained
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RandomWeightsWarning)
            clip = load_clip(model_name, spec)
        if clip.is_random:
            click.secho(f"WARNING: {model_name} has RANDOM weights (--pretrained none): the features, the "
                        "zero-shot guesses and the queries are meaningless; for trying the workflow only.",
                        fg="red", err=True, bold=True)
        features_file = Path(str(path).rstrip("/") + ".embed.npz")
        embed(clip, images, features_file, class_names=names, progress=True)
    held = None if heldout.lower() == "none" else heldout
    folder = init_session(path, features_file, strategy=strategy, tuner=tuner, seed=seed, class_names=names,
                          heldout=held)
    from .session import open_session

    with open_session(folder) as s:
        st = s.status()
    click.echo(f"created session {folder}: {st['n_pool']} images, {len(st['labels_per_class'])} classes, "
               f"strategy {strategy}, tuner {tuner}, seed {seed}")
    click.echo(f"Label Studio labeling config: {folder / 'labelstudio.xml'}")


def _check_init_options(strategy: str, tuner: str, heldout: str) -> None:
    """Values wrong on their face are usage errors (exit 2, README rule), before anything is read."""
    import numpy as np

    from .exceptions import VlalInputError
    from .registry import make_strategy
    from .session import _make_tuner

    try:
        make_strategy(strategy)
    except VlalInputError as err:
        raise click.BadParameter(str(err), param_hint="--strategy") from None
    try:  # a 1-class, 1-d stand-in: checks the name and its parameters only
        _make_tuner(tuner, np.ones((1, 1), dtype=np.float32))
    except VlalInputError as err:
        raise click.BadParameter(str(err), param_hint="--tuner") from None
    if heldout.lower() not in ("auto", "none"):
        hp = Path(heldout)
        if not hp.is_file():
            raise click.BadParameter(f"no such file: {hp} (auto, none or an .npz)", param_hint="--heldout")
        if hp.suffix.lower() != ".npz":
            raise click.BadParameter(f"{hp}: expected an .npz (test_features, test_labels)", param_hint="--heldout")


@session.command("next")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--budget", required=True, type=click.IntRange(min=1), help="Images to query this round.")
@click.option("--ls-root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Label Studio's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT (default: the parent of the folder "
                   "holding all images).")
@click.option("--url-prefix", default=None, help="Serve images from URL-PREFIX/<relative path> instead.")
@click.option("--top-k", default=3, show_default=True, type=click.IntRange(min=1), help="Guesses shown per image.")
@_errors
def next_cmd(path, budget, ls_root, url_prefix, top_k):
    """Query a batch and write it as CSV and as Label Studio tasks with pre-annotations."""
    with _open(path) as s:
        if s.recovered:
            click.echo(f"note: {s.recovered}", err=True)
        b = s.next(budget, ls_root=ls_root, url_prefix=url_prefix, top_k=top_k)
    click.echo(f"round {b['round']}: {len(b['indices'])} images to label ({b['strategy']}, "
               f"{b['select_seconds']:.2f} s)")
    click.echo(f"  Label Studio tasks: {path / b['files']['labelstudio']}")
    click.echo(f"  CSV (fill in the label column): {path / b['files']['csv']}")


@session.command("import")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--allow-skipped", is_flag=True,
              help="Accept a file that leaves batch images unlabeled (skipped): they return to the pool.")
@_errors
def import_cmd(path, file, allow_skipped):
    """Apply the labels in FILE (Label Studio JSON export or CSV image,label), re-fit, record the round."""
    with _open(path) as s:
        if s.recovered:
            click.echo(f"note: {s.recovered}", err=True)
        rec = s.import_labels(file, allow_skipped=allow_skipped)
    acc = "" if rec["heldout_accuracy"] is None else f", held-out accuracy {rec['heldout_accuracy']:.1f} %"
    skipped = f", {len(rec['skipped'])} skipped (back in the pool)" if rec["skipped"] else ""
    click.echo(f"round {rec['round']}: {len(rec['picks'])} labels applied{skipped}; {rec['n_labeled']} labeled "
               f"in all; tuner re-fitted in {rec['fit_seconds']:.2f} s{acc}")


@session.command("status")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_errors
def status_cmd(path, as_json):
    """Rounds, labels per class, classes never labeled, the batch waiting for labels."""
    from .session import format_status, open_session

    # read-only: no lock (works while another command runs, and on a folder this user cannot write)
    with open_session(path, read_only=True) as s:
        st = s.status()
    click.echo(json.dumps(st, indent=1) if as_json else format_status(st))


@session.command("discard")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@_errors
def discard_cmd(path):
    """Drop the batch waiting for labels (its images stay in the pool)."""
    with _open(path) as s:
        b = s.discard_batch()
    click.echo(f"discarded round {b['round']} ({len(b['indices'])} images)")
