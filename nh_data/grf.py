"""Gaussian random field values at given abscissae, by Cholesky factorisation (SPEC section 2).

The squared-exponential kernel k(x, x') = exp(-(x - x')^2 / (2 l^2)) is sampled
exactly at b <= 7 points: build the b x b covariance matrix, factor it
K = L L^T and return L z with z ~ N(0, I). A relative jitter on the diagonal
keeps the factorisation defined when two points are close compared with l.
"""

from __future__ import annotations

import numpy as np

JITTER = 1e-10


def se_kernel(x: np.ndarray, l: np.ndarray) -> np.ndarray:
    """Squared-exponential covariance matrices.

    x: (M, b) abscissae, l: (M,) length scales -> (M, b, b).
    """
    x = np.asarray(x, dtype=np.float64)
    l = np.asarray(l, dtype=np.float64)
    d = x[:, :, None] - x[:, None, :]  # (M, b, b)
    return np.exp(-0.5 * d**2 / l[:, None, None] ** 2)


def grf_sample(x: np.ndarray, l: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Zero-mean GRF values L z at the abscissae.

    x: (M, b), l: (M,), z: (M, b) standard normal draws -> (M, b).
    Deterministic in (x, l, z): the caller owns the random numbers.
    """
    K = se_kernel(x, l)  # (M, b, b)
    b = K.shape[-1]
    K = K + JITTER * np.eye(b)[None]
    L = np.linalg.cholesky(K)  # (M, b, b)
    return np.einsum("mij,mj->mi", L, np.asarray(z, dtype=np.float64))
