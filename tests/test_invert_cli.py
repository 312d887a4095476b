"""``gankit invert`` and ``gankit generate --latents``: outputs, resuming, PTI export, one-line errors."""
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from conftest import need_shared


@pytest.fixture()
def setup(tmp_path):
    import generators
    from generators.images import save_image, to_uint8
    gpath = need_shared("nvidia", "sg2ada_min_16.pkl")
    G = generators.load(gpath)
    z = torch.from_numpy(np.random.RandomState(0).randn(3, G.z_dim)).float()
    with torch.no_grad():
        img = G(z, None)
    d = tmp_path / "imgs"
    for i, a in enumerate(to_uint8(img)):
        save_image(a, d / f"im{i}.png")
    return str(gpath), d, tmp_path


def _invoke(*args):
    from cli.main import main
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_invert_writes_latents_and_resumes(setup):
    from inversion import latents as L
    gpath, imgs, tmp = setup
    out = tmp / "out"
    common = ["-g", gpath, "--loss", "mse", "--steps", "25", "--batch", "2", "--w-avg-samples", "500", "--out", out]
    r = _invoke("invert", imgs / "im0.png", "--video", *common)
    assert r.exit_code == 0, r.output
    assert (out / "im0.png").is_file() and (out / "im0_progress.gif").is_file()
    r = _invoke("invert", imgs, *common)
    assert r.exit_code == 0, r.output
    assert "resuming: 1 done, 2 to go" in r.output
    lat = L.load(out / "latents.npz")
    assert lat.names == ["im0", "im1", "im2"] and lat.w.shape == (3, 6, 16) and lat.space == "w+"
    assert lat.method == "projection" and lat.resolution == 16 and len(lat.generator_sha256) == 64
    assert set(lat.losses) >= {"mse", "psnr", "total"} and lat.noise is not None
    r = _invoke("invert", imgs, *common)
    assert r.exit_code == 0 and "already inverted" in r.output
    # rendering the file reproduces the reconstructions (the optimized noise is in the file)
    r = _invoke("generate", "-g", gpath, "--latents", out / "latents.npz", "--out", tmp / "render")
    assert r.exit_code == 0, r.output
    for n in lat.names:
        a = np.asarray(Image.open(out / f"{n}.png"))
        b = np.asarray(Image.open(tmp / "render" / f"{n}.png"))
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_batching_does_not_change_results(setup):
    from inversion import latents as L
    gpath, imgs, tmp = setup
    common = ["-g", gpath, "--loss", "mse", "--steps", "15", "--w-avg-samples", "300"]
    assert _invoke("invert", imgs, *common, "--batch", "3", "--out", tmp / "a").exit_code == 0
    assert _invoke("invert", imgs, *common, "--batch", "1", "--out", tmp / "b").exit_code == 0
    a, b = L.load(tmp / "a" / "latents.npz"), L.load(tmp / "b" / "latents.npz")
    assert np.abs(a.w - b.w).max() <= 1e-4


def test_invert_pti_exports_generators(setup):
    import generators
    from inversion import latents as L
    from inversion.pivotal_tuning import apply_deltas
    gpath, imgs, tmp = setup
    out = tmp / "pti"
    r = _invoke("invert", imgs, "-g", gpath, "--method", "pti", "--loss", "mse", "--steps", "10", "--pti-steps", "5",
                "--batch", "2", "--w-avg-samples", "300", "--deltas", "--out", out)
    assert r.exit_code == 0, r.output
    index = json.loads((out / "generators" / "index.json").read_text())
    assert set(index) == {"im0", "im1", "im2"} and len(set(index.values())) == 2
    lat = L.load(out / "latents.npz")
    assert lat.method == "pti" and "pivot_mse" in lat.losses
    G = generators.load(gpath)
    G2 = apply_deltas(G, out / "generators" / index["im2"])
    with torch.no_grad():
        img = G2.synthesis(lat.torch()[2:], noise_mode="const")
    from generators.images import to_uint8
    ref = np.asarray(Image.open(out / "im2.png"))
    assert np.abs(to_uint8(img)[0].astype(int) - ref.astype(int)).max() <= 1


def test_one_line_errors(setup, monkeypatch):
    gpath, imgs, tmp = setup
    monkeypatch.setenv("TORCH_HOME", str(tmp / "empty_cache"))
    monkeypatch.delenv("GANKIT_ARCFACE", raising=False)
    from cli.main import main
    for loss, needle in (("lpips", "vgg16-397923af.pth"), ("lpips-alex", "alexnet-owt"), ("arcface", "model_ir_se50")):
        r = CliRunner().invoke(main, ["invert", str(imgs), "-g", gpath, "--loss", loss, "--out", str(tmp / "x")])
        assert r.exit_code == 1
        lines = r.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("gankit: error:") and needle in lines[0]
        assert "--loss mse" in lines[0] and "face-features" in lines[0] and "id-dlib" in lines[0]
    r = CliRunner().invoke(main, ["invert", str(imgs), "-g", gpath, "--loss", "nope", "--out", str(tmp / "x")])
    assert r.exit_code == 1 and "unknown loss 'nope'" in r.output
    r = CliRunner().invoke(main, ["invert", str(tmp / "missing.png"), "-g", gpath, "--out", str(tmp / "x")])
    assert r.exit_code == 1 and "no such file" in r.output
    r = CliRunner().invoke(main, ["generate", "-g", gpath, "--latents", str(tmp / "missing.npz"), "--out", str(tmp / "y")])
    assert r.exit_code == 1 and r.output.startswith("gankit: error:")


# ------------------------------------------------------------------------------------------ encoder methods
# The shared encoder fixtures (../shared/fixtures/encoders): reference codes and images computed by the
# pSp / e4e / ReStyle / HyperStyle code itself for the inputs x_u8 (written here as PNG files).

ENC = {"psp": ("psp", "psp_checkpoint.pt", "psp_expected.npz"),
       "e4e": ("e4e", "e4e_checkpoint.pt", "e4e_expected.npz"),
       "restyle": ("restyle_psp", "restyle_psp_checkpoint.pt", "restyle_psp_expected.npz"),
       "hyperstyle": ("hyperstyle", "hyperstyle_checkpoint.pt", "hyperstyle_expected.npz")}


def _encoder_case(method, tmp_path):
    """(checkpoint, expected arrays, image folder, extra CLI args) for ``method``."""
    from generators.images import save_image
    folder, ckpt, exp = ENC[method]
    d = need_shared("encoders", folder)
    z = dict(np.load(d / exp))
    imgs = tmp_path / "imgs"
    for i, a in enumerate(z["x_u8"]):
        save_image(a.transpose(1, 2, 0), imgs / f"im{i}.png")
    extra = {"restyle": ["--iters", 3], "hyperstyle": ["--iters", 2, "--w-encoder", d / "w_encoder_checkpoint.pt"]}
    return d / ckpt, z, imgs, extra.get(method, [])


def _expected(method, z):
    """Final codes [N, num_ws, w_dim] and images [N, 3, R, R] of the reference run."""
    if method == "restyle":
        return z["codes"][-1], z["images"][-1]
    if method == "hyperstyle":
        return z["w_codes"], z["images"][-1]
    return z["codes"], z["images"]


def _png(path):
    return np.asarray(Image.open(path)).astype(int)


@pytest.mark.parametrize("method", ["psp", "e4e", "restyle", "hyperstyle"])
def test_invert_encoder_matches_reference(method, tmp_path):
    import generators
    from conftest import assert_close
    from editing.directions import generator_sha256
    from generators.images import to_uint8
    from inversion import latents as L
    ckpt, z, imgs, extra = _encoder_case(method, tmp_path)
    out = tmp_path / "out"
    r = _invoke("invert", imgs, "--method", method, "--encoder", ckpt, *extra, "--batch", 1, "--out", out)
    assert r.exit_code == 0, r.output
    codes, images = _expected(method, z)
    lat = L.load(out / "latents.npz")
    assert lat.names == ["im0", "im1"] and lat.method == method and lat.resolution == images.shape[-1]
    assert_close(lat.w, codes, 1e-4, "codes")
    assert lat.generator_sha256 == generator_sha256(generators.load(ckpt))   # the embedded decoder
    assert lat.space == ("w" if method == "hyperstyle" else "w+") and lat.losses["mse"].shape == (2,)
    for i, ref in enumerate(to_uint8(torch.from_numpy(images))):
        assert np.abs(_png(out / f"im{i}.png") - ref.astype(int)).max() <= 1
    assert (out / "offsets").is_dir() == (method == "hyperstyle")


def test_invert_hyperstyle_offsets_resume_and_render(tmp_path):
    """The offsets sidecar holds the reference's summed per-iteration deltas; resuming; generate applies them."""
    import generators
    from conftest import assert_close
    from encoders.hyperstyle import weight_layers
    from inversion import latents as L
    from inversion import offsets as O
    ckpt, z, imgs, extra = _encoder_case("hyperstyle", tmp_path)
    out = tmp_path / "out"
    r = _invoke("invert", imgs / "im1.png", "--method", "hyperstyle", "--encoder", ckpt, *extra, "--out", out)
    assert r.exit_code == 0, r.output
    r = _invoke("invert", imgs, "--method", "hyperstyle", "--encoder", ckpt, *extra, "--out", out)
    assert r.exit_code == 0 and "resuming: 1 done, 1 to go" in r.output, r.output
    r = _invoke("invert", imgs, "--method", "hyperstyle", "--encoder", ckpt, *extra, "--out", out)
    assert r.exit_code == 0 and "already inverted" in r.output
    lat = L.load(out / "latents.npz")
    assert lat.names == ["im1", "im0"]
    assert_close(lat.w, z["w_codes"][[1, 0]], 1e-4, "codes")
    names = [n for n, _ in weight_layers(generators.load(ckpt))]
    for i, stem in enumerate(["im0", "im1"]):
        offs = O.load(out / "offsets" / f"{stem}.safetensors")
        tuned = {}
        for k in z:                                         # delta_it{t}_L{j}_{reference layer name}: [N, O, I, k, k]
            if k.startswith("delta_it"):
                j = int(k.split("_")[2][1:])
                tuned[names[j]] = tuned.get(names[j], 0) + z[k][i]
        assert set(offs) == set(tuned)
        for k, ref in tuned.items():
            assert_close(offs[k], ref, 1e-4, k)
    # a channel-wise (RefinementBlock) 3x3 offset is stored once per channel pair and expanded on reading
    from safetensors import safe_open
    with safe_open(str(out / "offsets" / "im0.safetensors"), framework="pt") as f:
        assert f.get_slice("synthesis.b128.conv0.weight").get_shape() == [8, 16, 1, 1]
    r = _invoke("generate", "-g", ckpt, "--latents", out / "latents.npz", "--out", tmp_path / "render")
    assert r.exit_code == 0, r.output
    for stem in ("im0", "im1"):
        assert np.abs(_png(out / f"{stem}.png") - _png(tmp_path / "render" / f"{stem}.png")).max() <= 1


def test_invert_encoder_with_another_generator(tmp_path):
    """--generator renders the encoder's codes with another compatible generator (and names it in the file)."""
    import generators
    from conftest import assert_close
    from editing.directions import generator_sha256
    from generators.images import to_uint8
    from inversion import latents as L
    ckpt, z, imgs, _ = _encoder_case("psp", tmp_path)
    G2 = generators.load(ckpt)
    with torch.no_grad():
        for p in G2.synthesis.parameters():
            p.mul_(1.1)                                     # a "fine-tuned" decoder of the same architecture
    generators.save(G2, tmp_path / "g2.safetensors")
    G2 = generators.load(tmp_path / "g2.safetensors")
    out = tmp_path / "out"
    r = _invoke("invert", imgs, "--method", "psp", "--encoder", ckpt, "-g", tmp_path / "g2.safetensors", "--out", out)
    assert r.exit_code == 0, r.output
    lat = L.load(out / "latents.npz")
    assert_close(lat.w, z["codes"], 1e-4, "codes")
    assert lat.generator_sha256 == generator_sha256(G2)
    with torch.no_grad():
        ref = to_uint8(G2.synthesis(torch.from_numpy(z["codes"]), noise_mode="const"))
    assert np.abs(_png(out / "im0.png") - ref[0].astype(int)).max() <= 1
    # the same folder with the embedded decoder: another generator, refused
    from cli.main import main
    r = CliRunner().invoke(main, ["invert", str(imgs), "--method", "psp", "--encoder", str(ckpt), "--out", str(out)])
    assert r.exit_code == 1 and "another generator" in r.output


def test_invert_encoder_align(tmp_path):
    """--align: the pSp-preset FFHQ alignment (256 px) before the encoder."""
    import encoders
    from conftest import assert_close
    from inversion import latents as L
    from inversion.faces import align_face
    photo = need_shared("faces", "aligned_inputs", "hyperstyle_pitt_256.jpg")
    ckpt = need_shared("encoders", "e4e", "e4e_checkpoint.pt")
    out = tmp_path / "out"
    r = _invoke("invert", photo, "--method", "e4e", "--encoder", ckpt, "--align", "--out", out)
    assert r.exit_code == 0, r.output
    img, _ = align_face(photo, 256, "psp")
    x = torch.from_numpy(np.asarray(img.convert("RGB")).transpose(2, 0, 1).copy())[None]
    with torch.no_grad():
        ref = encoders.load(ckpt).invert(x)["ws"]
    assert_close(L.load(out / "latents.npz").w, ref, 1e-4, "aligned codes")


def test_invert_encoder_one_line_errors(tmp_path):
    from cli.main import main
    d = need_shared("encoders")
    psp = d / "psp" / "psp_checkpoint.pt"
    hyp = d / "hyperstyle" / "hyperstyle_checkpoint.pt"
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(img)
    (tmp_path / "junk.png").write_text("not an image")
    o = ["--out", str(tmp_path / "o")]
    cases = [
        (["--method", "psp"], "needs --encoder"),
        (["--method", "e4e", "--encoder", psp], "is a psp checkpoint, not e4e (use --method psp)"),
        (["--method", "projection"], "needs --generator"),
        (["--method", "projection", "-g", psp, "--encoder", psp], "--encoder is only for the encoder methods"),
        (["--method", "psp", "--encoder", psp, "--steps", "5", "--loss", "mse"], "--steps, --loss do not apply"),
        (["--method", "psp", "--encoder", psp, "--iters", "3"], "single-pass"),
        (["--method", "psp", "--encoder", psp, "--w-encoder", psp], "--w-encoder is for --method hyperstyle"),
        (["--method", "psp", "--encoder", tmp_path / "nope.pt"], "no such file or encoder registry name"),
        (["--method", "psp", "--encoder", d / "ir_se50" / "model_ir_se50.pth"], "not an inversion encoder"),
        (["--method", "hyperstyle", "--encoder", hyp], "--w-encoder"),
        (["--method", "hyperstyle", "--encoder", hyp, "--w-encoder", d / "hyperstyle" / "w_encoder_checkpoint.pt",
          "-g", psp], "the encoder makes [12, 16]"),
    ]
    for args, needle in cases:
        r = CliRunner().invoke(main, ["invert", str(img)] + [str(a) for a in args] + o)
        lines = r.output.strip().splitlines()
        assert r.exit_code == 1 and len(lines) == 1 and lines[0].startswith("gankit: error:"), (args, r.output)
        assert needle in lines[0], (needle, lines[0])
    r = CliRunner().invoke(main, ["invert", str(tmp_path / "junk.png"), "--method", "psp", "--encoder", str(psp)] + o)
    assert r.exit_code == 1 and "cannot read image" in r.output and len(r.output.strip().splitlines()) == 1
