"""Image datasets for training: a folder of images, NVIDIA's dataset_tool zip, labels from JSON or CSV.

Every source is decoded once into a uint8 array ``[N, C, R, R]`` held in memory (a 64x64 dataset of
10,000 faces is 120 MB), so training steps never wait on JPEG decoding. Images are converted to RGB,
center-cropped to a square and resized with Lanczos to the training resolution. Files Pillow cannot
read are reported (one line each, through ``warnings``) and skipped, never fatal.

NVIDIA's zip layout (``dataset_tool.py``): PNG files ``00000/img00000000.png`` ... plus a
``dataset.json`` ``{"labels": [["00000/img00000000.png", label], ...]}`` where a label is an int
(class) or a list of floats, or ``null``.
"""
from __future__ import annotations

import csv
import io
import json
import os
import warnings
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .formats.atomic import atomic_path

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jfif"}


class DatasetError(ValueError):
    """A dataset path that holds no usable images, or labels that do not match the images."""


def prepare_image(img: Image.Image, resolution: Optional[int]) -> np.ndarray:
    """Any Pillow image -> RGB, center square crop, Lanczos resize -> uint8 [3, R, R]."""
    img = img.convert("RGB")
    w, h = img.size
    s = min(w, h)
    if w != h:
        left, top = (w - s) // 2, (h - s) // 2
        img = img.crop((left, top, left + s, top + s))
    if resolution is not None and s != resolution:
        img = img.resize((resolution, resolution), Image.LANCZOS)
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).copy()


def _decode(data_or_path, name: str, resolution: Optional[int]) -> Optional[np.ndarray]:
    try:
        src = io.BytesIO(data_or_path) if isinstance(data_or_path, bytes) else data_or_path
        with Image.open(src) as img:
            return prepare_image(img, resolution)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        warnings.warn(f"skipping unreadable image {name}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
        return None


def list_images(root: Union[str, Path]) -> List[Path]:
    """Image files under ``root`` (recursive, sorted by relative path)."""
    root = Path(root)
    files = [p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def read_csv_labels(csv_path: Union[str, Path], columns: Optional[Sequence[str]] = None,
                    file_column: str = "file") -> Tuple[Dict[str, np.ndarray], List[str]]:
    """CSV with a file-name column and numeric label columns -> ({file name: float32 vector}, column names)."""
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or file_column not in reader.fieldnames:
            raise DatasetError(f"{csv_path}: no '{file_column}' column")
        cols = list(columns) if columns else [c for c in reader.fieldnames if c != file_column]
        missing = [c for c in cols if c not in reader.fieldnames]
        if missing:
            raise DatasetError(f"{csv_path}: no column(s) {missing}")
        table = {}
        for row in reader:
            try:
                table[row[file_column]] = np.array([float(row[c]) for c in cols], dtype=np.float32)
            except ValueError as e:
                raise DatasetError(f"{csv_path}: non-numeric label in row for {row[file_column]}: {e}") from None
    return table, cols


class ImageDataset(torch.utils.data.Dataset):
    """Images as uint8 ``[N, C, R, R]`` in memory, optional labels ``[N, c_dim]`` and x-flip doubling.

    ``__getitem__`` returns ``(uint8 tensor [C, R, R], float32 label [c_dim])`` like NVIDIA's dataset.
    ``xflip=True`` doubles the dataset with mirrored copies (index >= N is the mirror of index - N).
    """

    def __init__(self, images: np.ndarray, labels: Optional[np.ndarray] = None, names: Optional[List[str]] = None,
                 xflip: bool = False, label_names: Optional[List[str]] = None):
        if images.ndim != 4 or images.shape[0] == 0:
            raise DatasetError("dataset holds no images")
        self.images = torch.from_numpy(np.ascontiguousarray(images))        # [N, C, R, R] uint8
        self.labels = None if labels is None else torch.from_numpy(np.asarray(labels, dtype=np.float32))
        if self.labels is not None and self.labels.ndim == 1:
            self.labels = self.labels[:, None]
        self.names = names or [str(i) for i in range(len(images))]
        self.label_names = label_names
        self.xflip = bool(xflip)

    @property
    def resolution(self) -> int:
        return int(self.images.shape[-1])

    @property
    def num_channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def c_dim(self) -> int:
        return 0 if self.labels is None else int(self.labels.shape[1])

    @property
    def num_raw(self) -> int:
        return int(self.images.shape[0])

    def __len__(self) -> int:
        return self.num_raw * (2 if self.xflip else 1)

    def __getitem__(self, idx):
        img = self.images[idx % self.num_raw]
        if idx >= self.num_raw:
            img = img.flip(-1)
        label = self.labels[idx % self.num_raw] if self.labels is not None else torch.zeros([0])
        return img, label

    def batch(self, indices: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Fast gather: uint8 [B, C, R, R] and labels [B, c_dim] for a tensor of indices."""
        raw = indices % self.num_raw
        img = self.images[raw]
        if self.xflip:
            flip = indices >= self.num_raw
            if flip.any():
                img = img.clone()
                img[flip] = img[flip].flip(-1)
        labels = self.labels[raw] if self.labels is not None else torch.zeros([len(indices), 0])
        return img, labels


def _load_folder(root: Path, resolution: Optional[int], progress: bool, limit: Optional[int]) -> Tuple[list, list]:
    from tqdm import tqdm
    arrays, names = [], []
    files = list_images(root)
    bar = tqdm(total=min(len(files), limit or len(files)), desc=f"reading {root.name}", unit="img",
               disable=not progress, leave=False)
    for p in files:
        if limit is not None and len(arrays) >= limit:
            break
        bar.update(1)
        a = _decode(p, str(p), resolution)
        if a is not None:
            arrays.append(a)
            names.append(p.relative_to(root).as_posix())
    bar.close()
    return arrays, names


def _load_zip(path: Path, resolution: Optional[int], progress: bool,
              limit: Optional[int]) -> Tuple[list, list, Optional[dict]]:
    from tqdm import tqdm
    arrays, names, labels = [], [], None
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise DatasetError(f"{path}: not a readable zip file ({e})") from None
    with zf:
        members = sorted(n for n in zf.namelist() if Path(n).suffix.lower() in IMAGE_EXTENSIONS)
        if "dataset.json" in zf.namelist():
            labels = _json_labels(zf.read("dataset.json"), f"{path}:dataset.json")
        for n in tqdm(members, desc=f"reading {path.name}", unit="img", disable=not progress, leave=False):
            if limit is not None and len(arrays) >= limit:
                break
            a = _decode(zf.read(n), f"{path}:{n}", resolution)
            if a is not None:
                arrays.append(a)
                names.append(n)
    return arrays, names, labels


def _json_labels(text: bytes, where: str) -> Optional[dict]:
    """``dataset.json`` contents -> {image name: label} (None when it says ``"labels": null``)."""
    try:
        raw = json.loads(text).get("labels")
        return None if raw is None else {str(name): lab for name, lab in raw}
    except (ValueError, AttributeError, TypeError) as e:     # JSONDecodeError is a ValueError
        raise DatasetError(f"{where}: not a dataset.json with a 'labels' list of [name, label] pairs ({e})") \
            from None


def _labels_array(values: List, names: List[str]) -> Optional[np.ndarray]:
    if all(v is None for v in values):
        return None
    if any(v is None for v in values):
        missing = [n for n, v in zip(names, values) if v is None][:3]
        raise DatasetError(f"labels missing for some images, e.g. {missing}")
    if all(isinstance(v, (int, np.integer)) for v in values):       # class indices -> one-hot (NVIDIA)
        if min(values) < 0:
            raise DatasetError(f"negative class label {min(values)} in dataset.json")
        n_cls = int(max(values)) + 1
        out = np.zeros([len(values), n_cls], dtype=np.float32)
        out[np.arange(len(values)), np.asarray(values)] = 1
        return out
    try:
        return np.asarray(values, dtype=np.float32).reshape(len(values), -1)
    except (ValueError, TypeError) as e:
        raise DatasetError(f"dataset.json labels are not all numbers / lists of one length ({e})") from None


def open_dataset(path: Union[str, Path], resolution: Optional[int] = None, labels: Union[str, Path, None] = None,
                 label_columns: Optional[Sequence[str]] = None, use_labels: bool = False, xflip: bool = False,
                 max_images: Optional[int] = None, progress: bool = True) -> ImageDataset:
    """Open a folder or dataset_tool zip as an in-memory :class:`ImageDataset`.

    ``labels``: a CSV (``file`` column + numeric columns, matched by file name or relative path); without
    it, ``use_labels=True`` takes the zip's/folder's ``dataset.json``. ``resolution=None`` keeps the native
    size (all images must then share it).
    """
    path = Path(path)
    json_labels = None
    if path.is_dir():
        arrays, names = _load_folder(path, resolution, progress, max_images)
        if use_labels and labels is None and (path / "dataset.json").is_file():
            json_labels = _json_labels((path / "dataset.json").read_bytes(), str(path / "dataset.json"))
    elif path.is_file() and zipfile.is_zipfile(path):
        arrays, names, json_labels = _load_zip(path, resolution, progress, max_images)
    elif path.exists():
        raise DatasetError(f"{path}: not a folder of images or a dataset zip")
    else:
        raise DatasetError(f"{path}: no such file or folder")
    if not arrays:
        raise DatasetError(f"{path}: no readable images")
    if resolution is None and len({a.shape for a in arrays}) != 1:
        raise DatasetError(f"{path}: images differ in size; pass a resolution")
    if max_images is not None and len(arrays) > max_images:
        arrays, names = arrays[:max_images], names[:max_images]
    label_arr, label_names = None, None
    if labels is not None:
        table, label_names = read_csv_labels(labels, label_columns)
        values = [table.get(n, table.get(Path(n).name)) for n in names]
        keep = [i for i, v in enumerate(values) if v is not None]
        if not keep:
            raise DatasetError(f"{labels}: no row matches any image file name")
        if len(keep) < len(names):
            warnings.warn(f"{len(names) - len(keep)} images have no row in {labels} and are left out")
        arrays, names, values = [arrays[i] for i in keep], [names[i] for i in keep], [values[i] for i in keep]
        label_arr = np.stack(values)
    elif use_labels and json_labels is not None:
        label_arr = _labels_array([json_labels.get(n) for n in names], names)
    return ImageDataset(np.stack(arrays), label_arr, names, xflip=xflip, label_names=label_names)


def pack(src: Union[str, Path], dst: Union[str, Path], resolution: int, labels: Union[str, Path, None] = None,
         label_columns: Optional[Sequence[str]] = None, max_images: Optional[int] = None,
         progress: bool = True) -> int:
    """Write NVIDIA's dataset_tool zip (PNG images + ``dataset.json``) from a folder or zip. Returns the count.

    Labels (from the CSV, else the source's own ``dataset.json``) are stored as float lists: exactly the
    vectors ``open_dataset`` gave, so training on the zip conditions G and D as training on the source
    would (class-int labels of a source zip arrive one-hot and stay one-hot).
    """
    ds = open_dataset(src, resolution=resolution, labels=labels, label_columns=label_columns,
                      use_labels=labels is None, max_images=max_images, progress=progress)
    from tqdm import tqdm
    label_list = None
    if ds.labels is not None:
        label_list = [[float(x) for x in row] for row in ds.labels.numpy()]
    entries = []
    with atomic_path(dst) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for i in tqdm(range(ds.num_raw), desc="packing", unit="img", disable=not progress, leave=False):
                name = f"{i // 1000:05d}/img{i:08d}.png"
                buf = io.BytesIO()
                Image.fromarray(ds.images[i].permute(1, 2, 0).numpy()).save(buf, format="png", compress_level=1)
                zf.writestr(name, buf.getvalue())
                entries.append([name, None if label_list is None else label_list[i]])
            zf.writestr("dataset.json", json.dumps({"labels": entries if label_list is not None else None}))
    return ds.num_raw


__all__ = ["ImageDataset", "DatasetError", "open_dataset", "pack", "prepare_image", "list_images",
           "read_csv_labels", "IMAGE_EXTENSIONS"]
