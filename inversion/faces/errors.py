"""Face preprocessing errors: one class per kind, each with a one-line message.

They derive from ``ValueError`` so that callers (and the CLI) can catch "bad input" in one place.
"""
from __future__ import annotations


class AlignmentError(ValueError):
    """Base class of every face-preprocessing error. ``str(e)`` is always a single line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class UnreadableImageError(AlignmentError):
    """The file is missing, empty, truncated, not an image, or in a format Pillow cannot decode."""


class NoFaceError(AlignmentError):
    """The detector found no face in the image."""


class FaceTooSmallError(AlignmentError):
    """Faces were found, but none as large as the requested minimum."""


class FaceIndexError(AlignmentError):
    """``face=k`` asked for a face the detector did not return."""


class MissingModelError(AlignmentError):
    """A landmark/detector model file is not available locally (nothing is ever downloaded)."""


class RecordError(AlignmentError):
    """A transform record (JSON sidecar) is malformed or does not fit the photo given."""
