"""``gankit edit`` on inversion results: HyperStyle weight offsets are applied, latents.npz files are read."""
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from conftest import need_shared


def _invoke(*args):
    from cli.main import main
    return CliRunner().invoke(main, [str(a) for a in args])


def _png(path):
    return np.asarray(Image.open(path)).astype(int)


@pytest.fixture(scope="module")
def hyperstyle_run(tmp_path_factory):
    """HyperStyle inversion (CLI) of the fixture's two inputs + a SeFa direction of its generator."""
    from generators.images import save_image
    d = need_shared("encoders", "hyperstyle")
    z = np.load(d / "hyperstyle_expected.npz")
    tmp = tmp_path_factory.mktemp("hyperstyle_edit")
    for i, a in enumerate(z["x_u8"]):
        save_image(a.transpose(1, 2, 0), tmp / "imgs" / f"im{i}.png")
    ckpt = d / "hyperstyle_checkpoint.pt"
    r = _invoke("invert", tmp / "imgs", "--method", "hyperstyle", "--encoder", ckpt, "--iters", 2,
                "--w-encoder", d / "w_encoder_checkpoint.pt", "--out", tmp / "inv")
    assert r.exit_code == 0, r.output
    r = _invoke("directions", "sefa", "-g", ckpt, "-k", 2, "-o", tmp / "sefa.npz")
    assert r.exit_code == 0, r.output
    return ckpt, z, tmp


def _edit(ckpt, tmp, out, *args):
    r = _invoke("edit", "-g", ckpt, "-d", tmp / "sefa.npz", "-i", 0, "--latents", tmp / "inv" / "latents.npz",
                "--video", "none", "-o", tmp / out, *args)
    assert r.exit_code == 0, r.output
    return [_png(tmp / out / f"strip{n:04d}.png") for n in range(2)]


def test_edit_at_zero_with_offsets_is_the_hyperstyle_reconstruction(hyperstyle_run):
    from generators.images import to_uint8
    ckpt, z, tmp = hyperstyle_run
    strips = _edit(ckpt, tmp, "e", "--strength", "-2,0,2")
    ref = to_uint8(torch.from_numpy(z["images"][-1]))          # the reference HyperStyle output (iteration 2)
    R = ref.shape[1]
    for n, strip in enumerate(strips):
        assert strip.shape == (R, 3 * R, 3)
        mid = strip[:, R:2 * R]
        assert np.abs(mid - ref[n].astype(int)).max() <= 1
        assert np.abs(mid - _png(tmp / "inv" / f"im{n}.png")).max() <= 1
        assert np.abs(strip[:, :R] - mid).mean() > 1 and np.abs(strip[:, 2 * R:] - mid).mean() > 1   # edits change it


def test_edit_without_offsets_is_plain_synthesis(hyperstyle_run):
    import generators
    from editing import apply as apply_edit
    from editing import directions as D
    from generators.images import to_uint8
    from inversion import latents as L
    ckpt, z, tmp = hyperstyle_run
    strips = _edit(ckpt, tmp, "plain", "--strength", "0,1", "--no-offsets")
    G = generators.load(ckpt)
    ws = L.load(tmp / "inv" / "latents.npz").torch()
    vec = D.read(tmp / "sefa.npz").vector(0)
    with torch.no_grad():
        frames = [to_uint8(G.synthesis(apply_edit(ws, vec, s, None), noise_mode="const")) for s in (0.0, 1.0)]
    R = G.img_resolution
    for n, strip in enumerate(strips):
        for t in range(2):
            assert np.abs(strip[:, t * R:(t + 1) * R] - frames[t][n].astype(int)).max() <= 1
        # the offsets matter: the plain rendering is far from the reconstruction
        assert np.abs(strip[:, :R] - _png(tmp / "inv" / f"im{n}.png")).mean() > 5


def test_edit_offsets_options_and_errors(hyperstyle_run, tmp_path):
    import shutil
    ckpt, z, tmp = hyperstyle_run
    # one offsets file for every latent: image 1's detail on both
    strips = _edit(ckpt, tmp, "one", "--strength", "0", "--offsets", tmp / "inv" / "offsets" / "im1.safetensors")
    assert np.abs(strips[1] - _png(tmp / "inv" / "im1.png")).max() <= 1
    assert np.abs(strips[0] - _png(tmp / "inv" / "im0.png")).mean() > 1
    # a HyperStyle latent file whose offsets folder is gone: one line, naming the way out
    shutil.copytree(tmp / "inv", tmp_path / "inv")
    shutil.rmtree(tmp_path / "inv" / "offsets")
    base = ["edit", "-g", ckpt, "-d", tmp / "sefa.npz", "--strength", "0", "--video", "none", "-o", tmp_path / "x"]
    r = _invoke(*base, "--latents", tmp_path / "inv" / "latents.npz")
    lines = r.output.strip().splitlines()
    assert r.exit_code == 1 and len(lines) == 1 and "offsets" in lines[0] and "--no-offsets" in lines[0]
    (tmp_path / "inv" / "offsets").mkdir()
    shutil.copy(tmp / "inv" / "offsets" / "im0.safetensors", tmp_path / "inv" / "offsets")
    r = _invoke(*base, "--latents", tmp_path / "inv" / "latents.npz")
    assert r.exit_code == 1 and "no offsets for im1" in r.output
    r = _invoke(*base, "--latents", tmp / "inv" / "latents.npz", "--offsets", tmp / "inv" / "offsets", "--no-offsets")
    assert r.exit_code == 1 and "not both" in r.output
    r = _invoke(*base, "--offsets", tmp / "inv" / "offsets")
    assert r.exit_code == 1 and "--offsets needs --latents" in r.output
    r = _invoke(*base, "--latents", tmp / "inv" / "latents.npz", "--offsets", tmp / "sefa.npz")
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1 and "gankit: error:" in r.output


def test_edit_reads_encoder_latents_npz(tmp_path):
    """A gankit latents.npz ([N, num_ws, w_dim] 'w') of a non-hypernetwork method: strength 0 = reconstruction."""
    from generators.images import save_image
    d = need_shared("encoders", "psp")
    z = np.load(d / "psp_expected.npz")
    ckpt = d / "psp_checkpoint.pt"
    for i, a in enumerate(z["x_u8"]):
        save_image(a.transpose(1, 2, 0), tmp_path / "imgs" / f"im{i}.png")
    assert _invoke("invert", tmp_path / "imgs", "--method", "psp", "--encoder", ckpt, "--out", tmp_path / "inv").exit_code == 0
    assert _invoke("directions", "sefa", "-g", ckpt, "-k", 1, "-o", tmp_path / "sefa.npz").exit_code == 0
    r = _invoke("edit", "-g", ckpt, "-d", tmp_path / "sefa.npz", "--latents", tmp_path / "inv" / "latents.npz",
                "--strength", "0", "--video", "none", "-o", tmp_path / "e")
    assert r.exit_code == 0, r.output
    for n in range(2):
        assert np.abs(_png(tmp_path / "e" / f"strip{n:04d}.png") - _png(tmp_path / "inv" / f"im{n}.png")).max() <= 1
