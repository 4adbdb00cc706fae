"""Two-sample statistics for embedding drift: centroid cosine distance and MMD² with a permutation test."""

from __future__ import annotations

import numpy as np


def unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


def centroid_cosine_distance(base_centroid: np.ndarray, window: np.ndarray) -> float:
    """1 - cos(baseline centroid, window centroid)."""
    return float(1.0 - unit(base_centroid) @ unit(window.mean(axis=0)))


def mmd2_permutation(
    x: np.ndarray, y: np.ndarray, permutations: int, rng: np.random.Generator
) -> tuple[float, float]:
    """Biased MMD² (V-statistic) with an RBF kernel and a permutation-test p-value.

    Bandwidth: the median pairwise squared distance of the pooled sample. With the weight vector
    a = (1/m, ..., -1/n, ...) the statistic is aᵀKa, so all permutations cost one (P, N) @ (N, N) product.
    """
    z = np.concatenate([x, y]).astype(np.float64)
    m, n = len(x), len(y)
    sq_norms = (z * z).sum(axis=1)
    d2 = np.maximum(sq_norms[:, None] + sq_norms[None, :] - 2.0 * (z @ z.T), 0.0)
    off = d2[np.triu_indices(m + n, k=1)]
    bandwidth = float(np.median(off)) if off.size else 1.0
    k = np.exp(-d2 / max(bandwidth, 1e-12))
    a = np.concatenate([np.full(m, 1.0 / m), np.full(n, -1.0 / n)])
    observed = float(a @ k @ a)
    perms = np.stack([a[rng.permutation(m + n)] for _ in range(permutations)])
    null = np.einsum("pi,pi->p", perms @ k, perms)
    pvalue = (1.0 + float((null >= observed - 1e-12).sum())) / (1.0 + permutations)
    return max(observed, 0.0), pvalue
