"""Losses for inversion. Offline ones first: they need no download.

* :class:`IdentityLoss` - ``1 - cos`` of dlib face descriptors (:mod:`inversion.identity`), the ID loss
  of pSp / e4e / ReStyle / HyperStyle / PTI with dlib's ResNet in place of ArcFace.
* :func:`identity_similarity` - cosine similarity of dlib descriptors, the "ID similarity" metric.
* :class:`FaceFeatureDistance` - an LPIPS-style distance on the same network's activations, without
  learned weights: a perceptual distance for faces that works offline.

Inputs are aligned images ``[N, 3, H, W]`` in ``[-1, 1]`` (FFHQ or pSp alignment, any resolution),
mapped to dlib's 150x150 chip frame by :func:`inversion.identity.aligned_to_chip`; pass
``input="chips"`` to give chips (RGB, 0..255) directly. Gradients flow to the images; the network's
weights are frozen.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import identity

__all__ = ["IdentityLoss", "identity_similarity", "FaceFeatureDistance", "OFFLINE_LOSSES", "OFFLINE_HINT",
           "LPIPS", "ReconstructionLoss", "LOSS_NAMES", "parse_loss", "per_image_mse", "psnr",
           "perceptual_resize", "lpips_backbone_path", "MissingWeightsError", "LossSpecError"]

# names a caller can offer when LPIPS / ArcFace weights are missing
OFFLINE_LOSSES = {"id-dlib": "IdentityLoss", "face-features": "FaceFeatureDistance"}
OFFLINE_HINT = ("offline alternatives that need no download: --loss face-features (FaceFeatureDistance) "
                "and the dlib identity loss id-dlib (IdentityLoss)")


def _check_input(input: str, alignment: str) -> None:
    if input not in ("aligned", "chips"):
        raise ValueError(f"input must be 'aligned' or 'chips', got {input!r}")
    if alignment not in ("ffhq", "psp"):
        raise ValueError(f"alignment must be 'ffhq' or 'psp', got {alignment!r}")


class _OnDlibNet(nn.Module):
    def __init__(self, net: Optional[nn.Module], alignment: str, input: str):
        super().__init__()
        _check_input(input, alignment)
        self.net = net if net is not None else identity.load()
        self.alignment = alignment
        self.input = input

    def chips(self, x: torch.Tensor) -> torch.Tensor:
        if self.input == "chips":
            return x.float()
        return identity.aligned_to_chip(x, self.alignment)

    def descriptors(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 128] dlib descriptors of images (or chips), differentiable w.r.t. ``x``."""
        return self.net(self.chips(x))


class IdentityLoss(_OnDlibNet):
    """``1 - cos(d(x), d(y))`` with d = dlib's face descriptor; ``forward`` averages over the batch.

    ``y`` is images (like ``x``; no gradient is taken through it) or descriptors ``[N, 128]`` (or
    ``[1, 128]``, broadcast). ``per_image(x, y)`` gives the ``[N]`` values; ``forward`` stores them in
    ``last_per_image`` too.
    """

    def __init__(self, net: Optional[nn.Module] = None, alignment: str = "ffhq", input: str = "aligned"):
        super().__init__(net, alignment, input)
        self.last_per_image: Optional[torch.Tensor] = None

    def target(self, y: torch.Tensor) -> torch.Tensor:
        if y.ndim == 2:
            return y.detach().float()
        with torch.no_grad():
            return self.descriptors(y)

    def per_image(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        dx = self.descriptors(x)
        dy = self.target(y).to(dx)
        return 1.0 - F.cosine_similarity(dx, dy.expand_as(dx), dim=1, eps=1e-12)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        v = self.per_image(x, y)
        self.last_per_image = v.detach()
        return v.mean()


_SIM_NETS = {}


@torch.no_grad()
def identity_similarity(a: torch.Tensor, b: torch.Tensor, net: Optional[nn.Module] = None,
                        alignment: str = "ffhq", input: str = "aligned") -> torch.Tensor:
    """Cosine similarity ``[N]`` of dlib descriptors (float64), the "ID similarity" metric.

    ``a`` and ``b`` are aligned images ``[N, 3, H, W]`` in ``[-1, 1]``, chips (``input="chips"``), or
    descriptors ``[N, 128]`` (2-D inputs are taken as descriptors). 1 means the same direction."""
    _check_input(input, alignment)

    def desc(t):
        t = torch.as_tensor(t)
        if t.ndim == 2:
            return t.double()
        n = net
        if n is None:
            key = str(t.device)
            if key not in _SIM_NETS:
                _SIM_NETS[key] = identity.load(device=t.device)
            n = _SIM_NETS[key]
        chips = t.float() if input == "chips" else identity.aligned_to_chip(t, alignment)
        return n(chips).double()

    da, db = desc(a), desc(b)
    da, db = torch.broadcast_tensors(da, db.to(da.device))
    num = (da * db).sum(1)
    return num / (da.norm(dim=1) * db.norm(dim=1)).clamp_min(1e-300)


class FaceFeatureDistance(_OnDlibNet):
    """LPIPS without learned weights, on dlib's face ResNet.

    For each chosen layer (default: the last unit of each of the five stages, 35x35x32 ... 2x2x256),
    activations are normalized to unit length over channels at every position, the squared
    difference is summed over channels and averaged over positions (LPIPS with all ``lin`` weights =
    1); the layers are then averaged. Values lie in [0, 4]; 0 for identical inputs. ``per_image``
    gives ``[N]``; ``forward`` averages over the batch.
    """

    def __init__(self, net: Optional[nn.Module] = None, layers: Optional[Sequence[int]] = None,
                 alignment: str = "ffhq", input: str = "aligned"):
        super().__init__(net, alignment, input)
        self.layers = list(layers) if layers is not None else list(self.net.stage_ends)
        n = len(self.net.units)
        if not self.layers or any(not 0 <= i < n for i in self.layers):
            raise ValueError(f"layers must be unit indices in [0, {n - 1}], got {self.layers}")

    def _feats(self, x):
        outs, _ = self.net.features(self.chips(x))
        return [outs[i] for i in self.layers]

    def per_image(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        fx = self._feats(x)
        with torch.no_grad():
            fy = self._feats(y)
        total = 0.0
        for a, b in zip(fx, fy):
            a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + (a - b.expand_as(a)).pow(2).sum(1).mean(dim=(1, 2))
        return total / len(fx)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.per_image(x, y).mean()



# ----------------------------------------------------------------------------------------------
# Reconstruction losses for projection / PTI: LPIPS (lpips package), MSE, ArcFace ID, and a
# weighted per-image combination of any of them.
# ----------------------------------------------------------------------------------------------

from .arcface import MissingWeightsError  # noqa: E402  (one error class for every missing weight file)

LOSS_NAMES = ("lpips", "lpips-alex", "mse", "arcface", "face-features", "id-dlib")


class LossSpecError(ValueError):
    """A loss specification names an unknown term or a bad weight."""


def parse_loss(spec) -> dict:
    """``"lpips"``, ``"lpips,mse=0.1"``, ``"lpips+mse"`` or a dict -> {name: weight} (weights > 0 kept)."""
    if isinstance(spec, dict):
        items = list(spec.items())
    else:
        items = []
        for part in str(spec).replace("+", ",").split(","):
            part = part.strip()
            if not part:
                continue
            name, _, w = part.partition("=")
            try:
                items.append((name.strip(), float(w) if w else 1.0))
            except ValueError:
                raise LossSpecError(f"bad loss weight in {part!r} (use name=number, e.g. mse=0.1)") from None
    out = {}
    for name, w in items:
        if name not in LOSS_NAMES:
            raise LossSpecError(f"unknown loss {name!r}; choose from {', '.join(LOSS_NAMES)}")
        if not float(w) >= 0:
            raise LossSpecError(f"loss weight of {name} must be >= 0, got {w}")
        if w > 0:
            out[name] = float(w)
    if not out:
        raise LossSpecError(f"no loss term with a positive weight in {spec!r}")
    return out


def per_image_mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image ``[N]`` (images in [-1, 1])."""
    return (x - y).square().flatten(1).mean(1)


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per image ``[N]`` for images in [-1, 1] (peak-to-peak 2)."""
    return 10 * torch.log10(4.0 / per_image_mse(x.float(), y.float()).clamp_min(1e-20))


def perceptual_resize(x: torch.Tensor, min_size: int = 64, max_size: int = 256) -> torch.Tensor:
    """The image size a perceptual network sees. Larger than 256: area downsampling to 256 (NVIDIA's
    projector). Smaller than 64 (the tiny test generators): bilinear upsampling to 64, because
    AlexNet's pooling cannot take less than ~32 px and VGG's deepest layer would be 1 px."""
    h = x.shape[-1]
    if h > max_size:
        return F.interpolate(x, size=(max_size, max_size), mode="area")
    if h < min_size:
        return F.interpolate(x, size=(min_size, min_size), mode="bilinear", align_corners=False)
    return x


_LPIPS_ARCH = {"vgg": "VGG16_Weights", "alex": "AlexNet_Weights"}


def lpips_backbone_path(net: str = "vgg") -> "Path":
    """The torch cache file torchvision would download the LPIPS backbone to (never downloaded here)."""
    import os
    from pathlib import Path
    import torchvision.models as tvm
    url = getattr(tvm, _LPIPS_ARCH[net]).IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


class LPIPS(nn.Module):
    """LPIPS v0.1 of the ``lpips`` package (``net="vgg"`` or ``"alex"``), built offline.

    The package ships the linear-layer weights; the ImageNet backbone is read from the torch cache
    (``lpips_backbone_path``), checked *before* anything is built so torchvision never tries to
    download. Both files load with ``weights_only=True``. Inputs: [N, 3, H, W] in [-1, 1], resized by
    :func:`perceptual_resize`. ``per_image`` gives ``[N]``."""

    def __init__(self, net: str = "vgg", backbone_path=None):
        super().__init__()
        import warnings
        from pathlib import Path
        if net not in _LPIPS_ARCH:
            raise ValueError(f"LPIPS net must be 'vgg' or 'alex', got {net!r}")
        path = Path(backbone_path) if backbone_path is not None else lpips_backbone_path(net)
        if not path.is_file():
            name = "lpips" if net == "vgg" else "lpips-alex"
            raise MissingWeightsError(
                f"LPIPS ({name}) backbone weights not found: {path} (torchvision's ImageNet {net} file; gankit does "
                f"not download it); use --loss mse, or the {OFFLINE_HINT}")
        try:
            import lpips as lpips_pkg
        except ImportError:
            raise MissingWeightsError("the lpips package is not installed (pip install lpips); use --loss mse, or the "
                                      + OFFLINE_HINT) from None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # torchvision's 'pretrained' deprecation notice
            model = lpips_pkg.LPIPS(pretrained=False, net=net, pnet_rand=True, verbose=False)
        backbone = torch.load(path, map_location="cpu", weights_only=True)
        mapped = {}
        for key in model.net.state_dict():                      # sliceK.<i>.weight <- features.<i>.weight
            _, idx, leaf = key.split(".")
            mapped[key] = backbone[f"features.{idx}.{leaf}"]
        model.net.load_state_dict(mapped)
        lin_path = Path(lpips_pkg.__file__).parent / "weights" / "v0.1" / f"{net}.pth"
        lins = torch.load(lin_path, map_location="cpu", weights_only=True)
        missing, unexpected = model.load_state_dict(lins, strict=False)
        if unexpected or any(k.startswith("lin") and not k.startswith("lins.") for k in missing):
            raise ValueError(f"{lin_path}: unexpected LPIPS linear weights")
        self.model = model.eval().requires_grad_(False)
        self.net = net

    def per_image(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.model(perceptual_resize(x), perceptual_resize(y)).flatten()

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.per_image(x, y).mean()


def _build_term(name: str, device) -> Optional[nn.Module]:
    if name == "mse":
        return None
    if name in ("lpips", "lpips-alex"):
        m = LPIPS("vgg" if name == "lpips" else "alex")
    elif name == "arcface":
        from .arcface import ArcFaceIDLoss
        m = ArcFaceIDLoss()
    elif name == "face-features":
        m = FaceFeatureDistance()
    else:  # id-dlib
        m = IdentityLoss()
    return m.to(device) if device is not None else m


class ReconstructionLoss(nn.Module):
    """Weighted sum of loss terms, kept per image: ``forward(x, y) -> (total [N], {name: [N]})``.

    Per-image values (never a batch mean) make a batched optimization equal to separate runs: each
    image's latents only receive gradient from that image's loss. All networks are built here, so a
    missing weight file fails before any optimization starts."""

    def __init__(self, spec="lpips", device=None):
        super().__init__()
        self.weights = parse_loss(spec)
        self.terms = nn.ModuleDict()
        for name in self.weights:
            m = _build_term(name, device)
            if m is not None:
                self.terms[name] = m

    def forward(self, x: torch.Tensor, y: torch.Tensor):
        values = {}
        total = 0.0
        for name, w in self.weights.items():
            v = per_image_mse(x, y) if name == "mse" else self.terms[name].per_image(x, y)
            values[name] = v
            total = total + w * v
        return total, values
