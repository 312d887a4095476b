"""pSp (Richardson et al. 2021): an IR-SE feature pyramid with one map2style head per W+ row.

``GradualStyleEncoder``: taps c1, c2, c3 = the ends of IR-SE stages 2, 3, 4 (64, 32, 16 px for a 256
input); top-down merge ``p2 = up(c3) + latlayer1(c2)``, ``p1 = up(p2) + latlayer2(c1)`` (bilinear,
align_corners=True). Rows 0-2 read c3, rows 3-6 read p2, rows 7+ read p1.
``WEncoder``: the same trunk, global average, one EqualLinear -> one w for every row (HyperStyle's
initial inversion; a pSp checkpoint with ``encoder_type: WEncoder``).
``PSP``: ``ws = encoder(x) + latent_avg``, image = G(ws).
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import EqualLinear, GradualStyleBlock, IRSEBackbone
from .base import EncoderError, EncoderInverter

COARSE, MIDDLE = 3, 7   # rows [0, 3) from c3, [3, 7) from p2, [7, n) from p1


def style_source(j: int) -> int:
    """Which pyramid level row j reads: 0 = c3 (16 px), 1 = p2, 2 = p1."""
    return 0 if j < COARSE else (1 if j < MIDDLE else 2)


def default_head_convs(input_size: int, n_styles: int) -> List[int]:
    """convs per head so that every map reaches 1x1: log2 of c3's size, +1 for p2, +2 for p1."""
    base = int(round(math.log2(input_size // 16)))
    return [base + style_source(j) for j in range(n_styles)]


class GradualStyleEncoder(IRSEBackbone):
    """IR-SE trunk + FPN + ``n_styles`` map2style heads -> ``[N, n_styles, style_dim]``."""

    def __init__(self, in_nc: int, units, n_styles: int, style_dim: int, head_convs: Optional[Sequence[int]] = None,
                 input_size: int = 256):
        super().__init__(in_nc, units)
        if len(self.stage_widths) != 4:
            raise EncoderError(f"the IR-SE trunk must have 4 stages, has {len(self.stage_widths)}")
        _, w2, w3, w4 = self.stage_widths
        head_convs = list(head_convs) if head_convs is not None else default_head_convs(input_size, n_styles)
        self.n_styles, self.style_dim = n_styles, style_dim
        self.styles = nn.ModuleList([GradualStyleBlock(w4, style_dim, head_convs[j]) for j in range(n_styles)])
        self.latlayer1 = nn.Conv2d(w3, w4, 1)
        self.latlayer2 = nn.Conv2d(w2, w4, 1)

    def pyramid(self, x) -> List[torch.Tensor]:
        """[c3, p2, p1]: 16, 32, 64 px for a 256 input, all with the stage-4 width."""
        _, c1, c2, c3 = self.features(x)
        p2 = F.interpolate(c3, size=c2.shape[-2:], mode="bilinear", align_corners=True) + self.latlayer1(c2)
        p1 = F.interpolate(p2, size=c1.shape[-2:], mode="bilinear", align_corners=True) + self.latlayer2(c1)
        return [c3, p2, p1]

    def forward(self, x):
        feats = self.pyramid(x)
        return torch.stack([head(feats[style_source(j)]) for j, head in enumerate(self.styles)], dim=1)


class WEncoder(IRSEBackbone):
    """IR-SE trunk -> global average -> EqualLinear -> one w, repeated for ``n_styles`` rows."""

    def __init__(self, in_nc: int, units, n_styles: int, style_dim: int):
        super().__init__(in_nc, units)
        self.n_styles, self.style_dim = n_styles, style_dim
        self.linear = EqualLinear(self.stage_widths[-1], style_dim)

    def forward(self, x):
        f = self.features(x)[-1].mean(dim=(2, 3))                               # [N, C4]
        return self.linear(f)[:, None].repeat(1, self.n_styles, 1)             # [N, n_styles, S]


class PSP(EncoderInverter):
    """pSp inversion: one encoder pass, ``ws = encoder(x) + latent_avg`` (or without it)."""

    method = "psp"

    def __init__(self, encoder: nn.Module, G: nn.Module, latent_avg: Optional[torch.Tensor] = None,
                 input_size: int = 256, start_from_latent_avg: bool = True):
        super().__init__(G, latent_avg, input_size)
        if encoder.n_styles != G.num_ws or encoder.style_dim != G.w_dim:
            raise EncoderError(f"the encoder makes [{encoder.n_styles}, {encoder.style_dim}] codes, the generator "
                               f"needs [{G.num_ws}, {G.w_dim}]")
        self.encoder = encoder
        self.start_from_latent_avg = start_from_latent_avg

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Prepared input [N, 3, s, s] -> ws [N, num_ws, w_dim]."""
        codes = self.encoder(x)
        return codes + self.latent_avg[None] if self.start_from_latent_avg else codes

    def invert(self, images, iters: Optional[int] = None) -> dict:
        x = self.prepare(images)
        ws = self.encode(x)
        return dict(ws=ws, images=self.synthesize(ws), history=None, offsets=None)
