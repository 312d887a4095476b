"""The gankit console script: outputs, and one-line errors (exit 1, no traceback) on bad input."""
import hashlib
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import generators
from conftest import need_shared

GANKIT = [sys.executable, "-m", "cli.main"]
ROOT = Path(__file__).resolve().parents[1]


def run(*args, check_ok=True):
    p = subprocess.run(GANKIT + [str(a) for a in args], capture_output=True, text=True, cwd=ROOT, timeout=300)
    if check_ok:
        assert p.returncode == 0, p.stderr
    return p


def assert_one_line_error(p, *needles):
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("gankit: error: ")
    assert "Traceback" not in p.stderr
    for n in needles:
        assert n.lower() in lines[0].lower(), lines[0]


def test_generate_writes_pngs_matching_the_api(tmp_path):
    src = need_shared("nvidia", "sg2ada_skip_32.pkl")
    run("generate", "--generator", src, "--seeds", "3-5", "--trunc", "0.7", "--out", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png", "seed0003.png", "seed0004.png", "seed0005.png"]
    G = generators.load(src)
    z = torch.from_numpy(np.random.RandomState(4).randn(1, G.z_dim)).float()
    with torch.no_grad():
        img = G(z, truncation_psi=0.7, noise_mode="const")
    expect = (img * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()
    got = np.asarray(Image.open(tmp_path / "seed0004.png"))
    assert got.shape == (32, 32, 3)
    assert np.abs(got.astype(int) - expect.astype(int)).max() <= 1  # 1e-4 float differences may flip a rounding
    grid = Image.open(tmp_path / "grid.png")
    assert grid.size[0] > 32 and grid.size[1] >= 32


def test_generate_conditional_needs_class(tmp_path):
    src = need_shared("nvidia", "sg2ada_cond_resnet_32.pkl")
    assert_one_line_error(run("generate", "-g", src, "--seeds", "0", "--out", tmp_path, check_ok=False), "--class")
    run("generate", "-g", src, "--seeds", "0-1", "--class", "2", "--out", tmp_path)
    assert (tmp_path / "seed0001.png").exists()


def test_info_reports_architecture_and_sha(tmp_path):
    src = need_shared("nvidia", "sg2ada_cond_resnet_32.pkl")
    out = run("info", src).stdout
    assert "nvidia-pkl" in out and hashlib.sha256(src.read_bytes()).hexdigest() in out
    assert "architecture=resnet" in out and "num_ws=8" in out and "c_dim=4" in out


def test_convert_cli(tmp_path):
    src = need_shared("community", "stylegan2_rosinality", "sg2_gema_64.pt")
    run("convert", src, tmp_path / "a.safetensors")
    run("convert", tmp_path / "a.safetensors", tmp_path / "b.pt", "--format", "rosinality")
    assert "rosinality" in run("info", tmp_path / "b.pt").stdout


def test_truncated_file(tmp_path):
    src = need_shared("nvidia", "sg2ada_min_16.pkl")
    bad = tmp_path / "truncated.pkl"
    bad.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    assert_one_line_error(run("info", bad, check_ok=False))
    zsrc = need_shared("community", "stylegan2_rosinality", "sg2_gema_64.pt")
    badz = tmp_path / "truncated.pt"
    badz.write_bytes(zsrc.read_bytes()[: zsrc.stat().st_size // 2])
    assert_one_line_error(run("generate", "-g", badz, "--out", tmp_path / "o", check_ok=False))
    assert not (tmp_path / "o" / "grid.png").exists()


def test_text_file_and_missing_file(tmp_path):
    txt = tmp_path / "notes.pkl"
    txt.write_text("this is not a network\n")
    assert_one_line_error(run("info", txt, check_ok=False), "not a checkpoint")
    assert_one_line_error(run("info", tmp_path / "nope.pkl", check_ok=False), "no such file")


def test_checkpoint_of_another_kind(tmp_path):
    other = need_shared("encoders", "ir_se50", "model_ir_se50.pth")
    assert_one_line_error(run("info", other, check_ok=False), "not a stylegan checkpoint")
    plain = tmp_path / "dict.pkl"
    plain.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    assert_one_line_error(run("info", plain, check_ok=False), "not an nvidia network pickle")


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_malicious_pickles_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"G_ema": _Evil(marker)}, protocol=4))
    p = run("info", evil, check_ok=False)
    assert_one_line_error(p, "system", "allow-list")
    assert not marker.exists()
    # the same inside a torch zip file (weights_only path)
    evil_pt = tmp_path / "evil.pt"
    torch.save({"g_ema": _Evil(marker)}, evil_pt)
    p = run("generate", "-g", evil_pt, "--out", tmp_path / "o", check_ok=False)
    assert_one_line_error(p, "system", "allow-list")
    assert not marker.exists()
    # exec smuggled through builtins
    ex = tmp_path / "exec.pkl"
    ex.write_bytes(b"\x80\x04cbuiltins\nexec\n(V__import__('os').system('touch " + str(marker).encode() + b"')\ntR.")
    assert_one_line_error(run("info", ex, check_ok=False), "builtins.exec")
    assert not marker.exists()


def test_offline_registry_model(tmp_path):
    env = dict(os.environ, GANKIT_OFFLINE="1", GANKIT_HOME=str(tmp_path))
    p = subprocess.run(GANKIT + ["generate", "-g", "stylegan2-ada-ffhq-1024", "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    if "no such file or registry model" in p.stderr:
        pytest.skip("registry name differs")
    assert_one_line_error(p, "https://", "local file")


def test_truncated_gankit_file(tmp_path):
    torch.manual_seed(0)
    G = generators.Generator(z_dim=4, w_dim=4, img_resolution=8, mapping_kwargs=dict(num_layers=1),
                             synthesis_kwargs=dict(channel_base=32, channel_max=4))
    generators.save(G, tmp_path / "g.safetensors")
    data = (tmp_path / "g.safetensors").read_bytes()
    for cut in (len(data) // 2, 20):
        (tmp_path / "cut.safetensors").write_bytes(data[:cut])
        assert_one_line_error(run("info", tmp_path / "cut.safetensors", check_ok=False), "truncated")


def test_generate_stylegan3_translate_rotate(tmp_path):
    """--translate/--rotate set the SG3 input transform exactly as the API (NVIDIA's convention)."""
    src = need_shared("nvidia", "sg3_t_32.pkl")
    ref = np.load(src.with_suffix(".npz"))
    tx, ty = (float(v) for v in ref["translate_xy"])
    run("generate", "-g", src, "--seeds", "7", "--translate", f"{tx},{ty}", "--out", tmp_path / "t")
    run("generate", "-g", src, "--seeds", "7", "--rotate", float(ref["rotate_deg"]), "--out", tmp_path / "r")
    G = generators.load(src)
    z = torch.from_numpy(np.random.RandomState(7).randn(1, G.z_dim)).float()
    for folder, kw in (("t", dict(translate=(tx, ty))), ("r", dict(angle_deg=float(ref["rotate_deg"])))):
        G.set_transform(**kw)
        with torch.no_grad():
            img = G(z, noise_mode="const")
        expect = (img * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy().astype(int)
        got = np.asarray(Image.open(tmp_path / folder / "seed0007.png")).astype(int)
        assert np.abs(got - expect).max() <= 1
    G.set_transform()
    with torch.no_grad():
        plain = G(z, noise_mode="const")
    assert not torch.allclose(plain, img)  # the transform really moved the image
    p = run("generate", "-g", need_shared("nvidia", "sg2ada_min_16.pkl"), "--rotate", "5", "--out", tmp_path / "x",
            check_ok=False)
    assert_one_line_error(p, "StyleGAN3")
