"""Optimization-based inversion (projection) of a batch of images into W, W+ or Z.

    res = project(G, targets, space="w+", steps=1000, loss="lpips", seed=303)
    res.ws          # [N, num_ws, w_dim]
    res.images      # [N, C, H, W] in [-1, 1], rendered with the optimized noise
    res.noise       # per-image noise maps, or None (StyleGAN3)

NVIDIA's projector recipe (stylegan2-ada-pytorch ``projector.py``), for N images at once:

* w_avg / w_std from 10,000 mapped z ~ N(0, I) drawn with ``RandomState(123)`` (first w slot);
  w_std = sqrt(sum |w - w_avg|^2 / n), one scalar.
* Adam (0.9, 0.999), lr = 0.1 * min(1, t / 0.05) * (0.5 - 0.5 cos(pi * min(1, (1 - t) / 0.25))).
* Each step the latent gets Gaussian jitter w_std * 0.05 * max(0, 1 - t / 0.75)^2.
* Noise inputs are optimized too (initialised N(0, 1)), regularised by 1e5 x the multi-scale lag-1
  autocorrelation (down to 8x8), and renormalised to zero mean / unit variance after every step.
* Perceptual loss at most 256x256 (area downsampling), see :func:`inversion.losses.perceptual_resize`.

Batching never couples images: every per-image quantity (loss, noise regulariser, renormalisation,
jitter and noise initialisation from a per-image ``torch.Generator``) is computed per image and the
losses are *summed*, so each latent element's gradient only depends on its own image and Adam
(elementwise) makes the same updates as N separate runs with the same per-image seeds.
Unlike NVIDIA's script the optimized noise is returned and used for the returned images.
"""
from __future__ import annotations

import math
from typing import Callable, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from .result import InversionResult

__all__ = ["project", "w_stats", "noise_inputs", "noise_regularization", "lr_schedule", "ProjectionError",
           "SPACES"]

SPACES = ("w", "w+", "z")


class ProjectionError(ValueError):
    """Bad arguments to :func:`project` (shapes, space, init)."""


def w_stats(G, num_samples: int = 10000, seed: int = 123, batch: int = 1000, c: Optional[torch.Tensor] = None,
            device=None):
    """(w_avg [w_dim], w_std scalar) from ``num_samples`` mapped z drawn with ``RandomState(seed)``.

    Conditional generators: each sample gets the label ``c[i % len(c)]`` (default: classes in turn)."""
    device = device or next(G.parameters()).device
    z = np.random.RandomState(seed).randn(num_samples, G.z_dim)
    c_dim = getattr(G, "c_dim", 0)
    if c_dim and c is None:
        c = torch.eye(c_dim)
    total, ws = 0, []
    with torch.no_grad():
        for i in range(0, num_samples, batch):
            zb = torch.from_numpy(z[i:i + batch]).float().to(device)
            cb = None
            if c_dim:
                idx = torch.arange(i, i + len(zb)) % len(c)
                cb = c[idx].float().to(device)
            ws.append(G.mapping(zb, cb)[:, 0].double())
            total += len(zb)
    w = torch.cat(ws)                                                  # [n, w_dim]
    w_avg = w.mean(0)
    w_std = ((w - w_avg).square().sum() / num_samples).sqrt()
    return w_avg.float(), float(w_std)


def noise_inputs(G) -> List[Optional[int]]:
    """Resolution of every optimizable noise input in ``G.synthesis.noise_shapes()`` order (None for an
    entry that takes no noise). Empty for networks without noise (StyleGAN3)."""
    syn = G.synthesis
    if not hasattr(syn, "noise_shapes"):
        return []
    out = []
    for block, layer, res in syn.noise_shapes():
        m = getattr(getattr(syn, block), layer)
        out.append(res if getattr(m, "use_noise", False) and hasattr(m, "noise_const") else None)
    return out if any(r is not None for r in out) else []


def noise_regularization(noise: Sequence[torch.Tensor]) -> torch.Tensor:
    """NVIDIA's multi-scale lag-1 autocorrelation penalty, per image: maps [N, 1, r, r] -> [N]."""
    reg = 0.0
    for n in noise:
        while True:
            reg = reg + (n * torch.roll(n, shifts=1, dims=3)).mean(dim=(1, 2, 3)).square()
            reg = reg + (n * torch.roll(n, shifts=1, dims=2)).mean(dim=(1, 2, 3)).square()
            if n.shape[2] <= 8:
                break
            n = F.avg_pool2d(n, kernel_size=2)
    return reg


def lr_schedule(t: float, lr: float, rampup: float = 0.05, rampdown: float = 0.25) -> float:
    """NVIDIA's learning rate at progress ``t`` in [0, 1): linear warm-up, cosine ramp-down."""
    r = min(1.0, (1.0 - t) / rampdown) if rampdown > 0 else 1.0
    r = 0.5 - 0.5 * math.cos(r * math.pi)
    r = r * (min(1.0, t / rampup) if rampup > 0 else 1.0)
    return lr * r


def _per_image_seeds(seed, n: int) -> List[Optional[int]]:
    if seed is None:
        return [None] * n
    if isinstance(seed, (int, np.integer)):
        return [int(seed) + i for i in range(n)]
    seeds = [int(s) for s in seed]
    if len(seeds) != n:
        raise ProjectionError(f"got {len(seeds)} seeds for {n} images")
    return seeds


def _make_generators(seeds) -> List[torch.Generator]:
    gens = []
    for s in seeds:
        g = torch.Generator()
        if s is None:
            g.seed()
        else:
            g.manual_seed(s)
        gens.append(g)
    return gens


def _randn(gens, shape, device) -> torch.Tensor:
    """[N, *shape]: image i's slice drawn from its own generator (on CPU, so results do not depend on the device)."""
    return torch.stack([torch.randn(shape, generator=g) for g in gens]).to(device)


def _init_latent(G, space, init, n, w_avg, gens, device) -> torch.Tensor:
    L, C = G.num_ws, G.w_dim
    if space == "z":
        if init is None:
            return _randn(gens, [G.z_dim], device)
        z = torch.as_tensor(init, dtype=torch.float32).to(device)
        if z.shape != (n, G.z_dim):
            raise ProjectionError(f"z init must be [{n}, {G.z_dim}], got {list(z.shape)}")
        return z.clone()
    if init is None:
        w = w_avg.to(device).reshape(1, 1, C).repeat(n, 1, 1)            # [N, 1, C]
    else:
        w = torch.as_tensor(init, dtype=torch.float32).to(device)
        if w.ndim == 2:
            w = w[:, None]
        if w.ndim != 3 or w.shape[0] != n or w.shape[2] != C or w.shape[1] not in (1, L):
            raise ProjectionError(f"init must be [{n}, {C}], [{n}, 1, {C}] or [{n}, {L}, {C}], got {list(w.shape)}")
        if space == "w" and w.shape[1] != 1:
            w = w.mean(1, keepdim=True)                                 # W: one vector per image
    if space == "w+" and w.shape[1] == 1:
        w = w.repeat(1, L, 1)
    return w.clone()


def project(G, targets: torch.Tensor, space: str = "w", steps: int = 1000, *, loss="lpips", init=None,
            seed: Union[int, Sequence[int], None] = 303, lr: float = 0.1, lr_rampup: float = 0.05,
            lr_rampdown: float = 0.25, noise_factor: float = 0.05, noise_ramp: float = 0.75,
            noise_reg: float = 1e5, optimize_noise: bool = True, w_avg_samples: int = 10000,
            stats: Optional[tuple] = None, c: Optional[torch.Tensor] = None, device=None,
            progress: Optional[bool] = None, callback: Optional[Callable] = None,
            snapshot_every: int = 0, w_warmup: float = 0.0, noise_init: Optional[list] = None) -> InversionResult:
    """Project ``targets`` [N, C, H, W] in [-1, 1] into ``space`` ("w", "w+", "z") of ``G``.

    loss:       a spec for :class:`inversion.losses.ReconstructionLoss` ("lpips", "mse", "lpips,mse=0.1",
                {"mse": 1}) or a callable ``(images, targets) -> (total [N], {name: [N]})``
    init:       None (w_avg; for Z a per-image N(0, I) draw), or ws [N, w_dim] / [N, 1, w_dim] /
                [N, num_ws, w_dim] (for W the mean over slots is used), or z [N, z_dim]
    seed:       int (image i uses seed + i), a list of per-image seeds, or None (nondeterministic)
    stats:      precomputed ``w_stats(G)`` (saves the 10,000-sample mapping pass)
    c:          labels [N, c_dim] for conditional generators
    callback:   called as ``callback(step, ws, images, total)`` after every step (progress videos)
    snapshot_every: keep ws every k steps in ``history["ws"]`` ([k, N, num_ws, w_dim]); 0 = off
    w_warmup:   W+ only: spend this fraction of ``steps`` projecting into W first, then continue in W+ from
                there (no w jitter in the W+ part). Not NVIDIA's recipe (default 0 = off), but it avoids the
                poor local minima W+ falls into from w_avg: on the 32 px fixtures, 300 MSE steps with 0.5
                give 45-60 dB where plain W+ gives 15-34 dB.
    noise_init: starting noise maps (as returned in ``InversionResult.noise``) instead of N(0, I) draws
    """
    if space not in SPACES:
        raise ProjectionError(f"space must be one of {', '.join(SPACES)}, got {space!r}")
    if steps < 1:
        raise ProjectionError(f"steps must be >= 1, got {steps}")
    targets = torch.as_tensor(targets)
    R = G.img_resolution
    C_img = getattr(G, "img_channels", targets.shape[1] if targets.ndim == 4 else 3)
    if targets.ndim != 4 or targets.shape[1] != C_img or targets.shape[2:] != (R, R):
        raise ProjectionError(f"targets must be [N, {C_img}, {R}, {R}] in [-1, 1], got {list(targets.shape)}")
    device = torch.device(device) if device is not None else next(G.parameters()).device
    targets = targets.to(device, torch.float32)
    n = targets.shape[0]
    c_dim = getattr(G, "c_dim", 0)
    if c_dim:
        if c is None:
            raise ProjectionError(f"this generator is conditional (c_dim={c_dim}): pass c [N, {c_dim}]")
        c = torch.as_tensor(c, dtype=torch.float32, device=device).reshape(n, c_dim)

    if callable(loss) and not isinstance(loss, (str, dict)):
        loss_fn = loss
    else:
        from .losses import ReconstructionLoss
        loss_fn = ReconstructionLoss(loss, device=device)

    if w_warmup and space == "w+":
        if not 0 < w_warmup < 1:
            raise ProjectionError(f"w_warmup must be in [0, 1), got {w_warmup}")
        k = min(max(int(round(steps * w_warmup)), 1), steps - 1) if steps > 1 else 0
        if k > 0:
            if stats is None:
                stats = w_stats(G, w_avg_samples, device=device)
            common = dict(loss=loss_fn, seed=seed, lr=lr, lr_rampup=lr_rampup, lr_rampdown=lr_rampdown,
                          noise_ramp=noise_ramp, noise_reg=noise_reg, optimize_noise=optimize_noise, stats=stats,
                          c=c, device=device, progress=progress, callback=callback, snapshot_every=snapshot_every)
            first = project(G, targets, "w", k, init=init, noise_factor=noise_factor, noise_init=noise_init, **common)
            second = project(G, targets, "w+", steps - k, init=first.ws, noise_factor=0.0, noise_init=first.noise,
                             **common)
            for key, v in first.history.items():
                if key in second.history:
                    second.history[key] = np.concatenate([v, second.history[key]])
            return second

    from tqdm import tqdm
    req = [p.requires_grad for p in G.parameters()]
    G.requires_grad_(False)
    try:
        if stats is None:
            stats = w_stats(G, w_avg_samples, device=device)
        w_avg, w_std = stats
        w_avg = torch.as_tensor(w_avg, dtype=torch.float32, device=device)
        gens = _make_generators(_per_image_seeds(seed, n))

        latent = _init_latent(G, space, init, n, w_avg, gens, device).requires_grad_(True)
        res_list = noise_inputs(G) if optimize_noise else []
        noise = [(_randn(gens, [1, r, r], device) if r is not None else None) for r in res_list]
        if noise_init is not None and res_list:
            if len(noise_init) != len(noise):
                raise ProjectionError(f"noise_init has {len(noise_init)} maps, the generator takes {len(noise)}")
            noise = [None if t is None else torch.as_tensor(t, dtype=torch.float32).to(device).clone()
                     for t in noise_init]
        noise_params = [t.requires_grad_(True) for t in noise if t is not None]
        opt = torch.optim.Adam([latent] + noise_params, betas=(0.9, 0.999), lr=lr)

        def render(lat, jitter=None):
            if space == "z":
                ws = G.mapping(lat, c)
            else:
                ws = lat.expand(-1, G.num_ws, -1) if space == "w" else lat
            if jitter is not None:
                ws = ws + jitter
            img = G.synthesis(ws, noise_mode="const", noise=noise) if noise_params else \
                G.synthesis(ws, noise_mode="const")
            return ws, img

        history = {"total": np.zeros((steps, n), np.float32)}
        snaps = []
        bar = tqdm(range(steps), desc=f"project {space}", unit="step", disable=(not progress) if progress is not None
                   else None, leave=False)
        for step in bar:
            t = step / steps
            for group in opt.param_groups:
                group["lr"] = lr_schedule(t, lr, lr_rampup, lr_rampdown)
            scale = w_std * noise_factor * max(0.0, 1.0 - t / noise_ramp) ** 2 if noise_ramp > 0 else 0.0
            jitter = None
            if scale > 0:
                # W: one jitter vector per image (shared by all slots, as NVIDIA); W+ and Z: per slot
                shape = [1, G.w_dim] if space == "w" else [G.num_ws, G.w_dim]
                jitter = _randn(gens, shape, device) * scale
            ws, img = render(latent, jitter)
            total, values = loss_fn(img, targets)
            if noise_params:
                total = total + noise_reg * noise_regularization(noise_params)
            opt.zero_grad(set_to_none=True)
            total.sum().backward()               # sum, not mean: per-image gradients stay independent
            opt.step()
            with torch.no_grad():
                for nz in noise_params:          # per image: zero mean, unit (population) variance
                    nz -= nz.mean(dim=(1, 2, 3), keepdim=True)
                    nz *= nz.square().mean(dim=(1, 2, 3), keepdim=True).rsqrt()
            history["total"][step] = total.detach().cpu().numpy()
            for k, v in values.items():
                history.setdefault(k, np.zeros((steps, n), np.float32))[step] = v.detach().cpu().numpy()
            if snapshot_every and step % snapshot_every == 0:
                snaps.append(ws.detach().cpu())
            if callback is not None:
                callback(step, ws.detach(), img.detach(), total.detach())
            bar.set_postfix(loss=f"{float(total.detach().mean()):.4g}", refresh=False)

        with torch.no_grad():
            ws, img = render(latent)
            total, values = loss_fn(img, targets)
            from .losses import psnr
            losses = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in values.items()}
            losses["total"] = total.detach().cpu().numpy().astype(np.float32)
            losses["psnr"] = psnr(img, targets).cpu().numpy().astype(np.float32)
        if snaps:
            history["ws"] = torch.stack(snaps).numpy()
        out_noise = None
        if noise_params:
            out_noise = [t.detach().cpu() if t is not None else None for t in noise]
        return InversionResult(ws=ws.detach().float().cpu(), images=img.detach().float().cpu(), losses=losses,
                               history=history, noise=out_noise, method="projection", space=space)
    finally:
        for p, r in zip(G.parameters(), req):
            p.requires_grad_(r)

