"""Distances between sets of feature vectors: Fréchet distance and k-NN precision / recall (numpy, scipy).

Written here from the papers' definitions rather than taken from a library: the FID packages bundle an
Inception network, a fixed feature layer and image loading, and none of them exposes both metrics on
arbitrary feature arrays with control over the sample sizes, which is what comparing like with like
below needs.

- Fréchet distance (Dowson & Landau 1982; as FID, Heusel et al. 2017): each set is summarised by its
  mean and covariance and d = |m1 - m2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)), the root by
  `scipy.linalg.sqrtm`, checked, and taken from the eigenvalues of S1 S2 where sqrtm fails on a
  singular product (fewer points than dimensions).
- Precision and recall (Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric for Assessing
  Generative Models"): the manifold of a set is the union of balls around each of its points, each with
  the radius of that point's distance to its k-th nearest neighbour in the set. Precision is the share
  of generated points inside the real manifold; recall the share of real points inside the generated one.

Both depend on sample size (the FD of two samples of one distribution shrinks as they grow, k-NN radii
shrink with more points), so `fd_with_floor` and `precision_recall` always compare sets of equal size:

- floor: the real reference is shuffled (seeded) and split into two disjoint halves A and B of m points
  each, m = min(len(real) // 2, len(generated)); floor = FD(A, B).
- generated: m generated points G drawn (seeded) from the generated set; FD = (FD(G, A) + FD(G, B)) / 2,
  so the generated set meets the same real halves with as many points as the floor's halves have.
- both are averaged over `FD_SPLITS` such draws, which tames the noise of small validation sets.
- precision / recall: n = min(len(real), len(generated)) points of each (a seeded subset of the larger).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import scipy.linalg

DEFAULT_K = 3
# Random half-splits the FD and its floor are averaged over: one split of a few dozen points gives a
# floor anywhere in about 0.5-2x its mean; ten bring the generated/floor ratio of two real sets of 80
# images to 0.7-1.8 (5th-95th percentile, measured on builtin:demo).
FD_SPLITS = 10
# Relative error beyond which sqrtm's result is not trusted (then the eigenvalue route is taken).
_TOLERANCE = 1e-6
_CHUNK = 1024


def _moments(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and covariance (d, d) of (n, d) features, n >= 2, in float64."""
    x = np.asarray(features, np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need (n >= 2, d) features, got shape {x.shape}")
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def _trace_sqrt_product(s1: np.ndarray, s2: np.ndarray) -> float:
    """tr((S1 S2)^(1/2)) for covariance matrices, singular ones included."""
    product = s1 @ s2
    with warnings.catch_warnings():
        # Fewer points than dimensions, or a dead feature, make the product singular: sqrtm warns,
        # and its result is checked below instead.
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        root = scipy.linalg.sqrtm(product)
    if np.isfinite(root).all():
        scale = max(float(np.abs(product).max()), 1e-300)
        # Round-off leaves a tiny imaginary part; a large one, or a root that does not square back to
        # the product, means the Schur method lost its way.
        if float(np.abs(np.imag(root)).max()) <= _TOLERANCE * np.sqrt(scale):
            real = np.real(root)
            if float(np.abs(real @ real - product).max()) <= _TOLERANCE * scale:
                return float(np.trace(real))
    # The eigenvalues of S1 S2 are real and >= 0 in exact arithmetic (it is similar to the PSD matrix
    # S1^(1/2) S2 S1^(1/2)), so the trace of its root is the sum of their square roots.
    eigenvalues = np.linalg.eigvals(product).real
    return float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())


def gaussian_frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any) -> float:
    """The Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2); never below 0."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * _trace_sqrt_product(s1, s2))
    return max(value, 0.0)  # round-off can give -1e-12 for identical sets


def frechet_distance(a: Any, b: Any) -> float:
    """The Fréchet distance between the Gaussians fitted to two (n, d) feature sets (n >= 2 each)."""
    mu1, s1 = _moments(a)
    mu2, s2 = _moments(b)
    return gaussian_frechet_distance(mu1, s1, mu2, s2)


def fd_with_floor(real: Any, generated: Any, seed: int = 0, splits: int = FD_SPLITS) -> dict[str, Any] | None:
    """FD of `generated` against `real` beside the real-vs-real floor, at equal sample sizes.

    Returns {"generated", "floor", "ratio", "sample_size", "splits"} (see the module docstring for how
    the sets are drawn), or None when there are too few points (fewer than 2 per half, or 2 generated).
    """
    real, generated = np.asarray(real, np.float64), np.asarray(generated, np.float64)
    m = min(len(real) // 2, len(generated))
    if m < 2:
        return None
    floors, values = [], []
    for split in range(splits):
        rng = np.random.default_rng([seed, split])
        order = rng.permutation(len(real))
        half_a, half_b = real[order[:m]], real[order[m : 2 * m]]
        sample = generated[rng.permutation(len(generated))[:m]]
        floors.append(frechet_distance(half_a, half_b))
        values.append((frechet_distance(sample, half_a) + frechet_distance(sample, half_b)) / 2.0)
    floor, value = float(np.mean(floors)), float(np.mean(values))
    return {
        "generated": value,
        "floor": floor,
        "ratio": value / floor if floor > 0 else None,
        "sample_size": m,
        "splits": splits,
    }


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances (len(a), len(b)), from |x|^2 + |y|^2 - 2 x.y clipped at 0."""
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.clip(squared, 0.0, None))


def knn_radii(features: Any, k: int = DEFAULT_K) -> np.ndarray:
    """(n,) distance of each point to its k-th nearest neighbour among the others (needs n > k)."""
    x = np.asarray(features, np.float64)
    if len(x) <= k:
        raise ValueError(f"the k-NN radius with k = {k} needs more than {k} points, got {len(x)}")
    radii = np.empty(len(x))
    for start in range(0, len(x), _CHUNK):
        block = _distances(x[start : start + _CHUNK], x)
        # Column k of the sorted row: index 0 is the point itself (distance 0).
        radii[start : start + _CHUNK] = np.partition(block, k, axis=1)[:, k]
    return radii


def in_manifold(points: Any, manifold: Any, radii: np.ndarray) -> np.ndarray:
    """(len(points),) booleans: whether each point lies within radii[j] of some manifold point j."""
    p, m = np.asarray(points, np.float64), np.asarray(manifold, np.float64)
    inside = np.empty(len(p), bool)
    for start in range(0, len(p), _CHUNK):
        inside[start : start + _CHUNK] = (_distances(p[start : start + _CHUNK], m) <= radii[None, :]).any(axis=1)
    return inside


def precision_recall(real: Any, generated: Any, k: int = DEFAULT_K, seed: int = 0) -> dict[str, Any] | None:
    """Kynkäänniemi precision and recall of `generated` against `real` with k-NN manifolds.

    Both sets are cut to n = min(len(real), len(generated)) points (a seeded subset of the larger).
    Returns {"precision", "recall", "k", "sample_size"}, or None when n <= k.
    """
    real, generated = np.asarray(real, np.float64), np.asarray(generated, np.float64)
    n = min(len(real), len(generated))
    if n <= k:
        return None
    rng = np.random.default_rng(seed)
    real = real[np.sort(rng.permutation(len(real))[:n])]
    generated = generated[np.sort(rng.permutation(len(generated))[:n])]
    precision = float(in_manifold(generated, real, knn_radii(real, k)).mean())
    recall = float(in_manifold(real, generated, knn_radii(generated, k)).mean())
    return {"precision": precision, "recall": recall, "k": k, "sample_size": n}
