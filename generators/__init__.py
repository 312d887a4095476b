"""gankit generators: StyleGAN networks in pure PyTorch and exact, safe checkpoint loading.

Stable API (NVIDIA's vocabulary):
    load(source, device="cpu", network="G_ema")   -> nn.Module
    save(G, path)                                  -> gankit format (safetensors + JSON config)
    convert(src, dst, format="gankit"|"rosinality")
    info(source)                                   -> dict

StyleGAN3 (T/R) lives in ``generators.stylegan3`` (e.g. ``stylegan3.make_transform`` for
``G.synthesis.input.transform``); ``load`` returns whichever family a checkpoint holds.
"""
from . import stylegan3
from .loading import build, convert, info, load, read, save, write
from .spec import Checkpoint, CheckpointError, NetworkSpec, UnsafeCheckpointError
from .stylegan2 import Discriminator, Generator

__all__ = ["load", "save", "convert", "info", "read", "write", "build", "Generator", "Discriminator",
           "Checkpoint", "NetworkSpec", "CheckpointError", "UnsafeCheckpointError"]
