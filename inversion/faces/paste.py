"""Paste an edited aligned face back into the photo it came from.

The alignment is an affine map from aligned pixels to photo pixels (the record's ``affine``), so
pasting back samples the edited crop at the photo positions through the inverse map (bilinear),
then blends it in with a feathered square mask built in aligned coordinates: 0 in an outer margin
(2 % of the side), rising linearly over a ramp (8 % of the side), 1 inside. Where the alignment
needed padding, the mask also stays away from the photo band that the padding blur softened.
Every photo pixel whose weight is 0 is left bit-identical.

``blend="poisson"`` adds seamless cloning: the edited face is shifted by a harmonic membrane that
matches the photo on the mask's outer boundary (a Laplace solve on a coarse grid, upsampled), and
the result is blended with the same feathered mask. Pure NumPy/SciPy, no OpenCV.

The output is the photo in the orientation the record refers to: after its EXIF orientation.
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image

from .align import LANCZOS
from .decode import decode
from .errors import RecordError
from .record import load_record, record_affine

BLENDS = ("feather", "poisson")


def _region(corners, size):
    w, h = size
    x0 = max(int(math.floor(corners[:, 0].min())), 0)
    y0 = max(int(math.floor(corners[:, 1].min())), 0)
    x1 = min(int(math.ceil(corners[:, 0].max())) + 1, w)
    y1 = min(int(math.ceil(corners[:, 1].max())) + 1, h)
    return x0, y0, x1, y1


def _bilinear(img: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Sample an H x W x C array at index coordinates (u, v) (edge-clamped), float64."""
    h, w = img.shape[:2]
    u = np.clip(u, 0.0, w - 1.0)
    v = np.clip(v, 0.0, h - 1.0)
    x0 = np.minimum(np.floor(u).astype(np.int64), w - 2 if w > 1 else 0)
    y0 = np.minimum(np.floor(v).astype(np.int64), h - 2 if h > 1 else 0)
    x1 = np.minimum(x0 + 1, w - 1)
    y1 = np.minimum(y0 + 1, h - 1)
    fx = (u - x0)[..., None]
    fy = (v - y0)[..., None]
    f = img.astype(np.float64)
    top = f[y0, x0] * (1 - fx) + f[y0, x1] * fx
    bot = f[y1, x0] * (1 - fx) + f[y1, x1] * fx
    return top * (1 - fy) + bot * fy


def _padding_guard(record, px, py, ramp_px):
    """Weight in [0, 1] keeping the paste away from photo pixels that padding/black fill altered."""
    pad = record.get("pad")
    size = record["source"]["size"]
    shrunk = record.get("shrunk_size")
    dx, dy = (size[0] / shrunk[0], size[1] / shrunk[1]) if shrunk else (1.0, 1.0)
    if pad:
        # The reference blurs every working pixel within pad/3 of the crop box's edges (the seam).
        cl, ct, cr, cb = record["crop"]
        pl, pt, pr, pb = pad
        lo_x, hi_x = cl + pl / 3.0, cr - 1 - pr / 3.0
        lo_y, hi_y = ct + pt / 3.0, cb - 1 - pb / 3.0
    elif _quad_leaves(record):
        # Without padding the transform samples black outside the photo: skip its outermost pixel.
        ww, wh = shrunk if shrunk else size
        lo_x, hi_x, lo_y, hi_y = 1.0, ww - 2.0, 1.0, wh - 2.0
    else:
        return None
    # working index -> photo index: (k + 0.5) * d - 0.5
    lo_x, hi_x = (lo_x + 0.5) * dx - 0.5, (hi_x + 0.5) * dx - 0.5
    lo_y, hi_y = (lo_y + 0.5) * dy - 0.5, (hi_y + 0.5) * dy - 0.5
    dist = np.minimum(np.minimum(px - lo_x, hi_x - px), np.minimum(py - lo_y, hi_y - py))
    return np.clip(dist / max(ramp_px, 1.0), 0.0, 1.0)


def _quad_leaves(record) -> bool:
    c = np.asarray(record["aligned_corners"], dtype=np.float64)
    w, h = record["source"]["size"]
    return bool(c[:, 0].min() < 0 or c[:, 1].min() < 0 or c[:, 0].max() > w - 1 or c[:, 1].max() > h - 1)


def blend_weights(record, size: int, shape_hw, origin, margin: float = 0.02, ramp: float = 0.08):
    """Feathered mask over a photo window (origin = (x0, y0), shape = (h, w)) and the (u, v) positions."""
    a = record_affine(record, size)
    minv = np.linalg.inv(a[:, :2])
    h, w = shape_hw
    py, px = np.mgrid[origin[1]:origin[1] + h, origin[0]:origin[0] + w].astype(np.float64)
    qx, qy = px - a[0, 2], py - a[1, 2]
    u = minv[0, 0] * qx + minv[0, 1] * qy
    v = minv[1, 0] * qx + minv[1, 1] * qy
    # distance (in aligned pixels) to the aligned square's outer edge, continuous coordinates
    d = np.minimum(np.minimum(u + 0.5, size - 0.5 - u), np.minimum(v + 0.5, size - 0.5 - v))
    wgt = np.clip((d - margin * size) / max(ramp * size, 1e-9), 0.0, 1.0)
    scale = math.sqrt(abs(np.linalg.det(a[:, :2])))  # photo px per aligned px
    guard = _padding_guard(record, px, py, ramp * size * scale)
    if guard is not None:
        wgt = wgt * guard
    return wgt, u, v


def _membrane(diff, inside, boundary, max_grid=192):
    """Harmonic h with h = diff on ``boundary`` pixels, solved for ``inside`` on a coarse grid, upsampled."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import spsolve

    h, w = inside.shape
    f = max(1, int(math.ceil(max(h, w) / max_grid)))
    H, W = -(-h // f), -(-w // f)

    def blocks(a):
        pad = [(0, H * f - h), (0, W * f - w)] + [(0, 0)] * (a.ndim - 2)
        a = np.pad(a, pad)
        return a.reshape(H, f, W, f, *a.shape[2:]).sum(axis=(1, 3))

    n_in = blocks(inside.astype(np.float64))
    n_bd = blocks(boundary.astype(np.float64))
    s_bd = blocks(diff * boundary[..., None])
    dirichlet = n_bd > 0
    unknown = (n_in > 0) & ~dirichlet
    val = np.where(dirichlet[..., None], s_bd / np.maximum(n_bd, 1)[..., None], 0.0)

    idx = -np.ones((H, W), dtype=np.int64)
    idx[unknown] = np.arange(int(unknown.sum()))
    n = int(unknown.sum())
    sol = val.copy()
    if n:
        rows, cols, data = [], [], []
        rhs = np.zeros((n, diff.shape[2]))
        diag = np.zeros(n)
        yy, xx = np.nonzero(unknown)
        me = idx[yy, xx]
        for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            ny, nx = yy + dy, xx + dx
            ok = (ny >= 0) & (ny < H) & (nx >= 0) & (nx < W)
            ny, nx, m = ny[ok], nx[ok], me[ok]
            is_u = unknown[ny, nx]
            is_d = dirichlet[ny, nx]
            rows.append(m[is_u]); cols.append(idx[ny[is_u], nx[is_u]]); data.append(-np.ones(int(is_u.sum())))
            np.add.at(diag, m[is_u | is_d], 1.0)
            np.add.at(rhs, m[is_d], val[ny[is_d], nx[is_d]])
        lonely = diag == 0
        diag[lonely] = 1.0
        rows.append(np.arange(n)); cols.append(np.arange(n)); data.append(diag)
        A = coo_matrix((np.concatenate(data), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)).tocsc()
        x = spsolve(A, rhs)
        sol[unknown] = np.asarray(x).reshape(n, -1)
    # bilinear upsample: coarse cell (i, j) centre sits at full-res ((j + 0.5) f - 0.5, (i + 0.5) f - 0.5)
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float64)
    return _bilinear(sol, (gx + 0.5) / f - 0.5, (gy + 0.5) / f - 0.5)


def paste_back(original_photo, edited_aligned, record, blend: str = "feather", *, margin: float = 0.02,
               ramp: float = 0.08, prefilter: bool = False, return_mask: bool = False):
    """Warp an edited aligned face back into the photo and blend it in.

    ``original_photo``: the photo the record was made from (path, PIL image or array; decoded the
    same way as for alignment). ``edited_aligned``: the edited face, any square size (the record's
    map is rescaled). ``record``: the record dict or its JSON path. ``prefilter``: LANCZOS-reduce
    the edited face to the photo's scale first (useful when the face is much smaller in the photo
    than the aligned image and the edit adds fine detail; off by default, it blurs the round trip).
    Returns a PIL RGB image (and the H x W float mask if ``return_mask``).
    """
    if blend not in BLENDS:
        raise ValueError(f"blend must be one of {', '.join(BLENDS)}, not {blend!r}")
    rec = load_record(record)
    photo = decode(original_photo).array
    w, h = photo.shape[1], photo.shape[0]
    if [w, h] != [int(v) for v in rec["source"]["size"]]:
        sw, sh = rec["source"]["size"]
        raise RecordError(f"photo is {w}x{h} but the record was made from a {sw}x{sh} image "
                          "(after EXIF orientation)")
    edit_img = decode(edited_aligned)
    edit = edit_img.array
    if edit.shape[0] != edit.shape[1]:
        raise RecordError(f"the edited face must be square, not {edit.shape[1]}x{edit.shape[0]}")
    size = edit.shape[0]
    if prefilter:
        a = record_affine(rec, size)
        target = int(math.ceil(math.sqrt(abs(np.linalg.det(a[:, :2]))) * size))
        if 1 <= target < size:
            edit = np.asarray(Image.fromarray(edit, "RGB").resize((target, target), LANCZOS))
            size = target

    corners = np.asarray(rec["aligned_corners"], dtype=np.float64)
    x0, y0, x1, y1 = _region(corners, (w, h))
    out = photo.copy()
    full_mask = np.zeros((h, w), dtype=np.float64) if return_mask else None
    if x1 <= x0 or y1 <= y0:
        result = Image.fromarray(out, "RGB")
        return (result, full_mask) if return_mask else result
    wgt, u, v = blend_weights(rec, size, (y1 - y0, x1 - x0), (x0, y0), margin, ramp)
    src = _bilinear(edit, u, v)
    base = photo[y0:y1, x0:x1].astype(np.float64)
    if blend == "poisson":
        inside = wgt > 0
        ring = ~inside
        # Dirichlet data: the photo/edit difference on pixels just outside the mask, within the square
        from scipy.ndimage import binary_dilation
        boundary = ring & binary_dilation(inside, iterations=2)
        src = src + _membrane(base - src, inside, boundary)
    blended = base + wgt[..., None] * (src - base)
    patch = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    keep = wgt <= 0
    patch[keep] = photo[y0:y1, x0:x1][keep]
    out[y0:y1, x0:x1] = patch
    result = Image.fromarray(out, "RGB")
    if return_mask:
        full_mask[y0:y1, x0:x1] = wgt
        return result, full_mask
    return result
