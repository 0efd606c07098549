"""``vlal embed``: encode an image folder (and class names) with CLIP into a benchmark ``.npz``.

Register it in the main group with ``main.add_command(embed)``. This module imports
only click at import time; torch and open_clip load when the command runs, so
``vlal --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["embed"]


@click.command("embed")
@click.argument("images", type=click.Path(exists=True, path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--model", "model_name", default="ViT-B-32", show_default=True,
              help="open_clip architecture (e.g. ViT-B-16, ViT-B-32, RN50, ViT-L-14).")
@click.option("--pretrained", required=True,
              help="A local checkpoint file (e.g. /path/to/ViT-B-32.pt), an open_clip tag whose weights are "
                   "already cached, or 'none' for random weights (testing only: features are meaningless).")
@click.option("--test-images", type=click.Path(exists=True, path_type=Path), default=None,
              help="Folder of the test split (same class sub-folders): adds test_features / test_labels "
                   "(which `vlal bench` needs).")
@click.option("--class-names", "class_names_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Text file, one class name per line in label order, i.e. one per class sub-folder in their sorted order (default: the sub-folder names).")
@click.option("--template", default="a photo of a {}.", show_default=True, help="Prompt of the text features.")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1))
@click.option("--device", default="cpu", show_default=True, help="torch device, e.g. cpu or cuda. With --engine ray: cpu = the GPUs when the cluster has them, else the CPUs; cuda = GPUs only (an error on a cluster without).")
@click.option("--no-cache", is_flag=True, help="Re-encode even if OUT already holds matching features.")
@click.option("--allow-download", is_flag=True, help="Let open_clip download a tag's weights (needs a network).")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: this process, OUT is a .npz. ray: Ray Data + an actor pool of encoders (the [ray] "
                   "extra); OUT is a folder of float16 shards + manifest.json (for vlal select --features).")
@click.option("--actors", type=click.IntRange(min=1), default=None,
              help="--engine ray: encoder actors (default: the cluster's GPUs, else its CPUs).")
@click.option("--ray-address", default=None, help="--engine ray: address of a running cluster (default: local).")
def embed(images, out, model_name, pretrained, test_images, class_names_file, template, batch_size, device,
          no_cache, allow_download, engine, actors, ray_address):
    """Encode IMAGES (a folder of class sub-folders, or of images) into OUT (.npz).

    OUT holds pool_features (n, d) float32 unit rows, pool_labels, class_names,
    text_features (K, d) and probs (n, K, zero-shot, for `vlal select --probs OUT`) when
    classes are known, test_* with --test-images, and the model,
    weights and preprocessing that produced them. `vlal bench --data OUT` reads it.
    """
    import warnings

    from ..exceptions import VlalInputError, WeightsNotFoundError

    try:
        from . import RandomWeightsWarning, embed as embed_fn, load_clip
        from ._loading import ModelSpecError
    except ImportError as err:  # no [clip] extra: one line, as the other commands say it
        missing = getattr(err.__cause__, "name", None) or "torch"
        raise click.ClickException(f"vlal embed needs the [clip] extra ({missing} is missing): "
                                   "pip install -e '.[clip]' in the vlal checkout") from err

    if engine == "local" and (Path(out).suffix != ".npz" or Path(out).is_dir()):
        raise click.BadParameter(f"{out}: the local engine writes one .npz file; name it OUT.npz", param_hint="OUT")
    if engine == "ray" and Path(out).exists() and not Path(out).is_dir():
        raise click.BadParameter(f"{out}: the Ray engine writes a folder of shards; OUT is a file", param_hint="OUT")
    if engine == "ray":
        if test_images is not None or class_names_file is not None:
            raise click.UsageError("--engine ray embeds the pool images only (no --test-images / --class-names)")
        from ._ray import embed_ray

        spec = None if pretrained.strip().lower() in ("none", "random") else pretrained
        try:
            manifest = embed_ray(images, out, model_name=model_name, pretrained=spec, batch_size=batch_size,
                                 num_actors=actors, use_gpu="auto" if device == "cpu" else True,
                                 allow_download=allow_download, address=ray_address)
        except (VlalInputError, FileNotFoundError, ImportError) as err:
            raise click.ClickException(str(err)) from err  # what it read or needed: exit 1
        click.echo(f"features -> {manifest}")
        return
    names = None
    if class_names_file is not None:
        names = [ln.strip() for ln in class_names_file.read_text(encoding="utf-8-sig").splitlines() if ln.strip()]
    spec = None if pretrained.strip().lower() in ("none", "random") else pretrained
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RandomWeightsWarning)  # reported below, once
            clip = load_clip(model_name, spec, device=device, allow_download=allow_download)
    except WeightsNotFoundError as err:
        from ._loading import weights_message_for

        raise click.ClickException(weights_message_for(err, "embed")) from err
    except ModelSpecError as err:  # --model / --pretrained name nothing: wrong on its face, exit 2
        raise click.UsageError(str(err)) from err
    except (VlalInputError, FileNotFoundError) as err:  # a checkpoint it could not use: exit 1
        raise click.ClickException(str(err)) from err
    try:
        if clip.is_random:
            click.secho(
                f"WARNING: {model_name} has RANDOM weights (--pretrained none): the features are meaningless.",
                fg="red", err=True, bold=True,
            )
        res = embed_fn(clip, images, out, class_names=names, test_images=test_images, template=template,
                       batch_size=batch_size, progress=True, reuse_cache=not no_cache)
    except (VlalInputError, FileNotFoundError) as err:  # the images or class names it read: exit 1
        raise click.ClickException(str(err)) from err
    n, d = res["pool_features"].shape
    msg = f"pool: {n} images, d={d}"
    if "class_names" in res:
        msg += f", {len(res['class_names'])} classes"
    if "test_features" in res:
        msg += f"; test: {res['test_features'].shape[0]} images"
    click.echo(f"{msg} ({clip.model_name}, pretrained={clip.pretrained or 'none'}) -> {out}")
