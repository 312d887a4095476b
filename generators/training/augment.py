"""Adaptive discriminator augmentation (Karras et al. 2020, "Training GANs with limited data").

Every augmentation is applied to each image independently with probability ``p`` (the adaptive
strength), so that with ``p < ~0.8`` the augmentations do not leak into the generator. The default
set is the paper's ``bgc`` pipeline: blit (x-flip, 90-degree rotations, integer translation), general
geometric (isotropic scaling, pre-rotation, anisotropic scaling, post-rotation, fractional translation)
and color (brightness, contrast, luma flip, hue rotation, saturation).

All geometric transforms are composed into one 3x3 matrix per image and applied by a single
``grid_sample`` with reflection padding; all color transforms into one 4x4 matrix. Blit transforms
land exactly on pixel centres (``align_corners=False``), so they move pixels without interpolation.
The pipeline is differentiable in the images (also twice, for R1 on augmented reals).

:class:`AdaptiveP` updates ``p`` from the sign of D's real logits, targeting ``E[sign(D(x))] = 0.6``.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# Probability multipliers of NVIDIA's 'bgc' preset; a 0 switches an augmentation off.
BGC = dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1,
           brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1)
# Ranges (the paper's values).
RANGES = dict(xint_max=0.125, scale_std=0.2, rotate_max=1.0, aniso_std=0.2, xfrac_std=0.125,
              brightness_std=0.2, contrast_std=0.5, hue_max=1.0, saturation_std=1.0)


def _eye(n, size, device):
    return torch.eye(size, device=device).unsqueeze(0).repeat(n, 1, 1)


def _translate2d(tx, ty):
    m = _eye(len(tx), 3, tx.device)
    m[:, 0, 2], m[:, 1, 2] = tx, ty
    return m


def _scale2d(sx, sy):
    m = _eye(len(sx), 3, sx.device)
    m[:, 0, 0], m[:, 1, 1] = sx, sy
    return m


def _rotate2d(theta):
    m = _eye(len(theta), 3, theta.device)
    c, s = torch.cos(theta), torch.sin(theta)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = c, -s, s, c
    return m


def _translate3d(t):
    m = _eye(len(t), 4, t.device)
    m[:, :3, 3] = t[:, None]
    return m


def _scale3d(s):
    m = _eye(len(s), 4, s.device)
    m[:, 0, 0] = m[:, 1, 1] = m[:, 2, 2] = s
    return m


def _rotate3d(axis, theta):
    """Rodrigues rotation about the unit ``axis`` [3] by ``theta`` [N], as [N, 4, 4]."""
    n = len(theta)
    x, y, z = axis
    k = torch.tensor([[0, -z, y], [z, 0, -x], [-y, x, 0]], dtype=theta.dtype, device=theta.device)
    r = (torch.eye(3, device=theta.device) + torch.sin(theta)[:, None, None] * k
         + (1 - torch.cos(theta))[:, None, None] * (k @ k))
    m = _eye(n, 4, theta.device)
    m[:, :3, :3] = r
    return m


class AugmentPipe(nn.Module):
    """Differentiable per-image augmentation with probability ``p`` (a buffer, saved with snapshots).

    ``forward(images, generator=None, global_size=None, offset=0)``: images ``[N, C, H, W]`` float in
    about [-1, 1]. Random draws use ``generator`` (or torch's global RNG). With ``global_size`` the
    draws are made for a whole global batch and images take rows ``offset:offset+N`` — so a batch split
    over processes is augmented exactly as it would be in one process.
    """

    def __init__(self, p: float = 0.0, **kwargs):
        super().__init__()
        unknown = set(kwargs) - set(BGC) - set(RANGES)
        if unknown:
            raise ValueError(f"unknown augmentation settings {sorted(unknown)}")
        self.probs = {k: float(kwargs.get(k, v)) for k, v in BGC.items()}
        self.ranges = {k: float(kwargs.get(k, v)) for k, v in RANGES.items()}
        self.register_buffer("p", torch.tensor(float(p)))

    def _draw(self, n, generator, device):
        """All random numbers for n images, drawn in a fixed order (independent of p's value)."""
        def u(*shape):
            return torch.rand(*shape, generator=generator, device=device)

        def g(*shape):
            return torch.randn(*shape, generator=generator, device=device)
        return dict(sel=u(12, n), xflip=u(n), rot90=u(n), xint=u(2, n), scale=g(n), rot_pre=u(n), aniso=g(n),
                    rot_post=u(n), xfrac=g(2, n), brightness=g(n), contrast=g(n), lumaflip=u(n), hue=u(n),
                    saturation=g(n))

    def geometric_matrix(self, r, p, size):
        """Inverse geometric transform (output -> input, normalized coords) [N, 3, 3] and whether any fired."""
        n = r["xflip"].shape[0]
        dev = r["xflip"].device
        P, R = self.probs, self.ranges
        on = [(r["sel"][i] < p * P[k]) for i, k in enumerate(["xflip", "rotate90", "xint", "scale", "rotate",
                                                                "aniso", "rotate"])]
        one, zero = torch.ones(n, device=dev), torch.zeros(n, device=dev)
        m = _eye(n, 3, dev)
        # x-flip: mirror with probability 1/2 when selected.
        flip = torch.where(on[0], torch.floor(r["xflip"] * 2), zero)
        m = m @ _scale2d(1 - 2 * flip, one)
        # Rotation by a multiple of 90 degrees.
        k = torch.where(on[1], torch.floor(r["rot90"] * 4), zero)
        m = m @ _rotate2d(-k * (math.pi / 2))
        # Integer translation, up to xint_max of the image size, rounded to whole pixels.
        t = (r["xint"] * 2 - 1) * R["xint_max"]
        t = torch.where(on[2][None], torch.round(t * size) * 2 / size, torch.zeros_like(t))
        m = m @ _translate2d(-t[0], -t[1])
        # Isotropic scaling, log-normal.
        s = torch.where(on[3], torch.exp2(r["scale"] * R["scale_std"]), one)
        m = m @ _scale2d(1 / s, 1 / s)
        # Pre-rotation; probability chosen so that P(any rotation) = p.
        p_rot = 1 - math.sqrt(max(1 - min(float(p) * P["rotate"], 1.0), 0.0))
        pre = r["sel"][4] < p_rot
        th = torch.where(pre, (r["rot_pre"] * 2 - 1) * math.pi * R["rotate_max"], zero)
        m = m @ _rotate2d(-th)
        # Anisotropic scaling.
        s = torch.where(on[5], torch.exp2(r["aniso"] * R["aniso_std"]), one)
        m = m @ _scale2d(1 / s, s)
        # Post-rotation.
        post = r["sel"][6] < p_rot
        th2 = torch.where(post, (r["rot_post"] * 2 - 1) * math.pi * R["rotate_max"], zero)
        m = m @ _rotate2d(-th2)
        # Fractional translation, normal.
        fire_frac = r["sel"][7] < p * P["xfrac"]
        tf = torch.where(fire_frac[None], r["xfrac"] * R["xfrac_std"] * 2, torch.zeros_like(r["xfrac"]))
        m = m @ _translate2d(-tf[0], -tf[1])
        fired = torch.stack(on[:4] + [pre, on[5], post, fire_frac]).any(0)
        return m, fired

    def color_matrix(self, r, p, num_channels):
        n = r["xflip"].shape[0]
        dev = r["xflip"].device
        P, R = self.probs, self.ranges
        on = {k: r["sel"][8 + i] < p * P[k] for i, k in enumerate(["brightness", "contrast", "lumaflip", "hue"])}
        on["saturation"] = r["sel"][11] < p * P["saturation"]
        one, zero = torch.ones(n, device=dev), torch.zeros(n, device=dev)
        c = _eye(n, 4, dev)
        b = torch.where(on["brightness"], r["brightness"] * R["brightness_std"], zero)
        c = _translate3d(b) @ c
        s = torch.where(on["contrast"], torch.exp2(r["contrast"] * R["contrast_std"]), one)
        c = _scale3d(s) @ c
        fired = on["brightness"] | on["contrast"]
        if num_channels == 3:
            v = torch.tensor([1.0, 1.0, 1.0, 0.0], device=dev) / math.sqrt(3)   # luma axis
            vv = torch.outer(v, v)
            i = torch.where(on["lumaflip"], torch.floor(r["lumaflip"] * 2), zero)
            c = (torch.eye(4, device=dev) - 2 * vv * i[:, None, None]) @ c
            th = torch.where(on["hue"], (r["hue"] * 2 - 1) * math.pi * R["hue_max"], zero)
            c = _rotate3d(v[:3].tolist(), th) @ c
            s = torch.where(on["saturation"], torch.exp2(r["saturation"] * R["saturation_std"]), one)
            c = (vv + (torch.eye(4, device=dev) - vv) * s[:, None, None]) @ c
            fired = fired | on["lumaflip"] | on["hue"] | on["saturation"]
        return c, fired

    def forward(self, images: torch.Tensor, generator: Optional[torch.Generator] = None,
                global_size: Optional[int] = None, offset: int = 0) -> torch.Tensor:
        p = float(self.p)
        n, ch, h, w = images.shape
        if p <= 0:
            return images
        total = global_size or n
        r = self._draw(total, generator, images.device)
        r = {k: v[..., offset:offset + n] for k, v in r.items()}
        x = images
        g, fired = self.geometric_matrix(r, p, h)
        if bool(fired.any()):
            theta = g[:, :2, :].to(x.dtype)
            grid = F.affine_grid(theta, [n, ch, h, w], align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        c, fired = self.color_matrix(r, p, ch)
        if bool(fired.any()):
            c = c.to(x.dtype)
            if ch == 3:
                x = torch.einsum("nij,njhw->nihw", c[:, :3, :3], x) + c[:, :3, 3, None, None]
            else:   # brightness / contrast only for non-RGB images
                x = x * c[:, 0, 0, None, None, None] + c[:, 0, 3, None, None, None]
        return x


class AdaptiveP:
    """ADA's controller: every ``interval`` D steps, ``p += sign(r_t - target) * batch*interval/(kimg*1000)``.

    ``r_t = E[sign(D(real))]`` over the interval; ``p`` is clamped to [0, 1]. ``state_dict`` holds the
    running sums so that a resumed run continues exactly.
    """

    def __init__(self, target: float = 0.6, interval: int = 4, kimg: float = 100.0):
        self.target, self.interval, self.kimg = target, interval, kimg
        self.sum = 0.0
        self.count = 0
        self.steps = 0
        self.last_rt = None

    def accumulate(self, real_logits: torch.Tensor) -> None:
        self.sum += float(torch.sign(real_logits.detach()).sum())
        self.count += int(real_logits.numel())

    def step(self, pipe: AugmentPipe, batch_size: int, all_reduce=None) -> None:
        """Call once per D step; ``all_reduce`` sums a tensor over processes (multi-process runs)."""
        self.steps += 1
        if self.steps % self.interval != 0:
            return
        total = torch.tensor([self.sum, float(self.count)], dtype=torch.float64)
        if all_reduce is not None:
            total = all_reduce(total)
        self.sum, self.count = 0.0, 0
        if total[1] == 0:
            return
        rt = float(total[0] / total[1])
        adjust = float(np.sign(rt - self.target)) * (batch_size * self.interval) / (self.kimg * 1000)
        pipe.p.copy_((pipe.p + adjust).clamp(0, 1))
        self.last_rt = rt

    def state_dict(self):
        return dict(sum=self.sum, count=self.count, steps=self.steps, last_rt=self.last_rt)

    def load_state_dict(self, d):
        self.sum, self.count, self.steps, self.last_rt = d["sum"], d["count"], d["steps"], d.get("last_rt")
