"""Quality metrics: Fréchet distance and KID against analytic values, dlib detection, Inception loading, CLI."""
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import need_shared
from inversion import quality as Q
from inversion.metrics import frechet_distance, kernel_inception_distance, polynomial_mmd2


# ---------------------------------------------------------------------------------------------
# Fréchet distance and KID

def test_frechet_analytic():
    d = 6
    # exact Gaussians: N(0, a^2 I) vs N(m, b^2 I) -> |m|^2 + d (a - b)^2
    m = np.arange(d, dtype=np.float64)
    fd = frechet_distance((np.zeros(d), 4.0 * np.eye(d)), (m, 9.0 * np.eye(d)))
    assert fd == pytest.approx(m @ m + d * (2 - 3) ** 2, rel=1e-10)
    # a non-diagonal pair with the same covariance: only the means count
    rng = np.random.RandomState(0)
    a = rng.randn(d, d)
    c = a @ a.T + np.eye(d)
    assert frechet_distance((np.zeros(d), c), (m, c)) == pytest.approx(m @ m, rel=1e-8)
    # samples: the same set -> 0; a shifted copy -> exactly the squared shift
    x = rng.randn(500, d)
    assert abs(frechet_distance(x, x)) < 1e-8
    assert frechet_distance(x, x + 0.5) == pytest.approx(d * 0.25, rel=1e-8)


def _mmd2_loops(x, y, degree, gamma, coef):
    """The unbiased MMD^2 U-statistic written out term by term (independent of the matrix version)."""
    k = lambda a, b: (gamma * float(np.dot(a, b)) + coef) ** degree
    n, m = len(x), len(y)
    sxx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    syy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    sxy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return sxx + syy - 2 * sxy


def test_polynomial_mmd2_matches_the_u_statistic():
    rng = np.random.RandomState(1)
    x, y = rng.randn(12, 5), rng.randn(9, 5) + 0.3
    for degree, gamma, coef in ((3, None, 1.0), (2, 0.5, 0.0), (1, 1.0, 1.0)):
        ref = _mmd2_loops(x, y, degree, 1 / 5 if gamma is None else gamma, coef)
        assert polynomial_mmd2(x, y, degree, gamma, coef) == pytest.approx(ref, rel=1e-10, abs=1e-12)


def test_kid_known_values():
    rng = np.random.RandomState(2)
    d, n = 8, 2000
    shift = np.full(d, 0.5)                  # |shift|^2 = 2
    x, y, x2 = rng.randn(n, d), rng.randn(n, d) + shift, rng.randn(n, d)
    # linear kernel (degree 1): E[MMD^2] = gamma |mu_x - mu_y|^2 exactly
    mean, _ = kernel_inception_distance(x, y, num_subsets=20, subset_size=1000, degree=1, gamma=1.0)
    assert mean == pytest.approx(2.0, abs=0.1)
    # KID's kernel: two samples of one distribution -> about 0 (unbiased: either sign), a shift -> clearly > 0
    same, same_std = kernel_inception_distance(x, x2, num_subsets=20, subset_size=500)
    shifted, _ = kernel_inception_distance(x, y, num_subsets=20, subset_size=500)
    assert abs(same) < 3 * same_std + 1e-3 and abs(same) < 0.02 * shifted
    # identical subsets drawn from one set: exactly the U-statistic of a set against itself
    assert kernel_inception_distance(x[:50], x[:50], num_subsets=1, subset_size=50)[0] == pytest.approx(
        polynomial_mmd2(x[:50], x[:50]), abs=1e-12)
    with pytest.raises(ValueError):
        polynomial_mmd2(x[:1], y)


# ---------------------------------------------------------------------------------------------
# dlib detection

def test_detection_on_faces_and_noise():
    hopper = np.asarray(Image.open(need_shared("faces", "aligned_inputs", "hopper.png")).convert("RGB"))
    big = np.asarray(Image.open(need_shared("faces", "raw", "obama_official_portrait.jpg")).convert("RGB"))
    # hopper is 128 px with a ~53 px face: only the upscaled frame lets the HOG detector (>= ~80 px) find it
    assert Q.detection_rate([hopper]) == 1.0
    assert Q.detection_rate([hopper], size=128) == 0.0
    assert Q.detection_rate([big]) == 1.0                     # large photos are scanned as they are
    # a torch batch in [-1, 1] works the same
    t = torch.tensor(hopper).permute(2, 0, 1)[None].float() / 127.5 - 1
    assert Q.detection_rate(t) == 1.0
    noise = np.random.RandomState(0).randint(0, 256, (3, 128, 128, 3)).astype(np.uint8)
    assert Q.detection_rate(noise) == 0.0
    scan = Q.face_scan([hopper, noise[0]], descriptors=True)
    assert scan.detected.tolist() == [True, False] and scan.descriptors.shape == (1, 128)
    assert scan.boxes[1].tolist() == [-1, -1, -1, -1]


# ---------------------------------------------------------------------------------------------
# Inception (FID / KID)

def test_missing_inception_weights_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(Q.InceptionWeightsError) as e:
        Q.load_inception()
    msg = str(e.value)
    assert "\n" not in msg and "pt_inception-2015-12-05-6726825d.pth" in msg
    assert "--metrics detection,fd-dlib" in msg and str(tmp_path) in msg


def test_inception_loading_and_the_fid_pooling(tmp_path, monkeypatch):
    """A random Inception-v3 state dict in the cache under pytorch-fid's name: loaded without any download,
    2048-d features; the same weights under torchvision's name differ only by the TF pooling."""
    from torchvision.models import inception as tv

    torch.manual_seed(0)
    net = tv.Inception3(num_classes=1008, aux_logits=False, init_weights=False)
    for m in net.modules():                   # BN running stats away from 0/1 so that pooling matters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    torch.save(net.state_dict(), ckpt / "pt_inception-2015-12-05-6726825d.pth")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    fid_net = Q.load_inception()
    assert fid_net.flavour == "fid" and fid_net.net.Mixed_7c.pool == "max" and fid_net.net.Mixed_5b.pool == "avg"
    os.symlink(ckpt / "pt_inception-2015-12-05-6726825d.pth", ckpt / "inception_v3_google-0cc3c7bd.pth")
    tv_net = Q.load_inception(str(ckpt / "inception_v3_google-0cc3c7bd.pth"))
    assert tv_net.flavour == "torchvision"
    imgs = np.random.RandomState(0).randint(0, 256, (2, 64, 64, 3)).astype(np.uint8)
    f_fid = Q.inception_features(imgs, fid_net)
    f_tv = Q.inception_features(imgs, tv_net)
    assert f_fid.shape == (2, 2048) and np.isfinite(f_fid).all()
    assert not np.allclose(f_fid, f_tv)
    # the torchvision flavour is exactly torchvision's network up to the pool
    net.eval()
    x = torch.nn.functional.interpolate(torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255, size=(299, 299),
                                        mode="bilinear", align_corners=False) * 2 - 1
    with torch.no_grad():
        net.fc = torch.nn.Identity()
        ref = net(x).double().numpy()
    np.testing.assert_allclose(f_tv, ref, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# gankit metrics

def _tiny_generator(path):
    import generators
    torch.manual_seed(0)
    G = generators.Generator(z_dim=4, w_dim=4, img_resolution=16, mapping_kwargs=dict(num_layers=1),
                             synthesis_kwargs=dict(channel_base=64, channel_max=8))
    generators.save(G, path)
    return path


def test_metrics_cli(tmp_path, monkeypatch):
    from click.testing import CliRunner
    from cli.main import main

    g = _tiny_generator(tmp_path / "g.safetensors")
    real = tmp_path / "real" / "sub"
    real.mkdir(parents=True)
    rng = np.random.RandomState(0)
    for i in range(4):
        Image.fromarray(rng.randint(0, 256, (24, 24, 3)).astype(np.uint8)).save(real / f"{i}.png")
    (tmp_path / "real" / "labels.csv").write_text("not an image\n")
    r = CliRunner()
    out = tmp_path / "m.json"
    res = r.invoke(main, ["metrics", "-g", str(g), "--real", str(tmp_path / "real"), "--num", "3",
                          "--metrics", "detection", "--batch", "2", "--json", str(out)])
    assert res.exit_code == 0, res.output
    d = json.loads(out.read_text())
    assert d["num"] == {"real": 3, "fake": 3}
    for k in ("real", "fake"):
        assert 0.0 <= d["detection"][k]["rate"] <= 1.0 and d["detection"][k]["total"] == 3
    assert "detection fake" in res.output and "real" in res.output
    # fd-dlib with no faces in noise: no value rather than a failure
    res = r.invoke(main, ["metrics", "-g", str(g), "--real", str(tmp_path / "real"), "--num", "2",
                          "--metrics", "fd-dlib", "--json", str(out)])
    assert res.exit_code == 0, res.output
    d = json.loads(out.read_text())
    assert d["fd_dlib"]["fake_vs_real"] is None and d["fd_dlib"]["faces"] == {"real": 0, "fake": 0}
    # real vs a disjoint sample of the same folder; too few left -> one-line error
    res = r.invoke(main, ["metrics", "--real", str(tmp_path / "real"), "--real2", str(tmp_path / "real"),
                          "--num", "3", "--metrics", "detection"])
    assert res.exit_code == 1 and res.output.strip().count("\n") == 0 and "second sample" in res.output
    # FID without cached weights, unknown metrics, no generator: one line each
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty"))
    for args, what in ((["-g", str(g), "--metrics", "fid"], "--metrics detection,fd-dlib"),
                       (["-g", str(g), "--metrics", "detection,is"], "unknown is"),
                       ([], "--generator")):
        res = r.invoke(main, ["metrics", "--real", str(tmp_path / "real"), "--num", "2"] + args)
        assert res.exit_code == 1 and res.output.strip().count("\n") == 0 and what in res.output, res.output
