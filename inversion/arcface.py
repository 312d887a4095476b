"""The pSp / e4e / ReStyle / HyperStyle ID loss: ArcFace IR-SE embeddings of pSp's face crop.

    net = load()                              # the torch cache's model_ir_se50.pth, or one-line error
    loss = ArcFaceIDLoss(net)                 # 1 - cos of embeddings; per_image() gives [N]

The network itself is :class:`encoders.backbones.ArcFace` (gankit's one IR-SE implementation, shared
with the pSp / e4e / ReStyle / HyperStyle encoder trunks); its depth and widths are read from the
state dict, so the shrunk test fixture and the real 50-layer file load through the same code. It is
imported on first use (``load``), so importing this module (and ``inversion.losses``) stays cheap.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

__all__ = ["IRSE", "ArcFaceIDLoss", "load", "face_input", "default_path", "FILENAME", "MissingWeightsError"]

FILENAME = "model_ir_se50.pth"


class MissingWeightsError(FileNotFoundError):
    """A loss network's weights are not on disk (gankit never downloads them)."""


def default_path() -> Path:
    """Where the weights are looked up: ``$GANKIT_ARCFACE`` or ``<torch hub>/checkpoints/model_ir_se50.pth``."""
    env = os.environ.get("GANKIT_ARCFACE")
    if env:
        return Path(env)
    return Path(torch.hub.get_dir()) / "checkpoints" / FILENAME


def __getattr__(name):
    # ``IRSE``: the ArcFace network class (kept under its old name), imported lazily
    if name == "IRSE":
        from encoders.backbones import ArcFace
        return ArcFace
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load(path: Union[str, Path, None] = None, device: Union[str, torch.device, None] = None) -> nn.Module:
    """Read ``model_ir_se50.pth`` (pSp's ID-loss network) with ``weights_only=True``; frozen, eval mode.

    Returns an :class:`encoders.backbones.ArcFace`. A missing file raises :class:`MissingWeightsError`
    with one line naming it (nothing is downloaded); a file of another layout a one-line ``ValueError``."""
    from encoders.backbones import arcface_from_state_dict
    from .losses import OFFLINE_HINT
    p = Path(path) if path is not None else default_path()
    if not p.is_file():
        raise MissingWeightsError(f"ArcFace weights not found: {p} (pSp's {FILENAME}; gankit does not download "
                                  f"it; set GANKIT_ARCFACE or use --loss mse; {OFFLINE_HINT})")
    sd = torch.load(p, map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or "input_layer.0.weight" not in sd or "output_layer.3.weight" not in sd:
        raise ValueError(f"{p}: not an ArcFace IR-SE state dict (no input_layer / output_layer tensors)")
    try:
        net = arcface_from_state_dict(sd).requires_grad_(False)
    except KeyError as e:
        raise ValueError(f"{p}: an IR-SE state dict with an unexpected layout ({str(e).strip(chr(39))})") from None
    return net.to(device) if device is not None else net


def face_input(x: torch.Tensor, size: int = 112) -> torch.Tensor:
    """pSp's ID-loss preprocessing (:func:`encoders.backbones.arcface_input`): adaptive average pool to
    256 (pSp's ``face_pool``), crop rows 35:223, cols 32:220, adaptive average pool to ``size``."""
    from encoders.backbones import arcface_input
    return arcface_input(x, size)


class ArcFaceIDLoss(nn.Module):
    """``1 - <e(x), e(y)>`` with e = ArcFace embedding of pSp's face crop; ``forward`` averages."""

    def __init__(self, net: Optional[nn.Module] = None):
        super().__init__()
        self.net = net if net is not None else load()

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(face_input(x, self.net.input_size))

    def per_image(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ex = self.embed(x)
        with torch.no_grad():
            ey = self.embed(y)
        return 1.0 - (ex * ey).sum(1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.per_image(x, y).mean()
