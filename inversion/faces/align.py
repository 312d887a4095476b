"""FFHQ face alignment, reproducing NVlabs/ffhq-dataset ``recreate_aligned_images`` exactly.

Steps (see ``shared/research/alignment.md`` for the derivation and the pitfalls):
  1. oriented square ("quad") from the eye and mouth landmarks;
  2. shrink the whole photo by an integer factor when the face is >= 4x the output size;
  3. crop to the quad's bounding box plus a border;
  4. reflect-pad, blur the padding and fade it to the median colour when the quad nears an edge;
  5. Pillow QUAD transform (bilinear) to ``transform_size``; 6. LANCZOS resize to ``output_size``.
The pixel work is Pillow's and NumPy/SciPy's own, with the references' dtypes, so outputs match the
reference bit for bit on the same decoded array. Presets: ``ffhq`` (1024, rendered at 4096) and
``psp`` (pSp/e4e: 256 rendered directly at 256, no supersampling; padding still on).
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from .decode import DecodedImage, decode
from .errors import AlignmentError, FaceIndexError, FaceTooSmallError, NoFaceError
from .landmarks import detect_faces, parse_face_choice

RECORD_FORMAT = "gankit.face-alignment"
RECORD_VERSION = 1

# transform_size defaults to output_size * supersample
PRESETS = {
    "ffhq": {"output_size": 1024, "supersample": 4},   # NVlabs/ffhq-dataset: 1024 from a 4096 render
    "psp": {"output_size": 256, "supersample": 1},     # pSp / e4e align_face: 256 straight, no resize
}

_RESAMPLING = getattr(Image, "Resampling", Image)
_TRANSFORM = getattr(Image, "Transform", Image)
LANCZOS = _RESAMPLING.LANCZOS   # = the references' ANTIALIAS (removed in Pillow 10)
BILINEAR = _RESAMPLING.BILINEAR
QUAD = _TRANSFORM.QUAD


def resolve_sizes(preset="ffhq", output_size=None, transform_size=None):
    """(preset name, output_size, transform_size) with the preset's defaults filled in."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    p = PRESETS[preset]
    n = int(p["output_size"] if output_size is None else output_size)
    t = int(n * p["supersample"] if transform_size is None else transform_size)
    if n < 1:
        raise ValueError(f"output_size must be positive, not {n}")
    if t < n:
        raise ValueError(f"transform_size ({t}) must be at least output_size ({n})")
    return preset, n, t


# ---------------------------------------------------------------------------------------------
# geometry


def _quarter_turn(v):
    """R(v) = (-v_y, v_x): a quarter turn; with y pointing down it turns 'down' into 'left'."""
    return np.array([-v[1], v[0]], dtype=np.float64)


def face_quad(landmarks, rotate_level: bool = True):
    """The oriented square of FFHQ from 68 landmarks: dict with quad (4 x 2), qsize, center, x, y.

    Corners in Pillow's QUAD order (as seen in the output): top-left, bottom-left, bottom-right, top-right.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise AlignmentError(f"expected 68 x 2 landmarks, got shape {lm.shape}")
    eye_l = np.mean(lm[36:42], axis=0)
    eye_r = np.mean(lm[42:48], axis=0)
    eye_c = (eye_l + eye_r) * 0.5
    eye_to_eye = eye_r - eye_l
    mouth_c = (lm[48] + lm[54]) * 0.5
    eye_to_mouth = mouth_c - eye_c

    half = max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    if rotate_level:
        x = eye_to_eye - _quarter_turn(eye_to_mouth)
        x /= np.hypot(*x)
        x *= half
    else:
        x = np.array([1.0, 0.0]) * half
    y = _quarter_turn(x)
    c = eye_c + eye_to_mouth * 0.1
    quad = np.stack([c - x - y, c - x + y, c + x + y, c + x - y])
    if not np.all(np.isfinite(quad)) or half <= 0:
        raise AlignmentError("degenerate landmarks: cannot build the alignment square")
    return {"quad": quad, "qsize": float(np.hypot(*x) * 2), "center": c, "x": x, "y": y}


def _bbox(quad):
    return (int(np.floor(min(quad[:, 0]))), int(np.floor(min(quad[:, 1]))),
            int(np.ceil(max(quad[:, 0]))), int(np.ceil(max(quad[:, 1]))))


# ---------------------------------------------------------------------------------------------
# pixels


def _edge_ramp(n: int, before, after) -> np.ndarray:
    """1 - min(i / before, (n - 1 - i) / after) for i in 0..n-1 (float64, like the reference)."""
    i = np.arange(n, dtype=np.float32)
    return 1.0 - np.minimum(i / before, (n - 1 - i) / after)


def pad_blur_fade(img: Image.Image, pad, qsize: float) -> Image.Image:
    """Reflect-pad by (left, top, right, bottom), blur toward the edges, fade the padding to the median.

    ``pad`` holds NumPy int64 values: under NumPy >= 2 the ramp is then float64 and the blended
    increments are float64 added into the float32 image - exactly the reference's arithmetic.
    """
    from scipy.ndimage import gaussian_filter

    left, top, right, bottom = pad
    a = np.pad(np.float32(img), ((top, bottom), (left, right), (0, 0)), "reflect")
    h, w, _ = a.shape
    ramp = np.maximum(_edge_ramp(w, left, right)[None, :], _edge_ramp(h, top, bottom)[:, None])[:, :, None]
    sigma = qsize * 0.02
    a += (gaussian_filter(a, [sigma, sigma, 0]) - a) * np.clip(ramp * 3.0 + 1.0, 0.0, 1.0)
    a += (np.median(a, axis=(0, 1)) - a) * np.clip(ramp, 0.0, 1.0)
    return Image.fromarray(np.uint8(np.clip(np.rint(a), 0, 255)), "RGB")


def align_array(photo, landmarks, output_size: int = 1024, transform_size: int = 4096,
                enable_padding: bool = True, rotate_level: bool = True):
    """Align one face of an 8-bit RGB photo given its 68 landmarks.

    Returns (aligned PIL image, geometry dict). The geometry holds every intermediate the record needs.
    """
    dec = decode(photo)
    img = dec.pil()
    W, H = img.size
    g = face_quad(landmarks, rotate_level)
    quad = g["quad"].copy()
    qsize = g["qsize"]

    # Shrink (only for faces >= 4x the output size).
    shrink = int(np.floor(qsize / output_size * 0.5))
    shrunk_size = None
    if shrink > 1:
        shrunk_size = (int(np.rint(float(W) / shrink)), int(np.rint(float(H) / shrink)))
        img = img.resize(shrunk_size, LANCZOS)
        quad /= shrink
        qsize /= shrink
    else:
        shrink = 1
    work_size = img.size

    # Crop (with a border).
    border = max(int(np.rint(qsize * 0.1)), 3)
    box = _bbox(quad)
    crop = (max(box[0] - border, 0), max(box[1] - border, 0),
            min(box[2] + border, img.size[0]), min(box[3] + border, img.size[1]))
    cropped = crop[2] - crop[0] < img.size[0] or crop[3] - crop[1] < img.size[1]
    if cropped:
        img = img.crop(crop)
        quad -= crop[0:2]
    else:
        crop = (0, 0, img.size[0], img.size[1])

    # Pad (reflect + blur + fade to median) when the quad comes near an edge.
    box = _bbox(quad)
    need = (max(-box[0] + border, 0), max(-box[1] + border, 0),
            max(box[2] - img.size[0] + border, 0), max(box[3] - img.size[1] + border, 0))
    pad = None
    if enable_padding and max(need) > border - 4:
        pad = np.maximum(need, int(np.rint(qsize * 0.3)))
        img = pad_blur_fade(img, pad, qsize)
        quad += pad[:2]

    # Quad transform (bilinear, Pillow's pixel-centre convention: +0.5), then the final resize.
    aligned = img.transform((transform_size, transform_size), QUAD, tuple((quad + 0.5).flatten()), BILINEAR)
    if output_size < transform_size:
        aligned = aligned.resize((output_size, output_size), LANCZOS)

    geometry = {
        "quad": g["quad"], "qsize": g["qsize"], "center": g["center"], "x": g["x"], "y": g["y"],
        "shrink": shrink, "shrunk_size": shrunk_size, "work_size": work_size, "border": border,
        "crop": crop, "cropped": bool(cropped), "pad": None if pad is None else tuple(int(v) for v in pad),
        "photo_size": (W, H),
    }
    geometry["affine"] = aligned_to_photo_affine(geometry, output_size)
    return aligned, geometry


def aligned_to_photo_affine(geometry, output_size: int) -> np.ndarray:
    """2 x 3 matrix A: aligned pixel (u, v) of an ``output_size`` image -> photo index coordinates.

    p = Q0 + 2x (u + 0.5) / N + 2y (v + 0.5) / N in the (shrunk) working image; with a shrink the
    working index k maps back to the photo as (k + 0.5) * (W / W') - 0.5 per axis (Pillow's resize),
    which includes the reference's (shrink - 1) / 2 px offset quirk.
    """
    n = float(output_size)
    s = float(geometry["shrink"])
    q0 = np.asarray(geometry["quad"], dtype=np.float64)[0] / s
    x = np.asarray(geometry["x"], dtype=np.float64) / s
    y = np.asarray(geometry["y"], dtype=np.float64) / s
    W, H = geometry["photo_size"]
    if geometry.get("shrunk_size"):
        sw, sh = geometry["shrunk_size"]
        d = np.array([W / sw, H / sh], dtype=np.float64)
    else:
        d = np.ones(2)
    a = np.empty((2, 3), dtype=np.float64)
    a[:, 0] = d * (2 * x / n)
    a[:, 1] = d * (2 * y / n)
    a[:, 2] = d * (q0 + (x + y) / n + 0.5) - 0.5
    return a


# ---------------------------------------------------------------------------------------------
# the public entry point


def _record(dec: DecodedImage, face, lm, geometry, preset, backend, output_size, transform_size,
            enable_padding, upsample, choice):
    def fl(a):
        return [[float(v) for v in row] for row in np.asarray(a, dtype=np.float64)]

    quad_eff = _affine_corners(geometry["affine"], output_size)
    return {
        "format": RECORD_FORMAT,
        "version": RECORD_VERSION,
        "source": {"path": dec.path, "size": list(dec.size), "mode": dec.source_mode,
                   "exif_orientation": dec.exif_orientation, "sha256": dec.sha256(),
                   "orientation_note": "coordinates refer to the photo after applying its EXIF orientation"},
        "preset": preset,
        "backend": backend,
        "output_size": int(output_size),
        "transform_size": int(transform_size),
        "enable_padding": bool(enable_padding),
        "upsample": upsample,
        "face": None if face is None else {
            "choice": choice, "index": int(face.index), "count": int(face.extra.get("count", 1)),
            "box": [float(v) for v in face.box], "score": float(face.score)},
        "landmarks": fl(lm),
        "quad": fl(geometry["quad"]),
        "qsize": float(geometry["qsize"]),
        "center": [float(v) for v in geometry["center"]],
        "shrink": int(geometry["shrink"]),
        "shrunk_size": None if geometry["shrunk_size"] is None else list(geometry["shrunk_size"]),
        "border": int(geometry["border"]),
        "crop": [int(v) for v in geometry["crop"]],
        "pad": None if geometry["pad"] is None else [int(v) for v in geometry["pad"]],
        "affine": fl(geometry["affine"]),
        "aligned_corners": fl(quad_eff),
    }


def _affine_corners(affine, n):
    """Photo positions of the aligned image's outer corners (-0.5, -0.5) ... (N - 0.5, N - 0.5), QUAD order."""
    a = np.asarray(affine, dtype=np.float64)
    uv = np.array([[-0.5, -0.5], [-0.5, n - 0.5], [n - 0.5, n - 0.5], [n - 0.5, -0.5]])
    return uv @ a[:, :2].T + a[:, 2]


def align_face(image_or_path, output_size=None, preset="ffhq", backend="dlib", face="largest", *,
               transform_size=None, enable_padding=True, upsample=None, min_face_size=0,
               landmarks=None, rotate_level=True, fix_roll=None):
    """Detect, choose and align a face the FFHQ way.

    ``output_size``/``transform_size`` default to the preset's (ffhq: 1024/4096, psp: 256/256).
    ``face``: 'largest' (default; ties by score), 'best' (detector score), 'all', or an index into
    the score-sorted detections (negative counts from the end: -1 is what pSp/e4e pick).
    ``landmarks``: 68 x 2 points to use instead of detecting.
    ``fix_roll``: degrees; faces tilted at least this much get their landmarks re-predicted on an
    upright copy (dlib's model drifts at large roll). None (default) keeps the references' behaviour.
    Returns (aligned PIL RGB image, record dict), or a list of those for ``face='all'``.
    """
    preset, n, t = resolve_sizes(preset, output_size, transform_size)
    dec = decode(image_or_path)
    choice = parse_face_choice(face)
    if landmarks is not None:
        faces, backend_name = [None], "given"
        lms = [np.asarray(landmarks, dtype=np.float64)]
    else:
        backend_name = backend if isinstance(backend, str) else getattr(backend, "name", "custom")
        try:
            faces = detect_faces(dec.array, backend, choice, upsample, min_face_size, fix_roll)
        except (NoFaceError, FaceTooSmallError, FaceIndexError) as e:
            if dec.path:
                raise type(e)(f"{dec.path}: {e}") from None
            raise
        lms = [f.landmarks for f in faces]
    if upsample is None and backend_name != "given":
        from .landmarks import get_backend
        be = get_backend(backend, None) if isinstance(backend, str) else backend
        upsample = getattr(be, "upsample", None)
    results = []
    for f, lm in zip(faces, lms):
        aligned, geometry = align_array(dec, lm, n, t, enable_padding, rotate_level)
        rec = _record(dec, f, lm, geometry, preset, backend_name, n, t, enable_padding, upsample,
                      choice if isinstance(choice, str) else int(choice))
        rec["rotate_level"] = bool(rotate_level)
        rec["fix_roll"] = fix_roll
        if f is not None and "roll_before_fix" in f.extra:
            rec["face"]["roll_before_fix"] = float(f.extra["roll_before_fix"])
        results.append((aligned, rec))
    return results if choice == "all" else results[0]

