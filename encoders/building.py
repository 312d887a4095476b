"""New (untrained) encoders for any gankit generator, and gankit's encoder checkpoint writer.

    model = create("e4e", G)                           # IR-SE50 widths, 256 px input, W+ of G
    model = create("restyle", G, backbone="resnet34", variant="e4e")
    model = create("hyperstyle", G, layers_to_tune=None)   # every non-toRGB layer
    save(model, "enc.pt", opts={...})                 # loads back with encoders.load

``widths``/``depths`` shrink the trunk (tests and small domains). The file keeps the published layout
(``state_dict`` with ``encoder.*`` / ``hypernet.*`` (+ ``w_encoder.*``), ``opts`` with ``encoder_type``,
``latent_avg``), and the generator as ``generator = {kind, kwargs, state_dict}`` in gankit's naming,
so StyleGAN3 decoders fit too. Everything is plain tensors/containers (``weights_only`` loads it).
"""
from __future__ import annotations

import copy
from typing import Optional, Sequence

import torch
from torch import nn

from .backbones import IRSE50_STAGES, RESNET34_STAGES, irse_units, resnet_blocks
from .base import EncoderError
from .e4e import E4E, Encoder4Editing
from .hyperstyle import HyperStyle, SharedWeightsHyperNetResNet, layer_shapes
from .psp import PSP, GradualStyleEncoder, WEncoder
from .restyle import BackboneEncoder, ReStyle, ResNetBackboneEncoder

METHODS = ("psp", "e4e", "restyle", "hyperstyle")


def _stages(default, widths, depths):
    widths = list(widths) if widths is not None else [w for w, _ in default]
    depths = list(depths) if depths is not None else [n for _, n in default]
    if len(widths) != 4 or len(depths) != 4 or min(widths) < 1 or min(depths) < 1:
        raise EncoderError(f"widths and depths need 4 positive values (one per stage), got {widths} / {depths}")
    if any(a == b for a, b in zip(widths, widths[1:])):
        raise EncoderError(f"consecutive stage widths must differ (a stage starts where the width changes), "
                           f"got {widths}")
    return list(zip(widths, depths))


def _check_size(input_size: int) -> None:
    if input_size < 32 or input_size & (input_size - 1):
        raise EncoderError(f"input_size must be a power of two >= 32, got {input_size}")


def create(method: str, G: nn.Module, *, backbone: str = "ir_se", variant: str = "psp",
           widths: Optional[Sequence[int]] = None, depths: Optional[Sequence[int]] = None, input_size: int = 256,
           latent_avg: Optional[torch.Tensor] = None, layers_to_tune: Optional[Sequence[int]] = None,
           w_encoder: Optional[nn.Module] = None, z_dim: int = 512, hyper_hidden: int = 128,
           refine_hidden: int = 256, refine_out: int = 512, head_convs=None):
    """A freshly initialised inverter for generator G (``latent_avg`` default: G's w_avg on every row).

    ``backbone``: "ir_se" (IR-SE50 stages) or "resnet34" (ReStyle / the HyperStyle hypernet always use
    ResNet-34 for "hyperstyle"); ``variant`` for ReStyle: "psp" or "e4e" rows. ``head_convs``: stride-2
    convs per map2style head (an int for all rows, or one per row; default: down to 1x1 as the papers);
    fewer make a much smaller encoder (the rest of the map is averaged). ``w_encoder`` (HyperStyle's
    frozen initial inverter): a WEncoder, or a pSp / e4e encoder module.
    """
    if method not in METHODS:
        raise EncoderError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    _check_size(input_size)
    n, S = G.num_ws, G.w_dim
    if head_convs is not None:
        head_convs = [int(head_convs)] * n if isinstance(head_convs, int) else [int(v) for v in head_convs]
        if len(head_convs) != n or min(head_convs) < 1:
            raise EncoderError(f"head_convs needs one positive count per W+ row ({n}), got {head_convs}")
    G = G.eval().requires_grad_(False)
    if method in ("psp", "e4e"):
        units = irse_units(_stages(IRSE50_STAGES, widths, depths))
        cls = Encoder4Editing if method == "e4e" else GradualStyleEncoder
        enc = cls(3, units, n, S, head_convs=head_convs, input_size=input_size)
        return (E4E if method == "e4e" else PSP)(enc, G, latent_avg, input_size=input_size)
    if method == "restyle":
        if variant not in ("psp", "e4e"):
            raise EncoderError(f"ReStyle variant must be psp or e4e, got {variant!r}")
        if backbone == "resnet34":
            enc = ResNetBackboneEncoder(6, resnet_blocks(_stages(RESNET34_STAGES, widths, depths)), n, S,
                                        input_size=input_size, progressive=variant == "e4e", head_convs=head_convs)
        elif backbone == "ir_se":
            enc = BackboneEncoder(6, irse_units(_stages(IRSE50_STAGES, widths, depths)), n, S,
                                  input_size=input_size, progressive=variant == "e4e", head_convs=head_convs)
        else:
            raise EncoderError(f"backbone must be ir_se or resnet34, got {backbone!r}")
        return ReStyle(enc, G, latent_avg, input_size=input_size)
    shapes = layer_shapes(G)
    tune = list(layers_to_tune) if layers_to_tune is not None else [j for j, s in enumerate(shapes) if s[2] != 1]
    hn = SharedWeightsHyperNetResNet(6, resnet_blocks(_stages(RESNET34_STAGES, widths, depths)), shapes, tune,
                                     z_dim=z_dim, hyper_hidden=hyper_hidden, refine_hidden=refine_hidden,
                                     refine_out=refine_out, feature_size=input_size // 16)
    if w_encoder is None:
        w_encoder = WEncoder(3, irse_units(_stages(IRSE50_STAGES, widths, depths)), n, S)
    return HyperStyle(hn, w_encoder.eval().requires_grad_(False), G, latent_avg, input_size=input_size)


def encoder_type(model) -> str:
    """pSp-family ``encoder_type`` name of a model's trainable network."""
    if isinstance(model, HyperStyle):
        return "SharedWeightsHyperNetResNet"
    return _type_of(model.encoder)


def _type_of(enc: nn.Module) -> str:
    if isinstance(enc, Encoder4Editing):
        return "Encoder4Editing"
    if isinstance(enc, GradualStyleEncoder):
        return "GradualStyleEncoder"
    if isinstance(enc, WEncoder):
        return "WEncoder"
    if isinstance(enc, ResNetBackboneEncoder):
        return "ResNetProgressiveBackboneEncoder" if enc.progressive else "ResNetBackboneEncoder"
    if isinstance(enc, BackboneEncoder):
        return "ProgressiveBackboneEncoder" if enc.progressive else "BackboneEncoder"
    raise EncoderError(f"cannot save a {type(enc).__name__}")


def checkpoint_dict(model, opts: Optional[dict] = None, extra: Optional[dict] = None) -> dict:
    """The dict :func:`save` writes (also used for training snapshots)."""
    sd = {}
    if isinstance(model, HyperStyle):
        sd.update({f"hypernet.{k}": v.detach().cpu() for k, v in model.hypernet.state_dict().items()})
        sd.update({f"w_encoder.{k}": v.detach().cpu() for k, v in model.w_encoder.state_dict().items()})
    else:
        sd.update({f"encoder.{k}": v.detach().cpu() for k, v in model.encoder.state_dict().items()})
    G = model.G
    o = dict(opts or {})
    o.update(encoder_type=encoder_type(model), input_nc=(6 if isinstance(model, (ReStyle, HyperStyle)) else 3),
             output_size=int(G.img_resolution), n_styles=int(G.num_ws), start_from_latent_avg=True,
             input_size=int(model.input_size), gankit_encoder_version=1)
    if isinstance(model, HyperStyle):
        o.update(layers_to_tune=",".join(map(str, model.hypernet.layers_to_tune)),
                 n_hypernet_outputs=len(model.hypernet.layer_shapes), w_encoder_type=_type_of(model.w_encoder))
    out = dict(state_dict=sd, opts=o, latent_avg=model.latent_avg.detach().cpu().clone(),
               generator=dict(kind=f"{getattr(G, 'family', 'stylegan2')}.{type(G).__name__}",
                              kwargs=copy.deepcopy(G.init_kwargs),
                              state_dict={k: v.detach().cpu() for k, v in G.state_dict().items()}))
    if extra:
        out.update(extra)
    return out


def save(model, path, opts: Optional[dict] = None, extra: Optional[dict] = None) -> None:
    """Write ``model`` atomically in the layout :func:`encoders.load` reads."""
    from generators.formats.atomic import atomic_torch_save
    atomic_torch_save(checkpoint_dict(model, opts, extra), path)
