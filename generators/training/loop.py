"""The training loop: one loop for StyleGAN1 (progressive), StyleGAN2(+ADA) and StyleGAN3.

Structure (NVIDIA's): each step processes one global batch of ``batch`` images in *rounds* of
``batch_gpu`` images. Round ``g`` of a step always covers the same images and reseeds torch's RNG
from ``(seed, step, phase, g)`` before running, so latents, noise, style-mixing cut-offs and
augmentations of a round do not depend on which process runs it: one process running two rounds
and two processes running one each compute the same gradients. Gradients of all rounds are summed,
all-reduced across processes (``torch.distributed``; gloo on CPU, nccl on GPU) and divided by the
number of rounds, so each optimizer step sees the mean over the global batch.

Multi-process runs start with ``torchrun --nproc_per_node N -m cli.main train generator ...``.
Gradient averaging is done on one flat buffer per phase rather than through
``DistributedDataParallel``'s bucket hooks: the R1 and path-length penalties differentiate through
``autograd.grad(create_graph=True)``, which DDP's reducer does not support, and each phase trains
only one of the two networks. Parameters are broadcast from rank 0 at start.

Snapshots (every ``snap_kimg`` and at the end), written atomically into ``out``:
  ``network-snapshot-KKKKKK.safetensors``  G, D and G_ema in gankit's format (``generators.load``)
  ``training-state-KKKKKK.pt``             everything ``--resume`` needs (weights, optimizers, ADA
                                           p and statistics, path-length mean, counters, RNG states)
  ``samples-KKKKKK.png``                   a grid of G_ema samples from fixed latents
  ``log.jsonl``                            losses, p, r_t, kimg/s, s/kimg, memory, every ``log_every`` steps
"""
from __future__ import annotations

import copy
import json
import math
import os
import random
import re
import resource
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from torch import nn

from .. import loading
from ..dataset import open_dataset
from ..formats.atomic import atomic_path, atomic_torch_save
from ..images import grid as make_grid, save_image, to_uint8
from ..spec import NetworkSpec
from .augment import AdaptiveP, AugmentPipe
from .configs import TrainOptions, network_kwargs, resolved
from .loss import ProgressiveLoss, StyleGAN2Loss

PHASES = ("Gmain", "Greg", "Dmain", "Dreg")


class TrainingError(RuntimeError):
    """A run that cannot start or continue (bad data, mismatched resume state, non-finite losses)."""


# ---------------------------------------------------------------------------------------- processes

class Dist:
    """Process group facts; a single process when not launched by torchrun."""

    def __init__(self, device: torch.device):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.active = self.world > 1
        self.device = device
        if self.active and not torch.distributed.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            if device.type == "cuda":
                torch.cuda.set_device(device)             # one GPU per process (LOCAL_RANK)
            torch.distributed.init_process_group(backend=backend)

    def all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        """Sum over processes, returned on ``t``'s device (nccl only reduces CUDA tensors, so small CPU
        statistics make a round trip through the training device)."""
        if self.active:
            out = t.to(self.device, copy=True)
            torch.distributed.all_reduce(out)
            t = out.to(t.device)
        return t

    def broadcast_module(self, m: nn.Module) -> None:
        if self.active:
            for t in list(m.parameters()) + list(m.buffers()):
                torch.distributed.broadcast(t.data, src=0)

    def barrier(self):
        if self.active:
            torch.distributed.barrier()


def _pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("cpu")
    return torch.device(name)


def round_seed(seed: int, step: int, phase: int, rnd: int) -> int:
    """A well-mixed 63-bit seed for one round of one phase of one step."""
    return int(np.random.SeedSequence([seed, step, phase, rnd]).generate_state(2, np.uint64)[0] >> np.uint64(1))


# ---------------------------------------------------------------------------------------- helpers

def _build(kind: str, kwargs: dict, device) -> nn.Module:
    return loading._network_classes()[kind](**copy.deepcopy(kwargs)).to(device)


def _batch_indices(n_data: int, seed: int, start: int, count: int) -> torch.Tensor:
    """Samples ``start .. start+count`` of an endless stream of epoch permutations (resumable)."""
    out = []
    pos = start
    while len(out) < count:
        epoch, off = divmod(pos, n_data)
        perm = torch.randperm(n_data, generator=torch.Generator().manual_seed(seed * 100003 + epoch))
        take = min(count - len(out), n_data - off)
        out.extend(perm[off:off + take].tolist())
        pos += take
    return torch.tensor(out, dtype=torch.int64)


def _progressive_schedule(nimg: int, phase_kimg: float, max_step: int) -> Tuple[int, float]:
    """StyleGAN1 growth: stage 0 trains 4x4; each later resolution fades in over one phase, then trains."""
    stage, frac = divmod(nimg / (phase_kimg * 1000), 1)
    stage = int(stage)
    step = (stage + 1) // 2
    if step > max_step:
        return max_step, 1.0
    alpha = frac if (stage % 2 == 1) else 1.0
    return step, float(alpha)


def _resize_reals(img: torch.Tensor, step: int, alpha: float) -> torch.Tensor:
    """Reals at 4*2**step px; during fade-in blended with the previous resolution, as G's output is."""
    res = 4 * 2 ** step
    x = torch.nn.functional.adaptive_avg_pool2d(img, res) if img.shape[-1] != res else img
    if alpha < 1 and step > 0:
        low = torch.nn.functional.avg_pool2d(x, 2)
        low = torch.nn.functional.interpolate(low, scale_factor=2, mode="nearest")
        x = low.lerp(x, alpha)
    return x


def _memory() -> dict:
    out = {"rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda_gb"] = torch.cuda.max_memory_allocated() / 2 ** 30
    return out


def _rng_state() -> dict:
    npst = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": (npst[0], torch.from_numpy(npst[1].astype(np.int64)),
                                                      int(npst[2]), int(npst[3]), float(npst[4])),
            "python": random.getstate()}


def _set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    n = s["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    random.setstate(s["python"])


def snapshot_tag(nimg: int) -> str:
    """``KKKKKK`` (kimg) or ``KKKKKK-III`` when the snapshot falls between whole kimg."""
    kimg, rest = divmod(int(nimg), 1000)
    return f"{kimg:06d}" + (f"-{rest:03d}" if rest else "")


def _tag_key(p: Path):
    m = re.search(r"-(\d+)(?:-(\d+))?\.", p.name)
    return (int(m.group(1)), int(m.group(2) or 0)) if m else (-1, 0)


def latest_state(path: Union[str, Path]) -> Path:
    """``path`` if it is a training-state file, else the newest ``training-state-*.pt`` in the folder."""
    path = Path(path)
    if path.is_file():
        return path
    states = sorted(path.glob("training-state-*.pt"), key=_tag_key) if path.is_dir() else []
    if not states:
        raise TrainingError(f"{path}: no training-state-*.pt to resume from")
    return states[-1]


# ---------------------------------------------------------------------------------------- trainer

class Trainer:
    """Holds networks, optimizers and counters; ``run()`` trains to ``kimg``."""

    def __init__(self, opts: TrainOptions, resume: Union[str, Path, None] = None, progress: bool = True,
                 dataset=None):
        state = None
        if resume is not None:
            from ..formats import torch_load_safe
            path = latest_state(resume)
            try:
                state = torch_load_safe(path)
            except Exception as e:                                   # noqa: BLE001 - one line for the user
                raise TrainingError(f"{path}: not a readable training state ({str(e).splitlines()[0]})") from None
            if not isinstance(state, dict) or "options" not in state:
                raise TrainingError(f"{path}: not a gankit training state")
            saved = TrainOptions.from_dict(state["options"])
            # A resumed run keeps its recorded settings; only the length, snapshot cadence, output, data
            # location, device and per-process round size (hardware facts) may change.
            for k in ("kimg", "snap_kimg", "out", "data", "log_every", "device", "batch_gpu"):
                setattr(saved, k, getattr(opts, k))
            opts = saved
        self.opts = o = resolved(opts)
        self.device = _pick_device(o.device)
        self.dist = Dist(self.device)
        self.progress = progress and self.dist.rank == 0
        if o.deterministic:
            torch.use_deterministic_algorithms(True)
        torch.manual_seed(o.seed)
        np.random.seed(o.seed % 2 ** 32)
        random.seed(o.seed)

        self.data = dataset if dataset is not None else open_dataset(
            o.data, resolution=o.resolution, labels=o.labels, label_columns=o.label_columns,
            use_labels=o.use_labels, xflip=o.mirror,
            max_images=o.max_images, progress=self.progress)
        if self.data.resolution != o.resolution:
            raise TrainingError(f"dataset resolution {self.data.resolution} != --resolution {o.resolution}")
        world = self.dist.world
        if o.batch_gpu is None:
            o.batch_gpu = o.batch // world
        if o.batch_gpu < 1 or o.batch % (o.batch_gpu * world):
            raise TrainingError(f"batch {o.batch} must be a multiple of batch_gpu {o.batch_gpu} x {world} processes")
        self.rounds = o.batch // (o.batch_gpu * world)            # rounds per process per phase

        g_kind, g_kw, d_kind, d_kw = network_kwargs(o, self.data.c_dim, self.data.num_channels,
                                                    self.device.type == "cuda")
        self.kinds = (g_kind, d_kind)
        self.G = _build(g_kind, g_kw, self.device).train().requires_grad_(False)
        self.D = _build(d_kind, d_kw, self.device).train().requires_grad_(False)
        self.G_ema = copy.deepcopy(self.G).eval()
        self.aug = None
        self.ada = None
        if o.aug != "noaug" and o.config != "stylegan1":
            self.aug = AugmentPipe(p=o.p).to(self.device)
            if o.aug == "ada":
                self.ada = AdaptiveP(target=o.target, interval=o.ada_interval, kimg=o.ada_kimg)
        if o.config == "stylegan1":
            self.loss = ProgressiveLoss(self.G, self.D, kind=o.loss, r1_gamma=o.gamma, style_mixing=o.style_mixing)
            self.max_step = int(math.log2(o.resolution)) - 2
        else:
            self.loss = StyleGAN2Loss(self.G, self.D, self.aug, r1_gamma=o.gamma, style_mixing=o.style_mixing,
                                      pl_weight=o.pl_weight, blur_init_sigma=o.blur_sigma if o.config.startswith(
                                          "stylegan3") else 0.0, blur_fade_kimg=o.blur_fade_kimg)
            self.loss.ada_stats = self.ada
        # Lazy regularization rescales lr and betas (StyleGAN2 appendix B).
        self.reg_interval = {"G": o.g_reg_interval if (o.pl_weight > 0 and o.config != "stylegan1") else 0,
                             "D": o.d_reg_interval if o.config != "stylegan1" else 0}
        self.opt = {}
        for name, net, lr in (("G", self.G, o.glr), ("D", self.D, o.dlr)):
            ratio = self.reg_interval[name] / (self.reg_interval[name] + 1) if self.reg_interval[name] else 1.0
            self.opt[name] = torch.optim.Adam(net.parameters(), lr=lr * ratio, betas=(0.0, 0.99 ** ratio), eps=1e-8)
        self.cur_nimg = 0
        self.step = 0
        self.out = Path(o.out)
        grid_gen = torch.Generator().manual_seed(o.seed + 123)
        self.grid_z = torch.randn([o.grid * o.grid, o.z_dim], generator=grid_gen)
        self.grid_c = self._random_labels(o.grid * o.grid, grid_gen)
        if state is not None:
            self._load_state(state)
        else:
            self.dist.broadcast_module(self.G)
            self.dist.broadcast_module(self.D)
            self.G_ema.load_state_dict(self.G.state_dict())

    # ------------------------------------------------------------------ state
    def _random_labels(self, n: int, generator=None) -> torch.Tensor:
        if self.data.c_dim == 0:
            return torch.zeros([n, 0])
        idx = torch.randint(self.data.num_raw, [n], generator=generator)
        return self.data.labels[idx].clone()

    def state_dict(self, ada_state: Optional[dict] = None) -> dict:
        """Everything a resume needs; ``ada_state``: the controller's state with sums over all processes."""
        def cpu(sd):
            return {k: v.detach().cpu().clone() for k, v in sd.items()}
        return {"format": "gankit-training-state", "options": self.opts.to_dict(), "kinds": list(self.kinds),
                "G": cpu(self.G.state_dict()), "D": cpu(self.D.state_dict()), "G_ema": cpu(self.G_ema.state_dict()),
                "opt_G": self.opt["G"].state_dict(), "opt_D": self.opt["D"].state_dict(),
                "augment_p": None if self.aug is None else float(self.aug.p),
                "ada": None if self.ada is None else (ada_state or self.ada.state_dict()),
                "loss": self.loss.state_dict(),
                "cur_nimg": self.cur_nimg, "step": self.step, "rng": _rng_state()}

    def _load_state(self, s: dict) -> None:
        try:
            for name in ("G", "D", "G_ema"):
                getattr(self, name).load_state_dict(s[name])
            self.opt["G"].load_state_dict(s["opt_G"])
            self.opt["D"].load_state_dict(s["opt_D"])
        except (KeyError, RuntimeError, ValueError) as e:
            raise TrainingError(f"training state does not match this configuration: {str(e).splitlines()[0]}") \
                from None
        if self.aug is not None and s.get("augment_p") is not None:
            self.aug.p.fill_(s["augment_p"])
        if self.ada is not None and s.get("ada") is not None:
            self.ada.load_state_dict(s["ada"])
            if self.dist.rank != 0:                 # the saved partial sums cover all processes: count once
                self.ada.sum, self.ada.count = 0.0, 0
        self.loss.load_state_dict(s.get("loss", {}))
        self.cur_nimg, self.step = int(s["cur_nimg"]), int(s["step"])
        _set_rng_state(s["rng"])

    # ------------------------------------------------------------------ one step
    def _reals(self, idx: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        img, c = self.data.batch(idx)
        img = img.to(self.device, torch.float32) / 127.5 - 1                       # [B, C, R, R]
        return img, c.to(self.device)

    def _phases(self) -> List[Tuple[str, int, str]]:
        """(phase, phase id, network) pairs this step runs."""
        out = [("Gmain", 0, "G")]
        if self.reg_interval["G"] and self.step % self.reg_interval["G"] == 0:
            out.append(("Greg", 1, "G"))
        out.append(("Dmain", 2, "D"))
        if self.reg_interval["D"] and self.step % self.reg_interval["D"] == 0:
            out.append(("Dreg", 3, "D"))
        return out

    def train_step(self) -> dict:
        o = self.opts
        world, rank = self.dist.world, self.dist.rank
        idx = _batch_indices(len(self.data), o.seed, self.cur_nimg, o.batch)            # global batch
        real_all, c_all = self._reals(idx)
        if o.config == "stylegan1":
            self.loss.step, self.loss.alpha = _progressive_schedule(self.cur_nimg, o.phase_kimg, self.max_step)
            real_all = _resize_reals(real_all, self.loss.step, self.loss.alpha)
        stats: Dict[str, float] = {}
        for phase, pid, net_name in self._phases():
            net = self.G if net_name == "G" else self.D
            net.requires_grad_(True)
            opt = self.opt[net_name]
            opt.zero_grad(set_to_none=True)
            gain = self.reg_interval[net_name] if phase.endswith("reg") else 1
            for k in range(self.rounds):
                g = k * world + rank                                                     # global round index
                sl = slice(g * o.batch_gpu, (g + 1) * o.batch_gpu)
                torch.manual_seed(round_seed(o.seed, self.step, pid, g))
                gen_z = torch.randn([o.batch_gpu, o.z_dim], device=self.device)
                gen_c = self._random_labels(o.batch_gpu).to(self.device)
                s = self.loss.accumulate(phase, real_all[sl], c_all[sl], gen_z, gen_c, gain, self.cur_nimg)
                for key, v in s.items():
                    stats[key] = stats.get(key, 0.0) + v / self.rounds
            self.loss.end_phase(phase, self.dist.all_reduce if self.dist.active else None)
            params = [p for p in net.parameters() if p.grad is not None]
            if params:
                flat = torch.cat([p.grad.flatten() for p in params])
                flat = self.dist.all_reduce(flat) / (self.rounds * world)
                flat = torch.nan_to_num(flat, nan=0, posinf=1e5, neginf=-1e5)
                for p, gr in zip(params, flat.split([p.numel() for p in params])):
                    p.grad.copy_(gr.view_as(p))
                opt.step()
            net.requires_grad_(False)
        # G EMA with ramp-up.
        ema_nimg = o.ema_kimg * 1000
        if o.ema_rampup:
            ema_nimg = min(ema_nimg, self.cur_nimg * o.ema_rampup)
        beta = 0.5 ** (o.batch / max(ema_nimg, 1e-8))
        with torch.no_grad():
            for pe, p in zip(self.G_ema.parameters(), self.G.parameters()):
                pe.copy_(p.lerp(pe, beta))
            for be, b in zip(self.G_ema.buffers(), self.G.buffers()):
                be.copy_(b)
        if self.ada is not None:
            self.ada.step(self.aug, o.batch, self.dist.all_reduce if self.dist.active else None)
        self.cur_nimg += o.batch
        self.step += 1
        for key, v in list(stats.items()):
            if key.startswith("loss/") and not math.isfinite(v):
                raise TrainingError(f"{key} became {v} at kimg {self.cur_nimg / 1000:.1f}")
        return stats

    # ------------------------------------------------------------------ outputs
    @torch.no_grad()
    def sample_grid(self) -> np.ndarray:
        imgs = []
        kw = {}
        if self.opts.config == "stylegan1":
            kw = dict(step=self.loss.step, alpha=self.loss.alpha)
        for z, c in zip(self.grid_z.split(16), self.grid_c.split(16)):
            img = self.G_ema(z.to(self.device), c.to(self.device), noise_mode="const", **kw)
            imgs.extend(list(to_uint8(img)))
        return make_grid(imgs, cols=self.opts.grid)

    def snapshot(self) -> Path:
        """Write the network snapshot, training state and sample grid (rank 0); returns the state path."""
        tag = snapshot_tag(self.cur_nimg)
        state_path = self.out / f"training-state-{tag}.pt"
        ada_state = None
        if self.ada is not None and self.dist.active:
            # A snapshot can fall inside an ADA interval: save the partial sign sums of every process.
            ada_state = self.ada.state_dict()
            tot = self.dist.all_reduce(torch.tensor([self.ada.sum, float(self.ada.count)], dtype=torch.float64))
            ada_state.update(sum=float(tot[0]), count=int(tot[1]))
        if self.dist.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            meta = {"training": {"config": self.opts.config, "kimg": self.cur_nimg / 1000, "step": self.step,
                                 "seed": self.opts.seed, "data": str(self.opts.data),
                                 "augment_p": None if self.aug is None else float(self.aug.p)}}
            ckpt = loading.checkpoint_from_modules({"G": self.G, "D": self.D, "G_ema": self.G_ema}, meta=meta,
                                                   extras={})
            loading.write(ckpt, self.out / f"network-snapshot-{tag}.safetensors")
            atomic_torch_save(self.state_dict(ada_state), state_path)
            save_image(self.sample_grid(), self.out / f"samples-{tag}.png")
        self.dist.barrier()
        return state_path

    def _log(self, record: dict) -> None:
        if self.dist.rank != 0:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / "log.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def run(self, stop_after_snapshots: Optional[int] = None) -> Path:
        """Train until ``kimg``; returns the last training-state path. ``stop_after_snapshots`` ends the run
        early (tests use it to simulate a killed run)."""
        from tqdm import tqdm
        o = self.opts
        total = int(o.kimg * 1000)
        snap = max(int(o.snap_kimg * 1000), 1)
        if self.dist.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "options.json").write_text(json.dumps(self.opts.to_dict(), indent=2))
        bar = tqdm(total=total, initial=min(self.cur_nimg, total), unit="img", unit_scale=True,
                   disable=not self.progress, desc=f"train {o.config}")
        last = None
        snaps = 0
        t_log, n_log = time.time(), self.cur_nimg
        acc: Dict[str, float] = {}
        n_acc: Dict[str, int] = {}          # per key: regularization phases run only every few steps
        while self.cur_nimg < total:
            before = self.cur_nimg
            stats = self.train_step()
            for k, v in stats.items():
                acc[k] = acc.get(k, 0.0) + v
                n_acc[k] = n_acc.get(k, 0) + 1
            bar.update(self.cur_nimg - before)
            if self.step % o.log_every == 0 or self.cur_nimg >= total:
                dt = time.time() - t_log
                kimg_done = (self.cur_nimg - n_log) / 1000
                rec = {"kimg": self.cur_nimg / 1000, "step": self.step,
                       **{k: v / n_acc[k] for k, v in acc.items()},
                       "augment_p": None if self.aug is None else float(self.aug.p),
                       "ada_rt": None if self.ada is None else self.ada.last_rt,
                       "pl_mean": float(getattr(self.loss, "pl_mean", 0.0)),
                       "kimg_per_s": kimg_done / max(dt, 1e-9), "s_per_kimg": dt / max(kimg_done, 1e-9),
                       "time": time.time(), **_memory()}
                if o.config == "stylegan1":
                    rec.update(grow_step=self.loss.step, alpha=self.loss.alpha)
                elif o.config.startswith("stylegan3"):
                    rec["blur_sigma"] = self.loss.blur_sigma(self.cur_nimg)
                self._log(rec)
                bar.set_postfix(G=f"{rec.get('loss/G', 0):.2f}", D=f"{rec.get('loss/D', 0):.2f}",
                                p=f"{rec['augment_p'] or 0:.2f}")
                t_log, n_log, acc, n_acc = time.time(), self.cur_nimg, {}, {}
            if self.cur_nimg // snap != before // snap or self.cur_nimg >= total:
                last = self.snapshot()
                snaps += 1
                if stop_after_snapshots is not None and snaps >= stop_after_snapshots:
                    break
        bar.close()
        return last if last is not None else self.snapshot()


def train(opts: TrainOptions, resume=None, progress: bool = True) -> Path:
    """Train a generator as ``opts`` says (resuming from a state file or run folder); returns the last state."""
    return Trainer(opts, resume=resume, progress=progress).run()
