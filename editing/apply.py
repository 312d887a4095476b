"""Apply a latent direction to W+ codes: ``apply(ws, direction, strength, layers=None)``."""
from __future__ import annotations

import numpy as np

__all__ = ["apply", "parse_layers", "mix"]


def parse_layers(layers, num_ws):
    """Layer selection -> sorted unique index array in [0, num_ws).

    Accepts None (all), an int, a slice, ``"a-b"`` (inclusive) / ``"0,2,5-7"`` strings, the presets
    ``"all" | "coarse" (0-1) | "middle" (2-5) | "fine" (6-13, clipped to num_ws-1)``, or an iterable
    of ints.
    """
    if layers is None:
        return np.arange(num_ws)
    if isinstance(layers, slice):
        return np.arange(num_ws)[layers]
    if isinstance(layers, (int, np.integer)):
        layers = [int(layers)]
    if isinstance(layers, str):
        s = layers.strip().lower()
        presets = {"all": f"0-{num_ws - 1}", "coarse": "0-1", "middle": "2-5", "fine": f"6-{min(13, num_ws - 1)}"}
        clip = s in presets
        s = presets.get(s, s)
        idx = []
        for part in s.replace(" ", "").split(","):
            if not part:
                continue
            if "-" in part:
                a, b = part.split("-", 1)
                idx.extend(range(int(a), int(b) + 1))
            else:
                idx.append(int(part))
        if clip:
            idx = [i for i in idx if i < num_ws]
        layers = idx
    idx = np.unique(np.asarray(list(layers), dtype=np.int64))
    if idx.size == 0:
        raise ValueError("empty layer selection")
    if idx.min() < 0 or idx.max() >= num_ws:
        raise ValueError(f"layer indices {idx.tolist()} outside [0, {num_ws - 1}]")
    return idx


def apply(ws, direction, strength, layers=None):
    """``ws + strength * direction`` on the W+ rows ``layers``; other rows are returned unchanged.

    ``ws``: [N, num_ws, w_dim] torch tensor or numpy array (a [N, w_dim] W code is broadcast to
    ``layers`` only if ``layers`` is None). ``direction``: [w_dim], [1, w_dim], or per-layer
    [num_ws, w_dim] / [1, num_ws, w_dim]. ``strength``: scalar, or a sequence of S strengths, which
    returns [S, N, num_ws, w_dim] (a sweep). The direction is used as given (not renormalised).
    """
    is_torch = hasattr(ws, "detach")
    if isinstance(strength, (list, tuple, np.ndarray)) or (hasattr(strength, "ndim") and strength.ndim > 0):
        outs = [apply(ws, direction, float(s), layers) for s in np.asarray(strength, dtype=np.float64).reshape(-1)]
        if is_torch:
            import torch
            return torch.stack(outs)
        return np.stack(outs)
    if ws.ndim == 2:
        if layers is not None:
            raise ValueError("layers given but ws is [N, w_dim]; pass W+ codes [N, num_ws, w_dim]")
        d = direction.detach().cpu().numpy() if hasattr(direction, "detach") else np.asarray(direction)
        d = d.reshape(-1)
        if is_torch:
            import torch
            return ws + float(strength) * torch.as_tensor(d, dtype=ws.dtype, device=ws.device)
        return ws + np.asarray(float(strength) * d, dtype=ws.dtype)
    if ws.ndim != 3:
        raise ValueError(f"ws must be [N, num_ws, w_dim], got {tuple(ws.shape)}")
    num_ws, w_dim = ws.shape[1], ws.shape[2]
    d = direction.detach().cpu().numpy() if hasattr(direction, "detach") else np.asarray(direction)
    d = d.astype(np.float64)
    if d.ndim == 3 and d.shape[0] == 1:
        d = d[0]
    if d.ndim == 2 and d.shape[0] == 1:
        d = d[0]
    if d.ndim == 1:
        if d.shape[0] != w_dim:
            raise ValueError(f"direction has {d.shape[0]} dims, ws has w_dim {w_dim}")
        d = np.broadcast_to(d, (num_ws, w_dim))
    elif d.shape != (num_ws, w_dim):
        raise ValueError(f"direction must be [w_dim] or [num_ws, w_dim]; got {d.shape} for ws {tuple(ws.shape)}")
    idx = parse_layers(layers, num_ws)
    mask = np.zeros((num_ws, 1))
    mask[idx] = 1.0
    delta = float(strength) * d * mask                                     # [num_ws, w_dim]
    if is_torch:
        import torch
        out = ws.clone()
        out[:, idx] = ws[:, idx] + torch.as_tensor(delta[idx], dtype=ws.dtype, device=ws.device)
        return out
    out = np.array(ws, copy=True)
    out[:, idx] = ws[:, idx] + delta[idx].astype(ws.dtype)
    return out


def mix(ws_a, ws_b, layers):
    """Style mixing by layer range: ``ws_a`` with the W+ rows ``layers`` taken from ``ws_b``.

    NVIDIA's convention ``cutoff`` (rows ``cutoff..`` from the second code) is ``layers=slice(cutoff, None)``;
    ``style_mixing.py``'s ``col_styles`` is ``layers=col_styles``. ``ws_b`` may have batch size 1
    (broadcast). Works on torch tensors and numpy arrays.
    """
    if ws_a.ndim != 3 or ws_b.ndim != 3 or ws_a.shape[1:] != ws_b.shape[1:]:
        raise ValueError(f"need two W+ batches [N, num_ws, w_dim] of the same layout, got "
                         f"{tuple(ws_a.shape)} and {tuple(ws_b.shape)}")
    if ws_b.shape[0] not in (1, ws_a.shape[0]):
        raise ValueError(f"batch sizes {ws_a.shape[0]} and {ws_b.shape[0]} do not broadcast")
    idx = parse_layers(layers, ws_a.shape[1])
    if hasattr(ws_a, "detach"):
        out = ws_a.clone()
        out[:, idx] = ws_b[:, idx].to(out.dtype).expand(out.shape[0], -1, -1)
        return out
    out = np.array(ws_a, copy=True)
    out[:, idx] = ws_b[:, idx]
    return out
