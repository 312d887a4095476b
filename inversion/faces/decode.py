"""Decode an image once: Pillow, EXIF orientation applied, any mode to 8-bit RGB.

The array returned here is the one used for detection, landmarks and cropping, so the landmarks
always refer to exactly the pixels that are cropped (the references decode twice, with two
different JPEG decoders, which moves landmarks by up to 14 px on 4:2:0 JPEGs).

Normalization (the fixtures README's "reference normalization"):
    decode with Pillow -> ``ImageOps.exif_transpose`` -> 16-bit samples scaled to 8 bit
    (value / 257, rounded) -> ``convert("RGB")`` (alpha is dropped, not composited).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .errors import UnreadableImageError

# Modes whose samples are wider than 8 bits; Pillow's convert("RGB"/"L") would clip them.
_WIDE_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}


@dataclass
class DecodedImage:
    """An 8-bit RGB photo as an H x W x 3 uint8 array, plus where it came from."""

    array: np.ndarray
    path: str | None = None
    source_mode: str = "RGB"
    exif_orientation: int = 1
    info: dict = field(default_factory=dict)

    @property
    def size(self):
        """(width, height), Pillow's order."""
        return int(self.array.shape[1]), int(self.array.shape[0])

    def pil(self) -> Image.Image:
        return Image.fromarray(self.array, "RGB")

    def sha256(self) -> str:
        return hashlib.sha256(np.ascontiguousarray(self.array).tobytes()).hexdigest()


def _name(path) -> str:
    return os.fspath(path)


def _wide_to_uint8(img: Image.Image) -> np.ndarray:
    """16/32-bit gray (I;16*, I) or float (F) image -> H x W uint8, scaled from the 16-bit range."""
    a = np.asarray(img)
    if img.mode == "F":
        a = a.astype(np.float64)
        a = a * 255.0 if np.nanmax(a, initial=0.0) <= 1.0 else a
        return np.clip(np.rint(np.nan_to_num(a)), 0, 255).astype(np.uint8)
    a = a.astype(np.float64)
    if img.mode == "I" and a.size and a.max() <= 255:  # 32-bit int holding 8-bit values
        return np.clip(a, 0, 255).astype(np.uint8)
    return np.clip(np.rint(a / 257.0), 0, 255).astype(np.uint8)


def to_rgb_array(img: Image.Image) -> np.ndarray:
    """Any Pillow mode -> H x W x 3 uint8 (alpha dropped, palettes looked up, 16 bit scaled)."""
    if img.mode in _WIDE_MODES:
        g = _wide_to_uint8(img)
        return np.ascontiguousarray(np.repeat(g[:, :, None], 3, axis=2))
    if img.mode != "RGB":
        try:
            img = img.convert("RGB")
        except ValueError:  # e.g. La (premultiplied gray): Pillow has no direct conversion; take the bands
            bands = [b.convert("L") for b in img.split()]
            img = Image.merge("RGB", bands[:3] if len(bands) >= 3 else [bands[0]] * 3)
    a = np.asarray(img)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:  # pragma: no cover - Pillow guarantees this
        raise UnreadableImageError(f"cannot convert mode {img.mode} to 8-bit RGB")
    return np.ascontiguousarray(a)


def array_to_rgb(a) -> np.ndarray:
    """A numpy array (H x W, H x W x 1/2/3/4; uint8 or uint16) -> H x W x 3 uint8."""
    a = np.asarray(a)
    if a.dtype == np.uint16:
        a = np.clip(np.rint(a.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)
    elif a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        raise UnreadableImageError(f"image arrays must be uint8 or uint16, not {a.dtype}")
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4) or a.shape[0] == 0 or a.shape[1] == 0:
        raise UnreadableImageError(f"image arrays must be H x W or H x W x 1..4, not shape {a.shape}")
    if a.shape[2] in (1, 2):           # gray (+ alpha): replicate the gray channel
        a = np.repeat(a[:, :, :1], 3, axis=2)
    return np.ascontiguousarray(a[:, :, :3])


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(0x0112, 1) or 1)
    except Exception:  # malformed EXIF: treat as upright
        return 1


def open_image(path) -> Image.Image:
    """Open and fully decode a file with Pillow; any failure -> UnreadableImageError (one line)."""
    name = _name(path)
    p = Path(name)
    if not p.exists():
        raise UnreadableImageError(f"{name}: no such file")
    if p.is_dir():
        raise UnreadableImageError(f"{name}: is a directory")
    if p.stat().st_size == 0:
        raise UnreadableImageError(f"{name}: empty file")
    try:
        img = Image.open(name)
        img.load()
    except Image.DecompressionBombError as e:
        raise UnreadableImageError(f"{name}: too many pixels for Pillow's decompression-bomb limit ({e})") from None
    except Image.UnidentifiedImageError:
        raise UnreadableImageError(f"{name}: not an image Pillow can identify") from None
    except MemoryError:
        raise
    except Exception as e:  # OSError (truncated), SyntaxError, ValueError ... from the decoders
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UnreadableImageError(f"{name}: cannot decode ({msg})") from None
    return img


def decode(source) -> DecodedImage:
    """Path, PIL image, DecodedImage or numpy array -> DecodedImage (8-bit RGB, upright)."""
    if isinstance(source, DecodedImage):
        return source
    if isinstance(source, np.ndarray):
        return DecodedImage(array_to_rgb(source), path=None, source_mode=f"array:{source.dtype}")
    path = None
    if isinstance(source, Image.Image):
        img = source
        try:
            img.load()
        except Exception as e:
            raise UnreadableImageError(f"cannot decode the image ({str(e).strip() or type(e).__name__})") from None
    elif isinstance(source, (str, os.PathLike)):
        path = _name(source)
        img = open_image(path)
    else:
        raise TypeError(f"expected a path, a PIL image or a numpy array, not {type(source).__name__}")
    mode = img.mode
    orientation = _orientation(img)
    if orientation != 1:
        try:
            img = ImageOps.exif_transpose(img)
        except Exception as e:
            name = path or "image"
            raise UnreadableImageError(f"{name}: cannot apply EXIF orientation {orientation} ({e})") from None
    try:
        arr = to_rgb_array(img)
    except UnreadableImageError:
        raise
    except Exception as e:
        name = path or "image"
        raise UnreadableImageError(f"{name}: cannot convert mode {mode} to RGB ({e})") from None
    return DecodedImage(arr, path=path, source_mode=mode, exif_orientation=orientation)
