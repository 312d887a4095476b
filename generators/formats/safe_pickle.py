"""Allow-list unpickling of NVIDIA network pickles: nothing from the file is ever run.

NVIDIA's pickles (stylegan2-ada-pytorch, stylegan3, and the TF-era ``(G, D, Gs)`` tuples)
reference a handful of globals. :func:`load_pickle` maps exactly those to harmless
stand-ins and refuses every other global with :class:`UnsafeCheckpointError`:

* ``torch_utils.persistence._reconstruct_persistent_obj`` -> :class:`PersistentObject`
  (``class_name`` + ``state``; the embedded ``module_src`` is discarded, never executed);
* ``dnnlib.tflib.network.Network`` -> :class:`TFNetworkState` (keeps the state dict);
* ``dnnlib.util.EasyDict`` -> ``dict``; ``collections.OrderedDict``; ``builtins.set``;
* ``torch._utils._rebuild_tensor_v2`` / ``_rebuild_parameter`` -> own tensor builders;
* ``torch.storage._load_from_bytes`` -> own decoder of the nested legacy ``torch.save``
  stream, itself restricted to ``torch.<X>Storage`` globals;
* numpy ``_reconstruct`` / ``scalar`` (numpy 1 ``numpy.core`` and numpy 2 ``numpy._core``
  spellings), ``numpy.ndarray``, ``numpy.dtype``.

Truncated or corrupt input raises :class:`CheckpointError` with a one-line message.
"""
from __future__ import annotations

import collections
import io
import os
import pickle
import struct
from typing import Any, Dict, Tuple

import numpy as np
import torch

from ..spec import CheckpointError, UnsafeCheckpointError

__all__ = ["PersistentObject", "TFNetworkState", "load_pickle", "load_storage_bytes"]


# ----------------------------------------------------------------------------- stand-ins


class PersistentObject:
    """What ``torch_utils.persistence`` pickled: a class name and the instance ``__dict__``."""

    __slots__ = ("class_name", "state", "version")

    def __init__(self, class_name: str, state: Dict[str, Any], version: Any = None):
        self.class_name = class_name
        self.state = state
        self.version = version

    def __repr__(self) -> str:
        return f"PersistentObject({self.class_name!r})"


def _reconstruct_persistent_obj(meta: Any) -> PersistentObject:
    """Stand-in for NVIDIA's reconstructor: keep ``class_name``/``state``, drop ``module_src``."""
    if not isinstance(meta, dict):
        raise CheckpointError(f"persistent object metadata is a {type(meta).__name__}, expected a dict")
    if meta.get("type", "class") != "class":
        raise CheckpointError(f"unsupported persistent object type {meta.get('type')!r} (only 'class' is known)")
    class_name, state = meta.get("class_name"), meta.get("state")
    if not isinstance(class_name, str):
        raise CheckpointError("persistent object metadata has no class_name string")
    if state is None:
        state = {}
    if not isinstance(state, dict):
        raise CheckpointError(f"persistent object {class_name!r} has a {type(state).__name__} state, expected a dict")
    return PersistentObject(class_name, state, meta.get("version"))


class TFNetworkState:
    """Stand-in for ``dnnlib.tflib.network.Network``: keeps the pickled state dict."""

    def __init__(self, *args: Any, **kwargs: Any):
        self.state: Dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise CheckpointError(f"TF network state is a {type(state).__name__}, expected a dict")
        self.state = state

    def __repr__(self) -> str:
        return f"TFNetworkState({self.state.get('name')!r}, version={self.state.get('version')!r})"


def _rebuild_tensor_v2(storage: Any, storage_offset: Any, size: Any, stride: Any,
                       requires_grad: Any = False, backward_hooks: Any = None, metadata: Any = None) -> torch.Tensor:
    """View the flat storage with (offset, size, stride) in elements, then make it contiguous."""
    if not isinstance(storage, torch.Tensor) or storage.dim() != 1:
        raise CheckpointError(f"tensor storage is a {type(storage).__name__}, not a decoded storage")
    try:
        offset = int(storage_offset)
        size = tuple(int(s) for s in size)
        stride = tuple(int(s) for s in stride)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"malformed tensor metadata: {e}") from None
    if len(size) != len(stride) or offset < 0 or any(s < 0 for s in size) or any(s < 0 for s in stride):
        raise CheckpointError(f"malformed tensor metadata: size {size}, stride {stride}, offset {offset}")
    numel = 1
    for s in size:
        numel *= s
    if numel > 0:
        last = offset + sum((s - 1) * st for s, st in zip(size, stride))
        if last >= storage.numel():
            raise CheckpointError(
                f"tensor of size {list(size)} with stride {list(stride)} at offset {offset} "
                f"reaches past its storage of {storage.numel()} elements")
    view = torch.as_strided(storage, size, stride, offset)
    if view.is_contiguous() and numel == storage.numel():
        return view
    return view.clone(memory_format=torch.contiguous_format)


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None) -> torch.Tensor:
    """Parameters come back as plain tensors (no grad, no hooks)."""
    if not isinstance(data, torch.Tensor):
        raise CheckpointError(f"parameter data is a {type(data).__name__}, not a tensor")
    return data


# -------------------------------------------------------------- nested torch.save streams

_WRAPPED = (EOFError, pickle.UnpicklingError, struct.error, ValueError, TypeError, IndexError, KeyError,
            AttributeError, RuntimeError, OverflowError, MemoryError, UnicodeDecodeError, RecursionError)

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


class _StorageType:
    """Stand-in for a ``torch.<X>Storage`` class referenced by the nested stream."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: torch.dtype):
        self.name, self.dtype = name, dtype

    def __repr__(self) -> str:
        return f"torch.{self.name}"


_STORAGE_TYPES = {
    name: _StorageType(name, dtype)
    for name, dtype in [
        ("FloatStorage", torch.float32), ("DoubleStorage", torch.float64), ("HalfStorage", torch.float16),
        ("BFloat16Storage", torch.bfloat16), ("LongStorage", torch.int64), ("IntStorage", torch.int32),
        ("ShortStorage", torch.int16), ("CharStorage", torch.int8), ("ByteStorage", torch.uint8),
        ("BoolStorage", torch.bool),
    ]
}


def _refuse(module: str, name: str, where: str = "the file") -> UnsafeCheckpointError:
    return UnsafeCheckpointError(
        f"refused to load: {where} references the global '{module}.{name}', which is not on gankit's "
        "allow-list; nothing from it was run")


class _StorageRef:
    """What the nested stream's persistent id points at, filled in once the raw data is read."""

    __slots__ = ("key", "dtype", "numel")

    def __init__(self, key: str, dtype: torch.dtype, numel: int):
        self.key, self.dtype, self.numel = key, dtype, numel


class _StorageUnpickler(pickle.Unpickler):
    """Unpickler for the small pickles inside a legacy ``torch.save`` stream."""

    def __init__(self, f: Any, refs: Dict[str, Tuple[torch.dtype, int]]):
        super().__init__(f)
        self._refs = refs

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in _STORAGE_TYPES:
            return _STORAGE_TYPES[name]
        raise _refuse(module, name, "a tensor storage stream in the file")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise CheckpointError(f"unexpected persistent id in a tensor storage stream: {pid!r:.120}")
        _, stype, key, _location, numel, view = pid
        if not isinstance(stype, _StorageType):
            raise CheckpointError(f"tensor storage stream names a non-storage type {stype!r:.80}")
        if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
            raise CheckpointError(f"malformed storage reference in a tensor storage stream: {pid!r:.120}")
        prev = self._refs.setdefault(key, (stype.dtype, numel))
        if prev != (stype.dtype, numel):
            raise CheckpointError(f"storage {key!r} is declared twice with different types or sizes")
        if view is not None:  # storage views (very old torch) are not written by any NVIDIA release
            raise CheckpointError("tensor storage stream holds a storage view, which gankit does not support")
        return _StorageRef(key, stype.dtype, numel)


def load_storage_bytes(b: Any) -> torch.Tensor:
    """Decode one legacy (non-zip) ``torch.save`` stream of a storage into a flat tensor.

    Layout: pickles of the magic number, the format version, platform info, the object
    (a persistent id ``('storage', torch.XStorage, key, location, numel, view)``) and the
    key list; then per key an 8-byte little-endian element count and the raw elements.
    """
    if not isinstance(b, (bytes, bytearray)):
        raise CheckpointError(f"tensor storage payload is a {type(b).__name__}, expected bytes")
    try:
        return _decode_storage(io.BytesIO(b))
    except CheckpointError:
        raise
    except _WRAPPED as e:
        detail = " ".join(str(e).split())[:200] or type(e).__name__
        raise CheckpointError(f"corrupt tensor storage stream ({detail})") from None


def _decode_storage(f: io.BytesIO) -> torch.Tensor:
    refs: Dict[str, Tuple[torch.dtype, int]] = {}
    unp = lambda: _StorageUnpickler(f, refs).load()  # noqa: E731 - fresh unpickler per pickle
    magic = unp()
    if magic != _LEGACY_MAGIC:
        raise CheckpointError("tensor storage stream does not start with torch's legacy magic number")
    version = unp()
    if version != _LEGACY_PROTOCOL:
        raise CheckpointError(f"tensor storage stream has format version {version!r}, expected {_LEGACY_PROTOCOL}")
    sys_info = unp()
    if not isinstance(sys_info, dict):
        raise CheckpointError("tensor storage stream has malformed platform info")
    if not sys_info.get("little_endian", True):
        raise CheckpointError("tensor storage stream was written on a big-endian machine (not supported)")
    obj = unp()
    keys = unp()
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise CheckpointError("tensor storage stream has a malformed storage key list")
    data: Dict[str, torch.Tensor] = {}
    for key in keys:
        if key not in refs:
            raise CheckpointError(f"tensor storage stream lists storage {key!r} that nothing references")
        dtype, numel = refs[key]
        head = f.read(8)
        if len(head) != 8:
            raise CheckpointError("tensor storage stream is truncated (missing element count)")
        (count,) = struct.unpack("<q", head)
        if count != numel:
            raise CheckpointError(f"tensor storage {key!r} holds {count} elements but is declared with {numel}")
        nbytes = count * torch.empty((), dtype=dtype).element_size()
        raw = f.read(nbytes)
        if len(raw) != nbytes:
            raise CheckpointError(f"tensor storage stream is truncated ({len(raw)} of {nbytes} data bytes)")
        data[key] = torch.frombuffer(bytearray(raw), dtype=dtype) if nbytes else torch.empty(0, dtype=dtype)
    if not isinstance(obj, _StorageRef):
        raise CheckpointError(f"tensor storage stream holds a {type(obj).__name__}, expected a storage")
    if obj.key not in data:
        raise CheckpointError(f"tensor storage stream has no data for storage {obj.key!r}")
    return data[obj.key]


def _load_from_bytes(b: Any) -> torch.Tensor:
    return load_storage_bytes(b)


# ------------------------------------------------------------------------ outer pickle

# numpy's own reconstructors, whatever module (numpy.core / numpy._core) they live in here.
_NP_RECONSTRUCT = np.empty(0).__reduce__()[0]
_NP_SCALAR = np.float64(0).__reduce__()[0]

_ALLOWED: Dict[Tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib.util", "EasyDict"): dict,
    ("dnnlib.tflib.network", "Network"): TFNetworkState,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_from_bytes,
    ("numpy.core.multiarray", "_reconstruct"): _NP_RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _NP_RECONSTRUCT,
    ("numpy.core.multiarray", "scalar"): _NP_SCALAR,
    ("numpy._core.multiarray", "scalar"): _NP_SCALAR,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class SafeUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only the allow-listed globals to stand-ins."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except (KeyError, TypeError):
            raise _refuse(str(module), str(name)) from None

    def persistent_load(self, pid: Any) -> Any:
        raise CheckpointError("the file uses pickle persistent ids, which NVIDIA network pickles do not")


def load_pickle(path_or_fileobj: Any) -> Any:
    """Unpickle an NVIDIA network pickle with the allow-list; returns the top-level object.

    Raises :class:`UnsafeCheckpointError` for a global outside the allow-list (nothing is
    executed) and :class:`CheckpointError` for truncated or corrupt input.
    """
    if isinstance(path_or_fileobj, (str, os.PathLike)):
        try:
            with open(path_or_fileobj, "rb") as f:
                return _load(f, os.fspath(path_or_fileobj))
        except OSError as e:
            raise CheckpointError(f"cannot read {os.fspath(path_or_fileobj)}: {e.strerror or e}") from None
    if isinstance(path_or_fileobj, (bytes, bytearray, memoryview)):
        return _load(io.BytesIO(path_or_fileobj), "<bytes>")
    return _load(path_or_fileobj, getattr(path_or_fileobj, "name", "<stream>"))


def _load(f: Any, label: str) -> Any:
    try:
        return SafeUnpickler(f).load()
    except CheckpointError:
        raise
    except _WRAPPED as e:
        what = "truncated" if isinstance(e, EOFError) or "truncated" in str(e) else "corrupt"
        detail = " ".join(str(e).split())[:200] or type(e).__name__
        raise CheckpointError(f"{label} is not a readable network pickle ({what}: {detail})") from None
