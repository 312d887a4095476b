"""rosinality ``stylegan2-pytorch`` checkpoints, and the rosinality generators embedded as
``decoder.*`` in pSp / e4e / ReStyle / HyperStyle checkpoints.

Reading turns a rosinality state dict into gankit's (= NVIDIA stylegan2-ada-pytorch's)
naming; writing does the exact inverse. Every tensor is carried over bit for bit: the only
arithmetic is the division of the upsampling kernels by 4 (rosinality stores them with the
x4 upsampling gain folded in, NVIDIA stores the normalised filter), which is exact in
floating point, and its inverse.

Architecture is taken only from tensor shapes (style_dim, n_mlp, size, every width); the
``args`` / ``opts`` of training scripts are kept as extras and used for cross-checks only.

Name correspondence (G; S = style_dim, r = 8 * 2**j)::

    style.{i}.weight/bias            mapping.fc{i-1}.weight/bias     (i = 1 .. n_mlp)
    (latent_avg)                     mapping.w_avg
    input.input        [1,C,4,4]     synthesis.b4.const [C,4,4]
    conv1                            synthesis.b4.conv1
    convs.{2j}                       synthesis.b{r}.conv0            (upsampling conv)
    convs.{2j+1}                     synthesis.b{r}.conv1
    to_rgb1 / to_rgbs.{j}            synthesis.b4.torgb / synthesis.b{r}.torgb
      .conv.weight  [1,O,I,k,k]        .weight [O,I,k,k]
      .conv.modulation.weight/bias     .affine.weight/bias
      .noise.weight [1]                .noise_strength []
      .activate.bias                   .bias
      to_rgb*.bias [1,K,1,1]           torgb.bias [K]
      convs.{2j}.conv.blur.kernel      b{r}.conv0.resample_filter   (kernel / 4)
      to_rgbs.{j}.upsample.kernel      b{r}.resample_filter         (kernel / 4)
    noises.noise_0 [1,1,4,4]         synthesis.b4.conv1.noise_const [4,4]
    noises.noise_{k+1}               noise_const of the layer of convs.{k}

D (resnet, R = size, block i works at R / 2**(i-1))::

    convs.0.0.weight / convs.0.1.bias      b{R}.fromrgb.weight / .bias
    convs.{i}.conv1.0.weight / .1.bias     b{r}.conv0.weight / .bias
    convs.{i}.conv2.0.kernel               b{r}.conv1.resample_filter   (already sum 1)
    convs.{i}.conv2.1.weight / .2.bias     b{r}.conv1.weight / .bias
    convs.{i}.skip.0.kernel / .1.weight    b{r}.skip.resample_filter / .weight
    final_conv.0.weight / .1.bias          b4.conv.weight / .bias
    final_linear.0 / final_linear.1        b4.fc / b4.out

NVIDIA layers that have a ``resample_filter`` buffer where rosinality has no kernel get the
default ``outer([1,3,3,1]) / 64``.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import re
import warnings
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

from ..spec import Checkpoint, CheckpointError, NetworkSpec

__all__ = ["read_rosinality", "read_embedded_decoder", "write_rosinality", "looks_like_rosinality",
           "looks_like_embedded_decoder", "G_KIND", "D_KIND"]

G_KIND = "stylegan2.Generator"
D_KIND = "stylegan2.Discriminator"

_FILTER_TAPS = [1, 3, 3, 1]
_LR_MLP = 0.01
_MBSTD_GROUP = 4
_MBSTD_CHANNELS = 1
_GANKIT_KEY = "gankit"
_GANKIT_VERSION = 1

# Conversion kinds: how one rosinality tensor becomes one NVIDIA tensor (and back).
_SAME = "same"            # identical tensor
_LEAD1 = "lead1"          # rosinality has an extra leading dim of 1 ([1, ...] -> [...])
_SCALAR = "scalar"        # [1] -> []
_NOISE = "noise"          # [1, 1, R, R] -> [R, R]
_RGB_BIAS = "rgb_bias"    # [1, K, 1, 1] -> [K]
_UP_KERNEL = "up_kernel"  # upsampling kernel, sum 4 -> resample filter, sum 1
_DEFAULT = "default"      # no rosinality tensor; NVIDIA buffer = default filter
_W_AVG = "w_avg"          # no rosinality tensor in the state dict (comes from latent_avg)


def _default_filter() -> torch.Tensor:
    f = torch.tensor(_FILTER_TAPS, dtype=torch.float32)
    f = torch.outer(f, f)
    return f / f.sum()


def _compact(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself, or a copy when it is a view into a larger storage (so that saving it
    does not drag the whole storage along)."""
    t = t.detach()
    if t.is_contiguous() and t.untyped_storage().nbytes() == t.numel() * t.element_size():
        return t
    return t.clone(memory_format=torch.contiguous_format)


def _to_nv(kind: str, t: torch.Tensor) -> torch.Tensor:
    if kind == _SAME:
        return t
    if kind == _LEAD1:
        return t[0]
    if kind == _SCALAR:
        return t.reshape(())
    if kind == _NOISE:
        return t[0, 0]
    if kind == _RGB_BIAS:
        return t.reshape(-1)
    if kind == _UP_KERNEL:
        return t / 4
    raise AssertionError(kind)


def _to_ros(kind: str, t: torch.Tensor) -> torch.Tensor:
    if kind == _SAME:
        return t
    if kind == _LEAD1:
        return t.unsqueeze(0)
    if kind == _SCALAR:
        return t.reshape(1)
    if kind == _NOISE:
        return t[None, None]
    if kind == _RGB_BIAS:
        return t.reshape(1, -1, 1, 1)
    if kind == _UP_KERNEL:
        return t * 4
    raise AssertionError(kind)


class _Entry:
    __slots__ = ("nv", "ros", "kind", "ros_shape")

    def __init__(self, nv: str, ros: Optional[str], kind: str, ros_shape: Optional[Tuple[int, ...]]):
        self.nv, self.ros, self.kind, self.ros_shape = nv, ros, kind, ros_shape


# --------------------------------------------------------------------------------------------
# Name / shape tables
# --------------------------------------------------------------------------------------------

def _g_table(n_mlp: int, S: int, log2_size: int, ch: Dict[int, int], K: int) -> Tuple[List[_Entry], List[str]]:
    """Entries in NVIDIA state-dict order, plus the rosinality state-dict order."""
    nv: List[_Entry] = []
    ros_order: List[str] = []
    F = (4, 4)

    def layer(nv_p: str, ros_p: str, cin: int, cout: int, up_kernel: bool, noise_idx: int, R: int):
        nv.append(_Entry(f"{nv_p}.weight", f"{ros_p}.conv.weight", _LEAD1, (1, cout, cin, 3, 3)))
        nv.append(_Entry(f"{nv_p}.noise_strength", f"{ros_p}.noise.weight", _SCALAR, (1,)))
        nv.append(_Entry(f"{nv_p}.bias", f"{ros_p}.activate.bias", _SAME, (cout,)))
        if up_kernel:
            nv.append(_Entry(f"{nv_p}.resample_filter", f"{ros_p}.conv.blur.kernel", _UP_KERNEL, F))
        else:
            nv.append(_Entry(f"{nv_p}.resample_filter", None, _DEFAULT, None))
        nv.append(_Entry(f"{nv_p}.noise_const", f"noises.noise_{noise_idx}", _NOISE, (1, 1, R, R)))
        nv.append(_Entry(f"{nv_p}.affine.weight", f"{ros_p}.conv.modulation.weight", _SAME, (cin, S)))
        nv.append(_Entry(f"{nv_p}.affine.bias", f"{ros_p}.conv.modulation.bias", _SAME, (cin,)))
        ros_order.extend([f"{ros_p}.conv.weight"] + ([f"{ros_p}.conv.blur.kernel"] if up_kernel else [])
                         + [f"{ros_p}.conv.modulation.weight", f"{ros_p}.conv.modulation.bias",
                            f"{ros_p}.noise.weight", f"{ros_p}.activate.bias"])

    def torgb(nv_p: str, ros_p: str, cin: int, up_kernel: bool):
        nv.append(_Entry(f"{nv_p}.weight", f"{ros_p}.conv.weight", _LEAD1, (1, K, cin, 1, 1)))
        nv.append(_Entry(f"{nv_p}.bias", f"{ros_p}.bias", _RGB_BIAS, (1, K, 1, 1)))
        nv.append(_Entry(f"{nv_p}.affine.weight", f"{ros_p}.conv.modulation.weight", _SAME, (cin, S)))
        nv.append(_Entry(f"{nv_p}.affine.bias", f"{ros_p}.conv.modulation.bias", _SAME, (cin,)))
        ros_order.extend([f"{ros_p}.bias"] + ([f"{ros_p}.upsample.kernel"] if up_kernel else [])
                         + [f"{ros_p}.conv.weight", f"{ros_p}.conv.modulation.weight",
                            f"{ros_p}.conv.modulation.bias"])

    for i in range(1, n_mlp + 1):
        ros_order += [f"style.{i}.weight", f"style.{i}.bias"]
    ros_order.append("input.input")

    # b4
    C4 = ch[4]
    nv.append(_Entry("synthesis.b4.const", "input.input", _LEAD1, (1, C4, 4, 4)))
    nv.append(_Entry("synthesis.b4.resample_filter", None, _DEFAULT, None))
    layer("synthesis.b4.conv1", "conv1", C4, C4, False, 0, 4)
    torgb("synthesis.b4.torgb", "to_rgb1", C4, False)
    rgb_ros: List[str] = []  # rosinality lists all convs.* before all to_rgbs.*
    for j in range(log2_size - 2):
        r = 8 << j
        cin, cout = ch[r // 2], ch[r]
        p = f"synthesis.b{r}"
        nv.append(_Entry(f"{p}.resample_filter", f"to_rgbs.{j}.upsample.kernel", _UP_KERNEL, F))
        layer(f"{p}.conv0", f"convs.{2 * j}", cin, cout, True, 2 * j + 1, r)
        layer(f"{p}.conv1", f"convs.{2 * j + 1}", cout, cout, False, 2 * j + 2, r)
        n_before = len(ros_order)
        torgb(f"{p}.torgb", f"to_rgbs.{j}", cout, True)
        rgb_ros += ros_order[n_before:]
        del ros_order[n_before:]
    ros_order += rgb_ros
    for i in range(2 * log2_size - 3):
        ros_order.append(f"noises.noise_{i}")

    nv.append(_Entry("mapping.w_avg", None, _W_AVG, None))
    for i in range(n_mlp):
        nv.append(_Entry(f"mapping.fc{i}.weight", f"style.{i + 1}.weight", _SAME, (S, S)))
        nv.append(_Entry(f"mapping.fc{i}.bias", f"style.{i + 1}.bias", _SAME, (S,)))
    return nv, ros_order


def _d_table(log2_size: int, ch: Dict[int, int], K: int) -> Tuple[List[_Entry], List[str]]:
    nv: List[_Entry] = []
    ros_order: List[str] = []
    F = (4, 4)
    R = 1 << log2_size
    for i in range(1, log2_size - 1):
        r = R >> (i - 1)
        cin, cout = ch[r], ch[r // 2]
        p = f"b{r}"
        nv.append(_Entry(f"{p}.resample_filter", None, _DEFAULT, None))
        if i == 1:
            nv.append(_Entry(f"{p}.fromrgb.weight", "convs.0.0.weight", _SAME, (cin, K, 1, 1)))
            nv.append(_Entry(f"{p}.fromrgb.bias", "convs.0.1.bias", _SAME, (cin,)))
            nv.append(_Entry(f"{p}.fromrgb.resample_filter", None, _DEFAULT, None))
        c = f"convs.{i}"
        nv.append(_Entry(f"{p}.conv0.weight", f"{c}.conv1.0.weight", _SAME, (cin, cin, 3, 3)))
        nv.append(_Entry(f"{p}.conv0.bias", f"{c}.conv1.1.bias", _SAME, (cin,)))
        nv.append(_Entry(f"{p}.conv0.resample_filter", None, _DEFAULT, None))
        nv.append(_Entry(f"{p}.conv1.weight", f"{c}.conv2.1.weight", _SAME, (cout, cin, 3, 3)))
        nv.append(_Entry(f"{p}.conv1.bias", f"{c}.conv2.2.bias", _SAME, (cout,)))
        nv.append(_Entry(f"{p}.conv1.resample_filter", f"{c}.conv2.0.kernel", _SAME, F))
        nv.append(_Entry(f"{p}.skip.weight", f"{c}.skip.1.weight", _SAME, (cout, cin, 1, 1)))
        nv.append(_Entry(f"{p}.skip.resample_filter", f"{c}.skip.0.kernel", _SAME, F))
    C4 = ch[4]
    nv.append(_Entry("b4.conv.weight", "final_conv.0.weight", _SAME, (C4, C4 + _MBSTD_CHANNELS, 3, 3)))
    nv.append(_Entry("b4.conv.bias", "final_conv.1.bias", _SAME, (C4,)))
    nv.append(_Entry("b4.conv.resample_filter", None, _DEFAULT, None))
    nv.append(_Entry("b4.fc.weight", "final_linear.0.weight", _SAME, (C4, C4 * 16)))
    nv.append(_Entry("b4.fc.bias", "final_linear.0.bias", _SAME, (C4,)))
    nv.append(_Entry("b4.out.weight", "final_linear.1.weight", _SAME, (1, C4)))
    nv.append(_Entry("b4.out.bias", "final_linear.1.bias", _SAME, (1,)))

    ros_order += ["convs.0.0.weight", "convs.0.1.bias"]
    for i in range(1, log2_size - 1):
        c = f"convs.{i}"
        ros_order += [f"{c}.conv1.0.weight", f"{c}.conv1.1.bias", f"{c}.conv2.0.kernel", f"{c}.conv2.1.weight",
                      f"{c}.conv2.2.bias", f"{c}.skip.0.kernel", f"{c}.skip.1.weight"]
    ros_order += ["final_conv.0.weight", "final_conv.1.bias", "final_linear.0.weight", "final_linear.0.bias",
                  "final_linear.1.weight", "final_linear.1.bias"]
    return nv, ros_order


# --------------------------------------------------------------------------------------------
# Architecture from shapes
# --------------------------------------------------------------------------------------------

def _shape(sd: Mapping[str, torch.Tensor], key: str, what: str) -> Tuple[int, ...]:
    t = sd.get(key)
    if not isinstance(t, torch.Tensor):
        raise CheckpointError(f"{what}: missing tensor {key!r}")
    return tuple(t.shape)


def _indices(sd: Mapping[str, Any], pattern: str) -> List[int]:
    rx = re.compile(pattern)
    out = sorted({int(m.group(1)) for k in sd for m in [rx.fullmatch(k)] if m})
    return out


def _g_arch(sd: Mapping[str, torch.Tensor], what: str) -> Tuple[int, int, int, Dict[int, int], int]:
    """(n_mlp, style_dim, log2 size, widths {res: C}, image channels) from shapes."""
    styles = _indices(sd, r"style\.(\d+)\.weight")
    if not styles or styles != list(range(1, len(styles) + 1)):
        raise CheckpointError(f"{what}: mapping layers style.1..style.N not found (got indices {styles[:10]})")
    n_mlp = len(styles)
    s_shape = _shape(sd, "style.1.weight", what)
    if len(s_shape) != 2:
        raise CheckpointError(f"{what}: style.1.weight has shape {list(s_shape)}, expected [S, S]")
    S = s_shape[1]
    convs = _indices(sd, r"convs\.(\d+)\.conv\.weight")
    if convs != list(range(len(convs))) or len(convs) % 2:
        raise CheckpointError(f"{what}: styled convs must be convs.0..convs.{{2n-1}}, got indices {convs[:20]}")
    log2_size = 2 + len(convs) // 2
    c_in = _shape(sd, "input.input", what)
    if len(c_in) != 4:
        raise CheckpointError(f"{what}: input.input has shape {list(c_in)}, expected [1, C, 4, 4]")
    ch = {4: c_in[1]}
    for j in range(log2_size - 2):
        w = _shape(sd, f"convs.{2 * j}.conv.weight", what)
        if len(w) != 5:
            raise CheckpointError(f"{what}: convs.{2 * j}.conv.weight has shape {list(w)}, expected [1, out, in, k, k]")
        ch[8 << j] = w[1]
    rgb = _shape(sd, "to_rgb1.conv.weight", what)
    if len(rgb) != 5:
        raise CheckpointError(f"{what}: to_rgb1.conv.weight has shape {list(rgb)}, expected [1, 3, C, 1, 1]")
    return n_mlp, S, log2_size, ch, rgb[1]


def _d_arch(sd: Mapping[str, torch.Tensor], what: str) -> Tuple[int, Dict[int, int], int]:
    blocks = _indices(sd, r"convs\.(\d+)\.conv1\.0\.weight")
    if blocks != list(range(1, len(blocks) + 1)):
        raise CheckpointError(f"{what}: residual blocks convs.1..convs.N not found (got {blocks[:20]})")
    log2_size = len(blocks) + 2
    R = 1 << log2_size
    frgb = _shape(sd, "convs.0.0.weight", what)
    if len(frgb) != 4:
        raise CheckpointError(f"{what}: convs.0.0.weight has shape {list(frgb)}, expected [C, 3, 1, 1]")
    ch = {R: frgb[0]}
    for i in blocks:
        w = _shape(sd, f"convs.{i}.conv2.1.weight", what)
        if len(w) != 4:
            raise CheckpointError(f"{what}: convs.{i}.conv2.1.weight has shape {list(w)}, expected [out, in, 3, 3]")
        ch[R >> i] = w[0]
    return log2_size, ch, frgb[1]


def _channels_json(ch: Dict[int, int]) -> Dict[str, int]:
    return {str(r): int(ch[r]) for r in sorted(ch)}


def _convert_to_nv(sd: Mapping[str, torch.Tensor], table: List[_Entry], ros_order: List[str], what: str,
                   notes: List[str]) -> "OrderedDict[str, torch.Tensor]":
    expected = set(ros_order)
    extra = [k for k in sd if k not in expected]
    missing = [k for k in ros_order if k not in sd]
    noise_missing = [k for k in missing if k.startswith("noises.")]
    if noise_missing and len(noise_missing) != len([k for k in ros_order if k.startswith("noises.")]):
        raise CheckpointError(f"{what}: some noise buffers are missing ({', '.join(noise_missing[:4])})")
    missing = [k for k in missing if not k.startswith("noises.")]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:4])}" + (f" (+{len(missing) - 4} more)" if len(missing) > 4 else ""))
        if extra:
            parts.append(f"unexpected {', '.join(extra[:4])}" + (f" (+{len(extra) - 4} more)" if len(extra) > 4 else ""))
        raise CheckpointError(f"{what}: not a rosinality StyleGAN2 state dict of the shape its tensors imply: "
                              + "; ".join(parts))
    gen = None
    if noise_missing:
        msg = f"{what}: no noises.noise_* buffers (old rosinality file); constant noise set to seeded N(0,1) maps"
        warnings.warn(msg)
        notes.append(msg)
        gen = torch.Generator().manual_seed(0)
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    filt = _default_filter()
    for e in table:
        if e.kind == _W_AVG:
            out[e.nv] = None  # filled in by the caller
            continue
        if e.kind == _DEFAULT:
            out[e.nv] = filt.clone()
            continue
        if e.ros.startswith("noises.") and gen is not None:
            R = e.ros_shape[-1]
            out[e.nv] = torch.randn(R, R, generator=gen)
            continue
        t = sd[e.ros]
        if not isinstance(t, torch.Tensor):
            raise CheckpointError(f"{what}: {e.ros!r} is a {type(t).__name__}, not a tensor")
        if tuple(t.shape) != e.ros_shape:
            raise CheckpointError(f"{what}: {e.ros} has shape {list(t.shape)}, expected {list(e.ros_shape)} "
                                  "(inconsistent widths)")
        v = _to_nv(e.kind, t.detach())
        if e.kind == _UP_KERNEL and not torch.equal(v.float(), filt):
            notes.append(f"{what}: {e.ros} is not the standard [1,3,3,1] kernel; copied as is")
        if e.ros.endswith(".kernel") and e.kind == _SAME and not torch.equal(v.float(), filt):
            notes.append(f"{what}: {e.ros} is not the standard [1,3,3,1] kernel; copied as is")
        out[e.nv] = v
    return out


def _g_kwargs(n_mlp: int, S: int, log2_size: int, ch: Dict[int, int], K: int) -> Dict[str, Any]:
    return {
        "z_dim": int(S), "c_dim": 0, "w_dim": int(S), "img_resolution": 1 << log2_size, "img_channels": int(K),
        "mapping_kwargs": {"num_layers": int(n_mlp), "embed_features": 0, "layer_features": int(S),
                           "activation": "lrelu", "lr_multiplier": _LR_MLP, "w_avg_beta": 0.995},
        "synthesis_kwargs": {"architecture": "skip", "channels": _channels_json(ch), "conv_clamp": None,
                             "num_fp16_res": 0, "use_noise": True, "activation": "lrelu",
                             "resample_filter": list(_FILTER_TAPS)},
    }


def _d_kwargs(log2_size: int, ch: Dict[int, int], K: int) -> Dict[str, Any]:
    return {
        "c_dim": 0, "img_resolution": 1 << log2_size, "img_channels": int(K), "architecture": "resnet",
        "channels": _channels_json(ch), "cmap_dim": 0, "conv_clamp": None, "num_fp16_res": 0,
        "activation": "lrelu", "resample_filter": list(_FILTER_TAPS),
        "mbstd_group_size": _MBSTD_GROUP, "mbstd_num_channels": _MBSTD_CHANNELS, "mapping_kwargs": {},
    }


def _read_g(sd: Mapping[str, torch.Tensor], w_avg: Optional[torch.Tensor], what: str,
            notes: List[str]) -> NetworkSpec:
    if not isinstance(sd, Mapping):
        raise CheckpointError(f"{what}: expected a state dict, got {type(sd).__name__}")
    n_mlp, S, L, ch, K = _g_arch(sd, what)
    table, ros_order = _g_table(n_mlp, S, L, ch, K)
    out = _convert_to_nv(sd, table, ros_order, what, notes)
    ref = sd["style.1.weight"]
    if w_avg is not None and tuple(w_avg.shape) != (S,):
        notes.append(f"{what}: latent_avg has {list(w_avg.shape)} values, style_dim is {S}; w_avg set to zeros")
        w_avg = None
    if w_avg is None:
        w_avg = torch.zeros(S, dtype=torch.float32 if not ref.is_floating_point() else ref.dtype)
    out["mapping.w_avg"] = _compact(w_avg.detach())
    return NetworkSpec(G_KIND, _g_kwargs(n_mlp, S, L, ch, K), dict(out))


def _read_d(sd: Mapping[str, torch.Tensor], what: str, notes: List[str]) -> NetworkSpec:
    if not isinstance(sd, Mapping):
        raise CheckpointError(f"{what}: expected a state dict, got {type(sd).__name__}")
    L, ch, K = _d_arch(sd, what)
    fc = _shape(sd, "final_conv.0.weight", what)
    if len(fc) != 4:
        raise CheckpointError(f"{what}: final_conv.0.weight has shape {list(fc)}")
    if fc[0] != ch[4]:
        raise CheckpointError(f"{what}: final_conv has {fc[0]} channels but the last block outputs {ch[4]}")
    table, ros_order = _d_table(L, ch, K)
    out = _convert_to_nv(sd, table, ros_order, what, notes)
    return NetworkSpec(D_KIND, _d_kwargs(L, ch, K), dict(out))


def _w_avg_from_latent_avg(latent_avg: Any, what: str, notes: List[str]) -> Optional[torch.Tensor]:
    """A [S] vector from a rosinality/pSp ``latent_avg`` ([S], [1, S], or [n, S] with equal
    rows); None when there is none or it is not a single vector."""
    if latent_avg is None:
        return None
    if not isinstance(latent_avg, torch.Tensor) or not latent_avg.is_floating_point():
        notes.append(f"{what}: latent_avg is not a float tensor; w_avg set to zeros")
        return None
    la = latent_avg.detach()
    if la.dim() == 1:
        return _compact(la)
    if la.dim() == 2 and la.shape[0] >= 1 and bool((la == la[:1]).all()):
        return la[0].clone()
    notes.append(f"{what}: latent_avg of shape {list(la.shape)} has different rows; w_avg set to zeros "
                 "(the original is kept in extras['latent_avg'])")
    return None


def _plain(v: Any) -> Any:
    """v as nested plain containers (JSON-able values and tensors); raises TypeError otherwise."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, torch.Tensor):
        return v
    if isinstance(v, argparse.Namespace):
        v = vars(v)
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    # numpy scalars and similar
    if hasattr(v, "item") and callable(v.item):
        x = v.item()
        if isinstance(x, (bool, int, float)):
            return x
    raise TypeError(type(v).__name__)


# --------------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------------

def looks_like_rosinality(obj: Any) -> bool:
    if not isinstance(obj, Mapping):
        return False
    if "g_ema" in obj or ("g" in obj and "d" in obj):
        return True
    return "style.1.weight" in obj and "input.input" in obj


def looks_like_embedded_decoder(obj: Any) -> bool:
    sd = obj.get("state_dict") if isinstance(obj, Mapping) else None
    return isinstance(sd, Mapping) and any(isinstance(k, str) and k.startswith("decoder.") for k in sd)


_SLOTS = {"g_ema": "G_ema", "g": "G", "d": "D"}
_GANKIT_G_FIELDS = (("synthesis_kwargs", "conv_clamp"), ("synthesis_kwargs", "num_fp16_res"),
                    ("mapping_kwargs", "w_avg_beta"))
_GANKIT_D_FIELDS = ((None, "conv_clamp"), (None, "num_fp16_res"))


def _honour_gankit(ckpt: Checkpoint, info: Any, notes: List[str]) -> None:
    if not isinstance(info, Mapping):
        notes.append("ignored a malformed 'gankit' entry")
        return
    nets = info.get("networks")
    if isinstance(nets, Mapping):
        for slot, rec in nets.items():
            name = _SLOTS.get(slot, slot)
            spec = ckpt.networks.get(name)
            if spec is None or not isinstance(rec, Mapping):
                continue
            kw = rec.get("kwargs")
            if isinstance(kw, Mapping):
                fields = _GANKIT_G_FIELDS if spec.kind == G_KIND else _GANKIT_D_FIELDS
                for sub, key in fields:
                    src = kw.get(sub) if sub else kw
                    dst = spec.kwargs.get(sub) if sub else spec.kwargs
                    if isinstance(src, Mapping) and key in src and isinstance(dst, dict):
                        dst[key] = copy.deepcopy(src[key])
            w = rec.get("w_avg")
            if spec.kind == G_KIND and isinstance(w, torch.Tensor):
                if tuple(w.shape) == tuple(spec.state_dict["mapping.w_avg"].shape):
                    spec.state_dict["mapping.w_avg"] = _compact(w)
                else:
                    notes.append(f"gankit w_avg of {name} has shape {list(w.shape)}; ignored")
    if info.get("latent_avg_is_w_avg") and isinstance(ckpt.extras.get("latent_avg"), torch.Tensor):
        g = ckpt.networks.get("G_ema")
        if g is not None and torch.equal(ckpt.extras["latent_avg"], g.state_dict["mapping.w_avg"]):
            del ckpt.extras["latent_avg"]   # written only for rosinality's tools; w_avg has it
    extras = info.get("extras")
    if isinstance(extras, Mapping):
        for k, v in extras.items():
            if k not in ckpt.extras or k == "latent_avg":
                # a gankit/extras latent_avg is the original tensor of a form that could not be
                # written at the top level (which then holds only the derived [S] vector)
                ckpt.extras[k] = v
    if "format" in info:
        ckpt.meta["written_from_format"] = info["format"]


def read_rosinality(obj: Any) -> Checkpoint:
    """A rosinality StyleGAN2 checkpoint (already ``torch.load``-ed) as a :class:`Checkpoint`.

    Accepts the train.py form ``{g, d, g_ema, g_optim, d_optim, args, ada_aug_p}``, the
    convert_weight.py form ``{g_ema, latent_avg}`` (optionally with ``g`` / ``d``), and a bare
    generator state dict. ``g_ema`` becomes ``G_ema``, ``g`` ``G``, ``d`` ``D``.
    """
    if looks_like_embedded_decoder(obj) and not looks_like_rosinality(obj):
        return read_embedded_decoder(obj)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"not a rosinality checkpoint: top level is a {type(obj).__name__}, not a dict")
    if "g_running" in obj or "generator" in obj:
        raise CheckpointError("this is a rosinality StyleGAN1 (style-based-gan-pytorch) checkpoint, not StyleGAN2")
    notes: List[str] = []
    extras: Dict[str, Any] = {}
    meta: Dict[str, Any] = {"notes": notes}
    networks: Dict[str, NetworkSpec] = {}

    if "style.1.weight" in obj and "input.input" in obj:      # bare generator state dict
        meta["form"] = "state_dict"
        networks["G_ema"] = _read_g(obj, None, "rosinality generator", notes)
        return Checkpoint("rosinality", networks, extras, meta)
    if "final_linear.0.weight" in obj and "convs.0.0.weight" in obj:   # bare discriminator
        meta["form"] = "d_state_dict"
        networks["D"] = _read_d(obj, "rosinality discriminator", notes)
        return Checkpoint("rosinality", networks, extras, meta)
    if not any(k in obj for k in ("g_ema", "g", "d")):
        have = ", ".join(map(str, list(obj)[:8]))
        raise CheckpointError(f"not a rosinality StyleGAN2 checkpoint (no g_ema / g / d; top-level keys: {have})")

    meta["form"] = "train" if ("g_optim" in obj or "args" in obj) else "g_ema+latent_avg"
    latent_avg = obj.get("latent_avg")
    w_avg = _w_avg_from_latent_avg(latent_avg, "latent_avg", notes)
    if isinstance(latent_avg, torch.Tensor):
        extras["latent_avg"] = latent_avg
    if "g_ema" in obj:
        networks["G_ema"] = _read_g(obj["g_ema"], w_avg, "g_ema", notes)
    if "g" in obj:
        networks["G"] = _read_g(obj["g"], w_avg, "g", notes)
    if "d" in obj:
        networks["D"] = _read_d(obj["d"], "d", notes)

    dropped = []
    for k, v in obj.items():
        if k in ("g_ema", "g", "d", "latent_avg", _GANKIT_KEY):
            continue
        if k in ("g_optim", "d_optim"):
            dropped.append(k)
            continue
        try:
            extras[str(k)] = _plain(v)
        except TypeError:
            dropped.append(k)
    if dropped:
        meta["dropped"] = dropped

    ckpt = Checkpoint("rosinality", networks, extras, meta)
    if _GANKIT_KEY in obj:
        _honour_gankit(ckpt, obj[_GANKIT_KEY], notes)
    _cross_check_size(ckpt, extras.get("args"), ("size",), "args", notes)
    return ckpt


_RESTYLE_ENCODERS = {"BackboneEncoder", "ResNetBackboneEncoder", "ProgressiveBackboneEncoder",
                     "ResNetProgressiveBackboneEncoder"}


def _embedded_format(sd: Mapping[str, Any], opts: Mapping[str, Any]) -> str:
    enc = str(opts.get("encoder_type", ""))
    if any(isinstance(k, str) and k.startswith("hypernet.") for k in sd) or "hypernet" in enc.lower() \
            or "n_hypernet_outputs" in opts or "layers_to_tune" in opts:
        return "hyperstyle"
    if "n_iters_per_batch" in opts or enc in _RESTYLE_ENCODERS:
        return "restyle"
    if enc == "Encoder4Editing" or "stylegan_size" in opts or "progressive_steps" in opts:
        return "e4e"
    return "psp"


def _cross_check_size(ckpt: Checkpoint, opts: Any, keys: Tuple[str, ...], what: str, notes: List[str]) -> None:
    if not isinstance(opts, Mapping) or "G_ema" not in ckpt.networks:
        return
    size = ckpt.networks["G_ema"].kwargs["img_resolution"]
    for k in keys:
        v = opts.get(k)
        if isinstance(v, int) and not isinstance(v, bool) and v != size:
            msg = (f"{what}[{k!r}] = {v} but the generator's tensors say {size} px; using {size} "
                   "(the shapes are authoritative)")
            warnings.warn(msg)
            notes.append(msg)


def read_embedded_decoder(obj: Any) -> Checkpoint:
    """The rosinality generator embedded as ``decoder.*`` in a pSp / e4e / ReStyle / HyperStyle
    checkpoint ``{state_dict, opts, latent_avg, ...}``, as ``G_ema``. Encoder weights are not
    read here; ``opts`` and the original ``latent_avg`` go to ``extras``."""
    if not isinstance(obj, Mapping) or not isinstance(obj.get("state_dict"), Mapping):
        raise CheckpointError("not a pSp-family checkpoint: no 'state_dict' dict at the top level")
    sd = obj["state_dict"]
    dec = OrderedDict((k[len("decoder."):], v) for k, v in sd.items()
                      if isinstance(k, str) and k.startswith("decoder."))
    if not dec:
        raise CheckpointError("pSp-family checkpoint without 'decoder.*' tensors (no embedded generator)")
    opts = obj.get("opts")
    if isinstance(opts, argparse.Namespace):
        opts = vars(opts)
    opts = dict(opts) if isinstance(opts, Mapping) else {}
    fmt = _embedded_format(sd, opts)
    notes: List[str] = []
    meta: Dict[str, Any] = {"notes": notes, "form": "embedded_decoder"}
    latent_avg = obj.get("latent_avg")
    w_avg = _w_avg_from_latent_avg(latent_avg, "latent_avg", notes)
    g = _read_g(dec, w_avg, f"{fmt} decoder", notes)
    extras: Dict[str, Any] = {}
    if isinstance(latent_avg, torch.Tensor):
        extras["latent_avg"] = latent_avg
    try:
        extras["opts"] = _plain(opts)
    except TypeError:
        extras["opts"] = {k: v for k, v in opts.items() if isinstance(v, (type(None), bool, int, float, str))}
    for k in ("global_step", "best_val_loss"):
        if k in obj:
            try:
                extras[k] = _plain(obj[k])
            except TypeError:
                pass
    prefixes: Dict[str, int] = {}
    for k in sd:
        if isinstance(k, str) and not k.startswith("decoder."):
            p = k.split(".", 1)[0]
            prefixes[p] = prefixes.get(p, 0) + 1
    meta["other_state_dict_prefixes"] = prefixes
    ckpt = Checkpoint(fmt, {"G_ema": g}, extras, meta)
    _cross_check_size(ckpt, opts, ("output_size", "stylegan_size"), "opts", notes)
    if isinstance(latent_avg, torch.Tensor) and latent_avg.shape[-1] != g.kwargs["w_dim"]:
        notes.append(f"latent_avg has width {latent_avg.shape[-1]} but the decoder's style_dim is "
                     f"{g.kwargs['w_dim']}")
    return ckpt


# --------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------

def _g_problems(spec: NetworkSpec) -> Tuple[List[str], Optional[Tuple[int, int, int, Dict[int, int], int]]]:
    kw = spec.kwargs
    p: List[str] = []
    if spec.kind != G_KIND:
        return [f"kind {spec.kind!r} is not {G_KIND}"], None
    mk = kw.get("mapping_kwargs") or {}
    sk = kw.get("synthesis_kwargs") or {}
    z, w, c = kw.get("z_dim"), kw.get("w_dim"), kw.get("c_dim", 0) or 0
    K = kw.get("img_channels", 3)
    res = kw.get("img_resolution")
    if c:
        p.append(f"conditional generator (c_dim={c})")
    if z != w:
        p.append(f"z_dim {z} != w_dim {w}")
    lf = mk.get("layer_features")
    if lf is not None and lf != w:
        p.append(f"mapping layer width {lf} != w_dim {w}")
    if mk.get("lr_multiplier", _LR_MLP) != _LR_MLP:
        p.append(f"mapping lr_multiplier {mk.get('lr_multiplier')} != 0.01")
    if mk.get("activation", "lrelu") != "lrelu":
        p.append(f"mapping activation {mk.get('activation')!r}")
    if int(mk.get("num_layers", 8)) < 1:
        p.append("no mapping layers")
    if sk.get("architecture", "skip") != "skip":
        p.append(f"architecture {sk.get('architecture')!r} (rosinality has only 'skip')")
    if sk.get("activation", "lrelu") != "lrelu":
        p.append(f"synthesis activation {sk.get('activation')!r}")
    if not sk.get("use_noise", True):
        p.append("use_noise=False")
    if list(sk.get("resample_filter", _FILTER_TAPS) or _FILTER_TAPS) != _FILTER_TAPS:
        p.append(f"resample filter {sk.get('resample_filter')} (rosinality uses [1, 3, 3, 1])")
    if K != 3:
        p.append(f"img_channels {K} (rosinality's ToRGB has 3)")
    if not isinstance(res, int) or res < 4 or res & (res - 1):
        p.append(f"img_resolution {res} is not a power of two >= 4")
    if p:
        return p, None
    chans = sk.get("channels")
    if not isinstance(chans, Mapping):
        return ["synthesis_kwargs['channels'] missing"], None
    L = int(math.log2(res))
    try:
        ch = {int(r): int(v) for r, v in chans.items()}
    except (TypeError, ValueError):
        return [f"bad channels table {chans!r}"], None
    need = [4 << j for j in range(L - 1)]
    if any(r not in ch for r in need):
        return [f"channels table lacks resolutions {[r for r in need if r not in ch]}"], None
    return [], (int(mk.get("num_layers", 8)), int(w), L, ch, 3)


def _d_problems(spec: NetworkSpec) -> Tuple[List[str], Optional[Tuple[int, Dict[int, int]]]]:
    kw = spec.kwargs
    p: List[str] = []
    if spec.kind != D_KIND:
        return [f"kind {spec.kind!r} is not {D_KIND}"], None
    if kw.get("c_dim", 0):
        p.append(f"conditional (c_dim={kw.get('c_dim')})")
    if kw.get("architecture", "resnet") != "resnet":
        p.append(f"architecture {kw.get('architecture')!r} (rosinality's D is 'resnet')")
    if kw.get("mbstd_group_size", _MBSTD_GROUP) != _MBSTD_GROUP:
        p.append(f"minibatch-stddev group {kw.get('mbstd_group_size')} (rosinality uses 4)")
    if kw.get("mbstd_num_channels", _MBSTD_CHANNELS) != _MBSTD_CHANNELS:
        p.append(f"minibatch-stddev channels {kw.get('mbstd_num_channels')} (rosinality uses 1)")
    if kw.get("conv_clamp") is not None:
        p.append(f"conv_clamp={kw.get('conv_clamp')}")
    if kw.get("activation", "lrelu") != "lrelu":
        p.append(f"activation {kw.get('activation')!r}")
    if list(kw.get("resample_filter", _FILTER_TAPS) or _FILTER_TAPS) != _FILTER_TAPS:
        p.append(f"resample filter {kw.get('resample_filter')}")
    if kw.get("img_channels", 3) != 3:
        p.append(f"img_channels {kw.get('img_channels')}")
    res = kw.get("img_resolution")
    if not isinstance(res, int) or res < 8 or res & (res - 1):
        p.append(f"img_resolution {res}")
    if p:
        return p, None
    chans = kw.get("channels")
    if not isinstance(chans, Mapping):
        return ["channels table missing"], None
    try:
        ch = {int(r): int(v) for r, v in chans.items()}
    except (TypeError, ValueError):
        return [f"bad channels table {chans!r}"], None
    L = int(math.log2(res))
    need = [4 << j for j in range(L - 1)]
    if any(r not in ch for r in need):
        return [f"channels table lacks resolutions {[r for r in need if r not in ch]}"], None
    return [], (L, ch)


def _convert_to_ros(spec: NetworkSpec, table: List[_Entry], ros_order: List[str], what: str) -> Tuple[
        Optional["OrderedDict[str, torch.Tensor]"], List[str]]:
    sd = spec.state_dict
    want = {e.nv for e in table}
    missing = [e.nv for e in table if e.nv not in sd]
    extra = [k for k in sd if k not in want]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}" + (f" (+{len(missing) - 3})" if len(missing) > 3 else ""))
        if extra:
            parts.append(f"unexpected {', '.join(extra[:3])}" + (f" (+{len(extra) - 3})" if len(extra) > 3 else ""))
        return None, [f"{what} state dict does not match its kwargs: " + "; ".join(parts)]
    filt = _default_filter()
    by_ros: Dict[str, torch.Tensor] = {}
    problems: List[str] = []
    for e in table:
        t = sd[e.nv]
        if e.kind == _W_AVG:
            continue
        if e.kind == _DEFAULT or (e.kind == _SAME and e.nv.endswith("resample_filter")) or e.kind == _UP_KERNEL:
            if tuple(t.shape) != (4, 4) or not torch.equal(t.detach().float().cpu(), filt):
                problems.append(f"{what} {e.nv} is not the [1,3,3,1] filter")
                continue
            if e.kind == _DEFAULT:
                continue
        v = _to_ros(e.kind, t.detach())
        if tuple(v.shape) != e.ros_shape:
            problems.append(f"{what} {e.nv} has shape {list(t.shape)}, inconsistent with the channel table")
            continue
        by_ros[e.ros] = _compact(v)
    if problems:
        return None, problems
    return OrderedDict((k, by_ros[k]) for k in ros_order), []


def _json_kwargs(kw: Mapping[str, Any]) -> Dict[str, Any]:
    try:
        return json.loads(json.dumps(kw))
    except (TypeError, ValueError):
        return {k: v for k, v in _plain(kw).items() if not isinstance(v, torch.Tensor)}


def write_rosinality(ckpt: Checkpoint) -> dict:
    """``{g_ema, latent_avg[, g][, d], gankit}``: what rosinality's code (generate.py,
    projector.py, pSp's decoder loading) reads. ``gankit`` holds what rosinality cannot
    express (conv_clamp, the exact w_avg of each network, fp16 settings, extras); rosinality's
    code ignores it and :func:`read_rosinality` honours it.

    Raises :class:`CheckpointError` when a generator is not expressible in rosinality's
    architecture; an inexpressible discriminator is left out with a warning.
    """
    nets = ckpt.networks
    if "G_ema" in nets:
        g_ema_name = "G_ema"
    elif "G" in nets:
        g_ema_name = "G"
    else:
        raise CheckpointError(f"cannot write rosinality: the {ckpt.format} checkpoint has no generator")
    out: Dict[str, Any] = {}
    gankit: Dict[str, Any] = {"version": _GANKIT_VERSION, "format": ckpt.format, "networks": {}}

    def write_g(name: str, slot: str) -> "OrderedDict[str, torch.Tensor]":
        spec = nets[name]
        problems, arch = _g_problems(spec)
        if not problems:
            n_mlp, S, L, ch, K = arch
            table, ros_order = _g_table(n_mlp, S, L, ch, K)
            sd, problems = _convert_to_ros(spec, table, ros_order, name)
        if problems:
            raise CheckpointError(f"{name} is not expressible as a rosinality StyleGAN2 generator: "
                                  + "; ".join(problems))
        gankit["networks"][slot] = {"kwargs": _json_kwargs(spec.kwargs),
                                    "w_avg": _compact(spec.state_dict["mapping.w_avg"].detach()).clone()}
        return sd

    out["g_ema"] = write_g(g_ema_name, "g_ema")
    w_avg = nets[g_ema_name].state_dict["mapping.w_avg"].detach()
    # Top-level latent_avg in convert_weight.py's form ([S], what pSp & co. expect): the
    # original tensor when it is exactly that, else w_avg (omitted when w_avg is all zeros, i.e.
    # unknown). An original latent_avg of another form is kept under gankit/extras.
    la = ckpt.extras.get("latent_avg")
    la_written = False
    if isinstance(la, torch.Tensor) and la.dim() == 1 and la.shape == w_avg.shape and torch.equal(la, w_avg):
        out["latent_avg"] = _compact(la.detach())
        la_written = True
    elif bool(w_avg.ne(0).any()):
        out["latent_avg"] = _compact(w_avg).clone()
        gankit["latent_avg_is_w_avg"] = True   # not an extra of the source checkpoint
    if g_ema_name == "G_ema" and "G" in nets:
        out["g"] = write_g("G", "g")
    if "D" in nets:
        spec = nets["D"]
        problems, arch = _d_problems(spec)
        if not problems:
            L, ch = arch
            table, ros_order = _d_table(L, ch, 3)
            sd, problems = _convert_to_ros(spec, table, ros_order, "D")
        if problems:
            warnings.warn("discriminator left out of the rosinality file: " + "; ".join(problems))
        else:
            out["d"] = sd
            gankit["networks"]["d"] = {"kwargs": _json_kwargs(spec.kwargs)}
    extras: Dict[str, Any] = {}
    for k, v in ckpt.extras.items():
        if k == "latent_avg" and la_written:
            continue
        try:
            extras[str(k)] = _plain(v)
        except TypeError:
            pass
    if extras:
        gankit["extras"] = extras
    out[_GANKIT_KEY] = gankit
    return out
