"""Losses for inversion. Offline ones first: they need no download.

* :class:`IdentityLoss` - ``1 - cos`` of dlib face descriptors (:mod:`inversion.identity`), the ID loss
  of pSp / e4e / ReStyle / HyperStyle / PTI with dlib's ResNet in place of ArcFace.
* :func:`identity_similarity` - cosine similarity of dlib descriptors, the "ID similarity" metric.
* :class:`FaceFeatureDistance` - an LPIPS-style distance on the same network's activations, without
  learned weights: a perceptual distance for faces that works offline.

Inputs are aligned images ``[N, 3, H, W]`` in ``[-1, 1]`` (FFHQ or pSp alignment, any resolution),
mapped to dlib's 150x150 chip frame by :func:`inversion.identity.aligned_to_chip`; pass
``input="chips"`` to give chips (RGB, 0..255) directly. Gradients flow to the images; the network's
weights are frozen.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import identity

__all__ = ["IdentityLoss", "identity_similarity", "FaceFeatureDistance", "OFFLINE_LOSSES", "OFFLINE_HINT"]

# names a caller can offer when LPIPS / ArcFace weights are missing
OFFLINE_LOSSES = {"id-dlib": "IdentityLoss", "face-features": "FaceFeatureDistance"}
OFFLINE_HINT = ("offline alternatives that need no download: --loss face-features (FaceFeatureDistance) "
                "and the dlib identity loss id-dlib (IdentityLoss)")


def _check_input(input: str, alignment: str) -> None:
    if input not in ("aligned", "chips"):
        raise ValueError(f"input must be 'aligned' or 'chips', got {input!r}")
    if alignment not in ("ffhq", "psp"):
        raise ValueError(f"alignment must be 'ffhq' or 'psp', got {alignment!r}")


class _OnDlibNet(nn.Module):
    def __init__(self, net: Optional[nn.Module], alignment: str, input: str):
        super().__init__()
        _check_input(input, alignment)
        self.net = net if net is not None else identity.load()
        self.alignment = alignment
        self.input = input

    def chips(self, x: torch.Tensor) -> torch.Tensor:
        if self.input == "chips":
            return x.float()
        return identity.aligned_to_chip(x, self.alignment)

    def descriptors(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 128] dlib descriptors of images (or chips), differentiable w.r.t. ``x``."""
        return self.net(self.chips(x))


class IdentityLoss(_OnDlibNet):
    """``1 - cos(d(x), d(y))`` with d = dlib's face descriptor; ``forward`` averages over the batch.

    ``y`` is images (like ``x``; no gradient is taken through it) or descriptors ``[N, 128]`` (or
    ``[1, 128]``, broadcast). ``per_image(x, y)`` gives the ``[N]`` values; ``forward`` stores them in
    ``last_per_image`` too.
    """

    def __init__(self, net: Optional[nn.Module] = None, alignment: str = "ffhq", input: str = "aligned"):
        super().__init__(net, alignment, input)
        self.last_per_image: Optional[torch.Tensor] = None

    def target(self, y: torch.Tensor) -> torch.Tensor:
        if y.ndim == 2:
            return y.detach().float()
        with torch.no_grad():
            return self.descriptors(y)

    def per_image(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        dx = self.descriptors(x)
        dy = self.target(y).to(dx)
        return 1.0 - F.cosine_similarity(dx, dy.expand_as(dx), dim=1, eps=1e-12)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        v = self.per_image(x, y)
        self.last_per_image = v.detach()
        return v.mean()


_SIM_NETS = {}


@torch.no_grad()
def identity_similarity(a: torch.Tensor, b: torch.Tensor, net: Optional[nn.Module] = None,
                        alignment: str = "ffhq", input: str = "aligned") -> torch.Tensor:
    """Cosine similarity ``[N]`` of dlib descriptors (float64), the "ID similarity" metric.

    ``a`` and ``b`` are aligned images ``[N, 3, H, W]`` in ``[-1, 1]``, chips (``input="chips"``), or
    descriptors ``[N, 128]`` (2-D inputs are taken as descriptors). 1 means the same direction."""
    _check_input(input, alignment)

    def desc(t):
        t = torch.as_tensor(t)
        if t.ndim == 2:
            return t.double()
        n = net
        if n is None:
            key = str(t.device)
            if key not in _SIM_NETS:
                _SIM_NETS[key] = identity.load(device=t.device)
            n = _SIM_NETS[key]
        chips = t.float() if input == "chips" else identity.aligned_to_chip(t, alignment)
        return n(chips).double()

    da, db = desc(a), desc(b)
    da, db = torch.broadcast_tensors(da, db.to(da.device))
    num = (da * db).sum(1)
    return num / (da.norm(dim=1) * db.norm(dim=1)).clamp_min(1e-300)


class FaceFeatureDistance(_OnDlibNet):
    """LPIPS without learned weights, on dlib's face ResNet.

    For each chosen layer (default: the last unit of each of the five stages, 35x35x32 ... 2x2x256),
    activations are normalized to unit length over channels at every position, the squared
    difference is summed over channels and averaged over positions (LPIPS with all ``lin`` weights =
    1); the layers are then averaged. Values lie in [0, 4]; 0 for identical inputs. ``per_image``
    gives ``[N]``; ``forward`` averages over the batch.
    """

    def __init__(self, net: Optional[nn.Module] = None, layers: Optional[Sequence[int]] = None,
                 alignment: str = "ffhq", input: str = "aligned"):
        super().__init__(net, alignment, input)
        self.layers = list(layers) if layers is not None else list(self.net.stage_ends)
        n = len(self.net.units)
        if not self.layers or any(not 0 <= i < n for i in self.layers):
            raise ValueError(f"layers must be unit indices in [0, {n - 1}], got {self.layers}")

    def _feats(self, x):
        outs, _ = self.net.features(self.chips(x))
        return [outs[i] for i in self.layers]

    def per_image(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        fx = self._feats(x)
        with torch.no_grad():
            fy = self._feats(y)
        total = 0.0
        for a, b in zip(fx, fy):
            a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + (a - b.expand_as(a)).pow(2).sum(1).mean(dim=(1, 2))
        return total / len(fx)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.per_image(x, y).mean()
