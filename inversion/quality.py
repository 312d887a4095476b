"""Offline quality metrics for generated faces: dlib detection rate, FD-dlib on detected faces, FID and KID.

    scan = face_scan(images)                      # dlib HOG detection + 68 landmarks + face descriptors
    rate = detection_rate(images)                 # share of images where dlib finds a face
    fd = frechet_distance(scan_a.descriptors, scan_b.descriptors)       # FD-dlib (inversion.metrics)
    net = load_inception()                        # InceptionWeightsError (one line) when not cached
    fid = frechet_distance(inception_features(a, net), inception_features(b, net))
    kid = kernel_inception_distance(feats_a, feats_b)                   # (inversion.metrics)

``images`` everywhere: a tensor ``[N, 3, H, W]`` in [-1, 1] (generator output), a uint8 array
``[N, H, W, 3]``, or a list of uint8 ``[H, W, 3]`` arrays (sizes may differ).

Detection
---------
dlib's HOG frontal detector scans 80x80 windows over an image pyramid that only goes *down*, so faces
smaller than about 80 px are never found. Every image, real or generated, whose longer side is under
``DETECT_SIZE`` = 256 px is first upscaled to that side with Pillow's LANCZOS, and scanned with
``upsample_num_times`` 0 (larger images are scanned as they are). Small sets of both kinds (a 64 px
generator, 128 px photos) are thus seen at the same 256 px, and 256 px is enough for the face of a
face-centred crop: on 150 UTKFace crops (128 px) the rate was 0.993 at 256 px (9 ms an image), 0.973
at 192 px, 0.987 at 320 px, the same 0.993 as dlib's own ``upsample_num_times=1`` on the 128 px image
(8.5 ms), and 0.987 at 128 px with no upsampling (which would miss the faces of a 64 px generator
altogether). On 1000 UTKFace crops: 0.990.

FD-dlib on unaligned faces
--------------------------
Photo crops such as UTKFace's are not FFHQ-aligned, so the fixed crop of
:func:`inversion.identity.aligned_to_chip` does not apply. Instead both sets go through dlib's exact
path: the largest HOG detection, the 68-point shape predictor, dlib's face chip (150 px, padding 0.25)
and the ResNet descriptor (:mod:`inversion.identity`), all on the detector's frame. Images without a
detected face are left out of the descriptors (and counted as misses in the detection rate).

FID / KID
---------
Inception-v3 pool features (2048-d) of images resized to 299 px (bilinear) and scaled to [-1, 1]. The
weights are looked up in ``torch.hub.get_dir()/checkpoints``, never downloaded: pytorch-fid's
``pt_inception-2015-12-05-6726825d.pth`` (the TensorFlow FID network: its pooling branches average over
valid pixels only and the last block max-pools; FID values comparable to published ones) is preferred;
torchvision's ImageNet ``inception_v3_google-0cc3c7bd.pth`` is used otherwise (a different network:
its FID values are only comparable with each other).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

__all__ = [
    "DETECT_SIZE", "FaceScan", "as_uint8_list", "face_scan", "detection_rate", "dlib_face_descriptors",
    "InceptionWeightsError", "INCEPTION_FILES", "find_inception_weights", "load_inception", "inception_features",
]

DETECT_SIZE = 256


def as_uint8_list(images) -> List[np.ndarray]:
    """Generator output [N, 3, H, W] in [-1, 1], uint8 [N, H, W, 3] or a list of uint8 [H, W, 3] ->
    list of uint8 RGB [H, W, 3] arrays."""
    if isinstance(images, torch.Tensor):
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected image tensors [N, 3, H, W] in [-1, 1], got {tuple(images.shape)}")
        from generators.images import to_uint8
        return list(to_uint8(images))
    if isinstance(images, np.ndarray):
        images = [images] if images.ndim == 3 else list(images)
    out = []
    for im in images:
        a = np.asarray(im)
        if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
            raise ValueError(f"expected RGB uint8 images [H, W, 3], got {a.dtype} {a.shape}")
        out.append(a)
    return out


def _detect_frame(img: np.ndarray, size: int) -> np.ndarray:
    """The frame the detector sees: an image whose longer side is under ``size`` px is upscaled (LANCZOS)
    to that side; larger images are kept as they are (dlib's pyramid scales faces down by itself)."""
    h, w = img.shape[:2]
    s = size / max(h, w)
    if s <= 1:
        return np.ascontiguousarray(img)
    new = (max(1, round(w * s)), max(1, round(h * s)))
    return np.asarray(Image.fromarray(img).resize(new, Image.LANCZOS))


@dataclass
class FaceScan:
    """What :func:`face_scan` found: ``detected`` [N] bool, ``boxes`` [N, 4] (l, t, r, b of the largest face
    in the detector's frame; -1 where none), ``descriptors`` [M, 128] for the M detected faces (or None)."""

    detected: np.ndarray
    boxes: np.ndarray
    descriptors: Optional[np.ndarray]
    size: int
    upsample: int

    @property
    def rate(self) -> float:
        return float(self.detected.mean()) if len(self.detected) else float("nan")

    def summary(self) -> dict:
        return {"rate": self.rate, "detected": int(self.detected.sum()), "total": int(len(self.detected)),
                "detect_size": self.size, "upsample": self.upsample}


def face_scan(images, size: int = DETECT_SIZE, upsample: int = 0, descriptors: bool = True, net=None,
              batch_size: int = 32, progress: Union[bool, str] = False) -> FaceScan:
    """Run dlib's HOG detector on every image (upscaled to ``size`` px when smaller, see the module docstring)
    and, with
    ``descriptors``, dlib's descriptor of the largest face (landmarks -> chip -> ResNet)."""
    from tqdm import tqdm
    from inversion.faces import landmarks as L
    from . import identity

    imgs = as_uint8_list(images)
    detector = L._hog_detector()
    predictor = L._shape_predictor() if descriptors else None
    if descriptors and net is None:
        net = identity.load()
    detected = np.zeros(len(imgs), bool)
    boxes = np.full((len(imgs), 4), -1, np.int64)
    chips, feats = [], []
    desc = progress if isinstance(progress, str) else "detect"
    for i, img in enumerate(tqdm(imgs, desc=desc, unit="img", disable=not progress)):
        frame = _detect_frame(img, size)
        rects = list(detector(frame, upsample))
        if not rects:
            continue
        r = max(rects, key=lambda r: r.width() * r.height())
        detected[i] = True
        boxes[i] = (r.left(), r.top(), r.right(), r.bottom())
        if descriptors:
            chips.append(identity.face_chip(frame, predictor(frame, r)))
            if len(chips) == batch_size:
                feats.append(identity.describe_chips(np.stack(chips), net, batch_size))
                chips = []
    if descriptors and chips:
        feats.append(identity.describe_chips(np.stack(chips), net, batch_size))
    d = (np.concatenate(feats) if feats else np.zeros((0, 128))) if descriptors else None
    return FaceScan(detected, boxes, d, size, upsample)


def detection_rate(images, upsample: int = 0, size: int = DETECT_SIZE, progress: bool = False) -> float:
    """Share of images in which dlib's HOG frontal detector finds at least one face (images smaller than
    ``size`` px upscaled to it first; ``upsample``: extra 2x pyramid levels by dlib)."""
    return face_scan(images, size, upsample, descriptors=False, progress=progress).rate


def dlib_face_descriptors(images, size: int = DETECT_SIZE, upsample: int = 0, net=None, batch_size: int = 32,
                          progress: bool = False) -> np.ndarray:
    """dlib descriptors [M, 128] of the largest face of each image where one is detected (unaligned images)."""
    return face_scan(images, size, upsample, True, net, batch_size, progress).descriptors


# ----------------------------------------------------------------------------------------------
# Inception-v3 features (FID / KID)
# ----------------------------------------------------------------------------------------------

# file name in torch.hub.get_dir()/checkpoints -> (flavour, where it comes from)
INCEPTION_FILES = {
    "pt_inception-2015-12-05-6726825d.pth": ("fid", "pytorch-fid's FID Inception (TensorFlow weights)"),
    "inception_v3_google-0cc3c7bd.pth": ("torchvision", "torchvision's ImageNet Inception-v3"),
}


class InceptionWeightsError(FileNotFoundError):
    """No Inception weights in the torch hub cache (gankit never downloads them)."""


def _checkpoints_dir() -> str:
    return os.path.join(torch.hub.get_dir(), "checkpoints")


def find_inception_weights() -> str:
    """Path of the first Inception weights file found in the torch hub cache (FID's preferred)."""
    folder = _checkpoints_dir()
    for name in INCEPTION_FILES:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    names = " or ".join(INCEPTION_FILES)
    raise InceptionWeightsError(
        f"Inception weights not found in {folder}: put {names} there (gankit never downloads), "
        "or use --metrics detection,fd-dlib")


def _tf_pool(x: torch.Tensor, kind: str) -> torch.Tensor:
    """The pooling of TensorFlow's FID Inception in the branch_pool of the A, C and E blocks."""
    if kind == "max":
        return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class _TFPoolBranch:
    """Mixin: recompute the last (pool) branch with TensorFlow's pooling; the other branches are
    torchvision's. ``pool``: "avg" (valid pixels only) or "max" (the last block, Mixed_7c)."""

    pool = "avg"

    def _forward(self, x):
        outs = super()._forward(x)          # [branch1x1, ..., branch_pool]
        outs[-1] = self.branch_pool(_tf_pool(x, self.pool))
        return outs


def _fid_blocks():
    from torchvision.models import inception as tv

    class FIDInceptionA(_TFPoolBranch, tv.InceptionA):
        pass

    class FIDInceptionC(_TFPoolBranch, tv.InceptionC):
        pass

    class FIDInceptionE(_TFPoolBranch, tv.InceptionE):
        pass

    return [tv.BasicConv2d, FIDInceptionA, tv.InceptionB, FIDInceptionC, tv.InceptionD, FIDInceptionE,
            tv.InceptionAux]


class InceptionFeatures(torch.nn.Module):
    """Inception-v3 up to the global average pool: images [N, 3, 299, 299] in [-1, 1] -> [N, 2048]."""

    LAYERS = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
              "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
              "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c")

    def __init__(self, inception: torch.nn.Module, flavour: str, source: str):
        super().__init__()
        self.net = inception
        self.flavour = flavour
        self.source = source

    def forward(self, x):
        for name in self.LAYERS:
            x = getattr(self.net, name)(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)


def load_inception(path: Optional[str] = None, device=None) -> InceptionFeatures:
    """Inception-v3 feature extractor from a cached weights file (see the module docstring)."""
    from torchvision.models import inception as tv
    from generators.formats import torch_load_safe

    path = path or find_inception_weights()
    flavour = INCEPTION_FILES.get(os.path.basename(path), ("torchvision", ""))[0]
    sd = torch_load_safe(path)
    if isinstance(sd, dict) and "state_dict" in sd:
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or "fc.weight" not in sd:
        raise InceptionWeightsError(f"{path}: not an Inception-v3 state dict (no fc.weight)")
    num_classes = sd["fc.weight"].shape[0]
    aux = any(k.startswith("AuxLogits.") for k in sd)
    blocks = _fid_blocks() if flavour == "fid" else None
    net = tv.Inception3(num_classes=num_classes, aux_logits=aux, transform_input=False, init_weights=False,
                        inception_blocks=blocks)
    if flavour == "fid":
        net.Mixed_7c.pool = "max"
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise InceptionWeightsError(f"{path}: does not fit Inception-v3 ({str(e).splitlines()[0]})") from None
    return InceptionFeatures(net, flavour, path).eval().requires_grad_(False).to(device)


@torch.no_grad()
def inception_features(images, net: InceptionFeatures, batch_size: int = 32, progress: Union[bool, str] = False
                       ) -> np.ndarray:
    """Pool features [N, 2048] (float64): each image resized to 299 px (bilinear), scaled to [-1, 1]."""
    from tqdm import tqdm

    imgs = as_uint8_list(images)
    dev = next(net.parameters()).device
    out = []
    desc = progress if isinstance(progress, str) else "inception"
    for i in tqdm(range(0, len(imgs), batch_size), desc=desc, unit="batch", disable=not progress):
        xs = []
        for im in imgs[i:i + batch_size]:
            x = torch.tensor(im, device=dev).permute(2, 0, 1)[None].float() / 255
            xs.append(F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False))
        out.append(net(torch.cat(xs) * 2 - 1).double().cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 2048))
