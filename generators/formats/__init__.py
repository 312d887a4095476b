"""Checkpoint readers and writers, one module per format; ``read_checkpoint`` sniffs the kind.

Nothing here executes code from a file: NVIDIA pickles go through an allow-list unpickler
(``safe_pickle``), PyTorch zip files through ``torch.load(weights_only=True)`` with an
explicit, minimal allow-list, and gankit's own files are safetensors + JSON.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Union

import torch

from ..spec import Checkpoint, CheckpointError, UnsafeCheckpointError

# Globals a known torch.save-based format needs beyond what weights_only allows by default.
TORCH_SAFE_GLOBALS = [argparse.Namespace]

_LEGACY_TORCH_MAGIC = 0x1950A86A20F9469CFC6C


def sniff(path: Union[str, Path]) -> str:
    """'safetensors', 'torch-zip', 'pickle', 'empty' or 'unknown', from the first bytes."""
    with open(path, "rb") as f:
        head = f.read(16)
        if len(head) == 0:
            return "empty"
        if head[:4] == b"PK\x03\x04":
            return "torch-zip"
        # safetensors: u64 header length, then a JSON header. Checked before pickle: the length's
        # first byte may happen to be 0x80, pickle's PROTO opcode.
        if len(head) >= 9 and head[8:9] == b"{":
            n = int.from_bytes(head[:8], "little")
            size = os.fstat(f.fileno()).st_size
            if 2 <= n < 100_000_000 and n > size - 8:
                return "safetensors"   # cut short: read_gankit reports it as truncated
            if 2 <= n < 100_000_000:
                f.seek(8)
                try:
                    json.loads(f.read(n))
                    return "safetensors"
                except ValueError:
                    pass
    if head[:1] == b"\x80":
        return "pickle"
    return "unknown"


def torch_load_safe(path_or_bytes) -> Any:
    """``torch.load(weights_only=True)`` with gankit's small allow-list; unsafe globals -> one-line error."""
    try:
        with torch.serialization.safe_globals(TORCH_SAFE_GLOBALS):
            return torch.load(path_or_bytes, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        name = None
        for marker in ("Unsupported global: GLOBAL ", "GLOBAL "):
            if marker in msg:
                name = msg.split(marker, 1)[1].split()[0].rstrip(".,")
                break
        if name is not None or "weights_only" in msg.lower():
            raise UnsafeCheckpointError(
                f"refused to load: the file references the global {name or '(unknown)'!r}, which is not on "
                f"gankit's allow-list; nothing from it was run") from None
        raise CheckpointError(f"corrupt or truncated PyTorch file ({first_line(msg)})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError) as e:
        raise CheckpointError(f"corrupt or truncated PyTorch file ({first_line(str(e))})") from None


def first_line(s: str) -> str:
    s = s.strip().splitlines()[0] if s.strip() else ""
    return s[:200]


def read_checkpoint(path: Union[str, Path]) -> Checkpoint:
    """Read any supported checkpoint file into a :class:`Checkpoint` (format decided by content)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no such file: {path}")
    kind = sniff(path)
    if kind == "empty":
        raise CheckpointError(f"{path.name}: the file is empty")
    if kind == "safetensors":
        from .gankit_format import read_gankit
        return read_gankit(path)
    if kind == "torch-zip":
        return _dispatch_torch_object(torch_load_safe(path), path)
    if kind == "pickle":
        from .safe_pickle import load_pickle
        with open(path, "rb") as f:
            first = _peek_first_pickle(f)
        if first == _LEGACY_TORCH_MAGIC:  # legacy (pre-1.6, non-zip) torch.save file
            return _dispatch_torch_object(torch_load_safe(path), path)
        return _dispatch_pickle_object(load_pickle(path), path)
    raise CheckpointError(f"{path.name}: not a checkpoint gankit knows (not a pickle, PyTorch or safetensors file)")


def _peek_first_pickle(f) -> Any:
    """Value of the first pickle in a stream if it is a plain int (legacy torch magic), else None."""
    from .safe_pickle import load_pickle
    try:
        data = f.read(64)
        if b"\x8a\x0a" not in data[:8]:  # LONG1 opcode with 10 bytes = the torch magic number
            return None
        return load_pickle(io.BytesIO(data))
    except Exception:
        return None


def _dispatch_pickle_object(obj: Any, path: Path) -> Checkpoint:
    if isinstance(obj, dict) and any(k in obj for k in ("G_ema", "G", "D")):
        from .nvidia_pkl import read_nvidia_pkl
        return read_nvidia_pkl(obj)
    if isinstance(obj, tuple) and len(obj) == 3:
        from .nvidia_tf import read_nvidia_tf
        return read_nvidia_tf(obj)
    raise CheckpointError(f"{path.name}: a pickle, but not an NVIDIA network pickle "
                          f"(top level is {type(obj).__name__}{_keys_hint(obj)})")


def _keys_hint(obj) -> str:
    if isinstance(obj, dict):
        keys = [str(k) for k in list(obj)[:8]]
        return " with keys " + ", ".join(keys) if keys else " (empty)"
    return ""


def _dispatch_torch_object(obj: Any, path: Path) -> Checkpoint:
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path.name}: a PyTorch file holding a {type(obj).__name__}, not a checkpoint")
    from . import rosinality, stylegan1_rosinality
    if stylegan1_rosinality.looks_like_stylegan1_rosinality(obj):
        return stylegan1_rosinality.read_stylegan1_rosinality(obj)
    if "g_ema" in obj or any(str(k).startswith("style.1.") for k in obj):
        return rosinality.read_rosinality(obj)
    sd = obj.get("state_dict")
    if isinstance(sd, dict) and any(str(k).startswith("decoder.") for k in sd):
        return rosinality.read_embedded_decoder(obj)
    if "g_running" in obj or "generator" in obj:
        raise CheckpointError(f"{path.name}: looks like a rosinality StyleGAN1 checkpoint, but its networks are not "
                              f"StyleGAN1 state dicts{_keys_hint(obj)}")
    raise CheckpointError(f"{path.name}: a PyTorch file, but not a StyleGAN checkpoint gankit knows{_keys_hint(obj)}")
