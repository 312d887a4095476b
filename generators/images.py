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


class VideoWriterError(ValueError):
    """A video format that cannot be written here (MP4 without imageio-ffmpeg, an unknown suffix)."""


VIDEO_FORMATS = {".gif": "gif", ".mp4": "mp4"}


def _mp4_module():
    try:
        import imageio_ffmpeg
    except ImportError:
        raise VideoWriterError("MP4 needs imageio-ffmpeg: pip install imageio-ffmpeg (or pip install "
                               "'gankit[video]'), or write a GIF instead") from None
    return imageio_ffmpeg


def mp4_available() -> bool:
    """True when imageio-ffmpeg (which ships its own ffmpeg binary) can be imported."""
    try:
        _mp4_module()
        return True
    except VideoWriterError:
        return False


def save_video(frames: Sequence[np.ndarray], path, fps: float = 8.0) -> None:
    """Write uint8 RGB frames [H, W, 3] (all the same size) as an animation, atomically; the suffix picks the
    format: ``.gif`` (Pillow, loops forever) or ``.mp4`` (H.264 via imageio-ffmpeg, yuv420p so that any
    player shows it; odd sizes are padded by one white row/column, since 4:2:0 needs even sizes)."""
    path = Path(path)
    kind = VIDEO_FORMATS.get(path.suffix.lower())
    if kind is None:
        raise VideoWriterError(f"{path}: unknown video suffix; use one of {', '.join(VIDEO_FORMATS)}")
    frames = [np.asarray(f) for f in frames]
    if not frames:
        raise ValueError("no frames to write")
    shape = frames[0].shape
    if any(f.shape != shape or f.dtype != np.uint8 for f in frames) or len(shape) != 3 or shape[2] != 3:
        raise ValueError(f"frames must all be uint8 [H, W, 3] of one size, got {[f.shape for f in frames[:3]]}...")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if kind == "gif":
        pil = [to_pil(f) for f in frames]
        with atomic_path(path) as tmp:
            pil[0].save(tmp, format="GIF", save_all=True, append_images=pil[1:], duration=round(1000 / fps), loop=0)
        return
    ffmpeg = _mp4_module()
    h, w = shape[:2]
    ph, pw = h % 2, w % 2
    with atomic_path(path) as tmp:
        writer = ffmpeg.write_frames(tmp, (w + pw, h + ph), fps=fps, codec="libx264", macro_block_size=1,
                                     output_params=["-f", "mp4", "-movflags", "+faststart"])
        writer.send(None)  # start ffmpeg
        try:
            for f in frames:
                if ph or pw:
                    f = np.pad(f, ((0, ph), (0, pw), (0, 0)), constant_values=255)
                writer.send(np.ascontiguousarray(f))
        finally:
            writer.close()
