"""Reader for NVIDIA's official StyleGAN1 TF pickles (``karras2019stylegan-*.pkl``).

The file is a ``(G, D, Gs)`` tuple of ``dnnlib.tflib.network.Network`` states with version 3
(build functions ``G_style`` with components ``G_synthesis`` / ``G_mapping``, and ``D_basic``);
see ``nvidia_formats.md`` (c). ``Gs`` becomes ``G_ema``. Variables are converted to gankit's
StyleGAN1 naming (``generators/stylegan1.py``), which keeps TF's values: only layouts change
(``[kh, kw, in, out]`` -> ``[out, in, kh, kw]``, ``[in, out]`` -> ``[out, in]``), plus

* ``StyleMod/bias``: +1 on the scale half (TF computes ``x * (1 + s) + b``);
* fused (transposed-conv) up-sampling kernels are flipped spatially (gankit stores every
  ``conv0.weight`` in nearest-up + conv orientation);
* ``noise{i}`` ``[1, 1, r, r]`` -> ``noise_const`` ``[r, r]``; ``4x4/Const/const`` drops its batch axis.

Architecture comes from variable shapes (widths, resolution, mapping depth), behaviour from
``static_kwargs`` with the TF function defaults (e.g. ``fused_scale='auto'`` = fused from
128 px, ``D_basic``'s ``mbstd_group_size=4``). ``G_style``'s run-time truncation default
(psi 0.7 on the first 8 ws, unless overridden in ``static_kwargs``) is recorded as the
generator's ``default_truncation_psi`` / ``default_truncation_cutoff``. Keyword arguments the
TF functions do not know are ignored, as TF does (with a note).
"""
from __future__ import annotations

import math
import re
from typing import Any, Dict, List, Optional, Set

import numpy as np
import torch

from .nvidia_tf import _collect, _int, _Kwargs, _t, _Vars
from .safe_pickle import TFNetworkState
from ..spec import Checkpoint, CheckpointError, NetworkSpec

__all__ = ["read_stylegan1_tf", "is_stylegan1_tf", "ordered_state_dict"]

FORMAT = "nvidia-tf"
G_KIND, D_KIND = "stylegan1.Generator", "stylegan1.Discriminator"
SG1_FUNCS = ("G_style", "G_synthesis", "G_mapping", "D_basic")

# static_kwargs consumed without effect on the weights or on gankit's forward pass.
_IGNORED_G = ("truncation_psi_val", "truncation_cutoff_val", "style_mixing_prob", "is_training", "is_validation",
              "is_template_graph", "randomize_noise", "structure", "force_clean_graph", "dlatent_broadcast")
_IGNORED_D = ("structure", "is_template_graph")


def is_stylegan1_tf(obj: Any) -> bool:
    """A ``(G, D, Gs)`` tuple whose states say StyleGAN1 (version 3 or its build functions)."""
    if not (isinstance(obj, tuple) and len(obj) == 3 and all(isinstance(n, TFNetworkState) for n in obj)):
        return False
    return any(n.state.get("version") == 3 or n.state.get("build_func_name") in SG1_FUNCS for n in obj)


def ordered_state_dict(kind: str, kwargs: Dict[str, Any], sd: Dict[str, torch.Tensor],
                       what: str) -> Dict[str, torch.Tensor]:
    """``sd`` in the order the ``kind`` module's ``state_dict()`` lists it (shapes and completeness are
    checked when the network is built, ``generators.loading.build``)."""
    from ..stylegan1 import state_dict_order
    return {k: sd[k] for k in state_dict_order(kind, sd)}


class _Used(_Vars):
    """``_Vars`` that records which variables were read (leftovers mean an unknown layout)."""

    def __init__(self, params: Dict[str, Any], net: str):
        super().__init__(params, net)
        self.used: Set[str] = set()

    def get(self, name: str) -> np.ndarray:
        self.used.add(name)
        return super().get(name)

    def leftovers(self, ignore=("lod", "synthesis/lod", "mapping/lod")) -> List[str]:
        return [k for k in self.params if k not in self.used and k not in ignore]


def _flag(kw: _Kwargs, key: str, default: bool, want: Optional[bool], label: str) -> bool:
    val = kw(key, default)
    if not isinstance(val, (bool, np.bool_, int)):
        raise CheckpointError(f"StyleGAN1 TF network {label}: {key}={val!r} is not a boolean")
    val = bool(val)
    if want is not None and val != want:
        raise CheckpointError(f"StyleGAN1 TF network {label}: {key}={val} is not supported")
    return val


def _blur_taps(v: Any, label: str) -> Optional[List[Any]]:
    if v is None:
        return None
    try:
        arr = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError):
        raise CheckpointError(f"StyleGAN1 TF network {label}: blur_filter {v!r} is not a list of taps") from None
    if arr.ndim != 1 or arr.size % 2 != 1 or arr.sum() == 0:
        raise CheckpointError(f"StyleGAN1 TF network {label}: blur_filter {v!r} is not supported "
                              "(needs an odd number of 1-D taps with a non-zero sum)")
    return [int(x) if float(x).is_integer() else float(x) for x in arr.tolist()]


def _fused(v: Any, res_list: List[int], label: str) -> List[int]:
    if isinstance(v, str) and v == "auto":
        return [r for r in res_list if r >= 128]
    if isinstance(v, (bool, np.bool_)):
        return list(res_list) if v else []
    raise CheckpointError(f"StyleGAN1 TF network {label}: fused_scale={v!r} (expected True, False or 'auto')")


def _lods(v: _Vars, pattern: str, label: str) -> int:
    """Number of progressive-growing levels: names ``pattern % l`` for l = 0..n-1, contiguous."""
    rx = re.compile(re.escape(pattern).replace("%d", r"(\d+)") + "$")
    found = sorted(int(m.group(1)) for k in v.params for m in [rx.match(k)] if m)
    if not found or found != list(range(len(found))):
        raise CheckpointError(f"StyleGAN1 TF network {label}: expected variables {pattern % 0} ... "
                              f"(one per resolution), found levels {found}")
    return len(found)


def _note_unknown(kw: _Kwargs, ignored, notes: List[str], label: str) -> None:
    kw.known.update(ignored)
    unknown = [k for k in kw.static if k not in kw.known]
    if unknown:
        notes.append(f"{label}: ignored static_kwargs unknown to the StyleGAN1 TF code: {unknown}")


def _dtype_note(kw: _Kwargs, notes: List[str], label: str) -> None:
    dt = kw("dtype", "float32")
    if dt != "float32":
        notes.append(f"{label}: built with dtype {dt!r} in TF; gankit computes in float32")


# --------------------------------------------------------------------------- generator


def _convert_generator(net: TFNetworkState, label: str, notes: List[str]) -> NetworkSpec:
    kw = _Kwargs(net.state.get("static_kwargs"), label)
    psi = kw("truncation_psi", 0.7)
    cutoff = kw("truncation_cutoff", 8)
    beta = kw("dlatent_avg_beta", 0.995)
    z_dim = _int(kw("latent_size", 512), "latent_size")
    c_dim = _int(kw("label_size", 0), "label_size")
    w_kw = _int(kw("dlatent_size", 512), "dlatent_size")
    n_map_kw = _int(kw("mapping_layers", 8), "mapping_layers")
    kw("mapping_fmaps", 512)
    lr_mul = float(kw("mapping_lrmul", 0.01))
    map_act = kw("mapping_nonlinearity", "lrelu")
    normalize = _flag(kw, "normalize_latents", True, None, label)
    img_channels_kw = _int(kw("num_channels", 3), "num_channels")
    res_kw = _int(kw("resolution", 1024), "resolution")
    for key in ("fmap_base", "fmap_decay", "fmap_max"):
        kw(key)
    _flag(kw, "use_styles", True, True, label)
    _flag(kw, "const_input_layer", True, True, label)
    use_noise = _flag(kw, "use_noise", True, None, label)
    act = kw("nonlinearity", "lrelu")
    _flag(kw, "use_wscale", True, True, label)
    _flag(kw, "use_pixel_norm", False, False, label)
    _flag(kw, "use_instance_norm", True, True, label)
    fused_scale = kw("fused_scale", "auto")
    blur = _blur_taps(kw("blur_filter", [1, 2, 1]), label)
    _dtype_note(kw, notes, label)
    _note_unknown(kw, _IGNORED_G, notes, label)
    for a, what in ((act, "nonlinearity"), (map_act, "mapping_nonlinearity")):
        if a not in ("lrelu", "relu"):
            raise CheckpointError(f"StyleGAN1 TF network {label}: {what}={a!r} is not supported")

    v = _Used(_collect(net), label)
    # Mapping, from shapes.
    n_map = 0
    while v.has(f"mapping/Dense{n_map}/weight"):
        n_map += 1
    if n_map == 0:
        raise CheckpointError(f"StyleGAN1 TF network {label}: no mapping/Dense0/weight")
    if n_map != n_map_kw:
        notes.append(f"{label}: {n_map} mapping layers in the file, static_kwargs say {n_map_kw}; using the file")
    dims = [v.shape(f"mapping/Dense{i}/weight") for i in range(n_map)]
    if v.has("mapping/LabelConcat/weight"):
        cs = v.shape("mapping/LabelConcat/weight")                   # [label_size, Z]
        if len(cs) != 2 or (c_dim and cs[0] != c_dim):
            raise CheckpointError(f"StyleGAN1 TF network {label}: LabelConcat/weight {list(cs)} does not fit "
                                  f"label_size {c_dim}")
        c_dim, z_dim = cs
    elif c_dim:
        raise CheckpointError(f"StyleGAN1 TF network {label}: label_size {c_dim} but no LabelConcat/weight")
    if any(len(d) != 2 for d in dims) or dims[0][0] != z_dim * (2 if c_dim else 1) or \
            any(dims[i][1] != dims[i + 1][0] for i in range(n_map - 1)):
        raise CheckpointError(f"StyleGAN1 TF network {label}: mapping Dense shapes {dims} do not chain from "
                              f"latent_size {z_dim}" + (" + labels" if c_dim else ""))
    w_dim = dims[-1][1]
    if w_dim != w_kw:
        notes.append(f"{label}: dlatent size {w_dim} from shapes, static_kwargs say {w_kw}")
    layer_features = dims[0][1] if n_map > 1 else w_dim

    # Synthesis, from shapes.
    n_lod = _lods(v, "synthesis/ToRGB_lod%d/weight", label)
    res = 4 * 2 ** (n_lod - 1)
    if res != res_kw:
        raise CheckpointError(f"StyleGAN1 TF network {label}: {n_lod} ToRGB levels make {res} px, static_kwargs "
                              f"say resolution {res_kw}")
    log2 = int(math.log2(res))
    block_res = [2 ** k for k in range(2, log2 + 1)]
    scope = {r: ("4x4/Conv" if r == 4 else f"{r}x{r}/Conv1") for r in block_res}
    channels = {str(r): v.shape(f"synthesis/{scope[r]}/weight")[-1] for r in block_res}
    img_channels = v.shape("synthesis/ToRGB_lod0/weight")[-1]
    if img_channels != img_channels_kw:
        notes.append(f"{label}: {img_channels} image channels from shapes, static_kwargs say {img_channels_kw}")
    fused_up = [r for r in _fused(fused_scale, block_res[1:], label)]

    sd: Dict[str, torch.Tensor] = {}

    def layer(p: str, tf: str, noise_idx: int, conv: Optional[str]) -> None:
        tf = "synthesis/" + tf
        if conv is not None:
            sd[p + "weight"] = v.conv(tf + "/weight", flip=(conv == "fused"))      # [out, in, 3, 3]
        sd[p + "bias"] = v.plain(tf + "/bias")
        C = sd[p + "bias"].shape[0]
        if use_noise:
            sd[p + "noise_strength"] = v.plain(tf + "/Noise/weight")              # [C]
            noise = v.get(f"synthesis/noise{noise_idx}")                          # [1, 1, r, r]
            if noise.ndim != 4 or noise.shape[:2] != (1, 1):
                raise CheckpointError(f"StyleGAN1 TF network {label}: noise{noise_idx} has shape "
                                      f"{list(noise.shape)}, expected [1, 1, r, r]")
            sd[p + "noise_const"] = _t(noise[0, 0])
        sd[p + "affine.weight"] = v.dense(tf + "/StyleMod/weight")                # [2C, w_dim]
        b = v.plain(tf + "/StyleMod/bias")                                        # [2C]
        if b.shape != (2 * C,):
            raise CheckpointError(f"StyleGAN1 TF network {label}: {tf}/StyleMod/bias has shape {list(b.shape)}, "
                                  f"expected [{2 * C}]")
        b[:C] += 1                     # TF: x * (1 + s) + b  ->  gankit: x * s' + b
        sd[p + "affine.bias"] = b

    for r in block_res:
        k, p = int(math.log2(r)), f"synthesis.b{r}."
        if r == 4:
            const = v.get("synthesis/4x4/Const/const")                            # [1, C4, 4, 4]
            if const.ndim != 4 or const.shape[0] != 1:
                raise CheckpointError(f"StyleGAN1 TF network {label}: 4x4/Const/const has shape "
                                      f"{list(const.shape)}")
            sd[p + "const"] = _t(const[0])
            layer(p + "conv0.", "4x4/Const", 0, None)
        else:
            layer(p + "conv0.", f"{r}x{r}/Conv0_up", 2 * k - 4, "fused" if r in fused_up else "conv")
        layer(p + "conv1.", scope[r], 2 * k - 3, "conv")
        tf = f"synthesis/ToRGB_lod{log2 - k}"
        sd[p + "torgb.weight"] = v.conv(tf + "/weight")                           # [K, C, 1, 1]
        sd[p + "torgb.bias"] = v.plain(tf + "/bias")
    sd["mapping.w_avg"] = v.plain("dlatent_avg")
    if c_dim:
        sd["mapping.embed.weight"] = v.dense("mapping/LabelConcat/weight")       # [Z, c_dim]
    for i in range(n_map):
        sd[f"mapping.fc{i}.weight"] = v.dense(f"mapping/Dense{i}/weight")
        sd[f"mapping.fc{i}.bias"] = v.plain(f"mapping/Dense{i}/bias")
    left = v.leftovers()
    if left:
        raise CheckpointError(f"StyleGAN1 TF network {label}: unexpected variables {left[:4]} "
                              "(an architecture gankit does not know)")

    applies = psi is not None and psi != 1 and cutoff is not None and cutoff > 0
    kwargs = dict(
        z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=res, img_channels=img_channels,
        mapping_kwargs=dict(num_layers=n_map, layer_features=layer_features, activation=map_act,
                            lr_multiplier=lr_mul, normalize_latents=normalize,
                            w_avg_beta=None if beta is None else float(beta)),
        synthesis_kwargs=dict(channels=channels, fused_up=fused_up, shared_noise=False, use_noise=use_noise,
                              norm_eps=1e-8, bias_before_blur=False, blur_filter=blur, activation=act),
        default_truncation_psi=float(psi) if applies else 1.0,
        default_truncation_cutoff=_int(cutoff, "truncation_cutoff") if applies else None,
    )
    return NetworkSpec(G_KIND, kwargs, ordered_state_dict(G_KIND, kwargs, sd, f"StyleGAN1 TF network {label}"))


# ----------------------------------------------------------------------- discriminator


def _convert_discriminator(net: TFNetworkState, label: str, notes: List[str]) -> NetworkSpec:
    kw = _Kwargs(net.state.get("static_kwargs"), label)
    img_channels_kw = _int(kw("num_channels", 1), "num_channels")          # D_basic's own defaults
    res_kw = _int(kw("resolution", 32), "resolution")
    c_dim = _int(kw("label_size", 0), "label_size")
    for key in ("fmap_base", "fmap_decay", "fmap_max"):
        kw(key)
    act = kw("nonlinearity", "lrelu")
    _flag(kw, "use_wscale", True, True, label)
    group = _int(kw("mbstd_group_size", 4), "mbstd_group_size")
    n_feat = _int(kw("mbstd_num_features", 1), "mbstd_num_features")
    fused_scale = kw("fused_scale", "auto")
    blur = _blur_taps(kw("blur_filter", [1, 2, 1]), label)
    _dtype_note(kw, notes, label)
    _note_unknown(kw, _IGNORED_D, notes, label)
    if act not in ("lrelu", "relu"):
        raise CheckpointError(f"StyleGAN1 TF network {label}: nonlinearity={act!r} is not supported")

    v = _Used(_collect(net), label)
    n_lod = _lods(v, "FromRGB_lod%d/weight", label)
    res = 4 * 2 ** (n_lod - 1)
    if res != res_kw:
        raise CheckpointError(f"StyleGAN1 TF network {label}: {n_lod} FromRGB levels make {res} px, "
                              f"static_kwargs say resolution {res_kw}")
    log2 = int(math.log2(res))
    img_channels = v.shape("FromRGB_lod0/weight")[2]
    if img_channels != img_channels_kw:
        notes.append(f"{label}: {img_channels} image channels from shapes, static_kwargs say {img_channels_kw}")
    all_res = [2 ** k for k in range(log2, 1, -1)]                           # [R, ..., 4]
    block_res = all_res[:-1]
    channels = {r: v.shape(f"FromRGB_lod{log2 - int(math.log2(r))}/weight")[-1] for r in all_res}
    mids = {r: v.shape(f"{r}x{r}/Conv0/weight")[-1] for r in block_res}
    mbstd_ch = n_feat if group > 1 else 0
    fc = v.shape("4x4/Dense0/weight")
    out = v.shape("4x4/Dense1/weight")
    if len(fc) != 2 or len(out) != 2 or out[1] != max(c_dim, 1):
        raise CheckpointError(f"StyleGAN1 TF network {label}: 4x4/Dense1/weight {list(out)} does not fit "
                              f"label_size {c_dim}")

    sd: Dict[str, torch.Tensor] = {}
    for r in all_res:
        lod = log2 - int(math.log2(r))
        p = f"b{r}."
        if r > 4:
            sd[p + "fromrgb.weight"] = v.conv(f"FromRGB_lod{lod}/weight")            # [C, K, 1, 1]
            sd[p + "fromrgb.bias"] = v.plain(f"FromRGB_lod{lod}/bias")
            sd[p + "conv0.weight"] = v.conv(f"{r}x{r}/Conv0/weight")                # [mid, C, 3, 3]
            sd[p + "conv0.bias"] = v.plain(f"{r}x{r}/Conv0/bias")
            sd[p + "conv1.weight"] = v.conv(f"{r}x{r}/Conv1_down/weight")           # [C/2, mid, 3, 3]
            sd[p + "conv1.bias"] = v.plain(f"{r}x{r}/Conv1_down/bias")
    sd["b4.fromrgb.weight"] = v.conv(f"FromRGB_lod{log2 - 2}/weight")
    sd["b4.fromrgb.bias"] = v.plain(f"FromRGB_lod{log2 - 2}/bias")
    sd["b4.conv.weight"] = v.conv("4x4/Conv/weight")                                # [C4, C4 + F, 3, 3]
    sd["b4.conv.bias"] = v.plain("4x4/Conv/bias")
    sd["b4.fc.weight"] = v.dense("4x4/Dense0/weight")                               # [F, 16 C4]
    sd["b4.fc.bias"] = v.plain("4x4/Dense0/bias")
    sd["b4.out.weight"] = v.dense("4x4/Dense1/weight")                              # [max(c, 1), F]
    sd["b4.out.bias"] = v.plain("4x4/Dense1/bias")
    left = v.leftovers(ignore=("lod",))
    if left:
        raise CheckpointError(f"StyleGAN1 TF network {label}: unexpected variables {left[:4]} "
                              "(an architecture gankit does not know)")
    kwargs = dict(
        c_dim=c_dim, img_resolution=res, img_channels=img_channels,
        channels={str(r): c for r, c in sorted(channels.items())},
        mid_channels={str(r): c for r, c in sorted(mids.items())}, fc_features=fc[1],
        fused_down=_fused(fused_scale, block_res, label), fromrgb_activation=True,
        mbstd_group_size=group, mbstd_num_channels=mbstd_ch, blur_filter=blur, activation=act,
    )
    return NetworkSpec(D_KIND, kwargs, ordered_state_dict(D_KIND, kwargs, sd, f"StyleGAN1 TF network {label}"))


# ------------------------------------------------------------------------------- entry


def read_stylegan1_tf(obj: Any) -> Checkpoint:
    """StyleGAN1 ``(G, D, Gs)`` tuple -> :class:`Checkpoint` (``Gs`` -> ``G_ema``, ``G``, ``D``)."""
    if not (isinstance(obj, tuple) and len(obj) == 3 and all(isinstance(n, TFNetworkState) for n in obj)):
        raise CheckpointError("not a TensorFlow-era NVIDIA pickle: expected a (G, D, Gs) tuple of network states")
    G, D, Gs = obj
    want = {"G": "G_style", "D": "D_basic", "Gs": "G_style"}
    for label, n in (("G", G), ("D", D), ("Gs", Gs)):
        ver, fn = n.state.get("version"), n.state.get("build_func_name")
        if ver != 3:
            raise CheckpointError(f"StyleGAN1 TF network {label} has network-state version {ver!r}, expected 3 "
                                  "(a mix of StyleGAN1 and later networks)")
        if fn is not None and fn != want[label]:
            raise CheckpointError(f"StyleGAN1 TF network {label} is built by {fn!r}, expected {want[label]!r}")
    notes: List[str] = []
    networks = {
        "G_ema": _convert_generator(Gs, "Gs", notes),
        "G": _convert_generator(G, "G", notes),
        "D": _convert_discriminator(D, "D", notes),
    }
    meta: Dict[str, Any] = {
        "tf_version": 3,
        "build_func_names": {k: n.state.get("build_func_name") for k, n in (("G", G), ("D", D), ("Gs", Gs))},
    }
    if notes:
        meta["notes"] = notes
    return Checkpoint(format=FORMAT, networks=networks, meta=meta)
