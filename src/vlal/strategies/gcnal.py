"""GCNAL / CoreGCN: CoreSet on the embeddings of a labeled-vs-unlabeled GCN (Caramalau et al., CVPR 2021)."""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp

from .._validation import check_param, l2_normalize, rows_per_chunk, seed_int
from ..scoring import _drop_self, _knn
from .base import Pool
from .kcenter import KCenterStrategy
from ._register import register

__all__ = ["GCNAL"]


def _import_torch():
    try:
        import torch
    except ImportError as err:  # pragma: no cover - torch is installed in the dev environment
        raise ImportError(
            "GCNAL needs PyTorch, which is not installed; install the [clip] extra: `pip install -e '.[clip]'` "
            "in the vlal checkout"
        ) from err
    return torch


def _knn_adjacency(z: np.ndarray, k: int) -> sp.csr_matrix:
    """Normalised sparse kNN similarity graph with self loops, ``D^-1/2 (A + I) D^-1/2``.

    ``A`` links each row to its ``k`` nearest *other* rows (exact faiss search on the
    normalised features ``z``), weighted by the cosine similarity clipped at 0, and is
    symmetrised with an element-wise max (``A = max(A, A^T)``). At most ``2 k n + n``
    stored entries; no dense (n, n) matrix is ever built.

    Parameters
    ----------
    z : ndarray (n, d), float32
        L2-normalised features, ``n >= 2``.
    k : int
        Neighbours per row (reduced to ``n - 1`` when larger).

    Returns
    -------
    scipy.sparse.csr_matrix (n, n), float32, symmetric.
    """
    n = z.shape[0]
    k = min(k, n - 1)
    rows, cols, vals = [], [], []
    step = rows_per_chunk(z.shape[1])
    for s in range(0, n, step):
        q = z[s : s + step]
        block = np.arange(s, s + q.shape[0])
        # the row itself is dropped (or, when identical rows hide it, the farthest hit)
        dist, idx = _drop_self(block, *_knn(z, q, k + 1), k)
        rows.append(np.repeat(block, k))
        cols.append(idx.ravel())
        vals.append(np.maximum(1.0 - dist.ravel() / 2.0, 0.0))  # cosine similarity of unit vectors
    a = sp.csr_matrix(
        (np.concatenate(vals).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
    )
    a = a.maximum(a.T) + sp.identity(n, dtype=np.float32, format="csr")
    a.eliminate_zeros()
    d_inv_sqrt = 1.0 / np.sqrt(np.asarray(a.sum(axis=1)).ravel())
    scale = sp.diags(d_inv_sqrt.astype(np.float32))
    return (scale @ a @ scale).tocsr().astype(np.float32)


def _to_torch_sparse(a: sp.csr_matrix, torch):
    coo = a.tocoo()
    index = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    values = torch.from_numpy(coo.data.astype(np.float32))
    return torch.sparse_coo_tensor(index, values, a.shape, check_invariants=True).coalesce()


def _gcn_embeddings(
    x: np.ndarray,
    adj: sp.csr_matrix,
    labeled_mask: np.ndarray,
    *,
    hidden: int,
    n_steps: int,
    lr: float,
    weight_decay: float,
    dropout: float,
    seed: int,
) -> np.ndarray:
    """Train a 2-layer GCN to score labeled (1) vs unlabeled (0); return its hidden layer (n, hidden).

    ``H = relu(A X W1 + b1)``, ``s = A (dropout(H) W2) + b2``; loss = mean BCE over the
    labeled rows + mean BCE over the unlabeled rows (each group weighted equally; the
    authors weight the unlabeled term by a tunable lambda, here 1). Full-batch Adam on CPU.
    Every random draw (weights: uniform in ``+-1/sqrt(fan_in)`` as ``torch.nn.Linear``;
    dropout masks) comes from a local ``torch.Generator`` seeded with ``seed``: torch's
    global generator is neither read nor changed, so concurrent calls in several threads
    give the same embeddings as sequential ones.
    """
    torch = _import_torch()
    f = torch.nn.functional
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(seed))

    def uniform(*shape, fan_in):
        bound = 1.0 / np.sqrt(fan_in)
        return torch.nn.Parameter((torch.rand(*shape, generator=gen) * 2.0 - 1.0) * bound)

    d = x.shape[1]
    w1, b1 = uniform(hidden, d, fan_in=d), uniform(hidden, fan_in=d)
    w2 = uniform(1, hidden, fan_in=hidden)
    bias2 = torch.nn.Parameter(torch.zeros(1))
    a = _to_torch_sparse(adj, torch)
    ax = torch.sparse.mm(a, torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
    opt = torch.optim.Adam([w1, b1, w2, bias2], lr=lr, weight_decay=weight_decay)
    lab = torch.from_numpy(labeled_mask)
    target = lab.to(torch.float32)
    for _ in range(n_steps):
        h = torch.relu(f.linear(ax, w1, b1))
        if dropout > 0:
            keep = torch.rand(h.shape, generator=gen) >= dropout
            h = h * keep / (1.0 - dropout)
        logits = (torch.sparse.mm(a, f.linear(h, w2)) + bias2).squeeze(1)
        bce = f.binary_cross_entropy_with_logits(logits, target, reduction="none")
        loss = bce[lab].mean() + bce[~lab].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        emb = torch.relu(f.linear(ax, w1, b1))
    return emb.numpy().astype(np.float32)


@register("gcnal")
class GCNAL(KCenterStrategy):
    """CoreGCN: greedy k-centre CoreSet on the hidden embeddings of a graph network.

    1. A sparse kNN graph over the whole pool (labeled + unlabeled): each row linked to its
       ``n_neighbors`` nearest others on L2-normalised features (faiss), cosine-similarity
       weights, symmetrised, self loops, ``D^-1/2 (A + I) D^-1/2`` (``torch.sparse``; never a
       dense n x n matrix; the authors' dense affinity graph does not scale to CLIP pools).
    2. A 2-layer GCN (hidden width ``hidden``, ReLU, dropout) trained full-batch for
       ``n_steps`` Adam steps with binary cross-entropy to tell labeled (1) from unlabeled (0),
       the two groups weighted equally.
    3. CoreSet (:func:`vlal.scoring.k_center_greedy`) on the GCN's first-layer
       embeddings, the labeled rows being the initial centres.

    It needs the labeled set but not the label values (``labels`` is ignored); with
    nothing labeled it falls back to :class:`~vlal.Random` (paper Sec. 6). Deterministic
    on CPU for a fixed ``random_state``, whatever other threads do: torch's global random
    generator is never used (a local ``torch.Generator`` serves every draw).

    Utilities (``select(..., return_utilities=True)``): as :class:`~vlal.CoreSet`, the
    Euclidean distance in the GCN embedding to the nearest labeled row or earlier pick.

    Parameters
    ----------
    n_neighbors : int, default 10
        Neighbours per row in the graph (reduced to ``n - 1`` on tiny pools).
    hidden : int, default 128
        Width of the hidden GCN layer (the embedding CoreSet works on).
    n_steps : int, default 200
        Adam steps (full batch).
    lr : float, default 1e-3
    weight_decay : float, default 5e-4
    dropout : float, default 0.3
    random_state : None, int, numpy Generator or RandomState
        Seeds the local torch generator (weights, dropout), ties and the round-1 random
        fallback.

    Raises
    ------
    ImportError
        PyTorch is missing (``pip install -e '.[clip]'`` in the vlal checkout); raised by :meth:`select`, not at import.
    ValueError
        Invalid parameters (from :meth:`select`).

    References
    ----------
    R. Caramalau, B. Bhattarai and T.-K. Kim, "Sequential Graph Convolutional Network for
    Active Learning", CVPR 2021.
    """

    requires_labeled = True

    def check_dependencies(self) -> None:
        """Raise ``ImportError`` (with the install command) when torch is missing."""
        _import_torch()

    def __init__(
        self,
        n_neighbors: int = 10,
        hidden: int = 128,
        n_steps: int = 200,
        lr: float = 1e-3,
        weight_decay: float = 5e-4,
        dropout: float = 0.3,
        *,
        random_state=None,
    ):
        self.n_neighbors = n_neighbors
        self.hidden = hidden
        self.n_steps = n_steps
        self.lr = lr
        self.weight_decay = weight_decay
        self.dropout = dropout
        self.random_state = random_state

    def _check_params(self) -> None:
        check_param(self.n_neighbors, "n_neighbors", numbers.Integral, min_val=1)
        check_param(self.hidden, "hidden", numbers.Integral, min_val=1)
        check_param(self.n_steps, "n_steps", numbers.Integral, min_val=1)
        check_param(self.lr, "lr", numbers.Real, min_val=0, include_boundaries="neither")
        check_param(self.weight_decay, "weight_decay", numbers.Real, min_val=0)
        check_param(self.dropout, "dropout", numbers.Real, min_val=0, max_val=1, include_boundaries="left")

    def _embedding(self, pool: Pool, rng: np.random.Generator):
        _import_torch()  # fail early with the install hint
        z = l2_normalize(pool.features, "features")
        adj = _knn_adjacency(z, self.n_neighbors)
        labeled_mask = np.zeros(pool.n, dtype=bool)
        labeled_mask[pool.labeled] = True
        emb = _gcn_embeddings(
            z,
            adj,
            labeled_mask,
            hidden=self.hidden,
            n_steps=self.n_steps,
            lr=float(self.lr),
            weight_decay=float(self.weight_decay),
            dropout=float(self.dropout),
            seed=seed_int(self.random_state, rng),
        )
        return emb[pool.candidates], emb[pool.labeled]
