"""One entry point for every inversion method: ``invert(images, method=...) -> InversionResult``.

    r = invert(images, method="e4e", encoder="e4e_ffhq_encode.pt")
    r = invert(images, method="restyle", encoder=ckpt, iters=5)
    r = invert(images, method="hyperstyle", encoder="hyperstyle_ffhq.pt", w_encoder="faces_w_encoder.pt")
    r = invert(images, method="projection", G=G, steps=500)      # -> inversion.projection.project
    r = invert(images, method="pti", G=G)                         # -> inversion.pivotal_tuning.pti

Encoder methods ("psp", "e4e", "restyle", "hyperstyle") take ``encoder``: a path, an encoder
registry name or a loaded model (``encoders.load``); ``G`` (optional) replaces the embedded generator
(e.g. HyperStyle's domain adaptation: FFHQ codes and offsets rendered by a fine-tuned generator of
the same architecture). Images: ``[N, 3, H, W]`` float in [-1, 1] or uint8; encoders resize them to
their input size (256). Results: ``ws`` ``[N, num_ws, w_dim]``, ``images`` at the generator's size,
``losses["mse"]`` (per image, against the input resized to the output size), ``history["mse"]``
(``[iters, N]``, iterative methods), ``offsets`` (HyperStyle: {generator weight name: [N, O, I, k, k]},
apply with ``encoders.synthesize_with_offsets``).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .result import InversionResult

ENCODER_METHODS = ("psp", "e4e", "restyle", "hyperstyle")
OPTIMIZER_METHODS = ("projection", "pti")
METHODS = ENCODER_METHODS + OPTIMIZER_METHODS


class InversionMethodError(ValueError):
    """Unknown method, or arguments that do not fit it."""


def _model_method(model) -> str:
    m = getattr(model, "method", "")
    return m


def _load_encoder(encoder, device, w_encoder):
    import encoders
    if isinstance(encoder, nn.Module):
        return encoder.to(device).eval()
    if encoder is None:
        raise InversionMethodError("encoder methods need encoder=PATH (a checkpoint or encoder registry name) or a "
                                   "model from encoders.load")
    return encoders.load(encoder, device=device, w_encoder=w_encoder)


def _swap_generator(model, G):
    from encoders.hyperstyle import layer_shapes
    if G.num_ws != model.G.num_ws or G.w_dim != model.G.w_dim:
        raise InversionMethodError(f"G takes [{G.num_ws}, {G.w_dim}] codes, the encoder makes "
                                   f"[{model.G.num_ws}, {model.G.w_dim}]")
    if _model_method(model) == "hyperstyle" and layer_shapes(G) != layer_shapes(model.G):
        raise InversionMethodError("G's weight layers differ from the generator the hypernetwork was trained for")
    model.G = G.to(model.device).eval().requires_grad_(False)


def _mse(img: torch.Tensor, target: torch.Tensor) -> np.ndarray:
    t = target
    if t.shape[-2:] != img.shape[-2:]:
        t = F.interpolate(t, size=img.shape[-2:], mode="bilinear", align_corners=False, antialias=True)
    return (img.float() - t.float()).square().mean(dim=(1, 2, 3)).cpu().numpy()


@torch.no_grad()
def _invert_encoder(images, method, encoder, iters, device, w_encoder, G, batch, progress) -> InversionResult:
    model = _load_encoder(encoder, device, w_encoder)
    have = _model_method(model)
    if have not in ENCODER_METHODS:
        raise InversionMethodError(f"{getattr(model, 'meta', {}).get('source', 'the encoder')} is not an inversion "
                                   f"encoder (it is a {type(model).__name__})")
    if method is not None and method != have:
        raise InversionMethodError(f"the encoder checkpoint is a {have} model, not {method} "
                                   f"(use --method {have})")
    if iters is not None and have in ("psp", "e4e") and int(iters) != 1:
        raise InversionMethodError(f"{have} is a single-pass encoder: iters must be 1 or omitted, got {iters}")
    if G is not None:
        _swap_generator(model, G)
    x_all = torch.as_tensor(images)
    if x_all.ndim == 3:
        x_all = x_all[None]
    from encoders.base import to_model_input
    ws, imgs, hist, offsets, mse = [], [], [], {}, []
    from tqdm import tqdm
    starts = range(0, x_all.shape[0], batch)
    for i in tqdm(starts, desc=have, unit="batch", disable=not progress if progress is not None else len(starts) <= 1):
        chunk = x_all[i:i + batch]
        out = model.invert(chunk, iters=iters) if have in ("restyle", "hyperstyle") else model.invert(chunk)
        target = to_model_input(chunk, model.input_size).to(out["images"].device)
        ws.append(out["ws"].cpu())
        imgs.append(out["images"].cpu())
        mse.append(_mse(out["images"], target))
        if out.get("history"):
            hist.append(np.stack([_mse(h["images"], target) for h in out["history"]]))
        for k, v in (out.get("offsets") or {}).items():
            offsets.setdefault(k, []).append(v.cpu())
    space = "w" if getattr(model, "meta", {}).get("kind") in ("w_encoder", "hyperstyle") else "w+"
    return InversionResult(
        ws=torch.cat(ws), images=torch.cat(imgs), losses={"mse": np.concatenate(mse)},
        history={"mse": np.concatenate(hist, axis=1)} if hist else {},
        offsets={k: torch.cat(v) for k, v in offsets.items()} or None, method=have, space=space)


def invert(images, method: Optional[str] = "e4e", *, G: Optional[nn.Module] = None, encoder=None,
           iters: Optional[int] = None, device=None, w_encoder=None, batch: int = 8,
           progress: Optional[bool] = None, **kwargs) -> InversionResult:
    """Invert ``images`` with ``method``; see the module docstring. Extra ``kwargs`` go to the optimizer
    methods (``inversion.project.project`` / ``inversion.pti``). ``method=None`` with an encoder: use
    whatever the checkpoint is."""
    if method is not None and method not in METHODS:
        raise InversionMethodError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    if method in OPTIMIZER_METHODS:
        if G is None:
            raise InversionMethodError(f"method {method!r} needs a generator: G=...")
        if encoder is not None:
            raise InversionMethodError(f"method {method!r} does not use an encoder")
        if iters is not None:
            kwargs.setdefault("steps", int(iters))
        if method == "projection":
            from .projection import project
            return project(G, images, device=device, progress=progress, **kwargs)
        from .pivotal_tuning import pti
        return pti(G, images, device=device, progress=progress, **kwargs)
    if kwargs:
        raise InversionMethodError(f"encoder methods take no {', '.join(sorted(kwargs))}")
    if batch < 1:
        raise InversionMethodError(f"batch must be >= 1, got {batch}")
    device = torch.device(device) if device is not None else torch.device("cpu")
    return _invert_encoder(images, method, encoder, iters, device, w_encoder, G, batch, progress)
