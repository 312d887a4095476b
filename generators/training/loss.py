"""Training losses: StyleGAN2/ADA/StyleGAN3 (non-saturating logistic, lazy R1, path length) and
StyleGAN1's progressive losses (non-saturating + R1, or WGAN-GP).

A loss object runs one *phase* on one *round* (a slice of the global batch) and calls ``backward``
with the phase's gain; the loop sums the rounds, all-reduces across processes and steps the
optimizer. Phases (NVIDIA's names): ``Gmain``, ``Greg`` (path length), ``Dmain``, ``Dreg`` (R1).
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F


def gaussian_blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with zero padding, kernel radius floor(3 sigma) (StyleGAN3's D blur)."""
    radius = int(np.floor(sigma * 3))
    if sigma <= 0 or radius < 1:
        return img
    t = torch.arange(-radius, radius + 1, device=img.device, dtype=img.dtype)
    f = (t / sigma).square().neg().exp2()
    f = f / f.sum()
    c = img.shape[1]
    img = F.conv2d(img, f.view(1, 1, 1, -1).repeat(c, 1, 1, 1), padding=(0, radius), groups=c)
    return F.conv2d(img, f.view(1, 1, -1, 1).repeat(c, 1, 1, 1), padding=(radius, 0), groups=c)


class StyleGAN2Loss:
    """Non-saturating logistic loss with lazy R1 and path-length regularization (StyleGAN2/ADA/3).

    ``blur_init_sigma``/``blur_fade_kimg``: StyleGAN3's blur of every image D sees, fading to 0.
    ``pl_weight = 0`` disables path length (StyleGAN3). Style mixing with ``style_mixing`` probability.
    """

    def __init__(self, G, D, augment_pipe=None, r1_gamma=10.0, style_mixing=0.9, pl_weight=2.0,
                 pl_batch_shrink=2, pl_decay=0.01, blur_init_sigma=0.0, blur_fade_kimg=0.0):
        self.G, self.D, self.augment_pipe = G, D, augment_pipe
        self.r1_gamma, self.style_mixing = r1_gamma, style_mixing
        self.pl_weight, self.pl_batch_shrink, self.pl_decay = pl_weight, pl_batch_shrink, pl_decay
        self.blur_init_sigma, self.blur_fade_kimg = blur_init_sigma, blur_fade_kimg
        self.pl_mean = torch.zeros([])
        self.pl_sum = torch.zeros([])          # this step's path lengths, summed over rounds
        self.pl_count = 0
        self.synthesis_emas = getattr(G, "family", "") == "stylegan3"   # SG3 tracks input magnitudes
        self.ada_stats = None                  # set by the loop: an AdaptiveP accumulating sign(D(real))

    # ------------------------------------------------------------------ helpers
    def blur_sigma(self, cur_nimg: int) -> float:
        if self.blur_fade_kimg <= 0:
            return 0.0
        return max(1 - cur_nimg / (self.blur_fade_kimg * 1e3), 0.0) * self.blur_init_sigma

    def run_G(self, z, c, update_emas=False):
        ws = self.G.mapping(z, c, update_emas=update_emas)                          # [N, num_ws, w_dim]
        if self.style_mixing > 0:
            num_ws = ws.shape[1]
            cutoff = int(torch.empty([], dtype=torch.int64).random_(1, num_ws))
            if float(torch.rand([])) >= self.style_mixing:
                cutoff = num_ws
            ws = ws.clone()
            ws[:, cutoff:] = self.G.mapping(torch.randn_like(z), c, update_emas=False)[:, cutoff:]
        extra = {"update_emas": update_emas} if self.synthesis_emas else {}
        return self.G.synthesis(ws, noise_mode="random", **extra), ws

    def run_D(self, img, c, sigma):
        img = gaussian_blur(img, sigma)
        if self.augment_pipe is not None:
            img = self.augment_pipe(img)
        return self.D(img, c)

    # ------------------------------------------------------------------ phases
    def accumulate(self, phase: str, real_img, real_c, gen_z, gen_c, gain: float, cur_nimg: int) -> dict:
        """Run one phase on one round and backprop ``gain * mean loss``. Returns detached stats."""
        sigma = self.blur_sigma(cur_nimg)
        stats = {}
        if phase == "Gmain":
            img, _ = self.run_G(gen_z, gen_c)
            logits = self.run_D(img, gen_c, sigma)
            loss = F.softplus(-logits)                                              # -log sigmoid(D(G(z)))
            loss.mean().mul(gain).backward()
            stats["loss/G"] = float(loss.detach().mean())
        elif phase == "Greg":
            n = max(gen_z.shape[0] // self.pl_batch_shrink, 1)
            img, ws = self.run_G(gen_z[:n], gen_c[:n])
            noise = torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])
            grads, = torch.autograd.grad((img * noise).sum(), ws, create_graph=True)
            lengths = grads.square().sum(2).mean(1).sqrt()                          # [n]
            self.pl_sum = self.pl_sum + lengths.detach().sum()
            self.pl_count += n
            penalty = (lengths - self.pl_mean).square()
            (penalty * self.pl_weight).mean().mul(gain).backward()
            stats["loss/pl_penalty"] = float(penalty.detach().mean())
        elif phase == "Dmain":
            with torch.no_grad():
                img, _ = self.run_G(gen_z, gen_c, update_emas=True)
            logits_gen = self.run_D(img, gen_c, sigma)
            logits_real = self.run_D(real_img, real_c, sigma)
            if self.ada_stats is not None:
                self.ada_stats.accumulate(logits_real)
            loss = F.softplus(logits_gen) + F.softplus(-logits_real)
            loss.mean().mul(gain).backward()
            stats.update({"loss/D": float(loss.detach().mean()), "D/real": float(logits_real.detach().mean()),
                          "D/fake": float(logits_gen.detach().mean()), "D/sign_real": float(logits_real.detach().sign().mean())})
        elif phase == "Dreg":
            real = real_img.detach().requires_grad_(True)
            logits = self.run_D(real, real_c, sigma)
            grads, = torch.autograd.grad(logits.sum(), real, create_graph=True)
            penalty = grads.square().sum([1, 2, 3])
            (penalty * (self.r1_gamma / 2)).mean().mul(gain).backward()
            stats["loss/r1_penalty"] = float(penalty.detach().mean())
        else:
            raise ValueError(f"unknown phase {phase}")
        return stats

    def end_phase(self, phase: str, all_reduce=None) -> None:
        """After all rounds of a phase: update the path-length mean with the whole batch's lengths."""
        if phase == "Greg" and self.pl_count:
            # Kept on the CPU with pl_mean (pl_sum is on the training device after the first round).
            s = torch.stack([self.pl_sum.detach().cpu(), torch.tensor(float(self.pl_count))])
            if all_reduce is not None:
                s = all_reduce(s)
            self.pl_mean = self.pl_mean.lerp(s[0] / s[1], self.pl_decay)
            self.pl_sum, self.pl_count = torch.zeros([]), 0

    def state_dict(self):
        return {"pl_mean": self.pl_mean.clone()}

    def load_state_dict(self, d):
        self.pl_mean = d["pl_mean"].clone()


class ProgressiveLoss:
    """StyleGAN1 losses at the current growth ``step``/``alpha``: 'r1' (non-saturating + R1, the
    StyleGAN paper's choice) or 'wgan-gp' (WGAN loss, gradient penalty lambda 10, drift 0.001)."""

    def __init__(self, G, D, kind="r1", r1_gamma=10.0, gp_lambda=10.0, drift=0.001, style_mixing=0.9):
        if kind not in ("r1", "wgan-gp"):
            raise ValueError(f"unknown StyleGAN1 loss {kind!r} (r1 or wgan-gp)")
        self.G, self.D, self.kind = G, D, kind
        self.r1_gamma, self.gp_lambda, self.drift, self.style_mixing = r1_gamma, gp_lambda, drift, style_mixing
        self.step, self.alpha = 0, 1.0
        self.ada_stats = None
        self.augment_pipe = None

    def run_G(self, z, c, update_emas=False):
        ws = self.G.mapping(z, c, update_emas=update_emas)
        n_used = 2 * (self.step + 1)
        if self.style_mixing > 0 and n_used > 1:
            cutoff = int(torch.empty([], dtype=torch.int64).random_(1, n_used))
            if float(torch.rand([])) >= self.style_mixing:
                cutoff = ws.shape[1]
            ws = ws.clone()
            ws[:, cutoff:] = self.G.mapping(torch.randn_like(z), c)[:, cutoff:]
        return self.G.synthesis(ws, noise_mode="random", step=self.step, alpha=self.alpha)

    def run_D(self, img, c):
        return self.D(img, c, step=self.step, alpha=self.alpha)

    def accumulate(self, phase, real_img, real_c, gen_z, gen_c, gain, cur_nimg) -> dict:
        stats = {}
        if phase == "Gmain":
            logits = self.run_D(self.run_G(gen_z, gen_c), gen_c)
            loss = F.softplus(-logits) if self.kind == "r1" else -logits
            loss.mean().mul(gain).backward()
            stats["loss/G"] = float(loss.detach().mean())
        elif phase == "Dmain":
            with torch.no_grad():
                fake = self.run_G(gen_z, gen_c, update_emas=True)
            lf = self.run_D(fake, gen_c)
            real = real_img.detach().requires_grad_(self.kind == "r1")
            lr = self.run_D(real, real_c)
            if self.kind == "r1":
                loss = F.softplus(lf) + F.softplus(-lr)
                grads, = torch.autograd.grad(lr.sum(), real, create_graph=True)
                loss = loss + grads.square().sum([1, 2, 3]) * (self.r1_gamma / 2)
            else:
                eps = torch.rand([real.shape[0], 1, 1, 1], device=real.device, dtype=real.dtype)
                mixed = (real.detach().lerp(fake, eps)).requires_grad_(True)
                grads, = torch.autograd.grad(self.run_D(mixed, real_c).sum(), mixed, create_graph=True)
                gp = (grads.flatten(1).norm(dim=1) - 1).square()
                loss = lf - lr + self.gp_lambda * gp + self.drift * lr.square()
            loss.mean().mul(gain).backward()
            stats.update({"loss/D": float(loss.detach().mean()), "D/real": float(lr.detach().mean()), "D/fake": float(lf.detach().mean())})
        else:
            raise ValueError(f"phase {phase} is not used by progressive training")
        return stats

    def end_phase(self, phase, all_reduce=None):
        pass

    def state_dict(self):
        return {}

    def load_state_dict(self, d):
        pass
