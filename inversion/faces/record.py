"""The transform record: saving an aligned face with its JSON sidecar (atomically), and reading it back.

A record holds everything needed to redo or invert the alignment: the source size (after EXIF
orientation), the 68 landmarks, the quad, shrink factor, crop box and padding, output/transform
size, backend and preset, and ``affine`` - the 2 x 3 map from aligned pixel (u, v) to photo index
coordinates for an ``output_size`` image.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .align import RECORD_FORMAT
from .errors import RecordError

_REQUIRED = ("source", "output_size", "affine", "quad", "qsize", "landmarks")


def _atomic_path(path):
    from generators.formats.atomic import atomic_path  # imported lazily: it pulls in torch
    return atomic_path(path)


def save_image(img, path, **save_kwargs) -> Path:
    """Pillow save to a temp file next to ``path``, then rename (the format comes from the suffix)."""
    path = Path(path)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".tif": "TIFF",
           ".tiff": "TIFF", ".bmp": "BMP"}.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unknown image suffix {path.suffix!r} (use .png, .jpg, .webp, .tif or .bmp)")
    if fmt == "JPEG":
        save_kwargs.setdefault("quality", 95)
    with _atomic_path(path) as tmp:
        img.save(tmp, format=fmt, **save_kwargs)
    return path


def save_record(record: dict, path) -> Path:
    path = Path(path)
    text = json.dumps(record, indent=1)
    with _atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    return path


def save_aligned(aligned, record: dict, image_path) -> tuple:
    """Write the aligned image and its sidecar ``<same stem>.json``; returns both paths."""
    image_path = Path(image_path)
    json_path = image_path.with_suffix(".json")
    rec = dict(record)
    rec["aligned_file"] = image_path.name
    save_image(aligned, image_path)
    save_record(rec, json_path)
    return image_path, json_path


def load_record(record) -> dict:
    """A record dict or the path of its JSON sidecar -> validated dict (RecordError on problems)."""
    if isinstance(record, (str, os.PathLike)):
        name = os.fspath(record)
        try:
            with open(name, encoding="utf-8") as f:
                record = json.load(f)
        except FileNotFoundError:
            raise RecordError(f"{name}: no such record file") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise RecordError(f"{name}: not a readable JSON record ({str(e).splitlines()[0]})") from None
    if not isinstance(record, dict):
        raise RecordError("a transform record must be a JSON object")
    missing = [k for k in _REQUIRED if k not in record]
    if missing or record.get("format", RECORD_FORMAT) != RECORD_FORMAT:
        raise RecordError(f"not a gankit face-alignment record (missing {', '.join(missing) or 'format'})")
    try:
        a = np.asarray(record["affine"], dtype=np.float64)
        size = [int(v) for v in record["source"]["size"]]
        n = int(record["output_size"])
    except (TypeError, ValueError, KeyError) as e:
        raise RecordError(f"malformed transform record ({e})") from None
    if a.shape != (2, 3) or not np.all(np.isfinite(a)) or len(size) != 2 or n < 1:
        raise RecordError("malformed transform record (affine must be 2 x 3, source size W x H)")
    if abs(np.linalg.det(a[:, :2])) < 1e-12:
        raise RecordError("malformed transform record (singular affine)")
    return record


def record_affine(record: dict, size: int | None = None) -> np.ndarray:
    """The record's aligned->photo affine, rescaled for an aligned image of ``size`` pixels."""
    a = np.asarray(record["affine"], dtype=np.float64).copy()
    n = float(record["output_size"])
    if size is None or int(size) == int(n):
        return a
    # u_N + 0.5 = (u_size + 0.5) * N / size: pixel centres map consistently between sizes
    k = n / float(size)
    t = a[:, 2] + (a[:, 0] + a[:, 1]) * (0.5 * k - 0.5)
    a[:, 0] *= k
    a[:, 1] *= k
    a[:, 2] = t
    return a
