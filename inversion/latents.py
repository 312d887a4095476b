"""Latent files: gankit's ``latents.npz`` and the formats of the reference tools.

    lat = Latents.from_result(res, names, G)       # from an InversionResult
    save(path, lat); lat = load(path)              # gankit's .npz
    lat = read(path)                               # any supported format, sniffed
    write(path, lat, format="e4e")                 # any supported format

gankit ``.npz`` (no pickles): ``w`` float32 [N, num_ws, w_dim], ``names`` str [N], ``space``,
``method``, ``generator_sha256``, ``resolution`` (int), ``format`` = "gankit-latents", ``version``,
``loss/<name>`` float32 [N] final losses, optionally ``noise/<k>`` float32 [N, 1, r, r].

Other formats (as those tools write them):

=============  =====================  ============================================================
format         file                   content
=============  =====================  ============================================================
``nvidia``     ``projected_w.npz``    key ``w`` [1, num_ws, w_dim] float32 (NVIDIA projector); N > 1 read
``e4e``        ``latents.pt``         a tensor [N, num_ws, w_dim] (e4e ``scripts/inference.py``)
``restyle``    ``latents.npy``        object array holding {image name: [latent of each iteration]},
                                      each [num_ws, w_dim] (ReStyle / HyperStyle inference); the last
                                      iteration is read
``pti``        ``0.pt``               the pivot tensor [1, num_ws, w_dim] (PTI ``embeddings/.../0.pt``)
``rosinality`` ``<name>.pt``          {image path: {"img", "latent" ([w_dim] or [num_ws, w_dim]), "noise"}}
=============  =====================  ============================================================

Reading never runs code from the file: ``.pt`` files use ``torch.load(weights_only=True)`` and the
pickled ``latents.npy`` goes through gankit's allow-list unpickler.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

__all__ = ["Latents", "LatentFileError", "save", "load", "read", "write", "FORMATS", "sniff"]

FORMAT = "gankit-latents"
VERSION = 1
FORMATS = ("gankit", "nvidia", "e4e", "restyle", "pti", "rosinality")


class LatentFileError(ValueError):
    """Unreadable, unsafe or inconsistent latent file."""


@dataclass
class Latents:
    """w [N, num_ws, w_dim] float32 plus what produced it."""

    w: np.ndarray
    names: List[str] = field(default_factory=list)
    space: str = "w+"
    method: str = ""
    generator_sha256: str = ""
    resolution: int = 0
    losses: Dict[str, np.ndarray] = field(default_factory=dict)
    noise: Optional[List[np.ndarray]] = None

    def __post_init__(self):
        self.w = np.asarray(self.w, dtype=np.float32)
        if self.w.ndim == 2:
            self.w = self.w[:, None]
        if self.w.ndim != 3:
            raise LatentFileError(f"w must be [N, num_ws, w_dim], got {self.w.shape}")
        if not self.names:
            self.names = [f"{i:04d}" for i in range(len(self.w))]
        self.names = [str(n) for n in self.names]
        if len(self.names) != len(self.w):
            raise LatentFileError(f"{len(self.names)} names for {len(self.w)} latents")

    def __len__(self):
        return len(self.w)

    @classmethod
    def from_result(cls, res, names=None, G=None, generator_sha256: str = "") -> "Latents":
        """From an :class:`inversion.result.InversionResult` (``G`` fills sha256 and resolution)."""
        sha, resolution = generator_sha256, int(res.images.shape[-1]) if res.images is not None else 0
        if G is not None and not sha:
            from editing.directions import generator_sha256 as _sha
            sha = _sha(G)
        noise = None
        if res.noise is not None and all(n is not None for n in res.noise):
            noise = [n.detach().cpu().numpy().astype(np.float32) for n in res.noise]
        return cls(w=res.ws.detach().cpu().numpy(), names=list(names) if names is not None else [],
                   space=res.space, method=res.method, generator_sha256=sha, resolution=resolution,
                   losses={k: np.asarray(v, np.float32) for k, v in res.losses.items()}, noise=noise)

    def select(self, idx) -> "Latents":
        idx = list(idx)
        return Latents(w=self.w[idx], names=[self.names[i] for i in idx], space=self.space, method=self.method,
                       generator_sha256=self.generator_sha256, resolution=self.resolution,
                       losses={k: np.asarray(v)[idx] for k, v in self.losses.items()},
                       noise=[n[idx] for n in self.noise] if self.noise is not None else None)

    @staticmethod
    def concat(items: List["Latents"]) -> "Latents":
        items = [x for x in items if len(x)]
        if not items:
            raise LatentFileError("nothing to concatenate")
        first = items[0]
        keys = set.intersection(*(set(x.losses) for x in items))
        noise = None
        if all(x.noise is not None for x in items) and len({len(x.noise) for x in items}) == 1:
            noise = [np.concatenate(ns) for ns in zip(*(x.noise for x in items))]
        return Latents(w=np.concatenate([x.w for x in items]), names=sum((x.names for x in items), []),
                       space=first.space, method=first.method, generator_sha256=first.generator_sha256,
                       resolution=first.resolution,
                       losses={k: np.concatenate([np.asarray(x.losses[k]) for x in items]) for k in keys},
                       noise=noise)

    def torch(self, device="cpu", num_ws: Optional[int] = None):
        """w as a tensor; ``num_ws`` repeats a single-slot W latent ([N, 1, w_dim]) over the slots."""
        import torch
        w = torch.from_numpy(self.w).to(device)
        if num_ws is not None and w.shape[1] != num_ws:
            if w.shape[1] != 1:
                raise LatentFileError(f"latents have {w.shape[1]} ws; the generator takes {num_ws}")
            w = w.repeat(1, num_ws, 1)
        return w


# ---------------------------------------------------------------------------------------------- gankit


def save(path, lat: Latents) -> None:
    """Write gankit's latent ``.npz`` atomically."""
    from generators.formats.atomic import atomic_path
    arrays = dict(w=lat.w.astype(np.float32), names=np.asarray(lat.names, dtype=str), space=np.asarray(lat.space),
                  method=np.asarray(lat.method), generator_sha256=np.asarray(lat.generator_sha256),
                  resolution=np.asarray(int(lat.resolution), dtype=np.int64), format=np.asarray(FORMAT),
                  version=np.asarray(VERSION, dtype=np.int64))
    for k, v in lat.losses.items():
        arrays[f"loss/{k}"] = np.asarray(v, dtype=np.float32)
    for i, n in enumerate(lat.noise or []):
        arrays[f"noise/{i}"] = np.asarray(n, dtype=np.float32)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def load(path) -> Latents:
    """Read gankit's latent ``.npz``."""
    try:
        f = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise LatentFileError(f"{path}: cannot read ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    with f:
        if not hasattr(f, "files") or "format" not in f.files or str(f["format"]) != FORMAT:
            raise LatentFileError(f"{path}: not a gankit latent file")
        nkeys = sorted((k for k in f.files if k.startswith("noise/")), key=lambda k: int(k.split("/")[1]))
        return Latents(w=f["w"], names=[str(n) for n in f["names"]], space=str(f["space"]),
                       method=str(f["method"]), generator_sha256=str(f["generator_sha256"]),
                       resolution=int(f["resolution"]),
                       losses={k[5:]: f[k] for k in f.files if k.startswith("loss/")},
                       noise=[f[k] for k in nkeys] or None)


# ---------------------------------------------------------------------------------------------- others


def _torch_load(path):
    from generators.formats import torch_load_safe
    from generators.spec import CheckpointError
    try:
        return torch_load_safe(str(path))
    except CheckpointError as e:
        raise LatentFileError(f"{path}: {e}") from None


def _np(t):
    import torch
    if isinstance(t, torch.Tensor):
        return t.detach().cpu().float().numpy()
    return np.asarray(t, dtype=np.float32)


def _as_ws(a, path, what="latent") -> np.ndarray:
    a = _np(a)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise LatentFileError(f"{path}: {what} must be [N, num_ws, w_dim], got {list(a.shape)}")
    return a


def _space_of(w: np.ndarray) -> str:
    """"w" when every slot holds the same vector (a W result repeated), else "w+"."""
    return "w" if w.shape[1] == 1 or bool(np.all(w == w[:, :1])) else "w+"


def _read_npy_object(path):
    """Load a pickled (object) ``.npy`` with the allow-list unpickler (nothing from the file is run)."""
    from generators.formats.safe_pickle import load_pickle
    from generators.spec import CheckpointError
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = reader(f)
        except ValueError as e:
            raise LatentFileError(f"{path}: not a .npy file ({e})") from None
        if not dtype.hasobject:
            return np.fromfile(f, dtype=dtype).reshape(shape, order="F" if fortran else "C")
        try:
            return load_pickle(f)
        except CheckpointError as e:
            raise LatentFileError(f"{path}: {e}") from None


def sniff(path) -> str:
    """The format of a latent file, from its suffix and content."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".npz":
        try:
            with np.load(p, allow_pickle=False) as f:
                files = f.files
        except (OSError, ValueError) as e:
            raise LatentFileError(f"{path}: cannot read ({e})") from None
        if "format" in files:
            return "gankit"
        if "w" in files:
            return "nvidia"
        raise LatentFileError(f"{path}: an .npz with neither gankit's keys nor NVIDIA's 'w'")
    if suffix == ".npy":
        return "restyle"
    if suffix in (".pt", ".pth"):
        obj = _torch_load(p)
        if isinstance(obj, dict):
            return "rosinality"
        return "pti" if getattr(obj, "shape", (0,))[0] == 1 and p.stem == "0" else "e4e"
    raise LatentFileError(f"{path}: unknown latent file type (use .npz, .npy, .pt)")


def read(path, format: Optional[str] = None, iteration: int = -1) -> Latents:
    """Read any supported latent file (``format`` None: sniffed). ReStyle/HyperStyle files keep every
    iteration; ``iteration`` picks one (default the last)."""
    p = Path(path)
    if not p.is_file():
        raise LatentFileError(f"{path}: no such file")
    fmt = format or sniff(p)
    if fmt == "gankit":
        return load(p)
    if fmt == "nvidia":
        with np.load(p, allow_pickle=False) as f:
            if "w" not in f.files:
                raise LatentFileError(f"{path}: NVIDIA projected_w.npz needs key 'w'")
            w = _as_ws(f["w"], path, "w")
        stem = p.stem if len(w) == 1 else None
        return Latents(w=w, names=[stem] if stem else [], space=_space_of(w), method="nvidia-projector")
    if fmt in ("e4e", "pti"):
        obj = _torch_load(p)
        import torch
        if not isinstance(obj, torch.Tensor):
            raise LatentFileError(f"{path}: expected a latent tensor, got {type(obj).__name__}")
        w = _as_ws(obj, path)
        names = [p.parent.name] if fmt == "pti" and len(w) == 1 and p.parent.name else []
        return Latents(w=w, names=names, space=_space_of(w), method=fmt)
    if fmt == "restyle":
        obj = _read_npy_object(p)
        if isinstance(obj, np.ndarray) and obj.dtype == object and obj.shape == ():
            obj = obj.item()
        if not isinstance(obj, dict):
            raise LatentFileError(f"{path}: expected a dict of image name -> latents, got {type(obj).__name__}")
        names, ws = [], []
        for k, v in obj.items():
            if isinstance(v, (list, tuple)):
                if not v:
                    raise LatentFileError(f"{path}: no latents for {k!r}")
                v = v[iteration]
            a = _np(v)
            if a.ndim == 3 and a.shape[0] != 1:   # [iterations, num_ws, w_dim] stored as one array
                a = a[iteration]
            names.append(os.path.splitext(str(k))[0])
            ws.append(_as_ws(a, path)[0])
        w = np.stack(ws)
        return Latents(w=w, names=names, space=_space_of(w), method="restyle")
    if fmt == "rosinality":
        obj = _torch_load(p)
        if not isinstance(obj, dict):
            raise LatentFileError(f"{path}: expected rosinality's {{path: {{img, latent, noise}}}} dict")
        names, ws, noises = [], [], []
        for k, v in obj.items():
            if not isinstance(v, dict) or "latent" not in v:
                raise LatentFileError(f"{path}: entry {k!r} has no 'latent'")
            a = _np(v["latent"])
            if a.ndim == 1:
                a = a[None]
            names.append(Path(str(k)).stem)
            ws.append(a)
            noises.append(v.get("noise"))
        if len({a.shape for a in ws}) != 1:
            raise LatentFileError(f"{path}: latents of different shapes")
        space = "w" if ws[0].shape[0] == 1 else "w+"
        noise = None
        if all(isinstance(nz, (list, tuple)) and nz for nz in noises) and len({len(nz) for nz in noises}) == 1:
            noise = [np.concatenate([_np(nz[j]).reshape(1, 1, *_np(nz[j]).shape[-2:]) for nz in noises])
                     for j in range(len(noises[0]))]
        return Latents(w=np.stack(ws), names=names, space=space, method="rosinality-projector", noise=noise)
    raise LatentFileError(f"unknown latent format {fmt!r}; choose from {', '.join(FORMATS)}")


def write(path, lat: Latents, format: str = "gankit", images=None) -> None:
    """Write ``lat`` in ``format``. ``images`` ([N, C, H, W], optional) fills rosinality's ``img``."""
    import torch
    from generators.formats.atomic import atomic_path, atomic_torch_save
    if format == "gankit":
        return save(path, lat)
    if format == "nvidia":
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, w=lat.w.astype(np.float32))
        return None
    if format == "e4e":
        return atomic_torch_save(torch.from_numpy(lat.w.copy()), path)
    if format == "pti":
        if len(lat) != 1:
            raise LatentFileError(f"PTI keeps one pivot per file (embeddings/<image>/0.pt); got {len(lat)} latents")
        return atomic_torch_save(torch.from_numpy(lat.w.copy()), path)
    if format == "restyle":
        d = {f"{n}.png" if not os.path.splitext(n)[1] else n: [w] for n, w in zip(lat.names, lat.w)}
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, np.asarray(d, dtype=object), allow_pickle=True)
        return None
    if format == "rosinality":
        d = {}
        for i, (n, w) in enumerate(zip(lat.names, lat.w)):
            latent = torch.from_numpy(w[0].copy() if lat.space == "w" else w.copy())
            entry = {"latent": latent}
            if images is not None:
                entry["img"] = torch.as_tensor(images[i]).detach().cpu().float()
            if lat.noise is not None:
                entry["noise"] = [torch.from_numpy(np.ascontiguousarray(nz[i:i + 1])) for nz in lat.noise]
            d[n] = entry
        return atomic_torch_save(d, path)
    raise LatentFileError(f"unknown latent format {format!r}; choose from {', '.join(FORMATS)}")
