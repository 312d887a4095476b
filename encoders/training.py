"""Training pSp / e4e / ReStyle / HyperStyle encoders for a gankit generator (frozen).

Batches mix real aligned images from a folder with synthetic samples of the generator whose code is
known (``w = mapping(z)`` broadcast to W+), which adds a latent loss ``||ws_hat - w||^2`` for them.

Losses (the papers'; weights are flags, 0 turns a term off):
* ``l2``      mean squared error of face_pool(G(ws_hat)) and the input (pSp ``l2_lambda`` 1.0);
* ``lpips``   LPIPS-alex when its backbone weights are on disk (``inversion.losses.LPIPS``), else off;
* ``id``      1 - cos of ArcFace IR-SE50 embeddings when ``model_ir_se50.pth`` is on disk, else gankit's
              offline dlib identity network (``inversion.losses.IdentityLoss``), else off;
* ``w_norm``  mean over the batch of ``||ws_hat - latent_avg||_2`` (pSp ``w_norm_lambda``);
* ``latent``  synthetic samples only; not for HyperStyle (its codes come from the frozen W encoder);
* e4e: ``delta``  ``sum_i ||w_i - w_0||_2`` over the active rows (``delta_norm_lambda`` 2e-4), the
  progressive schedule (row i gets its delta from step ``progressive_start + (i-1) * progressive_every``)
  and a latent discriminator (4-layer MLP, LeakyReLU 0.2, non-saturating softplus loss, R1 gamma 10
  every 16 steps, Adam 2e-5) on every row vs real ``w = mapping(z)``.
The log (``log.jsonl``) starts with a line saying which of these are on and why.
ReStyle / HyperStyle: ``iters`` refinement steps per batch, each with its own backward pass, the
reconstruction / codes / offsets detached in between, one optimizer step per batch (ReStyle's coach).
Optimizer: Adam (the references use Ranger, which is not in PyTorch).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .base import EncoderError
from .building import checkpoint_dict, create
from .e4e import E4E
from .hyperstyle import HyperStyle, add_offsets, synthesize_with_offsets
from .restyle import ReStyle


@dataclass
class TrainConfig:
    method: str = "psp"
    steps: int = 1000
    batch: int = 4
    lr: float = 1e-4
    input_size: int = 256
    widths: Optional[List[int]] = None       # trunk widths per stage (None: IR-SE50 / ResNet-34)
    depths: Optional[List[int]] = None
    head_convs: Optional[List[int]] = None  # convs per map2style head (None: down to 1x1)
    backbone: str = "ir_se"                 # ReStyle: ir_se | resnet34
    variant: str = "psp"                    # ReStyle: psp | e4e rows
    iters: int = 5                          # ReStyle / HyperStyle refinement steps per batch
    synthetic_fraction: float = 0.5         # share of each batch drawn from G (1.0 without --data)
    truncation: float = 1.0                 # truncation of the synthetic samples
    l2_lambda: float = 1.0
    lpips_lambda: float = 0.8
    id_lambda: float = 0.1
    w_norm_lambda: float = 0.0
    latent_lambda: float = 1.0
    delta_norm_lambda: float = 2e-4
    w_discriminator_lambda: float = 0.1
    w_discriminator_lr: float = 2e-5
    r1: float = 10.0
    d_reg_every: int = 16
    progressive_start: int = 20000
    progressive_every: int = 2000
    snapshot_every: int = 1000
    log_every: int = 1
    seed: int = 0
    w_encoder: Optional[str] = None         # HyperStyle: a trained W encoder (pSp layout, WEncoder)
    hyper: Dict[str, int] = field(default_factory=dict)   # HyperStyle sizes: z_dim, hyper_hidden, ...


class LatentCodesDiscriminator(nn.Module):
    """e4e's latent discriminator: ``n_layers`` linear layers (LeakyReLU 0.2) then a logit per w."""

    def __init__(self, dim: int, n_layers: int = 4):
        super().__init__()
        layers = []
        for _ in range(n_layers - 1):
            layers += [nn.Linear(dim, dim), nn.LeakyReLU(0.2)]
        layers.append(nn.Linear(dim, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, w):
        return self.mlp(w)


def progressive_stage(step: int, n_styles: int, start: int, every: int) -> int:
    """Rows with a delta at ``step``: 0 before ``start``, then one more every ``every`` steps."""
    if step < start:
        return 0
    return min(n_styles - 1, 1 + (step - start) // max(1, every))


class Losses(nn.Module):
    """The reconstruction terms; ``report`` says which are active (written to the log)."""

    def __init__(self, cfg: TrainConfig, device):
        super().__init__()
        self.cfg, self.report = cfg, {}
        self.lpips = self.id = None
        if cfg.lpips_lambda > 0:
            try:
                from inversion.losses import LPIPS
                self.lpips = LPIPS("alex").to(device)
                self.report["lpips"] = "alex"
            except (OSError, ImportError, ValueError) as e:
                self.report["lpips"] = f"off: {str(e).splitlines()[0]}"
        else:
            self.report["lpips"] = "off: lpips_lambda = 0"
        if cfg.id_lambda > 0:
            try:
                from inversion.arcface import ArcFaceIDLoss
                self.id = ArcFaceIDLoss().to(device)
                self.report["id"] = "arcface ir-se50"
            except (OSError, ValueError) as e:
                why = str(e).splitlines()[0]
                try:
                    from inversion.losses import IdentityLoss
                    self.id = IdentityLoss(alignment="psp").to(device)
                    self.report["id"] = f"dlib identity network (offline; ArcFace unavailable: {why})"
                except (OSError, ValueError, ImportError) as e2:
                    self.report["id"] = f"off: ArcFace unavailable ({why}); dlib unavailable ({str(e2).splitlines()[0]})"
        else:
            self.report["id"] = "off: id_lambda = 0"

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> Dict[str, torch.Tensor]:
        out = {}
        if self.cfg.l2_lambda > 0:
            out["l2"] = F.mse_loss(y_hat, y) * self.cfg.l2_lambda
        if self.lpips is not None:
            out["lpips"] = self.lpips.model(y_hat, y).mean() * self.cfg.lpips_lambda
        if self.id is not None:
            out["id"] = self.id(y_hat, y) * self.cfg.id_lambda
        return out


class Trainer:
    """Owns the model, optimizers, data and step counter; ``run()`` trains to ``cfg.steps``."""

    def __init__(self, G: nn.Module, cfg: TrainConfig, out_dir, data: Optional[str] = None, device="cpu",
                 resume: Optional[str] = None, progress: bool = True):
        if cfg.method not in ("psp", "e4e", "restyle", "hyperstyle"):
            raise EncoderError(f"--type must be psp, e4e, restyle or hyperstyle, got {cfg.method!r}")
        if cfg.steps < 1 or cfg.batch < 1:
            raise EncoderError("steps and batch must be >= 1")
        self.cfg, self.device, self.progress = cfg, torch.device(device), progress
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(cfg.seed)
        self.data = None
        if data is not None:
            from generators.dataset import open_dataset
            self.data = open_dataset(data, resolution=cfg.input_size, progress=False).images   # uint8 [N, 3, s, s]
        if self.data is None:
            cfg.synthetic_fraction = 1.0
        if not 0 <= cfg.synthetic_fraction <= 1:
            raise EncoderError(f"synthetic_fraction must be in [0, 1], got {cfg.synthetic_fraction}")
        self.step = 0
        if resume is not None:
            from .loading import _read, load
            self.model = load(resume, device=self.device)
            state = _read(Path(resume))
            self.step = int(state.get("global_step", 0))
        else:
            w_enc = latent_avg = None
            if cfg.method == "hyperstyle":
                if cfg.w_encoder is None:
                    raise EncoderError("HyperStyle training starts from a trained encoder: pass --w-encoder PATH "
                                       "(a WEncoder, pSp or e4e checkpoint)")
                from .loading import load
                w_model = load(cfg.w_encoder)
                if type(w_model).__name__ not in ("PSP", "E4E"):
                    raise EncoderError(f"{cfg.w_encoder} is not a WEncoder, pSp or e4e checkpoint")
                if w_model.G.num_ws != G.num_ws or w_model.G.w_dim != G.w_dim:
                    raise EncoderError(f"{cfg.w_encoder} was trained for another generator shape")
                w_enc = w_model.encoder
                latent_avg = w_model.latent_avg.detach().clone()   # codes = w_encoder(x) + its latent_avg
            self.model = create(cfg.method, G, backbone=cfg.backbone, variant=cfg.variant, widths=cfg.widths,
                                depths=cfg.depths, input_size=cfg.input_size, w_encoder=w_enc,
                                head_convs=cfg.head_convs, latent_avg=latent_avg, **cfg.hyper)
            state = None
        self.model.to(self.device)
        self.G = self.model.G.eval().requires_grad_(False)
        net = self.trainable
        net.train()
        if isinstance(self.model, HyperStyle):
            self.model.w_encoder.eval().requires_grad_(False)
        self.opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
        self.disc = self.d_opt = None
        if isinstance(self.model, E4E) and cfg.w_discriminator_lambda > 0:
            self.disc = LatentCodesDiscriminator(self.G.w_dim).to(self.device)
            self.d_opt = torch.optim.Adam(self.disc.parameters(), lr=cfg.w_discriminator_lr)
        if state is not None:
            if isinstance(state.get("optimizer"), dict):
                self.opt.load_state_dict(state["optimizer"])
            if self.disc is not None and isinstance(state.get("discriminator_state_dict"), dict):
                self.disc.load_state_dict(state["discriminator_state_dict"])
                self.d_opt.load_state_dict(state["discriminator_optimizer_state_dict"])
        self.losses = Losses(cfg, self.device)
        self.log_path = self.out / "log.jsonl"

    @property
    def trainable(self) -> nn.Module:
        return self.model.hypernet if isinstance(self.model, HyperStyle) else self.model.encoder

    # -------------------------------------------------------------------------------- data

    def batch(self):
        """(images [B, 3, s, s] in [-1, 1], true ws or None per sample [B, num_ws, w_dim], mask of synthetic)."""
        B, s = self.cfg.batch, self.cfg.input_size
        n_syn = B if self.data is None else int(round(B * self.cfg.synthetic_fraction))
        imgs, ws_true = [], None
        if n_syn < B:
            idx = torch.randint(0, self.data.shape[0], (B - n_syn,))
            real = (self.data[idx].float() / 255 - 0.5) / 0.5
            flip = torch.rand(real.shape[0]) < 0.5
            real[flip] = real[flip].flip(-1)
            imgs.append(real.to(self.device))
        if n_syn > 0:
            with torch.no_grad():
                z = torch.randn(n_syn, self.G.z_dim, device=self.device)
                c = torch.zeros(n_syn, getattr(self.G, "c_dim", 0), device=self.device)
                ws_true = self.G.mapping(z, c, truncation_psi=self.cfg.truncation)
                imgs.append(self.model.pool(self.G.synthesis(ws_true, noise_mode="const")))
        return torch.cat(imgs), ws_true, B - n_syn

    # -------------------------------------------------------------------------------- losses

    def _code_terms(self, ws_hat, ws_true, n_real) -> Dict[str, torch.Tensor]:
        cfg, out = self.cfg, {}
        if cfg.w_norm_lambda > 0:
            out["w_norm"] = (ws_hat - self.model.latent_avg[None]).norm(dim=(1, 2)).mean() * cfg.w_norm_lambda
        if cfg.latent_lambda > 0 and ws_true is not None and not isinstance(self.model, HyperStyle):
            out["latent"] = F.mse_loss(ws_hat[n_real:], ws_true) * cfg.latent_lambda
        if isinstance(self.model, E4E):
            stage = self.model.encoder.progressive_stage
            if cfg.delta_norm_lambda > 0 and stage > 0:
                d = ws_hat[:, 1:stage + 1] - ws_hat[:, :1]
                out["delta"] = d.norm(dim=2).sum(dim=1).mean() * cfg.delta_norm_lambda
            if self.disc is not None:
                out["w_adv"] = F.softplus(-self.disc(ws_hat.reshape(-1, ws_hat.shape[-1]))).mean() \
                    * cfg.w_discriminator_lambda
        return out

    def _disc_step(self, ws_hat: torch.Tensor) -> Dict[str, float]:
        """Latent discriminator: real w = mapping(z) vs every predicted row; R1 every d_reg_every steps."""
        n = ws_hat.shape[0] * ws_hat.shape[1]
        with torch.no_grad():
            z = torch.randn(n, self.G.z_dim, device=self.device)
            real = self.G.mapping(z, torch.zeros(n, getattr(self.G, "c_dim", 0), device=self.device))[:, 0]
        fake = ws_hat.detach().reshape(n, -1)
        loss = F.softplus(-self.disc(real)).mean() + F.softplus(self.disc(fake)).mean()
        out = {"d_loss": float(loss.detach())}
        if self.cfg.r1 > 0 and self.step % self.cfg.d_reg_every == 0:
            real = real.detach().requires_grad_(True)
            g, = torch.autograd.grad(self.disc(real).sum(), real, create_graph=True)
            r1 = g.square().sum(dim=1).mean() * (self.cfg.r1 / 2) * self.cfg.d_reg_every
            loss = loss + r1
            out["r1"] = float(r1.detach())
        self.d_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.d_opt.step()
        return out

    # -------------------------------------------------------------------------------- steps

    def train_step(self) -> Dict[str, float]:
        x, ws_true, n_real = self.batch()
        m, logs = self.model, {}
        self.opt.zero_grad(set_to_none=True)
        if isinstance(m, ReStyle):
            y_in, codes = m.average_image().detach(), None
            for t in range(self.cfg.iters):
                _, codes = m.step(x, y_in, codes)
                y = m.synthesize(codes)
                terms = {**self.losses(m.pool(y), x), **self._code_terms(codes, ws_true, n_real)}
                loss = sum(terms.values())
                loss.backward()
                codes, y_in = codes.detach(), m.pool(y).detach()
            ws_hat = codes
        elif isinstance(m, HyperStyle):
            with torch.no_grad():
                codes = m.initial_codes(x)
                y_in = m.pool(m.synthesize(codes))
            acc = None
            for t in range(self.cfg.iters):
                _, acc = m.step(x, y_in, acc)
                y = synthesize_with_offsets(self.G, codes, acc)
                terms = self.losses(m.pool(y), x)
                loss = sum(terms.values())
                loss.backward()
                acc = [None if a is None else a.detach() for a in acc]
                y_in = m.pool(y).detach()
            ws_hat = codes
        else:
            if isinstance(m, E4E):
                m.encoder.progressive_stage = progressive_stage(self.step, self.G.num_ws, self.cfg.progressive_start,
                                                                self.cfg.progressive_every)
                logs["stage"] = m.encoder.progressive_stage
            ws_hat = m.encode(x)
            y = m.synthesize(ws_hat)
            terms = {**self.losses(m.pool(y), x), **self._code_terms(ws_hat, ws_true, n_real)}
            loss = sum(terms.values())
            loss.backward()
        self.opt.step()
        if self.disc is not None:
            logs.update(self._disc_step(ws_hat))
        logs.update({k: float(v.detach()) for k, v in terms.items()})
        logs["loss"] = float(loss.detach())
        self.step += 1
        return logs

    def snapshot(self, name: Optional[str] = None) -> Path:
        from .building import save
        extra = {"global_step": self.step, "optimizer": self.opt.state_dict()}
        if self.disc is not None:
            extra["discriminator_state_dict"] = self.disc.state_dict()
            extra["discriminator_optimizer_state_dict"] = self.d_opt.state_dict()
        path = self.out / (name or f"snapshot-{self.step:06d}.pt")
        cfg = {k: v for k, v in asdict(self.cfg).items() if v is not None}
        save(self.model, path, opts=dict(cfg, training="gankit train encoder"), extra=extra)
        return path

    def _log(self, rec: dict) -> None:
        with open(self.log_path, "a") as f:
            f.write(json.dumps(rec) + "\n")

    def run(self) -> List[dict]:
        from tqdm import tqdm
        cfg = self.cfg
        self._log({"event": "start", "step": self.step, "method": cfg.method, "losses": self.losses.report,
                   "config": {k: v for k, v in asdict(cfg).items()}, "time": time.time()})
        history = []
        bar = tqdm(total=cfg.steps, initial=min(self.step, cfg.steps), desc=f"train {cfg.method}", unit="step",
                   disable=not self.progress)
        while self.step < cfg.steps:
            logs = self.train_step()
            if not math.isfinite(logs["loss"]):
                raise EncoderError(f"loss became {logs['loss']} at step {self.step}; lower --lr")
            history.append(logs)
            bar.update(1)
            bar.set_postfix(loss=f"{logs['loss']:.4f}")
            if self.step % max(1, cfg.log_every) == 0:
                self._log(dict(step=self.step, **logs))
            if cfg.snapshot_every > 0 and self.step % cfg.snapshot_every == 0:
                self.snapshot()
        bar.close()
        final = self.snapshot("final.pt")
        self._log({"event": "end", "step": self.step, "checkpoint": str(final)})
        return history


def train(G: nn.Module, cfg: TrainConfig, out_dir, data: Optional[str] = None, device="cpu",
          resume: Optional[str] = None, progress: bool = True) -> List[dict]:
    """Train an encoder (see module docstring); returns the per-step logs; writes snapshots and log.jsonl."""
    return Trainer(G, cfg, out_dir, data=data, device=device, resume=resume, progress=progress).run()
