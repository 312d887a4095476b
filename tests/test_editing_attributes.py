"""Attribute pipeline: labels CSV -> CNN -> generator scores -> InterFaceGAN boundaries (small and fast)."""
import os

import numpy as np
import pytest
import torch

from conftest import SHARED, need_shared
from editing import attributes as A


def test_read_labels_celeba_and_utkface():
    csv = SHARED / "datasets" / "celeba" / "labels.csv"
    if not csv.exists():
        pytest.skip("datasets missing")
    paths, y = A.read_labels(csv, "Smiling")
    assert len(paths) == len(y) > 1000 and set(np.unique(y)) <= {0.0, 1.0} and os.path.exists(paths[0])
    paths, y = A.read_labels(SHARED / "datasets" / "utkface" / "labels.csv", "age")
    assert y.max() > 50 and os.path.exists(paths[0])
    with pytest.raises(ValueError):
        A.read_labels(csv, "nope")
    x = A.load_images(paths[:4], size=32)
    assert x.shape == (4, 3, 32, 32) and x.min() >= -1 and x.max() <= 1


def test_classifier_learns_and_boundary_follows_score():
    # synthetic attribute: is the image brighter on the left than on the right
    g = torch.Generator().manual_seed(0)
    y = (torch.rand(240, generator=g) > 0.5).float()
    ramp = torch.linspace(-0.5, 0.5, 16).view(1, 1, 1, 16) * (1 - 2 * y).view(-1, 1, 1, 1)
    x = (0.5 * (torch.rand(240, 3, 16, 16, generator=g) * 2 - 1) + ramp).clamp(-1, 1)
    model, info = A.train_attribute_model(x, y.numpy(), size=16, epochs=6, batch_size=40, flip=False,
                                          val_fraction=0.25, width=8)
    assert info["val_accuracy"] >= 0.8, info
    src = need_shared("nvidia", "sg2ada_min_16.pkl")
    import generators
    G = generators.load(str(src)).eval()
    res = A.fit_boundaries(G, model, n=400, chosen_num_or_ratio=0.25, batch_size=200)
    for sp, dim in (("w", G.w_dim), ("z", G.z_dim)):
        assert res[sp].shape == (1, dim) and abs(np.linalg.norm(res[sp]) - 1) < 1e-5
    # moving along the W boundary raises the attribute score on average
    z = torch.randn([64, G.z_dim], generator=g)
    with torch.no_grad():
        w = G.mapping(z, None)
        b = torch.from_numpy(res["w"][0])
        s = [A.predict(model, G.synthesis(w + d * b, noise_mode="const")).mean() for d in (-3.0, 0.0, 3.0)]
    assert s[0] < s[1] < s[2], s
