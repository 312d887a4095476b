"""Direction files vs shared/fixtures/editing/formats."""
import os

import numpy as np
import pytest
import torch

from editing import directions as dr

FMT = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "fixtures", "editing", "formats")


def _p(name):
    path = os.path.join(FMT, name)
    if not os.path.exists(path):
        pytest.skip(f"{path} missing")
    return path


def _plain():
    return np.load(_p("formats_plain.npz"))


def test_read_all_formats():
    pl = _plain()
    for name, key in [("interfacegan_boundary_f32.npy", "interfacegan_boundary_f32"),
                      ("interfacegan_boundary_f64.npy", "interfacegan_boundary_f64")]:
        d = dr.read(_p(name))
        assert d.vectors.shape == (1, 512) and d.method == "interfacegan"
        np.testing.assert_allclose(d.vectors, pl[key], atol=1e-7)
    d = dr.read(_p("rosinality_factor.pt"))
    np.testing.assert_array_equal(d.vectors, pl["rosinality_eigvec"].T)
    assert str(d.extra["ckpt"]) == str(pl["rosinality_ckpt"])
    d = dr.read(_p("e4e_interfacegan_w.pt"))
    np.testing.assert_array_equal(d.vectors, pl["e4e_interfacegan_w"])
    d = dr.read(_p("e4e_interfacegan_wplus_cuda.pt"))          # CUDA-tagged storage, read on CPU
    np.testing.assert_array_equal(d.vectors[0], pl["e4e_interfacegan_wplus"][0, 0])
    assert int(d.extra["num_ws"]) == 18
    d = dr.read(_p("e4e_ganspace_pca.pt"))
    np.testing.assert_array_equal(d.vectors, pl["e4e_pca_comp"][:, 0])
    np.testing.assert_array_equal(d.extra["scales"], pl["e4e_pca_std"])
    d = dr.read(_p("stylegan2-ffhq_style_ipca_c32_n20000_w.npz"))
    np.testing.assert_array_equal(d.vectors, pl["ganspace_lat_comp"][:, 0])
    np.testing.assert_array_equal(d.extra["scales"], pl["ganspace_lat_stdev"])
    np.testing.assert_allclose(d.vector(3, scaled=True), pl["ganspace_lat_comp"][3, 0] * pl["ganspace_lat_stdev"][3])


def test_gankit_npz_roundtrip_and_writers(tmp_path):
    rs = np.random.RandomState(0)
    d = dr.Directions(vectors=rs.standard_normal((3, 16)), names=["age", "smile", "pose"], space="w",
                      method="sefa", layers=[0, 1, 2], generator_sha256="ab" * 32,
                      extra={"eigenvalues": np.array([3.0, 2.0, 1.0])})
    dr.save(tmp_path / "d.npz", d)
    with np.load(tmp_path / "d.npz", allow_pickle=False) as f:
        assert str(f["format"]) == "gankit-directions"
    b = dr.read(tmp_path / "d.npz")
    np.testing.assert_array_equal(b.vectors, d.vectors)
    assert b.names == d.names and b.layers == [0, 1, 2] and b.space == "w" and b.method == "sefa"
    assert b.generator_sha256 == "ab" * 32
    np.testing.assert_array_equal(b.extra["eigenvalues"], [3.0, 2.0, 1.0])
    np.testing.assert_array_equal(b.vector("smile"), d.vectors[1])
    dr.write_interfacegan(tmp_path / "b.npy", d, "age")
    np.testing.assert_array_equal(dr.read(tmp_path / "b.npy").vectors, d.vectors[:1])
    dr.write_rosinality_factor(tmp_path / "f.pt", d, ckpt="x.pt")
    np.testing.assert_array_equal(dr.read(tmp_path / "f.pt").vectors, d.vectors)
    dr.write_e4e(tmp_path / "e.pt", d, "pose", num_ws=18)
    t = torch.load(tmp_path / "e.pt", weights_only=True)
    assert t.shape == (1, 18, 16)
    np.testing.assert_array_equal(dr.read(tmp_path / "e.pt").vectors[0], d.vectors[2])
    with pytest.raises(ValueError):
        dr.Directions(vectors=np.zeros((2, 4)), names=["a"])


def test_generator_sha256(tmp_path):
    p = tmp_path / "x.bin"
    p.write_bytes(b"abc")
    assert dr.generator_sha256(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    m = torch.nn.Linear(2, 2)
    assert dr.generator_sha256(m) == dr.generator_sha256(m)
