"""Face detection and 68-point landmarks: dlib HOG (default), dlib CNN (MMOD), face-alignment (FAN).

Every backend works on the one decoded 8-bit RGB array (see ``decode.py``) and returns ``Face``
records sorted by detector score, highest first; that order defines the face index ``k``.

Models are never downloaded:
* dlib's models come from the ``face_recognition_models`` package (located without importing it,
  which would pull in ``pkg_resources``);
* FAN's weights (and its S3FD detector's) must already be in the torch hub cache
  (``$TORCH_HOME/hub/checkpoints``); otherwise ``MissingModelError`` names the missing file.
"""
from __future__ import annotations

import functools
import importlib.util
import os
from dataclasses import dataclass, field

import numpy as np

from .errors import FaceIndexError, FaceTooSmallError, MissingModelError, NoFaceError

BACKENDS = ("dlib", "dlib-cnn", "fan")
FACE_CHOICES = ("largest", "best", "all")

# face-alignment 1.x: the 2D FAN-4 weights and the S3FD detector weights (file names in the torch hub cache).
FAN_FILES = {
    "2DFAN4-11f355bf06.pth.tar": "https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar",
    "s3fd-619a316812.pth": "https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth",
}


@dataclass
class Face:
    """One detected face: box (left, top, right, bottom; dlib's inclusive corners), score, landmarks."""

    box: tuple
    score: float
    landmarks: np.ndarray | None = None  # 68 x 2 float64, (x, y) in index coordinates
    index: int = 0                        # position in the score-sorted detection list
    extra: dict = field(default_factory=dict)

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0] + 1)

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1] + 1)

    @property
    def area(self) -> float:
        return self.width * self.height


# ---------------------------------------------------------------------------------------------
# model files


def dlib_model_path(name: str) -> str:
    """Path of a model file shipped in the ``face_recognition_models`` package."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.origin:
        raise MissingModelError(
            f"dlib model {name} not found: the face_recognition_models package is not installed "
            "(pip install face-recognition-models)")
    path = os.path.join(os.path.dirname(spec.origin), "models", name)
    if not os.path.isfile(path):
        raise MissingModelError(f"dlib model file missing: {path} (reinstall face-recognition-models)")
    return path


def _import_dlib():
    try:
        import dlib
    except ImportError as e:  # pragma: no cover - dlib-bin is a dependency
        raise MissingModelError(f"dlib is not importable ({e}); pip install dlib-bin") from None
    return dlib


@functools.lru_cache(maxsize=None)
def _hog_detector():
    return _import_dlib().get_frontal_face_detector()


@functools.lru_cache(maxsize=None)
def _cnn_detector():
    dlib = _import_dlib()
    return dlib.cnn_face_detection_model_v1(dlib_model_path("mmod_human_face_detector.dat"))


@functools.lru_cache(maxsize=None)
def _shape_predictor():
    dlib = _import_dlib()
    return dlib.shape_predictor(dlib_model_path("shape_predictor_68_face_landmarks.dat"))


def torch_hub_checkpoints() -> str:
    """The torch hub checkpoint folder: ``torch.hub.get_dir()/checkpoints``.

    Resolved without importing torch when it is not loaded yet ($TORCH_HOME, else
    $XDG_CACHE_HOME/torch, else ~/.cache/torch), which is what ``get_dir()`` does unless
    ``torch.hub.set_dir`` was called - and that needs torch imported, so it is asked then.
    """
    import sys
    if "torch" in sys.modules and hasattr(sys.modules["torch"], "hub"):
        return os.path.join(sys.modules["torch"].hub.get_dir(), "checkpoints")
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "torch")
    return os.path.join(os.path.expanduser(home), "hub", "checkpoints")


def check_fan_weights() -> dict:
    """Paths of FAN's weight files in the torch hub cache; MissingModelError (one line) if one is absent."""
    folder = torch_hub_checkpoints()
    paths = {}
    for name, url in FAN_FILES.items():
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            raise MissingModelError(
                f"face-alignment weights not in the torch cache: {path} is missing (gankit never downloads; "
                f"fetch {url} into {folder}, or use --backend dlib)")
        paths[name] = path
    return paths


# ---------------------------------------------------------------------------------------------
# backends


class DlibBackend:
    """dlib HOG frontal detector + the 68-point shape predictor (what FFHQ/pSp/e4e use)."""

    name = "dlib"
    default_upsample = 1  # pSp/e4e and our references run the detector with upsampling 1

    def __init__(self, upsample: int | None = None):
        self.upsample = self.default_upsample if upsample is None else int(upsample)
        self._predictor = _shape_predictor()
        self._detector = self._make_detector()

    def _make_detector(self):
        return _hog_detector()

    def detect(self, rgb: np.ndarray) -> list:
        rects, scores, _ = self._detector.run(rgb, self.upsample, 0.0)
        return [Face((r.left(), r.top(), r.right(), r.bottom()), float(s)) for r, s in zip(rects, scores)]

    def landmarks(self, rgb: np.ndarray, face: Face) -> np.ndarray:
        dlib = _import_dlib()
        shape = self._predictor(rgb, dlib.rectangle(*[int(v) for v in face.box]))
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


class DlibCNNBackend(DlibBackend):
    """dlib's CNN (MMOD) detector + the same 68-point predictor. Slow on CPU: upsample 0 by default."""

    name = "dlib-cnn"
    default_upsample = 0

    def _make_detector(self):
        return _cnn_detector()

    def detect(self, rgb: np.ndarray) -> list:
        dets = self._detector(rgb, self.upsample)
        return [Face((d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()), float(d.confidence))
                for d in dets]


class FANBackend:
    """face-alignment's 2D FAN-4 landmarks on its S3FD detections (weights from the torch cache only)."""

    name = "fan"

    def __init__(self, upsample: int | None = None, device: str = "cpu"):
        check_fan_weights()  # before constructing anything that could try to download
        import warnings

        import face_alignment
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lt = getattr(face_alignment.LandmarksType, "TWO_D", None) or face_alignment.LandmarksType._2D
            try:
                self._fa = face_alignment.FaceAlignment(lt, device=device, face_detector="sfd",
                                                        flip_input=False, compile=False)
            except TypeError:  # older face-alignment without compile=
                self._fa = face_alignment.FaceAlignment(lt, device=device, face_detector="sfd", flip_input=False)
        self.upsample = 0

    def detect(self, rgb: np.ndarray) -> list:
        boxes = self._fa.face_detector.detect_from_image(rgb.copy())
        faces = []
        for b in boxes:
            b = np.asarray(b, dtype=np.float64)
            score = float(b[4]) if b.shape[0] > 4 else 1.0
            faces.append(Face(tuple(float(v) for v in b[:4]), score, extra={"fan_box": b.tolist()}))
        return faces

    def landmarks(self, rgb: np.ndarray, face: Face) -> np.ndarray:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = self._fa.get_landmarks_from_image(rgb, detected_faces=[np.asarray(face.extra["fan_box"])])
        if not out:
            raise NoFaceError("face-alignment returned no landmarks for the detected face")
        return np.asarray(out[0], dtype=np.float64)[:, :2]


@functools.lru_cache(maxsize=8)
def get_backend(name: str = "dlib", upsample: int | None = None):
    """A (cached) landmark backend by name: ``dlib`` (HOG), ``dlib-cnn`` (MMOD) or ``fan``."""
    if name == "dlib":
        return DlibBackend(upsample)
    if name == "dlib-cnn":
        return DlibCNNBackend(upsample)
    if name == "fan":
        return FANBackend(upsample)
    raise ValueError(f"unknown landmark backend {name!r}; choose one of {', '.join(BACKENDS)}")


# ---------------------------------------------------------------------------------------------
# detection + choice


def parse_face_choice(face):
    """'largest' | 'best' | 'all' | int (also a digit string) -> normalized choice."""
    if isinstance(face, (int, np.integer)) and not isinstance(face, bool):
        return int(face)
    if isinstance(face, str):
        s = face.strip().lower()
        if s in FACE_CHOICES:
            return s
        if s.lstrip("-").isdigit():
            return int(s)
    raise ValueError(f"face must be 'largest', 'best', 'all' or an integer index, not {face!r}")


def choose_faces(faces: list, face="largest", min_face_size: float = 0) -> list:
    """Pick faces from a score-sorted detection list. Returns a list (one element unless 'all')."""
    choice = parse_face_choice(face)
    if not faces:
        raise NoFaceError("no face found")
    if isinstance(choice, int):
        if not -len(faces) <= choice < len(faces):
            raise FaceIndexError(f"face index {choice} out of range: {len(faces)} face(s) found")
        picked = [faces[choice]]
    elif choice == "best":
        picked = [faces[0]]
    elif choice == "largest":
        # largest box; ties go to the higher score (the list is score-sorted, max() keeps the first)
        picked = [max(faces, key=lambda f: f.area)]
    else:
        picked = list(faces)
    if min_face_size:
        kept = [f for f in picked if min(f.width, f.height) >= min_face_size]
        if not kept:
            big = max(min(f.width, f.height) for f in picked)
            raise FaceTooSmallError(
                f"face too small: {big:.0f} px box, the minimum is {min_face_size:g} px")
        picked = kept
    return picked


def roll_angle(landmarks) -> float:
    """In-plane rotation of the eye line, degrees (positive: the image-right eye is lower)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    e = lm[42:48].mean(axis=0) - lm[36:42].mean(axis=0)
    return float(np.degrees(np.arctan2(e[1], e[0])))


def upright_landmarks(rgb: np.ndarray, face: Face, backend, min_roll: float = 0.0) -> np.ndarray:
    """Landmarks re-predicted on an upright copy of the face (for strongly tilted heads).

    dlib's 68-point model is trained on roughly upright faces; at 30 degrees of roll its points
    drift by 10-20 px. This rotates a window around the face by the measured roll (Pillow,
    bicubic), detects and predicts there, and maps the points back. Not part of the FFHQ
    reference (which uses the first prediction as is), so it is opt-in.
    """
    from PIL import Image

    lm0 = face.landmarks
    theta = roll_angle(lm0)
    if abs(theta) < min_roll:
        return lm0
    size = max(face.width, face.height)
    centre = lm0.mean(axis=0)
    side = int(np.ceil(size * 3))
    t = np.radians(theta)
    c, s = np.cos(t), np.sin(t)
    # window index (i, j) -> photo index: centre + R(theta) @ (i - half, j - half)
    half = (side - 1) / 2.0
    a = np.array([[c, -s, centre[0] - c * half + s * half],
                  [s, c, centre[1] - s * half - c * half]])
    # Pillow's affine works in continuous coordinates: shift by 0.5 on both sides
    off = a[:, 2] + 0.5 - a[:, :2] @ np.array([0.5, 0.5])
    data = (a[0, 0], a[0, 1], off[0], a[1, 0], a[1, 1], off[1])
    img = Image.fromarray(rgb, "RGB")
    bicubic = getattr(Image, "Resampling", Image).BICUBIC
    affine = getattr(Image, "Transform", Image).AFFINE
    win = np.ascontiguousarray(np.asarray(img.transform((side, side), affine, data, bicubic)))
    cands = backend.detect(win)
    if cands:
        def dist(f):
            cx, cy = (f.box[0] + f.box[2]) / 2.0, (f.box[1] + f.box[3]) / 2.0
            return np.hypot(cx - half, cy - half)
        best = min(cands, key=dist)
        if dist(best) > size * 0.5:
            best = None
    else:
        best = None
    if best is None:  # keep the original box size, centred on the face
        r = size / 2.0
        best = Face((half - r, half - r, half + r, half + r), face.score, extra=dict(face.extra))
        if "fan_box" in best.extra:
            best.extra["fan_box"] = [half - r, half - r, half + r, half + r, face.score]
    lm_win = backend.landmarks(win, best)
    return lm_win @ a[:, :2].T + a[:, 2]


def detect_faces(rgb: np.ndarray, backend="dlib", face="largest", upsample: int | None = None,
                 min_face_size: float = 0, fix_roll: float | None = None) -> list:
    """Detect, choose, and compute 68 landmarks for the chosen faces of an H x W x 3 uint8 array.

    ``fix_roll``: re-predict the landmarks on an upright copy of any face tilted by at least this
    many degrees (None: never, the references' behaviour).
    """
    be = get_backend(backend, upsample) if isinstance(backend, str) else backend
    faces = be.detect(rgb)
    order = sorted(range(len(faces)), key=lambda i: -faces[i].score)  # stable: ties keep detector order
    faces = [faces[i] for i in order]
    for i, f in enumerate(faces):
        f.index = i
    picked = choose_faces(faces, face, min_face_size)
    for f in picked:
        f.landmarks = be.landmarks(rgb, f)
        if fix_roll is not None and abs(roll_angle(f.landmarks)) >= fix_roll:
            f.extra["roll_before_fix"] = roll_angle(f.landmarks)
            f.landmarks = upright_landmarks(rgb, f, be)
    for f in picked:
        f.extra["count"] = len(faces)
    return picked
