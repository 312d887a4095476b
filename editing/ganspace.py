"""GANSpace: principal directions of W (Härkönen et al., NeurIPS 2020), for StyleGAN1/2/3.

``fit(w_samples, n_components=80, stdev_samples=None, estimator="ipca")`` returns the fields of
GANSpace's cache ``.npz`` (``lat_comp [k,1,D]``, ``lat_mean [1,D]``, ``lat_stdev [k]``,
``var_ratio [k]``, ``act_comp``, ``act_mean``, ``act_stdev``, ``random_stdevs``) as arrays. In W
the "activation" space is W itself, so ``act_*`` equal ``lat_*`` (``act_stdev`` is the spread of
the fit rows, ``lat_stdev`` the spread of *fresh* samples, the scale sigma is measured in).

Estimators:
* ``"ipca"`` (default, as GANSpace): sklearn ``IncrementalPCA`` fed with ``partial_fit`` on chunks of
  ``max(2000, 3k)`` rows (GANSpace's chunking); approximate for trailing components.
* ``"pca"``: exact PCA (float64 eigendecomposition of the covariance) of the real rows only.
  GANSpace's non-batch estimators also fit up to 2000 all-zero rows (a bug); not reproduced.

Edits: ``edit(ws, comps, i, sigma, layers)`` adds ``sigma * lat_stdev[i] * lat_comp[i]`` to the W+
rows ``layers`` (GANSpace's E(i, a-b)); ``edit_e4e`` reproduces e4e/HyperStyle's absolute rule.
"""
from __future__ import annotations

import numpy as np

__all__ = ["fit", "fit_generator", "sample_w", "edit", "edit_e4e", "save", "load", "to_e4e", "from_e4e"]

NPZ_KEYS = ("act_comp", "act_mean", "act_stdev", "lat_comp", "lat_mean", "lat_stdev", "var_ratio", "random_stdevs")


def _chunks(n, size, min_rows=1):
    bounds = list(range(0, n, size)) + [n]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] < min_rows:
        bounds.pop(-2)                       # fold a tail too short for partial_fit into the previous chunk
    return list(zip(bounds[:-1], bounds[1:]))


def fit(w_samples, n_components=80, stdev_samples=None, estimator="ipca", chunk_size=None, seed=0):
    """PCA of ``w_samples`` [N, D]; returns a dict of the GANSpace npz fields (float32).

    ``stdev_samples`` [M, D]: fresh samples (not used in the fit) on which ``lat_stdev`` (std,
    ddof 0, of the projections) is measured, as GANSpace does with 5000 new samples; ``None``
    measures it on the fit rows (then ``lat_stdev`` ~= ``act_stdev``). ``chunk_size`` (ipca only):
    rows per ``partial_fit``, default ``max(2000, 3 * n_components)``. ``seed`` only drives the
    random directions of ``random_stdevs``.
    """
    x = np.asarray(w_samples)
    if x.ndim != 2:
        raise ValueError(f"w_samples must be [N, D], got {x.shape}")
    n, dim = x.shape
    k = int(n_components)
    if not 0 < k <= dim:
        raise ValueError(f"n_components must be in [1, {dim}], got {k}")
    if estimator == "ipca":
        from sklearn.decomposition import IncrementalPCA
        size = int(chunk_size or max(2000, 3 * k))
        if n < k:
            raise ValueError(f"need at least n_components={k} samples, got {n}")
        est = IncrementalPCA(n_components=k)
        for a, b in _chunks(n, size, k):
            est.partial_fit(x[a:b])
        comp = est.components_.astype(np.float64)
        mean = est.mean_.astype(np.float64)
        act_stdev = np.sqrt(est.explained_variance_)
        var_ratio = est.explained_variance_ratio_
    elif estimator == "pca":
        xd = x.astype(np.float64)
        mean = xd.mean(axis=0)
        xc = xd - mean
        cov = xc.T @ xc / n                                  # ddof 0
        evals, evecs = np.linalg.eigh(cov)
        order = np.argsort(evals)[::-1][:k]
        comp = evecs[:, order].T
        proj = xc @ comp.T
        act_stdev = proj.std(axis=0)
        var_ratio = proj.var(axis=0) / np.trace(cov)
    else:
        raise ValueError(f"unknown estimator {estimator!r} (use 'ipca' or 'pca')")
    comp = comp / np.linalg.norm(comp, axis=1, keepdims=True)
    # deterministic sign: largest-magnitude coordinate positive
    sign = np.sign(comp[np.arange(k), np.abs(comp).argmax(axis=1)])
    comp = comp * np.where(sign == 0, 1, sign)[:, None]
    ref = x if stdev_samples is None else np.asarray(stdev_samples)
    if ref.ndim != 2 or ref.shape[1] != dim:
        raise ValueError(f"stdev_samples must be [M, {dim}], got {ref.shape}")
    ref = ref.astype(np.float64)
    lat_stdev = (ref @ comp.T).std(axis=0)
    rdirs = np.random.RandomState(seed).standard_normal((k, dim))
    rdirs /= np.linalg.norm(rdirs, axis=1, keepdims=True)
    random_stdevs = (ref @ rdirs.T).std(axis=0)
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    out = dict(lat_comp=f32(comp.reshape(k, 1, dim)), lat_mean=f32(mean.reshape(1, dim)),
               lat_stdev=f32(lat_stdev), var_ratio=f32(var_ratio), act_stdev=f32(act_stdev),
               random_stdevs=f32(random_stdevs))
    out["act_comp"], out["act_mean"] = out["lat_comp"].copy(), out["lat_mean"].copy()
    return out


def sample_w(G, n, seed=0, batch_size=1000, truncation_psi=1.0, device=None):
    """``n`` W vectors [n, w_dim] (float32 numpy) from ``G.mapping`` with z ~ N(0, I) (seeded)."""
    import torch
    dev = torch.device(device) if device is not None else next(G.parameters()).device
    gen = torch.Generator().manual_seed(int(seed))
    out = []
    with torch.no_grad():
        for a in range(0, n, batch_size):
            m = min(batch_size, n - a)
            z = torch.randn([m, G.z_dim], generator=gen).to(dev)
            c = torch.zeros([m, G.c_dim], device=dev) if getattr(G, "c_dim", 0) else None
            ws = G.mapping(z, c, truncation_psi=truncation_psi)
            out.append(ws[:, 0].float().cpu().numpy())
    return np.concatenate(out, axis=0)


def fit_generator(G, n_components=80, n_samples=300_000, n_stdev_samples=5000, seed=0, estimator="ipca",
                  batch_size=1000, device=None):
    """Sample W from ``G`` (``n_samples`` for the fit, ``n_stdev_samples`` fresh ones for lat_stdev) and fit."""
    w = sample_w(G, n_samples, seed=seed, batch_size=batch_size, device=device)
    ws = sample_w(G, n_stdev_samples, seed=seed + 1_000_003, batch_size=batch_size, device=device)
    return fit(w, n_components, stdev_samples=ws, estimator=estimator)


def _layers_index(layers, num_ws):
    if layers is None:
        return np.arange(num_ws)
    if isinstance(layers, slice):
        return np.arange(num_ws)[layers]
    if isinstance(layers, tuple) and len(layers) == 2 and all(isinstance(v, (int, np.integer)) for v in layers):
        return np.arange(layers[0], layers[1])          # (start, end) end exclusive, as GANSpace stores it
    idx = np.asarray(list(layers), dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= num_ws):
        raise ValueError(f"layer indices {idx.tolist()} outside [0, {num_ws})")
    return idx


def edit(ws, comps, comp_index, sigma, layers=None):
    """GANSpace E(i, layers): ``ws + sigma * lat_stdev[i] * lat_comp[i]`` on W+ rows ``layers``.

    ``ws`` [N, L, D] (torch or numpy); ``layers``: None (all), a slice, ``(start, end)`` with end
    exclusive, or a list of indices.
    """
    d = np.asarray(comps["lat_comp"])[comp_index].reshape(-1) * float(np.asarray(comps["lat_stdev"])[comp_index])
    from .apply import apply
    return apply(ws, d, sigma, layers=_layers_index(layers, ws.shape[1]))


def edit_e4e(latents, pca, comp_index, start, end, strength):
    """e4e/HyperStyle ``editings/ganspace.py`` rule (absolute): on ``latents`` [N, L, D] measure the
    coordinate of component ``comp_index`` on layer 0 in units of std, add
    ``(strength - coord) * std * comp`` to rows ``start .. end-1``. ``pca``: ``{'mean', 'comp', 'std'}``."""
    lat = np.asarray(latents, dtype=np.float32)
    mean = np.asarray(pca["mean"]).reshape(-1)
    comp = np.asarray(pca["comp"])[comp_index].reshape(-1)
    std = float(np.asarray(pca["std"]).reshape(-1)[comp_index])
    coord = ((lat[:, 0] - mean) @ comp) / std                    # [N]
    out = lat.copy()
    out[:, start:end] += ((strength - coord) * std)[:, None, None] * comp[None, None, :]
    return out


def save(path, comps):
    """Write the GANSpace cache ``.npz`` (keys of ``NPZ_KEYS`` present in ``comps``)."""
    np.savez(path, **{k: np.asarray(comps[k]) for k in NPZ_KEYS if k in comps})


def load(path):
    """Read a GANSpace cache ``.npz`` (or a gankit fit saved with ``save``) into a dict of arrays."""
    with np.load(path, allow_pickle=False) as f:
        out = {k: f[k] for k in f.files}
    if "lat_comp" not in out:
        raise ValueError(f"{path}: not a GANSpace npz (no lat_comp)")
    return out


def to_e4e(comps):
    """GANSpace fields -> e4e/HyperStyle pca dict ``{'mean' [1,D], 'comp' [k,1,D], 'std' [k]}`` (numpy)."""
    return {"mean": np.asarray(comps["lat_mean"], np.float32), "comp": np.asarray(comps["lat_comp"], np.float32),
            "std": np.asarray(comps["lat_stdev"], np.float32)}


def from_e4e(pca):
    """e4e pca dict (tensors or arrays) -> GANSpace field dict."""
    g = lambda v: v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)  # noqa: E731
    comp = g(pca["comp"]).astype(np.float32)
    return {"lat_comp": comp.reshape(comp.shape[0], 1, -1), "lat_mean": g(pca["mean"]).astype(np.float32).reshape(1, -1),
            "lat_stdev": g(pca["std"]).astype(np.float32).reshape(-1)}
