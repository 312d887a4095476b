"""gankit inversion: face preprocessing (alignment, paste-back) now; projection and PTI later.

Importing this package is light (NumPy + Pillow): dlib, SciPy and torch load on first use.
"""
from .faces import (AlignmentError, FaceIndexError, FaceTooSmallError, MissingModelError, NoFaceError,
                    RecordError, UnreadableImageError, align_face, load_record, paste_back, save_aligned)

__all__ = ["align_face", "paste_back", "save_aligned", "load_record",
           "AlignmentError", "UnreadableImageError", "NoFaceError", "FaceTooSmallError", "FaceIndexError",
           "MissingModelError", "RecordError"]
