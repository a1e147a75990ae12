"""Shared data for the faiss_gmm Python tests (small, seeded, fast on 2 cores)."""

import numpy as np
import pytest


def make_blobs(n: int, d: int, k: int, seed: int = 0, spread: float = 4.0):
    """n float32 points from k diagonal Gaussians with random scales, and the
    true component of each point."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, spread, (k, d))
    scales = rng.uniform(0.5, 1.5, (k, d))
    labels = rng.integers(0, k, n)
    x = centers[labels] + rng.standard_normal((n, d)) * scales[labels]
    return np.ascontiguousarray(x, dtype=np.float32), labels


@pytest.fixture(scope="session")
def blobs():
    """4000 x 16 points from 8 components."""
    return make_blobs(4000, 16, 8)[0]
