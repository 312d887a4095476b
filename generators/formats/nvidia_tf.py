"""Reader for TensorFlow-era NVIDIA pickles: ``(G, D, Gs)`` tuples of network states.

Version 4 (StyleGAN2) and 5 (StyleGAN2-ADA TF) states are converted to the PyTorch naming
and layouts of stylegan2-ada-pytorch, mirroring NVIDIA's ``legacy.py`` converter (kwargs with
the converter's defaults, unknown kwargs rejected, transposes, +1 on style biases, spatial
flips of the up-sampling kernels, ``noise[0, 0]``, resample filters built from the kernel).
The state dicts are emitted in the exact order the PyTorch modules would list them.
Version 3 (StyleGAN1: ``G_style`` / ``D_basic``) is handed to :mod:`.stylegan1_tf`.
"""
from __future__ import annotations

import math
import re
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from .safe_pickle import TFNetworkState
from ..spec import Checkpoint, CheckpointError, NetworkSpec

__all__ = ["read_nvidia_tf", "setup_filter"]

FORMAT = "nvidia-tf"
_DEFAULT_FILTER = [1, 3, 3, 1]

# Keys NVIDIA's converter accepts and ignores (the stylegan3 repo's version adds the last two).
_IGNORED_G = ("truncation_psi", "truncation_cutoff", "style_mixing_prob", "structure", "conditioning", "fused_modconv")
_IGNORED_D = ("structure", "conditioning")


# ------------------------------------------------------------------------------ helpers


def setup_filter(taps: Any) -> torch.Tensor:
    """NVIDIA's ``upfirdn2d.setup_filter`` (normalize, no flip, gain 1) in float32.

    [1, 3, 3, 1] -> outer product / 64, shape [4, 4]; 1-D filters of >= 8 taps stay 1-D.
    """
    f = torch.as_tensor(taps, dtype=torch.float32)
    if f.ndim == 0:
        f = f[None]
    if f.ndim == 1 and f.numel() < 8:
        f = torch.outer(f, f)
    return f / f.sum()


class _Kwargs:
    """``static_kwargs`` lookups that remember which keys were consumed (like the converter)."""

    def __init__(self, static: Any, net: str):
        if not isinstance(static, dict):
            raise CheckpointError(f"TF network {net}: static_kwargs is a {type(static).__name__}, expected a dict")
        self.static, self.net, self.known = static, net, set()

    def __call__(self, key: str, default: Any = None, none: Any = None) -> Any:
        self.known.add(key)
        val = self.static.get(key, default)
        val = none if val is None else val
        return val.item() if isinstance(val, np.generic) else val

    def reject_unknown(self, ignored: Tuple[str, ...]) -> None:
        self.known.update(ignored)
        unknown = [k for k in self.static if k not in self.known]
        if unknown:
            raise CheckpointError(f"unknown TensorFlow kwarg {unknown[0]!r} in network {self.net} "
                                  "(NVIDIA's converter refuses it too)")


def _int(v: Any, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise CheckpointError(f"TF kwarg {what} is {v!r}, expected an integer")
    return int(v)


def _taps(v: Any, what: str) -> List[Any]:
    try:
        arr = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError):
        raise CheckpointError(f"TF kwarg {what} is {v!r}, expected a list of filter taps") from None
    if arr.ndim != 1 or arr.size == 0 or arr.sum() == 0:
        raise CheckpointError(f"TF kwarg {what} is {v!r}, expected a 1-D list of taps with a non-zero sum")
    return [int(x) if float(x).is_integer() else float(x) for x in arr.tolist()]


def _collect(net: TFNetworkState, prefix: str = "") -> Dict[str, Any]:
    """All variables of a network and its components, component variables prefixed ``name/``."""
    st = net.state
    out: Dict[str, Any] = {}
    variables = st.get("variables")
    if not isinstance(variables, (list, tuple)):
        raise CheckpointError(f"TF network {st.get('name')!r} has no variables list")
    for item in variables:
        if not (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str)):
            raise CheckpointError(f"TF network {st.get('name')!r} has a malformed variable entry")
        out[prefix + item[0]] = item[1]
    comps = st.get("components") or {}
    if not isinstance(comps, dict):
        raise CheckpointError(f"TF network {st.get('name')!r} has malformed components")
    for name, comp in comps.items():
        if not isinstance(comp, TFNetworkState):
            raise CheckpointError(f"TF component {name!r} is a {type(comp).__name__}, not a network state")
        out.update(_collect(comp, f"{prefix}{name}/"))
    return out


class _Vars:
    """TF variables by name, converted to float32 torch tensors."""

    def __init__(self, params: Dict[str, Any], net: str):
        self.params, self.net = params, net

    def get(self, name: str) -> np.ndarray:
        if name not in self.params:
            raise CheckpointError(f"TF network {self.net} is missing variable {name!r}")
        v = self.params[name]
        if not isinstance(v, (np.ndarray, np.generic, float, int)):
            raise CheckpointError(f"TF variable {self.net}/{name} is a {type(v).__name__}, not an array")
        return np.asarray(v, dtype=np.float32)

    def shape(self, name: str) -> Tuple[int, ...]:
        return tuple(self.get(name).shape)

    def has(self, name: str) -> bool:
        return name in self.params

    def conv(self, name: str, flip: bool = False) -> torch.Tensor:
        """[kh, kw, in, out] -> [out, in, kh, kw] (spatially reversed first when ``flip``)."""
        w = self.get(name)
        if w.ndim != 4:
            raise CheckpointError(f"TF variable {self.net}/{name} has shape {list(w.shape)}, expected 4-D")
        if flip:
            w = w[::-1, ::-1]
        return _t(w.transpose(3, 2, 0, 1))

    def dense(self, name: str) -> torch.Tensor:
        """[in, out] -> [out, in]."""
        w = self.get(name)
        if w.ndim != 2:
            raise CheckpointError(f"TF variable {self.net}/{name} has shape {list(w.shape)}, expected 2-D")
        return _t(w.T)

    def plain(self, name: str) -> torch.Tensor:
        return _t(self.get(name))


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(a, dtype=np.float32, order="C", copy=True))


def _fp16_blocks(num_fp16_res: int, log2: int, block_res: List[int]) -> int:
    """NVIDIA's rule (fp16 for res >= max(2^(log2 + 1 - n), 8)) as a count of fp16 blocks."""
    fp16_res = max(2 ** (log2 + 1 - num_fp16_res), 8)
    return sum(1 for r in block_res if r >= fp16_res)


def _log2_res(res: Any, net: str) -> int:
    res = _int(res, f"{net} resolution")
    log2 = int(round(math.log2(res))) if res > 0 else 0
    if res < 4 or 2 ** log2 != res:
        raise CheckpointError(f"TF network {net}: resolution {res} is not a power of two >= 4")
    return log2


def _channels(formula: Dict[int, int], from_shapes: Dict[int, int], net: str, notes: List[str]) -> Dict[str, int]:
    """Channels per resolution: the variable shapes win; disagreement with the kwargs is noted."""
    diff = {r: (formula[r], from_shapes[r]) for r in from_shapes if formula.get(r) != from_shapes[r]}
    if diff:
        notes.append(f"{net}: channels from variable shapes differ from fmap_base/fmap_max "
                     f"(res: (kwargs, shapes)) {diff}; using the shapes")
    return {str(r): from_shapes[r] for r in sorted(from_shapes)}


def _mapping_layers(v: _Vars, fmt: str, n: int, net: str) -> List[Tuple[int, int]]:
    """[(in, out)] of ``fmt.format(i)`` dense layers i < n; more of them than n is an error."""
    dims = []
    for i in range(n):
        s = v.shape(fmt.format(i) + "/weight")
        if len(s) != 2:
            raise CheckpointError(f"TF network {net}: {fmt.format(i)}/weight has shape {list(s)}, expected 2-D")
        dims.append(s)
    return dims


# --------------------------------------------------------------------------- generator


def _convert_generator(net: TFNetworkState, label: str, notes: List[str]) -> NetworkSpec:
    st = net.state
    kw = _Kwargs(st.get("static_kwargs"), label)
    z_dim = _int(kw("latent_size", 512), "latent_size")
    c_dim = _int(kw("label_size", 0), "label_size")
    w_dim = _int(kw("dlatent_size", 512), "dlatent_size")
    res = kw("resolution", 1024)
    img_channels = _int(kw("num_channels", 3), "num_channels")
    num_layers = _int(kw("mapping_layers", 8), "mapping_layers")
    embed_features = kw("label_fmaps", None)
    layer_features = kw("mapping_fmaps", None)
    map_act = kw("mapping_nonlinearity", "lrelu")
    lr_mul = float(kw("mapping_lrmul", 0.01))
    w_avg_beta = float(kw("w_avg_beta", 0.995, none=1))
    channel_base = _int(kw("fmap_base", 16384), "fmap_base") * 2
    channel_max = _int(kw("fmap_max", 512), "fmap_max")
    num_fp16_res = _int(kw("num_fp16_res", 0), "num_fp16_res")
    conv_clamp = kw("conv_clamp", None)
    architecture = kw("architecture", "skip")
    kernel = _taps(kw("resample_kernel", _DEFAULT_FILTER), "resample_kernel")
    use_noise = bool(kw("use_noise", True))
    act = kw("nonlinearity", "lrelu")
    kw.reject_unknown(_IGNORED_G)
    if architecture not in ("orig", "skip", "resnet"):
        raise CheckpointError(f"TF network {label}: unknown architecture {architecture!r}")
    log2 = _log2_res(res, label)
    res = 2 ** log2
    embed_features = (w_dim if embed_features is None else _int(embed_features, "label_fmaps")) if c_dim > 0 else 0
    layer_features = w_dim if layer_features is None else _int(layer_features, "mapping_fmaps")

    v = _Vars(_collect(net), label)
    if any(re.match(r"synthesis/ToRGB_lod\d+/", k) for k in v.params):
        raise CheckpointError(f"TF network {label}: progressive-growing ToRGB_lod layouts (StyleGAN2 configs a-d) "
                              "are not supported (NVIDIA's converter fails on them too)")
    if v.has("mapping/LabelConcat/weight"):
        raise CheckpointError(f"TF network {label}: StyleGAN2 LabelConcat conditioning has no PyTorch equivalent "
                              "(NVIDIA's converter cannot convert it either)")

    # Mapping: shapes first, kwargs as cross-check.
    dims = _mapping_layers(v, "mapping/Dense{}", num_layers, label)
    if c_dim > 0:
        es = v.shape("mapping/LabelEmbed/weight")                    # [c_dim, embed]
        if es[0] != c_dim:
            raise CheckpointError(f"TF network {label}: LabelEmbed/weight {list(es)} does not fit label_size {c_dim}")
        if es[1] != embed_features:
            notes.append(f"{label}: label embedding width {es[1]} from shapes, kwargs say {embed_features}")
            embed_features = es[1]
    if dims:
        if dims[0][0] != z_dim + embed_features or dims[-1][1] != w_dim:
            raise CheckpointError(f"TF network {label}: mapping Dense shapes {dims} do not fit latent_size {z_dim}"
                                  f" + embed {embed_features} -> dlatent_size {w_dim}")
        if len(dims) > 1 and dims[0][1] != layer_features:
            notes.append(f"{label}: mapping width {dims[0][1]} from shapes, kwargs say {layer_features}")
            layer_features = dims[0][1]
    if v.shape("dlatent_avg") != (w_dim,):
        raise CheckpointError(f"TF network {label}: dlatent_avg has shape {list(v.shape('dlatent_avg'))}, "
                              f"expected [{w_dim}]")

    # Synthesis channels: C_r = output width of the block's second (or only) conv.
    block_res = [2 ** i for i in range(2, log2 + 1)]
    scope = {r: ("4x4/Conv" if r == 4 else f"{r}x{r}/Conv1") for r in block_res}
    shapes = {r: v.shape(f"synthesis/{scope[r]}/weight")[-1] for r in block_res}
    formula = {r: min(channel_base // r, channel_max) for r in block_res}
    channels = _channels(formula, shapes, label, notes)

    # State dict in the PyTorch module order: synthesis (b4 ... bR), then mapping.
    sd: Dict[str, torch.Tensor] = {}
    f_kernel, f_default = setup_filter(kernel), setup_filter(_DEFAULT_FILTER)

    def mod_layer(p: str, tf: str, flip: bool, noise_idx: Optional[int], filt: torch.Tensor) -> None:
        # SynthesisLayer: weight, noise_strength, bias, resample_filter, noise_const, affine.{weight, bias}
        sd[p + "weight"] = v.conv(f"synthesis/{tf}/weight", flip=flip)            # [out, in, 3, 3]
        if use_noise:
            sd[p + "noise_strength"] = v.plain(f"synthesis/{tf}/noise_strength")  # []
        sd[p + "bias"] = v.plain(f"synthesis/{tf}/bias")                          # [out]
        sd[p + "resample_filter"] = filt.clone()                                  # [4, 4]
        if use_noise:
            noise = v.get(f"synthesis/noise{noise_idx}")                          # [1, 1, s, s]
            if noise.ndim != 4:
                raise CheckpointError(f"TF network {label}: noise{noise_idx} has shape {list(noise.shape)}")
            sd[p + "noise_const"] = _t(noise[0, 0])                               # [s, s]
        sd[p + "affine.weight"] = v.dense(f"synthesis/{tf}/mod_weight")           # [in, w_dim]
        sd[p + "affine.bias"] = v.plain(f"synthesis/{tf}/mod_bias") + 1           # [in]

    for r in block_res:
        k = int(math.log2(r))
        p = f"synthesis.b{r}."
        if r == 4:
            const = v.get("synthesis/4x4/Const/const")                            # [1, C4, 4, 4]
            if const.ndim != 4 or const.shape[0] != 1:
                raise CheckpointError(f"TF network {label}: 4x4/Const/const has shape {list(const.shape)}")
            sd[p + "const"] = _t(const[0])                                        # [C4, 4, 4]
        sd[p + "resample_filter"] = f_kernel.clone()
        if r > 4:
            mod_layer(p + "conv0.", f"{r}x{r}/Conv0_up", True, 2 * k - 5, f_kernel)
        mod_layer(p + "conv1.", scope[r], False, 2 * k - 4, f_default)
        if r == res or architecture == "skip":
            tf = f"synthesis/{r}x{r}/ToRGB"
            sd[p + "torgb.weight"] = v.conv(tf + "/weight")                       # [K, C_r, 1, 1]
            sd[p + "torgb.bias"] = v.plain(tf + "/bias")
            sd[p + "torgb.affine.weight"] = v.dense(tf + "/mod_weight")
            sd[p + "torgb.affine.bias"] = v.plain(tf + "/mod_bias") + 1
        if r > 4 and architecture == "resnet":
            sd[p + "skip.weight"] = v.conv(f"synthesis/{r}x{r}/Skip/weight", flip=True)   # [C_r, C_{r/2}, 1, 1]
            sd[p + "skip.resample_filter"] = f_kernel.clone()
    sd["mapping.w_avg"] = v.plain("dlatent_avg")                                  # [w_dim]
    if c_dim > 0:
        sd["mapping.embed.weight"] = v.dense("mapping/LabelEmbed/weight")         # [embed, c_dim]
        sd["mapping.embed.bias"] = v.plain("mapping/LabelEmbed/bias")
    for i in range(num_layers):
        sd[f"mapping.fc{i}.weight"] = v.dense(f"mapping/Dense{i}/weight")         # [out, in]
        sd[f"mapping.fc{i}.bias"] = v.plain(f"mapping/Dense{i}/bias")
    _check_g_shapes(sd, channels, block_res, img_channels, w_dim, label)

    kwargs = dict(
        z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=res, img_channels=img_channels,
        mapping_kwargs=dict(num_layers=num_layers, embed_features=embed_features, layer_features=layer_features,
                            activation=map_act, lr_multiplier=lr_mul, w_avg_beta=w_avg_beta),
        synthesis_kwargs=dict(
            architecture=architecture, channels=channels,
            conv_clamp=None if conv_clamp is None else float(conv_clamp),
            num_fp16_res=_fp16_blocks(num_fp16_res, log2, block_res),
            use_noise=use_noise, activation=act, resample_filter=kernel,
        ),
    )
    return NetworkSpec(kind="stylegan2.Generator", kwargs=kwargs, state_dict=sd)


def _check_g_shapes(sd: Dict[str, torch.Tensor], channels: Dict[str, int], block_res: List[int],
                    img_channels: int, w_dim: int, label: str) -> None:
    """Every converted synthesis tensor must have the shape the PyTorch module would have."""
    for r in block_res:
        c, p = channels[str(r)], f"synthesis.b{r}."
        cin = channels[str(r // 2)] if r > 4 else c
        want = {p + "conv1.weight": [c, c, 3, 3], p + "conv1.bias": [c], p + "conv1.affine.weight": [c, w_dim]}
        if r == 4:
            want[p + "const"] = [c, 4, 4]
        else:
            want.update({p + "conv0.weight": [c, cin, 3, 3], p + "conv0.affine.weight": [cin, w_dim],
                         p + "conv0.bias": [c], p + "conv0.noise_const": [r, r], p + "skip.weight": [c, cin, 1, 1]})
        want.update({p + "torgb.weight": [img_channels, c, 1, 1], p + "torgb.affine.weight": [c, w_dim],
                     p + "conv1.noise_const": [r, r]})
        for name, shape in want.items():
            if name in sd and list(sd[name].shape) != shape:
                raise CheckpointError(f"TF network {label}: {name} has shape {list(sd[name].shape)} after "
                                      f"conversion, expected {shape}")


# ----------------------------------------------------------------------- discriminator


def _convert_discriminator(net: TFNetworkState, label: str, notes: List[str]) -> NetworkSpec:
    st = net.state
    kw = _Kwargs(st.get("static_kwargs"), label)
    c_dim = _int(kw("label_size", 0), "label_size")
    res = kw("resolution", 1024)
    img_channels = _int(kw("num_channels", 3), "num_channels")
    architecture = kw("architecture", "resnet")
    channel_base = _int(kw("fmap_base", 16384), "fmap_base") * 2
    channel_max = _int(kw("fmap_max", 512), "fmap_max")
    num_fp16_res = _int(kw("num_fp16_res", 0), "num_fp16_res")
    conv_clamp = kw("conv_clamp", None)
    cmap_dim = kw("mapping_fmaps", None)
    act = kw("nonlinearity", "lrelu")
    kernel = _taps(kw("resample_kernel", _DEFAULT_FILTER), "resample_kernel")
    freeze_layers = _int(kw("freeze_layers", 0), "freeze_layers")
    map_layers = _int(kw("mapping_layers", 0), "mapping_layers")
    map_lr = float(kw("mapping_lrmul", 0.1))
    mbstd_group = kw("mbstd_group_size", None)
    mbstd_ch = _int(kw("mbstd_num_features", 1), "mbstd_num_features")
    kw.reject_unknown(_IGNORED_D)
    log2 = _log2_res(res, label)
    res = 2 ** log2
    mbstd_group = None if mbstd_group is None else _int(mbstd_group, "mbstd_group_size")

    params = _collect(net)
    for name in list(params):  # progressive-growing FromRGB_lod{n}: renamed, 'orig' architecture
        m = re.fullmatch(r"FromRGB_lod(\d+)/(.*)", name)
        if m:
            r = res // (2 ** int(m.group(1)))
            params[f"{r}x{r}/FromRGB/{m.group(2)}"] = params[name]
            architecture = "orig"
    if architecture not in ("orig", "skip", "resnet"):
        raise CheckpointError(f"TF network {label}: unknown architecture {architecture!r}")
    v = _Vars(params, label)

    block_res = [2 ** i for i in range(log2, 2, -1)]                 # [R, ..., 8]
    shapes = {r: v.shape(f"{r}x{r}/Conv0/weight")[-1] for r in block_res}
    shapes[4] = v.shape("4x4/Conv/weight")[-1]
    formula = {r: min(channel_base // r, channel_max) for r in block_res + [4]}
    channels = _channels(formula, shapes, label, notes)
    c4 = channels["4"]
    conv4_in = v.shape("4x4/Conv/weight")[2]
    if conv4_in != c4 + mbstd_ch:
        raise CheckpointError(f"TF network {label}: 4x4/Conv/weight has {conv4_in} input channels, expected "
                              f"{c4} + {mbstd_ch} (mbstd_num_features)")
    cmap_dim = (c4 if cmap_dim is None else _int(cmap_dim, "mapping_fmaps")) if c_dim > 0 else 0
    out_w = v.shape("Output/weight")                                 # [C4, max(cmap_dim, 1)]
    if c_dim > 0 and out_w[-1] != cmap_dim:
        notes.append(f"{label}: cmap_dim {out_w[-1]} from Output/weight, kwargs say {cmap_dim}")
        cmap_dim = out_w[-1]
    if out_w[-1] != max(cmap_dim, 1):
        raise CheckpointError(f"TF network {label}: Output/weight has shape {list(out_w)}, expected "
                              f"[{c4}, {max(cmap_dim, 1)}]")

    sd: Dict[str, torch.Tensor] = {}
    f_kernel, f_default = setup_filter(kernel), setup_filter(_DEFAULT_FILTER)
    layer_idx = 0

    def conv2d(p: str, tf: str, filt: torch.Tensor, bias: bool = True, frozen: bool = False) -> None:
        # Conv2dLayer: trainable -> weight, bias, resample_filter; frozen -> resample_filter, weight, bias
        if frozen:
            sd[p + "resample_filter"] = filt.clone()
        sd[p + "weight"] = v.conv(tf + "/weight")                                  # [out, in, kh, kw]
        if bias:
            sd[p + "bias"] = v.plain(tf + "/bias")
        if not frozen:
            sd[p + "resample_filter"] = filt.clone()

    for i, r in enumerate(block_res):
        p, tf = f"b{r}.", f"{r}x{r}/"
        sd[p + "resample_filter"] = f_kernel.clone()
        layers = []
        if i == 0 or architecture == "skip":
            layers.append(("fromrgb", tf + "FromRGB", f_default, True))
        layers += [("conv0", tf + "Conv0", f_default, True), ("conv1", tf + "Conv1_down", f_kernel, True)]
        if architecture == "resnet":
            layers.append(("skip", tf + "Skip", f_kernel, False))
        for name, tf_name, filt, bias in layers:
            conv2d(p + name + ".", tf_name, filt, bias, frozen=layer_idx < freeze_layers)
            layer_idx += 1
    if c_dim > 0:
        embed = v.shape("LabelEmbed/weight")                         # [c_dim, embed]
        if embed[0] != c_dim:
            raise CheckpointError(f"TF network {label}: LabelEmbed/weight {list(embed)} does not fit label_size")
        sd["mapping.embed.weight"] = v.dense("LabelEmbed/weight")
        sd["mapping.embed.bias"] = v.plain("LabelEmbed/bias")
        dims = _mapping_layers(v, "Mapping{}", map_layers, label)
        for j in range(map_layers):
            sd[f"mapping.fc{j}.weight"] = v.dense(f"Mapping{j}/weight")
            sd[f"mapping.fc{j}.bias"] = v.plain(f"Mapping{j}/bias")
        embed_features = embed[1]
        layer_features = dims[0][1] if len(dims) > 1 else cmap_dim
        mapping_kw = dict(num_layers=map_layers, embed_features=embed_features, layer_features=layer_features,
                          activation=act, lr_multiplier=map_lr)
    else:
        mapping_kw = dict(num_layers=0, embed_features=0, layer_features=0, activation=act, lr_multiplier=map_lr)
    if architecture == "skip":
        conv2d("b4.fromrgb.", "4x4/FromRGB", f_default)
    conv2d("b4.conv.", "4x4/Conv", f_default)                        # [C4, C4 + mbstd, 3, 3]
    sd["b4.fc.weight"] = v.dense("4x4/Dense0/weight")                # [C4, 16 * C4]
    sd["b4.fc.bias"] = v.plain("4x4/Dense0/bias")
    sd["b4.out.weight"] = v.dense("Output/weight")                   # [max(cmap_dim, 1), C4]
    sd["b4.out.bias"] = v.plain("Output/bias")
    if list(sd["b4.fc.weight"].shape) != [c4, 16 * c4]:
        raise CheckpointError(f"TF network {label}: 4x4/Dense0/weight converts to {list(sd['b4.fc.weight'].shape)},"
                              f" expected [{c4}, {16 * c4}]")

    kwargs = dict(
        c_dim=c_dim, img_resolution=res, img_channels=img_channels, architecture=architecture,
        channels=channels, cmap_dim=cmap_dim,
        conv_clamp=None if conv_clamp is None else float(conv_clamp),
        num_fp16_res=_fp16_blocks(num_fp16_res, log2, block_res),
        activation=act, resample_filter=kernel,
        mbstd_group_size=mbstd_group, mbstd_num_channels=mbstd_ch,
        mapping_kwargs=mapping_kw,
    )
    return NetworkSpec(kind="stylegan2.Discriminator", kwargs=kwargs, state_dict=sd)


# ------------------------------------------------------------------------------- entry


def read_nvidia_tf(obj: Any) -> Checkpoint:
    """TF-era ``(G, D, Gs)`` tuple -> :class:`Checkpoint` (``Gs`` -> ``G_ema``, ``G``, ``D``)."""
    if not (isinstance(obj, tuple) and len(obj) == 3 and all(isinstance(n, TFNetworkState) for n in obj)):
        raise CheckpointError("not a TensorFlow-era NVIDIA pickle: expected a (G, D, Gs) tuple of network states")
    from .stylegan1_tf import is_stylegan1_tf, read_stylegan1_tf
    if is_stylegan1_tf(obj):
        return read_stylegan1_tf(obj)
    G, D, Gs = obj
    versions = []
    for label, net in (("G", G), ("D", D), ("Gs", Gs)):
        ver = net.state.get("version")
        versions.append(ver)
        if ver not in (4, 5):
            raise CheckpointError(f"TF network {label} has network-state version {ver!r}; only 4 (StyleGAN2) and "
                                  "5 (StyleGAN2-ADA) are supported")
    notes: List[str] = []
    networks = {
        "G_ema": _convert_generator(Gs, "Gs", notes),
        "G": _convert_generator(G, "G", notes),
        "D": _convert_discriminator(D, "D", notes),
    }
    meta: Dict[str, Any] = {
        "tf_version": versions[2],
        "build_func_names": {k: n.state.get("build_func_name") for k, n in (("G", G), ("D", D), ("Gs", Gs))},
    }
    if notes:
        meta["notes"] = notes
    return Checkpoint(format=FORMAT, networks=networks, meta=meta)
