"""ReStyle (Alaluf et al. 2021): iterative refinement; the encoder sees the image and the current
reconstruction (6 channels) and predicts a residual on the current code.

Encoders (every head is map2style on the final 16x16 map, no pyramid):
* ``BackboneEncoder``       - IR-SE trunk with a 6-channel ``input_layer`` (ReStyle-pSp / -e4e "ir_se").
* ``ResNetBackboneEncoder`` - ResNet-34 trunk (7x7 stem, PReLU, no max-pool).
``progressive=False``: row j = styles[j](f) (pSp variant); ``progressive=True``: row 0 = w0 =
styles[0](f), row j = w0 + styles[j](f) for j <= ``progressive_stage`` (e4e variant).

Inference: ``avg = face_pool(G(latent_avg))``; iteration 0 feeds ``cat([x, avg])`` and adds the
encoder output to ``latent_avg``; iteration t feeds ``cat([x, face_pool(y_{t-1})])`` and adds it to
``codes_{t-1}``; ``y_t = G(codes_t)``.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from .backbones import GradualStyleBlock, IRSEBackbone, ResNetBackbone
from .base import EncoderError, EncoderInverter


class _LastMapHeads(nn.Module):
    """Mixin: map2style heads on the last feature map, pSp or e4e row semantics."""

    def _make_heads(self, in_channels: int, n_styles: int, style_dim: int, head_convs, input_size: int,
                    progressive: bool):
        n = int(round(math.log2(input_size // 16)))
        head_convs = list(head_convs) if head_convs is not None else [n] * n_styles
        self.n_styles, self.style_dim, self.progressive = n_styles, style_dim, progressive
        self.progressive_stage = n_styles - 1
        self.styles = nn.ModuleList([GradualStyleBlock(in_channels, style_dim, head_convs[j])
                                     for j in range(n_styles)])

    def _rows(self, f: torch.Tensor, stage: Optional[int]) -> torch.Tensor:
        if not self.progressive:
            return torch.stack([h(f) for h in self.styles], dim=1)
        stage = self.progressive_stage if stage is None else stage
        w0 = self.styles[0](f)
        rows = [w0] + [w0 + self.styles[i](f) if i <= stage else w0 for i in range(1, self.n_styles)]
        return torch.stack(rows, dim=1)                                          # [N, n_styles, S]


class BackboneEncoder(IRSEBackbone, _LastMapHeads):
    def __init__(self, in_nc: int, units, n_styles: int, style_dim: int, head_convs=None, input_size: int = 256,
                 progressive: bool = False):
        IRSEBackbone.__init__(self, in_nc, units)
        self._make_heads(self.stage_widths[-1], n_styles, style_dim, head_convs, input_size, progressive)

    def forward(self, x, stage: Optional[int] = None):
        return self._rows(self.features(x)[-1], stage)


class ResNetBackboneEncoder(ResNetBackbone, _LastMapHeads):
    def __init__(self, in_nc: int, blocks, n_styles: int, style_dim: int, head_convs=None, input_size: int = 256,
                 progressive: bool = False):
        ResNetBackbone.__init__(self, in_nc, blocks)
        self._make_heads(self.out_channels, n_styles, style_dim, head_convs, input_size, progressive)

    def forward(self, x, stage: Optional[int] = None):
        return self._rows(self.features(x), stage)


class ReStyle(EncoderInverter):
    """ReStyle-pSp / ReStyle-e4e inversion (``method`` "restyle"); ``iters`` default 5 (the papers')."""

    method = "restyle"
    default_iters = 5

    def __init__(self, encoder: nn.Module, G: nn.Module, latent_avg: Optional[torch.Tensor] = None,
                 input_size: int = 256):
        super().__init__(G, latent_avg, input_size)
        if encoder.n_styles != G.num_ws or encoder.style_dim != G.w_dim:
            raise EncoderError(f"the encoder makes [{encoder.n_styles}, {encoder.style_dim}] codes, the generator "
                               f"needs [{G.num_ws}, {G.w_dim}]")
        if encoder.in_nc != 6:
            raise EncoderError(f"a ReStyle encoder takes 6 input channels (image + reconstruction), this one "
                               f"takes {encoder.in_nc}")
        self.encoder = encoder

    def average_image(self) -> torch.Tensor:
        """face_pool(G(latent_avg)) ``[1, 3, s, s]``: the reconstruction iteration 0 starts from."""
        return self.pool(self.synthesize(self.latent_avg[None]))

    def step(self, x: torch.Tensor, y_prev: torch.Tensor, codes_prev: Optional[torch.Tensor]):
        """One iteration: (x, face-pooled previous image, previous codes or None) -> (deltas, codes)."""
        inp = torch.cat([x, y_prev.expand(x.shape[0], -1, -1, -1)], dim=1)       # [N, 6, s, s]
        deltas = self.encoder(inp)
        base = self.latent_avg[None] if codes_prev is None else codes_prev
        return deltas, deltas + base

    def invert(self, images, iters: Optional[int] = None) -> dict:
        iters = self.default_iters if iters is None else int(iters)
        if iters < 1:
            raise EncoderError(f"iters must be >= 1, got {iters}")
        x = self.prepare(images)
        y_in, codes, history = self.average_image(), None, []
        for _ in range(iters):
            deltas, codes = self.step(x, y_in, codes)
            y = self.synthesize(codes)
            history.append(dict(deltas=deltas, ws=codes, images=y))
            y_in = self.pool(y)
        return dict(ws=codes, images=y, history=history, offsets=None)
