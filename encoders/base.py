"""What every encoder-based inverter shares: the generator, ``latent_avg``, input preparation, face_pool.

An inverter owns a gankit generator ``G`` (StyleGAN2 or StyleGAN3, any resolution; codes are
``[N, G.num_ws, G.w_dim]``) and ``latent_avg`` ``[num_ws, w_dim]``, the code the encoder's output is
added to (pSp's ``start_from_latent_avg``; rows may differ, they are added row-wise).

Images in and out are ``[N, 3, H, W]`` floats in about [-1, 1] (NVIDIA's convention). Encoders see
``input_size`` px (256 in the published models); generator outputs are brought to that size with
``face_pool`` = adaptive average pooling, as the reference code does (pixel replication for small
generators, box averaging for large ones).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


class EncoderError(ValueError):
    """Bad input to an encoder or an encoder checkpoint that cannot be used."""


def to_model_input(images, size: int) -> torch.Tensor:
    """uint8 ``[N, 3, H, W]`` (0..255) or float ``[N, 3, H, W]`` in [-1, 1] -> float32 at ``size`` px.

    uint8 follows torchvision ``ToTensor`` + ``Normalize(0.5, 0.5)``: ``(u8 / 255 - 0.5) / 0.5``. Other
    sizes are resized bilinearly with antialiasing (what ``Resize((256, 256))`` on a PIL image does).
    """
    x = torch.as_tensor(images)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[1] != 3:
        raise EncoderError(f"images must be [N, 3, H, W], got {list(x.shape)}")
    if x.dtype == torch.uint8:
        x = (x.float() / 255 - 0.5) / 0.5
    elif not x.is_floating_point():
        raise EncoderError(f"images must be uint8 or float, got {x.dtype}")
    x = x.float()
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x


def face_pool(img: torch.Tensor, size: int) -> torch.Tensor:
    """pSp's ``AdaptiveAvgPool2d((size, size))`` on generator output."""
    return F.adaptive_avg_pool2d(img, (size, size)) if img.shape[-1] != size or img.shape[-2] != size else img


def default_latent_avg(G: nn.Module) -> torch.Tensor:
    """``[num_ws, w_dim]``: the generator's ``w_avg`` repeated (what training starts from)."""
    w = G.mapping.w_avg.detach().float()
    return w[None].repeat(G.num_ws, 1)


class EncoderInverter(nn.Module):
    """Base of PSP / E4E / ReStyle / HyperStyle: generator + latent_avg + helpers.

    Subclasses implement ``invert(images, iters=None) -> dict`` with ``ws`` ``[N, num_ws, w_dim]``,
    ``images`` (native generator size), ``history`` (per-iteration codes/images where iterative) and,
    for HyperStyle, ``offsets``.
    """

    method = ""

    def __init__(self, G: nn.Module, latent_avg: Optional[torch.Tensor] = None, input_size: int = 256):
        super().__init__()
        self.G = G
        la = default_latent_avg(G) if latent_avg is None else torch.as_tensor(latent_avg).detach().float()
        if la.ndim == 1:
            la = la[None].repeat(G.num_ws, 1)
        if tuple(la.shape) != (G.num_ws, G.w_dim):
            raise EncoderError(f"latent_avg has shape {list(la.shape)}, the generator needs "
                               f"[{G.num_ws}, {G.w_dim}]")
        self.register_buffer("latent_avg", la.clone())
        self.input_size = int(input_size)
        self.meta = {}

    @property
    def device(self) -> torch.device:
        return self.latent_avg.device

    def prepare(self, images) -> torch.Tensor:
        return to_model_input(images, self.input_size).to(self.device)

    def pool(self, img: torch.Tensor) -> torch.Tensor:
        return face_pool(img, self.input_size)

    def synthesize(self, ws: torch.Tensor) -> torch.Tensor:
        """Generator output at its native size, with its stored (constant) noise."""
        return self.G.synthesis(ws, noise_mode="const")

    def forward(self, images, iters: Optional[int] = None):
        out = self.invert(images, iters=iters)
        return out["images"], out["ws"]
