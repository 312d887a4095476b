"""gankit's shipped encoder format: ``NAME.safetensors`` (tensors) + ``NAME.json`` (config).

The tensors are the checkpoint's ``state_dict`` (``encoder.*`` or ``hypernet.*`` + ``w_encoder.*``)
and ``latent_avg`` (a tensor shared under several names is stored once, the config lists the
``aliases``); the config holds the pSp-style ``opts`` (``encoder_type``, ``input_size``, ...),
the training record, and the generator it belongs to by reference (``{"name": registry name,
"sha256": of that checkpoint file}``) instead of a copy of its weights. Loading checks the hash, so an
encoder is never silently paired with another generator.

    write_bundle(model, "encoders/models/gankit-faces-e4e", generator="gankit-faces", opts=..., record=...)
    obj = read_bundle(path)   # the same dict a ``.pt`` checkpoint gives (encoders.load uses it)
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from .base import EncoderError

FORMAT = "gankit-encoder"
VERSION = 1


class EncoderBundleError(EncoderError):
    """A bundled encoder whose config or tensors are missing or do not match."""


def _paths(path) -> tuple:
    p = Path(path)
    stem = p.with_suffix("") if p.suffix in (".safetensors", ".json") else p
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json")


def write_bundle(model, path, generator: str, opts: Optional[dict] = None, record: Optional[dict] = None,
                 w_encoder: Optional[str] = None) -> Path:
    """Write ``model`` (an inverter made by :func:`encoders.create` or loaded) as safetensors + JSON.

    ``generator``: the registry name or file of the generator it was trained for (its sha256 is stored).
    ``record``: free-form training facts (data, steps, wall time, metrics) kept in the config.
    ``w_encoder`` (HyperStyle): a bundle file in the same folder holding its initial encoder; its
    tensors are then referenced (by name and sha256) instead of copied.
    """
    from safetensors.torch import save_file
    from generators.formats.atomic import atomic_path
    from generators.registry import resolve as resolve_generator, sha256_file
    from .building import checkpoint_dict
    ck = checkpoint_dict(model, opts)
    tensors, aliases, seen = {}, {}, {}
    for k, v in ck["state_dict"].items():
        key = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape), tuple(v.stride()))
        if key in seen:                      # HyperStyle's shared hypernet appears under several names
            aliases[k] = seen[key]
        else:
            seen[key] = k
            tensors[k] = v.contiguous()
    tensors["latent_avg"] = ck["latent_avg"].contiguous()
    w_ref = None
    if w_encoder is not None:
        wst, _ = _paths(w_encoder)
        if Path(wst).resolve().parent != _paths(path)[0].resolve().parent:
            raise EncoderBundleError(f"the W encoder bundle {wst} must sit in the same folder as {path}")
        w_ref = dict(file=wst.name, sha256=sha256_file(wst))
        tensors = {k: v for k, v in tensors.items() if not k.startswith("w_encoder.")}
        aliases = {k: v for k, v in aliases.items() if not k.startswith("w_encoder.")}
        ck["opts"]["w_encoder_checkpoint_path"] = wst.name
    gpath = Path(resolve_generator(generator))
    config = dict(format=FORMAT, version=VERSION, opts=ck["opts"], aliases=aliases,
                  generator=dict(name=str(generator), sha256=sha256_file(gpath), kind=ck["generator"]["kind"],
                                 kwargs=ck["generator"]["kwargs"]),
                  record=record or {})
    if w_ref:
        config["w_encoder"] = w_ref
    st, js = _paths(path)
    with atomic_path(st) as tmp:
        save_file(tensors, tmp, metadata={"format": FORMAT, "config": js.name})
    with atomic_path(js) as tmp:
        Path(tmp).write_text(json.dumps(config, indent=1, sort_keys=True, default=str) + "\n")
    return st


def is_bundle(path) -> bool:
    return Path(path).suffix in (".safetensors", ".json")


def read_bundle(path) -> dict:
    """The checkpoint dict of a bundle (``state_dict``, ``opts``, ``latent_avg``; ``generator`` is the
    loaded generator module, checked against the recorded sha256)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    from generators.registry import resolve as resolve_generator, sha256_file
    st, js = _paths(path)
    if not js.is_file():
        raise EncoderBundleError(f"{st.name}: its config {js.name} is missing (a gankit encoder is the pair)")
    if not st.is_file():
        raise EncoderBundleError(f"{js.name}: its tensors {st.name} are missing")
    try:
        config = json.loads(js.read_text())
    except (OSError, ValueError) as e:
        raise EncoderBundleError(f"{js.name}: not readable JSON ({e})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise EncoderBundleError(f"{js.name}: not a gankit encoder config (format {config.get('format')!r})"
                                 if isinstance(config, dict) else f"{js.name}: not a gankit encoder config")
    try:
        tensors = load_file(str(st))
    except (SafetensorError, OSError, ValueError) as e:
        raise EncoderBundleError(f"{st.name}: cannot read the tensors ({str(e).splitlines()[0]})") from None
    g = config.get("generator") or {}
    try:
        gpath = Path(resolve_generator(str(g["name"])))
    except KeyError:
        raise EncoderBundleError(f"{js.name}: names no generator") from None
    except Exception as e:   # noqa: BLE001 - registry errors, missing files: one line either way
        raise EncoderBundleError(f"{js.name}: its generator {g.get('name')!r} is not available ({e})") from None
    want = g.get("sha256")
    if want and sha256_file(gpath) != want:
        raise EncoderBundleError(f"{st.name} was trained for {g['name']} with sha256 {want[:12]}..., but "
                                 f"{gpath.name} has another hash: the encoder does not fit this generator")
    w_ref = config.get("w_encoder")
    if isinstance(w_ref, dict) and w_ref.get("file"):
        wst = st.parent / str(w_ref["file"])
        if not wst.is_file():
            raise EncoderBundleError(f"{st.name}: its initial encoder {wst.name} is missing from {st.parent}")
        if w_ref.get("sha256") and sha256_file(wst) != w_ref["sha256"]:
            raise EncoderBundleError(f"{st.name} was trained on top of another {wst.name} (sha256 differs)")
    import generators
    G = generators.load(str(gpath))
    la = tensors.pop("latent_avg", None)
    for k, v in (config.get("aliases") or {}).items():
        if v not in tensors:
            raise EncoderBundleError(f"{js.name}: alias {k} -> {v} names a missing tensor")
        tensors[k] = tensors[v]
    return dict(state_dict=tensors, opts=dict(config.get("opts") or {}), latent_avg=la, generator=G,
                record=config.get("record", {}))
