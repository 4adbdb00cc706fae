"""Two-sample statistics for embedding drift: centroid cosine distance and MMD² with a permutation test."""

from __future__ import annotations

import numpy as np
import torch


def unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


def centroid_cosine_distance(base_centroid: np.ndarray, window: np.ndarray) -> float:
    """1 - cos(baseline centroid, window centroid)."""
    return float(1.0 - unit(base_centroid) @ unit(window.mean(axis=0)))


def mmd2_permutation(
    x: np.ndarray,
    y: np.ndarray,
    permutations: int,
    rng: np.random.Generator,
    device: torch.device | None = None,
) -> tuple[float, float]:
    """Biased MMD² (V-statistic) with an RBF kernel and a permutation-test p-value.

    Bandwidth: the median pairwise squared distance of the pooled sample. With the weight vector
    a = (1/m, ..., -1/n, ...) the statistic is aᵀKa, so all permutations cost one (P, N) @ (N, N) product.
    Everything (kernel, bandwidth, permutations) runs on ``device`` (the GPU when the scorer has one) with
    a single copy back.
    """
    m, n = len(x), len(y)
    dev = device or torch.device("cpu")
    dtype = torch.float64 if dev.type == "cpu" else torch.float32
    z = torch.from_numpy(np.concatenate([x, y])).to(dev, dtype)
    d2 = torch.cdist(z, z).square_()
    off = d2[torch.triu_indices(m + n, m + n, offset=1, device=dev).unbind()]
    bandwidth = off.median().clamp_min(1e-12) if off.numel() else torch.ones((), device=dev, dtype=dtype)
    k = torch.exp(-d2 / bandwidth)  # no host sync: the bandwidth stays on the device
    a0 = torch.cat([torch.full((m,), 1.0 / m, dtype=dtype), torch.full((n,), -1.0 / n, dtype=dtype)]).to(dev)
    # permutations drawn on the device, seeded from ``rng``: argsort of uniform noise, one call for all
    gen = torch.Generator(device=dev)
    gen.manual_seed(int(rng.integers(2**63 - 1)))
    perms = torch.argsort(torch.rand((permutations, m + n), generator=gen, device=dev), dim=1)
    a = torch.cat([a0[None], a0[perms]])
    stats = ((a @ k) * a).sum(dim=1).cpu().numpy()  # the one device -> host copy
    observed, null = float(stats[0]), stats[1:]
    pvalue = (1.0 + float((null >= observed - 1e-9).sum())) / (1.0 + permutations)
    return max(observed, 0.0), pvalue
