"""Verification and identification metrics, in one "higher is more alike" similarity scale.

Recognizers with an L2 metric are handled by negating distances, so every function here reads
"similarity >= t means the same person".
"""

from __future__ import annotations

import numpy as np


def similarity_matrix(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """(N, D), (M, D) embeddings -> (N, M) similarities: cosine, or minus the L2 distance."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if metric == "cosine":
        an = a / np.linalg.norm(a, axis=1, keepdims=True)
        bn = b / np.linalg.norm(b, axis=1, keepdims=True)
        return an @ bn.T
    d2 = (a**2).sum(1)[:, None] + (b**2).sum(1)[None] - 2 * a @ b.T
    return -np.sqrt(np.clip(d2, 0, None))


def to_similarity(score: float | np.ndarray, metric: str):
    return score if metric == "cosine" else -np.asarray(score)


def from_similarity(sim: float, metric: str) -> float:
    return float(sim if metric == "cosine" else -sim)


def pair_similarities(emb: np.ndarray, ids: list, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """All same-identity and different-identity pair similarities (each unordered pair once)."""
    s = similarity_matrix(emb, emb, metric)
    ids = np.asarray(ids)
    iu = np.triu_indices(len(ids), k=1)
    same = ids[iu[0]] == ids[iu[1]]
    vals = s[iu]
    return vals[same], vals[~same]


def roc_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Area under the ROC curve = P(pos > neg) + P(pos == neg) / 2 (Mann-Whitney, ties averaged)."""
    pos, neg = np.asarray(pos, np.float64), np.asarray(neg, np.float64)
    allv = np.concatenate([pos, neg])
    order = np.argsort(allv, kind="mergesort")
    ranks = np.empty(len(allv))
    sorted_v = allv[order]
    # average ranks over ties
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_v)) + 1]
    ends = np.r_[starts[1:], len(allv)]
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = (s + e - 1) / 2 + 1
    r_pos = ranks[: len(pos)].sum()
    return float((r_pos - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def threshold_at_far(neg: np.ndarray, far: float) -> float:
    """Smallest similarity threshold t with mean(neg >= t) <= far."""
    neg = np.sort(np.asarray(neg, np.float64))[::-1]
    k = int(np.floor(far * len(neg)))  # this many impostor pairs may pass
    if k >= len(neg):
        return float(neg[-1])
    return float(np.nextafter(neg[k], np.inf))


def rate_at(values: np.ndarray, t: float) -> float:
    """Share of similarities >= t (TAR for genuine pairs, FAR for impostor pairs)."""
    return float(np.mean(np.asarray(values) >= t))
