"""gankit inversion: face preprocessing (alignment, paste-back), projection, PTI and latent files.

Importing this package is light (NumPy + Pillow): dlib, SciPy and torch load on first use
(``project``, ``pti``, ``InversionResult`` and the latent-file helpers are imported lazily).
"""
from .faces import (AlignmentError, FaceIndexError, FaceTooSmallError, MissingModelError, NoFaceError,
                    RecordError, UnreadableImageError, align_face, load_record, paste_back, save_aligned)

__all__ = ["align_face", "paste_back", "save_aligned", "load_record",
           "AlignmentError", "UnreadableImageError", "NoFaceError", "FaceTooSmallError", "FaceIndexError",
           "MissingModelError", "RecordError"]

# name -> module of the lazily imported API (torch is only imported when one of these is used)
_LAZY = {"project": "projection", "w_stats": "projection",
         "pti": "pivotal_tuning", "save_tuned": "pivotal_tuning", "save_deltas": "pivotal_tuning",
         "apply_deltas": "pivotal_tuning", "invert": "methods", "InversionResult": "result",
         "Latents": "latents", "read_latents": "latents", "write_latents": "latents", "save_latents": "latents",
         "load_latents": "latents", "save_offsets": "offsets", "load_offsets": "offsets"}
_RENAMED = {"read_latents": "read", "write_latents": "write", "save_latents": "save", "load_latents": "load",
            "save_offsets": "save", "load_offsets": "load"}
__all__ += list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib
        obj = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), _RENAMED.get(name, name))
        globals()[name] = obj
        return obj
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
