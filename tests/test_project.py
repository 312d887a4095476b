"""Projection (inversion.project) and its losses: recovery of known latents on the NVIDIA fixtures,
batch independence, determinism, NVIDIA's schedule/regulariser, LPIPS/ArcFace loading offline."""

import numpy as np
import pytest
import torch

from conftest import FIXTURES, assert_close, need_shared


def _load(name):
    import generators
    return generators.load(need_shared("nvidia", f"{name}.pkl"))


def _targets(G, n, seed=0, psi=1.0):
    z = torch.from_numpy(np.random.RandomState(seed).randn(n, G.z_dim)).float()
    with torch.no_grad():
        ws = G.mapping(z, None, truncation_psi=psi)
        img = G.synthesis(ws, noise_mode="const")
    return ws, img


def test_wplus_mse_reaches_30db():
    from inversion import project
    G = _load("sg2ada_min_16")
    _, img = _targets(G, 4)
    # the targets use the generator's own constant noise, so the noise inputs are kept (not re-optimized)
    res = project(G, img, space="w+", steps=300, loss="mse", optimize_noise=False, seed=0, progress=False)
    assert res.ws.shape == (4, G.num_ws, G.w_dim) and res.images.shape == img.shape
    ref_psnr = 10 * np.log10(4.0 / ((res.images - img) ** 2).flatten(1).mean(1).numpy())
    assert_close(res.losses["psnr"], ref_psnr, 1e-3, "psnr")
    assert (ref_psnr >= 30).all(), ref_psnr
    assert res.history["total"].shape == (300, 4)
    assert res.history["total"][-1].mean() < res.history["total"][0].mean()


@pytest.mark.parametrize("name", ["sg2ada_skip_32", "sg2_tf_32"])
def test_wplus_with_w_warmup_reaches_30db_on_32px_fixtures(name):
    # plain W+ from w_avg stalls at 15-34 dB on these random-weight nets; starting in W for half the steps
    # reaches every image
    from inversion import project
    G = _load(name)
    _, img = _targets(G, 4)
    res = project(G, img, space="w+", steps=300, loss="mse", optimize_noise=False, seed=0, progress=False,
                  w_warmup=0.5)
    assert res.history["total"].shape == (300, 4)
    assert not torch.equal(res.ws, res.ws[:, :1].expand_as(res.ws))      # the second half is W+
    ref_psnr = 10 * np.log10(4.0 / ((res.images - img) ** 2).flatten(1).mean(1).numpy())
    assert (ref_psnr >= 30).all(), ref_psnr


def test_w_projection_recovers_w():
    from inversion import project
    from inversion.projection import w_stats
    G = _load("sg2ada_min_16")
    ws, img = _targets(G, 3, seed=5)
    w_avg, w_std = w_stats(G)
    res = project(G, img, space="w", steps=300, loss="mse", optimize_noise=False, seed=1, progress=False,
                  stats=(w_avg, w_std))
    err = (res.ws[:, 0] - ws[:, 0]).norm(dim=1)
    start = (w_avg[None] - ws[:, 0]).norm(dim=1)
    assert (err < w_std).all() and (err < start).all(), (err, w_std, start)
    assert torch.equal(res.ws, res.ws[:, :1].expand_as(res.ws))     # W: one vector repeated


@pytest.mark.parametrize("space", ["w+", "z"])
def test_batch_equals_single_runs(space):
    """8 images in one optimization == 8 separate runs with the same per-image seeds (noise optimized,
    w jitter on: every NVIDIA ingredient active)."""
    from inversion import project
    from inversion.projection import w_stats
    G = _load("sg2ada_min_16")
    _, img = _targets(G, 8, seed=3)
    stats = w_stats(G)
    batch = project(G, img, space=space, steps=100, loss="mse", seed=10, stats=stats, progress=False)
    for i in range(8):
        one = project(G, img[i:i + 1], space=space, steps=100, loss="mse", seed=10 + i, stats=stats, progress=False)
        assert (one.ws - batch.ws[i:i + 1]).abs().max() <= 1e-3
        for a, b in zip(one.noise, batch.noise):
            assert (a - b[i:i + 1]).abs().max() <= 1e-3


def test_seed_determinism_and_noise_results():
    from inversion import project
    G = _load("sg2ada_skip_32")
    _, img = _targets(G, 2, seed=7)
    a = project(G, img, space="w", steps=12, loss="mse", seed=4, w_avg_samples=500, progress=False)
    b = project(G, img, space="w", steps=12, loss="mse", seed=4, w_avg_samples=500, progress=False)
    assert torch.equal(a.ws, b.ws)
    # noise maps: one per noise input, per image, renormalised to zero mean / unit variance
    assert len(a.noise) == len(G.synthesis.noise_shapes())
    for n, (_, _, r) in zip(a.noise, G.synthesis.noise_shapes()):
        assert n.shape == (2, 1, r, r)
        assert_close(n.mean(dim=(1, 2, 3)), np.zeros(2), 1e-5, "noise mean")
        assert_close(n.square().mean(dim=(1, 2, 3)), np.ones(2), 1e-4, "noise var")
    # the returned images are the ones the optimized noise gives (not the generator's const noise)
    with torch.no_grad():
        again = G.synthesis(a.ws, noise_mode="const", noise=a.noise)
    assert_close(a.images, again.numpy(), 1e-5, "images")
    assert not torch.allclose(again, G.synthesis(a.ws, noise_mode="const"))


def test_stylegan3_has_no_noise():
    from inversion import project
    G = _load("sg3_t_32")
    _, img = _targets(G, 1)
    res = project(G, img, space="w+", steps=3, loss="mse", seed=0, w_avg_samples=200, progress=False)
    assert res.noise is None and res.ws.shape == (1, G.num_ws, G.w_dim)


def test_init_and_bad_arguments():
    from inversion import project
    from inversion.projection import ProjectionError
    G = _load("sg2ada_min_16")
    ws, img = _targets(G, 2)
    # starting at the answer with no jitter and lr 0: nothing moves
    res = project(G, img, space="w+", steps=2, loss="mse", init=ws, lr=0.0, noise_factor=0, optimize_noise=False,
                  w_avg_samples=100, progress=False)
    assert_close(res.ws, ws.numpy(), 1e-6, "init")
    with pytest.raises(ProjectionError):
        project(G, img, space="s", steps=2)
    with pytest.raises(ProjectionError):
        project(G, img[:, :, :8], steps=2, loss="mse")
    with pytest.raises(ProjectionError):
        project(G, img, steps=2, loss="mse", init=torch.zeros(2, 5))
    with pytest.raises(ProjectionError):
        project(G, img, steps=2, loss="mse", seed=[1, 2, 3])


def test_schedule_and_regulariser_values():
    from inversion.projection import lr_schedule, noise_regularization
    assert lr_schedule(0.0, 0.1) == 0.0
    assert lr_schedule(0.025, 0.1) == pytest.approx(0.05)              # half-way through the warm-up
    assert lr_schedule(0.5, 0.1) == pytest.approx(0.1)
    assert lr_schedule(0.875, 0.1) == pytest.approx(0.05)              # half-way down the cosine
    # a constant unit map has autocorrelation 1 in x and y at every scale: 16 and 8 -> 4
    reg = noise_regularization([torch.ones(3, 1, 16, 16)])
    assert_close(reg, np.full(3, 4.0), 1e-6, "reg")
    # a checkerboard: autocorrelation -1 at 16 px, 0 after 2x2 pooling
    cb = (torch.arange(16)[:, None] + torch.arange(16)[None]) % 2 * 2.0 - 1
    assert_close(noise_regularization([cb[None, None]]), np.array([2.0]), 1e-6, "checkerboard")


# ---------------------------------------------------------------------------------------------- losses


def test_loss_spec_parsing():
    from inversion.losses import LossSpecError, parse_loss
    assert parse_loss("lpips") == {"lpips": 1.0}
    assert parse_loss("lpips,mse=0.1") == {"lpips": 1.0, "mse": 0.1}
    assert parse_loss("mse+id-dlib=0.5") == {"mse": 1.0, "id-dlib": 0.5}
    for bad in ("foo", "mse=x", "mse=0", ""):
        with pytest.raises(LossSpecError):
            parse_loss(bad)


@pytest.mark.parametrize("name,net", [("lpips", "vgg"), ("lpips-alex", "alex"), ("arcface", None)])
def test_missing_weights_one_line_error(monkeypatch, tmp_path, name, net):
    from inversion.losses import MissingWeightsError, ReconstructionLoss
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))       # an empty torch cache: nothing may be downloaded
    monkeypatch.delenv("GANKIT_ARCFACE", raising=False)
    with pytest.raises(MissingWeightsError) as e:
        ReconstructionLoss(f"mse,{name}")
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path) in msg
    assert ("vgg16-397923af.pth" if net == "vgg" else "alexnet-owt-7be5be79.pth" if net else "model_ir_se50.pth") in msg
    assert "--loss mse" in msg and "face-features" in msg and "id-dlib" in msg
    assert not any(tmp_path.rglob("*.pth"))


def _lpips_reference(x, y, feats, lins):
    """LPIPS by its definition: scale, features at the ReLU taps, unit-normalise channels, weighted
    squared difference, spatial mean, sum over layers."""
    shift = torch.tensor([-.030, -.088, -.188]).view(1, 3, 1, 1)
    scale = torch.tensor([.458, .448, .450]).view(1, 3, 1, 1)
    taps = [3, 8, 15, 22, 29]
    fx, fy = (x - shift) / scale, (y - shift) / scale
    total = 0
    k = 0
    for i, layer in enumerate(feats[:30]):
        fx, fy = layer(fx), layer(fy)
        if i in taps:
            a = fx / (fx.square().sum(1, keepdim=True).sqrt() + 1e-10)
            b = fy / (fy.square().sum(1, keepdim=True).sqrt() + 1e-10)
            d = (a - b).square()
            w = lins[f"lin{k}.model.1.weight"]
            total = total + torch.nn.functional.conv2d(d, w).mean(dim=(1, 2, 3))
            k += 1
    return total


def test_lpips_from_cache_matches_definition(monkeypatch, tmp_path):
    """A (random) backbone file placed in the torch cache is used as is; values match LPIPS's formula."""
    import lpips as lpips_pkg
    import torchvision
    from pathlib import Path
    from inversion.losses import LPIPS, lpips_backbone_path
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(0)
    vgg = torchvision.models.vgg16(weights=None)
    path = lpips_backbone_path("vgg")
    path.parent.mkdir(parents=True)
    torch.save(vgg.state_dict(), path)
    loss = LPIPS("vgg")
    lins = torch.load(Path(lpips_pkg.__file__).parent / "weights/v0.1/vgg.pth", map_location="cpu", weights_only=True)
    x, y = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        ours = loss.per_image(x, y)
        ref = _lpips_reference(x, y, vgg.features.eval(), lins)
    assert_close(ours, ref.numpy(), 1e-4, "lpips")
    assert loss.per_image(x, x).abs().max() < 1e-6
    # small images are upsampled to 64 px, large ones area-downsampled to 256 px
    assert loss.per_image(x[:, :, :16, :16], y[:, :, :16, :16]).shape == (2,)


def test_arcface_matches_psp_fixture():
    from inversion import arcface
    path = need_shared("encoders", "ir_se50", "model_ir_se50.pth")
    d = np.load(FIXTURES / "encoders" / "ir_se50" / "id_loss.npz")
    net = arcface.load(path)
    a = torch.from_numpy(d["images_a_u8"]).float() / 255 * 2 - 1
    b = torch.from_numpy(d["images_b_u8"]).float() / 255 * 2 - 1
    with torch.no_grad():
        fa = arcface.face_input(a)
        assert_close(fa, d["face_input_a"], 1e-5, "face input")
        assert_close(net.embed_raw(fa), d["embedding_raw_a"], 1e-4, "raw embedding")
        assert_close(net(fa), d["embedding_a"], 1e-5, "embedding")
        loss = arcface.ArcFaceIDLoss(net)
        assert_close(loss.per_image(a, b), 1 - d["cosine"], 1e-5, "per image")
        assert float(loss(a, b)) == pytest.approx(float(d["id_loss"]), abs=1e-5)


def test_projection_with_arcface_term_runs(monkeypatch):
    """A loss term on top of MSE: the ArcFace fixture through GANKIT_ARCFACE (no download)."""
    from inversion import project
    monkeypatch.setenv("GANKIT_ARCFACE", str(need_shared("encoders", "ir_se50", "model_ir_se50.pth")))
    G = _load("sg2ada_min_16")
    _, img = _targets(G, 2)
    res = project(G, img, space="w+", steps=3, loss="mse,arcface=0.1", w_avg_samples=100, progress=False)
    assert set(res.losses) >= {"mse", "arcface", "total", "psnr"}
    assert res.history["arcface"].shape == (3, 2)
    assert np.allclose(res.losses["total"], res.losses["mse"] + 0.1 * res.losses["arcface"], atol=1e-6)
