"""gankit's own format: one ``.safetensors`` file; the JSON config rides in its header metadata.

Tensors are named ``<network>/<state-dict key>`` (``G_ema/mapping.fc0.weight``) plus
``extras/<name>`` for loose tensors (e.g. a latent average). The metadata key ``gankit``
holds JSON: format version, each network's kind and constructor kwargs, JSON-able extras,
and provenance (source file, its sha256, source format). Loading it never runs code.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

import torch

from .atomic import atomic_path
from ..spec import Checkpoint, CheckpointError, NetworkSpec

FORMAT_VERSION = 1


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


def write_gankit(ckpt: Checkpoint, path) -> None:
    """Write atomically (temp file in the same folder, then rename)."""
    from safetensors.torch import save_file

    tensors: Dict[str, torch.Tensor] = {}
    config = {"format_version": FORMAT_VERSION, "networks": {}, "extras": {}, "provenance": dict(ckpt.meta)}
    config["provenance"].setdefault("source_format", ckpt.format)
    for name, spec in ckpt.networks.items():
        config["networks"][name] = {"kind": spec.kind, "kwargs": spec.kwargs, "keys": list(spec.state_dict)}
        for k, t in spec.state_dict.items():
            tensors[f"{name}/{k}"] = t.detach().cpu().contiguous().clone()
    for k, v in ckpt.extras.items():
        if isinstance(v, torch.Tensor):
            tensors[f"extras/{k}"] = v.detach().cpu().contiguous().clone()
        elif _jsonable(v):
            config["extras"][k] = v
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata={"gankit": json.dumps(config)})


def read_gankit(path) -> Checkpoint:
    from safetensors import SafetensorError
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            if "gankit" not in meta:
                raise CheckpointError(f"{Path(path).name}: a safetensors file without gankit's config "
                                      f"(not written by gankit)")
            config = json.loads(meta["gankit"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except SafetensorError as e:
        raise CheckpointError(f"{Path(path).name}: corrupt or truncated safetensors file ({e})") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{Path(path).name}: unreadable gankit config ({e})") from None
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{Path(path).name}: written by a newer gankit (format {config['format_version']})")
    networks = {}
    for name, net in config["networks"].items():
        keys = net.get("keys") or [k[len(name) + 1:] for k in tensors if k.startswith(name + "/")]
        try:
            sd = {k: tensors[f"{name}/{k}"] for k in keys}
        except KeyError as e:
            raise CheckpointError(f"{Path(path).name}: tensor {e.args[0]} listed in the config is missing") from None
        networks[name] = NetworkSpec(kind=net["kind"], kwargs=net["kwargs"], state_dict=sd)
    extras = dict(config.get("extras", {}))
    extras.update({k[len("extras/"):]: v for k, v in tensors.items() if k.startswith("extras/")})
    return Checkpoint(format="gankit", networks=networks, extras=extras, meta=dict(config.get("provenance", {})))
