"""NVIDIA fixtures through the public API: parameters exact, ws 1e-5, images and D logits 1e-4."""
import numpy as np
import pytest
import torch

import generators
from conftest import assert_close, fixture_files, need_shared

PKLS = [p for p in fixture_files("nvidia", "*.pkl") if not p.name.startswith("sg3_t")]


def _ids(paths):
    return [p.stem for p in paths]


@pytest.fixture(scope="module", params=PKLS or [None], ids=_ids(PKLS) or ["absent"])
def case(request):
    if request.param is None:
        need_shared("nvidia")
        pytest.skip("no StyleGAN2 NVIDIA fixtures")
    path = request.param
    ref = np.load(path.with_suffix(".npz"))
    return path, ref


def test_parameters_exact(case):
    path, ref = case
    for net, prefix in (("G_ema", "G_ema/"), ("D", "D/")):
        m = generators.load(path, network=net)
        sd = m.state_dict()
        keys = [k[len(prefix):] for k in ref.files if k.startswith(prefix)]
        assert sorted(keys) == sorted(sd), f"{net}: state-dict keys differ"
        for k in keys:
            a, b = sd[k], ref[prefix + k]
            assert a.dtype == torch.from_numpy(b).dtype and tuple(a.shape) == b.shape, k
            assert torch.equal(a, torch.from_numpy(b)), f"{net}.{k} not bit-exact"


def test_mapping_synthesis_discriminator(case):
    path, ref = case
    G = generators.load(path)
    D = generators.load(path, network="D")
    z, c = torch.from_numpy(ref["z"]), torch.from_numpy(ref["c"])
    cutoff = int(ref["truncation_cutoff"])
    psi = float(ref["truncation_psi"])
    with torch.no_grad():
        ws1 = G.mapping(z, c, truncation_psi=1)
        ws7 = G.mapping(z, c, truncation_psi=psi, truncation_cutoff=cutoff)
        assert_close(ws1, ref["ws_psi1"], 1e-5, "ws_psi1")
        assert_close(ws7, ref["ws_psi07"], 1e-5, "ws_psi07")
        for fused in (None, False, True):
            assert_close(G.synthesis(ws1, noise_mode="const", fused_modconv=fused), ref["img_psi1"], 1e-4,
                         f"img_psi1 fused={fused}")
        assert_close(G(z, c, truncation_psi=psi, truncation_cutoff=cutoff, noise_mode="const"), ref["img_psi07"],
                     1e-4, "img_psi07")
        for key in ("img_psi1", "img_psi07", "rand_img"):
            assert_close(D(torch.from_numpy(ref[key]), c), ref["d_" + key], 1e-4, f"D({key})")


def test_raw_training_generator_checksums(case):
    path, ref = case
    G = generators.load(path, network="G")
    sd = G.state_dict()
    for k in ref.files:
        if k.startswith("G_checksum/"):
            t = sd[k[len("G_checksum/"):]].double()
            np.testing.assert_allclose([t.sum().item(), t.square().sum().item()], ref[k], rtol=1e-12, atol=1e-12)


def test_batch_size_independent(case):
    """A batch of 1 gives the same image as the same sample inside a batch (both conv paths)."""
    path, ref = case
    G = generators.load(path)
    ws = G.mapping(torch.from_numpy(ref["z"]), torch.from_numpy(ref["c"]))
    with torch.no_grad():
        single = torch.cat([G.synthesis(ws[i:i + 1]) for i in range(ws.shape[0])])
    assert_close(single, ref["img_psi1"], 1e-4, "per-sample synthesis")
