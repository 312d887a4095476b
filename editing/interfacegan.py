"""InterFaceGAN: linear attribute boundaries in a latent space (Shen et al., CVPR 2020).

Same semantics as genforce/interfacegan ``utils/manipulator.py`` (numbers checked against
``shared/fixtures/editing/interfacegan``), written from the description, with these documented
differences:

* ``invalid_value=float('nan')`` filters NaN scores (the reference compares with ``!=`` and so
  filters nothing); any other value filters rows equal to it, as in the reference.
* ``seed``: the train/validation split uses ``np.random.RandomState(seed)`` (``seed=None``: numpy's
  global generator, like the reference). ``np.random.seed(s)`` + the reference call and
  ``seed=s`` here draw the same split. ``return_details=True`` also returns the row indices used.
* No ``np.int`` (works on numpy >= 1.24).

``chosen_num_or_ratio``: values in (0, 1] are ratios of the valid rows, larger values are counts
(so ``1`` means *all*, capped at half; ``1.9`` means one sample); always capped at n // 2.
The SVM intercept is discarded: the boundary is a hyperplane through the origin.
"""
from __future__ import annotations

import numpy as np

__all__ = ["train_boundary", "project_boundary", "linear_interpolate", "select_samples"]


def select_samples(scores, chosen_num_or_ratio=0.02, split_ratio=0.7, invalid_value=None, seed=None):
    """Row indices of the positive/negative train/val sets, as the reference picks them.

    Returns a dict with ``pos_train``, ``pos_val``, ``neg_train``, ``neg_val`` (indices into the
    original rows), ``n_valid``, ``chosen_num``, ``train_num``, ``val_num``.
    """
    scores = np.asarray(scores)
    if scores.ndim == 1:
        scores = scores[:, None]
    if scores.ndim != 2 or scores.shape[1] != 1:
        raise ValueError(f"scores must be [N, 1], got {scores.shape}")
    if not 0 < split_ratio <= 1:
        raise ValueError(f"split_ratio must be in (0, 1], got {split_ratio}")
    if chosen_num_or_ratio <= 0:
        raise ValueError(f"chosen_num_or_ratio must be > 0, got {chosen_num_or_ratio}")
    rows = np.arange(scores.shape[0])
    s = scores[:, 0]
    if invalid_value is not None:
        is_nan = isinstance(invalid_value, (float, np.floating)) and np.isnan(invalid_value)
        keep = ~np.isnan(s) if is_nan else s != invalid_value
        rows, s = rows[keep], s[keep]
    # descending by score, with the reference's tie order (argsort of the column, reversed)
    order = np.argsort(s[:, None], axis=0)[::-1, 0]
    rows = rows[order]
    n = rows.shape[0]
    if 0 < chosen_num_or_ratio <= 1:
        chosen = int(n * chosen_num_or_ratio)
    else:
        chosen = int(chosen_num_or_ratio)
    chosen = min(chosen, n // 2)
    if chosen < 1:
        raise ValueError(f"no samples chosen from {n} valid rows (chosen_num_or_ratio={chosen_num_or_ratio})")
    train_num = int(chosen * split_ratio)
    shuffle = np.random.shuffle if seed is None else np.random.RandomState(seed).shuffle
    pos_perm = np.arange(chosen)
    shuffle(pos_perm)
    neg_perm = np.arange(chosen)
    shuffle(neg_perm)
    pos, neg = rows[:chosen], rows[n - chosen:]
    return dict(pos_train=pos[pos_perm[:train_num]], pos_val=pos[pos_perm[train_num:]],
                neg_train=neg[neg_perm[:train_num]], neg_val=neg[neg_perm[train_num:]],
                n_valid=n, chosen_num=chosen, train_num=train_num, val_num=chosen - train_num)


def train_boundary(latent_codes, scores, chosen_num_or_ratio=0.02, split_ratio=0.7, invalid_value=None,
                   seed=None, return_details=False, C=1.0):
    """Fit a linear SVM between the top- and bottom-scored codes; return the unit normal [1, D] float32.

    ``latent_codes`` [N, D]; ``scores`` [N, 1] (or [N]). ``return_details=True`` returns
    ``(boundary, details)`` where details has the split indices and the validation accuracy.
    """
    from sklearn import svm   # heavy import: only when fitting

    codes = np.asarray(latent_codes)
    if codes.ndim != 2:
        raise ValueError(f"latent_codes must be [N, D], got {codes.shape}")
    scores = np.asarray(scores)
    if scores.shape[0] != codes.shape[0]:
        raise ValueError(f"{codes.shape[0]} codes but {scores.shape[0]} scores")
    sel = select_samples(scores, chosen_num_or_ratio, split_ratio, invalid_value, seed)
    tn = sel["train_num"]
    if tn < 1:
        raise ValueError("no training samples (chosen_num * split_ratio < 1)")
    x = np.concatenate([codes[sel["pos_train"]], codes[sel["neg_train"]]], axis=0)
    y = np.concatenate([np.ones(tn, dtype=np.int64), np.zeros(tn, dtype=np.int64)])
    clf = svm.SVC(kernel="linear", C=C).fit(x, y)
    a = clf.coef_.reshape(1, codes.shape[1]).astype(np.float32)
    boundary = a / np.linalg.norm(a)
    if not return_details:
        return boundary
    details = dict(sel)
    if sel["val_num"] > 0:
        xv = np.concatenate([codes[sel["pos_val"]], codes[sel["neg_val"]]], axis=0)
        yv = np.concatenate([np.ones(sel["val_num"]), np.zeros(sel["val_num"])])
        details["val_accuracy"] = float((clf.predict(xv) == yv).mean())
    details["train_accuracy"] = float((clf.predict(x) == y).mean())
    details["intercept"] = float(clf.intercept_[0])
    return boundary, details


def project_boundary(primal, *conditions):
    """Remove from ``primal`` [1, D] its components along the condition boundaries; renormalise.

    Exact least-squares projection onto the orthogonal complement of the conditions (the
    reference's 2-condition closed form adds 1e-8 to denominators; differences < 1e-7).
    No conditions: ``primal`` is returned unchanged.
    """
    primal = np.asarray(primal)
    if primal.ndim != 2 or primal.shape[0] != 1:
        raise ValueError(f"primal must be [1, D], got {primal.shape}")
    if not conditions:
        return primal
    conds = []
    for c in conditions:
        c = np.asarray(c)
        if c.shape != primal.shape:
            raise ValueError(f"condition boundary must be {primal.shape}, got {c.shape}")
        conds.append(c.reshape(-1))
    A = np.stack(conds).astype(np.float64)                  # [k, D]
    p = primal.reshape(-1).astype(np.float64)
    coef = np.linalg.solve(A @ A.T, A @ p)
    new = p - coef @ A
    new = new / np.linalg.norm(new)
    return new.reshape(1, -1).astype(primal.dtype)


def linear_interpolate(latent_code, boundary, start_distance=-3.0, end_distance=3.0, steps=10):
    """Codes along ``boundary``, ``steps`` distances ``linspace(start, end)``.

    * ``latent_code`` [1, D] (Z or W): **absolute** -- output i is moved so its signed distance to
      the hyperplane (through the origin) equals d_i: ``w + (d_i - w.n) n``; returns [steps, D].
    * ``latent_code`` [1, L, D] (W+): **relative** -- ``w + d_i n`` on every layer; [steps, L, D].
    A [D] code is treated as [1, D].
    """
    code = np.asarray(latent_code)
    b = np.asarray(boundary)
    if code.ndim == 1:
        code = code[None]
    if b.ndim == 1:
        b = b[None]
    if code.shape[0] != 1 or b.shape[0] != 1 or b.ndim != 2 or b.shape[1] != code.shape[-1]:
        raise ValueError(f"need latent_code [1, D] or [1, L, D] and boundary [1, D]; got {code.shape}, {b.shape}")
    d = np.linspace(start_distance, end_distance, int(steps))
    if code.ndim == 2:
        d = (d - code.dot(b.T)).reshape(-1, 1).astype(np.float32)
        return code + d * b
    if code.ndim == 3:
        d = d.reshape(-1, 1, 1).astype(np.float32)
        return code + d * b.reshape(1, 1, -1)
    raise ValueError(f"latent_code must be [1, D] or [1, L, D], got {code.shape}")
