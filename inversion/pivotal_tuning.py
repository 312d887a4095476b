"""Pivotal Tuning Inversion (Roich et al. 2021): keep a pivot latent fixed, tune the generator to it.

    res = pti(G, targets)                      # pivot by W projection, then tuning
    res = pti(G, targets, pivot=ws)            # pivot from any encoder / latent file
    res.generator                              # the tuned copy (G itself is untouched)
    save_tuned(res.generator, "tuned.safetensors")          # a normal gankit checkpoint
    save_deltas(res.generator, G, "deltas.safetensors")     # only tuned - original, + base sha256
    G2 = apply_deltas(G, "deltas.safetensors")

Recipe (danielroich/PTI ``configs/hyperparameters.py``): pivot = W projection (450 steps, 600 w
samples, effective lr 0.01); tuning for at most 350 Adam steps at lr 3e-4 on 1 x L2 + 1 x LPIPS
(AlexNet), stopping - before the backward pass, as PTI does - once LPIPS <= 0.06; renders use the
generator's constant noise. Optional locality regularization (off by default, as in PTI's config):
z ~ N(0, I), w_z = mapping(z, psi=0.5), w_r = w_p + 30 (w_z - w_p) / |w_z - w_p|, and
0.1 x (L2 + LPIPS) between the original and the tuned generator at w_r (noise off).

All N images tune one generator together (PTI's multi-ID mode with one step over all images); the
early stop waits until every image is below the threshold. The loss is the mean over images.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from .result import InversionResult

__all__ = ["pti", "PTIResult", "save_tuned", "save_deltas", "load_deltas", "apply_deltas", "DeltaError"]

DELTA_FORMAT = "gankit-weight-deltas"


class DeltaError(ValueError):
    """A weight-delta file that does not fit the generator it is applied to."""


@dataclass
class PTIResult(InversionResult):
    """:class:`InversionResult` plus the tuned generator and the pivot's own reconstruction."""

    generator: Optional[torch.nn.Module] = None
    pivot_images: Optional[torch.Tensor] = None
    steps_run: int = 0


def _pivot_ws(G, pivot, n, device) -> torch.Tensor:
    if isinstance(pivot, InversionResult):
        pivot = pivot.ws
    elif hasattr(pivot, "torch") and hasattr(pivot, "w"):        # inversion.latents.Latents
        pivot = pivot.torch(num_ws=G.num_ws)
    w = torch.as_tensor(pivot, dtype=torch.float32).to(device)
    if w.ndim == 2:
        w = w[:, None]
    if w.ndim != 3 or w.shape[0] != n or w.shape[2] != G.w_dim or w.shape[1] not in (1, G.num_ws):
        raise ValueError(f"pivot must be [{n}, {G.w_dim}] or [{n}, {G.num_ws}, {G.w_dim}], got {list(w.shape)}")
    return w.expand(-1, G.num_ws, -1).contiguous()


def pti(G, targets: torch.Tensor, pivot=None, *, steps: int = 350, lr: float = 3e-4, loss="mse,lpips-alex",
        stop_term: Optional[str] = None, stop_at: float = 0.06, locality: bool = False,
        locality_alpha: float = 30.0, locality_weight: float = 0.1, locality_psi: float = 0.5,
        locality_every: int = 1, pivot_kwargs: Optional[dict] = None, seed: int = 0, c=None, device=None,
        progress: Optional[bool] = None) -> PTIResult:
    """Pivotal tuning of a copy of ``G`` to ``targets`` [N, C, H, W] in [-1, 1].

    pivot:      None (W projection with ``pivot_kwargs``, default PTI's 450 steps / 600 samples / lr 0.01
                and the same ``loss``), ws [N, w_dim] / [N, num_ws, w_dim], an InversionResult or Latents
    loss:       loss spec (see :class:`inversion.losses.ReconstructionLoss`), PTI: "mse,lpips-alex"
    stop_term:  the per-image loss term compared with ``stop_at`` (default: "lpips-alex" or "lpips"
                when in the loss, else no early stop)
    locality:   PTI's locality regularization (alpha 30, weight 0.1 on each loss term)
    """
    from tqdm import tqdm
    from .losses import ReconstructionLoss, parse_loss, psnr

    device = torch.device(device) if device is not None else next(G.parameters()).device
    targets = torch.as_tensor(targets).to(device, torch.float32)
    R = G.img_resolution
    if targets.ndim != 4 or targets.shape[2:] != (R, R):
        raise ValueError(f"targets must be [N, C, {R}, {R}] in [-1, 1], got {list(targets.shape)}")
    n = targets.shape[0]
    spec = parse_loss(loss)
    if stop_term is None:
        stop_term = next((t for t in ("lpips-alex", "lpips") if t in spec), None)
    elif stop_term not in spec:
        raise ValueError(f"stop_term {stop_term!r} is not a term of the loss {sorted(spec)}")
    loss_fn = ReconstructionLoss(spec, device=device)

    if pivot is None:
        from .projection import project
        kw = dict(space="w", steps=450, w_avg_samples=600, lr=0.01, loss=loss_fn, seed=seed, progress=progress)
        kw.update(pivot_kwargs or {})
        pivot = project(G, targets, c=c, device=device, **kw)
    w_p = _pivot_ws(G, pivot, n, device)                                         # [N, num_ws, w_dim]

    G_orig = G
    Gt = copy.deepcopy(G).to(device).eval()
    Gt.requires_grad_(False)
    params = [p for p in Gt.synthesis.parameters()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr)
    gen = torch.Generator().manual_seed(int(seed))
    req = [p.requires_grad for p in G_orig.parameters()]
    G_orig.requires_grad_(False)

    with torch.no_grad():
        pivot_images = G_orig.synthesis(w_p, noise_mode="const")
        _, pv = loss_fn(pivot_images, targets)
        pivot_losses = {f"pivot_{k}": v.cpu().numpy() for k, v in pv.items()}
        pivot_losses["pivot_psnr"] = psnr(pivot_images, targets).cpu().numpy()

    history = {"total": [], **{k: [] for k in spec}}
    steps_run = 0
    try:
        bar = tqdm(range(steps), desc="pti", unit="step", leave=False,
                   disable=(not progress) if progress is not None else None)
        for step in bar:
            img = Gt.synthesis(w_p, noise_mode="const")
            total, values = loss_fn(img, targets)
            history["total"].append(total.detach().cpu().numpy())
            for k, v in values.items():
                history[k].append(v.detach().cpu().numpy())
            if stop_term is not None and bool((values[stop_term] <= stop_at).all()):
                break                                   # PTI: stop before the backward pass
            obj = total.mean()
            if locality and step % locality_every == 0:
                z = torch.randn([n, G.z_dim], generator=gen).to(device)
                cc = None if not getattr(G, "c_dim", 0) else torch.as_tensor(c, dtype=torch.float32, device=device)
                with torch.no_grad():
                    w_z = G_orig.mapping(z, cc, truncation_psi=locality_psi)
                    d = w_z - w_p
                    w_r = w_p + locality_alpha * d / d.flatten(1).norm(dim=1).clamp_min(1e-8)[:, None, None]
                    ref = G_orig.synthesis(w_r, noise_mode="none")
                reg, _ = loss_fn(Gt.synthesis(w_r, noise_mode="none"), ref)
                obj = obj + locality_weight * reg.mean()
            opt.zero_grad(set_to_none=True)
            obj.backward()
            opt.step()
            steps_run = step + 1
            bar.set_postfix(loss=f"{float(total.detach().mean()):.4g}", refresh=False)
    finally:
        for p, r in zip(G_orig.parameters(), req):
            p.requires_grad_(r)
    Gt.requires_grad_(False)

    with torch.no_grad():
        img = Gt.synthesis(w_p, noise_mode="const")
        total, values = loss_fn(img, targets)
        losses = {k: v.cpu().numpy() for k, v in values.items()}
        losses["total"] = total.cpu().numpy()
        losses["psnr"] = psnr(img, targets).cpu().numpy()
        losses.update(pivot_losses)
    hist = {k: np.stack(v).astype(np.float32) for k, v in history.items() if v}
    return PTIResult(ws=w_p.detach().cpu(), images=img.float().cpu(), losses=losses, history=hist, noise=None,
                     method="pti", space="w+" if w_p.shape[1] > 1 and not bool((w_p == w_p[:, :1]).all()) else "w",
                     generator=Gt, pivot_images=pivot_images.float().cpu(), steps_run=steps_run)


# ---------------------------------------------------------------------------------------------- saving


def save_tuned(G_tuned, path) -> None:
    """The tuned generator as a normal gankit checkpoint (``generators.load`` reads it)."""
    import generators
    generators.save(G_tuned, path)


def _state_sha(G) -> str:
    from editing.directions import generator_sha256
    return generator_sha256(G)


def save_deltas(G_tuned, G_orig, path) -> int:
    """Write ``tuned - original`` of every changed tensor (safetensors) with the original's sha256;
    returns the number of tensors written. Much smaller than a checkpoint when few layers moved."""
    from safetensors.torch import save_file
    from generators.formats.atomic import atomic_path
    a, b = G_tuned.state_dict(), G_orig.state_dict()
    if a.keys() != b.keys():
        raise DeltaError("the two generators have different tensors")
    deltas = {}
    for k in a:
        if a[k].shape != b[k].shape:
            raise DeltaError(f"{k}: shape {list(a[k].shape)} vs {list(b[k].shape)}")
        if a[k].is_floating_point() and not torch.equal(a[k], b[k]):
            deltas[k] = (a[k].detach().float().cpu() - b[k].detach().float().cpu()).contiguous()
    meta = {"format": DELTA_FORMAT, "base_sha256": _state_sha(G_orig)}
    with atomic_path(path) as tmp:
        save_file(deltas, tmp, metadata=meta)
    return len(deltas)


def load_deltas(path):
    """(deltas {name: tensor}, metadata) of a weight-delta file."""
    from safetensors import safe_open
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            deltas = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for bad headers
        raise DeltaError(f"{path}: not a readable weight-delta file ({str(e).splitlines()[0] if str(e) else e})") \
            from None
    if meta.get("format") != DELTA_FORMAT:
        raise DeltaError(f"{path}: not a gankit weight-delta file")
    return deltas, meta


def apply_deltas(G, path, check: bool = True):
    """A copy of ``G`` with the deltas added. ``check``: refuse when ``G`` is not the base generator."""
    deltas, meta = load_deltas(path)
    if check and meta.get("base_sha256") and meta["base_sha256"] != _state_sha(G):
        raise DeltaError(f"{path}: made for another generator (sha256 {meta['base_sha256'][:12]}...)")
    out = copy.deepcopy(G)
    sd = out.state_dict()
    for k, d in deltas.items():
        if k not in sd or sd[k].shape != d.shape:
            raise DeltaError(f"{path}: tensor {k} does not fit this generator")
        with torch.no_grad():
            sd[k].add_(d.to(sd[k].device, sd[k].dtype))
    return out

