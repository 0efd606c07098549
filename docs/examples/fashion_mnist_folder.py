"""Write Fashion-MNIST test images as PNG files: an unlabeled pool folder and a labeled held-out folder.

Reads the Debian package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``), so that
docs/labeling.md has a folder of real images to label without any download::

    python docs/examples/fashion_mnist_folder.py fashion --pool 300 --heldout 200

writes ``fashion/pool/00000.png ...`` (flat: these are what you label), ``fashion/heldout/<class>/*.png``
(labeled, for the accuracy after each round), ``fashion/classes.txt`` and ``fashion/truth.csv``
(the true class of each pool image, to check your labels or to play the annotator).
Images are 28 x 28 grey, written 4x larger (nearest neighbour) so Label Studio shows them well.
"""

from __future__ import annotations

import argparse
import csv
import gzip
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ["T-shirt or top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
           "ankle boot"]


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    ndim = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--pool", type=int, default=300)
    ap.add_argument("--heldout", type=int, default=200)
    ap.add_argument("--source", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    x = read_idx(a.source / "t10k-images-idx3-ubyte.gz")
    y = read_idx(a.source / "t10k-labels-idx1-ubyte.gz")
    order = np.random.default_rng(a.seed).permutation(len(y))
    pool, held = order[: a.pool], order[a.pool: a.pool + a.heldout]
    (a.out / "pool").mkdir(parents=True, exist_ok=True)
    with open(a.out / "truth.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "label"])
        for j, i in enumerate(pool):
            p = a.out / "pool" / f"{j:05d}.png"
            Image.fromarray(x[i]).resize((112, 112), Image.NEAREST).save(p)
            w.writerow([str(p.resolve()), CLASSES[y[i]]])
    for j, i in enumerate(held):
        d = a.out / "heldout" / CLASSES[y[i]]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x[i]).resize((112, 112), Image.NEAREST).save(d / f"{j:05d}.png")
    (a.out / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    print(f"{len(pool)} pool images in {a.out / 'pool'}, {len(held)} held-out images in {a.out / 'heldout'}")


if __name__ == "__main__":
    main()
