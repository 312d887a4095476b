"""Latent files: gankit's .npz and the reference tools' formats round-trip; nothing in them is run."""
import pickle

import numpy as np
import pytest
import torch

from inversion import latents as L


def _lat(n=3, num_ws=6, dim=16, space="w+"):
    rng = np.random.RandomState(0)
    w = rng.randn(n, num_ws, dim).astype(np.float32)
    if space == "w":
        w = np.repeat(w[:, :1], num_ws, axis=1)
    return L.Latents(w=w, names=[f"img{i}" for i in range(n)], space=space, method="projection",
                     generator_sha256="ab" * 32, resolution=16,
                     losses={"mse": rng.rand(n).astype(np.float32), "psnr": rng.rand(n).astype(np.float32)},
                     noise=[rng.randn(n, 1, r, r).astype(np.float32) for r in (4, 8, 8)])


def test_gankit_roundtrip(tmp_path):
    lat = _lat()
    L.save(tmp_path / "latents.npz", lat)
    back = L.load(tmp_path / "latents.npz")
    assert back.w.dtype == np.float32 and np.array_equal(back.w, lat.w)
    assert back.names == lat.names and back.space == "w+" and back.method == "projection"
    assert back.generator_sha256 == lat.generator_sha256 and back.resolution == 16
    assert set(back.losses) == {"mse", "psnr"} and np.array_equal(back.losses["mse"], lat.losses["mse"])
    assert all(np.array_equal(a, b) for a, b in zip(back.noise, lat.noise))
    with np.load(tmp_path / "latents.npz", allow_pickle=False) as f:   # plain arrays, no pickles
        assert f["w"].shape == (3, 6, 16)
    assert L.sniff(tmp_path / "latents.npz") == "gankit"


@pytest.mark.parametrize("fmt,name", [("nvidia", "projected_w.npz"), ("e4e", "latents.pt"), ("restyle", "latents.npy"),
                                      ("rosinality", "proj.pt")])
@pytest.mark.parametrize("space", ["w", "w+"])
def test_reference_formats_roundtrip(tmp_path, fmt, name, space):
    lat = _lat(space=space)
    path = tmp_path / name
    L.write(path, lat, fmt)
    assert L.sniff(path) == fmt
    back = L.read(path)
    assert back.space == space
    w = back.torch(num_ws=6).numpy()
    assert np.array_equal(w, lat.w)
    if fmt in ("restyle", "rosinality"):
        assert back.names == lat.names
    if fmt == "rosinality":
        assert all(np.array_equal(a, b) for a, b in zip(back.noise, lat.noise))
        # W latents are stored as one [w_dim] vector per image, as rosinality's projector does
        raw = torch.load(path, weights_only=True)
        assert raw["img0"]["latent"].shape == ((16,) if space == "w" else (6, 16))
    # and back into gankit's format
    L.save(tmp_path / "g.npz", back)
    assert np.array_equal(L.load(tmp_path / "g.npz").torch(num_ws=6).numpy(), lat.w)


def test_pti_pivot_roundtrip(tmp_path):
    lat = _lat(n=1, space="w")
    path = tmp_path / "embeddings" / "barcelona" / "PTI" / "face1" / "0.pt"
    L.write(path, lat, "pti")
    raw = torch.load(path, weights_only=True)
    assert isinstance(raw, torch.Tensor) and raw.shape == (1, 6, 16)
    assert L.sniff(path) == "pti"
    back = L.read(path)
    assert back.names == ["face1"] and np.array_equal(back.w, lat.w) and back.space == "w"
    with pytest.raises(L.LatentFileError):
        L.write(tmp_path / "x.pt", _lat(n=2), "pti")


def test_reads_reference_layouts_written_independently(tmp_path):
    """Files laid out as the reference scripts write them (not by gankit's writers)."""
    w = np.random.RandomState(1).randn(2, 4, 8).astype(np.float32)
    np.savez(tmp_path / "projected_w.npz", w=w[:1])                         # NVIDIA projector
    assert np.array_equal(L.read(tmp_path / "projected_w.npz").w, w[:1])
    # ReStyle: {basename: [latent of iteration 0, 1, ...]}; the last iteration is the result
    d = {"a.jpg": [w[0] * 0, w[0]], "b.jpg": [w[1] * 0, w[1]]}
    np.save(tmp_path / "latents.npy", d)
    r = L.read(tmp_path / "latents.npy")
    assert r.names == ["a", "b"] and np.array_equal(r.w, w)
    assert np.array_equal(L.read(tmp_path / "latents.npy", iteration=0).w, w * 0)
    torch.save(torch.from_numpy(w), tmp_path / "latents.pt")               # e4e
    assert np.array_equal(L.read(tmp_path / "latents.pt").w, w)
    # rosinality projector with --w_plus: {path: {img, latent [num_ws, w_dim], noise [[1,1,r,r], ...]}}
    torch.save({"x/face.png": {"img": torch.zeros(3, 8, 8), "latent": torch.from_numpy(w[0]),
                               "noise": [torch.ones(1, 1, 4, 4)]}}, tmp_path / "face.pt")
    r = L.read(tmp_path / "face.pt")
    assert r.names == ["face"] and np.array_equal(r.w[0], w[0]) and r.noise[0].shape == (1, 1, 4, 4)


class _Evil:
    def __reduce__(self):
        import os
        return (os.system, ("echo pwned > /dev/null",))


def test_unsafe_files_are_refused(tmp_path):
    bad = np.empty((), dtype=object)
    bad[()] = {"a.jpg": _Evil()}
    with open(tmp_path / "latents.npy", "wb") as f:
        np.lib.format.write_array(f, bad, allow_pickle=True)
    with pytest.raises(L.LatentFileError, match="os|posix|system|allow"):
        L.read(tmp_path / "latents.npy")
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump(_Evil(), f)
    with pytest.raises(L.LatentFileError):
        L.read(tmp_path / "evil.pt", format="e4e")


def test_errors(tmp_path):
    with pytest.raises(L.LatentFileError):
        L.read(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(L.LatentFileError):
        L.read(tmp_path / "other.npz")
    with pytest.raises(L.LatentFileError):
        L.Latents(w=np.zeros((2, 3, 4)), names=["only one"])
    with pytest.raises(L.LatentFileError):
        L.write(tmp_path / "x", _lat(), "stylegan9")


def test_concat_and_select():
    a, b = _lat(n=2), _lat(n=3)
    c = L.Latents.concat([a, b])
    assert len(c) == 5 and c.noise[0].shape[0] == 5 and c.losses["mse"].shape == (5,)
    s = c.select([4, 0])
    assert np.array_equal(s.w[0], b.w[2]) and s.names == [b.names[2], a.names[0]]
