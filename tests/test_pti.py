"""PTI: tuning beats the pivot, the generator given is untouched, and the exported generator (full
checkpoint or weight deltas) reproduces the PTI output."""
import numpy as np
import pytest
import torch

from conftest import assert_close, need_shared


def _setup(n=2):
    import generators
    G = generators.load(need_shared("nvidia", "sg2ada_min_16.pkl"))
    torch.manual_seed(0)
    # smooth random colour fields: not images the generator can make exactly
    targets = torch.nn.functional.interpolate(torch.rand(n, 3, 4, 4) * 2 - 1, size=16, mode="bilinear",
                                              align_corners=False)
    return G, targets


def _mse(a, b):
    return ((a - b) ** 2).flatten(1).mean(1)


@pytest.fixture(scope="module")
def run():
    from inversion import project, pti
    G, targets = _setup()
    before = {k: v.clone() for k, v in G.state_dict().items()}
    pivot = project(G, targets, space="w", steps=60, loss="mse", seed=1, w_avg_samples=500, progress=False)
    res = pti(G, targets, pivot=pivot, steps=60, lr=1e-3, loss="mse", progress=False)
    return G, targets, before, pivot, res


def test_pti_beats_pivot(run):
    G, targets, _, pivot, res = run
    with torch.no_grad():
        pivot_img = G.synthesis(pivot.ws, noise_mode="const")       # PTI renders with the const noise
    pivot_err = _mse(pivot_img, targets)
    err = _mse(res.images, targets)
    assert (err < 0.7 * pivot_err).all(), (err, pivot_err)
    assert_close(res.losses["pivot_mse"], pivot_err.numpy(), 1e-5, "pivot mse")
    assert_close(res.losses["mse"], err.numpy(), 1e-5, "mse")
    assert torch.equal(res.ws, pivot.ws) and res.method == "pti" and res.space == "w"
    assert res.steps_run == 60 and res.history["mse"].shape == (60, 2)


def test_original_generator_untouched(run):
    G, _, before, _, res = run
    for k, v in G.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(not p.requires_grad for p in res.generator.parameters())


def test_exported_generator_reproduces_output(run, tmp_path):
    import generators
    from inversion.pivotal_tuning import DeltaError, apply_deltas, save_deltas, save_tuned
    G, _, _, _, res = run
    save_tuned(res.generator, tmp_path / "tuned.safetensors")
    G2 = generators.load(tmp_path / "tuned.safetensors")
    with torch.no_grad():
        assert_close(G2.synthesis(res.ws, noise_mode="const"), res.images.numpy(), 1e-5, "reloaded")
    n = save_deltas(res.generator, G, tmp_path / "d.safetensors")
    assert n > 0
    G3 = apply_deltas(G, tmp_path / "d.safetensors")
    with torch.no_grad():
        assert_close(G3.synthesis(res.ws, noise_mode="const"), res.images.numpy(), 1e-5, "deltas")
    with pytest.raises(DeltaError):
        apply_deltas(G2, tmp_path / "d.safetensors")          # made for G, not for the tuned one
    with pytest.raises(DeltaError):
        apply_deltas(G, tmp_path / "tuned.safetensors")        # not a delta file


def test_early_stop_and_default_pivot():
    from inversion import pti
    G, targets = _setup(1)
    res = pti(G, targets, steps=20, loss="mse", stop_term="mse", stop_at=10.0,
              pivot_kwargs=dict(steps=10, w_avg_samples=200), progress=False)
    assert res.steps_run == 0                                  # stopped before the first update
    assert_close(res.images, res.pivot_images.numpy(), 1e-6, "no tuning")
    with pytest.raises(ValueError):
        pti(G, targets, pivot=torch.zeros(1, 3), loss="mse")
    with pytest.raises(ValueError):
        pti(G, targets, pivot=torch.zeros(1, G.w_dim), loss="mse", stop_term="lpips")


def test_locality_regularization_keeps_far_latents():
    """With the regulariser the tuned generator moves less at latents away from the pivot."""
    from inversion import pti
    G, targets = _setup(1)
    pivot = G.mapping.w_avg[None].clone()
    z = torch.from_numpy(np.random.RandomState(9).randn(4, G.z_dim)).float()
    with torch.no_grad():
        far = G.mapping(z, None, truncation_psi=0.5)
        ref = G.synthesis(far, noise_mode="none")
    drift = {}
    for loc in (False, True):
        res = pti(G, targets, pivot=pivot, steps=40, lr=3e-3, loss="mse", locality=loc, seed=0, progress=False)
        with torch.no_grad():
            drift[loc] = float(_mse(res.generator.synthesis(far, noise_mode="none"), ref).mean())
    assert drift[True] < drift[False], drift
