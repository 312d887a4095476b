"""HyperStyle weight offsets on disk: one safetensors file per image, next to the latent file.

    save(OUT / "offsets" / "im0.safetensors", {weight name: [O, I, k, k]}, name="im0", generator_sha256=sha)
    offs = load(path)                        # {weight name: [O, I, k, k]} float32
    folder = sidecar(latents_path, names)    # <latents folder>/offsets when it holds the HyperStyle offsets

``gankit invert --method hyperstyle --out DIR`` writes ``DIR/latents.npz`` and ``DIR/offsets/<stem>.safetensors``;
``gankit edit`` / ``gankit generate --latents DIR/latents.npz`` find the folder and render with
``encoders.hyperstyle.synthesize_with_offsets`` (``W' = W * (1 + offset)``), so edits keep the detail the
hypernetwork restored. One file per image because real HyperStyle offsets are about 100 MB per image (17
tuned layers of a 1024 px FFHQ generator): a single file would be rewritten after every batch.

File layout (safetensors, no pickles): tensors keyed by the generator parameter name they modify
(``synthesis.b64.conv0.weight``; the names of ``encoders.hyperstyle.weight_layers``), float32. Offsets that
are constant over the kernel positions (HyperStyle's channel-wise ``RefinementBlock`` outputs) are stored as
``[O, I, 1, 1]`` and expanded on reading. Metadata (str): ``format`` = "gankit-offsets", ``version`` = "1",
``name`` (image stem), ``method`` ("hyperstyle"), ``generator_sha256`` (the generator the hypernetwork
was run with), ``shapes`` (JSON {key: full shape}).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

__all__ = ["OffsetFileError", "save", "load", "path_for", "sidecar", "locate", "check", "FOLDER"]

FORMAT = "gankit-offsets"
VERSION = "1"
FOLDER = "offsets"


class OffsetFileError(ValueError):
    """A missing, unreadable or inconsistent offsets file."""


def path_for(folder, name: str) -> Path:
    return Path(folder) / f"{name}.safetensors"


def save(path, offsets: Dict[str, "torch.Tensor"], name: str = "", method: str = "hyperstyle",
         generator_sha256: str = "") -> None:
    """Write one image's offsets ``{weight name: [O, I, k, k]}`` atomically."""
    from safetensors.torch import save_file
    from generators.formats.atomic import atomic_path
    tensors, shapes = {}, {}
    for k, v in offsets.items():
        v = v.detach().float().cpu()
        if v.ndim != 4:
            raise OffsetFileError(f"offset {k} must be [O, I, k, k], got {list(v.shape)}")
        shapes[k] = list(v.shape)
        if v.shape[-1] > 1 and bool((v == v[..., :1, :1]).all()):
            v = v[..., :1, :1]                           # channel-wise offset repeated over the kernel
        tensors[k] = v.contiguous()
    meta = dict(format=FORMAT, version=VERSION, name=str(name), method=str(method),
                generator_sha256=str(generator_sha256), shapes=json.dumps(shapes))
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=meta)


def read_metadata(path) -> dict:
    from safetensors import safe_open
    p = Path(path)
    if not p.is_file():
        raise OffsetFileError(f"{p}: no such offsets file")
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for bad headers
        raise OffsetFileError(f"{p}: not a safetensors file ({str(e).splitlines()[0] if str(e) else type(e).__name__})") \
            from None
    if meta.get("format") != FORMAT:
        raise OffsetFileError(f"{p}: not a gankit offsets file (format {meta.get('format')!r})")
    return meta


def load(path, device="cpu") -> Dict[str, "torch.Tensor"]:
    """One image's offsets ``{weight name: [O, I, k, k]}`` float32 (kernel-repeated ones expanded)."""
    from safetensors import safe_open
    meta = read_metadata(path)
    shapes = json.loads(meta.get("shapes", "{}"))
    out = {}
    with safe_open(str(path), framework="pt", device=str(device)) as f:
        for k in f.keys():
            t = f.get_tensor(k).float()
            full = tuple(shapes.get(k, t.shape))
            if tuple(t.shape) != full:
                if t.ndim != 4 or t.shape[-2:] != (1, 1) or tuple(t.shape[:2]) != full[:2]:
                    raise OffsetFileError(f"{path}: tensor {k} has shape {list(t.shape)}, metadata says {list(full)}")
                t = t.expand(full).contiguous()
            out[k] = t
    return out


def sidecar(latents_path, names: Sequence[str], method: str = "") -> Optional[Path]:
    """``<latents folder>/offsets`` for a HyperStyle latent file (``method == "hyperstyle"``), else None.

    A HyperStyle latent file without the folder, or a folder that lacks some image's file, is an error:
    the render would silently lose the detail the offsets restore."""
    if method != "hyperstyle":
        return None
    folder = Path(latents_path).parent / FOLDER
    if not folder.is_dir():
        raise OffsetFileError(f"{latents_path} holds HyperStyle latents but {folder} (their weight offsets) "
                              f"is missing; pass --offsets FOLDER, or --no-offsets to render without them")
    check(folder, names)
    return folder


def check(folder, names: Sequence[str]) -> None:
    missing: List[str] = [n for n in names if not path_for(folder, n).is_file()]
    if missing:
        raise OffsetFileError(f"{folder} has no offsets for {', '.join(missing[:3])}"
                              f"{' and %d more' % (len(missing) - 3) if len(missing) > 3 else ''} "
                              f"(expected {path_for(folder, missing[0]).name}); pass --no-offsets to render without")


def locate(latents_path, names: Sequence[str], method: str = "", given=None) -> Optional[List[Path]]:
    """The offsets file of each latent, or None (render without offsets).

    ``given``: a folder of ``<name>.safetensors`` files, or one file applied to every latent; None: the
    sidecar folder next to the latent file (:func:`sidecar`)."""
    if given is not None:
        g = Path(given)
        if g.is_dir():
            check(g, names)
            return [path_for(g, n) for n in names]
        read_metadata(g)                                      # exists and is an offsets file
        return [g] * len(names)
    folder = sidecar(latents_path, names, method)
    return None if folder is None else [path_for(folder, n) for n in names]
