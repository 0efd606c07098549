"""vlal strategies inside scikit-activeml's loop on real DTD CLIP features.

Loop (scikit-activeml convention): ``y`` all missing, then per round ``qs.query(X, y, clf,
batch_size=K)``, label the picks, refit ``SklearnClassifier(LogisticRegression)``; test
accuracy after each round. Compares vlal's CEC and Entropy (through
``vlal.integrations.skactiveml.SkactivemlStrategy``) with scikit-activeml's own
``RandomSampling``. Writes ``benchmarks/results/integrations_dtd.md``.

    OMP_NUM_THREADS=1 python benchmarks/integrations_dtd.py [--data ../shared/data/clip-vitb32/dtd.npz]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
from skactiveml.classifier import SklearnClassifier
from skactiveml.pool import RandomSampling
from sklearn.linear_model import LogisticRegression

from vlal.data import load_features, zero_shot_proxy
from vlal.integrations.skactiveml import SkactivemlStrategy

HERE = Path(__file__).resolve().parent


def run(ds, make_qs, seed: int, n_rounds: int) -> list[float]:
    X = np.asarray(ds.pool_features, dtype=np.float32)
    Xt = np.asarray(ds.test_features, dtype=np.float32)
    K = ds.n_classes
    clf = SklearnClassifier(LogisticRegression(max_iter=300, C=10.0), classes=np.arange(K), random_state=seed)
    qs = make_qs(seed)
    y = np.full(X.shape[0], np.nan)
    accs = []
    for _ in range(n_rounds):
        if isinstance(qs, RandomSampling):
            idx = qs.query(X, y, batch_size=K)
        else:
            idx = qs.query(X, y, clf, batch_size=K)
        y[idx] = ds.pool_labels[idx]
        clf.fit(X, y)
        accs.append(100.0 * float(np.mean(clf.predict(Xt) == ds.test_labels)))
    return accs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(HERE.parents[1] / "shared" / "data" / "clip-vitb32" / "dtd.npz"))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default=str(HERE / "results" / "integrations_dtd.md"))
    args = ap.parse_args()

    ds = load_features(args.data)
    W0, _ = zero_shot_proxy(ds, random_state=0)
    zs = 100.0 * float(np.mean(np.argmax(np.asarray(ds.test_features, np.float32) @ W0.T, 1) == ds.test_labels))
    runs = {
        "vlal CEC (SkactivemlStrategy)": lambda s: SkactivemlStrategy("cec", random_state=s),
        "vlal Entropy (SkactivemlStrategy)": lambda s: SkactivemlStrategy("entropy", random_state=s),
        "scikit-activeml RandomSampling": lambda s: RandomSampling(random_state=s),
    }
    K = ds.n_classes
    rows = []
    for name, make in runs.items():
        accs = np.array([run(ds, make, seed, args.rounds) for seed in range(args.seeds)])
        cells = [f"{m:.1f} ± {s:.1f}" for m, s in zip(accs.mean(0), accs.std(0))]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
        print(name, cells, flush=True)
    head = " | ".join(str(K * (r + 1)) for r in range(args.rounds))
    text = "\n".join([
        "# vlal strategies inside scikit-activeml's loop (DTD, real CLIP ViT-B/32 features)",
        "",
        f"Command: `OMP_NUM_THREADS=1 python benchmarks/integrations_dtd.py` (seeds 0..{args.seeds - 1}).",
        f"Pool {ds.pool_features.shape[0]} images, test {ds.test_features.shape[0]}, K = {K}; no labels at the start,",
        f"{K} queries per round; classifier (the tuner): scikit-activeml `SklearnClassifier(LogisticRegression(C=10))`",
        "refitted on all labels after each round. Test accuracy (%), mean ± std over seeds, by number of labels.",
        "",
        f"| strategy | {head} |",
        "|---|" + "---|" * args.rounds,
        *rows,
        "",
        f"Zero-shot on the same split (one-shot prototype proxy of `vlal.data.zero_shot_proxy`, no CLIP text "
        f"embeddings in this file): {zs:.1f} %.",
        "",
    ])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".integrations_dtd.")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, out)
    print(text)


if __name__ == "__main__":
    main()
