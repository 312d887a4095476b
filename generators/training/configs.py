"""Training presets: network kwargs and hyper-parameters per config, with NVIDIA's rules of thumb.

``stylegan2``   StyleGAN2(-ADA): 8-layer mapping (2 below 128 px, ADA's 'auto'), skip G, resnet D,
                lr 0.0025, R1 gamma 0.0002 * res^2 / batch, path length 2, style mixing 0.9.
``stylegan3-t`` / ``stylegan3-r``: StyleGAN3 G (2-layer mapping), StyleGAN2 D, G lr 0.0025, D lr 0.002,
                no path length, no mixing, D blur from sigma 10 fading over 200 kimg (per 32 batch).
``stylegan1``   progressive growing with fade-in, non-saturating + R1 (gamma 10) or WGAN-GP.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Dict, Optional

CONFIGS = ("stylegan2", "stylegan3-t", "stylegan3-r", "stylegan1")


@dataclass
class TrainOptions:
    """Everything a run depends on; saved in every snapshot so ``--resume`` restores it."""
    data: str = ""
    out: str = "runs/train"
    config: str = "stylegan2"
    resolution: int = 64
    batch: int = 32
    batch_gpu: Optional[int] = None          # per-process round size (default: batch / processes)
    kimg: float = 1000.0
    snap_kimg: float = 50.0
    seed: int = 0
    mirror: bool = False
    labels: Optional[str] = None             # CSV of labels -> conditional model
    use_labels: bool = False                 # the dataset's own dataset.json labels -> conditional model
    label_columns: Optional[list] = None
    max_images: Optional[int] = None
    # networks
    z_dim: int = 512
    w_dim: int = 512
    map_layers: Optional[int] = None
    cbase: int = 16384
    cmax: int = 512
    channels: Optional[Dict[int, int]] = None   # explicit width per resolution (overrides cbase/cmax)
    fp16: Optional[bool] = None                  # default: on for CUDA
    # optimization
    glr: Optional[float] = None
    dlr: Optional[float] = None
    gamma: Optional[float] = None
    pl_weight: Optional[float] = None
    style_mixing: Optional[float] = None
    ema_kimg: Optional[float] = None
    ema_rampup: Optional[float] = 0.05
    g_reg_interval: int = 4
    d_reg_interval: int = 16
    mbstd_group: int = 4
    # augmentation
    aug: str = "ada"                         # ada | fixed | noaug
    p: float = 0.0
    target: float = 0.6
    ada_kimg: float = 100.0
    ada_interval: int = 4
    # StyleGAN3
    blur_sigma: float = 10.0
    blur_fade_kimg: Optional[float] = None
    # StyleGAN1
    loss: str = "r1"                         # r1 | wgan-gp
    phase_kimg: float = 100.0                # kimg per fade-in and per stable phase
    # bookkeeping
    log_every: int = 10                      # steps between JSON-lines records
    grid: int = 8                            # sample grid is grid x grid
    deterministic: bool = False
    device: str = "auto"
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["channels"] is not None:
            d["channels"] = {str(k): int(v) for k, v in d["channels"].items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainOptions":
        d = dict(d)
        if d.get("channels") is not None:
            d["channels"] = {int(k): int(v) for k, v in d["channels"].items()}
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


def resolved(o: TrainOptions) -> TrainOptions:
    """Fill the config-dependent defaults (None fields) in a copy."""
    if o.config not in CONFIGS:
        raise ValueError(f"unknown config {o.config!r}; choose from {', '.join(CONFIGS)}")
    if o.resolution < 4 or o.resolution & (o.resolution - 1):
        raise ValueError(f"resolution must be a power of two >= 4, not {o.resolution}")
    r = TrainOptions.from_dict(o.to_dict())
    sg3 = r.config.startswith("stylegan3")
    if r.map_layers is None:
        r.map_layers = 2 if (sg3 or r.resolution < 128) else 8
    if r.glr is None:
        r.glr = 0.001 if r.config == "stylegan1" else 0.0025
    if r.dlr is None:
        r.dlr = 0.001 if r.config == "stylegan1" else (0.002 if sg3 else 0.0025)
    if r.gamma is None:
        r.gamma = 10.0 if r.config == "stylegan1" else 0.0002 * r.resolution ** 2 / r.batch
    if r.pl_weight is None:
        r.pl_weight = 2.0 if r.config == "stylegan2" else 0.0
    if r.style_mixing is None:
        r.style_mixing = 0.0 if sg3 else 0.9
    if r.ema_kimg is None:
        r.ema_kimg = r.batch * 10 / 32
    if r.blur_fade_kimg is None:
        r.blur_fade_kimg = r.batch * 200 / 32 if sg3 else 0.0
    if r.aug not in ("ada", "fixed", "noaug"):
        raise ValueError(f"unknown augmentation mode {r.aug!r} (ada, fixed, noaug)")
    return r


def channel_table(o: TrainOptions) -> Dict[int, int]:
    res = [2 ** i for i in range(2, o.resolution.bit_length())]
    if o.channels is not None:
        return {int(k): int(v) for k, v in o.channels.items()}
    return {r: min(o.cbase // r, o.cmax) for r in res}


def network_kwargs(o: TrainOptions, c_dim: int, img_channels: int, cuda: bool):
    """(G kind, G kwargs, D kind, D kwargs) for a resolved config."""
    fp16 = cuda if o.fp16 is None else o.fp16
    ch = channel_table(o)
    common = dict(z_dim=o.z_dim, c_dim=c_dim, w_dim=o.w_dim, img_resolution=o.resolution, img_channels=img_channels)
    if o.config == "stylegan1":
        g = dict(common, mapping_kwargs=dict(num_layers=o.map_layers),
                 synthesis_kwargs=dict(channels={str(k): v for k, v in ch.items()}))
        d = dict(c_dim=c_dim, img_resolution=o.resolution, img_channels=img_channels,
                 channels={str(k): v for k, v in ch.items()}, mbstd_group_size=o.mbstd_group)
        return "stylegan1.Generator", g, "stylegan1.Discriminator", d
    d = dict(c_dim=c_dim, img_resolution=o.resolution, img_channels=img_channels, architecture="resnet",
             channels={str(k): v for k, v in ch.items()}, num_fp16_res=4 if fp16 else 0,
             conv_clamp=256 if fp16 else None, mbstd_group_size=o.mbstd_group)
    if o.config == "stylegan2":
        g = dict(common, mapping_kwargs=dict(num_layers=o.map_layers),
                 synthesis_kwargs=dict(channels={str(k): v for k, v in ch.items()}, architecture="skip",
                                       num_fp16_res=4 if fp16 else 0, conv_clamp=256 if fp16 else None))
        return "stylegan2.Generator", g, "stylegan2.Discriminator", d
    r_variant = o.config == "stylegan3-r"
    base, cmax = (o.cbase * 2, o.cmax * 2) if r_variant else (o.cbase, o.cmax)
    g = dict(common, mapping_kwargs=dict(num_layers=o.map_layers),
             synthesis_kwargs=dict(channel_base=base, channel_max=cmax, conv_kernel=1 if r_variant else 3,
                                   use_radial_filters=r_variant, num_fp16_res=4 if fp16 else 0,
                                   conv_clamp=256 if fp16 else None))
    return "stylegan3.Generator", g, "stylegan2.Discriminator", d
