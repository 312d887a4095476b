"""GANSpace vs shared/fixtures/editing/ganspace (reference harskish/ganspace compute() outputs)."""
import os

import numpy as np
import pytest

from editing import ganspace as gs

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "fixtures", "editing")


def _fixture(name):
    path = os.path.join(ROOT, "ganspace", name)
    if not os.path.exists(path):
        pytest.skip(f"fixture {path} missing")
    return np.load(path)


def _w_recipe(d):
    D = int(d["meta_D"])
    rs = np.random.RandomState(int(d["meta_model_seed"]))
    A = rs.standard_normal((D, D)) / np.sqrt(D)
    mu = 0.5 * rs.standard_normal(D)
    s = 0.3 + 2.5 * 0.9 ** np.arange(D)
    n_lat = int(d["meta_n_lat"])
    z = np.random.RandomState(int(d["meta_sampling_seed"])).standard_normal((n_lat + 5000, D))
    h = (z * s) @ A
    W = (np.where(h > 0, h, 0.2 * h) + mu).astype(np.float32)
    np.testing.assert_array_equal(W[:256], d["w_head"])
    np.testing.assert_array_equal(W[n_lat:n_lat + 64], d["stdev_sample_head"])
    return W[:int(d["meta_n_fill"])], W[n_lat:n_lat + 5000]


CASES = [("ganspace_d64_n20000_k32.npz", "ipca"), ("ganspace_d64_n20000_k32.npz", "pca"),
         ("ganspace_d512_n20000_k80.npz", "ipca"), ("ganspace_d512_n20000_k80.npz", "pca")]


@pytest.mark.parametrize("name,estimator", CASES)
def test_fit_matches_reference(name, estimator):
    d = _fixture(name)
    fit_rows, stdev_rows = _w_recipe(d)
    k = int(d["meta_k"])
    try:    # one BLAS thread: the machine is shared, oversubscribed BLAS spins are far slower
        from threadpoolctl import threadpool_limits
        with threadpool_limits(1):
            r = gs.fit(fit_rows, k, stdev_samples=stdev_rows, estimator=estimator)
    except ImportError:
        r = gs.fit(fit_rows, k, stdev_samples=stdev_rows, estimator=estimator)
    pre = "ipca_" if estimator == "ipca" else "pca_fixed_"      # never the buggy zero-row fit
    D = fit_rows.shape[1]
    assert r["lat_comp"].shape == (k, 1, D) and r["lat_mean"].shape == (1, D)
    for key in ("lat_stdev", "var_ratio", "act_stdev", "random_stdevs"):
        assert r[key].shape == (k,) and r[key].dtype == np.float32
    cos = np.abs((r["lat_comp"][:, 0] * d[pre + "lat_comp"][:, 0]).sum(1))
    assert cos.min() >= 0.9999, cos.min()
    np.testing.assert_allclose(r["lat_mean"], d[pre + "lat_mean"], atol=1e-4)
    np.testing.assert_allclose(r["lat_stdev"], d[pre + "lat_stdev"], rtol=1e-4)
    np.testing.assert_allclose(r["var_ratio"], d[pre + "var_ratio"], rtol=1e-4)
    np.testing.assert_allclose(r["act_stdev"], d[pre + "act_stdev"], rtol=1e-4)
    # not the buggy estimator: mean is the real mean
    np.testing.assert_allclose(r["lat_mean"][0], fit_rows.mean(0), atol=1e-4)


def test_save_load_and_e4e_roundtrip(tmp_path):
    f = os.path.join(ROOT, "formats", "stylegan2-ffhq_style_ipca_c32_n20000_w.npz")
    if not os.path.exists(f):
        pytest.skip("format fixture missing")
    ref = gs.load(f)
    assert set(gs.NPZ_KEYS) <= set(ref)
    out = tmp_path / "c.npz"
    gs.save(out, ref)
    back = gs.load(out)
    for k in gs.NPZ_KEYS:
        np.testing.assert_array_equal(back[k], ref[k])
    e = gs.to_e4e(ref)
    assert e["comp"].shape == (32, 1, 64) and e["mean"].shape == (1, 64) and e["std"].shape == (32,)
    g = gs.from_e4e(e)
    np.testing.assert_array_equal(g["lat_comp"], ref["lat_comp"])


def test_edit_relative_and_layers():
    rs = np.random.RandomState(0)
    comps = gs.fit(rs.standard_normal((3000, 16)).astype(np.float32) * np.linspace(3, 0.5, 16), 8, estimator="pca")
    ws = rs.standard_normal((2, 10, 16)).astype(np.float32)
    out = gs.edit(ws, comps, 2, 1.5, layers=(3, 6))        # E(2, 3-5), end exclusive
    np.testing.assert_array_equal(out[:, :3], ws[:, :3])
    np.testing.assert_array_equal(out[:, 6:], ws[:, 6:])
    delta = out[:, 3:6] - ws[:, 3:6]
    np.testing.assert_allclose(delta, np.broadcast_to(1.5 * comps["lat_stdev"][2] * comps["lat_comp"][2, 0], delta.shape),
                               atol=1e-5)
    np.testing.assert_array_equal(gs.edit(ws, comps, 2, 0.0), ws)


def test_edit_e4e_rule():
    d = _fixture("ganspace_e4e_edit_d512.npz")
    pca = {"mean": d["pca_mean"], "comp": d["pca_comp"], "std": d["pca_std"]}
    outs = []
    for lat in d["latents"]:            # latent-major
        for c, a, b, s in d["edits"]:
            outs.append(gs.edit_e4e(lat[None], pca, int(c), int(a), int(b), float(s))[0])
    np.testing.assert_allclose(np.stack(outs), d["edited"], atol=1e-4)
