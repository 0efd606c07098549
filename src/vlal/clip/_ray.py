"""Distributed image embedding on Ray (the ``[ray]`` extra): Ray Data + an actor pool of CLIP encoders.

:func:`embed_ray` reads images (a folder, or a list of paths) as a Ray Dataset of
``(row, path)`` records, runs the open_clip image encoder in an actor pool (one model per
actor, loaded once; a GPU per actor when the cluster has GPUs, else CPUs), and streams the
features, in input order, into float16 shards with a manifest (:mod:`vlal.shards`).
Scheduling, retries and back-pressure are Ray's: an actor that dies mid-job is restarted
and its batch re-run (``max_restarts`` / ``max_task_retries``), so the output is complete
and in order. The single-process :func:`vlal.clip.embed` stays the default path.

Each actor calls :func:`vlal.clip.load_clip` itself (weights are read from the local disk or
cache of the node; nothing is downloaded unless ``allow_download``), so every actor holds
the same model: features equal the single-process ones up to float16 rounding of the
stored shards.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np

from ..exceptions import VlalInputError

__all__ = ["embed_ray"]


#: Restarts of an encoder actor (each a crashed or killed process). Not unlimited: an actor whose
#: constructor fails (weights missing on a worker) would otherwise be restarted forever.
ACTOR_RESTARTS = 4


#: Testing hook (set by the test suite only): a file holding a row number; the actor whose batch holds
#: that row dies once (``os._exit``), to check that Ray restarts it and re-runs the batch.
_CRASH_FILE: str | None = None


def _build(model_name, pretrained, device, model_config, allow_download):
    """The actor's model: ``model_config`` registered in this process, then :func:`vlal.clip.load_clip`."""
    if model_config:
        import open_clip

        open_clip.add_model_config(model_config)
    from ._loading import RandomWeightsWarning, load_clip

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        return load_clip(model_name, pretrained, device=device, allow_download=allow_download)


def _node_check(model_name, pretrained, model_config, allow_download) -> tuple[str, str]:
    """Ray task run on every node before the actor pool starts: build the model as an actor would, on
    the CPU. Returns ``("ok", weights id)`` or ``("error", one line)``; never raises, so that the
    driver reports the node's error itself instead of Ray's wrappers (and no actor pool waits on
    actors that cannot start)."""
    import socket

    try:
        return "ok", _build(model_name, pretrained, "cpu", model_config, allow_download).weights_id
    except Exception as err:  # reported by the driver, naming the node
        first = (str(err).strip().splitlines() or [""])[0]
        return "error", f"{socket.gethostname()}: {type(err).__name__}: {first}"


def _same_file(a: str, b: str) -> bool:
    """Weights ids ``path|size|mtime_ns[|...]`` of two nodes name the same weights: as
    :func:`vlal.clip._loading.same_weights` (the modification time may differ: a copy), and every
    node reads the same path; other ids (tags, random seeds) must be equal."""
    from ._loading import same_weights

    return same_weights(a, b) and a.split("|")[0] == b.split("|")[0]


def _check_nodes(ray, model_name, pretrained, model_config, allow_download, driver_id: str) -> None:
    """Build the model once on every alive node (:func:`_node_check`); raise if one cannot, or if one
    holds other weights than the driver under the same name."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from ..exceptions import WeightsNotFoundError

    task = ray.remote(num_cpus=0, max_retries=0)(_node_check)
    nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive")]
    results = ray.get([task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
                       .remote(model_name, pretrained, model_config, allow_download) for node in nodes])
    for status, text in results:
        if status == "error":
            cls = WeightsNotFoundError if "WeightsNotFoundError" in text else VlalInputError
            raise cls(f"a Ray node cannot build the encoder ({model_name!r}, pretrained={pretrained!r}) - {text}; "
                      "every node needs the weights file (same path) and model config")
        if not _same_file(text, driver_id):
            raise VlalInputError(f"a Ray node holds other weights than this machine: {text!r} vs {driver_id!r}; "
                                 "features of different nodes would not match")


class _Encoder:
    """Ray Data actor: one CLIP model, ``__call__`` encodes a batch of image paths."""

    def __init__(self, model_name, pretrained, device, model_config, allow_download, crash_file=None):
        self.clip = _build(model_name, pretrained, device, model_config, allow_download)
        self.crash_file = crash_file

    def __call__(self, batch: dict) -> dict:
        import torch

        from ._images import as_image_source

        if self.crash_file and os.path.exists(self.crash_file):
            # testing hook: the actor whose batch holds the row written in the file dies, once
            row = int(Path(self.crash_file).read_text())
            if row in set(np.asarray(batch["row"]).tolist()):
                os.unlink(self.crash_file)
                os._exit(1)
        src = as_image_source([str(p) for p in batch["path"]])
        with torch.no_grad():
            x = src.batch(slice(None), self.clip.preprocess).to(self.clip.device)
            f = self.clip.model.encode_image(x)
            f = torch.nn.functional.normalize(f.float(), dim=-1).cpu().numpy()
        return {"row": np.asarray(batch["row"], dtype=np.int64), "features": f.astype(np.float32)}


def embed_ray(images, out, *, model_name: str = "ViT-B-32", pretrained=None, batch_size: int = 64,
              num_actors: int | None = None, use_gpu: str | bool = "auto", shard_rows: int = 2**20,
              model_config: str | None = None, allow_download: bool = False, address: str | None = None) -> Path:
    """Embed images on a Ray cluster into float16 feature shards + ``manifest.json``.

    Parameters
    ----------
    images : str, Path or sequence of paths
        A folder (class sub-folders or flat, as :func:`vlal.clip.scan_image_folder`) or image paths.
        Row ``i`` of the output is image ``i`` in this order.
    out : str or Path
        Output folder (created): ``features-*.npy`` (float16, (rows, d)), ``paths.txt``,
        ``manifest.json`` (model, weights id, preprocessing); ``labels.npy`` and
        ``class_names.txt`` when the folder has class sub-folders.
    model_name, pretrained, allow_download
        As :func:`vlal.clip.load_clip` (``pretrained=None``: random weights, testing only).
    batch_size : int, default 64
        Images per actor call.
    num_actors : int, optional
        Actor pool size (default: the cluster's GPUs when ``use_gpu``, else its CPUs); at most the number
        of input blocks (``len(images) // batch_size``, at least 1).
    use_gpu : "auto" or bool
        One GPU per actor (``"auto"``: when the cluster has GPUs).
    shard_rows : int, default 2**20
    model_config : str, optional
        open_clip model config JSON to register in each actor (custom architectures).
    address : str, optional
        ``ray.init(address=...)``; when Ray is already initialised the running one is used.

    Returns
    -------
    Path of the manifest.

    Raises
    ------
    ImportError
        Ray is missing (``pip install -e '.[ray]'`` in the vlal checkout).
    vlal.VlalInputError, FileNotFoundError
        No images; ``use_gpu=True`` on a cluster without GPUs; an unreadable image (one line naming it).
    vlal.WeightsNotFoundError, vlal.VlalInputError
        The model cannot be built here or on one of the cluster's nodes (each node builds it once, on
        its CPU, before the actor pool starts; the error names the node), or a node holds other
        weights under the same path (another file size).
    """
    try:
        import ray
    except ImportError as err:
        raise ImportError("embed_ray needs the [ray] extra: pip install -e '.[ray]' in the vlal checkout") from err
    from .._io import save_npy_atomic, write_bytes_atomic
    from ..shards import ShardWriter, _release_manifest
    from ._images import scan_image_folder

    labels = names = None
    if isinstance(images, (str, Path)):
        folder = scan_image_folder(images)
        paths, labels, names = [str(Path(p).resolve()) for p in folder.paths], folder.labels, folder.class_names
    else:
        paths = [str(Path(p).resolve()) for p in images]  # absolute: the shards are read from anywhere
    if not paths:
        raise VlalInputError("no images to embed")
    meta = _meta(model_name, pretrained, model_config, allow_download)  # the driver's model: errors before Ray starts
    if not ray.is_initialized():
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    # every node builds the model once before the pool starts: an actor that cannot start would be
    # restarted and the pool kept waiting; a node with other weights would give other features
    _check_nodes(ray, model_name, pretrained, model_config, allow_download, meta["weights"])
    gpus = int(ray.cluster_resources().get("GPU", 0))
    gpu = gpus > 0 if use_gpu == "auto" else bool(use_gpu)
    if gpu and gpus == 0:  # Ray would wait for a GPU forever
        raise VlalInputError("use_gpu=True (--device cuda) but the Ray cluster has no GPU; use the CPU "
                             "(use_gpu='auto' / --device cpu) or a cluster with GPUs")
    if num_actors is None:
        num_actors = max(1, gpus if gpu else int(ray.cluster_resources().get("CPU", 1)))
    device = "cuda" if gpu else "cpu"

    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # output rows in input order
    blocks = max(1, min(len(paths) // batch_size, 4 * num_actors))
    num_actors = min(num_actors, blocks)  # an actor without a block would only wait (and Ray warns)
    ds = ray.data.from_items([{"row": i, "path": p} for i, p in enumerate(paths)], override_num_blocks=blocks)
    with warnings.catch_warnings():  # max_restarts has no named parameter yet (pyproject pins ray < 2.64)
        warnings.filterwarnings("ignore", message=".*ray_remote_args. is deprecated")
        feats = ds.map_batches(
            _Encoder,
            fn_constructor_args=(model_name, pretrained, device, model_config, allow_download, _CRASH_FILE),
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=num_actors),
            num_gpus=1 if gpu else 0,
            num_cpus=0 if gpu else 1,
            max_restarts=ACTOR_RESTARTS,  # a crashed actor comes back; one that cannot start fails the job
            max_task_retries=-1,
        )
    out = Path(out)
    _release_manifest(out, "features")  # before paths.txt changes: a stopped rewrite leaves no stale manifest
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("labels.npy", "class_names.txt"):  # of an earlier embed into this folder: never beside new rows
        if (out / stale).is_file() and labels is None:
            (out / stale).unlink()
    write_bytes_atomic(out / "paths.txt", ("\n".join(paths) + "\n").encode("utf-8"))
    if labels is not None:
        save_npy_atomic(out / "labels.npy", labels)
        write_bytes_atomic(out / "class_names.txt", ("\n".join(names) + "\n").encode("utf-8"))
    writer = None
    expect = 0
    for batch in _unwrapped(feats.iter_batches(batch_size=None, batch_format="numpy")):
        rows = batch["row"]
        if rows.size and (rows[0] != expect or not np.array_equal(rows, np.arange(expect, expect + rows.size))):
            raise RuntimeError(f"Ray returned rows out of order (expected {expect}, got {rows[:3]})")
        f = batch["features"]
        if writer is None:
            writer = ShardWriter(out, f.shape[1], shard_rows=shard_rows, paths="paths.txt", normalized=True, **meta)
        writer.write(f)
        expect += rows.size
    if expect != len(paths):
        raise RuntimeError(f"Ray returned {expect} of {len(paths)} rows")
    return writer.close()


_VLAL_ERROR_LINE = re.compile(r"(?:^|\s)vlal\.[\w.]*?(?:VlalInputError|ModelSpecError|WeightsNotFoundError): (.+)$")


def _unwrapped(batches):
    """``batches``, with a vlal error raised inside a Ray worker (an unreadable image, ...) re-raised as
    itself rather than inside Ray's exception wrappers (whose text runs to dozens of lines)."""
    it = iter(batches)
    while True:
        try:
            batch = next(it)
        except StopIteration:
            return
        except Exception as err:
            seen, e = set(), err
            while e is not None and id(e) not in seen:  # the cause chain, then the text of Ray's wrapper
                seen.add(id(e))
                if isinstance(e, VlalInputError) and type(e).__module__.startswith("vlal"):
                    raise VlalInputError(str(e)) from None
                e = e.__cause__ or e.__context__
            for line in str(err).splitlines():
                hit = _VLAL_ERROR_LINE.search(line) if "vlal." in line else None
                if hit or "VlalInputError: " in line:
                    msg = hit.group(1) if hit else line.split("VlalInputError: ", 1)[1]
                    raise VlalInputError(f"a Ray worker stopped: {msg.strip()}") from None
            raise
        yield batch


def _meta(model_name, pretrained, model_config, allow_download) -> dict:
    """Model, weights id and preprocessing, read on the driver (one extra model load, CPU)."""
    clip = _build(model_name, pretrained, "cpu", model_config, allow_download)
    m = clip.cache_meta()
    return {"model": clip.model_name, "weights": m["weights_id"],
            "preprocessing": {k: m[k] for k in ("image_size", "image_mean", "image_std", "interpolation",
                                                "resize_mode")}}
