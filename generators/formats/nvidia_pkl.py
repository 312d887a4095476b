"""Reader for PyTorch-era NVIDIA network pickles (stylegan2-ada-pytorch, stylegan3).

The unpickled object (see :func:`generators.formats.safe_pickle.load_pickle`) is a dict
with ``G``, ``D``, ``G_ema`` and optionally ``augment_pipe`` / ``training_set_kwargs``.
Each network is a tree of :class:`PersistentObject` (class name + instance ``__dict__``).
Everything here is derived from that per-module state and from tensor shapes – never from
file names, init kwargs or repository defaults, which differ between NVIDIA's repos.

The state dicts reproduce NVIDIA's ``state_dict()``: depth first over ``_modules``, each
module's ``_parameters`` then ``_buffers`` (``None`` values and non-persistent buffers
skipped), dotted names.
"""
from __future__ import annotations

import math
import re
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .safe_pickle import PersistentObject
from ..spec import Checkpoint, CheckpointError, NetworkSpec

__all__ = [
    "read_nvidia_pkl", "module_state_dict", "generator_family", "read_sg2_generator",
    "read_sg2_discriminator", "read_sg3_generator", "filter_taps",
]

FORMAT = "nvidia-pkl"
NETWORK_NAMES = ("G_ema", "G", "D")


# ------------------------------------------------------------------------ small helpers


def _children(mod: PersistentObject) -> Dict[str, Any]:
    mods = mod.state.get("_modules")
    if not isinstance(mods, dict):
        raise CheckpointError(f"{mod.class_name} state has no _modules dict")
    return mods


def _child(mod: PersistentObject, name: str, where: str, required: bool = True) -> Optional[PersistentObject]:
    sub = _children(mod).get(name)
    if sub is None:
        if required:
            raise CheckpointError(f"{where}: missing submodule {name!r}")
        return None
    if not isinstance(sub, PersistentObject):
        raise CheckpointError(f"{where}.{name} is a {type(sub).__name__}, not a pickled network module")
    return sub


def _tensor(mod: PersistentObject, name: str, where: str, required: bool = True) -> Optional[torch.Tensor]:
    """A parameter or buffer by name (frozen layers keep weights in ``_buffers``)."""
    for group in ("_parameters", "_buffers"):
        t = (mod.state.get(group) or {}).get(name)
        if t is not None:
            if not isinstance(t, torch.Tensor):
                raise CheckpointError(f"{where}.{name} is a {type(t).__name__}, not a tensor")
            return t
    if required:
        raise CheckpointError(f"{where}: missing tensor {name!r}")
    return None


_MISSING = object()


def _attr(mod: PersistentObject, name: str, where: str, default: Any = _MISSING) -> Any:
    if name in mod.state:
        return mod.state[name]
    if default is _MISSING:
        raise CheckpointError(f"{where} ({mod.class_name}) has no attribute {name!r}")
    return default


def _int(v: Any, what: str) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise CheckpointError(f"{what} is {v!r}, expected an integer")
    return int(v)


def _float(v: Any, what: str) -> float:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise CheckpointError(f"{what} is {v!r}, expected a number")
    return float(v)


def _bool(v: Any, what: str) -> bool:
    if not isinstance(v, (bool, np.bool_)):
        raise CheckpointError(f"{what} is {v!r}, expected a bool")
    return bool(v)




def _mapping_layers(m, where, c_dim, allow_empty):
    """The ``fc0..fc{n-1}`` layers and the optional ``embed`` of a mapping network, checked."""
    mods = _children(m)
    fcs = []
    while f"fc{len(fcs)}" in mods:
        fcs.append(_child(m, f"fc{len(fcs)}", where))
    extra = [n for n in mods if n != "embed" and not re.fullmatch(r"fc\d+", n)]
    if extra or len(fcs) != sum(1 for n in mods if re.fullmatch(r"fc\d+", n)) or not (fcs or allow_empty):
        raise CheckpointError(f"{where}: unexpected submodules {sorted(mods)}")
    n_attr = _attr(m, "num_layers", where, None)
    if n_attr is not None and _int(n_attr, f"{where}.num_layers") != len(fcs):
        raise CheckpointError(f"{where}: num_layers is {n_attr} but there are {len(fcs)} fc layers")
    embed = _child(m, "embed", where, required=False)
    if (embed is not None) != (c_dim > 0):
        raise CheckpointError(f"{where}: c_dim is {c_dim} but the label embedding is "
                              f"{'present' if embed is not None else 'absent'}")
    return fcs, embed

def _collect_clamp_act(layer, where, clamps, acts):
    """Record one layer's conv_clamp and activation for the agreement checks."""
    clamps.append((where, _clamp(_attr(layer, "conv_clamp", where), f"{where}.conv_clamp")))
    acts.append((where, _attr(layer, "activation", where)))

def _clamp(v: Any, what: str) -> Optional[float]:
    return None if v is None else _float(v, what)


def _same(values: Sequence[Tuple[str, Any]], what: str) -> Any:
    """The single value all (where, value) pairs agree on; CheckpointError naming a disagreement."""
    if not values:
        raise CheckpointError(f"no layer tells the {what}")
    first_where, first = values[0]
    for where, v in values[1:]:
        if v != first:
            raise CheckpointError(f"layers disagree on {what}: {first_where} has {first!r}, {where} has {v!r}")
    return first


def module_state_dict(mod: PersistentObject, prefix: str = "") -> Dict[str, torch.Tensor]:
    """NVIDIA ``state_dict()`` of a pickled module tree (names and order)."""
    out: Dict[str, torch.Tensor] = {}

    def visit(m: PersistentObject, pre: str) -> None:
        st = m.state
        skip = st.get("_non_persistent_buffers_set") or set()
        for group in ("_parameters", "_buffers"):
            tensors = st.get(group)
            if not isinstance(tensors, dict):
                raise CheckpointError(f"{pre or m.class_name}: {m.class_name} state has no {group} dict")
            for name, t in tensors.items():
                if t is None or (group == "_buffers" and name in skip):
                    continue
                if not isinstance(t, torch.Tensor):
                    raise CheckpointError(f"{pre}{name} is a {type(t).__name__}, not a tensor")
                if pre + name in out:
                    raise CheckpointError(f"duplicate tensor name {pre + name!r}")
                out[pre + name] = t
        for name, sub in _children(m).items():
            if sub is None:
                continue
            if not isinstance(sub, PersistentObject):
                raise CheckpointError(f"{pre}{name} is a {type(sub).__name__}, not a pickled network module")
            visit(sub, f"{pre}{name}.")

    visit(mod, prefix)
    return out


def _walk(mod: PersistentObject, path: str = "") -> Iterator[Tuple[str, PersistentObject]]:
    yield path, mod
    for name, sub in _children(mod).items():
        if isinstance(sub, PersistentObject):
            yield from _walk(sub, f"{path}.{name}" if path else name)


def filter_taps(f: torch.Tensor, where: str) -> List[Any]:
    """1-D taps of a stored resample filter (2-D outer product normalised to sum 1, or 1-D).

    Integer-looking taps come back as ints ([1, 3, 3, 1]); a non-separable 2-D filter comes
    back as a nested list.
    """
    f64 = f.detach().to(torch.float64).cpu()
    if f64.ndim == 1:
        k = f64
    elif f64.ndim == 2 and f64.shape[0] == f64.shape[1] and f64.numel() > 0:
        k = f64.sum(dim=1)                      # row sums of outer(k, k) / sum(k)^2 = k / sum(k)
        scale = float(f64.abs().max()) or 1.0
        if not torch.allclose(torch.outer(k, k), f64, rtol=0, atol=1e-6 * scale):
            return f64.tolist()
    else:
        raise CheckpointError(f"{where}: resample filter of shape {list(f.shape)} is neither 1-D nor square 2-D")
    nz = k[k != 0].abs()
    if nz.numel() == 0:
        raise CheckpointError(f"{where}: resample filter is all zeros")
    ints = k / nz.min()
    if torch.allclose(ints, ints.round(), rtol=0, atol=1e-4):
        return [int(v) for v in ints.round().tolist()]
    return [float(v) for v in (k / k.sum()).tolist()] if float(k.sum()) != 0 else [float(v) for v in k.tolist()]


def _resample_filter(entries: Sequence[Tuple[str, torch.Tensor]], what: str) -> List[Any]:
    """Taps from the first buffer; every listed buffer must be the same filter."""
    if not entries:
        raise CheckpointError(f"no resample_filter buffer found for the {what}")
    w0, f0 = entries[0]
    for w, f in entries[1:]:
        if f.shape != f0.shape or not torch.equal(f, f0):
            raise CheckpointError(f"layers disagree on the {what} resample filter: {w0} vs {w}")
    return filter_taps(f0, w0)


def _resolutions(names: Iterable[str], where: str) -> List[int]:
    res = []
    for n in names:
        m = re.fullmatch(r"b(\d+)", n)
        if m:
            res.append(int(m.group(1)))
    if not res:
        raise CheckpointError(f"{where} has no b<resolution> blocks")
    return res


def _check_fp16_top(flags: Dict[int, bool], where: str) -> int:
    """Number of fp16 blocks; they must be the highest resolutions (NVIDIA's rule)."""
    n = sum(flags.values())
    top = sorted(flags, reverse=True)[:n]
    if any(not flags[r] for r in top):
        raise CheckpointError(f"{where}: fp16 blocks {sorted(r for r, v in flags.items() if v)} are not the "
                              "highest resolutions, which num_fp16_res cannot express")
    return n


# ------------------------------------------------------------------------------ mapping


def _read_mapping(m: PersistentObject, where: str, z_dim: int, c_dim: int, w_dim: int,
                  with_w_avg: bool) -> Dict[str, Any]:
    """Mapping kwargs (num_layers, embed_features, layer_features, activation, lr_multiplier[, w_avg_beta])."""
    fcs, embed = _mapping_layers(m, where, c_dim, allow_empty=True)
    embed_features = 0
    if embed is not None:
        ew = _tensor(embed, "weight", f"{where}.embed")      # [embed_features, c_dim]
        if ew.ndim != 2 or ew.shape[1] != c_dim:
            raise CheckpointError(f"{where}.embed.weight has shape {list(ew.shape)}, expected [*, {c_dim}]")
        embed_features = int(ew.shape[0])
    dims = []
    for i, fc in enumerate(fcs):
        w = _tensor(fc, "weight", f"{where}.fc{i}")          # [out, in]
        if w.ndim != 2:
            raise CheckpointError(f"{where}.fc{i}.weight has shape {list(w.shape)}, expected 2-D")
        dims.append((int(w.shape[1]), int(w.shape[0])))
    if dims:
        if dims[0][0] != z_dim + embed_features or dims[-1][1] != w_dim:
            raise CheckpointError(f"{where}: fc layer shapes {dims} do not fit z_dim {z_dim} + embed "
                                  f"{embed_features} -> w_dim {w_dim}")
        for (_, o), (i2, _) in zip(dims, dims[1:]):
            if o != i2:
                raise CheckpointError(f"{where}: consecutive fc layers do not chain: {dims}")
    layer_features = dims[0][1] if len(dims) > 1 else w_dim
    activation = _same([(f"{where}.fc{i}", _attr(fc, "activation", f"{where}.fc{i}")) for i, fc in enumerate(fcs)],
                       f"{where} activation") if fcs else "lrelu"
    if fcs:
        lrs = []
        for i, fc in enumerate(fcs):
            w_where = f"{where}.fc{i}"
            lr = _float(_attr(fc, "bias_gain", w_where), f"{w_where}.bias_gain")
            gain = _float(_attr(fc, "weight_gain", w_where), f"{w_where}.weight_gain")
            if not math.isclose(gain, lr / math.sqrt(dims[i][0]), rel_tol=1e-9):
                raise CheckpointError(f"{w_where}: weight_gain {gain} does not match lr_multiplier {lr} / "
                                      f"sqrt({dims[i][0]})")
            lrs.append((w_where, lr))
        lr_multiplier = _same(lrs, f"{where} lr_multiplier (bias_gain)")
    else:
        lr_multiplier = 0.01
    kw: Dict[str, Any] = dict(num_layers=len(fcs), embed_features=embed_features, layer_features=layer_features,
                              activation=activation, lr_multiplier=lr_multiplier)
    if with_w_avg:
        beta = _attr(m, "w_avg_beta", where)
        kw["w_avg_beta"] = None if beta is None else _float(beta, f"{where}.w_avg_beta")
        w_avg = _tensor(m, "w_avg", where, required=beta is not None)
        if w_avg is not None and list(w_avg.shape) != [w_dim]:
            raise CheckpointError(f"{where}.w_avg has shape {list(w_avg.shape)}, expected [{w_dim}]")
    return kw


# --------------------------------------------------------------------------- generator


def generator_family(gen: PersistentObject) -> str:
    """``"stylegan2"`` or ``"stylegan3"``, decided from the synthesis network's structure."""
    if not isinstance(gen, PersistentObject):
        raise CheckpointError(f"generator is a {type(gen).__name__}, not a pickled network module")
    syn = _child(gen, "synthesis", gen.class_name)
    mods = _children(syn)
    if "input" in mods or "layer_names" in syn.state:
        return "stylegan3"
    if "b4" in mods:
        return "stylegan2"
    raise CheckpointError(f"unrecognised generator: synthesis submodules {sorted(mods)[:8]}")



def _generator_header(gen):
    """(z_dim, c_dim, w_dim, img_resolution, img_channels, synthesis, mapping) of a pickled Generator."""
    where = "G"
    dims = [_int(_attr(gen, k, where), f"G.{k}") for k in ("z_dim", "c_dim", "w_dim", "img_resolution",
                                                           "img_channels")]
    return (*dims, _child(gen, "synthesis", where), _child(gen, "mapping", where))


def read_sg2_generator(gen: PersistentObject) -> NetworkSpec:
    """StyleGAN2 ``Generator`` (either repo) -> ``stylegan2.Generator`` spec."""
    where = "G"
    z_dim, c_dim, w_dim, res, img_channels, syn, mapping = _generator_header(gen)

    # Blocks b4 ... bR, in module order.
    block_res = _resolutions(_children(syn), "G.synthesis")
    log2 = int(round(math.log2(res))) if res > 0 else 0
    if res < 4 or 2 ** log2 != res or block_res != [2 ** i for i in range(2, log2 + 1)]:
        raise CheckpointError(f"G.synthesis blocks {block_res} do not fit img_resolution {res}")
    stored = syn.state.get("block_resolutions")
    if stored is not None and [int(r) for r in stored] != block_res:
        raise CheckpointError(f"G.synthesis.block_resolutions {stored} disagrees with its blocks {block_res}")

    arch, fp16, channels = [], {}, {}
    clamps, acts, noise, filters = [], [], [], []
    prev_c = 0
    for r in block_res:
        bw = f"G.synthesis.b{r}"
        blk = _child(syn, f"b{r}", "G.synthesis")
        arch.append((bw, _attr(blk, "architecture", bw)))
        fp16[r] = _bool(_attr(blk, "use_fp16", bw), f"{bw}.use_fp16")
        filters.append((bw, _tensor(blk, "resample_filter", bw)))
        conv1 = _child(blk, "conv1", bw)
        w1 = _tensor(conv1, "weight", f"{bw}.conv1")                     # [C_r, C_r, 3, 3]
        c = int(w1.shape[0])
        channels[str(r)] = c
        layers = [("conv1", conv1)]
        if r == 4:
            const = _tensor(blk, "const", bw)                            # [C4, 4, 4]
            if list(const.shape) != [c, 4, 4]:
                raise CheckpointError(f"{bw}.const has shape {list(const.shape)}, expected [{c}, 4, 4]")
        else:
            conv0 = _child(blk, "conv0", bw)
            w0 = _tensor(conv0, "weight", f"{bw}.conv0")                 # [C_r, C_{r/2}, 3, 3]
            if list(w0.shape[:2]) != [c, prev_c]:
                raise CheckpointError(f"{bw}.conv0.weight has shape {list(w0.shape)}, expected [{c}, {prev_c}, ...]")
            up = _int(_attr(conv0, "up", f"{bw}.conv0"), f"{bw}.conv0.up")
            if up != 2:
                raise CheckpointError(f"{bw}.conv0 has up={up}, expected 2")
            filters.append((f"{bw}.conv0", _tensor(conv0, "resample_filter", f"{bw}.conv0")))
            layers.insert(0, ("conv0", conv0))
            skip = _child(blk, "skip", bw, required=False)
            if skip is not None:
                filters.append((f"{bw}.skip", _tensor(skip, "resample_filter", f"{bw}.skip")))
        for name, layer in layers:
            lw = f"{bw}.{name}"
            _collect_clamp_act(layer, lw, clamps, acts)
            has_noise = _tensor(layer, "noise_const", lw, required=False) is not None
            if "use_noise" in layer.state and _bool(layer.state["use_noise"], f"{lw}.use_noise") != has_noise:
                raise CheckpointError(f"{lw}: use_noise attribute disagrees with the presence of noise_const")
            noise.append((lw, has_noise))
        torgb = _child(blk, "torgb", bw, required=False)
        if torgb is not None:
            tw = _tensor(torgb, "weight", f"{bw}.torgb")                 # [K, C_r, 1, 1]
            if list(tw.shape) != [img_channels, c, 1, 1]:
                raise CheckpointError(f"{bw}.torgb.weight has shape {list(tw.shape)}, expected "
                                      f"[{img_channels}, {c}, 1, 1]")
            clamps.append((f"{bw}.torgb", _clamp(_attr(torgb, "conv_clamp", f"{bw}.torgb"), f"{bw}.torgb.conv_clamp")))
        elif r == block_res[-1]:
            raise CheckpointError(f"{bw}: the last block has no torgb layer")
        prev_c = c

    architecture = _same(arch, "G architecture")
    if architecture not in ("orig", "skip", "resnet"):
        raise CheckpointError(f"unknown G architecture {architecture!r}")
    mapping_kw = _read_mapping(mapping, "G.mapping", z_dim, c_dim, w_dim, with_w_avg=True)
    kwargs = dict(
        z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=res, img_channels=img_channels,
        mapping_kwargs=mapping_kw,
        synthesis_kwargs=dict(
            architecture=architecture,
            channels=channels,
            conv_clamp=_same(clamps, "G conv_clamp"),
            num_fp16_res=_check_fp16_top(fp16, "G.synthesis"),
            use_noise=_same(noise, "G use_noise (presence of noise_const)"),
            activation=_same(acts, "G activation"),
            resample_filter=_resample_filter(filters, "G"),
        ),
    )
    return NetworkSpec(kind="stylegan2.Generator", kwargs=kwargs, state_dict=module_state_dict(gen))


def _num(v: Any, what: str) -> Any:
    """An int stays an int, any other real number becomes a float (JSON-able either way)."""
    if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
        return int(v)
    return _float(v, what)


def _pair(v: Any, what: str) -> List[int]:
    """A size stored as a numpy [2] array (or an int / list) -> [width, height]."""
    a = np.asarray(v)
    if a.ndim == 0:
        a = np.array([a, a])
    if a.shape != (2,) or not np.issubdtype(a.dtype, np.integer):
        raise CheckpointError(f"{what} is {v!r}, expected two integers")
    return [int(a[0]), int(a[1])]


def _read_sg3_mapping(m: PersistentObject, where: str, z_dim: int, c_dim: int, w_dim: int) -> Dict[str, Any]:
    fcs, embed = _mapping_layers(m, where, c_dim, allow_empty=False)
    if embed is not None:
        ew = _tensor(embed, "weight", f"{where}.embed")
        if list(ew.shape) != [w_dim, c_dim]:
            raise CheckpointError(f"{where}.embed.weight has shape {list(ew.shape)}, expected [{w_dim}, {c_dim}]")
    lrs = []
    for i, fc in enumerate(fcs):
        fw = f"{where}.fc{i}"
        w = _tensor(fc, "weight", fw)
        expect = [w_dim, (z_dim + (w_dim if c_dim > 0 else 0)) if i == 0 else w_dim]
        if list(w.shape) != expect:
            raise CheckpointError(f"{fw}.weight has shape {list(w.shape)}, expected {expect}")
        if _attr(fc, "activation", fw) != "lrelu":
            raise CheckpointError(f"{fw}: activation {_attr(fc, 'activation', fw)!r}, StyleGAN3 mapping uses lrelu")
        lr = _float(_attr(fc, "bias_gain", fw), f"{fw}.bias_gain")
        gain = _float(_attr(fc, "weight_gain", fw), f"{fw}.weight_gain")
        if not math.isclose(gain, lr / math.sqrt(expect[1]), rel_tol=1e-9):
            raise CheckpointError(f"{fw}: weight_gain {gain} does not match lr_multiplier {lr} / sqrt({expect[1]})")
        lrs.append((fw, lr))
    beta = _attr(m, "w_avg_beta", where)
    w_avg = _tensor(m, "w_avg", where)
    if list(w_avg.shape) != [w_dim]:
        raise CheckpointError(f"{where}.w_avg has shape {list(w_avg.shape)}, expected [{w_dim}]")
    return dict(num_layers=len(fcs), lr_multiplier=_same(lrs, f"{where} lr_multiplier (bias_gain)"),
                w_avg_beta=_float(beta, f"{where}.w_avg_beta"))


_SG3_LAYER_INTS = ("in_channels", "out_channels", "conv_kernel", "up_factor", "up_taps", "down_factor", "down_taps")
_SG3_LAYER_NUMS = ("in_sampling_rate", "out_sampling_rate", "tmp_sampling_rate", "in_cutoff", "out_cutoff",
                   "in_half_width", "out_half_width", "magnitude_ema_beta")
_SG3_LAYER_BOOLS = ("is_torgb", "is_critically_sampled", "use_fp16", "down_radial")


def _read_sg3_layer(layer: PersistentObject, lw: str, w_dim: int) -> Dict[str, Any]:
    """One SG3 ``SynthesisLayer``'s geometry from its state, checked against its tensors."""
    spec: Dict[str, Any] = {}
    for k in _SG3_LAYER_BOOLS:
        spec[k] = _bool(_attr(layer, k, lw), f"{lw}.{k}")
    for k in _SG3_LAYER_INTS:
        spec[k] = _int(_attr(layer, k, lw), f"{lw}.{k}")
    for k in _SG3_LAYER_NUMS:
        spec[k] = _num(_attr(layer, k, lw), f"{lw}.{k}")
    spec["in_size"] = _pair(_attr(layer, "in_size", lw), f"{lw}.in_size")
    spec["out_size"] = _pair(_attr(layer, "out_size", lw), f"{lw}.out_size")
    spec["conv_clamp"] = _clamp(_attr(layer, "conv_clamp", lw), f"{lw}.conv_clamp")
    pad = _attr(layer, "padding", lw)
    if not isinstance(pad, (list, tuple)) or len(pad) != 4:
        raise CheckpointError(f"{lw}.padding is {pad!r}, expected [x0, x1, y0, y1]")
    spec["padding"] = [_int(p, f"{lw}.padding") for p in pad]
    if _int(_attr(layer, "w_dim", lw, w_dim), f"{lw}.w_dim") != w_dim:
        raise CheckpointError(f"{lw}.w_dim disagrees with the generator's w_dim {w_dim}")
    k, ci, co = spec["conv_kernel"], spec["in_channels"], spec["out_channels"]
    shapes = {"weight": [co, ci, k, k], "bias": [co], "magnitude_ema": []}
    for name, shape in shapes.items():
        t = _tensor(layer, name, lw)
        if list(t.shape) != shape:
            raise CheckpointError(f"{lw}.{name} has shape {list(t.shape)}, expected {shape}")
    aw = _tensor(_child(layer, "affine", lw), "weight", f"{lw}.affine")
    if list(aw.shape) != [ci, w_dim]:
        raise CheckpointError(f"{lw}.affine.weight has shape {list(aw.shape)}, expected [{ci}, {w_dim}]")
    for name, taps, radial in (("up_filter", spec["up_taps"], False), ("down_filter", spec["down_taps"],
                                                                          spec["down_radial"])):
        f = _tensor(layer, name, lw, required=False)
        expect = None if taps == 1 else ([taps, taps] if radial else [taps])
        if (None if f is None else list(f.shape)) != expect:
            raise CheckpointError(f"{lw}.{name} has shape {None if f is None else list(f.shape)}, expected {expect} "
                                  f"for {taps} taps{' (radial)' if radial else ''}")
    for k2, n in (("up_factor", "in_sampling_rate"), ("down_factor", "out_sampling_rate")):
        if not math.isclose(spec[n] * spec[k2], spec["tmp_sampling_rate"], rel_tol=1e-9):
            raise CheckpointError(f"{lw}: {n} {spec[n]} x {k2} {spec[k2]} != tmp_sampling_rate "
                                  f"{spec['tmp_sampling_rate']}")
    return spec


def read_sg3_generator(gen: PersistentObject) -> NetworkSpec:
    """StyleGAN3 ``Generator`` (T or R) -> ``stylegan3.Generator`` spec with explicit per-layer geometry."""
    where = "G"
    z_dim, c_dim, w_dim, res, img_channels, syn, mapping = _generator_header(gen)
    sw = "G.synthesis"

    names = _attr(syn, "layer_names", sw)
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) for n in names):
        raise CheckpointError(f"{sw}.layer_names is {names!r}, expected a list of layer names")
    mods = [n for n, v in _children(syn).items() if v is not None]
    if mods != ["input"] + list(names):
        raise CheckpointError(f"{sw} submodules {mods[:6]}... do not match input + layer_names")
    num_ws = len(names) + 1
    for obj, w in ((gen, "G"), (syn, sw)):
        n = _attr(obj, "num_ws", w, None)
        if n is not None and _int(n, f"{w}.num_ws") != num_ws:
            raise CheckpointError(f"{w}.num_ws is {n} but {len(names)} layers + the input need {num_ws}")

    inp = _child(syn, "input", sw)
    iw = f"{sw}.input"
    ch = _int(_attr(inp, "channels", iw), f"{iw}.channels")
    input_spec = dict(channels=ch, size=_pair(_attr(inp, "size", iw), f"{iw}.size"),
                      sampling_rate=_float(_attr(inp, "sampling_rate", iw), f"{iw}.sampling_rate"),
                      bandwidth=_float(_attr(inp, "bandwidth", iw), f"{iw}.bandwidth"))
    for name, shape in (("weight", [ch, ch]), ("transform", [3, 3]), ("freqs", [ch, 2]), ("phases", [ch])):
        t = _tensor(inp, name, iw)
        if list(t.shape) != shape:
            raise CheckpointError(f"{iw}.{name} has shape {list(t.shape)}, expected {shape}")
    aw = _tensor(_child(inp, "affine", iw), "weight", f"{iw}.affine")
    if list(aw.shape) != [4, w_dim]:
        raise CheckpointError(f"{iw}.affine.weight has shape {list(aw.shape)}, expected [4, {w_dim}]")

    layers = []
    prev_c, prev_size = ch, input_spec["size"]
    for i, name in enumerate(names):
        lw = f"{sw}.{name}"
        spec = _read_sg3_layer(_child(syn, name, sw), lw, w_dim)
        if spec["in_channels"] != prev_c or spec["in_size"] != prev_size:
            raise CheckpointError(f"{lw} takes {spec['in_channels']} x {spec['in_size']} but gets {prev_c} x "
                                  f"{prev_size}")
        if spec["is_torgb"] != (i == len(names) - 1):
            raise CheckpointError(f"{lw}: is_torgb is {spec['is_torgb']}; only the last layer is the ToRGB layer")
        prev_c, prev_size = spec["out_channels"], spec["out_size"]
        layers.append(dict(name=name, **spec))
    if prev_c != img_channels or prev_size != [res, res]:
        raise CheckpointError(f"{sw}: the last layer makes {prev_c} x {prev_size}, not the {img_channels} x "
                              f"{res} x {res} image")

    body = [s for s in layers if not s["is_torgb"]] or layers
    synthesis_kwargs: Dict[str, Any] = dict(
        num_layers=len(names) - 1,
        num_critical=_int(_attr(syn, "num_critical", sw, sum(s["is_critically_sampled"] for s in body)),
                          f"{sw}.num_critical"),
        margin_size=_int(_attr(syn, "margin_size", sw, 10), f"{sw}.margin_size"),
        output_scale=_float(_attr(syn, "output_scale", sw), f"{sw}.output_scale"),
        num_fp16_res=_int(_attr(syn, "num_fp16_res", sw, 0), f"{sw}.num_fp16_res"),
        conv_kernel=_same([(s["name"], s["conv_kernel"]) for s in body], "G conv_kernel"),
        use_radial_filters=any(s["down_radial"] for s in layers),
        conv_clamp=layers[0]["conv_clamp"],
        magnitude_ema_beta=layers[0]["magnitude_ema_beta"],
        input=input_spec,
        layers=layers,
    )
    ups = [s for s in body if s["up_factor"] > 1 and s["up_taps"] > 1]
    if ups:
        synthesis_kwargs["filter_size"] = ups[0]["up_taps"] // ups[0]["up_factor"]
    lrelu_up = [(s["name"], s["tmp_sampling_rate"] / max(s["in_sampling_rate"], s["out_sampling_rate"]))
                for s in body if not s["is_torgb"]]
    if lrelu_up:
        r = lrelu_up[0][1]
        synthesis_kwargs["lrelu_upsampling"] = int(r) if float(r).is_integer() else r
    kwargs = dict(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=res, img_channels=img_channels,
                  mapping_kwargs=_read_sg3_mapping(mapping, "G.mapping", z_dim, c_dim, w_dim),
                  synthesis_kwargs=synthesis_kwargs)
    return NetworkSpec(kind="stylegan3.Generator", kwargs=kwargs, state_dict=module_state_dict(gen))


_GENERATOR_READERS: Dict[str, Callable[[PersistentObject], NetworkSpec]] = {
    "stylegan2": read_sg2_generator,
    "stylegan3": read_sg3_generator,
}


# ----------------------------------------------------------------------- discriminator


def read_sg2_discriminator(disc: PersistentObject) -> NetworkSpec:
    """StyleGAN2 ``Discriminator`` (both repos) -> ``stylegan2.Discriminator`` spec."""
    where = "D"
    if not isinstance(disc, PersistentObject):
        raise CheckpointError(f"D is a {type(disc).__name__}, not a pickled network module")
    c_dim = _int(_attr(disc, "c_dim", where), "D.c_dim")
    res = _int(_attr(disc, "img_resolution", where), "D.img_resolution")
    img_channels = _int(_attr(disc, "img_channels", where), "D.img_channels")
    names = [n for n in _children(disc) if re.fullmatch(r"b\d+", n)]
    all_res = _resolutions(names, "D")
    log2 = int(round(math.log2(res))) if res > 0 else 0
    if res < 4 or 2 ** log2 != res or all_res != [2 ** i for i in range(log2, 1, -1)]:
        raise CheckpointError(f"D blocks {all_res} do not fit img_resolution {res}")
    block_res = all_res[:-1]                              # [R, ..., 8]; b4 is the epilogue

    arch, fp16, channels, clamps, acts, filters = [], {}, {}, [], [], []
    prev_out = None
    for i, r in enumerate(block_res):
        bw = f"D.b{r}"
        blk = _child(disc, f"b{r}", where)
        arch.append((bw, _attr(blk, "architecture", bw)))
        fp16[r] = _bool(_attr(blk, "use_fp16", bw), f"{bw}.use_fp16")
        filters.append((bw, _tensor(blk, "resample_filter", bw)))
        conv0 = _child(blk, "conv0", bw)
        conv1 = _child(blk, "conv1", bw)
        w0 = _tensor(conv0, "weight", f"{bw}.conv0")                     # [C_r, C_r, 3, 3]
        w1 = _tensor(conv1, "weight", f"{bw}.conv1")                     # [C_{r/2}, C_r, 3, 3]
        c = int(w0.shape[0])
        if prev_out is not None and prev_out != c:
            raise CheckpointError(f"{bw}.conv0 has {c} channels but the previous block outputs {prev_out}")
        channels[str(r)] = c
        prev_out = int(w1.shape[0])
        filters.append((f"{bw}.conv1", _tensor(conv1, "resample_filter", f"{bw}.conv1")))
        layers = [("conv0", conv0), ("conv1", conv1)]
        fromrgb = _child(blk, "fromrgb", bw, required=(i == 0))
        if fromrgb is not None:
            layers.insert(0, ("fromrgb", fromrgb))
        skip = _child(blk, "skip", bw, required=False)
        if skip is not None:
            filters.append((f"{bw}.skip", _tensor(skip, "resample_filter", f"{bw}.skip")))
        for name, layer in layers:
            _collect_clamp_act(layer, f"{bw}.{name}", clamps, acts)

    epi = _child(disc, "b4", where)
    ew = "D.b4"
    arch.append((ew, _attr(epi, "architecture", ew)))
    conv = _child(epi, "conv", ew)
    cw = _tensor(conv, "weight", f"{ew}.conv")                           # [C4, C4 + mbstd, 3, 3]
    c4 = int(cw.shape[0])
    if prev_out is not None and prev_out != c4:
        raise CheckpointError(f"{ew}.conv has {c4} channels but the last block outputs {prev_out}")
    channels["4"] = c4
    clamps.append((f"{ew}.conv", _clamp(_attr(conv, "conv_clamp", f"{ew}.conv"), f"{ew}.conv.conv_clamp")))
    acts.append((f"{ew}.conv", _attr(conv, "activation", f"{ew}.conv")))
    fc = _child(epi, "fc", ew)
    acts.append((f"{ew}.fc", _attr(fc, "activation", f"{ew}.fc")))
    mbstd = _child(epi, "mbstd", ew, required=False)
    if mbstd is None:
        group, mb_ch = None, 0
    else:
        group = _attr(mbstd, "group_size", f"{ew}.mbstd")
        group = None if group is None else _int(group, f"{ew}.mbstd.group_size")
        mb_ch = _int(_attr(mbstd, "num_channels", f"{ew}.mbstd"), f"{ew}.mbstd.num_channels")
    if int(cw.shape[1]) != c4 + mb_ch:
        raise CheckpointError(f"{ew}.conv.weight has {int(cw.shape[1])} input channels, expected "
                              f"{c4} + {mb_ch} minibatch-stddev channels")
    cmap_dim = _int(_attr(epi, "cmap_dim", ew), f"{ew}.cmap_dim")
    ow = _tensor(_child(epi, "out", ew), "weight", f"{ew}.out")          # [max(cmap_dim, 1), C4]
    if int(ow.shape[0]) != (cmap_dim if cmap_dim > 0 else 1):
        raise CheckpointError(f"{ew}.out.weight has shape {list(ow.shape)} but cmap_dim is {cmap_dim}")
    if (cmap_dim > 0) != (c_dim > 0):
        raise CheckpointError(f"D: c_dim {c_dim} but cmap_dim {cmap_dim}")

    mapping = _child(disc, "mapping", where, required=False)
    if (mapping is not None) != (c_dim > 0):
        raise CheckpointError(f"D: c_dim is {c_dim} but the mapping network is "
                              f"{'present' if mapping is not None else 'absent'}")
    if mapping is not None:
        mapping_kw = _read_mapping(mapping, "D.mapping", 0, c_dim, cmap_dim, with_w_avg=False)
    else:  # unconditional: no mapping network is built
        mapping_kw = dict(num_layers=0, embed_features=0, layer_features=0, activation="lrelu", lr_multiplier=0.01)

    architecture = _same(arch, "D architecture")
    if architecture not in ("orig", "skip", "resnet"):
        raise CheckpointError(f"unknown D architecture {architecture!r}")
    kwargs = dict(
        c_dim=c_dim, img_resolution=res, img_channels=img_channels, architecture=architecture,
        channels=dict(sorted(channels.items(), key=lambda kv: int(kv[0]))),
        cmap_dim=cmap_dim,
        conv_clamp=_same(clamps, "D conv_clamp"),
        num_fp16_res=_check_fp16_top(fp16, "D"),
        activation=_same(acts, "D activation"),
        resample_filter=_resample_filter(filters, "D"),
        mbstd_group_size=group,
        mbstd_num_channels=mb_ch,
        mapping_kwargs=mapping_kw,
    )
    return NetworkSpec(kind="stylegan2.Discriminator", kwargs=kwargs, state_dict=module_state_dict(disc))


# ------------------------------------------------------------------------------- entry


def _read_generator(gen: Any) -> NetworkSpec:
    family = generator_family(gen)
    return _GENERATOR_READERS[family](gen)


def read_nvidia_pkl(obj: Any, networks: Optional[Iterable[str]] = None) -> Checkpoint:
    """PyTorch-era NVIDIA snapshot dict -> :class:`Checkpoint` (``G_ema``, ``G``, ``D``).

    ``networks`` limits which of them are read (default: all present); a missing key is
    treated like ``None``. ``training_set_kwargs`` (a plain dict) goes into ``extras``.
    """
    if not isinstance(obj, dict):
        raise CheckpointError(f"not a PyTorch-era NVIDIA pickle: top-level object is a {type(obj).__name__}, "
                              "expected a dict with G, D, G_ema")
    wanted = list(NETWORK_NAMES if networks is None else networks)
    unknown = [n for n in wanted if n not in NETWORK_NAMES]
    if unknown:
        raise CheckpointError(f"unknown network name(s) {unknown}; choose from {list(NETWORK_NAMES)}")
    present = [n for n in NETWORK_NAMES if obj.get(n) is not None]
    if not present:
        raise CheckpointError(f"not an NVIDIA network pickle: none of G, D, G_ema in keys {sorted(map(str, obj))[:8]}")
    if networks is not None:
        missing = [n for n in wanted if n not in present]
        if missing:
            raise CheckpointError(f"network(s) {missing} not in this pickle (has: {', '.join(present)})")
    meta: Dict[str, Any] = {}
    out: Dict[str, NetworkSpec] = {}
    for name in NETWORK_NAMES:
        if name not in wanted or name not in present:
            continue
        net = obj[name]
        if not isinstance(net, PersistentObject):
            raise CheckpointError(f"{name} is a {type(net).__name__}, not a pickled network module")
        if name == "D":
            if net.class_name != "Discriminator":
                raise CheckpointError(f"D is a {net.class_name!r}, expected a 'Discriminator'")
            out[name] = read_sg2_discriminator(net)
        else:
            if net.class_name != "Generator":
                raise CheckpointError(f"{name} is a {net.class_name!r}, expected a 'Generator'")
            meta.setdefault("generator_family", generator_family(net))
            out[name] = _read_generator(net)
    extras: Dict[str, Any] = {}
    if isinstance(obj.get("training_set_kwargs"), dict):
        extras["training_set_kwargs"] = dict(obj["training_set_kwargs"])
    aug = obj.get("augment_pipe")
    meta["augment_pipe"] = aug.class_name if isinstance(aug, PersistentObject) else None
    return Checkpoint(format=FORMAT, networks=out, extras=extras, meta=meta)
