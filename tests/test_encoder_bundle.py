"""gankit's shipped encoder format (safetensors + JSON), compact map2style heads, HyperStyle on e4e."""
import json

import pytest
import torch

import encoders
import generators
from encoders.building import create
from encoders.bundle import EncoderBundleError, read_bundle, write_bundle

from test_encoders_training import tiny_g


def _gen_file(G, tmp_path):
    path = tmp_path / "g.safetensors"
    generators.save(G, path)
    return path


def _x(n=3, size=32, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _perturb(module, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)


def test_compact_heads_average_what_is_left():
    G = tiny_g()
    m = create("e4e", G, widths=[8, 10, 12, 16], depths=[1, 1, 1, 1], input_size=64, head_convs=1).eval()
    assert [len(h.convs) // 2 for h in m.encoder.styles] == [1] * G.num_ws
    x = _x(2, 64)
    feats = m.encoder.pyramid(x)
    head = m.encoder.styles[0]
    # by hand: one stride-2 conv, LeakyReLU, mean over the remaining map, then the linear layer
    ref = head.linear(torch.nn.functional.leaky_relu(head.convs[0](feats[0]), 0.01).mean(dim=(2, 3)))
    with torch.no_grad():
        assert torch.allclose(m.encoder(x)[:, 0], ref, atol=1e-6)
    with pytest.raises(encoders.EncoderError, match="head_convs"):
        create("e4e", G, widths=[8, 10, 12, 16], depths=[1, 1, 1, 1], input_size=64, head_convs=[1, 2])


def test_bundle_round_trip_and_generator_check(tmp_path):
    G = tiny_g()
    gfile = _gen_file(G, tmp_path)
    m = create("e4e", G, widths=[8, 10, 12, 16], depths=[1, 1, 1, 1], input_size=64, head_convs=[1] * G.num_ws)
    _perturb(m.encoder)
    st = write_bundle(m.eval(), tmp_path / "enc", generator=str(gfile), record={"steps": 3})
    assert st.name == "enc.safetensors" and (tmp_path / "enc.json").is_file()
    cfg = json.loads((tmp_path / "enc.json").read_text())
    assert cfg["opts"]["input_size"] == 64 and cfg["record"] == {"steps": 3}
    loaded = encoders.load(st)
    assert type(loaded).__name__ == "E4E" and loaded.input_size == 64
    x = _x()
    with torch.no_grad():
        a, b = m.invert(x), loaded.invert(x)
    assert torch.allclose(a["ws"], b["ws"], atol=1e-6) and torch.allclose(a["images"], b["images"], atol=1e-5)
    # the generator file changes: the encoder no longer fits it
    G2 = tiny_g()
    _perturb(G2, seed=9)
    generators.save(G2, gfile)
    with pytest.raises(EncoderBundleError, match="another hash"):
        encoders.load(st)
    # a bundle is the pair
    (tmp_path / "enc.json").unlink()
    with pytest.raises(EncoderBundleError, match="config enc.json is missing"):
        read_bundle(st)


def test_bundle_rejects_bad_files(tmp_path):
    (tmp_path / "a.json").write_text("{not json")
    (tmp_path / "a.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(EncoderBundleError, match="not readable JSON"):
        encoders.load(tmp_path / "a.safetensors")
    (tmp_path / "a.json").write_text(json.dumps({"format": "gankit-encoder", "generator": {"name": "x"}}))
    with pytest.raises(EncoderBundleError, match="cannot read the tensors"):
        encoders.load(tmp_path / "a.safetensors")


def test_hyperstyle_on_top_of_e4e_saves_and_loads(tmp_path):
    G = tiny_g()
    gfile = _gen_file(G, tmp_path)
    e4e = create("e4e", G, widths=[8, 10, 12, 16], depths=[1, 1, 1, 1], input_size=32, head_convs=1)
    _perturb(e4e.encoder)
    e4e.latent_avg.add_(0.1)
    hs = create("hyperstyle", G, widths=[8, 10, 12, 16], depths=[1, 1, 1, 1], input_size=32,
                w_encoder=e4e.encoder, latent_avg=e4e.latent_avg, z_dim=8, hyper_hidden=8, refine_hidden=8,
                refine_out=8).eval()
    _perturb(hs.hypernet, seed=3)
    x = _x()
    with torch.no_grad():
        out = hs.invert(x, iters=2)
        # the initial codes are the e4e inversion
        assert torch.allclose(out["ws"], e4e.eval().invert(x)["ws"], atol=1e-6)
    for path in (tmp_path / "hs.pt", tmp_path / "hs.safetensors"):
        if path.suffix == ".pt":
            encoders.save(hs, path)
        else:
            write_bundle(hs, path, generator=str(gfile))
        back = encoders.load(path)
        assert type(back.w_encoder).__name__ == "Encoder4Editing"
        with torch.no_grad():
            again = back.invert(x, iters=2)
        assert torch.allclose(again["images"], out["images"], atol=1e-5)
        assert set(again["offsets"]) == set(out["offsets"])
    # referencing the e4e bundle instead of copying its tensors
    write_bundle(e4e, tmp_path / "e4e.safetensors", generator=str(gfile))
    write_bundle(hs, tmp_path / "hs2.safetensors", generator=str(gfile), w_encoder=tmp_path / "e4e.safetensors")
    from safetensors import safe_open
    with safe_open(str(tmp_path / "hs2.safetensors"), "pt") as f:
        assert not any(k.startswith("w_encoder.") for k in f.keys())
    with torch.no_grad():
        again = encoders.load(tmp_path / "hs2.safetensors").invert(x, iters=2)
    assert torch.allclose(again["images"], out["images"], atol=1e-5)
    _perturb(e4e.encoder, seed=4)
    write_bundle(e4e, tmp_path / "e4e.safetensors", generator=str(gfile))
    with pytest.raises(EncoderBundleError, match="on top of another e4e.safetensors"):
        encoders.load(tmp_path / "hs2.safetensors")
