"""LookAhead: pick the rows whose label, simulated through a cheap surrogate of the tuner, fixes
the most pool predictions and breaks the fewest (issue 12, expected-gain experiment)."""

from __future__ import annotations

import numbers

import numpy as np

from .._validation import check_choice, check_param, check_positive_int, copy_groups, l2_normalize, seed_int
from ..exceptions import VlalInputError
from ..scoring import (
    _build_knn_index,
    _calibrate_block,
    _calibrated_entropy,
    _contextual_prior,
    _drop_self,
    _neighbor_uncertainty,
)
from .base import Pool, Strategy
from ._register import register
from .calibrated_mix import _cluster, rank01

__all__ = ["LookAhead", "lookahead_gain", "common_direction_similarity", "class_share_curve"]

_DIVERSITY = ("greedy", "cluster", "none")


def common_direction_similarity(zq: np.ndarray, z: np.ndarray, u: np.ndarray) -> np.ndarray:
    """``S~[i, j] = <P zq_i, P z_j>`` with ``P = I - u u^T`` (``u`` a unit vector).

    The default tuner (``AnchoredTuner``, ``n_common=1``) moves class embeddings only
    orthogonally to the leading direction of the labeled features, which is close to the mean
    direction of the pool; a class pulled towards ``x`` therefore gains on row ``j`` in
    proportion to this projected similarity, and loses where it is negative.
    """
    return zq @ z.T - np.outer(zq @ u, z @ u)


_SHARE_QUANTILES = (0.0, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 1.0)


def class_share_curve(z: np.ndarray, belief: np.ndarray, max_rows: int = 1500):
    """How likely two rows share a class beyond chance, as a function of their cosine.

    Among the more confident half of the rows (by ``max belief``; at most ``max_rows`` of them,
    evenly spaced in that order, so no randomness), every pair gets its cosine ``s`` and whether
    its two belief argmaxes agree. Pairs are binned at quantiles of ``s`` (finer towards the
    top); per bin ``pi = (agree - base) / (1 - base)``, ``base`` = agreement rate of the lower
    half of the pairs, clipped to [0, 1] and made non-decreasing in ``s``; the point
    ``(1, 1)`` is appended (a row shares its own class).

    Returns
    -------
    (s_points, pi_points) : two ndarrays, for ``np.interp(s, s_points, pi_points)``.
    """
    n = z.shape[0]
    conf = belief.max(axis=1)
    order = np.lexsort((np.arange(n), -conf))[: max(2, (n + 1) // 2)]
    if order.size > max_rows:
        order = order[np.linspace(0, order.size - 1, max_rows).round().astype(np.int64)]
    if order.size < 2:
        return np.array([-1.0, 1.0]), np.array([0.0, 1.0])
    zs = z[order]
    pred = belief[order].argmax(axis=1)
    iu = np.triu_indices(order.size, 1)
    s = (zs @ zs.T)[iu]
    same = (pred[:, None] == pred[None, :])[iu].astype(np.float64)
    edges = np.quantile(s, _SHARE_QUANTILES)
    base = same[s <= edges[1]].mean() if np.any(s <= edges[1]) else same.mean()
    pts, vals = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (s >= lo) & (s <= hi)
        if sel.any():
            pts.append(s[sel].mean())
            vals.append(same[sel].mean())
    vals = np.clip((np.asarray(vals) - base) / max(1e-12, 1.0 - base), 0.0, 1.0)
    vals = np.maximum.accumulate(vals)
    pts = np.asarray(pts)
    keep = np.concatenate([[True], np.diff(pts) > 0])
    pts, vals = pts[keep], vals[keep]
    if pts[-1] < 1.0:
        pts, vals = np.append(pts, 1.0), np.append(vals, 1.0)
    return pts, vals


def _top2(logits: np.ndarray):
    """(argmax, max, second argmax, second max) per row."""
    n_classes = logits.shape[1]
    if n_classes == 1:
        z = np.zeros(logits.shape[0], dtype=np.int64)
        return z, logits[:, 0], z, np.full(logits.shape[0], -np.inf)
    part = np.argpartition(-logits, 1, axis=1)[:, :2]
    v = np.take_along_axis(logits, part, axis=1)
    swap = v[:, 1] > v[:, 0]
    part[swap] = part[swap][:, ::-1]
    v[swap] = v[swap][:, ::-1]
    return part[:, 0].astype(np.int64), v[:, 0], part[:, 1].astype(np.int64), v[:, 1]


def lookahead_gain(logits, belief, sim, rows_query, beta: float, n_labels: int = 3, share=None, effect=None):
    """Expected net number of pool rows whose prediction a label at each query row fixes.

    For a query row ``x`` and a hypothetical label ``y`` (one of its ``n_labels`` most likely
    classes under ``belief``, weighted by ``belief[x, y]``), the surrogate of the tuner adds

        ``Delta_j = a_xy * sim[x, j]``,  ``a_xy = beta * (1 + sqrt(-log p_y(x)))``

    to class ``y``'s logit on every row ``j`` (``p = softmax(logits)``: the further the
    current model is from ``y`` at ``x``, the further the tuner pulls ``y``; the form was read
    off fits of ``AnchoredTuner``). Row ``j`` then predicts ``y`` when ``logits[j, y] + Delta_j``
    beats its best other class, and loses ``y`` (to its second class) when it predicted ``y``
    and ``Delta_j`` drops it below the second. A changed prediction ``c -> c'`` counts
    ``belief[j, c'] - belief[j, c]`` (expected fix minus expected break). Returns

        ``G(x) = sum_y belief[x, y] sum_j (belief[j, new_j] - belief[j, old_j])``.

    Parameters
    ----------
    logits : ndarray (n, K)
        Log-probabilities of the current model on the pool rows (any per-row constant).
    belief : ndarray (n, K)
        Probabilities taken as the belief about each row's true class (e.g. CEC's calibrated
        probabilities, Eq. 5).
    sim : ndarray (m, n) or (m, e)
        Similarity of each query row to each pool row (e.g. :func:`common_direction_similarity`),
        or to each row of ``effect``.
    rows_query : ndarray (m,), int
        Pool positions of the query rows (rows of ``logits`` / ``belief``).
    beta : float >= 0
    n_labels : int, default 3
    share : ndarray like ``sim``, optional
        ``pi`` of each (query, row) pair (:func:`class_share_curve`); None = 0.
    effect : ndarray (e,), int, optional
        Pool positions of the rows whose predictions are counted (a sample of a large pool);
        default all ``n``.

    Returns
    -------
    ndarray (m,), float64
    """
    logits = np.asarray(logits, dtype=np.float64)
    belief = np.asarray(belief, dtype=np.float64)
    rows_query = np.asarray(rows_query, dtype=np.int64)
    n_classes = logits.shape[1]
    h = min(int(n_labels), n_classes)
    lq = logits[rows_query]
    logp_q = lq - np.logaddexp.reduce(lq, axis=1, keepdims=True)
    if effect is not None:
        effect = np.asarray(effect, dtype=np.int64)
        logits, belief_e = logits[effect], belief[effect]
    else:
        belief_e = belief
    ne = logits.shape[0]
    c1, l1, c2, l2 = _top2(logits)
    b_old = belief_e[np.arange(ne), c1]
    b_second = belief_e[np.arange(ne), c2]
    ys = np.argsort(-belief[rows_query], axis=1, kind="stable")[:, :h]  # (m, h)
    w = np.take_along_axis(belief[rows_query], ys, axis=1)
    a = beta * (1.0 + np.sqrt(np.maximum(0.0, -np.take_along_axis(logp_q, ys, axis=1))))
    flat = ys.ravel()
    new = logits[:, flat].T + a.ravel()[:, None] * np.repeat(np.asarray(sim, dtype=np.float64), h, axis=0)
    is_y = c1[None, :] == flat[:, None]
    gain_in = ~is_y & (new > l1[None, :])  # rows taken by y
    gain_out = is_y & (new < l2[None, :])  # rows that lose y to their second class
    if share is None:
        pi = 0.0
    else:
        pi = np.repeat(np.asarray(share, dtype=np.float64), h, axis=0)
    # truth given y_x = y: P(y_j = y) = pi + (1 - pi) b_j(y), P(y_j = c) = (1 - pi) b_j(c) for c != y
    g = np.where(gain_in, pi + (1.0 - pi) * (belief_e[:, flat].T - b_old[None, :]), 0.0).sum(axis=1)
    g += np.where(gain_out, (1.0 - pi) * (b_second - b_old)[None, :] - pi, 0.0).sum(axis=1)
    out = (w * g.reshape(-1, h)).sum(axis=1)
    return out


def _best_per_group(order: np.ndarray, group: np.ndarray, budget: int) -> np.ndarray:
    """The first row of ``order`` (best first) of each group, best groups first, then the
    remaining rows of ``order``; ``budget`` of them."""
    _, first = np.unique(group[order], return_index=True)
    head = order[np.sort(first)]
    return np.concatenate([head, order[~np.isin(order, head)]])[:budget]


@register("lookahead")
class LookAhead(Strategy):
    """Expected-gain look-ahead mixed with CEC's uncertainty; the best row of each weighted cluster.

    On the L2-normalised unlabeled rows ``z`` with current model probabilities ``p``:

    1. ``u`` = unit mean of ``z``; ``S~[x, j] = <P z_x, P z_j>``, ``P = I - u u^T``
       (:func:`common_direction_similarity`: the default tuner moves class embeddings only
       orthogonally to the labeled rows' common direction; on fits of ``AnchoredTuner`` the
       change of a labeled class's logit is linear in ``S~``, r = 0.7-0.98);
    2. belief ``p^`` = CEC's calibrated probabilities (Eq. 5, contextual prior of ``top_n``;
       optionally tempered, ``temper``, or kNN-smoothed, ``smooth``);
    3. ``pi(s)`` = :func:`class_share_curve`: how much more often than chance two rows of cosine
       ``s`` share their belief argmax (``share=True``); given ``y_x = y``, row ``j`` is taken
       to be of class ``y`` with probability ``pi_j + (1 - pi_j) p^_j(y)``;
    4. ``G(x)`` = :func:`lookahead_gain`: logits ``log p``, pull
       ``Delta_j = beta (1 + sqrt(-log p_y(x))) S~[x, j]`` on class ``y``, expected fixes minus
       breaks on the pool, summed over the ``n_labels`` most likely labels ``y`` of ``x``
       weighted by ``p^(y | x)``;
    5. score ``w(x) = (1 - mix) r(G(x)) + mix r(U(x))``, ``U = H^ + H_NN`` CEC's calibrated
       uncertainty (``k``, ``alpha``), ``r`` = ranks in [0, 1] (as ``calibrated-mix``);
    6. diversity: ``"cluster"`` (default) weighted K-Means (weights ``w``) into ``budget``
       clusters and the best ``w`` of each; ``"greedy"`` picks the best ``G``, applies its
       simulated effect (most likely label) to the logits and beliefs and re-scores the
       ``refresh`` best remaining candidates, ``budget`` times (uses ``G`` only); ``"none"`` the
       top ``budget`` by ``w``.

    Utilities (``return_utilities=True``): ``w(x)`` of step 5 (``G(x)`` when ``mix=0``).

    Defaults (``beta=4, n_labels=3, mix=0.5, diversity="cluster", share=True``) were chosen on
    development seeds 5-9 of the four benchmark sets (1 %, one round); see
    ``docs/lookahead.md``.

    Parameters
    ----------
    beta : float >= 0, default 4.0
        Strength of the simulated pull (logit units per unit projected cosine). ``0`` turns
        the pull off: every gain is 0 and the ranking is CEC's uncertainty rank alone (an
        ablation, documented in ``docs/lookahead.md``).
    n_labels : int >= 1, default 3
        Hypothetical labels per candidate; values above the number of classes ``K`` use all
        ``K`` (documented cap, no error).
    top_n : int, default 10
        ``N`` of the contextual prior (Eq. 3).
    diversity : {"cluster", "greedy", "none"}, default "cluster"
    share : bool, default True
        Use the class-share curve of step 3 (False: ``pi = 0``, the belief alone).
    temper : float > 0, default 1.0
        Belief ``p^ ** temper``, renormalised.
    smooth : int >= 0, default 0
        If > 0, belief = half own, half mean of the ``smooth`` nearest rows' beliefs.
    mix : float in [0, 1], default 0.5
        Weight of CEC's uncertainty rank against the look-ahead gain rank.
    k : int, default 20
        Neighbours of ``H_NN`` (Eq. 6).
    alpha : float, default 0.1
        Bandwidth of Eq. 6.
    refresh : int, default 64
        Candidates re-scored after each greedy pick.
    n_iter : int, default 20
        K-Means iterations.
    max_effect_rows : int, default 4096
        ``G`` is O(candidates x rows counted): on a pool of more candidates than this, the
        predictions counted are those of ``max_effect_rows`` evenly spaced candidates (the
        benchmark pools, 1,128-2,494 rows, are counted whole).
    random_state : None, int, numpy SeedSequence, Generator or RandomState
    """

    def __init__(self, beta: float = 4.0, n_labels: int = 3, top_n: int = 10, *, diversity: str = "cluster",
                 share: bool = True, temper: float = 1.0, smooth: int = 0, mix: float = 0.5, k: int = 20, alpha: float = 0.1,
                 refresh: int = 64, n_iter: int = 20, max_effect_rows: int = 4096, random_state=None):
        self.beta = beta
        self.n_labels = n_labels
        self.top_n = top_n
        self.diversity = diversity
        self.share = share
        self.temper = temper
        self.smooth = smooth
        self.mix = mix
        self.k = k
        self.alpha = alpha
        self.refresh = refresh
        self.n_iter = n_iter
        self.max_effect_rows = max_effect_rows
        self.random_state = random_state

    def _check_params(self) -> None:
        check_param(self.beta, "beta", numbers.Real, min_val=0)
        check_positive_int(self.n_labels, "n_labels")
        check_positive_int(self.top_n, "top_n")
        check_positive_int(self.refresh, "refresh")
        check_positive_int(self.k, "k")
        if isinstance(self.smooth, bool) or not isinstance(self.smooth, numbers.Integral) or self.smooth < 0:
            raise VlalInputError(f"smooth must be an integer >= 0; got {self.smooth!r}")
        check_param(self.temper, "temper", numbers.Real, min_val=0, include_boundaries="neither")
        check_param(self.mix, "mix", numbers.Real, min_val=0, max_val=1)
        check_param(self.alpha, "alpha", numbers.Real, min_val=0)
        check_positive_int(self.n_iter, "n_iter")
        check_positive_int(self.max_effect_rows, "max_effect_rows")
        if not isinstance(self.share, (bool, np.bool_)):
            raise VlalInputError(f"share must be True or False; got {self.share!r}")
        check_choice(self.diversity, "diversity", _DIVERSITY)

    def _candidate_inputs(self, pool: Pool):
        """``(cand, z, p, logits, belief)`` of the candidate rows: unit features (float64),
        probabilities renormalised, their logs, and the calibrated beliefs (Eq. 5)."""
        cand = pool.candidates
        z = l2_normalize(pool.features, "features", rows=cand).astype(np.float64)
        p = np.asarray(pool.probs[cand], dtype=np.float64)
        p /= p.sum(axis=1, keepdims=True)
        logits = np.log(np.maximum(p, 1e-300))
        return cand, z, p, logits, _calibrate_block(p, _contextual_prior(p, int(self.top_n)))

    def _query(self, pool: Pool, budget: int, rng: np.random.Generator):
        self._check_params()
        cand, z, p, logits, belief = self._candidate_inputs(pool)
        m = cand.size
        zf = z.astype(np.float32)  # for faiss: the kNN index (built once, if needed) and K-Means
        index = None
        if m >= 2 and (int(self.smooth) > 0 or float(self.mix) > 0):
            index = _build_knn_index(zf, "auto", None, "auto")
        if int(self.smooth) > 0 and m >= 2:  # half own belief, half the mean belief of the kNN
            ks = min(int(self.smooth), m - 1)
            sm = np.empty_like(belief)
            for rows_s, dist_s, idx_s in index.self_search(ks + 1):
                rows_s = np.asarray(rows_s)
                _, nb = _drop_self(rows_s, np.asarray(dist_s), np.asarray(idx_s), ks)
                sm[rows_s] = belief[nb].mean(axis=1)
            belief = 0.5 * belief + 0.5 * sm
        if float(self.temper) != 1.0:  # tempered belief: belief ** temper, renormalised
            lb = float(self.temper) * np.log(np.maximum(belief, 1e-300))
            belief = np.exp(lb - lb.max(axis=1, keepdims=True))  # row maximum taken out: no 0 / 0 for a large temper
            belief /= belief.sum(axis=1, keepdims=True)
        mu = z.mean(axis=0)
        nu = np.linalg.norm(mu)
        u = mu / nu if nu > 0 else np.zeros_like(mu)
        beta, h = float(self.beta), int(self.n_labels)
        s_pts, pi_pts = class_share_curve(z, belief) if self.share else (None, None)
        cap = int(self.max_effect_rows)
        eff = None if m <= cap else np.linspace(0, m - 1, cap).round().astype(np.int64)
        ze = z if eff is None else z[eff]
        step = max(1, int(1_000_000 // max(1, ze.shape[0] * min(int(self.n_labels), p.shape[1]))))

        def score(rows, lg, bel=belief):
            out = np.empty(rows.size)
            for s in range(0, rows.size, step):
                r = rows[s : s + step]
                share = np.interp(z[r] @ ze.T, s_pts, pi_pts) if self.share else None
                out[s : s + step] = lookahead_gain(lg, bel, common_direction_similarity(z[r], ze, u), r, beta, h,
                                                   share, effect=eff)
            return out

        g0 = score(np.arange(m), logits)
        final = g0
        if float(self.mix) > 0:  # mixed with CEC's uncertainty, on ranks (as calibrated-mix)
            hh = _calibrated_entropy(p, int(self.top_n))
            if m >= 2:
                hh = hh + _neighbor_uncertainty(zf, hh, int(self.k), float(self.alpha), index, "auto")  # warns if k >= m
            final = (1.0 - float(self.mix)) * rank01(g0) + float(self.mix) * rank01(hh)
        seed = seed_int(self.random_state, rng)
        tie = np.random.default_rng([seed, 1]).permutation(m)  # equal scores: random_state decides, not row order
        order0 = np.lexsort((tie, -final))
        if budget >= m:
            chosen = order0[:budget]
        elif self.diversity == "none":  # best rows, one per distinct image while enough remain
            chosen = _best_per_group(order0, copy_groups(zf), budget)  # copies share an id
        elif self.diversity == "cluster":  # the best row of each cluster; then the best rows left (empty clusters)
            _, assign = _cluster(zf, rank01(final) + 1e-3, budget, seed, int(self.n_iter), "k-means++", "auto")
            chosen = _best_per_group(order0, assign, budget)
        else:  # lazy greedy with simulated updates
            copy_of = copy_groups(zf)  # copies of one image share an id
            lg = logits.copy()
            bel = belief.copy()
            cur = g0.copy()
            avail = np.ones(m, dtype=bool)
            chosen = []
            refresh = int(self.refresh)
            for _ in range(budget):
                idx = np.flatnonzero(avail)
                top = idx[np.lexsort((tie[idx], -cur[idx]))[:refresh]]
                if chosen:
                    cur[top] = score(top, lg, bel)
                best = int(top[np.lexsort((tie[top], -cur[top]))[0]])
                chosen.append(best)
                avail[best] = False
                avail[copy_of == copy_of[best]] = False  # its copies would teach nothing new
                if not avail.any():  # fewer distinct images than the budget: copies again
                    avail[:] = True
                    avail[np.asarray(chosen)] = False
                y = int(np.argmax(bel[best]))
                logp_xy = lg[best, y] - np.logaddexp.reduce(lg[best])
                a = beta * (1.0 + np.sqrt(max(0.0, -logp_xy)))
                lg[:, y] += a * common_direction_similarity(z[[best]], z, u)[0]
                if self.share:  # the label is evidence about the rows near it
                    pi = np.interp(z[best] @ z.T, s_pts, pi_pts)[:, None]
                    bel *= 1.0 - pi
                    bel[:, y] += pi[:, 0]
            chosen = np.asarray(chosen)
        return cand[np.asarray(chosen, dtype=np.int64)], final
