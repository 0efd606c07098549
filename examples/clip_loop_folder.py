"""The whole active-learning loop on a real image folder with a CLIP model.

embed the pool and test images -> zero-shot CLIP (Eq. 1, text embeddings of
"a photo of a {class}.") -> CEC picks images to label -> CoOp is re-tuned from the
zero-shot prompt on all labels so far -> test accuracy; two rounds.

By default the images are Fashion-MNIST (real photos of clothes, 10 classes; Debian
package ``dataset-fashion-mnist``, MIT licence), written as PNG files into class
sub-folders of a temporary directory. Any folder of class sub-folders works too.

No CLIP weights can be downloaded on the machines this project is built on: without
``--pretrained`` the model has RANDOM weights, the pipeline still runs end to end, and
every accuracy printed is meaningless. With the defaults (ViT-B-32, 160 pool and 80 test
images, CoOp's 200 epochs per round) a run took about 4 minutes on 2 shared CPU cores, most of it
CoOp; ``--epochs 20`` gives a quick look. For real use:

    python examples/clip_loop_folder.py --pretrained /path/to/ViT-B-32.pt
    python examples/clip_loop_folder.py --model ViT-B-16 --pretrained /path/to/ViT-B-16.pt \\
        --images /data/pool --test-images /data/test --budget 16 --rounds 6
"""

from __future__ import annotations

import argparse
import gzip
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                   "ankle_boot"]


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format): magic, dims, then unsigned bytes."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def write_fashion_mnist(root: Path, source: Path, per_class_pool: int, per_class_test: int, seed: int):
    """Write a pool (train split) and a test folder (t10k split) of PNGs, class sub-folders."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, prefix, per_class in (("pool", "train", per_class_pool), ("test", "t10k", per_class_test)):
        images = read_idx(source / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(source / f"{prefix}-labels-idx1-ubyte.gz")
        for c, name in enumerate(FASHION_CLASSES):
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in rng.choice(np.flatnonzero(labels == c), size=per_class, replace=False):
                Image.fromarray(images[i]).save(d / f"{prefix}_{i:05d}.png")
    return root / "pool", root / "test"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ViT-B-32", help="open_clip architecture")
    ap.add_argument("--pretrained", default=None,
                    help="local checkpoint file (e.g. /path/to/ViT-B-32.pt) or cached open_clip tag; "
                         "default: random weights (results meaningless)")
    ap.add_argument("--images", type=Path, default=None,
                    help="pool folder of class sub-folders (default: Fashion-MNIST)")
    ap.add_argument("--test-images", type=Path, default=None, help="test folder (same classes); default: the pool")
    ap.add_argument("--fashion-mnist", type=Path, default=FASHION_DIR, help="where the Fashion-MNIST .gz files are")
    ap.add_argument("--per-class", type=int, default=16, help="Fashion-MNIST pool images per class (test: half)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--budget", type=int, default=10, help="images labeled per round")
    ap.add_argument("--epochs", type=int, default=200, help="CoOp epochs per round (paper: 200)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the images / cache / prompts here")
    args = ap.parse_args(argv)

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    from vlal import CEC
    from vlal.clip import CoOp, RandomWeightsWarning, embed, load_clip, zero_shot_proba
    from vlal.loop import run_active_learning

    work = args.workdir or Path(tempfile.mkdtemp(prefix="vlal-clip-loop-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.images is None:
        if not (args.fashion_mnist / "train-images-idx3-ubyte.gz").exists():
            print(f"Fashion-MNIST not found in {args.fashion_mnist}: `apt install dataset-fashion-mnist`, "
                  "or pass --images FOLDER (class sub-folders of images).", file=sys.stderr)
            return 2
        pool_dir, test_dir = write_fashion_mnist(work / "images", args.fashion_mnist, args.per_class,
                                                 max(1, args.per_class // 2), args.seed)
        print(f"images: Fashion-MNIST, {args.per_class}/class pool and {max(1, args.per_class // 2)}/class test "
              f"written to {work / 'images'}")
    else:
        pool_dir, test_dir = args.images, args.test_images or args.images

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        clip = load_clip(args.model, args.pretrained, device=args.device)
    banner = ""
    if clip.is_random:
        banner = ("NOTE: CLIP has RANDOM weights (no --pretrained; none can be downloaded here): the pipeline runs "
                  "end to end, but every accuracy it prints is MEANINGLESS.")
        print("=" * 100 + "\n" + banner + "\n" + "=" * 100)

    t0 = time.perf_counter()
    data = embed(clip, pool_dir, work / "features.npz", test_images=test_dir, progress=True)
    names = [str(n) for n in data["class_names"]]
    pool_x, pool_y = data["pool_features"], data["pool_labels"]
    test_x, test_y = data["test_features"], data["test_labels"]
    print(f"embedded {len(pool_y)} pool and {len(test_y)} test images, {len(names)} classes, "
          f"d={pool_x.shape[1]} ({time.perf_counter() - t0:.1f} s) -> {work / 'features.npz'}")

    zs = zero_shot_proba(test_x, data["text_features"])
    print(f"zero-shot test accuracy: {100 * np.mean(zs.argmax(1) == test_y):.1f} %")

    tuner = CoOp(clip, names, epochs=args.epochs, seed=args.seed)
    budget = min(args.budget, len(pool_y))

    def report(r):
        extra = f", fit {r.fit_seconds:.1f} s" if r.round else ""
        print(f"round {r.round}: {r.n_labeled:3d} labels, test accuracy {r.accuracy:5.1f} %{extra}", flush=True)

    result = run_active_learning(CEC(k=min(20, len(pool_y) - 1), random_state=args.seed), tuner, pool_x, pool_y,
                                 test_x, test_y, n_rounds=args.rounds, budget=budget, callback=report)
    counts = np.bincount(result.labels, minlength=len(names))
    print("labels per class:", ", ".join(f"{n.replace('_', ' ')} {c}" for n, c in zip(names, counts)))
    tuner.save_prompts(work / "coop_prompts.pt")
    print(f"CoOp prompts saved to {work / 'coop_prompts.pt'}"
          + ("" if args.workdir else f" (the folder {work} is kept: delete it when done, or pass --workdir)"))
    if banner:
        print(banner)
    return 0


if __name__ == "__main__":
    sys.exit(main())
