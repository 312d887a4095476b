"""SeFa: closed-form factorization of latent semantics (Shen & Zhou, CVPR 2021).

``factorize(G_or_weights, layers="all")`` follows genforce/sefa ``factorize_weight``: stack the
chosen layers' style-affine weights transposed ([w_dim, sum C]), divide every column (one output
channel) by its L2 norm, eigendecompose ``A A^T`` -- here with a symmetric solver in float64 and
**sorted by eigenvalue, descending** (the reference uses ``np.linalg.eig`` and never sorts).
Returns ``(eigenvalues [w_dim], directions [w_dim, w_dim])``, direction k = row k, unit norm.

Layer index i is the W+ row that feeds the layer (genforce numbering):

* StyleGAN1: i = ``synthesis.b{r}.conv0`` (even i) / ``conv1`` (odd i) AdaIN style weights [2C, w_dim];
  ToRGB has no style.
* StyleGAN2: i < num_ws-1 is the i-th modulated conv (``b4.conv1``, ``b8.conv0``, ``b8.conv1``, ...),
  i = num_ws-1 is the **final** ToRGB (intermediate ToRGBs are never used, as in genforce).
* StyleGAN3: i = 0 ``synthesis.input.affine`` (4 rows), 1..num_ws-1 = ``L0 .. L{last}`` (last =
  ToRGB). Untrained SG3 input affines are all zero; zero-norm columns are left at zero.

Presets (genforce's interface): ``all``, ``coarse`` = 0-1, ``middle`` = 2-5, ``fine`` = 6-13
(clipped to num_ws-1), or explicit indices (``"0-3,7"`` inclusive, or a list).

Edits: add ``d * direction`` to the W+ rows that were factorised (``editing.apply(ws, n, d, layers)``).
``factorize_rosinality`` reproduces rosinality's ``closed_form_factorization.py`` (compatibility).
"""
from __future__ import annotations

import numpy as np

__all__ = ["factorize", "style_weights", "factorize_rosinality", "rosinality_weights", "resolve_layers"]


def _np(w):
    return w.detach().cpu().double().numpy() if hasattr(w, "detach") else np.asarray(w, dtype=np.float64)


def _synthesis(G):
    return G.synthesis if hasattr(G, "synthesis") else G


def style_weights(G):
    """List of style-affine weights ``[C_i, w_dim]`` (numpy float64), index i = W+ row (genforce order)."""
    syn = _synthesis(G)
    out = []
    if hasattr(syn, "layer_names") and hasattr(syn, "input"):                  # StyleGAN3
        if not hasattr(syn.input, "affine"):
            raise TypeError("StyleGAN3 synthesis without an input affine: cannot factorize")
        out.append(_np(syn.input.affine.weight))
        out += [_np(getattr(syn, n).affine.weight) for n in syn.layer_names]
    elif hasattr(syn, "block_resolutions"):                                    # StyleGAN1 / StyleGAN2
        blocks = [getattr(syn, f"b{r}") for r in syn.block_resolutions]
        for b in blocks:
            for name in ("conv0", "conv1"):
                layer = getattr(b, name, None)
                if layer is not None and hasattr(layer, "affine"):
                    out.append(_np(layer.affine.weight))
        torgb = getattr(blocks[-1], "torgb", None)
        if torgb is not None and hasattr(torgb, "affine"):                     # StyleGAN2: final toRGB only
            out.append(_np(torgb.affine.weight))
    else:
        raise TypeError(f"cannot find style affines in {type(G).__name__} (need a StyleGAN1/2/3 generator)")
    num_ws = getattr(syn, "num_ws", None) or getattr(G, "num_ws", None)
    if num_ws is not None and len(out) != num_ws:
        raise ValueError(f"found {len(out)} style affines but num_ws is {num_ws}")
    return out


def resolve_layers(layers, num_layers):
    """Preset name / index string / iterable -> sorted unique indices in [0, num_layers)."""
    from .apply import parse_layers
    return parse_layers(layers, num_layers)


def factorize(G_or_weights, layers="all"):
    """Return ``(eigenvalues [w_dim] descending, directions [w_dim, w_dim])`` (float32).

    ``G_or_weights``: a StyleGAN1/2/3 generator (or its synthesis network) or a list of style-affine
    weight matrices ``[C_i, w_dim]`` indexed by W+ row. ``layers``: see module docstring.
    """
    weights = style_weights(G_or_weights) if hasattr(G_or_weights, "parameters") else [_np(w) for w in G_or_weights]
    if not weights:
        raise ValueError("no weights")
    idx = resolve_layers(layers, len(weights))
    w_dim = weights[0].shape[1]
    cols = []
    for i in idx:
        w = weights[i]
        if w.ndim != 2 or w.shape[1] != w_dim:
            raise ValueError(f"weight {i} has shape {w.shape}, expected [C, {w_dim}]")
        cols.append(w.T)
    a = np.concatenate(cols, axis=1)                               # [w_dim, sum C]
    norm = np.linalg.norm(a, axis=0, keepdims=True)
    a = a / np.where(norm > 0, norm, 1.0)
    evals, evecs = np.linalg.eigh(a @ a.T)
    order = np.argsort(evals)[::-1]
    dirs = evecs[:, order].T
    # deterministic sign: largest-magnitude coordinate positive
    s = np.sign(dirs[np.arange(w_dim), np.abs(dirs).argmax(axis=1)])
    dirs = dirs * np.where(s == 0, 1, s)[:, None]
    return evals[order].astype(np.float32), dirs.astype(np.float32)


def rosinality_weights(G):
    """The weights rosinality's ``closed_form_factorization.py`` stacks, for a StyleGAN2 generator:
    every modulated conv plus the **4x4** toRGB (``to_rgb1``), never the other toRGBs."""
    syn = _synthesis(G)
    if not hasattr(syn, "block_resolutions") or not hasattr(getattr(syn, "b4").torgb, "affine"):
        raise TypeError("rosinality's closed form is defined for StyleGAN2 generators only")
    out = []
    for r in syn.block_resolutions:
        b = getattr(syn, f"b{r}")
        for name in ("conv0", "conv1", "torgb"):
            layer = getattr(b, name, None)
            if layer is None or (name == "torgb" and r != syn.block_resolutions[0]):
                continue
            out.append(_np(layer.affine.weight))
    return out


def factorize_rosinality(G_or_weights):
    """rosinality ``closed_form_factorization``: right singular vectors of the raw (not normalised)
    stack ``[sum C, w_dim]``. Returns ``(singular_values [w_dim], directions [w_dim, w_dim])``; row k
    = rosinality's ``eigvec[:, k]``."""
    ws = rosinality_weights(G_or_weights) if hasattr(G_or_weights, "parameters") else [_np(w) for w in G_or_weights]
    stack = np.concatenate(ws, axis=0)
    _, s, vt = np.linalg.svd(stack, full_matrices=False)
    return s.astype(np.float32), vt.astype(np.float32)
