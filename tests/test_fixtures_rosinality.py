"""rosinality StyleGAN2 and embedded-decoder fixtures through the public API."""
import numpy as np
import pytest
import torch

import generators
from conftest import assert_close, fixture_files, need_shared

PTS = fixture_files("community/stylegan2_rosinality", "*.pt") + fixture_files("community/embedded_decoders", "*.pt")


@pytest.fixture(scope="module", params=PTS or [None], ids=[p.stem for p in PTS] or ["absent"])
def case(request):
    if request.param is None:
        need_shared("community")
        pytest.skip("no rosinality fixtures")
    path = request.param
    ref = np.load(path.with_suffix(".npz"))
    G = generators.load(path)
    G.mapping.w_avg.copy_(torch.from_numpy(ref["mean_latent"][0]))  # the recorded mean_latent is w_avg
    return path, ref, G


def test_generator_tensors_exact(case):
    _, ref, G = case
    n_noise = sum(1 for k in ref.files if k.startswith("noise_") and not k.startswith("noise_custom"))
    assert G.num_ws == int(ref["n_latent"])
    assert len(G.synthesis.noise_shapes()) == n_noise
    assert sum(p.numel() for p in G.parameters()) == sum(
        ref[k].size for k in ref.files if k.startswith("g_ema/") and not k.startswith("g_ema/noises.")
        and not k.endswith(".kernel"))
    # const noise maps are the file's noises.noise_i buffers, in layer order
    for i, (blk, layer, res) in enumerate(G.synthesis.noise_shapes()):
        nc = getattr(getattr(G.synthesis, blk), layer).noise_const
        assert torch.equal(nc, torch.from_numpy(ref[f"noise_{i}"][0, 0]))


def test_mapping_and_truncation(case):
    _, ref, G = case
    z = torch.from_numpy(ref["z"])
    psi = float(ref["truncation"])
    with torch.no_grad():
        assert_close(G.mapping(z), ref["ws"], 1e-5, "ws")
        assert_close(G.mapping(z, truncation_psi=psi), ref["ws_trunc"], 1e-5, "ws_trunc")


def test_images(case):
    _, ref, G = case
    z = torch.from_numpy(ref["z"])
    psi = float(ref["truncation"])
    w_avg = G.mapping.w_avg
    ws_plus = torch.from_numpy(ref["ws_plus"])
    with torch.no_grad():
        assert_close(G(z, noise_mode="const"), ref["img_z"], 1e-4, "img_z")
        assert_close(G(z, truncation_psi=psi, noise_mode="const"), ref["img_z_trunc"], 1e-4, "img_z_trunc")
        assert_close(G.synthesis(torch.from_numpy(ref["ws"])), ref["img_ws"], 1e-4, "img_ws")
        assert_close(G.synthesis(ws_plus), ref["img_wplus"], 1e-4, "img_wplus")
        assert_close(G.synthesis(w_avg.lerp(ws_plus, psi)), ref["img_wplus_trunc"], 1e-4, "img_wplus_trunc")
        noise = [torch.from_numpy(ref[f"noise_custom_{i}"]) for i in range(len(G.synthesis.noise_shapes()))]
        assert_close(G.synthesis(ws_plus, noise=noise), ref["img_wplus_custom_noise"], 1e-4, "custom noise")
        k = int(ref["inject_index"])
        w1 = G.mapping(z)
        w2 = G.mapping(torch.from_numpy(ref["z2"]))
        mix = torch.cat([w1[:, :k], w2[:, k:]], dim=1)
        assert_close(mix, ref["ws_mix"], 1e-5, "ws_mix")
        assert_close(G.synthesis(mix), ref["img_mix"], 1e-4, "img_mix")
        if "img_latent_avg" in ref.files:
            la = torch.from_numpy(ref["latent_avg"])
            la_plus = la.reshape(1, -1, la.shape[-1]).expand(1, G.num_ws, -1) if la.ndim == 1 or la.shape[0] == 1 \
                else la[None]
            assert_close(G.synthesis(la_plus), ref["img_latent_avg"], 1e-4, "img_latent_avg")
            center = la.reshape(-1, la.shape[-1])[0]
            ws_t = center.lerp(G.mapping(z), psi)
            assert_close(G.synthesis(ws_t), ref["img_z_trunc_latent_avg"], 1e-4, "img_z_trunc_latent_avg")


def test_discriminator(case):
    path, ref, _ = case
    if not any(k.startswith("d/") for k in ref.files):
        pytest.skip("this file has no discriminator")
    D = generators.load(path, network="D")
    with torch.no_grad():
        for key in ("img_z", "img_z_trunc", "img_wplus"):
            assert_close(D(torch.from_numpy(ref[key])), ref["d_" + key], 1e-4, f"D({key})")
        single = torch.cat([D(torch.from_numpy(ref["img_z"][i:i + 1])) for i in range(ref["img_z"].shape[0])])
        assert_close(single, ref["d_img_z_single"], 1e-4, "D single")
