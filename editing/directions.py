"""Direction files: gankit's ``.npz`` plus readers/writers for the community layouts.

gankit ``.npz`` (``np.load(allow_pickle=False)`` safe) keys:

* ``vectors`` [K, D] (one direction per row) or [K, L, D] (per-layer W+ directions), float32
* ``names`` [K] unicode; ``space`` ('z' | 'w' | 'w+' | 's'); ``method`` ('interfacegan', 'ganspace',
  'sefa', 'rosinality_closed_form', 'e4e', ...); ``layers`` [M] int (W+ rows the edit is meant for;
  empty = all); ``generator_sha256`` (hex, may be ''); ``format`` = 'gankit-directions'; ``version``.
* optional: ``scales`` [K] (e.g. GANSpace ``lat_stdev``: strength unit), ``mean`` [1, D],
  ``eigenvalues`` [K], ``var_ratio`` [K].

Readers (``read(path)`` sniffs the layout): InterFaceGAN ``.npy`` [1, D] float32/float64 (also the
stylegan3-editing boundaries), GANSpace cache ``.npz``, rosinality ``factor.pt`` (``{'ckpt',
'eigvec' [D, D]}``, direction i = column i), e4e/ReStyle/HyperStyle ``.pt`` tensors [1, D] or
[1, L, D] (possibly saved on CUDA) and the e4e GANSpace dict ``{'mean', 'comp', 'std'}``.
``.pt`` files are read with ``torch.load(map_location='cpu', weights_only=True)`` only.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

__all__ = ["Directions", "read", "write", "save", "load", "read_interfacegan", "write_interfacegan",
           "read_ganspace", "read_rosinality_factor", "write_rosinality_factor", "read_e4e", "write_e4e",
           "generator_sha256"]

FORMAT = "gankit-directions"
VERSION = 1


@dataclass
class Directions:
    vectors: np.ndarray                       # [K, D] or [K, L, D]
    names: List[str] = field(default_factory=list)
    space: str = "w"
    method: str = ""
    layers: Optional[List[int]] = None        # None = all W+ rows
    generator_sha256: str = ""
    extra: Dict[str, np.ndarray] = field(default_factory=dict)   # scales, mean, eigenvalues, ...

    def __post_init__(self):
        v = np.asarray(self.vectors, dtype=np.float32)
        if v.ndim == 1:
            v = v[None]
        if v.ndim not in (2, 3):
            raise ValueError(f"vectors must be [K, D] or [K, L, D], got {v.shape}")
        self.vectors = v
        if not self.names:
            self.names = [f"{self.method or 'direction'}_{i}" for i in range(len(v))]
        if len(self.names) != len(v):
            raise ValueError(f"{len(self.names)} names for {len(v)} vectors")
        if self.space not in ("z", "w", "w+", "s"):
            raise ValueError(f"space must be z, w, w+ or s, got {self.space!r}")

    def __len__(self):
        return len(self.vectors)

    def index(self, key):
        """Row index of a name or an int."""
        if isinstance(key, (int, np.integer)):
            return int(key)
        return self.names.index(key)

    def vector(self, key=0, scaled=False):
        """Direction ``key`` (name or index); ``scaled`` multiplies by ``extra['scales']`` (GANSpace stdev)."""
        i = self.index(key)
        v = self.vectors[i]
        if scaled and "scales" in self.extra:
            v = v * float(self.extra["scales"][i])
        return v


def _f32(x):
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def generator_sha256(G_or_path):
    """sha256 of a checkpoint file, or of a module's parameters and buffers (sorted names, raw bytes)."""
    h = hashlib.sha256()
    if isinstance(G_or_path, (str, os.PathLike)):
        with open(G_or_path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()
    for name, t in sorted(G_or_path.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def save(path, d: Directions):
    """Write gankit's direction ``.npz``."""
    arrays = dict(vectors=d.vectors.astype(np.float32), names=np.asarray(d.names, dtype=str),
                  space=np.asarray(d.space), method=np.asarray(d.method),
                  layers=np.asarray([] if d.layers is None else list(d.layers), dtype=np.int64),
                  generator_sha256=np.asarray(d.generator_sha256), format=np.asarray(FORMAT),
                  version=np.asarray(VERSION, dtype=np.int64))
    for k, v in d.extra.items():
        if k in arrays:
            raise ValueError(f"extra key {k!r} clashes with a reserved key")
        arrays[k] = np.asarray(v)
    from generators.formats.atomic import atomic_path
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


BUNDLED_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "generators", "models")
BUNDLED = {"gankit-faces-directions": "gankit-faces-directions.npz"}   # InterFaceGAN age/gender/smile (W)


def resolve(path_or_name) -> str:
    """A file path as is; a bundled direction set's name (``gankit-faces-directions``) -> its file."""
    p = os.fspath(path_or_name)
    if not os.path.exists(p) and p in BUNDLED:
        return os.path.join(BUNDLED_DIR, BUNDLED[p])
    return p


def load(path) -> Directions:
    """Read gankit's direction ``.npz`` (or a bundled set by name)."""
    path = resolve(path)
    with np.load(path, allow_pickle=False) as f:
        if "format" not in f.files or str(f["format"]) != FORMAT:
            raise ValueError(f"{path}: not a gankit direction file")
        reserved = {"vectors", "names", "space", "method", "layers", "generator_sha256", "format", "version"}
        layers = f["layers"].tolist()
        return Directions(vectors=f["vectors"], names=[str(n) for n in f["names"]], space=str(f["space"]),
                          method=str(f["method"]), layers=layers or None,
                          generator_sha256=str(f["generator_sha256"]),
                          extra={k: f[k] for k in f.files if k not in reserved})


def read_interfacegan(path, name=None, space="w") -> Directions:
    """InterFaceGAN boundary ``.npy`` ([1, D] or [D], float32 or float64)."""
    v = np.load(path, allow_pickle=False)
    if v.ndim == 1:
        v = v[None]
    if v.ndim != 2 or v.shape[0] != 1:
        raise ValueError(f"{path}: expected a [1, D] boundary, got {v.shape}")
    nm = name or os.path.splitext(os.path.basename(str(path)))[0]
    return Directions(vectors=v, names=[nm], space=space, method="interfacegan")


def write_interfacegan(path, d: Directions, key=0):
    """One direction as an InterFaceGAN ``.npy`` [1, D] float32."""
    v = d.vector(key)
    if v.ndim != 1:
        raise ValueError("InterFaceGAN boundaries are [1, D]; this direction is per-layer")
    np.save(path, v.reshape(1, -1).astype(np.float32))


def read_ganspace(path_or_fields) -> Directions:
    """GANSpace cache ``.npz`` (or its field dict): vectors = ``lat_comp``, scales = ``lat_stdev``."""
    if isinstance(path_or_fields, dict):
        f = path_or_fields
    else:
        with np.load(path_or_fields, allow_pickle=False) as z:
            f = {k: z[k] for k in z.files}
    comp = _f32(f["lat_comp"])
    comp = comp.reshape(comp.shape[0], -1)
    extra = {"scales": _f32(f["lat_stdev"]).reshape(-1), "mean": _f32(f["lat_mean"]).reshape(1, -1)}
    if "var_ratio" in f:
        extra["var_ratio"] = _f32(f["var_ratio"])
    return Directions(vectors=comp, names=[f"pc{i}" for i in range(len(comp))], space="w", method="ganspace",
                      extra=extra)


def _torch_load(path):
    import torch
    return torch.load(path, map_location="cpu", weights_only=True)


def read_rosinality_factor(path) -> Directions:
    """rosinality ``closed_form_factorization.py`` output: direction i = ``eigvec[:, i]``."""
    obj = _torch_load(path)
    if not isinstance(obj, dict) or "eigvec" not in obj:
        raise ValueError(f"{path}: not a rosinality factor file (no 'eigvec')")
    eig = _f32(obj["eigvec"])
    extra = {"ckpt": np.asarray(str(obj.get("ckpt", "")))}
    return Directions(vectors=eig.T.copy(), names=[f"factor{i}" for i in range(eig.shape[1])], space="w",
                      method="rosinality_closed_form", extra=extra)


def write_rosinality_factor(path, d: Directions, ckpt=""):
    import torch
    torch.save({"ckpt": ckpt, "eigvec": torch.from_numpy(np.ascontiguousarray(d.vectors.T))}, path)


def read_e4e(path, name=None) -> Directions:
    """e4e/ReStyle/HyperStyle directions: tensor [1, D] (W), [1, L, D] (W+), or the GANSpace pca dict."""
    obj = _torch_load(path)
    nm = name or os.path.splitext(os.path.basename(str(path)))[0]
    if isinstance(obj, dict):
        if {"mean", "comp", "std"} <= set(obj):
            return read_ganspace({"lat_comp": obj["comp"], "lat_mean": obj["mean"], "lat_stdev": obj["std"]})
        raise ValueError(f"{path}: unknown dict layout {sorted(obj)}")
    v = _f32(obj)
    if v.ndim == 2 and v.shape[0] == 1:
        return Directions(vectors=v, names=[nm], space="w", method="interfacegan")
    if v.ndim == 3 and v.shape[0] == 1:
        if np.allclose(v[0], v[0, :1], atol=1e-7):
            d = Directions(vectors=v[0, :1], names=[nm], space="w", method="interfacegan")
            d.extra["num_ws"] = np.asarray(v.shape[1])
            return d
        return Directions(vectors=v, names=[nm], space="w+", method="interfacegan")
    raise ValueError(f"{path}: expected a [1, D] or [1, L, D] tensor, got {v.shape}")


def write_e4e(path, d: Directions, key=0, num_ws=None):
    """One direction as an e4e tensor: [1, D], or [1, num_ws, D] repeated (their ``pose.pt`` layout)."""
    import torch
    v = d.vector(key)
    if v.ndim == 1:
        t = torch.from_numpy(v.reshape(1, -1).copy())
        if num_ws:
            t = t[:, None].repeat(1, int(num_ws), 1)
    else:
        t = torch.from_numpy(v[None].copy())
    torch.save(t, path)


def read(path) -> Directions:
    """Read any supported direction file (sniffed by content), or a bundled set by name."""
    p = resolve(path)
    if p.endswith(".npy"):
        return read_interfacegan(p)
    if p.endswith(".npz"):
        with np.load(p, allow_pickle=False) as f:
            files = set(f.files)
        if "format" in files:
            return load(p)
        if "lat_comp" in files:
            return read_ganspace(p)
        raise ValueError(f"{p}: unknown .npz layout")
    obj = _torch_load(p)
    if isinstance(obj, dict) and "eigvec" in obj:
        return read_rosinality_factor(p)
    return read_e4e(p)


write = save
