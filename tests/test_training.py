"""Generator training on CPU with tiny networks: StyleGAN2(+ADA), StyleGAN3-T, StyleGAN1 (progressive).

What is shown: finite losses and D separating reals from fakes; snapshots that ``generators.load``
reads (G_ema, G and D); a resumed run equal to the uninterrupted one (ADA state and path-length mean
included); a 2-process torchrun (gloo) run equal to one process running the same rounds; ADA's p
rising when D overfits; each augmentation alone keeping images sane (blits exact); StyleGAN1's
growth schedule with fade-in.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import generators
from generators.dataset import ImageDataset
from generators.formats import torch_load_safe
from generators.training import AdaptiveP, AugmentPipe, TrainOptions, Trainer, TrainingError
from generators.training.augment import BGC
from generators.training.loop import _progressive_schedule, latest_state

HERE = Path(__file__).resolve().parent
TINY = dict(resolution=16, batch=8, z_dim=32, w_dim=32, channels={4: 32, 8: 32, 16: 16}, grid=2, log_every=1,
            deterministic=True, device="cpu")


@pytest.fixture(autouse=True)
def _restore_determinism():
    """``deterministic=True`` switches torch's global flag on; give it back as found."""
    was = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(was)


def constant_colour_dataset(n=16, res=16, seed=0):
    """Images of one random colour each: easy for D, so real/fake separation shows within a few steps."""
    cols = np.random.default_rng(seed).integers(0, 256, size=(n, 3, 1, 1))
    return ImageDataset(np.broadcast_to(cols, (n, 3, res, res)).astype(np.uint8).copy())


def opts(tmp, **kw):
    return TrainOptions(out=str(tmp), **{**TINY, **kw})


def read_log(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "log.jsonl").read_text().splitlines()]


def assert_finite_losses(records):
    seen = set()
    for r in records:
        for k, v in r.items():
            if k.startswith("loss/") or k.startswith("D/"):
                assert np.isfinite(v), f"{k} = {v} at step {r['step']}"
                seen.add(k)
    return seen


def state_equal(a: dict, b: dict, atol=0.0, skip=()):
    """Largest |a - b| over the shared keys of two state dicts (asserting same keys)."""
    assert a.keys() == b.keys()
    worst = 0.0
    for k in a:
        if k in skip:
            continue
        d = float((a[k].double() - b[k].double()).abs().max()) if a[k].numel() else 0.0
        assert d <= atol, f"{k}: max abs diff {d:.3g} > {atol}"
        worst = max(worst, d)
    return worst


# ------------------------------------------------------------------------------------------- StyleGAN2

def test_stylegan2_trains_d_separates_and_snapshots_load(tmp_path):
    o = opts(tmp_path, config="stylegan2", kimg=30 * 8 / 1000, snap_kimg=15 * 8 / 1000, aug="noaug",
             g_reg_interval=4, d_reg_interval=4)
    tr = Trainer(o, dataset=constant_colour_dataset(), progress=False)
    last = tr.run()
    recs = read_log(tmp_path)
    assert [r["step"] for r in recs] == list(range(1, 31))
    seen = assert_finite_losses(recs)
    assert {"loss/G", "loss/D", "loss/pl_penalty", "loss/r1_penalty", "D/real", "D/fake"} <= seen
    # Regularization terms are averaged over the steps that ran them (every 4th step here), not over all.
    r1 = [r["loss/r1_penalty"] for r in recs if "loss/r1_penalty" in r]
    assert len(r1) == len([s for s in range(30) if s % 4 == 0])
    late = recs[-10:]
    gap = np.mean([r["D/real"] - r["D/fake"] for r in late])
    assert gap > 0, f"D does not separate reals from fakes: mean(D/real - D/fake) over last 10 steps = {gap:.3f}"
    assert recs[-1]["pl_mean"] > 0

    snaps = sorted(tmp_path.glob("network-snapshot-*.safetensors"))
    assert [s.name for s in snaps] == ["network-snapshot-000000-120.safetensors",
                                       "network-snapshot-000000-240.safetensors"]
    assert last == tmp_path / "training-state-000000-240.pt" and latest_state(tmp_path) == last
    assert (tmp_path / "samples-000000-240.png").is_file()
    G_ema = generators.load(snaps[-1])
    G = generators.load(snaps[-1], network="G")
    D = generators.load(snaps[-1], network="D")
    state_equal(G_ema.state_dict(), tr.G_ema.state_dict())
    state_equal(G.state_dict(), tr.G.state_dict())
    state_equal(D.state_dict(), tr.D.state_dict())
    assert G_ema.gankit_meta["training"]["step"] == 30
    z = torch.randn([4, 32], generator=torch.Generator().manual_seed(0))
    img = G_ema(z, None, noise_mode="const")
    assert img.shape == (4, 3, 16, 16) and torch.isfinite(img).all()
    assert torch.isfinite(D(img, None)).all()
    # The trained D also ranks the real images above G's samples when asked directly.
    reals = constant_colour_dataset().images.float() / 127.5 - 1
    fakes = generators.load(snaps[-1], network="G")(torch.randn([16, 32]), None)
    assert D(reals, None).mean() > D(fakes, None).mean()


def test_resume_equals_uninterrupted_run_with_ada_and_path_length(tmp_path):
    # Snapshots every 4 steps; ADA adaptive (interval 3: p has moved once by the snapshot after step 4,
    # which falls inside the next interval with partial sums) plus lazy path length / R1 every 2 steps,
    # x-flip doubled data.
    kw = dict(config="stylegan2", kimg=8 * 8 / 1000, snap_kimg=4 * 8 / 1000, aug="ada", p=0.3, ada_kimg=0.4,
              ada_interval=3, target=0.0, g_reg_interval=2, d_reg_interval=2, seed=7)
    data = ImageDataset(constant_colour_dataset(8).images.numpy(), xflip=True)
    full = Trainer(opts(tmp_path / "full", **kw), dataset=data, progress=False)
    full.run()
    part = Trainer(opts(tmp_path / "part", **kw), dataset=data, progress=False)
    first = part.run(stop_after_snapshots=1)                               # "killed" after snapshot 1
    assert first.name == "training-state-000000-032.pt" and part.step == 4
    assert part.ada.steps == 4 and part.ada.count > 0                        # mid-interval ADA sums saved
    assert float(part.aug.p) != 0.3                                          # p already adapted once
    p_saved = float(part.aug.p)
    del part
    resumed = Trainer(opts(tmp_path / "part", **kw), resume=tmp_path / "part", progress=False, dataset=data)
    assert resumed.step == 4 and resumed.cur_nimg == 32
    assert float(resumed.aug.p) == p_saved
    resumed.run(stop_after_snapshots=1)
    a = torch_load_safe(tmp_path / "full" / "training-state-000000-064.pt")
    b = torch_load_safe(tmp_path / "part" / "training-state-000000-064.pt")
    for net in ("G", "D", "G_ema"):
        state_equal(a[net], b[net], atol=1e-6)
    assert a["augment_p"] == b["augment_p"] and a["augment_p"] != 0.3        # p moved, and identically
    assert a["ada"] == b["ada"]
    assert float(a["loss"]["pl_mean"]) == float(b["loss"]["pl_mean"]) > 0
    assert a["step"] == b["step"] == 8
    # The snapshot file of the resumed run holds the same networks.
    na = generators.load(tmp_path / "full" / "network-snapshot-000000-064.safetensors", network="D")
    nb = generators.load(tmp_path / "part" / "network-snapshot-000000-064.safetensors", network="D")
    state_equal(na.state_dict(), nb.state_dict(), atol=1e-6)


def test_resume_rejects_bad_state(tmp_path):
    with pytest.raises(TrainingError, match="no training-state"):
        Trainer(opts(tmp_path), resume=tmp_path, dataset=constant_colour_dataset(), progress=False)
    bad = tmp_path / "training-state-000001.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(TrainingError, match="not a readable training state"):
        Trainer(opts(tmp_path), resume=bad, dataset=constant_colour_dataset(), progress=False)


def _load_ddp_helper():
    spec = importlib.util.spec_from_file_location("_ddp_train_script", HERE / "_ddp_train_script.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_two_process_torchrun_equals_single_process(tmp_path):
    if not (torch.distributed.is_available() and torch.distributed.is_gloo_available()):
        pytest.skip("torch.distributed with gloo is not available")
    helper = _load_ddp_helper()
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")]))
    env.pop("WORLD_SIZE", None)
    env.pop("RANK", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
           str(HERE / "_ddp_train_script.py"), str(tmp_path / "ddp")]
    try:
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=str(HERE.parent))
    except subprocess.TimeoutExpired:
        pytest.fail("2-process torchrun run did not finish in 240 s")
    if r.returncode != 0 and ("gloo" in r.stderr.lower() and "unsupported" in r.stderr.lower()):
        pytest.skip("gloo cannot run here: " + r.stderr.strip().splitlines()[-1])
    assert r.returncode == 0, r.stderr[-3000:]
    single_state = helper.train(tmp_path / "single", batch_gpu=4)             # one process, 2 rounds per phase
    multi = torch_load_safe(latest_state(tmp_path / "ddp"))
    single = torch_load_safe(single_state)
    assert multi["step"] == single["step"] == helper.STEPS
    assert json.loads((tmp_path / "ddp" / "options.json").read_text())["batch_gpu"] == 4
    # mapping.w_avg is a running mean of each process's own fakes (as in NVIDIA's code); it does not
    # feed back into training, so it is the one entry allowed to differ.
    for net in ("G", "D", "G_ema"):
        state_equal(multi[net], single[net], atol=1e-5, skip=("mapping.w_avg",))
        assert torch.isfinite(multi[net]["mapping.w_avg"]).all() if net != "D" else True
    assert multi["augment_p"] == pytest.approx(single["augment_p"], abs=1e-7)
    assert multi["augment_p"] != 0.2                                         # ADA adjusted p in both runs
    assert multi["ada"] == single["ada"]
    assert float(multi["loss"]["pl_mean"]) == pytest.approx(float(single["loss"]["pl_mean"]), abs=1e-7)
    # Only rank 0 wrote outputs, once each.
    assert len(list((tmp_path / "ddp").glob("network-snapshot-*.safetensors"))) == 2
    assert len(read_log(tmp_path / "ddp")) == helper.STEPS
    # The 2-process run's mid-run state (saved inside an ADA interval) resumes in one process to the
    # same end: the saved ADA sums cover both processes.
    mid = torch_load_safe(tmp_path / "ddp" / "training-state-000000-024.pt")
    assert mid["step"] == helper.SNAP_STEPS and mid["ada"]["count"] == helper.BATCH
    resumed_path = helper.train(tmp_path / "resumed", resume=tmp_path / "ddp" / "training-state-000000-024.pt")
    resumed = torch_load_safe(resumed_path)
    for net in ("G", "D", "G_ema"):
        state_equal(resumed[net], single[net], atol=1e-5, skip=("mapping.w_avg",))
    assert resumed["ada"] == single["ada"] and resumed["augment_p"] == pytest.approx(single["augment_p"], abs=1e-7)


# ------------------------------------------------------------------------------------------- ADA

def test_ada_p_rises_when_d_overfits(tmp_path):
    # 8 images, a fast D and a fast controller: sign(D(real)) soon exceeds the 0.6 target.
    o = opts(tmp_path, config="stylegan2", kimg=40 * 8 / 1000, snap_kimg=1000, aug="ada", p=0.0, target=0.6,
             ada_kimg=0.5, ada_interval=1, dlr=0.01, pl_weight=0.0, g_reg_interval=4, d_reg_interval=16,
             style_mixing=0.0)
    tr = Trainer(o, dataset=constant_colour_dataset(8, seed=3), progress=False)
    tr.run()
    recs = read_log(tmp_path)
    assert_finite_losses(recs)
    rts = [r["ada_rt"] for r in recs if r["ada_rt"] is not None]
    assert max(rts) > 0.6
    assert float(tr.aug.p) > 0, f"p stayed {float(tr.aug.p)}; r_t over the run {rts}"
    # The controller's rule, checked on its own: +/- batch * interval / (kimg * 1000) per update, clamped.
    pipe = AugmentPipe(p=0.0)
    ctl = AdaptiveP(target=0.6, interval=2, kimg=1.0)
    ctl.accumulate(torch.tensor([1.0, 1.0, 1.0, -1.0]))                    # r_t = 0.5 < 0.6 -> down, clamped
    ctl.step(pipe, batch_size=4)
    ctl.step(pipe, batch_size=4)
    assert float(pipe.p) == 0.0 and ctl.last_rt == 0.5
    ctl.accumulate(torch.tensor([2.0, 3.0, 1.0, 1.0]))                     # r_t = 1 > 0.6 -> up by 4*2/1000
    ctl.step(pipe, batch_size=4)
    ctl.step(pipe, batch_size=4)
    assert float(pipe.p) == pytest.approx(0.008)


def _smooth_images(n=8, res=16, seed=0):
    """Smooth random images in [-1, 1] ([n, 3, res, res]), distinct pixel values per image."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand([n, 3, 4, 4], generator=g) * 1.6 - 0.8
    x = torch.nn.functional.interpolate(low, size=res, mode="bicubic", align_corners=False)
    return (x + torch.rand([n, 3, res, res], generator=g) * 0.05).clamp(-1, 1)


def _only(name, p=1.0):
    return AugmentPipe(p=p, **{k: (1.0 if k == name else 0.0) for k in BGC})


@pytest.mark.parametrize("name", ["xflip", "rotate90", "xint"])
def test_blit_augmentations_move_pixels_exactly(name):
    x = _smooth_images()
    y = _only(name)(x, generator=torch.Generator().manual_seed(1))
    assert torch.isfinite(y).all()
    changed = 0
    for xi, yi in zip(x, y):
        pix_in = xi.flatten(1).T                                              # [HW, 3] RGB vectors
        pix_out = yi.flatten(1).T
        if name in ("xflip", "rotate90"):
            # A permutation of the pixels: sorted values per channel equal.
            torch.testing.assert_close(yi.flatten(1).sort(1).values, xi.flatten(1).sort(1).values, atol=1e-5, rtol=0)
        # Every output pixel is one of the input pixels (integer translation reflects at the border).
        dist = torch.cdist(pix_out.double(), pix_in.double()).min(1).values
        assert float(dist.max()) < 1e-5
        changed += int(not torch.allclose(xi, yi, atol=1e-5))
    assert changed >= 2, f"{name} at p=1 changed only {changed} of 8 images"


@pytest.mark.parametrize("name", ["scale", "rotate", "aniso", "xfrac", "brightness", "contrast", "lumaflip",
                                  "hue", "saturation"])
def test_each_augmentation_alone_keeps_statistics_in_range(name):
    x = _smooth_images(n=32)
    y = _only(name)(x, generator=torch.Generator().manual_seed(2))
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert not torch.allclose(x, y, atol=1e-4), f"{name} at p=1 left every image unchanged"
    # Batch statistics stay in a sensible range of the input's.
    assert abs(float(y.mean() - x.mean())) < 0.25
    ratio = float(y.std() / x.std())
    assert 0.5 < ratio < 2.0, f"{name}: std ratio {ratio:.2f}"
    # Saturation scales chroma by 2**N(0, 1) (NVIDIA's range), so single pixels can go far out.
    assert float(y.abs().max()) < (10.0 if name == "saturation" else 4.0)
    if name in ("scale", "rotate", "aniso", "xfrac"):
        # Geometric only: resampling with reflection never leaves the input's range.
        assert float(y.min()) >= float(x.min()) - 1e-5 and float(y.max()) <= float(x.max()) + 1e-5
    if name in ("hue", "saturation"):
        # Both act orthogonally to the luma axis: per-pixel mean over RGB is unchanged.
        torch.testing.assert_close(y.mean(1), x.mean(1), atol=1e-5, rtol=0)
    if name == "lumaflip":
        # Either identity or a reflection of the luma axis: the RGB mean is kept or negated per image.
        m_in, m_out = x.mean(1), y.mean(1)
        for a, b in zip(m_in, m_out):
            assert torch.allclose(a, b, atol=1e-5) or torch.allclose(a, -b, atol=1e-5)


def test_augment_p0_is_identity_and_everything_at_p1_is_sane():
    x = _smooth_images()
    assert _only("xflip", p=0.0)(x) is x
    assert AugmentPipe(p=0.0)(x) is x
    y = AugmentPipe(p=1.0)(x, generator=torch.Generator().manual_seed(3))
    assert torch.isfinite(y).all() and float(y.abs().max()) < 10
    # Differentiable twice (R1 on augmented reals).
    xr = x.clone().requires_grad_(True)
    out = AugmentPipe(p=0.5)(xr, generator=torch.Generator().manual_seed(4))
    g, = torch.autograd.grad(out.square().sum(), xr, create_graph=True)
    g.square().sum().backward()
    assert torch.isfinite(xr.grad).all()
    # Drawing for a global batch and taking rows gives the same images as augmenting the whole batch.
    whole = AugmentPipe(p=0.7)(x, generator=torch.Generator().manual_seed(5))
    part = AugmentPipe(p=0.7)(x[4:], generator=torch.Generator().manual_seed(5), global_size=8, offset=4)
    torch.testing.assert_close(part, whole[4:], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="unknown augmentation"):
        AugmentPipe(p=0.1, flip=1)


# ------------------------------------------------------------------------------------------- StyleGAN3 / 1

def test_stylegan3_t_tiny_trains(tmp_path):
    o = opts(tmp_path, config="stylegan3-t", kimg=3 * 8 / 1000, snap_kimg=1000, aug="ada", p=0.2,
             cbase=256, cmax=16, d_reg_interval=2, blur_sigma=2.0)
    tr = Trainer(o, dataset=constant_colour_dataset(), progress=False)
    tr.run()
    recs = read_log(tmp_path)
    seen = assert_finite_losses(recs)
    assert {"loss/G", "loss/D", "loss/r1_penalty"} <= seen and "loss/pl_penalty" not in seen
    sig = [r["blur_sigma"] for r in recs]
    assert sig[0] <= 2.0 and all(a >= b for a, b in zip(sig, sig[1:]))        # D blur fades out
    G = generators.load(next(tmp_path.glob("network-snapshot-*.safetensors")))
    assert G.gankit_meta["training"]["config"] == "stylegan3-t"
    img = G(torch.randn([2, 32]), None)
    assert img.shape == (2, 3, 16, 16) and torch.isfinite(img).all()


def test_progressive_schedule():
    # phase_kimg 1 -> 1000 images per phase; 16 px -> max_step 2.
    assert _progressive_schedule(0, 1.0, 2) == (0, 1.0)                      # stage 0: 4x4
    assert _progressive_schedule(999, 1.0, 2) == (0, 1.0)
    assert _progressive_schedule(1000, 1.0, 2) == (1, 0.0)                   # 8x8 fades in
    assert _progressive_schedule(1250, 1.0, 2) == (1, 0.25)
    assert _progressive_schedule(2000, 1.0, 2) == (1, 1.0)                   # 8x8 stable
    assert _progressive_schedule(3500, 1.0, 2) == (2, 0.5)                   # 16x16 fades in
    assert _progressive_schedule(4000, 1.0, 2) == (2, 1.0)
    assert _progressive_schedule(10 ** 6, 1.0, 2) == (2, 1.0)                # stays at full size


@pytest.mark.parametrize("loss", ["r1", "wgan-gp"])
def test_stylegan1_progressive_trains_through_fade_in(tmp_path, loss):
    # 2 steps (16 images) per phase: 4x4, fade to 8, 8, fade to 16, 16.
    o = opts(tmp_path, config="stylegan1", loss=loss, kimg=12 * 8 / 1000, snap_kimg=5 * 8 / 1000,
             phase_kimg=16 / 1000)
    tr = Trainer(o, dataset=constant_colour_dataset(), progress=False)
    tr.run()
    recs = read_log(tmp_path)
    seen = assert_finite_losses(recs)
    assert {"loss/G", "loss/D"} <= seen
    steps = [r["grow_step"] for r in recs]
    alphas = [r["alpha"] for r in recs]
    assert steps == sorted(steps) and steps[0] == 0 and steps[-1] == 2       # grows to 16 px
    assert any(0 < a < 1 for a in alphas)                                    # passes through a fade-in
    # Snapshots taken mid-growth load and render at full size.
    for snap in sorted(tmp_path.glob("network-snapshot-*.safetensors")):
        G = generators.load(snap)
        D = generators.load(snap, network="D")
        img = G(torch.randn([2, 32]), None)
        assert img.shape == (2, 3, 16, 16) and torch.isfinite(img).all()
        assert torch.isfinite(D(img, None)).all()


def test_conditional_run_from_packed_zip(tmp_path):
    # A dataset_tool zip with class labels: use_labels makes G and D conditional (one-hot c, 3 classes).
    src = tmp_path / "src"
    src.mkdir()
    cols = [(250, 0, 0), (0, 250, 0), (0, 0, 250), (200, 200, 0)]
    for i, col in enumerate(cols):
        Image.new("RGB", (32, 32), col).save(src / f"{i}.png")
    with zipfile.ZipFile(tmp_path / "d.zip", "w") as zf:
        for i in range(4):
            zf.write(src / f"{i}.png", f"00000/img{i:08d}.png")
        zf.writestr("dataset.json", json.dumps({"labels": [[f"00000/img{i:08d}.png", i % 3] for i in range(4)]}))
    o = opts(tmp_path / "run", data=str(tmp_path / "d.zip"), config="stylegan2", kimg=2 * 8 / 1000,
             snap_kimg=1000, aug="noaug", use_labels=True)
    Trainer(o, progress=False).run()
    snap = next((tmp_path / "run").glob("network-snapshot-*.safetensors"))
    G, D = generators.load(snap), generators.load(snap, network="D")
    assert G.c_dim == 3 and D.c_dim == 3
    c = torch.eye(3)[[0, 2]]
    img = G(torch.randn([2, 32]), c)
    assert torch.isfinite(D(img, c)).all()
    assert_finite_losses(read_log(tmp_path / "run"))
    # A dataset at another resolution than the options' is refused.
    with pytest.raises(TrainingError, match="resolution"):
        Trainer(opts(tmp_path / "r2", resolution=8, channels={4: 16, 8: 16}), dataset=constant_colour_dataset(),
                progress=False)
