"""Reader for rosinality's StyleGAN1 checkpoints (``style-based-gan-pytorch``).

Accepted forms (already ``torch.load``-ed): the train.py checkpoint ``{generator,
discriminator, g_optimizer, d_optimizer, g_running}`` (any subset of the three networks) and a
bare state dict of a ``StyledGenerator`` (``generator.progression.*`` / ``style.*`` keys) or a
``Discriminator``. ``g_running`` becomes ``G_ema``, ``generator`` ``G``, ``discriminator``
``D``; optimizer states are dropped. Everything is read from tensor shapes: ``code_dim``,
``n_mlp``, the width of every block, fused vs nearest up-sampling per block (key presence),
fused down-sampling per D block, and whether D's ``from_rgb`` has an activation.

Conversion to gankit's StyleGAN1 convention (``generators/stylegan1.py``: NVIDIA TF's
gains; rosinality scales every ``*_orig`` weight by ``sqrt(2 / fan_in)``):

====================================================  ==========================================
rosinality                                            gankit
====================================================  ==========================================
``style.{2j+1}.linear.weight_orig / bias``            ``mapping.fc{j}.weight / bias`` as is
                                                      (``lr_multiplier`` 1: rosinality's 0.01
                                                      lives only in its optimizer)
``...progression.0.conv1.input`` [1, C, 4, 4]         ``synthesis.b4.const`` [C, 4, 4];
                                                      ``b4.conv0.bias`` = 0 (no bias there)
``...conv1.1.conv.weight_orig / bias`` (nearest)      ``b{r}.conv0.weight / bias`` as is
``...conv1.0.weight`` [in, out, 3, 3] (fused)         ``b{r}.conv0.weight`` = flip(permute) / 4
                                                      (rosinality averages the 4 shifts)
``...conv2.conv.weight_orig / bias``                  ``b{r}.conv1.weight / bias`` as is
``...noise{1,2}.weight_orig`` [1, C, 1, 1]            ``conv{0,1}.noise_strength`` [C] x sqrt(2/C)
``...adain{1,2}.style.linear.weight_orig``            ``conv{0,1}.affine.weight`` x sqrt(2)
``...adain{1,2}.style.linear.bias``                   ``conv{0,1}.affine.bias`` as is ([gamma,
                                                      beta]: gamma * x + beta)
``generator.to_rgb.{i}.conv.weight_orig / bias``      ``b{r}.torgb.weight`` x sqrt(2) / bias
D ``from_rgb.{k}[.0].conv.*``                         ``b{r}.fromrgb.*`` as is
D ``progression.{k}.conv1.0.conv.*``                  ``b{r}.conv0.*`` as is
D ``progression.{k}.conv2.1[.conv].weight[_orig]``    ``b{r}.conv1.*`` as is
D ``progression.{last}.conv1.0.conv.*``               ``b4.conv.*`` as is
D ``progression.{last}.conv2.0.conv.weight_orig``     ``b4.fc.weight`` [F, 16 C4] (reshape)
D ``linear.linear.weight_orig / bias``                ``b4.out.weight`` x sqrt(2) / bias
====================================================  ==========================================

Architecture kwargs: one noise map per block shared by both layers (``shared_noise``),
instance-norm eps 1e-5, the up-conv bias added before the blur (``bias_before_blur``),
D minibatch stddev over the whole batch (``mbstd_group_size=None``). Blur buffers
(``*.weight`` / ``*.weight_flip`` of the blur modules) are checked, not stored.

rosinality files hold neither const noise nor an average w. gankit fills ``noise_const``
with seeded N(0, 1) maps (``torch.Generator`` seed ``NOISE_SEED``, blocks in order) and
``mapping.w_avg`` with the mean of ``W_AVG_SAMPLES`` mapped seeded z (seed ``W_AVG_SEED``),
as rosinality's generate.py averages mapped z for its ``mean_style``. Both are recorded in
``meta['notes']``. Nothing in a rosinality file says which step a model was trained to; all
blocks (normally 4..1024 px) are kept and ``G.synthesis(ws, step=s)`` picks the resolution.
"""
from __future__ import annotations

import math
import re
from typing import Any, Dict, List, Mapping, Optional, Set

import torch

from ..spec import Checkpoint, CheckpointError, NetworkSpec
from .stylegan1_tf import D_KIND, G_KIND, ordered_state_dict

__all__ = ["read_stylegan1_rosinality", "looks_like_stylegan1_rosinality", "NOISE_SEED", "W_AVG_SEED",
           "W_AVG_SAMPLES"]

FORMAT = "rosinality"
NOISE_SEED = 0
W_AVG_SEED = 0
W_AVG_SAMPLES = 4096
_G_MARK = "generator.progression.0.conv1.input"
_D_MARK = "linear.linear.weight_orig"
_SLOTS = (("g_running", "G_ema"), ("generator", "G"), ("discriminator", "D"))
_SQRT2 = math.sqrt(2)


def _is_g(sd: Any) -> bool:
    return isinstance(sd, Mapping) and _G_MARK in sd


def _is_d(sd: Any) -> bool:
    return isinstance(sd, Mapping) and _D_MARK in sd and "progression.0.conv1.0.conv.weight_orig" in sd


def looks_like_stylegan1_rosinality(obj: Any) -> bool:
    if not isinstance(obj, Mapping):
        return False
    if _is_g(obj) or _is_d(obj):
        return True
    return any(k in obj and (_is_g(obj[k]) or _is_d(obj[k])) for k, _ in _SLOTS)


class _SD:
    """State-dict access that records what was read and checks shapes."""

    def __init__(self, sd: Mapping[str, Any], what: str):
        self.sd, self.what = sd, what
        self.used: Set[str] = set()

    def has(self, k: str) -> bool:
        return k in self.sd

    def __call__(self, k: str, ndim: Optional[int] = None) -> torch.Tensor:
        if k not in self.sd:
            raise CheckpointError(f"{self.what}: missing tensor {k!r}")
        t = self.sd[k]
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise CheckpointError(f"{self.what}: {k} is not a float tensor")
        if ndim is not None and t.ndim != ndim:
            raise CheckpointError(f"{self.what}: {k} has shape {list(t.shape)}, expected {ndim}-D")
        self.used.add(k)
        return t.detach().to("cpu", torch.float32)

    def leftovers(self) -> List[str]:
        return [k for k in self.sd if k not in self.used]


def _blur_ok(s: _SD, prefix: str, C: int, notes: List[str]) -> None:
    """rosinality's Blur buffers: the [1,2,1] kernel and its flip, [C, 1, 3, 3]."""
    k = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16
    for name in ("weight", "weight_flip"):
        t = s(f"{prefix}.{name}", 4)
        if tuple(t.shape) != (C, 1, 3, 3):
            raise CheckpointError(f"{s.what}: {prefix}.{name} has shape {list(t.shape)}, expected [{C}, 1, 3, 3]")
        if not torch.allclose(t, k.expand(C, 1, 3, 3), atol=1e-7):
            notes.append(f"{s.what}: {prefix}.{name} is not the standard [1,2,1] blur; using the standard one")


def _indices(sd: Mapping[str, Any], pattern: str) -> List[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in sd for m in [rx.fullmatch(str(k))] if m})


def _contiguous(idx: List[int], what: str, name: str) -> int:
    if not idx or idx != list(range(len(idx))):
        raise CheckpointError(f"{what}: {name} indices {idx} are not 0..n-1")
    return len(idx)


def _w_avg(kwargs: Dict[str, Any], sd: Dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean of ``W_AVG_SAMPLES`` mapped standard-normal z (seeded), like generate.py's mean_style."""
    from ..stylegan1 import MappingNetwork
    m = MappingNetwork(kwargs["z_dim"], 0, kwargs["w_dim"], 1, **kwargs["mapping_kwargs"])
    m.load_state_dict({k[len("mapping."):]: v for k, v in sd.items() if k.startswith("mapping.")})
    z = torch.randn([W_AVG_SAMPLES, kwargs["z_dim"]], generator=torch.Generator().manual_seed(W_AVG_SEED))
    with torch.no_grad():
        return m(z)[:, 0].mean(dim=0)


def _read_g(obj: Mapping[str, Any], what: str, notes: List[str]) -> NetworkSpec:
    s = _SD(obj, what)
    sd: Dict[str, torch.Tensor] = {}
    # Mapping: style.0 is PixelNorm, then (EqualLinear, LeakyReLU) pairs -> odd indices.
    idx = _indices(obj, r"style\.(\d+)\.linear\.weight_orig")
    n_mlp = len(idx)
    if n_mlp == 0 or idx != [2 * j + 1 for j in range(n_mlp)]:
        raise CheckpointError(f"{what}: mapping layers style.{{1,3,5,...}}.linear expected, found indices {idx}")
    dims = []
    for j, i in enumerate(idx):
        w = s(f"style.{i}.linear.weight_orig", 2)
        b = s(f"style.{i}.linear.bias", 1)
        if b.shape[0] != w.shape[0] or (dims and dims[-1][0] != w.shape[1]):
            raise CheckpointError(f"{what}: style.{i}.linear shapes {list(w.shape)}, {list(b.shape)} do not chain")
        dims.append(tuple(w.shape))
        sd[f"mapping.fc{j}.weight"], sd[f"mapping.fc{j}.bias"] = w, b
    z_dim, w_dim = dims[0][1], dims[-1][0]

    nb = _contiguous(_indices(obj, r"generator\.progression\.(\d+)\.conv2\.conv\.weight_orig"), what,
                     "generator.progression")
    channels: Dict[str, int] = {}
    fused_up: List[int] = []
    img_channels = None
    for i in range(nb):
        r, P, p = 4 * 2 ** i, f"generator.progression.{i}", f"synthesis.b{4 * 2 ** i}."
        w2 = s(f"{P}.conv2.conv.weight_orig", 4)                                  # [C, C, 3, 3]
        C = w2.shape[0]
        channels[str(r)] = C
        if i == 0:
            const = s(f"{P}.conv1.input", 4)                                     # [1, C, 4, 4]
            if tuple(const.shape) != (1, C, 4, 4):
                raise CheckpointError(f"{what}: {P}.conv1.input has shape {list(const.shape)}, expected "
                                      f"[1, {C}, 4, 4]")
            sd[p + "const"] = const[0].clone()
            sd[p + "conv0.bias"] = torch.zeros(C)          # rosinality's constant layer has no bias
        elif s.has(f"{P}.conv1.0.bias"):                                         # fused up-sampling
            w = s(f"{P}.conv1.0.weight", 4)                                      # [in, out, 3, 3]
            sd[p + "conv0.weight"] = (w.permute(1, 0, 2, 3).flip([2, 3]) * 0.25).contiguous()
            sd[p + "conv0.bias"] = s(f"{P}.conv1.0.bias", 1)
            _blur_ok(s, f"{P}.conv1.1", C, notes)
            fused_up.append(r)
        else:                                                                    # nearest + conv
            sd[p + "conv0.weight"] = s(f"{P}.conv1.1.conv.weight_orig", 4)       # [out, in, 3, 3]
            sd[p + "conv0.bias"] = s(f"{P}.conv1.1.conv.bias", 1)
            _blur_ok(s, f"{P}.conv1.2", C, notes)
        sd[p + "conv1.weight"] = w2
        sd[p + "conv1.bias"] = s(f"{P}.conv2.conv.bias", 1)
        for j, lp in ((1, "conv0."), (2, "conv1.")):
            nw = s(f"{P}.noise{j}.weight_orig", 4)                               # [1, C, 1, 1]
            if tuple(nw.shape) != (1, C, 1, 1):
                raise CheckpointError(f"{what}: {P}.noise{j}.weight_orig has shape {list(nw.shape)}, expected "
                                      f"[1, {C}, 1, 1]")
            sd[p + lp + "noise_strength"] = nw.reshape(C) * math.sqrt(2 / C)
            sd[p + lp + "affine.weight"] = s(f"{P}.adain{j}.style.linear.weight_orig", 2) * _SQRT2
            sd[p + lp + "affine.bias"] = s(f"{P}.adain{j}.style.linear.bias", 1)
        rgb = s(f"generator.to_rgb.{i}.conv.weight_orig", 4)                     # [K, C, 1, 1]
        if img_channels is not None and rgb.shape[0] != img_channels:
            raise CheckpointError(f"{what}: to_rgb layers disagree on the number of image channels")
        img_channels = rgb.shape[0]
        sd[p + "torgb.weight"] = rgb * _SQRT2
        sd[p + "torgb.bias"] = s(f"generator.to_rgb.{i}.conv.bias", 1)
    left = s.leftovers()
    if left:
        raise CheckpointError(f"{what}: unexpected tensors {left[:4]} (not a StyleGAN1 layout gankit knows)")
    gen = torch.Generator().manual_seed(NOISE_SEED)
    for i in range(nb):
        r = 4 * 2 ** i
        sd[f"synthesis.b{r}.conv0.noise_const"] = torch.randn([r, r], generator=gen)
    kwargs = dict(
        z_dim=z_dim, c_dim=0, w_dim=w_dim, img_resolution=4 * 2 ** (nb - 1), img_channels=img_channels,
        mapping_kwargs=dict(num_layers=n_mlp, layer_features=dims[0][0], activation="lrelu", lr_multiplier=1.0,
                            normalize_latents=True, w_avg_beta=None),
        synthesis_kwargs=dict(channels=channels, fused_up=fused_up, shared_noise=True, use_noise=True, norm_eps=1e-5,
                              bias_before_blur=True, blur_filter=[1, 2, 1], activation="lrelu"),
        default_truncation_psi=0.7, default_truncation_cutoff=None,
    )
    sd["mapping.w_avg"] = torch.zeros(w_dim)
    sd = ordered_state_dict(G_KIND, kwargs, sd, what)
    sd["mapping.w_avg"] = _w_avg(kwargs, sd)
    notes.append(f"{what}: noise_const = seeded N(0,1) maps (torch seed {NOISE_SEED}); mapping.w_avg = mean of "
                 f"{W_AVG_SAMPLES} mapped z (torch seed {W_AVG_SEED}); the file has neither")
    return NetworkSpec(G_KIND, kwargs, sd)


def _read_d(obj: Mapping[str, Any], what: str, notes: List[str]) -> NetworkSpec:
    s = _SD(obj, what)
    with_act = _indices(obj, r"from_rgb\.(\d+)\.0\.conv\.weight_orig")
    without = _indices(obj, r"from_rgb\.(\d+)\.conv\.weight_orig")
    if with_act and without:
        raise CheckpointError(f"{what}: from_rgb layers mix the with- and without-activation forms")
    act = bool(with_act)
    n = _contiguous(with_act or without, what, "from_rgb")
    if _contiguous(_indices(obj, r"progression\.(\d+)\.conv1\.0\.conv\.weight_orig"), what, "progression") != n:
        raise CheckpointError(f"{what}: {n} from_rgb layers but a different number of progression blocks")
    res_of = {k: 4 * 2 ** (n - 1 - k) for k in range(n)}
    channels: Dict[int, int] = {}
    sd: Dict[str, torch.Tensor] = {}
    img_channels = None
    for k in range(n):
        r = res_of[k]
        fp = f"from_rgb.{k}.0.conv" if act else f"from_rgb.{k}.conv"
        w = s(fp + ".weight_orig", 4)                                            # [C, K, 1, 1]
        channels[r] = w.shape[0]
        img_channels = w.shape[1] if img_channels is None else img_channels
        sd[f"b{r}.fromrgb.weight"], sd[f"b{r}.fromrgb.bias"] = w, s(fp + ".bias", 1)
    mids: Dict[int, int] = {}
    fused_down: List[int] = []
    for k in range(n - 1):
        r, P = res_of[k], f"progression.{k}"
        w0 = s(f"{P}.conv1.0.conv.weight_orig", 4)                               # [mid, C, 3, 3]
        mids[r] = w0.shape[0]
        sd[f"b{r}.conv0.weight"], sd[f"b{r}.conv0.bias"] = w0, s(f"{P}.conv1.0.conv.bias", 1)
        _blur_ok(s, f"{P}.conv2.0", mids[r], notes)
        if s.has(f"{P}.conv2.1.weight"):                                        # fused down-sampling
            sd[f"b{r}.conv1.weight"], sd[f"b{r}.conv1.bias"] = s(f"{P}.conv2.1.weight", 4), s(f"{P}.conv2.1.bias", 1)
            fused_down.append(r)
        else:
            sd[f"b{r}.conv1.weight"] = s(f"{P}.conv2.1.conv.weight_orig", 4)
            sd[f"b{r}.conv1.bias"] = s(f"{P}.conv2.1.conv.bias", 1)
    P = f"progression.{n - 1}"
    C4 = channels[4]
    conv = s(f"{P}.conv1.0.conv.weight_orig", 4)                                 # [C4, C4 + 1, 3, 3]
    fc = s(f"{P}.conv2.0.conv.weight_orig", 4)                                   # [F, C4, 4, 4]
    if fc.shape[1:] != (C4, 4, 4):
        raise CheckpointError(f"{what}: {P}.conv2.0.conv.weight_orig has shape {list(fc.shape)}, expected "
                              f"[F, {C4}, 4, 4]")
    sd["b4.conv.weight"], sd["b4.conv.bias"] = conv, s(f"{P}.conv1.0.conv.bias", 1)
    sd["b4.fc.weight"], sd["b4.fc.bias"] = fc.reshape(fc.shape[0], -1).clone(), s(f"{P}.conv2.0.conv.bias", 1)
    sd["b4.out.weight"], sd["b4.out.bias"] = s(_D_MARK, 2) * _SQRT2, s("linear.linear.bias", 1)
    left = s.leftovers()
    if left:
        raise CheckpointError(f"{what}: unexpected tensors {left[:4]} (not a StyleGAN1 layout gankit knows)")
    kwargs = dict(
        c_dim=0, img_resolution=res_of[0], img_channels=img_channels,
        channels={str(r): c for r, c in sorted(channels.items())},
        mid_channels={str(r): c for r, c in sorted(mids.items())}, fc_features=fc.shape[0],
        fused_down=sorted(fused_down), fromrgb_activation=act, mbstd_group_size=None,
        mbstd_num_channels=conv.shape[1] - C4, blur_filter=[1, 2, 1], activation="lrelu",
    )
    return NetworkSpec(D_KIND, kwargs, ordered_state_dict(D_KIND, kwargs, sd, what))


def read_stylegan1_rosinality(obj: Any) -> Checkpoint:
    """A rosinality StyleGAN1 checkpoint (already ``torch.load``-ed) as a :class:`Checkpoint`."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"not a rosinality StyleGAN1 checkpoint: top level is a {type(obj).__name__}")
    notes: List[str] = []
    networks: Dict[str, NetworkSpec] = {}
    meta: Dict[str, Any] = {"family": "stylegan1", "notes": notes}
    if _is_g(obj):
        meta["form"] = "state_dict"
        networks["G_ema"] = _read_g(obj, "rosinality StyleGAN1 generator", notes)
    elif _is_d(obj):
        meta["form"] = "state_dict"
        networks["D"] = _read_d(obj, "rosinality StyleGAN1 discriminator", notes)
    else:
        meta["form"] = "train"
        for key, name in _SLOTS:
            if key not in obj:
                continue
            sd = obj[key]
            if name == "D":
                if not _is_d(sd):
                    raise CheckpointError(f"rosinality StyleGAN1 checkpoint: {key!r} is not a discriminator "
                                          "state dict")
                networks[name] = _read_d(sd, key, notes)
            else:
                if not _is_g(sd):
                    raise CheckpointError(f"rosinality StyleGAN1 checkpoint: {key!r} is not a StyledGenerator "
                                          "state dict")
                networks[name] = _read_g(sd, key, notes)
        if not networks:
            raise CheckpointError("rosinality StyleGAN1 checkpoint without g_running, generator or discriminator")
        dropped = [str(k) for k in obj if k not in dict(_SLOTS)]
        if dropped:
            notes.append(f"not read: {', '.join(dropped)}")
    return Checkpoint(format=FORMAT, networks=networks, extras={}, meta=meta)
