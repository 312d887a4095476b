"""``encoders.load``: pSp / e4e / ReStyle / HyperStyle checkpoints and ``model_ir_se50.pth``, by key layout.

Files are read with ``torch.load(weights_only=True)`` and gankit's small allow-list (nothing in them
runs). Architecture comes from tensor shapes; ``opts['encoder_type']`` only decides between layouts
that are key-identical (pSp vs e4e, ReStyle-pSp vs ReStyle-e4e). The generator is the embedded
rosinality ``decoder.*`` (read by :mod:`generators`), or, in gankit's own encoder files, a
``generator`` entry ``{kind, kwargs, state_dict}`` (any StyleGAN2/3 generator).
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch
from torch import nn

from .backbones import (ArcFace, arcface_from_state_dict, count_convs, irse_spec_from_state_dict, load_state,
                        resnet_spec_from_state_dict)
from .base import EncoderError
from .e4e import E4E, Encoder4Editing
from .hyperstyle import HyperStyle, SharedWeightsHyperNetResNet, layer_shapes
from .psp import PSP, GradualStyleEncoder, WEncoder
from .restyle import BackboneEncoder, ReStyle, ResNetBackboneEncoder

GANKIT_ENCODER_VERSION = 1

PSP_TYPES = {"GradualStyleEncoder": "psp", "Encoder4Editing": "e4e", "WEncoder": "psp"}
RESTYLE_TYPES = {"BackboneEncoder": (BackboneEncoder, False), "ProgressiveBackboneEncoder": (BackboneEncoder, True),
                 "ResNetBackboneEncoder": (ResNetBackboneEncoder, False),
                 "ResNetProgressiveBackboneEncoder": (ResNetBackboneEncoder, True)}


class EncoderCheckpointError(EncoderError):
    """The file is not an encoder checkpoint gankit can read (message says why, in one line)."""


def _sub(sd: Mapping[str, torch.Tensor], prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in sd.items() if isinstance(k, str) and k.startswith(prefix)}


def _opts(obj: Mapping) -> dict:
    o = obj.get("opts")
    if isinstance(o, argparse.Namespace):
        o = vars(o)
    return dict(o) if isinstance(o, Mapping) else {}


def _read(path: Path) -> Any:
    from .bundle import is_bundle, read_bundle
    if is_bundle(path):
        return read_bundle(path)
    from generators.formats import torch_load_safe
    from generators.spec import CheckpointError
    try:
        return torch_load_safe(path)
    except CheckpointError as e:
        raise EncoderCheckpointError(f"{path.name}: {e}") from None


def resolve(source: Union[str, Path]) -> Path:
    """A local file as is; an encoder registry name -> its file in the cache (never downloads)."""
    p = Path(source).expanduser()
    if p.is_file():
        return p
    from . import registry
    if str(source) in registry.MODELS:
        return registry.resolve(str(source))
    raise EncoderCheckpointError(f"no such file or encoder registry name: {source} "
                                 f"(names: encoders.registry.list_models())")


def _head_convs(sd, n_styles):
    return [count_convs(sd, f"styles.{j}.") for j in range(n_styles)]


def _n_styles(sd) -> int:
    return len({int(m.group(1)) for k in sd for m in [re.match(r"styles\.(\d+)\.", k)] if m})


def _input_size(head_convs0: int) -> int:
    return 16 * 2 ** head_convs0   # the 16x16-at-256 map needs log2(16) = 4 convs


def build_encoder(enc_sd: Mapping[str, torch.Tensor], encoder_type: str, n_styles_hint: Optional[int] = None):
    """Encoder module for ``encoder_type`` with the shapes of ``enc_sd`` (keys without ``encoder.``), loaded."""
    try:
        if encoder_type == "WEncoder":
            spec = irse_spec_from_state_dict(enc_sd)
            S = enc_sd["linear.weight"].shape[0]
            net = WEncoder(spec["in_nc"], spec["units"], n_styles_hint or 1, S)
            size = 256
        elif encoder_type in ("GradualStyleEncoder", "Encoder4Editing"):
            spec = irse_spec_from_state_dict(enc_sd)
            n = _n_styles(enc_sd)
            hc = _head_convs(enc_sd, n)
            S = enc_sd["styles.0.linear.weight"].shape[0]
            cls = Encoder4Editing if encoder_type == "Encoder4Editing" else GradualStyleEncoder
            net = cls(spec["in_nc"], spec["units"], n, S, head_convs=hc)
            size = _input_size(hc[0])
        elif encoder_type in RESTYLE_TYPES:
            cls, progressive = RESTYLE_TYPES[encoder_type]
            spec = (resnet_spec_from_state_dict if cls is ResNetBackboneEncoder else irse_spec_from_state_dict)(enc_sd)
            n = _n_styles(enc_sd)
            hc = _head_convs(enc_sd, n)
            S = enc_sd["styles.0.linear.weight"].shape[0]
            net = cls(spec["in_nc"], spec.get("units", spec.get("blocks")), n, S, head_convs=hc,
                      progressive=progressive)
            size = _input_size(hc[0])
        else:
            raise EncoderCheckpointError(f"unsupported encoder_type {encoder_type!r} (gankit reads "
                                         f"{', '.join(sorted(set(PSP_TYPES) | set(RESTYLE_TYPES)))} and "
                                         f"SharedWeightsHyperNetResNet)")
        load_state(net, enc_sd)
    except KeyError as e:
        raise EncoderCheckpointError(f"the {encoder_type} tensors do not have the expected layout: "
                                     f"{str(e).strip(chr(39))}") from None
    return net.eval(), size


def build_hypernet(hn_sd: Mapping[str, torch.Tensor], G: nn.Module, opts: Mapping) -> SharedWeightsHyperNetResNet:
    """HyperStyle hypernetwork from ``hypernet.*`` tensors (prefix removed) for generator G."""
    try:
        spec = resnet_spec_from_state_dict(hn_sd)
        shapes = layer_shapes(G)
        slots = sorted({int(m.group(1)) for k in hn_sd for m in [re.match(r"refinement_blocks\.(\d+)\.", k)] if m})
        n_out = opts.get("n_hypernet_outputs")
        if isinstance(n_out, int) and n_out != len(shapes):
            raise EncoderCheckpointError(f"the hypernetwork has {n_out} outputs, the generator {len(shapes)} weight "
                                         f"layers")
        if slots and slots[-1] >= len(shapes):
            raise EncoderCheckpointError(f"the hypernetwork tunes layer {slots[-1]}, the generator has only "
                                         f"{len(shapes)} weight layers")
        shared = [j for j in slots if f"refinement_blocks.{j}.hypernet.w1" in hn_sd]
        refine = [j for j in slots if j not in shared]
        kw, n_down = {}, 4
        if shared:
            j = shared[0]
            kw["z_dim"] = hn_sd["shared_weight_hypernet.w1"].shape[0]
            kw["hyper_hidden"] = hn_sd[f"refinement_blocks.{j}.convs.0.weight"].shape[0]
            n_down = count_convs(hn_sd, f"refinement_blocks.{j}.") - 1
        if refine:
            j = refine[0]
            n = count_convs(hn_sd, f"refinement_blocks.{j}.")
            kw["refine_hidden"] = hn_sd[f"refinement_blocks.{j}.convs.0.weight"].shape[0]
            kw["refine_out"] = hn_sd[f"refinement_blocks.{j}.convs.{2 * (n - 1)}.weight"].shape[0]
            if not shared:
                n_down = n if shapes[j][2] == 1 else n + 1
        net = SharedWeightsHyperNetResNet(spec["in_nc"], spec["blocks"], shapes, slots, shared_layers=shared,
                                          feature_size=2 ** n_down, **kw)
        load_state(net, hn_sd)
    except KeyError as e:
        raise EncoderCheckpointError(f"the hypernetwork tensors do not have the expected layout: "
                                     f"{str(e).strip(chr(39))}") from None
    return net.eval()


def _generator(obj: Mapping, path: Path) -> nn.Module:
    """The embedded generator: gankit's ``generator`` entry or the rosinality ``decoder.*`` tensors."""
    from generators.loading import build
    from generators.spec import CheckpointError, NetworkSpec
    g = obj.get("generator")
    if isinstance(g, nn.Module):                                   # a bundle: already loaded and hash-checked
        return g.eval().requires_grad_(False)
    try:
        if isinstance(g, Mapping):
            spec = NetworkSpec(kind=str(g["kind"]), kwargs=dict(g["kwargs"]), state_dict=dict(g["state_dict"]))
        else:
            from generators.formats.rosinality import read_embedded_decoder
            spec = read_embedded_decoder(obj).pick("G_ema")
        return build(spec).eval().requires_grad_(False)
    except (CheckpointError, KeyError, TypeError) as e:
        raise EncoderCheckpointError(f"{path.name}: cannot read the embedded generator ({e})") from None


def _latent_avg(obj: Mapping, G: nn.Module, path: Path) -> Optional[torch.Tensor]:
    la = obj.get("latent_avg")
    if la is None:
        return None
    if not isinstance(la, torch.Tensor):
        raise EncoderCheckpointError(f"{path.name}: latent_avg is not a tensor")
    la = la.float()
    if la.ndim == 1 or (la.ndim == 2 and la.shape[0] == 1):
        la = la.reshape(1, -1).repeat(G.num_ws, 1)
    if tuple(la.shape) != (G.num_ws, G.w_dim):
        raise EncoderCheckpointError(f"{path.name}: latent_avg has shape {list(la.shape)}, the generator needs "
                                     f"[{G.num_ws}, {G.w_dim}]")
    return la


def _opt_size(opts: Mapping, derived: int) -> int:
    """gankit files record ``input_size``; the published ones are 256 (which the shapes also give)."""
    v = opts.get("input_size")
    return int(v) if isinstance(v, int) and not isinstance(v, bool) and v > 0 else derived


def _encoder_type(opts: Mapping, enc_sd: Mapping) -> str:
    t = opts.get("encoder_type")
    if isinstance(t, str) and t:
        return t
    # no opts: decide from the keys (pSp and e4e cannot be told apart; pSp semantics are assumed)
    if "linear.weight" in enc_sd:
        return "WEncoder"
    if "latlayer1.weight" in enc_sd:
        return "GradualStyleEncoder"
    if "conv1.weight" in enc_sd:
        return "ResNetBackboneEncoder"
    return "BackboneEncoder"


def _trained_iters(model, opts: Mapping) -> None:
    """gankit-trained ReStyle/HyperStyle: refine as many times as in training by default (more
    iterations than trained overshoot); published checkpoints keep the papers' 5."""
    it = opts.get("iters")
    if opts.get("gankit_encoder_version") and isinstance(it, int) and not isinstance(it, bool) and it > 0:
        model.default_iters = it


def _find_w_encoder(opts: Mapping, path: Path) -> Path:
    named = opts.get("w_encoder_checkpoint_path")
    tried = []
    if isinstance(named, str) and named:
        for cand in (Path(named).expanduser(), path.parent / named, path.parent / Path(named).name):
            tried.append(str(cand))
            if cand.is_file():
                return cand
    raise EncoderCheckpointError(
        f"{path.name} is a HyperStyle checkpoint; its W encoder ({named or 'not named'}) was not found"
        f"{' at ' + ', '.join(tried) if tried else ''}: pass it with w_encoder=PATH (CLI: --w-encoder PATH)")


def load(source: Union[str, Path], device: Union[str, torch.device] = "cpu",
         w_encoder: Union[str, Path, None] = None) -> nn.Module:
    """Load an encoder checkpoint (path or encoder registry name) ready for inversion, in eval mode.

    Returns :class:`PSP` / :class:`E4E` / :class:`ReStyle` / :class:`HyperStyle` (with its generator
    ``.G`` and ``.latent_avg``), or :class:`ArcFace` for an IR-SE ID network (``model_ir_se50.pth``).
    HyperStyle needs its W encoder: ``w_encoder`` or the file its opts name (looked up as given, then
    next to the checkpoint).
    """
    path = resolve(source)
    obj = _read(path)
    if not isinstance(obj, Mapping):
        raise EncoderCheckpointError(f"{path.name}: holds a {type(obj).__name__}, not an encoder checkpoint")
    if "input_layer.0.weight" in obj and "output_layer.3.weight" in obj:
        try:
            net = arcface_from_state_dict(obj)
        except KeyError as e:
            raise EncoderCheckpointError(f"{path.name}: an IR-SE state dict with an unexpected layout "
                                         f"({str(e).strip(chr(39))})") from None
        net.meta = dict(source=str(source), kind="arcface")
        return net.to(device)
    sd = obj.get("state_dict")
    if not isinstance(sd, Mapping):
        raise EncoderCheckpointError(f"{path.name}: not an encoder checkpoint (no 'state_dict'; top-level keys "
                                     f"{[str(k) for k in list(obj)[:6]]})")
    opts = _opts(obj)
    G = _generator(obj, path)
    latent_avg = _latent_avg(obj, G, path)
    hn_sd = _sub(sd, "hypernet.")
    if hn_sd:
        hypernet = build_hypernet(hn_sd, G, opts)
        w_sd = _sub(sd, "w_encoder.")
        w_src = "embedded"
        if not w_sd or w_encoder is not None:
            w_path = resolve(w_encoder) if w_encoder is not None else _find_w_encoder(opts, path)
            w_obj = _read(w_path)
            w_sd = _sub(w_obj.get("state_dict", {}) if isinstance(w_obj, Mapping) else {}, "encoder.")
            if not w_sd:
                raise EncoderCheckpointError(f"{w_path.name}: not a W-encoder checkpoint (no 'encoder.*' tensors)")
            w_src = str(w_path)
        w_type = opts.get("w_encoder_type", "WEncoder")
        wenc, size = build_encoder(w_sd, w_type if isinstance(w_type, str) else "WEncoder", G.num_ws)
        if not isinstance(wenc, (WEncoder, GradualStyleEncoder)):
            raise EncoderCheckpointError(f"HyperStyle's initial encoder must be a WEncoder or a pSp/e4e encoder, "
                                         f"got {w_type!r}")
        model = HyperStyle(hypernet, wenc, G, latent_avg, input_size=_opt_size(opts, 16 * hypernet.feature_size))
        _trained_iters(model, opts)
        model.meta = dict(source=str(source), kind="hyperstyle", w_encoder=w_src, opts=opts)
        return model.to(device).eval()
    enc_sd = _sub(sd, "encoder.")
    if not enc_sd:
        raise EncoderCheckpointError(f"{path.name}: no 'encoder.*' or 'hypernet.*' tensors")
    etype = _encoder_type(opts, enc_sd)
    encoder, size = build_encoder(enc_sd, etype, G.num_ws)
    start = bool(opts.get("start_from_latent_avg", True))
    size = _opt_size(opts, size)
    if etype in RESTYLE_TYPES:
        model = ReStyle(encoder, G, latent_avg, input_size=size)
        _trained_iters(model, opts)
        kind = "restyle_e4e" if RESTYLE_TYPES[etype][1] else "restyle_psp"
    else:
        if start and latent_avg is None:
            latent_avg = None   # the generator's w_avg (pSp does the same when the file lacks latent_avg)
        cls = E4E if etype == "Encoder4Editing" else PSP
        model = cls(encoder, G, latent_avg, input_size=size, start_from_latent_avg=start)
        kind = "e4e" if etype == "Encoder4Editing" else ("w_encoder" if etype == "WEncoder" else "psp")
    model.meta = dict(source=str(source), kind=kind, encoder_type=etype, opts=opts)
    return model.to(device).eval()
