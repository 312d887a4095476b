"""gankit encoders: pSp, e4e, ReStyle and HyperStyle in pure PyTorch, and their published checkpoints.

    model = encoders.load("e4e_ffhq_encode.pt")          # or a registry name (see encoders.registry)
    out = model.invert(images)                            # dict: ws [N, num_ws, w_dim], images, ...
    img = encoders.hyperstyle.synthesize_with_offsets(model.G, ws, offsets)

``inversion.invert(images, method=...)`` is the one entry point over these and the optimizers.
"""
from . import hyperstyle, registry
from .backbones import ArcFace, IRSEBackbone, ResNetBackbone, arcface_input
from .base import EncoderError, EncoderInverter
from .building import create, save
from .bundle import EncoderBundleError, read_bundle, write_bundle
from .e4e import E4E, Encoder4Editing
from .hyperstyle import HyperStyle, SharedWeightsHyperNetResNet, synthesize_with_offsets, weight_layers
from .loading import EncoderCheckpointError, load
from .psp import PSP, GradualStyleEncoder, WEncoder
from .restyle import BackboneEncoder, ReStyle, ResNetBackboneEncoder

__all__ = ["load", "create", "save", "write_bundle", "read_bundle", "EncoderBundleError", "cli_invert", "PSP", "E4E", "ReStyle", "HyperStyle", "GradualStyleEncoder", "Encoder4Editing",
           "WEncoder", "BackboneEncoder", "ResNetBackboneEncoder", "SharedWeightsHyperNetResNet", "ArcFace",
           "IRSEBackbone", "ResNetBackbone", "arcface_input", "synthesize_with_offsets", "weight_layers",
           "EncoderError", "EncoderCheckpointError", "EncoderInverter", "hyperstyle", "registry"]


def cli_invert(images, encoder, method=None, iters=None, device="cpu", w_encoder=None):
    """What ``gankit invert --method e4e|psp|restyle|hyperstyle --encoder CKPT`` runs -> InversionResult.

    ``images``: image file paths (any size; read as RGB and resized to 256 like the references' ``Resize``)
    or a ``[N, 3, H, W]`` tensor (uint8, or float in [-1, 1]). ``method=None``: whatever the checkpoint is.
    """
    import numpy as np
    import torch
    from inversion.methods import invert
    if not isinstance(images, torch.Tensor):
        from PIL import Image
        arrs = []
        for p in images:
            try:
                with Image.open(p) as im:
                    im = im.convert("RGB").resize((256, 256), Image.BILINEAR)
                    arrs.append(np.asarray(im).transpose(2, 0, 1))
            except OSError as e:
                raise EncoderError(f"cannot read image {p}: {e}") from None
        if not arrs:
            raise EncoderError("no images given")
        images = torch.from_numpy(np.stack(arrs))
    return invert(images, method=method, encoder=encoder, iters=iters, device=device, w_encoder=w_encoder)
