"""InterFaceGAN vs shared/fixtures/editing/interfacegan (reference genforce/interfacegan outputs)."""
import os

import numpy as np
import pytest

from editing import interfacegan as ifg

FIX = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "fixtures", "editing", "interfacegan")
FILES = ["interfacegan_d64_n2000.npz", "interfacegan_d512_n2000.npz"]


def _load(name):
    path = os.path.join(FIX, name)
    if not os.path.exists(path):
        pytest.skip(f"fixture {path} missing")
    d = dict(np.load(path))
    if "codes" not in d:
        d["codes"] = np.random.RandomState(int(d["meta_code_seed"])).standard_normal(
            (int(d["meta_N"]), int(d["meta_D"]))).astype(np.float32)
        np.testing.assert_array_equal(d["codes"][:64], d["codes_head"])
    return d


def _abscos(a, b):
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return abs(a @ b) / np.linalg.norm(a) / np.linalg.norm(b)


@pytest.mark.parametrize("name", FILES)
def test_train_boundary_cases(name):
    d = _load(name)
    for i in range(len(d["tb_names"])):
        chosen, split, invalid, seed = d[f"tb{i}_args"]
        invalid = None if np.isnan(invalid) else float(invalid)
        scores = d["scores_clean"] if d[f"tb{i}_uses_clean_scores"] else d["scores"]
        b, det = ifg.train_boundary(d["codes"], scores, chosen, split, invalid, seed=int(seed), return_details=True)
        assert b.shape == (1, d["codes"].shape[1]) and b.dtype == np.float32
        assert abs(np.linalg.norm(b) - 1) < 1e-6
        for k in ("n_valid", "chosen_num", "train_num", "val_num"):
            assert det[k] == int(d[f"tb{i}_{k}"]), (i, k)
        for k in ("pos_train", "pos_val", "neg_train", "neg_val"):
            np.testing.assert_array_equal(np.sort(det[k]), np.sort(d[f"tb{i}_{k}"]), err_msg=f"tb{i} {k}")
        c = _abscos(b, d[f"tb{i}_boundary"])
        assert c >= 0.9999, (i, c)
        assert (b @ d[f"tb{i}_boundary"].T).item() > 0     # same sign (positives = high scores)


def test_train_boundary_seed_and_nan_filter():
    d = _load(FILES[0])
    codes, scores = d["codes"], d["scores"].copy()
    b1 = ifg.train_boundary(codes, scores, 0.25, 1.0, -1.0, seed=0)
    b2 = ifg.train_boundary(codes, scores, 0.25, 1.0, -1.0, seed=5)
    assert _abscos(b1, b2) > 0.99999          # split 1.0: seed independent
    np.random.seed(0)
    g = ifg.train_boundary(codes, d["scores_clean"], 0.02, 0.7)
    np.testing.assert_allclose(g, d["tb0_boundary"], atol=1e-4)   # global RNG like the reference
    scores[d["invalid_rows"]] = np.nan
    bn = ifg.train_boundary(codes, scores, 0.25, 1.0, float("nan"), seed=0)
    assert _abscos(bn, d["tb2_boundary"]) >= 0.9999           # NaN rows really filtered
    with pytest.raises(ValueError):
        ifg.train_boundary(codes[:3], scores[:3], 0.02)


@pytest.mark.parametrize("name", FILES)
def test_project_boundary(name):
    d = _load(name)
    conds = [d["proj_cond1"], d["proj_cond2"], d["proj_cond3"]]
    for k in range(4):
        out = ifg.project_boundary(d["proj_primal"], *conds[:k])
        assert out.shape == d["proj_primal"].shape and out.dtype == np.float32
        np.testing.assert_allclose(out, d[f"proj_out{k}"], atol=1e-6, rtol=0)
        for c in conds[:k]:
            assert abs((out @ c.T).item()) < 1e-6


@pytest.mark.parametrize("name", FILES)
def test_linear_interpolate(name):
    d = _load(name)
    for i in range(3):
        start, end, steps = d[f"li{i}_args"]
        w = ifg.linear_interpolate(d["li_w_in"], d["li_boundary"], start, end, int(steps))
        wp = ifg.linear_interpolate(d["li_wp_in"], d["li_boundary"], start, end, int(steps))
        assert w.shape == d[f"li{i}_w_out"].shape and wp.shape == d[f"li{i}_wp_out"].shape
        np.testing.assert_allclose(w, d[f"li{i}_w_out"], atol=1e-6, rtol=0)
        np.testing.assert_allclose(wp, d[f"li{i}_wp_out"], atol=1e-6, rtol=0)
        # W: absolute signed distance; W+: relative
        np.testing.assert_allclose((w @ d["li_boundary"].T)[:, 0], np.linspace(start, end, int(steps)), atol=1e-4)
    w1 = ifg.linear_interpolate(d["li_w_in"][0], d["li_boundary"], -1, 1, 3)   # [D] accepted
    assert w1.shape == (3, d["li_w_in"].shape[1])
