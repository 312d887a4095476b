"""gankit blend / directions sefa / directions ganspace (in-process, small fixtures)."""
import numpy as np
import torch
from click.testing import CliRunner

import generators
from cli.main import main
from conftest import need_shared
from editing import directions as D
from editing import sefa


def test_blend_and_directions_cli(tmp_path):
    src = need_shared("nvidia", "sg2ada_min_16.pkl")
    r = CliRunner()
    res = r.invoke(main, ["blend", str(src), str(src), "--switch-res", "8", "--width", "1", "-o", str(tmp_path / "b.gk")])
    assert res.exit_code == 0, res.output
    B, G = generators.load(str(tmp_path / "b.gk")), generators.load(str(src))
    for (n, p), (_, q) in zip(B.named_parameters(), G.named_parameters()):
        torch.testing.assert_close(p, q)            # blending a model with itself is the model
    res = r.invoke(main, ["blend", str(src), str(src), "-o", str(tmp_path / "c.gk")])
    assert res.exit_code == 1 and "switch-res" in res.output
    res = r.invoke(main, ["directions", "sefa", "-g", str(src), "--layers", "coarse", "-k", "5", "-o", str(tmp_path / "s.npz")])
    assert res.exit_code == 0, res.output
    d = D.read(tmp_path / "s.npz")
    assert d.vectors.shape == (5, G.w_dim) and d.layers == [0, 1] and d.method == "sefa"
    assert d.generator_sha256 == D.generator_sha256(G)
    np.testing.assert_allclose(d.vectors, sefa.factorize(G, "coarse")[1][:5])
    res = r.invoke(main, ["directions", "ganspace", "-g", str(src), "-k", "4", "-n", "2000", "--stdev-samples", "300",
                          "-o", str(tmp_path / "g.npz"), "--ganspace-npz", str(tmp_path / "gs.npz")])
    assert res.exit_code == 0, res.output
    g = D.read(tmp_path / "g.npz")
    assert g.vectors.shape == (4, G.w_dim) and g.extra["scales"].shape == (4,)
    assert D.read(tmp_path / "gs.npz").method == "ganspace"


def test_edit_cli(tmp_path):
    from PIL import Image
    src = need_shared("nvidia", "sg2ada_min_16.pkl")
    r = CliRunner()
    assert r.invoke(main, ["directions", "sefa", "-g", str(src), "-k", "3", "-o", str(tmp_path / "s.npz")]).exit_code == 0
    res = r.invoke(main, ["edit", "-g", str(src), "-d", str(tmp_path / "s.npz"), "-i", "1", "--seeds", "0-1",
                          "--strength", "-2:2:5", "--layers", "0-2", "-o", str(tmp_path / "e")])
    assert res.exit_code == 0, res.output
    strip = np.asarray(Image.open(tmp_path / "e" / "strip0000.png"))
    assert strip.shape[:2] == (16, 16 * 5)
    assert (tmp_path / "e" / "grid.png").exists()
    gif = Image.open(tmp_path / "e" / "sweep.gif")
    assert gif.n_frames == 8                     # 5 forward + 3 back
    # the middle frame (strength 0) is the unedited image
    G = generators.load(str(src))
    z = torch.from_numpy(np.random.RandomState(0).randn(1, G.z_dim)).float()
    from generators import images
    with torch.no_grad():
        ref = images.to_uint8(G(z, None, noise_mode="const"))[0]
    np.testing.assert_array_equal(strip[:, 32:48], ref)
    np.savez(tmp_path / "l.npz", ws=G.mapping(z, None).detach().numpy())
    res = r.invoke(main, ["edit", "-g", str(src), "-d", str(tmp_path / "s.npz"), "-l", str(tmp_path / "l.npz"),
                          "--strength", "0,1", "-o", str(tmp_path / "f")])
    assert res.exit_code == 0, res.output
    res = r.invoke(main, ["edit", "-g", str(src), "-d", str(tmp_path / "s.npz"), "-i", "9", "-o", str(tmp_path / "g")])
    assert res.exit_code == 1 and "not in" in res.output


def test_directions_interfacegan_cli(tmp_path):
    src = need_shared("nvidia", "sg2ada_min_16.pkl")
    labels = need_shared("..", "datasets", "celeba", "labels.csv")
    res = CliRunner().invoke(main, ["directions", "interfacegan", "-g", str(src), "-a", "Smiling", "--labels", str(labels),
                                    "--max-images", "48", "--size", "16", "--epochs", "1", "-n", "200",
                                    "--ratio", "0.2", "-o", str(tmp_path / "smile.npz")])
    assert res.exit_code == 0, res.output
    d = D.read(tmp_path / "smile.npz")
    assert d.names == ["Smiling"] and d.vectors.shape == (1, generators.load(str(src)).w_dim)
    assert abs(np.linalg.norm(d.vectors) - 1) < 1e-5 and d.method == "interfacegan"


def test_mix_cli(tmp_path):
    from PIL import Image
    src = need_shared("nvidia", "sg2ada_min_16.pkl")
    res = CliRunner().invoke(main, ["mix", "-g", str(src), "--rows", "0-1", "--cols", "5-7", "--styles", "0-2",
                                    "-o", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert np.asarray(Image.open(tmp_path / "grid.png")).shape[:2] == (3 * 16 + 4 * 2, 4 * 16 + 5 * 2)
    # all styles from the column seed = the column seed's image
    res = CliRunner().invoke(main, ["mix", "-g", str(src), "--rows", "0", "--cols", "5", "--styles", "all",
                                    "-o", str(tmp_path / "all")])
    assert res.exit_code == 0, res.output
    G = generators.load(str(src))
    from generators import images
    z = torch.from_numpy(np.random.RandomState(5).randn(1, G.z_dim)).float()
    with torch.no_grad():
        ref = images.to_uint8(G(z, None, noise_mode="const"))[0]
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "all" / "0-5.png")), ref)
