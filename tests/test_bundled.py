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
