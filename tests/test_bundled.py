"""The bundled face model: registry name, file limits, and the demo job that uses it."""
import json

import numpy as np
import pytest
import torch

import generators
from generators import registry


def test_bundled_model_resolves_and_generates():
    path = registry.resolve("gankit-faces")
    assert path.is_file() and path.parent == registry.BUNDLED_DIR
    assert path.stat().st_size <= 25 * 2 ** 20
    assert (registry.BUNDLED_DIR / "MODEL_CARD.md").is_file()
    G = generators.load("gankit-faces")
    assert (G.img_resolution, G.img_channels) == (registry.get("gankit-faces")["resolution"], 3)
    z = torch.from_numpy(np.random.RandomState(0).randn(4, G.z_dim)).float()
    with torch.no_grad():
        img = G(z, noise_mode="const")
    assert img.shape == (4, 3, G.img_resolution, G.img_resolution) and torch.isfinite(img).all()
    # different latents give different faces; the same latent the same face
    assert (img[0] - img[1]).abs().mean() > 1e-3
    with torch.no_grad():
        again = G(z[:1], noise_mode="const")
    assert torch.allclose(again, img[:1], atol=1e-5)


def test_bundled_model_records_its_training():
    meta = generators.read("gankit-faces").meta
    training = meta.get("training", {})
    assert training.get("config") == "stylegan2" and training.get("kimg", 0) > 0


def test_demo_runs_on_bundled_model(tmp_path):
    from click.testing import CliRunner
    from cli.main import main
    res = CliRunner().invoke(main, ["demo", "--out", str(tmp_path), "--seeds", "0-3", "--steps", "3"])
    assert res.exit_code == 0, res.output
    for name in ("samples.png", "inversion.png", "edits_sefa.png", "edit_sefa0.gif", "demo.json"):
        assert (tmp_path / name).is_file(), name
    summary = json.loads((tmp_path / "demo.json").read_text())
    assert summary["model"] == "gankit-faces" and np.isfinite(summary["inversion"]["psnr_db"])


def test_demo_rejects_unreadable_image(tmp_path):
    from click.testing import CliRunner
    from cli.main import main
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    res = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "o"), "--image", str(bad), "--steps", "2"])
    assert res.exit_code == 1
    assert res.output.strip().startswith("gankit: error:") and len(res.output.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- bundled encoders, directions

def _faces(G, n=4, seed=0):
    z = torch.from_numpy(np.random.RandomState(seed).randn(n, G.z_dim)).float()
    with torch.no_grad():
        return G(z, noise_mode="const")


def test_bundled_encoders_resolve_and_fit_the_bundled_generator():
    from encoders import registry as ereg
    gsha = registry.sha256_file(registry.resolve("gankit-faces"))
    for name in ("gankit-faces-e4e", "gankit-faces-hyperstyle"):
        path = ereg.resolve(name)
        assert path.parent == ereg.BUNDLED_DIR and path.stat().st_size <= 25 * 2 ** 20
        cfg = json.loads(path.with_suffix(".json").read_text())
        assert cfg["generator"]["name"] == "gankit-faces" and cfg["generator"]["sha256"] == gsha
        assert cfg["record"].get("steps", 0) > 0
    assert (ereg.BUNDLED_DIR / "MODEL_CARD.md").is_file()
    assert ereg.default_for("gankit-faces") == {"e4e": "gankit-faces-e4e", "hyperstyle": "gankit-faces-hyperstyle"}


def test_bundled_e4e_and_hypernetwork_reconstruct():
    import encoders
    G = generators.load("gankit-faces").eval()
    x = _faces(G, 6, seed=11)
    e4e = encoders.load("gankit-faces-e4e")
    hs = encoders.load("gankit-faces-hyperstyle")
    with torch.no_grad():
        r = e4e.invert(x)
        h = hs.invert(x)
        avg = G.synthesis(e4e.latent_avg[None].expand(len(x), -1, -1), noise_mode="const")
    err = lambda y: float((y - x).square().mean())   # noqa: E731
    # baseline: the average face; the encoders must explain most of what differs from it
    assert err(r["images"]) < 0.5 * err(avg) and err(h["images"]) < 0.5 * err(avg)
    # the hypernetwork starts from the e4e codes and improves on them (at its trained 2 iterations)
    assert hs.default_iters == 2
    assert torch.allclose(h["ws"], r["ws"], atol=1e-5)
    assert err(h["images"]) < err(r["images"])


def test_bundled_directions_and_cli_invert_edit(tmp_path):
    from click.testing import CliRunner
    from cli.main import main
    from editing import directions as D
    from generators.images import save_image, to_uint8
    d = D.read("gankit-faces-directions")
    assert {"age", "gender", "smile"} <= set(d.names) and d.space == "w"
    assert d.generator_sha256 == D.generator_sha256(str(registry.resolve("gankit-faces")))
    assert np.allclose(np.linalg.norm(d.vectors.reshape(len(d), -1), axis=1), 1.0, atol=1e-5)
    G = generators.load("gankit-faces").eval()
    for i, arr in enumerate(to_uint8(_faces(G, 2, seed=3))):
        save_image(arr, tmp_path / f"face{i}.png")
    runner = CliRunner()
    res = runner.invoke(main, ["invert", str(tmp_path / "face0.png"), str(tmp_path / "face1.png"), "--method", "e4e",
                               "--out", str(tmp_path / "inv")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "inv" / "latents.npz").is_file() and (tmp_path / "inv" / "face0.png").is_file()
    res = runner.invoke(main, ["edit", "-g", "gankit-faces", "--direction", "gankit-faces-directions", "--index", "age",
                               "--latents", str(tmp_path / "inv" / "latents.npz"), "--strength=-2:2:3",
                               "--video", "none", "--out", str(tmp_path / "edit")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "edit" / "grid.png").is_file()
