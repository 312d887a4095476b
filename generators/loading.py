"""The public load / save / convert / info API over every checkpoint format.

    G = generators.load("stylegan2-ffhq-1024")        # registry name, path or URL
    img = G(z, truncation_psi=0.7)                      # [N, 3, H, W] in about [-1, 1]
    generators.save(G, "ffhq.safetensors")              # gankit's format
    generators.convert("net.pkl", "net.pt", format="rosinality")
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Dict, Optional, Union

import torch
from torch import nn

from .registry import sha256_file
from .spec import Checkpoint, CheckpointError, NetworkSpec

WRITABLE_FORMATS = ("gankit", "rosinality")


def _network_classes() -> Dict[str, type]:
    from . import stylegan1, stylegan2, stylegan3
    return {"stylegan2.Generator": stylegan2.Generator, "stylegan2.Discriminator": stylegan2.Discriminator,
            "stylegan1.Generator": stylegan1.Generator, "stylegan1.Discriminator": stylegan1.Discriminator,
            "stylegan3.Generator": stylegan3.Generator}


def resolve(source: Union[str, Path]) -> Path:
    """A local path as is; a registry name or URL through the download cache."""
    p = Path(source).expanduser()
    if p.exists():
        return p
    s = str(source)
    from . import registry
    if "://" in s or s in {m["name"] for m in registry.list_models()}:
        return registry.resolve(s)
    raise CheckpointError(f"no such file or registry model: {s} (see `gankit models` for registry names)")


def read(source: Union[str, Path]) -> Checkpoint:
    """Read a checkpoint (any supported format) with provenance recorded in ``meta``."""
    from .formats import read_checkpoint
    path = resolve(source)
    ckpt = read_checkpoint(path)
    ckpt.meta.setdefault("source", str(source))
    ckpt.meta.setdefault("source_file", path.name)
    ckpt.meta.setdefault("source_sha256", sha256_file(path))
    ckpt.meta.setdefault("source_format", ckpt.format)
    return ckpt


def build(spec: NetworkSpec, device: Union[str, torch.device] = "cpu") -> nn.Module:
    """Instantiate a network from its spec and load its weights exactly (strict)."""
    classes = _network_classes()
    if spec.kind not in classes:
        raise CheckpointError(f"unsupported network kind {spec.kind!r}")
    try:
        net = classes[spec.kind](**copy.deepcopy(spec.kwargs))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"cannot build {spec.kind} from the checkpoint's settings: {e}") from None
    own = net.state_dict()
    missing = [k for k in own if k not in spec.state_dict]
    extra = [k for k in spec.state_dict if k not in own]
    bad = [k for k in own if k in spec.state_dict and tuple(own[k].shape) != tuple(spec.state_dict[k].shape)]
    if missing or extra or bad:
        what = (f"missing {missing[:3]}" if missing else "") + (f" unexpected {extra[:3]}" if extra else "") + \
               (f" wrong shape {bad[:3]}" if bad else "")
        raise CheckpointError(f"checkpoint does not match the {spec.kind} it describes:{what}")
    with torch.no_grad():
        for k, t in own.items():
            t.copy_(spec.state_dict[k])
    return net.to(device)


def load(source: Union[str, Path], device: Union[str, torch.device] = "cpu", network: str = "G_ema") -> nn.Module:
    """Load one network ("G_ema" default, "G" or "D") from a path, registry name or URL.

    Returns the module in eval mode with gradients off; ``G.gankit_meta`` records where it came from.
    """
    ckpt = read(source)
    spec = ckpt.pick(network)
    net = build(spec, device).eval().requires_grad_(False)
    net.gankit_meta = dict(ckpt.meta, network=network, format=ckpt.format)
    net.gankit_extras = ckpt.extras
    return net


def checkpoint_from_modules(networks: Dict[str, nn.Module], meta: Optional[dict] = None,
                            extras: Optional[dict] = None) -> Checkpoint:
    """Wrap live modules as a :class:`Checkpoint` (for writing)."""
    specs = {}
    for name, net in networks.items():
        kind = f"{getattr(net, 'family', 'stylegan2')}.{type(net).__name__}"
        specs[name] = NetworkSpec(kind=kind, kwargs=copy.deepcopy(net.init_kwargs),
                                  state_dict={k: v.detach().cpu() for k, v in net.state_dict().items()})
    first = next(iter(networks.values()))
    meta = dict(meta if meta is not None else getattr(first, "gankit_meta", {}))
    meta.pop("network", None)
    meta.pop("format", None)
    extras = dict(extras if extras is not None else getattr(first, "gankit_extras", {}))
    return Checkpoint(format="gankit", networks=specs, extras=extras, meta=meta)


def write(ckpt: Checkpoint, path: Union[str, Path], format: str = "gankit") -> None:
    """Write a checkpoint in a writable format, atomically."""
    if format == "gankit":
        from .formats.gankit_format import write_gankit
        write_gankit(ckpt, path)
    elif format == "rosinality":
        from .formats.rosinality import write_rosinality
        from .formats.atomic import atomic_torch_save
        atomic_torch_save(write_rosinality(ckpt), path)
    else:
        raise CheckpointError(f"cannot write format {format!r}; writable: {', '.join(WRITABLE_FORMATS)}")


def save(G: Union[nn.Module, Dict[str, nn.Module]], path: Union[str, Path], format: str = "gankit") -> None:
    """Save a network (stored as ``G_ema``) or a dict of named networks."""
    networks = G if isinstance(G, dict) else {"G_ema" if not isinstance(G, _disc_type()) else "D": G}
    write(checkpoint_from_modules(networks), path, format=format)


def _disc_type():
    return tuple(cls for kind, cls in _network_classes().items() if kind.endswith(".Discriminator"))


def convert(src: Union[str, Path], dst: Union[str, Path], format: Optional[str] = None) -> Checkpoint:
    """Convert any readable checkpoint to a writable format (default: from ``dst``'s suffix)."""
    if format is None:
        format = "rosinality" if str(dst).endswith((".pt", ".pth")) else "gankit"
    ckpt = read(src)
    write(ckpt, dst, format=format)
    return ckpt


def info(source: Union[str, Path]) -> dict:
    """Format, architecture, resolution, num_ws, parameter counts and sha256 of a checkpoint."""
    ckpt = read(source)
    out = {"source": str(source), "format": ckpt.format, "sha256": ckpt.meta.get("source_sha256"),
           "networks": {}}
    for name, spec in ckpt.networks.items():
        net = build(spec)
        entry = {"kind": spec.kind, "parameters": sum(p.numel() for p in net.parameters()),
                 "tensors": len(spec.state_dict)}
        for attr in ("img_resolution", "img_channels", "z_dim", "w_dim", "c_dim", "num_ws"):
            if hasattr(net, attr):
                entry[attr] = getattr(net, attr)
        kw = spec.kwargs
        arch = kw.get("architecture") or kw.get("synthesis_kwargs", {}).get("architecture")
        if arch:
            entry["architecture"] = arch
        syn = getattr(net, "synthesis", None)
        if syn is not None:
            entry["channels"] = {str(k): v for k, v in syn.channels.items()}
        out["networks"][name] = entry
    if "latent_avg" in ckpt.extras and isinstance(ckpt.extras["latent_avg"], torch.Tensor):
        out["latent_avg_shape"] = list(ckpt.extras["latent_avg"].shape)
    return out
