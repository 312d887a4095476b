"""Attribute pipeline for InterFaceGAN: labelled images -> attribute model -> scores of generator
samples -> boundaries in W (and Z).

1. ``read_labels(csv, attribute, images_dir)`` -> image paths and float labels (CelebA 0/1 columns,
   UTKFace ``age`` / ``gender`` ...; CelebA's -1/1 convention is mapped to 0/1).
2. ``train_attribute_model(paths_or_images, labels, task="binary"|"regression")`` -> a small CNN
   (``AttributeNet``) trained from scratch on images resized to ``size`` (default 64).
3. ``score_generator(G, model, n)`` -> ``(z [n, z_dim], w [n, w_dim], scores [n, 1])``.
4. ``fit_boundaries(G, model, n, ...)`` -> ``{'w': boundary [1, w_dim], 'z': boundary [1, z_dim]}``
   with :func:`editing.interfacegan.train_boundary` on the scores.

Images are float tensors in [-1, 1], [N, 3, H, W] (the generators' convention). Scores are the
model's logit (binary) or prediction (regression); InterFaceGAN only uses their order.
"""
from __future__ import annotations

import csv
import os

import numpy as np

__all__ = ["read_labels", "load_images", "AttributeNet", "train_attribute_model", "predict", "score_generator",
           "fit_boundaries"]


def read_labels(csv_path, attribute, images_dir=None):
    """``(paths, labels float32 [N])`` for one column of a label CSV (first column = file name)."""
    images_dir = images_dir or os.path.dirname(str(csv_path))
    paths, labels = [], []
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        if attribute not in (reader.fieldnames or []):
            raise ValueError(f"{csv_path}: no column {attribute!r} (have {', '.join(reader.fieldnames or [])})")
        file_col = reader.fieldnames[0]
        for row in reader:
            v = row[attribute].strip()
            if v == "":
                continue
            paths.append(os.path.join(images_dir, row[file_col]))
            labels.append(float(v))
    y = np.asarray(labels, dtype=np.float32)
    if y.size and set(np.unique(y).tolist()) <= {-1.0, 1.0}:
        y = (y > 0).astype(np.float32)
    return paths, y


def load_images(paths, size=64):
    """Image files -> float tensor [N, 3, size, size] in [-1, 1]."""
    import torch
    from PIL import Image
    arr = np.stack([np.asarray(Image.open(p).convert("RGB").resize((size, size), Image.BILINEAR)) for p in paths])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 127.5 - 1


def _resize(x, size):
    import torch.nn.functional as F
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    x = x[:, :3]
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=x.shape[-1] > size)
    return x


def AttributeNet(size=64, width=32):
    """Small CNN: image [N, 3, size, size] -> one output (logit or value)."""
    import torch.nn as nn
    layers, c, r = [], 3, size
    while r > 4:
        o = min(width * (2 ** len(layers)), 256)
        layers += [nn.Sequential(nn.Conv2d(c, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2))]
        c, r = o, r // 2
    net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(c, 1))
    net.input_size = size
    return net


def train_attribute_model(images, labels, task="binary", size=64, epochs=10, batch_size=64, lr=1e-3, seed=0,
                          val_fraction=0.1, device="cpu", flip=True, width=32, log=None):
    """Train :func:`AttributeNet`. ``images``: list of paths or a tensor [N, 3, H, W] in [-1, 1].

    Returns ``(model, info)`` where ``info`` has ``val_accuracy`` (binary) or ``val_mae`` (regression,
    in label units) and the label normalisation (``mean``, ``std``) used for regression.
    """
    import torch
    import torch.nn.functional as F
    if task not in ("binary", "regression"):
        raise ValueError("task must be 'binary' or 'regression'")
    x = load_images(images, size) if isinstance(images, (list, tuple)) else _resize(images.float(), size)
    y = torch.as_tensor(np.asarray(labels, dtype=np.float32))
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"{len(x)} images but {len(y)} labels")
    g = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(len(x), generator=g)
    n_val = int(len(x) * val_fraction)
    val, tr = perm[:n_val], perm[n_val:]
    mean, std = (float(y[tr].mean()), float(y[tr].std().clamp_min(1e-6))) if task == "regression" else (0.0, 1.0)
    torch.manual_seed(int(seed))
    model = AttributeNet(size, width).to(device)
    model.label_mean, model.label_std, model.task = mean, std, task
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for ep in range(int(epochs)):
        model.train()
        order = tr[torch.randperm(len(tr), generator=g)]
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            xb, yb = x[idx].to(device), y[idx].to(device)
            if flip:
                xb = torch.where(torch.rand(len(xb), 1, 1, 1, generator=g).to(device) < 0.5, xb.flip(-1), xb)
            out = model(xb)[:, 0]
            loss = (F.binary_cross_entropy_with_logits(out, yb) if task == "binary"
                    else F.smooth_l1_loss(out, (yb - mean) / std))
            opt.zero_grad()
            loss.backward()
            opt.step()
        if log:
            log(f"epoch {ep + 1}/{epochs} loss {loss.item():.4f}")
    info = dict(task=task, mean=mean, std=std, n_train=len(tr), n_val=n_val)
    if n_val:
        p = predict(model, x[val], device=device)
        if task == "binary":
            info["val_accuracy"] = float(((p > 0) == (y[val].numpy() > 0.5)).mean())
        else:
            info["val_mae"] = float(np.abs(p - y[val].numpy()).mean())
    model.eval()
    return model, info


def predict(model, images, batch_size=256, device="cpu"):
    """Scores [N] (numpy): logits for binary models, label-unit predictions for regression."""
    import torch
    model.eval()
    size = getattr(model, "input_size", 64)
    outs = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            xb = _resize(images[i:i + batch_size].float().to(device), size)
            outs.append(model(xb)[:, 0].cpu())
    p = torch.cat(outs).numpy()
    return p * getattr(model, "label_std", 1.0) + getattr(model, "label_mean", 0.0)


def score_generator(G, model, n, seed=0, batch_size=64, truncation_psi=1.0, device="cpu"):
    """Sample ``n`` images from ``G`` (z ~ N(0, I), seeded); return ``(z, w, scores [n, 1])`` (numpy)."""
    import torch
    gen = torch.Generator().manual_seed(int(seed))
    zs, ws, ss = [], [], []
    with torch.no_grad():
        for a in range(0, n, batch_size):
            m = min(batch_size, n - a)
            z = torch.randn([m, G.z_dim], generator=gen).to(device)
            c = torch.zeros([m, G.c_dim], device=device) if getattr(G, "c_dim", 0) else None
            w = G.mapping(z, c, truncation_psi=truncation_psi)
            img = G.synthesis(w, noise_mode="const")
            zs.append(z.cpu().numpy())
            ws.append(w[:, 0].cpu().numpy())
            ss.append(predict(model, img, device=device))
    return np.concatenate(zs), np.concatenate(ws), np.concatenate(ss).reshape(-1, 1).astype(np.float32)


def fit_boundaries(G, model, n=10000, spaces=("w", "z"), seed=0, chosen_num_or_ratio=0.02, split_ratio=0.7,
                   batch_size=64, truncation_psi=1.0, device="cpu"):
    """Score ``n`` samples of ``G`` with ``model`` and fit an InterFaceGAN boundary per space.

    Returns ``{space: boundary [1, D]}`` plus ``'details'`` (per-space split/accuracy info) and
    ``'scores'``."""
    from .interfacegan import train_boundary
    z, w, s = score_generator(G, model, n, seed=seed, batch_size=batch_size, truncation_psi=truncation_psi,
                              device=device)
    out, details = {}, {}
    for sp in spaces:
        codes = {"w": w, "z": z}[sp]
        out[sp], details[sp] = train_boundary(codes, s, chosen_num_or_ratio, split_ratio, seed=seed,
                                              return_details=True)
    out["details"], out["scores"] = details, s
    return out
