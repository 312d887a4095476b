"""Metrics on face descriptors: the Fréchet distance of dlib descriptors (FD-dlib).

    fd = frechet_distance(feats_a, feats_b)           # any [N, D] feature sets
    fd = fd_dlib(real_images, fake_images)            # aligned images in [-1, 1], or descriptors

FD-dlib is FID's formula on dlib's 128-d face descriptors instead of Inception features: fit a Gaussian
to each set, ``|mu_a - mu_b|^2 + tr(C_a + C_b - 2 (C_a C_b)^(1/2))``. It is computed in float64 with a
symmetric eigendecomposition (no SciPy): ``tr((C_a C_b)^(1/2)) = sum sqrt(eig(S C_b S))`` with
``S = C_a^(1/2)``, which equals the trace of the principal square root because ``C_a C_b`` is similar
to the symmetric positive semi-definite ``S C_b S``.

KID (Bińkowski et al. 2018, "Demystifying MMD GANs") is the squared MMD with the polynomial kernel
``k(x, y) = (gamma x.y + coef)^degree`` (degree 3, gamma 1/D, coef 1), estimated without bias on
random subsets of both sets and averaged: :func:`kernel_inception_distance` (any features, despite
the name).
"""
from __future__ import annotations

from typing import Iterable, Optional, Tuple, Union

import numpy as np
import torch

__all__ = ["frechet_distance", "gaussian_stats", "dlib_descriptors", "fd_dlib", "polynomial_mmd2",
           "kernel_inception_distance"]


def gaussian_stats(feats) -> tuple:
    """(mean [D], covariance [D, D]) in float64; covariance with N - 1 (as NumPy's ``cov``)."""
    f = np.asarray(feats.detach().cpu() if isinstance(feats, torch.Tensor) else feats, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need features [N >= 2, D], got {f.shape}")
    return f.mean(0), np.cov(f, rowvar=False)


def _sqrt_psd(c: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((c + c.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(feats_a, feats_b) -> float:
    """Fréchet distance between Gaussian fits of two feature sets ``[N, D]`` and ``[M, D]``.

    Either argument may also be a ``(mean, cov)`` pair from :func:`gaussian_stats`."""
    mu_a, c_a = feats_a if isinstance(feats_a, tuple) else gaussian_stats(feats_a)
    mu_b, c_b = feats_b if isinstance(feats_b, tuple) else gaussian_stats(feats_b)
    if mu_a.shape != mu_b.shape:
        raise ValueError(f"feature sizes differ: {mu_a.shape[0]} vs {mu_b.shape[0]}")
    s = _sqrt_psd(c_a)
    m = s @ c_b @ s
    tr_sqrt = float(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum())
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(c_a) + np.trace(c_b) - 2.0 * tr_sqrt)


@torch.no_grad()
def dlib_descriptors(images: Union[torch.Tensor, Iterable[torch.Tensor]], net=None, batch_size: int = 32,
                     alignment: str = "ffhq", device=None) -> np.ndarray:
    """dlib descriptors ``[N, 128]`` (float64) of aligned images in ``[-1, 1]``, computed in batches.

    ``images``: a tensor ``[N, 3, H, W]`` or an iterable of such batches (e.g. a DataLoader)."""
    from . import identity
    if net is None:
        net = identity.load(device=device)
    dev = next(net.parameters()).device
    batches = [images] if isinstance(images, torch.Tensor) else images
    out = []
    for b in batches:
        for i in range(0, b.shape[0], batch_size):
            x = b[i:i + batch_size].to(dev)
            out.append(net(identity.aligned_to_chip(x, alignment)).double().cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 128))


def fd_dlib(a, b, net=None, batch_size: int = 32, alignment: str = "ffhq", device=None) -> float:
    """FD-dlib between two sets: each is descriptors ``[N, 128]`` or aligned images (see
    :func:`dlib_descriptors`)."""
    def feats(x):
        if isinstance(x, (np.ndarray, tuple)) or (isinstance(x, torch.Tensor) and x.ndim == 2):
            return x
        return dlib_descriptors(x, net, batch_size, alignment, device)
    return frechet_distance(feats(a), feats(b))


def polynomial_mmd2(x: np.ndarray, y: np.ndarray, degree: int = 3, gamma: Optional[float] = None,
                    coef: float = 1.0) -> float:
    """Unbiased estimate of MMD^2 between samples ``x`` [n, D] and ``y`` [m, D] under the polynomial kernel:
    ``sum_{i!=j} k(x_i, x_j) / n(n-1) + sum_{i!=j} k(y_i, y_j) / m(m-1) - 2 sum k(x_i, y_j) / nm``."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    n, m = len(x), len(y)
    if n < 2 or m < 2 or x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"need features [n >= 2, D] and [m >= 2, D], got {x.shape} and {y.shape}")
    g = 1.0 / x.shape[1] if gamma is None else gamma
    kxx = (g * x @ x.T + coef) ** degree
    kyy = (g * y @ y.T + coef) ** degree
    kxy = (g * x @ y.T + coef) ** degree
    return float((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                 - 2.0 * kxy.mean())


def kernel_inception_distance(feats_a, feats_b, num_subsets: int = 100, subset_size: int = 1000,
                              degree: int = 3, gamma: Optional[float] = None, coef: float = 1.0,
                              seed: int = 0) -> Tuple[float, float]:
    """KID between feature sets [N, D] and [M, D]: (mean, std) of :func:`polynomial_mmd2` over
    ``num_subsets`` random subsets of ``min(subset_size, N, M)`` rows of each set (drawn without replacement)."""
    a = np.asarray(feats_a.detach().cpu() if isinstance(feats_a, torch.Tensor) else feats_a, np.float64)
    b = np.asarray(feats_b.detach().cpu() if isinstance(feats_b, torch.Tensor) else feats_b, np.float64)
    m = min(subset_size, len(a), len(b))
    rng = np.random.RandomState(seed)
    vals = [polynomial_mmd2(a[rng.choice(len(a), m, replace=False)], b[rng.choice(len(b), m, replace=False)],
                            degree, gamma, coef) for _ in range(num_subsets)]
    return float(np.mean(vals)), float(np.std(vals))
