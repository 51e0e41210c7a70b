"""The judge's set metrics on cases with a known answer: Fréchet distance and k-NN precision / recall."""

from __future__ import annotations

import numpy as np
import pytest

from argomlops.trainer.judge_metrics import (
    fd_with_floor,
    frechet_distance,
    gaussian_frechet_distance,
    knn_radii,
    precision_recall,
)


def _eigen_trace_sqrt(s1: np.ndarray, s2: np.ndarray) -> float:
    # An independent route to tr((S1 S2)^(1/2)): the eigenvalues of S1 S2 are real and >= 0.
    return float(np.sqrt(np.clip(np.linalg.eigvals(s1 @ s2).real, 0.0, None)).sum())


def test_fd_of_a_set_with_itself_is_zero() -> None:
    features = np.random.default_rng(0).normal(size=(200, 16))
    assert frechet_distance(features, features) == pytest.approx(0.0, abs=1e-8)


def test_fd_of_two_gaussian_samples_matches_the_analytic_value() -> None:
    # Diagonal covariances: FD = |m1 - m2|^2 + sum (s1 - s2)^2 with s the standard deviations.
    rng = np.random.default_rng(1)
    mean1, mean2 = np.zeros(4), np.array([1.0, -0.5, 0.0, 2.0])
    std1, std2 = np.array([1.0, 2.0, 0.5, 1.0]), np.array([1.5, 1.0, 0.5, 3.0])
    a = mean1 + std1 * rng.normal(size=(40000, 4))
    b = mean2 + std2 * rng.normal(size=(40000, 4))
    analytic = float(((mean1 - mean2) ** 2).sum() + ((std1 - std2) ** 2).sum())  # 5.25 + 5.25
    assert frechet_distance(a, b) == pytest.approx(analytic, rel=0.03)


def test_gaussian_fd_agrees_with_the_eigenvalue_route_on_correlated_covariances() -> None:
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    s1, s2 = x @ x.T, y @ y.T
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * _eigen_trace_sqrt(s1, s2)
    assert gaussian_frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-6)
    # One dimension: |m1 - m2|^2 + (s1 - s2)^2 of the standard deviations.
    assert gaussian_frechet_distance([0.0], [[4.0]], [3.0], [[1.0]]) == pytest.approx(9.0 + 1.0)


def test_fd_with_fewer_points_than_dimensions_is_finite_and_correct() -> None:
    # 5 points in 48 dimensions: both covariances have rank 4, their product is singular.
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(5, 48)), rng.normal(size=(5, 48)) + 0.5
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    diff = a.mean(0) - b.mean(0)
    expected = diff @ diff + np.trace(s1) + np.trace(s2) - 2 * _eigen_trace_sqrt(s1, s2)
    value = frechet_distance(a, b)
    assert np.isfinite(value) and value == pytest.approx(expected, rel=1e-5)
    # A dead feature (constant column) in both sets changes nothing.
    a[:, 0] = b[:, 0] = 1.0
    assert np.isfinite(frechet_distance(a, b))


def test_fd_floor_and_generated_use_equal_sample_sizes() -> None:
    rng = np.random.default_rng(4)
    real, same = rng.normal(size=(2000, 8)), rng.normal(size=(1500, 8))
    result = fd_with_floor(real, same, seed=0)
    assert result is not None and result["sample_size"] == 1000
    # The same distribution, the same sizes: about the floor.
    assert 0.5 < result["ratio"] < 2.0
    shifted = fd_with_floor(real, same + 1.0, seed=0)
    assert shifted is not None and shifted["ratio"] > 10
    assert shifted["generated"] == pytest.approx(8.0, rel=0.2)  # |shift|^2 = 8, plus the sampling floor
    small = fd_with_floor(real, same[:50], seed=0)
    assert small is not None and small["sample_size"] == 50
    assert fd_with_floor(real[:3], same) is None


def test_fd_with_floor_is_deterministic_per_seed() -> None:
    rng = np.random.default_rng(5)
    real, generated = rng.normal(size=(100, 8)), rng.normal(size=(100, 8))
    assert fd_with_floor(real, generated, seed=3) == fd_with_floor(real, generated, seed=3)
    assert fd_with_floor(real, generated, seed=3) != fd_with_floor(real, generated, seed=4)


def test_precision_and_recall_of_a_set_against_itself_are_one() -> None:
    features = np.random.default_rng(6).normal(size=(300, 10))
    result = precision_recall(features, features)
    assert result is not None and result["precision"] == 1.0 and result["recall"] == 1.0


def test_precision_and_recall_against_a_far_away_set_are_zero() -> None:
    rng = np.random.default_rng(7)
    real, far = rng.normal(size=(300, 10)), rng.normal(size=(300, 10)) + 100.0
    result = precision_recall(real, far)
    assert result is not None and result["precision"] == 0.0 and result["recall"] == 0.0


def test_mode_collapse_keeps_precision_and_halves_recall() -> None:
    # Real: two well separated clusters. Generated: only the first. Precision stays high (what is
    # generated is realistic), recall drops to about the share of the real set it covers.
    rng = np.random.default_rng(8)
    centres = np.array([0.0, 50.0])[rng.integers(0, 2, 600)]
    real = rng.normal(size=(600, 6)) + centres[:, None]
    collapsed = rng.normal(size=(600, 6))
    result = precision_recall(real, collapsed)
    assert result is not None
    assert result["precision"] > 0.9
    assert 0.35 < result["recall"] < 0.6


def test_knn_radius_is_the_distance_to_the_kth_neighbour() -> None:
    points = np.array([[0.0], [1.0], [3.0], [7.0]])
    np.testing.assert_allclose(knn_radii(points, k=1), [1.0, 1.0, 2.0, 4.0])
    np.testing.assert_allclose(knn_radii(points, k=3), [7.0, 6.0, 4.0, 7.0])
    with pytest.raises(ValueError, match="more than 3 points"):
        knn_radii(points[:3], k=3)
    assert precision_recall(points[:3], points[:3], k=3) is None
