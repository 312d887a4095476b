"""Encoder training: a tiny run lowers the loss; snapshots resume; the CLI command."""
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import encoders
from encoders.training import TrainConfig, Trainer, progressive_stage

TINY = dict(input_size=32, widths=[8, 10, 12, 16], depths=[1, 1, 1, 1], lpips_lambda=0.0, id_lambda=0.0,
            hyper=dict(z_dim=8, hyper_hidden=8, refine_hidden=8, refine_out=8))


def tiny_g():
    from generators.stylegan2 import Generator
    torch.manual_seed(2)
    return Generator(z_dim=16, w_dim=16, img_resolution=16, img_channels=3, mapping_kwargs=dict(num_layers=2),
                     synthesis_kwargs=dict(channels={4: 16, 8: 16, 16: 8})).eval()


def held_out(G, n=8):
    g = torch.Generator().manual_seed(123)
    with torch.no_grad():
        ws = G.mapping(torch.randn(n, G.z_dim, generator=g), None)
        return ws, torch.nn.functional.adaptive_avg_pool2d(G.synthesis(ws), 32)


def recon_error(model, x, ws):
    model.eval()
    with torch.no_grad():
        out = model.invert(x, iters=2) if isinstance(model, (encoders.ReStyle, encoders.HyperStyle)) else model.invert(x)
    img = torch.nn.functional.adaptive_avg_pool2d(out["images"], 32)
    return float((img - x).square().mean()), float((out["ws"] - ws).square().mean())


def w_encoder_file(G, path):
    from encoders.backbones import irse_units
    from encoders.psp import PSP, WEncoder
    torch.manual_seed(5)
    m = PSP(WEncoder(3, irse_units([(8, 1), (10, 1), (12, 1), (16, 1)]), G.num_ws, G.w_dim), G, input_size=32)
    encoders.save(m, path)
    return str(path)


@pytest.mark.parametrize("method", ["psp", "e4e", "restyle", "hyperstyle"])
def test_tiny_training_lowers_the_loss(method, tmp_path):
    G = tiny_g()
    ws, x = held_out(G)
    cfg = TrainConfig(method=method, steps=40, batch=4, lr=2e-3, iters=2, progressive_start=4, progressive_every=2,
                      snapshot_every=0, seed=1, **TINY)
    if method == "hyperstyle":
        cfg.w_encoder = w_encoder_file(G, tmp_path / "w.pt")
    tr = Trainer(G, cfg, tmp_path / "run", progress=False)
    before_img, before_w = recon_error(tr.model, x, ws)
    tr.trainable.train()
    logs = tr.run()
    after_img, after_w = recon_error(tr.model, x, ws)
    assert len(logs) == 40 and (tmp_path / "run" / "final.pt").is_file()
    assert after_img < 0.8 * before_img, (before_img, after_img)
    if method != "hyperstyle":                         # HyperStyle keeps the W encoder's codes
        assert after_w < 0.9 * before_w, (before_w, after_w)
    lines = [json.loads(s) for s in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert lines[0]["event"] == "start" and lines[0]["losses"]["id"] == "off: id_lambda = 0"
    assert [r["step"] for r in lines[1:-1]] == list(range(1, 41)) and lines[-1]["event"] == "end"
    if method == "e4e":
        assert [r["stage"] for r in lines[1:6]] == [0, 0, 0, 0, 1] and "w_adv" in lines[-2] and "r1" in lines[1]


def test_resume_continues_from_the_snapshot(tmp_path):
    G = tiny_g()
    cfg = TrainConfig(method="psp", steps=6, batch=2, snapshot_every=3, seed=3, **TINY)
    Trainer(G, cfg, tmp_path / "a", progress=False).run()
    snap = tmp_path / "a" / "snapshot-000003.pt"
    assert snap.is_file()
    cfg2 = TrainConfig(method="psp", steps=6, batch=2, snapshot_every=0, seed=3, **TINY)
    tr = Trainer(G, cfg2, tmp_path / "b", resume=str(snap), progress=False)
    assert tr.step == 3 and len(tr.opt.state_dict()["state"]) > 0
    logs = tr.run()
    assert len(logs) == 3
    model = encoders.load(tmp_path / "b" / "final.pt")
    assert isinstance(model, encoders.PSP) and model.input_size == 32


def test_progressive_schedule():
    assert [progressive_stage(s, 18, 20000, 2000) for s in (0, 19999, 20000, 21999, 22000, 52000, 99999)] == \
        [0, 0, 1, 1, 2, 17, 17]


def test_cli_train_encoder(tmp_path):
    from cli.encoder_cmds import encoder
    from generators.images import save_image
    import generators
    G = tiny_g()
    generators.save(G, tmp_path / "g.safetensors")
    data = tmp_path / "faces"
    data.mkdir()
    rng = np.random.RandomState(0)
    for i in range(3):
        save_image(rng.randint(0, 255, (40, 40, 3), dtype=np.uint8), data / f"{i}.png")
    args = ["--type", "e4e", "-g", str(tmp_path / "g.safetensors"), "--data", str(data), "--out", str(tmp_path / "o"),
            "--steps", "3", "--batch", "2", "--input-size", "32", "--widths", "8,10,12,16", "--depths", "1,1,1,1",
            "--lpips-lambda", "0", "--id-lambda", "0", "--snapshot-every", "0"]
    r = CliRunner().invoke(encoder, args)
    assert r.exit_code == 0, r.output
    assert "trained 3 steps" in r.output and isinstance(encoders.load(tmp_path / "o" / "final.pt"), encoders.E4E)
    bad = CliRunner().invoke(encoder, args[:-2] + ["--widths", "8,8,12,16"] + ["--snapshot-every", "0"])
    assert bad.exit_code == 1 and "gankit: error: consecutive stage widths must differ" in bad.output
    r = CliRunner().invoke(encoder, ["--type", "hyperstyle", "-g", str(tmp_path / "g.safetensors"),
                                     "--out", str(tmp_path / "h"), "--steps", "1"])
    assert r.exit_code == 1 and "--w-encoder PATH" in r.output
