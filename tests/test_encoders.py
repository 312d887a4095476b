"""Encoders: the reference fixtures (pSp, e4e, ReStyle, HyperStyle, ArcFace IR-SE) and StyleGAN3 use."""
import numpy as np
import pytest
import torch

import encoders
from encoders.backbones import arcface_input
from encoders.hyperstyle import synthesize_with_offsets, weight_layers
from inversion.methods import InversionMethodError, invert
from inversion.result import InversionResult

from conftest import assert_close, need_shared

TOL = 1e-4       # the fixtures README: atol = rtol = 1e-4 for codes, images, deltas, raw embeddings
TOL_NORM = 1e-5  # normalised embeddings, cosine, loss


def u8(a):
    return torch.from_numpy(a)


def to_input(a):
    return (u8(a).float() / 255 - 0.5) / 0.5


# ---------------------------------------------------------------------------------------- fixtures


def test_arcface_ir_se50_fixture():
    d = need_shared("encoders", "ir_se50")
    net = encoders.load(d / "model_ir_se50.pth")
    assert isinstance(net, encoders.ArcFace)
    z = np.load(d / "id_loss.npz")
    with torch.no_grad():
        fa = arcface_input(to_input(z["images_a_u8"]))
        fb = arcface_input(to_input(z["images_b_u8"]))
        assert_close(fa, z["face_input_a"], TOL, "face_input_a")
        assert_close(net.embed_raw(fa), z["embedding_raw_a"], TOL, "embedding_raw_a")
        assert_close(net.embed_raw(fb), z["embedding_raw_b"], TOL, "embedding_raw_b")
        ea, eb = net(fa), net(fb)
    assert_close(ea, z["embedding_a"], TOL_NORM, "embedding_a")
    assert_close(eb, z["embedding_b"], TOL_NORM, "embedding_b")
    cos = (ea * eb).sum(1)
    assert_close(cos, z["cosine"], TOL_NORM, "cosine")
    assert_close((1 - cos).mean(), z["id_loss"], TOL_NORM, "id_loss")


@pytest.mark.parametrize("name,cls", [("psp", encoders.PSP), ("e4e", encoders.E4E)])
def test_psp_e4e_fixture(name, cls):
    d = need_shared("encoders", name)
    model = encoders.load(d / f"{name}_checkpoint.pt")
    assert type(model) is cls and model.G.num_ws == 10 and model.input_size == 256
    z = np.load(d / f"{name}_expected.npz")
    with torch.no_grad():
        x = model.prepare(u8(z["x_u8"]))
        assert_close(model.encoder(x), z["codes_raw"], TOL, "codes_raw")
        out = model.invert(u8(z["x_u8"]))
    assert_close(out["ws"], z["codes"], TOL, "codes")
    assert_close(out["images"], z["images"], TOL, "images")
    if name == "e4e":
        with torch.no_grad():
            for s in range(z["codes_raw_by_stage"].shape[0]):
                assert_close(model.encoder(x, stage=s), z["codes_raw_by_stage"][s], TOL, f"stage {s}")


@pytest.mark.parametrize("name,progressive", [("restyle_psp", False), ("restyle_e4e", True)])
def test_restyle_fixture_per_iteration(name, progressive):
    d = need_shared("encoders", name)
    model = encoders.load(d / f"{name}_checkpoint.pt")
    assert isinstance(model, encoders.ReStyle) and model.encoder.progressive is progressive
    z = np.load(d / f"{name}_expected.npz")
    with torch.no_grad():
        assert_close(model.synthesize(model.latent_avg[None])[0], z["avg_image_native"], TOL, "avg image")
        out = model.invert(u8(z["x_u8"]), iters=3)
    assert len(out["history"]) == 3
    for t, h in enumerate(out["history"]):
        assert_close(h["deltas"], z["deltas"][t], TOL, f"deltas[{t}]")
        assert_close(h["ws"], z["codes"][t], TOL, f"codes[{t}]")
        assert_close(h["images"], z["images"][t], TOL, f"images[{t}]")
    assert_close(out["ws"], z["codes"][2], TOL, "final codes")


def _hyperstyle():
    d = need_shared("encoders", "hyperstyle")
    return d, encoders.load(d / "hyperstyle_checkpoint.pt", w_encoder=d / "w_encoder_checkpoint.pt")


def test_hyperstyle_fixture_offsets_and_images():
    d, model = _hyperstyle()
    z = np.load(d / "hyperstyle_expected.npz")
    with torch.no_grad():
        x = model.prepare(u8(z["x_u8"]))
        assert_close(model.w_encoder(x), z["w_codes_raw"], TOL, "w_codes_raw")
        out = model.invert(u8(z["x_u8"]), iters=2)
    assert_close(out["ws"], z["w_codes"], TOL, "w_codes")
    assert_close(out["initial_images"], z["w_image"], TOL, "w_image")
    names = [k for k in z.files if k.startswith("delta_it")]
    assert len(names) == 2 * 13
    for k in names:                                    # delta_it{t}_L{jj}_{layer}
        t, j = int(k[len("delta_it")]), int(k.split("_L")[1][:2])
        assert_close(out["history"][t]["deltas"][j], z[k], TOL, k)
    for t in range(2):
        assert_close(out["history"][t]["images"], z["images"][t], TOL, f"images[{t}]")
    # untuned layers have no offset; the accumulated offsets applied by hand give the final image
    tuned = {0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 16}
    assert [j for j, dl in enumerate(out["history"][0]["deltas"]) if dl is not None] == sorted(tuned)
    with torch.no_grad():
        again = synthesize_with_offsets(model.G, out["ws"], out["offsets"])
    assert_close(again, z["images"][1], TOL, "images via synthesize_with_offsets")


def test_hyperstyle_needs_its_w_encoder():
    d = need_shared("encoders", "hyperstyle")
    with pytest.raises(encoders.EncoderCheckpointError, match="w_encoder=PATH"):
        encoders.load(d / "hyperstyle_checkpoint.pt")


def test_w_encoder_file_loads_as_psp_in_w():
    d = need_shared("encoders", "hyperstyle")
    model = encoders.load(d / "w_encoder_checkpoint.pt")
    z = np.load(d / "hyperstyle_expected.npz")
    with torch.no_grad():
        raw = model.encoder(model.prepare(u8(z["x_u8"])))
    assert_close(raw, z["w_codes_raw"], TOL, "w_codes_raw")
    assert model.meta["kind"] == "w_encoder"


# ---------------------------------------------------------------------------------------- invert()


def test_invert_dispatch_matches_model_and_checks_method():
    d = need_shared("encoders", "restyle_e4e")
    z = np.load(d / "restyle_e4e_expected.npz")
    r = invert(u8(z["x_u8"]), method="restyle", encoder=d / "restyle_e4e_checkpoint.pt", iters=3, batch=1)
    assert isinstance(r, InversionResult) and r.method == "restyle" and r.space == "w+"
    assert_close(r.ws, z["codes"][2], TOL, "ws")
    assert_close(r.images, z["images"][2], TOL, "images")
    assert r.history["mse"].shape == (3, 2) and r.losses["mse"].shape == (2,)
    assert np.allclose(r.history["mse"][-1], r.losses["mse"])
    with pytest.raises(InversionMethodError, match="restyle model, not e4e"):
        invert(u8(z["x_u8"]), method="e4e", encoder=d / "restyle_e4e_checkpoint.pt")
    with pytest.raises(InversionMethodError, match="unknown method"):
        invert(u8(z["x_u8"]), method="nope", encoder=d / "restyle_e4e_checkpoint.pt")


def test_invert_hyperstyle_returns_offsets():
    d, model = _hyperstyle()
    z = np.load(d / "hyperstyle_expected.npz")
    r = invert(u8(z["x_u8"]), method="hyperstyle", encoder=model, iters=2)
    assert r.space == "w" and len(r.offsets) == 13
    assert r.offsets["synthesis.b128.conv0.weight"].shape == (2, 8, 16, 3, 3)
    assert_close(r.images, z["images"][1], TOL, "images")


def test_load_rejects_other_files(tmp_path, monkeypatch):
    p = tmp_path / "x.pt"
    torch.save({"foo": torch.zeros(1)}, p)
    with pytest.raises(encoders.EncoderCheckpointError, match="not an encoder checkpoint"):
        encoders.load(p)
    from generators.registry import RegistryError
    monkeypatch.setenv("GANKIT_HOME", str(tmp_path / "cache"))     # empty cache: nothing is downloaded
    with pytest.raises(RegistryError, match="not downloaded: get https://drive.google.com/"):
        encoders.load("e4e-ffhq-encode")
    with pytest.raises(encoders.EncoderCheckpointError, match="no such file or encoder registry name"):
        encoders.load(tmp_path / "missing.pt")


# ------------------------------------------------------------------------------ StyleGAN2/3, offsets


def tiny_sg3():
    from generators import stylegan3
    torch.manual_seed(1)
    return stylegan3.Generator(z_dim=16, c_dim=0, w_dim=16, img_resolution=16, img_channels=3,
                               mapping_kwargs=dict(num_layers=1),
                               synthesis_kwargs=dict(channel_base=512, channel_max=32, num_layers=6, conv_clamp=2.0,
                                                     magnitude_ema_beta=0.9)).eval()


def tiny_sg2():
    from generators.stylegan2 import Generator
    torch.manual_seed(2)
    G = Generator(z_dim=16, w_dim=16, img_resolution=16, img_channels=3, mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(channels={4: 16, 8: 16, 16: 8})).eval()
    with torch.no_grad():
        for res in G.synthesis.block_resolutions:
            for name in ("conv0", "conv1"):
                layer = getattr(getattr(G.synthesis, f"b{res}"), name, None)
                if layer is not None:
                    layer.noise_strength.fill_(0.3)
    return G


TINY = dict(widths=[8, 10, 12, 16], depths=[1, 1, 1, 1], input_size=64, z_dim=8, hyper_hidden=8, refine_hidden=8,
            refine_out=8)


@pytest.mark.parametrize("method", ["psp", "e4e", "restyle", "hyperstyle"])
def test_encoders_with_stylegan3_round_trip(method, tmp_path):
    G = tiny_sg3()
    model = encoders.create(method, G, **TINY).eval()
    x = torch.rand(2, 3, 40, 40) * 2 - 1                      # any input size: resized to input_size
    with torch.no_grad():
        out = model.invert(x, iters=2) if method in ("restyle", "hyperstyle") else model.invert(x)
    assert out["ws"].shape == (2, G.num_ws, G.w_dim) and out["images"].shape == (2, 3, 16, 16)
    if method == "hyperstyle":
        # every non-toRGB StyleGAN3 layer gets an offset of its weight's shape
        assert len(out["offsets"]) == len(weight_layers(G)) - 1
    else:
        with torch.no_grad():
            assert_close(out["images"], G.synthesis(out["ws"]), 1e-6, "images = G(ws)")
    encoders.save(model, tmp_path / "enc.pt", opts={"note": "test"})
    again = encoders.load(tmp_path / "enc.pt")
    assert type(again) is type(model) and type(again.G) is type(G)
    with torch.no_grad():
        out2 = again.invert(x, iters=2) if method in ("restyle", "hyperstyle") else again.invert(x)
    assert torch.equal(out2["ws"], out["ws"]) and torch.equal(out2["images"], out["images"])


@pytest.mark.parametrize("make", [tiny_sg2, tiny_sg3])
def test_offsets_semantics(make):
    """W * (1 + delta): a uniform delta on a demodulated (or weight-normalised) conv cancels exactly;
    a non-uniform one changes only the samples it is given to."""
    G = make()
    ws = G.mapping(torch.randn(2, G.z_dim), None)
    layers = weight_layers(G)
    name, layer = next((n, m) for n, m in layers if m.weight.shape[-1] == 3)
    shape = (2,) + tuple(layer.weight.shape)
    with torch.no_grad():
        base = G.synthesis(ws, noise_mode="const")
        same = synthesize_with_offsets(G, ws, {name: torch.full(shape, 0.7)})
        d = torch.zeros(shape)
        d[0] = torch.randn(shape[1:]) * 0.5
        changed = synthesize_with_offsets(G, ws, {name: d})
        again = G.synthesis(ws, noise_mode="const")          # no stale weight caches afterwards
    assert_close(same, base, 1e-5, "uniform delta")
    assert float((changed[0] - base[0]).abs().max()) > 1e-3
    assert_close(changed[1], base[1], 1e-6, "sample without offset")
    assert torch.equal(again, base)
    with pytest.raises(encoders.EncoderError, match="unknown generator weights"):
        synthesize_with_offsets(G, ws, {"synthesis.nope.weight": d})


def test_offsets_are_differentiable():
    G = tiny_sg2()
    ws = G.mapping(torch.randn(1, G.z_dim), None)
    name, layer = weight_layers(G)[0]
    d = torch.zeros((1,) + tuple(layer.weight.shape), requires_grad=True)
    synthesize_with_offsets(G, ws, {name: d}).square().mean().backward()
    assert d.grad is not None and float(d.grad.abs().sum()) > 0


def test_cli_invert_reads_image_files(tmp_path):
    d = need_shared("encoders", "psp")
    z = np.load(d / "psp_expected.npz")
    from generators.images import save_image
    paths = []
    for i, a in enumerate(z["x_u8"]):
        paths.append(tmp_path / f"{i}.png")
        save_image(a.transpose(1, 2, 0), paths[-1])
    r = encoders.cli_invert([str(p) for p in paths], d / "psp_checkpoint.pt", method="psp", iters=None)
    assert r.method == "psp" and r.ws.shape == (2, 10, 12)
    assert_close(r.images, z["images"], TOL, "images from PNG files")   # lossless PNG, already 256 px
    with pytest.raises(encoders.EncoderError, match="cannot read image"):
        encoders.cli_invert([str(tmp_path / "nope.png")], d / "psp_checkpoint.pt")


def test_invert_dispatches_to_the_optimizers():
    pytest.importorskip("inversion.projection")
    G = tiny_sg2()
    with torch.no_grad():
        x = G.synthesis(G.mapping(torch.randn(1, G.z_dim), None))
    r = invert(x, method="projection", G=G, iters=2, loss="mse", w_avg_samples=50, progress=False)
    assert isinstance(r, InversionResult) and r.ws.shape == (1, G.num_ws, G.w_dim)
    with pytest.raises(InversionMethodError, match="needs a generator"):
        invert(x, method="pti")
