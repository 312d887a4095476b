"""Face preprocessing: decode once, detect + 68 landmarks, FFHQ/pSp alignment, paste-back.

    aligned, record = align_face("photo.jpg")                 # FFHQ 1024 (rendered at 4096)
    aligned, record = align_face("photo.jpg", preset="psp")   # pSp/e4e 256
    pairs = align_face("group.jpg", face="all")               # [(aligned, record), ...]
    photo = paste_back("photo.jpg", edited, record)           # PIL RGB, EXIF-upright

Only NumPy and Pillow are imported here; dlib, SciPy and torch load on first use.
"""
from .align import PRESETS, align_array, align_face, face_quad, resolve_sizes
from .decode import DecodedImage, decode
from .errors import (AlignmentError, FaceIndexError, FaceTooSmallError, MissingModelError, NoFaceError,
                     RecordError, UnreadableImageError)
from .landmarks import BACKENDS, Face, detect_faces
from .paste import paste_back
from .record import load_record, record_affine, save_aligned, save_image, save_record

__all__ = ["align_face", "align_array", "face_quad", "resolve_sizes", "PRESETS", "paste_back",
           "decode", "DecodedImage", "detect_faces", "Face", "BACKENDS",
           "save_aligned", "save_image", "save_record", "load_record", "record_affine",
           "AlignmentError", "UnreadableImageError", "NoFaceError", "FaceTooSmallError", "FaceIndexError",
           "MissingModelError", "RecordError"]
