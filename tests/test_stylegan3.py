"""StyleGAN3 (T and R): NVIDIA's sg3_t_32 fixture through the public API, the filtered leaky ReLU
against its definition, geometry formulas, and R / conditional nets through the pickle reader."""
import json

import numpy as np
import pytest
import torch

import generators
from conftest import assert_close, need_shared
from generators import ops, stylegan3
from generators.formats.nvidia_pkl import read_nvidia_pkl, read_sg3_generator
from generators.formats.safe_pickle import PersistentObject, load_pickle
from generators.spec import CheckpointError
from test_ops import naive_upfirdn2d

NAME = "sg3_t_32"


@pytest.fixture(scope="module")
def fx():
    path = need_shared("nvidia", NAME + ".pkl")
    ref = np.load(path.with_suffix(".npz"))
    return path, {k: ref[k] for k in ref.files}


@pytest.fixture(scope="module")
def G(fx):
    return generators.load(fx[0])


# --------------------------------------------------------------------- the NVIDIA fixture


def test_parameters_exact_and_in_state_dict_order(fx, G):
    _, ref = fx
    sd = G.state_dict()
    assert list(sd) == [k[len("G_ema/"):] for k in ref if k.startswith("G_ema/")]
    for k, t in sd.items():
        r = torch.from_numpy(ref["G_ema/" + k])
        assert t.dtype == r.dtype and t.shape == r.shape and torch.equal(t, r), k
    assert type(G).__name__ == "Generator" and G.family == "stylegan3"
    assert G.num_ws == 16 and G.synthesis.layer_names[5] == "L5_52_27"
    json.dumps(G.init_kwargs)


def test_mapping_and_images(fx, G):
    _, ref = fx
    z, c = torch.from_numpy(ref["z"]), torch.from_numpy(ref["c"])
    psi, cutoff = float(ref["truncation_psi"]), int(ref["truncation_cutoff"])
    with torch.no_grad():
        ws1 = G.mapping(z, c, truncation_psi=1)
        ws7 = G.mapping(z, c, truncation_psi=psi, truncation_cutoff=cutoff)
        assert_close(ws1, ref["ws_psi1"], 1e-5, "ws_psi1")
        assert_close(ws7, ref["ws_psi07"], 1e-5, "ws_psi07")
        for fused in (None, False, True):
            assert_close(G.synthesis(ws1, noise_mode="const", fused_modconv=fused), ref["img_psi1"], 1e-4,
                         f"img_psi1 fused={fused}")
        assert_close(G(z, c, truncation_psi=psi, truncation_cutoff=cutoff), ref["img_psi07"], 1e-4, "img_psi07")
        assert_close(G.synthesis(ws1[1:2]), ref["img_psi1"][1:2], 1e-4, "single-sample synthesis")


def test_user_transform(fx, G):
    _, ref = fx
    tx, ty = (float(v) for v in ref["translate_xy"])
    for key, user in (("translate", stylegan3.make_transform((tx, ty), 0)),
                      ("rotate", stylegan3.make_transform((0, 0), float(ref["rotate_deg"])))):
        np.testing.assert_allclose(torch.linalg.inv(user).numpy(), ref["transform_" + key], atol=1e-6)
        G.synthesis.input.set_transform(user)
        try:
            assert_close(G.synthesis.input.transform, ref["transform_" + key], 1e-6, key)
            with torch.no_grad():
                G.synthesis.input.transform.copy_(torch.from_numpy(ref["transform_" + key]))
                img = G.synthesis(torch.from_numpy(ref["ws_psi1"]))
            assert_close(img, ref["img_" + key], 1e-4, "img_" + key)
        finally:
            G.synthesis.input.transform.copy_(torch.eye(3))
    G.set_transform((tx, ty), 0)
    assert_close(G.synthesis.input.transform, ref["transform_translate"], 1e-6, "set_transform")
    G.synthesis.input.transform.copy_(torch.eye(3))


def test_discriminator_and_raw_generator(fx):
    path, ref = fx
    D = generators.load(path, network="D")
    c = torch.from_numpy(ref["c"])
    with torch.no_grad():
        for key in ("img_psi1", "img_psi07", "rand_img"):
            assert_close(D(torch.from_numpy(ref[key]), c), ref["d_" + key], 1e-4, f"D({key})")
    sd = generators.load(path, network="G").state_dict()
    names = [k[len("G_checksum/"):] for k in ref if k.startswith("G_checksum/")]
    assert names == list(sd)
    for k in names:
        t = sd[k].double()
        np.testing.assert_allclose([t.sum().item(), t.square().sum().item()], ref["G_checksum/" + k], rtol=1e-12,
                                   atol=1e-12, err_msg=k)


def test_gankit_format_round_trip(fx, G, tmp_path):
    path, ref = fx
    dst = tmp_path / "x.safetensors"
    generators.convert(path, dst)
    G2 = generators.load(dst)
    assert G2.init_kwargs == G.init_kwargs and G2.family == "stylegan3"
    ws = torch.from_numpy(ref["ws_psi1"])
    with torch.no_grad():
        assert torch.equal(G2.synthesis(ws), G.synthesis(ws))
    generators.save(G2, tmp_path / "y.safetensors")
    assert generators.info(tmp_path / "y.safetensors")["networks"]["G_ema"]["num_ws"] == 16


def test_constructor_geometry_matches_the_pickle(fx):
    """The paper's formulas, from the fixture's init kwargs, give every layer's pickled geometry and filters."""
    obj = load_pickle(fx[0])
    kw = obj["G_ema"].state["_init_kwargs"]
    flat = {k: v for k, v in kw.items() if k not in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels",
                                                      "mapping_kwargs")}
    built = stylegan3.Generator(kw["z_dim"], kw["c_dim"], kw["w_dim"], kw["img_resolution"], kw["img_channels"],
                                mapping_kwargs=dict(kw["mapping_kwargs"]), **flat)
    spec = read_nvidia_pkl(obj, networks=["G_ema"]).networks["G_ema"]
    want = spec.kwargs["synthesis_kwargs"]
    assert built.synthesis.input_spec() == want["input"]
    for got, exp in zip(built.synthesis.layer_specs(), want["layers"]):
        for k, v in exp.items():
            assert got[k] == (pytest.approx(v, rel=1e-12) if isinstance(v, float) else v), (exp["name"], k)
    sd = built.state_dict()
    for k, t in spec.state_dict.items():
        if k.endswith(("up_filter", "down_filter")):
            assert_close(sd[k], t, 1e-6, k)


def test_filter_design_matches_scipy():
    signal = pytest.importorskip("scipy.signal")
    special = pytest.importorskip("scipy.special")
    for n, cut, width, fs in ((12, 2.0, 12.0, 32), (24, 4.0, 8.0, 64), (12, 45.25, 37.5, 256)):
        ours = stylegan3.design_lowpass_filter(n, cut, width, fs).double().numpy()
        np.testing.assert_allclose(ours, signal.firwin(numtaps=n, cutoff=cut, width=width, fs=fs), atol=1e-7)
        x = (np.arange(n) - (n - 1) / 2) / fs
        r = np.hypot(*np.meshgrid(x, x))
        f = special.j1(2 * cut * (np.pi * r)) / (np.pi * r)
        w = np.kaiser(n, signal.kaiser_beta(signal.kaiser_atten(n, width / (fs / 2))))
        f *= np.outer(w, w)
        np.testing.assert_allclose(stylegan3.design_lowpass_filter(n, cut, width, fs, radial=True).double().numpy(),
                                   f / f.sum(), atol=1e-7)


# ------------------------------------------------------------------ filtered leaky ReLU


def naive_filtered_lrelu(x, fu, fd, b, up, down, pad, gain, slope, clamp):
    """Definition: bias, zero insertion + pad + FIR (gain up^2), lrelu * gain, clamp, FIR, keep every down-th."""
    x = x.double() + b.double().reshape(1, -1, 1, 1)
    fu2 = np.ones((1, 1)) if fu is None else np.outer(fu, fu)
    x = naive_upfirdn2d(x, fu2, up, 1, pad, up * up)
    x = torch.where(x >= 0, x, x * slope) * gain
    x = x.clamp(-clamp, clamp)
    fd2 = np.ones((1, 1)) if fd is None else (fd.numpy() if fd.ndim == 2 else np.outer(fd, fd))
    return naive_upfirdn2d(x, fd2, 1, down, (0, 0, 0, 0), 1)


@pytest.mark.parametrize("case", [
    (12, 12, 2, 2, (9, 8, 9, 8)),               # T: same rate
    (24, 12, 4, 2, (-6, -9, -6, -9)),           # T: rate doubles (crop)
    (12, "radial", 2, 2, (11, 10, 11, 10)),     # non-separable 2-D down filter (direct)
    (24, "jinc", 4, 2, (-2, -5, -2, -5)),       # R: radial filter (a few separable terms)
    (7, 5, 3, 2, (3, 1, -2, 4)),                # odd taps, asymmetric padding
    (None, None, 1, 1, (0, 0, 0, 0)),           # ToRGB: bias + clamp only
])
@pytest.mark.parametrize("strip_bytes,rolling", [(1, True), (None, True), (1, False), (None, False)])
def test_filtered_lrelu_matches_definition(case, strip_bytes, rolling):
    nu, nd, up, down, pad = case
    g = torch.Generator().manual_seed(0)
    fu = None if nu is None else torch.rand(nu, generator=g) + 0.1 * torch.arange(nu)   # asymmetric taps
    if nd == "jinc":
        fd = stylegan3.design_lowpass_filter(12, 11.3, 9.4, 64, radial=True)
        assert ops._separable_terms(fd) is not None
    else:
        fd = None if nd is None else torch.rand(*((12, 12) if nd == "radial" else (nd,)), generator=g)
    x = torch.randn(2, 5, 23, 21, generator=g)
    b = torch.randn(5, generator=g)
    ref = naive_filtered_lrelu(x, fu, fd, b, up, down, pad, 1.3, 0.2, 2.5)
    with torch.no_grad():
        y = ops.filtered_lrelu(x.clone(), fu, fd, b, up, down, pad, gain=1.3, slope=0.2, clamp=2.5,
                               input_owned=True, strip_bytes=strip_bytes, rolling=rolling)
    assert y.shape == ref.shape
    assert_close(y, ref, 1e-5, f"filtered_lrelu {case}")
    if not rolling:
        return
    # gradients: against the same formula through the (differentiable) zero-stuffing upfirdn2d
    xg, xr = x.clone().requires_grad_(), x.double().requires_grad_()
    ops.filtered_lrelu(xg, fu, fd, b, up, down, pad, gain=1.3, slope=0.2, clamp=2.5, strip_bytes=strip_bytes) \
        .square().sum().backward()
    r = ops.upfirdn2d(xr + b.double().reshape(1, -1, 1, 1), None if fu is None else fu.double(), up=up,
                      padding=list(pad), gain=up * up)
    r = (torch.where(r >= 0, r, r * 0.2) * 1.3).clamp(-2.5, 2.5)
    r = ops.upfirdn2d(r, None if fd is None else fd.double(), down=down)
    r.square().sum().backward()
    assert_close(xg.grad, xr.grad, 1e-4, "grad")


# --------------------------------------------------- StyleGAN3-R and held-back-like settings


def small_r(c_dim=3, conv_clamp=2.0):
    torch.manual_seed(1)
    return stylegan3.Generator(z_dim=16, c_dim=c_dim, w_dim=16, img_resolution=16, img_channels=3,
                               mapping_kwargs=dict(num_layers=1),
                               synthesis_kwargs=dict(channel_base=256 * 2, channel_max=16 * 2, num_layers=6,
                                                     conv_kernel=1, use_radial_filters=True, conv_clamp=conv_clamp,
                                                     magnitude_ema_beta=0.9))


def test_stylegan3_r_from_scratch_trains_and_round_trips(tmp_path):
    G = small_r()
    layers = [getattr(G.synthesis, n) for n in G.synthesis.layer_names]
    assert all(layer.weight.shape[2:] == (1, 1) for layer in layers)
    assert any(layer.down_radial and layer.down_filter.ndim == 2 for layer in layers)
    z, c = torch.randn(2, 16), torch.eye(3)[[0, 2]]
    ws = G.mapping(z, c, update_emas=True)
    img = G.synthesis(ws, update_emas=True)
    assert img.shape == (2, 3, 16, 16) and torch.isfinite(img).all()
    img.square().mean().backward()
    assert G.synthesis.L1_36_32.weight.grad.abs().sum() > 0 and G.mapping.fc0.weight.grad.abs().sum() > 0
    G.eval().requires_grad_(False)
    generators.save(G, tmp_path / "r.safetensors")
    G2 = generators.load(tmp_path / "r.safetensors")
    with torch.no_grad():
        ws = G.mapping(z, c, truncation_psi=0.5, truncation_cutoff=3)
        assert torch.equal(G2.synthesis(ws), G.synthesis(ws))
        assert torch.equal(G2(z, c), G(z, c))


def _persistent(m):
    """An NVIDIA-style pickled state (what safe_pickle returns) of one of our modules."""
    st = {"training": False, "_parameters": dict(m._parameters), "_buffers": dict(m._buffers),
          "_non_persistent_buffers_set": set(), "_modules": {k: _persistent(v) for k, v in m._modules.items()}}
    name = type(m).__name__
    f64 = np.float64
    if name == "SynthesisLayer":
        for k, v in m.spec().items():
            st[k] = np.array(v) if k in ("in_size", "out_size") else (f64(v) if isinstance(v, float) else v)
        st["use_fp16"], st["w_dim"] = np.bool_(m.use_fp16), m.w_dim
        st["_buffers"].setdefault("up_filter", None)
        st["_buffers"].setdefault("down_filter", None)
    elif name == "SynthesisInput":
        st.update(w_dim=m.w_dim, channels=m.channels, size=np.array(m.size), sampling_rate=f64(m.sampling_rate),
                  bandwidth=f64(m.bandwidth))
    elif name == "SynthesisNetwork":
        st.update(w_dim=m.w_dim, num_ws=m.num_ws, img_resolution=m.img_resolution, img_channels=m.img_channels,
                  num_layers=m.num_layers, num_critical=m.num_critical, margin_size=m.margin_size,
                  output_scale=m.output_scale, num_fp16_res=m.num_fp16_res, layer_names=list(m.layer_names))
    elif name == "MappingNetwork":
        st.update(z_dim=m.z_dim, c_dim=m.c_dim, w_dim=m.w_dim, num_ws=m.num_ws, num_layers=m.num_layers,
                  w_avg_beta=m.w_avg_beta)
    elif name == "FullyConnectedLayer":
        st.update(in_features=m.in_features, out_features=m.out_features, activation=m.activation,
                  weight_gain=f64(m.weight_gain), bias_gain=m.bias_gain)
    elif name == "Generator":
        st.update(z_dim=m.z_dim, c_dim=m.c_dim, w_dim=m.w_dim, img_resolution=m.img_resolution,
                  img_channels=m.img_channels, num_ws=m.num_ws)
    return PersistentObject(name, st)


@pytest.mark.parametrize("c_dim,conv_clamp", [(3, 2.0), (0, None)])
def test_reader_rebuilds_r_and_conditional_nets_exactly(c_dim, conv_clamp):
    G = small_r(c_dim, conv_clamp).eval().requires_grad_(False)
    with torch.no_grad():
        for name in G.synthesis.layer_names:   # non-default EMA magnitudes matter
            getattr(G.synthesis, name).magnitude_ema.fill_(0.5 + len(name) / 10)
    spec = read_sg3_generator(_persistent(G))
    json.dumps(spec.kwargs)
    G2 = generators.build(spec).eval()
    assert list(G2.state_dict()) == list(G.state_dict())
    z = torch.randn(3, 16)
    c = torch.eye(3)[[0, 1, 2]] if c_dim else None
    with torch.no_grad():
        assert torch.equal(G2(z, c), G(z, c))
    bad = _persistent(G)
    bad.state["_modules"]["synthesis"].state["_modules"]["L2_36_32"].state["in_channels"] = 7
    with pytest.raises(CheckpointError, match="L2_36_32"):
        read_sg3_generator(bad)
