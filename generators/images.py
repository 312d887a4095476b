"""Turning generator outputs into image files (atomic writes; grids for looking at results)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import List, Sequence

import numpy as np
import torch
from PIL import Image

from .formats.atomic import atomic_path


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """[N, C, H, W] in about [-1, 1] -> uint8 [N, H, W, C] (NVIDIA's rounding: x*127.5 + 128)."""
    x = (img.detach().float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def to_pil(arr: np.ndarray) -> Image.Image:
    """uint8 [H, W, C] with C = 1, 3 or 4 -> PIL image."""
    if arr.shape[2] == 1:
        return Image.fromarray(arr[:, :, 0], "L")
    if arr.shape[2] == 3:
        return Image.fromarray(arr, "RGB")
    if arr.shape[2] == 4:
        return Image.fromarray(arr, "RGBA")
    return Image.fromarray(arr[:, :, :3], "RGB")  # extra channels are not viewable; keep the first three


def save_image(arr: np.ndarray, path) -> None:
    """Write one image atomically; the format comes from the suffix (PNG recommended)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        to_pil(arr).save(tmp, format=Image.registered_extensions().get(path.suffix.lower(), "PNG"))


def grid(images: Sequence[np.ndarray], cols: int = 0, pad: int = 2) -> np.ndarray:
    """Tile uint8 [H, W, C] images row-major into one image (white padding)."""
    n = len(images)
    if n == 0:
        raise ValueError("no images to tile")
    cols = cols or int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    h, w, c = images[0].shape
    out = np.full((rows * h + (rows + 1) * pad, cols * w + (cols + 1) * pad, c), 255, dtype=np.uint8)
    for i, im in enumerate(images):
        r, q = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + q * (w + pad)
        out[y:y + h, x:x + w] = im
    return out


def parse_range(spec: str) -> List[int]:
    """'0-3,7,10-11' -> [0, 1, 2, 3, 7, 10, 11]."""
    out: List[int] = []
    for part in str(spec).split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part[1:]:
            a, b = part.split("-", 1) if not part.startswith("-") else ("-" + part[1:].split("-", 1)[0],
                                                                        part[1:].split("-", 1)[1])
            a, b = int(a), int(b)
            if b < a:
                raise ValueError(f"empty range {part!r}")
            out.extend(range(a, b + 1))
        else:
            out.append(int(part))
    if not out:
        raise ValueError(f"no numbers in {spec!r}")
    return out
