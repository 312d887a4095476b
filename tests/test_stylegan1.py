"""StyleGAN1: rosinality's style-based-gan-pytorch fixture and NVIDIA TF pickles built here.

The rosinality part checks the reader against ``sg1_train.npz`` (parameters exactly, after the
conversion documented in ``generators/formats/stylegan1_rosinality.py``; mapping, images with
progressive steps and fade-in, truncation, style mixing and D logits within the fixture
tolerance). The TF part writes tiny ``karras2019stylegan``-style pickles from the documented
variable names (``nvidia_formats.md`` (c)) with seeded random values, pickled the way NVIDIA's
``dnnlib.tflib.network.Network`` is, and compares gankit with a plain re-implementation of the
TF graph (``networks_stylegan.py`` semantics, float64) written below.
"""
from __future__ import annotations

import copyreg
import math
import pickle
import pickletools
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import generators
from conftest import assert_close, need_shared
from generators.formats import read_checkpoint
from generators.spec import CheckpointError

SG1 = ("community", "stylegan1_rosinality", "sg1_train.pt")
SQRT2 = math.sqrt(2)


# =========================================================================================
# rosinality fixture
# =========================================================================================


@pytest.fixture(scope="module")
def ros():
    path = need_shared(*SG1)
    ref = np.load(path.with_suffix(".npz"))
    G = generators.load(path)
    D = generators.load(path, network="D")
    return path, ref, G, D


def _t(a) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a))


def _expected_g(ref) -> dict:
    """gankit tensors from the npz copies of g_running/*, by the documented conversion."""
    g = {k[len("g_running/"):]: _t(ref[k]) for k in ref.files if k.startswith("g_running/")}
    used, out = set(), {}

    def take(k):
        used.add(k)
        return g[k]

    n_mlp = len([k for k in g if k.startswith("style.") and k.endswith("weight_orig")])
    for j in range(n_mlp):
        out[f"mapping.fc{j}.weight"] = take(f"style.{2 * j + 1}.linear.weight_orig")
        out[f"mapping.fc{j}.bias"] = take(f"style.{2 * j + 1}.linear.bias")
    blur = torch.tensor([[1.0, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16
    for i in range(9):
        r, P, p = 4 * 2 ** i, f"generator.progression.{i}", f"synthesis.b{4 * 2 ** i}."
        C = g[f"{P}.conv2.conv.weight_orig"].shape[0]
        if i == 0:
            out[p + "const"] = take(f"{P}.conv1.input")[0]
            out[p + "conv0.bias"] = torch.zeros(C)
        elif f"{P}.conv1.0.bias" in g:
            out[p + "conv0.weight"] = take(f"{P}.conv1.0.weight").permute(1, 0, 2, 3).flip([2, 3]) * 0.25
            out[p + "conv0.bias"] = take(f"{P}.conv1.0.bias")
            for b in ("weight", "weight_flip"):
                assert torch.equal(take(f"{P}.conv1.1.{b}"), blur.expand(C, 1, 3, 3))
        else:
            out[p + "conv0.weight"] = take(f"{P}.conv1.1.conv.weight_orig")
            out[p + "conv0.bias"] = take(f"{P}.conv1.1.conv.bias")
            for b in ("weight", "weight_flip"):
                assert torch.equal(take(f"{P}.conv1.2.{b}"), blur.expand(C, 1, 3, 3))
        out[p + "conv1.weight"] = take(f"{P}.conv2.conv.weight_orig")
        out[p + "conv1.bias"] = take(f"{P}.conv2.conv.bias")
        for j, lp in ((1, "conv0."), (2, "conv1.")):
            out[p + lp + "noise_strength"] = take(f"{P}.noise{j}.weight_orig").reshape(C) * math.sqrt(2 / C)
            out[p + lp + "affine.weight"] = take(f"{P}.adain{j}.style.linear.weight_orig") * SQRT2
            out[p + lp + "affine.bias"] = take(f"{P}.adain{j}.style.linear.bias")
        out[p + "torgb.weight"] = take(f"generator.to_rgb.{i}.conv.weight_orig") * SQRT2
        out[p + "torgb.bias"] = take(f"generator.to_rgb.{i}.conv.bias")
    assert used == set(g), sorted(set(g) - used)
    return out


def _expected_d(ref) -> dict:
    d = {k[len("discriminator/"):]: _t(ref[k]) for k in ref.files if k.startswith("discriminator/")}
    used, out = set(), {}

    def take(k):
        used.add(k)
        return d[k]

    for k in range(9):
        r = 2 ** (10 - k)
        out[f"b{r}.fromrgb.weight"] = take(f"from_rgb.{k}.0.conv.weight_orig")
        out[f"b{r}.fromrgb.bias"] = take(f"from_rgb.{k}.0.conv.bias")
        if k == 8:
            break
        out[f"b{r}.conv0.weight"] = take(f"progression.{k}.conv1.0.conv.weight_orig")
        out[f"b{r}.conv0.bias"] = take(f"progression.{k}.conv1.0.conv.bias")
        take(f"progression.{k}.conv2.0.weight"), take(f"progression.{k}.conv2.0.weight_flip")
        inner = "" if f"progression.{k}.conv2.1.weight" in d else "conv."
        suffix = "weight" if not inner else "weight_orig"
        out[f"b{r}.conv1.weight"] = take(f"progression.{k}.conv2.1.{inner}{suffix}")
        out[f"b{r}.conv1.bias"] = take(f"progression.{k}.conv2.1.{inner}bias")
    out["b4.conv.weight"] = take("progression.8.conv1.0.conv.weight_orig")
    out["b4.conv.bias"] = take("progression.8.conv1.0.conv.bias")
    w = take("progression.8.conv2.0.conv.weight_orig")
    out["b4.fc.weight"] = w.reshape(w.shape[0], -1)
    out["b4.fc.bias"] = take("progression.8.conv2.0.conv.bias")
    out["b4.out.weight"] = take("linear.linear.weight_orig") * SQRT2
    out["b4.out.bias"] = take("linear.linear.bias")
    assert used == set(d), sorted(set(d) - used)
    return out


def test_ros_parameters_exact(ros):
    _, ref, G, D = ros
    for net, exp in ((G, _expected_g(ref)), (D, _expected_d(ref))):
        sd = net.state_dict()
        for k, t in exp.items():
            assert torch.equal(sd[k], t), k
        extra = [k for k in sd if k not in exp]
        assert all(k.endswith(("noise_const", "w_avg")) for k in extra), extra
    assert G.init_kwargs["synthesis_kwargs"]["fused_up"] == [128, 256, 512, 1024]
    assert D.init_kwargs["fused_down"] == [128, 256, 512, 1024]
    assert G.init_kwargs["synthesis_kwargs"]["channels"] == {
        str(r): int(c) for r, c in zip(ref["channels_res"], ref["channels_width"])}
    assert G.z_dim == G.w_dim == int(ref["code_dim"]) and G.mapping.num_layers == int(ref["n_mlp"])
    assert (G.img_resolution, G.num_ws, D.img_resolution) == (1024, 18, 1024)
    assert D.init_kwargs["fromrgb_activation"] is bool(ref["from_rgb_activate"])
    assert (G.default_truncation_psi, G.default_truncation_cutoff) == (0.7, None)
    assert len(G.synthesis.noise_shapes()) == 9          # one shared map per block


def test_ros_train_generator_and_reread_are_deterministic(ros):
    path, _, G, _ = ros
    obj = torch.load(path, map_location="cpu", weights_only=True)
    G_train = generators.load(path, network="G")
    assert torch.equal(G_train.mapping.fc0.weight, obj["generator"]["style.1.linear.weight_orig"])
    assert not torch.equal(G_train.mapping.fc0.weight, G.mapping.fc0.weight)
    G2 = generators.load(path)
    for k, v in G.state_dict().items():   # seeded noise_const and the w_avg estimate included
        assert torch.equal(v, G2.state_dict()[k]), k
    with torch.no_grad():   # the w_avg estimate is the mean mapped w
        w = G.mapping(torch.randn(4096, G.z_dim, generator=torch.Generator().manual_seed(1)))[:, 0].mean(0)
    assert (w - G.mapping.w_avg).abs().max() < 0.1 * w.abs().max()


def test_ros_mapping(ros):
    _, ref, G, _ = ros
    with torch.no_grad():
        ws = G.mapping(_t(ref["z"]))
    assert ws.shape == (2, 18, G.w_dim) and torch.equal(ws[:, 0], ws[:, 17])
    assert_close(ws[:, 0], ref["w"], 1e-5, "w")


def _noise(ref, s, n):
    return [_t(ref[f"noise_{i}"][:n]) for i in range(s + 1)]


def test_ros_images_and_logits(ros):
    _, ref, G, D = ros
    runs = {f"s{s}_a{int(round(a * 100)):03d}" for s, a in zip(ref["run_steps"].tolist(), ref["run_alphas"].tolist())}
    assert {k[4:] for k in ref.files if k.startswith("img_s") and "_a" in k} == runs   # every run is checked
    for s, a in zip(ref["run_steps"].tolist(), ref["run_alphas"].tolist()):
        key = f"s{s}_a{int(round(a * 100)):03d}"
        img_ref = ref[f"img_{key}"]
        n = img_ref.shape[0]
        with torch.no_grad():
            img = G(_t(ref["z"][:n]), noise=_noise(ref, s, n), step=s, alpha=a)
            assert_close(img, img_ref, 1e-4, f"img_{key}")
            assert_close(D(_t(img_ref), step=s, alpha=a), ref[f"d_{key}"], 1e-4, f"d_{key}")


def test_ros_truncation_mixing_and_trunc_logits(ros):
    _, ref, G, D = ros
    t, psi = int(ref["trunc_step"]), float(ref["style_weight"])
    z, z2 = _t(ref["z"]), _t(ref["z2"])
    noise = _noise(ref, t, len(z))
    saved = G.mapping.w_avg.clone()
    try:
        G.mapping.w_avg.copy_(_t(ref["mean_style"][0]))
        with torch.no_grad():
            assert_close(G(z, truncation_psi=psi, noise=noise, step=t), ref[f"img_s{t}_trunc"], 1e-4, "trunc")
            assert_close(D(_t(ref[f"img_s{t}_trunc"]), step=t), ref[f"d_s{t}_trunc"], 1e-4, "d_trunc")
            for (a, b), trunc in (((0, 1), False), ((2, t), False), ((0, 1), True)):
                psi_ = psi if trunc else 1
                w1, w2 = G.mapping(z, truncation_psi=psi_), G.mapping(z2, truncation_psi=psi_)
                ws = w1.clone()
                ws[:, 2 * a:2 * b + 2] = w2[:, 2 * a:2 * b + 2]   # blocks a..b = layers 2a..2b+1
                key = f"img_s{t}_mix_{a}_{b}" + ("_trunc" if trunc else "")
                assert_close(G.synthesis(ws, noise=noise, step=t), ref[key], 1e-4, key)
    finally:
        G.mapping.w_avg.copy_(saved)


def test_ros_noise_modes_and_full_resolution(ros):
    _, ref, G, _ = ros
    z = _t(ref["z"])
    with torch.no_grad():
        a, b = G(z, noise_mode="random", step=3), G(z, noise_mode="random", step=3)
        assert not torch.equal(a, b)
        zeros = [torch.zeros(1, 1, 4 * 2 ** i, 4 * 2 ** i) for i in range(4)]
        assert torch.equal(G(z, noise_mode="none", step=3), G(z, noise=zeros, step=3))
        consts = [G.synthesis.b4.conv0.noise_const[None, None]] + [None] * 3
        assert torch.equal(G(z, step=3), G(z, noise=consts, step=3))
    # (the default, full-resolution render is checked through the CLI below)
    with pytest.raises(ValueError, match="step"):
        G.synthesis(G.mapping(z), step=9)
    with pytest.raises(ValueError, match="noise_mode"):
        G(z, noise_mode="fixed")
    with pytest.raises(ValueError, match="noise_shapes"):   # one map per block here, not per layer
        G(z, noise=[None] * 18, step=3)


def _save(tmp_path, name, obj):
    p = tmp_path / name
    torch.save(obj, p)
    return p


def test_ros_bare_state_dicts_and_nearest_variants(ros, tmp_path):
    """g_running / discriminator saved alone; the same networks rewritten without fused resampling
    (rosinality's ``fused=False``) and without the from_rgb activation must read and agree."""
    path, ref, G, D = ros
    obj = torch.load(path, map_location="cpu", weights_only=True)
    G_bare = generators.load(_save(tmp_path, "g.model", obj["g_running"]))
    D_bare = generators.load(_save(tmp_path, "d.model", obj["discriminator"]), network="D")
    assert all(torch.equal(v, G_bare.state_dict()[k]) for k, v in G.state_dict().items())
    assert all(torch.equal(v, D_bare.state_dict()[k]) for k, v in D.state_dict().items())

    g = dict(obj["g_running"])
    for i in range(5, 9):   # fused [in, out] kernel -> the equivalent nearest-up + conv kernel
        P = f"generator.progression.{i}"
        w = g.pop(f"{P}.conv1.0.weight")
        g[f"{P}.conv1.1.conv.weight_orig"] = w.permute(1, 0, 2, 3).flip([2, 3]) * 0.25
        g[f"{P}.conv1.1.conv.bias"] = g.pop(f"{P}.conv1.0.bias")
        g[f"{P}.conv1.2.weight"] = g.pop(f"{P}.conv1.1.weight")
        g[f"{P}.conv1.2.weight_flip"] = g.pop(f"{P}.conv1.1.weight_flip")
    d = dict(obj["discriminator"])
    for k in range(4):
        d[f"progression.{k}.conv2.1.conv.weight_orig"] = d.pop(f"progression.{k}.conv2.1.weight")
        d[f"progression.{k}.conv2.1.conv.bias"] = d.pop(f"progression.{k}.conv2.1.bias")
    G_n = generators.load(_save(tmp_path, "gn.pt", {"g_running": g}))
    D_n = generators.load(_save(tmp_path, "dn.pt", {"discriminator": d}), network="D")
    assert G_n.init_kwargs["synthesis_kwargs"]["fused_up"] == [] and D_n.init_kwargs["fused_down"] == []
    with torch.no_grad():
        img = G_n(_t(ref["z"]), noise=_noise(ref, 5, 2), step=5, alpha=0.5)
        assert_close(img, ref["img_s5_a050"], 1e-4, "nearest G")
        assert_close(D_n(_t(ref["img_s5_a050"]), step=5, alpha=0.5), ref["d_s5_a050"], 1e-4, "non-fused D")

    d = {k.replace(".0.conv.", ".conv.") if k.startswith("from_rgb.") else k: v
         for k, v in obj["discriminator"].items()}
    D_na = generators.load(_save(tmp_path, "dna.pt", {"discriminator": d}), network="D")
    assert D_na.init_kwargs["fromrgb_activation"] is False
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(D_na.b32.from_rgb(x), D_na.b32.fromrgb(x))
        assert torch.equal(D.b32.from_rgb(x), F.leaky_relu(D.b32.fromrgb(x), 0.2))


def test_ros_roundtrip_and_errors(ros, tmp_path):
    path, ref, G, D = ros
    ck = generators.convert(path, tmp_path / "sg1.safetensors")
    assert set(ck.networks) == {"G_ema", "G", "D"}
    G2 = generators.load(tmp_path / "sg1.safetensors")
    D2 = generators.load(tmp_path / "sg1.safetensors", network="D")
    z = _t(ref["z"])
    with torch.no_grad():
        assert torch.equal(G(z, step=4), G2(z, step=4))
        img = _t(ref["img_s3_a100"])
        assert torch.equal(D(img, step=3), D2(img, step=3))
    assert G2.gankit_meta["source_format"] == "rosinality"
    with pytest.raises(CheckpointError, match="StyleGAN2"):
        generators.convert(path, tmp_path / "x.pt")   # rosinality's StyleGAN2 format cannot hold it
    obj = torch.load(path, map_location="cpu", weights_only=True)
    bad = dict(obj["g_running"])
    bad["generator.extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="unexpected"):
        read_checkpoint(_save(tmp_path, "bad.pt", {"g_running": bad}))
    bad = {k: v for k, v in obj["g_running"].items() if k != "generator.progression.3.noise2.weight_orig"}
    with pytest.raises(CheckpointError, match="missing"):
        read_checkpoint(_save(tmp_path, "bad2.pt", {"g_running": bad}))


# =========================================================================================
# NVIDIA TF pickles (version 3), built here
# =========================================================================================


class _Network:
    """Pickles as NVIDIA's ``dnnlib.tflib.network.Network``: class global, empty args, NEWOBJ,
    the state dict, BUILD."""

    def __init__(self, state):
        self._state = state

    def __reduce_ex__(self, protocol):
        return copyreg.__newobj__, (type(self),), self._state


_Network.__module__, _Network.__qualname__, _Network.__name__ = "dnnlib.tflib.network", "Network", "Network"


def _dumps(obj, protocol) -> bytes:
    """Pickle with a stand-in ``dnnlib.tflib.network`` module (removed again afterwards)."""
    names = ("dnnlib", "dnnlib.tflib", "dnnlib.tflib.network")
    saved = {n: sys.modules.get(n) for n in names}
    mod = types.ModuleType("dnnlib.tflib.network")
    mod.Network = _Network
    try:
        sys.modules.update({"dnnlib": types.ModuleType("dnnlib"), "dnnlib.tflib": types.ModuleType("dnnlib.tflib"),
                            "dnnlib.tflib.network": mod})
        return pickle.dumps(obj, protocol=protocol)
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


def _nf(cfg, stage):
    return min(int(cfg["fmap_base"] / 2.0 ** stage), cfg["fmap_max"])


def _tf_vars(cfg, seed):
    """Documented StyleGAN1 variables with seeded values: (G own, mapping, synthesis, D)."""
    rng = np.random.RandomState(seed)

    def a(*shape, std=1.0, mean=0.0):
        return (rng.randn(*shape) * std + mean).astype(np.float32)

    R, K, Z, W, c = cfg["resolution"], 3, cfg["latent_size"], cfg["dlatent_size"], cfg["label_size"]
    L = 2 * int(math.log2(R)) - 2
    mapping = []
    if c:
        mapping.append(("LabelConcat/weight", a(c, Z)))
    fin = Z * (2 if c else 1)
    for i in range(cfg["mapping_layers"]):
        fout = W if i == cfg["mapping_layers"] - 1 else cfg["mapping_fmaps"]
        mapping += [(f"Dense{i}/weight", a(fin, fout, std=100.0)), (f"Dense{i}/bias", a(fout, std=30.0))]
        fin = fout
    syn = [("lod", np.float32(0))]
    syn += [(f"noise{i}", a(1, 1, 2 ** (i // 2 + 2), 2 ** (i // 2 + 2))) for i in range(L)]

    def epilogue(scope, C):
        return [(f"{scope}/Noise/weight", a(C, std=0.5)), (f"{scope}/bias", a(C, std=0.3)),
                (f"{scope}/StyleMod/weight", a(W, 2 * C)), (f"{scope}/StyleMod/bias", a(2 * C, std=0.3))]

    C4 = _nf(cfg, 1)
    syn.append(("4x4/Const/const", a(1, C4, 4, 4, std=0.5, mean=1.0)))
    syn += epilogue("4x4/Const", C4)
    syn.append(("4x4/Conv/weight", a(3, 3, C4, C4)))
    syn += epilogue("4x4/Conv", C4)
    for k in range(3, int(math.log2(R)) + 1):
        r, cin, cout = 2 ** k, _nf(cfg, k - 2), _nf(cfg, k - 1)
        syn.append((f"{r}x{r}/Conv0_up/weight", a(3, 3, cin, cout)))
        syn += epilogue(f"{r}x{r}/Conv0_up", cout)
        syn.append((f"{r}x{r}/Conv1/weight", a(3, 3, cout, cout)))
        syn += epilogue(f"{r}x{r}/Conv1", cout)
    log2 = int(math.log2(R))
    for k in range(2, log2 + 1):
        syn += [(f"ToRGB_lod{log2 - k}/weight", a(1, 1, _nf(cfg, k - 1), K)),
                (f"ToRGB_lod{log2 - k}/bias", a(K, std=0.3))]
    g_own = [("lod", np.float32(0)), ("dlatent_avg", a(W))]
    d = [("lod", np.float32(0))]
    for k in range(log2, 1, -1):
        d += [(f"FromRGB_lod{log2 - k}/weight", a(1, 1, K, _nf(cfg, k - 1))),
              (f"FromRGB_lod{log2 - k}/bias", a(_nf(cfg, k - 1), std=0.3))]
    for k in range(log2, 2, -1):
        r = 2 ** k
        d += [(f"{r}x{r}/Conv0/weight", a(3, 3, _nf(cfg, k - 1), _nf(cfg, k - 1))),
              (f"{r}x{r}/Conv0/bias", a(_nf(cfg, k - 1), std=0.3)),
              (f"{r}x{r}/Conv1_down/weight", a(3, 3, _nf(cfg, k - 1), _nf(cfg, k - 2))),
              (f"{r}x{r}/Conv1_down/bias", a(_nf(cfg, k - 2), std=0.3))]
    mb = 1 if cfg.get("mbstd_group_size", 4) > 1 else 0
    d += [("4x4/Conv/weight", a(3, 3, C4 + mb, C4)), ("4x4/Conv/bias", a(C4, std=0.3)),
          ("4x4/Dense0/weight", a(16 * C4, _nf(cfg, 0))), ("4x4/Dense0/bias", a(_nf(cfg, 0), std=0.3)),
          ("4x4/Dense1/weight", a(_nf(cfg, 0), max(c, 1))), ("4x4/Dense1/bias", a(max(c, 1), std=0.3))]
    return g_own, mapping, syn, d


_G_KEYS = ("latent_size", "dlatent_size", "mapping_layers", "mapping_fmaps", "fmap_base", "fmap_max", "fused_scale",
           "truncation_psi", "truncation_cutoff")
_D_KEYS = ("fmap_base", "fmap_max", "fused_scale", "mbstd_group_size")


def _state(name, func, static, variables, components=None):
    return {"version": 3, "name": name, "static_kwargs": dict(static), "components": components or {},
            "build_module_src": "# networks_stylegan.py (not needed, never run)\n", "build_func_name": func,
            "variables": list(variables)}


def make_tf_pickle(cfg, seed=0, protocol=4) -> bytes:
    """A (G, D, Gs) StyleGAN1 pickle as training_loop.py writes it (G and Gs share the config)."""
    base = dict(num_channels=3, resolution=cfg["resolution"], label_size=cfg["label_size"])
    g_static = dict(base, **{k: cfg[k] for k in _G_KEYS if k in cfg})
    d_static = dict(base, **{k: cfg[k] for k in _D_KEYS if k in cfg})
    nets = []
    for label, s in (("G", seed), ("Gs", seed + 1)):
        g_own, mapping, syn, _ = _tf_vars(cfg, s)
        comps = {"synthesis": _Network(_state("G_synthesis", "G_synthesis", g_static, syn)),
                 "mapping": _Network(_state("G_mapping", "G_mapping", dict(g_static, dlatent_broadcast=len(
                     [v for v in syn if v[0].startswith("noise")])), mapping))}
        nets.append(_Network(_state(label, "G_style", g_static, g_own, comps)))
    d = _Network(_state("D", "D_basic", d_static, _tf_vars(cfg, seed + 2)[3]))
    return _dumps((nets[0], d, nets[1]), protocol)


# --------------------------------------------------------------- TF graph in plain torch


def _w(v, gain, lrmul=1.0):
    return torch.from_numpy(np.asarray(v, np.float64)) * (gain / np.sqrt(np.prod(np.shape(v)[:-1])) * lrmul)


def _conv(x, v, gain=SQRT2):
    return F.conv2d(x, _w(v, gain).permute(3, 2, 0, 1), padding=np.shape(v)[0] // 2)


def _dense(x, v, gain=SQRT2, lrmul=1.0):
    return x.reshape(x.shape[0], -1) @ _w(v, gain, lrmul)


def _bias(x, v, lrmul=1.0):
    b = torch.from_numpy(np.asarray(v, np.float64)) * lrmul
    return x + (b if x.ndim == 2 else b.reshape(1, -1, 1, 1))


def _lrelu(x):
    return torch.maximum(x, 0.2 * x)


def _blur2d(x):
    f = torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64)
    f = (f[:, None] * f[None, :]) / 16
    return F.conv2d(x, f[None, None].repeat(x.shape[1], 1, 1, 1), padding=1, groups=x.shape[1])


def _upscale2d(x, factor=2):
    return x.repeat_interleave(factor, 2).repeat_interleave(factor, 3)


def _downscale2d(x):
    N, C, H, W = x.shape
    return x.reshape(N, C, H // 2, 2, W // 2, 2).mean(dim=(3, 5))


def _pad_shift_sum(w):   # TF: pad [kh, kw] by one, add the four one-pixel shifts
    w = F.pad(w.permute(2, 3, 0, 1), [1, 1, 1, 1]).permute(2, 3, 0, 1)
    return w[1:, 1:] + w[:-1, 1:] + w[1:, :-1] + w[:-1, :-1]


def _upscale2d_conv2d(x, v, fused):
    if not fused:
        return _conv(_upscale2d(x), v)
    w = _pad_shift_sum(_w(v, SQRT2).permute(0, 1, 3, 2))                    # [4, 4, out, in]
    return F.conv_transpose2d(x, w.permute(3, 2, 0, 1), stride=2, padding=1)  # SAME, output 2H


def _conv2d_downscale2d(x, v, fused):
    if not fused:
        return _downscale2d(_conv(x, v))
    w = _pad_shift_sum(_w(v, SQRT2)) * 0.25                                  # [4, 4, in, out]
    return F.conv2d(x, w.permute(3, 2, 0, 1), stride=2, padding=1)


def _instance_norm(x, eps=1e-8):
    x = x - x.mean(dim=(2, 3), keepdim=True)
    return x * torch.rsqrt(x.square().mean(dim=(2, 3), keepdim=True) + eps)


def _lerp_clip(a, b, t):
    return a + (b - a) * float(np.clip(t, 0, 1))


def tf_mapping(v, cfg, z, c=None, psi=None, cutoff=None, avg=None):
    x = torch.from_numpy(np.asarray(z, np.float64))
    if cfg["label_size"]:
        x = torch.cat([x, torch.from_numpy(np.asarray(c, np.float64)) @ torch.from_numpy(
            v["LabelConcat/weight"].astype(np.float64))], dim=1)
    x = x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + 1e-8)
    for i in range(cfg["mapping_layers"]):
        x = _lrelu(_bias(_dense(x, v[f"Dense{i}/weight"], SQRT2, 0.01), v[f"Dense{i}/bias"], 0.01))
    L = 2 * int(math.log2(cfg["resolution"])) - 2
    x = x[:, None].repeat(1, L, 1)
    if psi is not None and cutoff is not None:
        coefs = torch.where(torch.arange(L)[None, :, None] < cutoff, psi, 1.0).double()
        a = torch.from_numpy(np.asarray(avg, np.float64))
        x = a + (x - a) * coefs
    return x


def tf_synthesis(v, cfg, dl, lod_in=0.0):
    """G_synthesis with structure='linear' (the reference structure), noise from the variables."""
    R = cfg["resolution"]
    log2 = int(math.log2(R))
    fused = cfg.get("fused_scale", "auto")

    def epilogue(x, scope, i):
        x = x + torch.from_numpy(v[f"noise{i}"].astype(np.float64)) * torch.from_numpy(
            v[f"{scope}/Noise/weight"].astype(np.float64)).reshape(1, -1, 1, 1)
        x = _instance_norm(_lrelu(_bias(x, v[f"{scope}/bias"])))
        C = x.shape[1]
        style = _bias(_dense(dl[:, i], v[f"{scope}/StyleMod/weight"], gain=1), v[f"{scope}/StyleMod/bias"])
        style = style.reshape(-1, 2, C, 1, 1)
        return x * (style[:, 0] + 1) + style[:, 1]

    def torgb(res, x):
        lod = log2 - res
        return _bias(_conv(x, v[f"ToRGB_lod{lod}/weight"], gain=1), v[f"ToRGB_lod{lod}/bias"])

    N = dl.shape[0]
    x = torch.from_numpy(v["4x4/Const/const"].astype(np.float64)).repeat(N, 1, 1, 1)
    x = epilogue(x, "4x4/Const", 0)
    x = epilogue(_conv(x, v["4x4/Conv/weight"]), "4x4/Conv", 1)
    images = torgb(2, x)
    for res in range(3, log2 + 1):
        r, lod = 2 ** res, log2 - res
        f = (fused is True) or (fused == "auto" and r >= 128)
        x = epilogue(_blur2d(_upscale2d_conv2d(x, v[f"{r}x{r}/Conv0_up/weight"], f)), f"{r}x{r}/Conv0_up",
                     2 * res - 4)
        x = epilogue(_conv(x, v[f"{r}x{r}/Conv1/weight"]), f"{r}x{r}/Conv1", 2 * res - 3)
        images = _lerp_clip(torgb(res, x), _upscale2d(images), lod_in - lod)
    return images


def tf_discriminator(v, cfg, images, labels=None, lod_in=0.0):
    """D_basic with structure='linear'."""
    R = cfg["resolution"]
    log2 = int(math.log2(R))
    fused = cfg.get("fused_scale", "auto")
    group = cfg.get("mbstd_group_size", 4)

    def fromrgb(x, res):
        lod = log2 - res
        return _lrelu(_bias(_conv(x, v[f"FromRGB_lod{lod}/weight"]), v[f"FromRGB_lod{lod}/bias"]))

    def block(x, res):
        r = 2 ** res
        if res >= 3:
            x = _lrelu(_bias(_conv(x, v[f"{r}x{r}/Conv0/weight"]), v[f"{r}x{r}/Conv0/bias"]))
            f = (fused is True) or (fused == "auto" and r >= 128)
            return _lrelu(_bias(_conv2d_downscale2d(_blur2d(x), v[f"{r}x{r}/Conv1_down/weight"], f),
                                v[f"{r}x{r}/Conv1_down/bias"]))
        if group > 1:
            G = min(group, x.shape[0])
            s = x.shape
            y = x.reshape(G, -1, 1, s[1], s[2], s[3])
            y = y - y.mean(dim=0, keepdim=True)
            y = torch.sqrt(y.square().mean(dim=0) + 1e-8)
            y = y.mean(dim=(2, 3, 4), keepdim=True).mean(dim=2)               # [M, 1, 1, 1]
            x = torch.cat([x, y.repeat(G, 1, s[2], s[3])], dim=1)
        x = _lrelu(_bias(_conv(x, v["4x4/Conv/weight"]), v["4x4/Conv/bias"]))
        x = _lrelu(_bias(_dense(x, v["4x4/Dense0/weight"]), v["4x4/Dense0/bias"]))
        return _bias(_dense(x, v["4x4/Dense1/weight"], gain=1), v["4x4/Dense1/bias"])

    img = torch.from_numpy(np.asarray(images, np.float64))
    x = fromrgb(img, log2)
    for res in range(log2, 2, -1):
        lod = log2 - res
        x = block(x, res)
        img = _downscale2d(img)
        x = _lerp_clip(x, fromrgb(img, res - 1), lod_in - lod)
    scores = block(x, 2)
    if cfg["label_size"]:
        scores = (scores * torch.from_numpy(np.asarray(labels, np.float64))).sum(dim=1, keepdim=True)
    return scores


# --------------------------------------------------------------------------------- tests

CFG_A = dict(resolution=32, label_size=0, latent_size=8, dlatent_size=12, mapping_layers=3, mapping_fmaps=10,
             fmap_base=48, fmap_max=64)                        # widths 4:24 8:12 16:6 32:3, D fc 48
CFG_B = dict(resolution=16, label_size=3, latent_size=6, dlatent_size=6, mapping_layers=2, mapping_fmaps=6,
             fmap_base=32, fmap_max=16, fused_scale=True, mbstd_group_size=2, truncation_psi=0.5,
             truncation_cutoff=3)                              # conditional, fused resampling everywhere


@pytest.fixture(scope="module", params=[("A", 4), ("B", 3)], ids=["32px-protocol4", "16px-cond-fused-protocol3"])
def tf_case(request, tmp_path_factory):
    name, protocol = request.param
    cfg = CFG_A if name == "A" else CFG_B
    data = make_tf_pickle(cfg, seed=10, protocol=protocol)
    path = tmp_path_factory.mktemp("sg1tf") / f"karras2019stylegan-tiny-{name}.pkl"
    path.write_bytes(data)
    variables = {}
    for label, seed in (("G", 10), ("Gs", 11), ("D", 12)):
        g_own, mapping, syn, d = _tf_vars(cfg, seed)
        variables[label] = dict(d) if label == "D" else dict(g_own, **{f"m/{k}": x for k, x in mapping},
                                                             **{f"s/{k}": x for k, x in syn})
    return cfg, path, data, variables, protocol


def _split(vs):
    """(mapping variables, synthesis variables) of a generator's collected variables."""
    return ({k[2:]: x for k, x in vs.items() if k.startswith("m/")},
            {k[2:]: x for k, x in vs.items() if k.startswith("s/")})


def test_tf_pickle_is_written_like_nvidia(tf_case):
    _, _, data, _, protocol = tf_case
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(data)]
    names = [o for o, _ in ops]
    if protocol >= 4:
        assert ("SHORT_BINUNICODE", "dnnlib.tflib.network") in ops and "STACK_GLOBAL" in names
    else:
        assert ("GLOBAL", "dnnlib.tflib.network Network") in ops
    i = names.index("NEWOBJ")
    assert names[i - 1] == "EMPTY_TUPLE" and "BUILD" in names
    assert not any(m.split(".")[0] == "dnnlib" for m in sys.modules)


def test_tf_generator_matches_tf_graph(tf_case):
    cfg, path, _, variables, _ = tf_case
    ck = generators.read(path)
    assert ck.format == "nvidia-tf" and ck.meta["tf_version"] == 3
    assert [s.kind for s in ck.networks.values()] == ["stylegan1.Generator"] * 2 + ["stylegan1.Discriminator"]
    rng = np.random.RandomState(3)
    N = 4
    z = rng.randn(N, cfg["latent_size"])
    c = np.eye(max(cfg["label_size"], 1))[rng.randint(0, max(cfg["label_size"], 1), N)] if cfg["label_size"] else None
    zt = torch.from_numpy(z).float()
    ct = torch.from_numpy(c).float() if c is not None else None
    for net, label in (("G_ema", "Gs"), ("G", "G")):
        G = generators.load(path, network=net)
        m, s = _split(variables[label])
        R = cfg["resolution"]
        assert (G.img_resolution, G.num_ws, G.z_dim, G.w_dim, G.c_dim) == (
            R, 2 * int(math.log2(R)) - 2, cfg["latent_size"], cfg["dlatent_size"], cfg["label_size"])
        assert G.synthesis.channels == {2 ** k: _nf(cfg, k - 1) for k in range(2, int(math.log2(R)) + 1)}
        psi, cutoff = cfg.get("truncation_psi", 0.7), cfg.get("truncation_cutoff", 8)
        assert (G.default_truncation_psi, G.default_truncation_cutoff) == (psi, cutoff)
        with torch.no_grad():
            dl = tf_mapping(m, cfg, z, c)
            assert_close(G.mapping(zt, ct), dl.numpy(), 1e-5, f"{net} ws")
            dl_t = tf_mapping(m, cfg, z, c, psi, cutoff, variables[label]["dlatent_avg"])
            ws_t = G.mapping(zt, ct, truncation_psi=psi, truncation_cutoff=cutoff)
            assert_close(ws_t, dl_t.numpy(), 1e-5, f"{net} truncated ws")
            for lod in (0.0, 0.4):
                ref = tf_synthesis(s, cfg, dl_t, lod_in=lod).numpy()
                err = assert_close(G.synthesis(ws_t, alpha=1 - lod), ref, 1e-4, f"{net} image lod {lod}")
                print(f"{net} lod {lod}: max abs diff {err:.3g} (max |ref| {np.abs(ref).max():.3g})")
            ref = tf_synthesis(s, cfg, dl_t, lod_in=1.0).numpy()         # one level down, upscaled by TF
            low = G.synthesis(ws_t, step=int(math.log2(R)) - 3)
            assert_close(F.interpolate(low, scale_factor=2, mode="nearest"), ref, 1e-4, f"{net} lod 1")
            default = G(zt, ct, truncation_psi=G.default_truncation_psi,
                        truncation_cutoff=G.default_truncation_cutoff)
            assert torch.equal(default, G.synthesis(ws_t))


def test_tf_discriminator_matches_tf_graph(tf_case):
    cfg, path, _, variables, _ = tf_case
    D = generators.load(path, network="D")
    v = variables["D"]
    R, c_dim = cfg["resolution"], cfg["label_size"]
    rng = np.random.RandomState(5)
    for N in (4, 8, 2):
        img = rng.randn(N, 3, R, R).astype(np.float32)
        c = np.eye(c_dim)[rng.randint(0, c_dim, N)].astype(np.float32) if c_dim else None
        ct = torch.from_numpy(c) if c is not None else None
        with torch.no_grad():
            ref = tf_discriminator(v, cfg, img, c).numpy()
            err = assert_close(D(torch.from_numpy(img), ct), ref, 1e-4, f"D N={N}")
            print(f"D N={N}: max abs diff {err:.3g}")
            ref = tf_discriminator(v, cfg, img, c, lod_in=0.4).numpy()
            assert_close(D(torch.from_numpy(img), ct, alpha=0.6), ref, 1e-4, "D lod 0.4")
            ref = tf_discriminator(v, cfg, img, c, lod_in=1.0).numpy()
            low = F.avg_pool2d(torch.from_numpy(img), 2)
            assert_close(D(low, ct, step=int(math.log2(R)) - 3), ref, 1e-4, "D lod 1")


def test_tf_parameters_keep_tf_values(tf_case):
    cfg, path, _, variables, _ = tf_case
    sd = generators.read(path).networks["G_ema"].state_dict
    m, s = _split(variables["Gs"])
    R = cfg["resolution"]
    fused = cfg.get("fused_scale") is True
    w = s[f"{R}x{R}/Conv0_up/weight"].transpose(3, 2, 0, 1)
    assert np.array_equal(sd[f"synthesis.b{R}.conv0.weight"].numpy(), w[:, :, ::-1, ::-1] if fused else w)
    b = s[f"{R}x{R}/Conv1/StyleMod/bias"].copy()
    C = b.shape[0] // 2
    b[:C] += 1
    assert np.array_equal(sd[f"synthesis.b{R}.conv1.affine.bias"].numpy(), b)
    assert np.array_equal(sd["synthesis.b4.conv0.noise_strength"].numpy(), s["4x4/Const/Noise/weight"])
    assert np.array_equal(sd["synthesis.b8.conv1.noise_const"].numpy(), s["noise3"][0, 0])
    assert np.array_equal(sd["mapping.fc0.weight"].numpy(), m["Dense0/weight"].T)
    assert np.array_equal(sd["mapping.w_avg"].numpy(), variables["Gs"]["dlatent_avg"])
    G = generators.build(generators.read(path).networks["G_ema"])
    assert list(G.state_dict()) == list(sd)


def test_tf_roundtrip_through_gankit_format(tf_case, tmp_path):
    cfg, path, _, _, _ = tf_case
    generators.convert(path, tmp_path / "x.safetensors")
    c_dim = cfg["label_size"]
    z = torch.randn(4, cfg["latent_size"], generator=torch.Generator().manual_seed(0))
    c = torch.eye(c_dim)[[0, 1, 2, 0]] if c_dim else None
    for net in ("G_ema", "G"):
        a, b = generators.load(path, network=net), generators.load(tmp_path / "x.safetensors", network=net)
        assert a.init_kwargs == b.init_kwargs
        with torch.no_grad():
            assert torch.equal(a(z, c, truncation_psi=0.7, truncation_cutoff=2), b(z, c, truncation_psi=0.7,
                                                                                  truncation_cutoff=2))
    D, D2 = generators.load(path, network="D"), generators.load(tmp_path / "x.safetensors", network="D")
    img = torch.randn(4, 3, cfg["resolution"], cfg["resolution"])
    with torch.no_grad():
        assert torch.equal(D(img, c), D2(img, c))
    generators.save(D, tmp_path / "d.safetensors")   # a lone StyleGAN1 D is saved as "D"
    assert set(generators.read(tmp_path / "d.safetensors").networks) == {"D"}


def test_tf_errors(tf_case):
    cfg, path, _, variables, _ = tf_case
    from generators.formats.safe_pickle import load_pickle
    from generators.formats.stylegan1_tf import read_stylegan1_tf

    G, D, Gs = load_pickle(path)
    st = Gs.state["components"]["synthesis"].state
    st["variables"] = [(k, x) for k, x in st["variables"] if k != "noise2"]
    with pytest.raises(CheckpointError, match="noise2"):
        read_stylegan1_tf((G, D, Gs))
    st["variables"].append(("noise2", np.zeros((1, 1, 8, 8), np.float32)))
    st["variables"].append(("8x8/Extra/weight", np.zeros(3, np.float32)))
    with pytest.raises(CheckpointError, match="unexpected variables"):
        read_stylegan1_tf((G, D, Gs))
    G2, D2, Gs2 = load_pickle(path)
    Gs2.state["static_kwargs"]["use_instance_norm"] = False
    with pytest.raises(CheckpointError, match="use_instance_norm"):
        read_stylegan1_tf((G2, D2, Gs2))
    Gs2.state["static_kwargs"]["use_instance_norm"] = True
    Gs2.state["static_kwargs"]["some_new_option"] = 1
    ck = read_stylegan1_tf((G2, D2, Gs2))
    assert any("some_new_option" in n for n in ck.meta["notes"])


def _cli_info(src, kind):
    from click.testing import CliRunner
    from cli.main import main

    res = CliRunner().invoke(main, ["info", str(src)])
    assert res.exit_code == 0, res.output
    assert f"format:  {kind}" in res.output and "stylegan1.Generator" in res.output
    assert "stylegan1.Discriminator" in res.output and "channels: 4:" in res.output


def test_cli_info_and_generate_rosinality(ros, tmp_path):
    from click.testing import CliRunner
    from cli.main import main
    from PIL import Image

    _cli_info(ros[0], "rosinality")
    res = CliRunner().invoke(main, ["generate", "-g", str(ros[0]), "--seeds", "0", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert np.asarray(Image.open(tmp_path / "seed0000.png")).shape == (1024, 1024, 3)   # full resolution


def test_cli_info_and_generate_tf(tf_case, tmp_path):
    from click.testing import CliRunner
    from cli.main import main
    from PIL import Image

    from generators import images

    cfg, path, _, _, _ = tf_case
    _cli_info(path, "nvidia-tf")
    runner = CliRunner()
    extra = ["--class", "1"] if cfg["label_size"] else []
    res = runner.invoke(main, ["generate", "-g", str(path), "--seeds", "1-2", "--trunc", "0.7", "--trunc-cutoff", "4",
                               "--out", str(tmp_path / "tf")] + extra)
    assert res.exit_code == 0, res.output
    G = generators.load(path)
    z = torch.from_numpy(np.random.RandomState(2).randn(1, G.z_dim)).float()
    c = torch.zeros(1, G.c_dim)
    if G.c_dim:
        c[:, 1] = 1
    with torch.no_grad():
        expect = images.to_uint8(G(z, c, truncation_psi=0.7, truncation_cutoff=4))[0]
    got = np.asarray(Image.open(tmp_path / "tf" / "seed0002.png"))
    assert got.shape == (cfg["resolution"], cfg["resolution"], 3)
    assert np.abs(got.astype(int) - np.asarray(expect).astype(int)).max() <= 1


def test_registry_has_the_official_stylegan1_models():
    from generators import registry

    sg1 = {m["name"]: m for m in registry.list_models() if m["family"] == "stylegan1"}
    assert {n: m["resolution"] for n, m in sg1.items()} == {
        "stylegan1-ffhq-1024": 1024, "stylegan1-celebahq-1024": 1024, "stylegan1-bedrooms-256": 256,
        "stylegan1-cars-512": 512, "stylegan1-cats-256": 256}
    for m in sg1.values():
        assert m["format"] == "nvidia-tf" and m["url"].startswith("https://drive.google.com/uc?id=")
        assert m["direct_download"] is False and m["filename"].startswith("karras2019stylegan-")
        assert registry.cache_path(m["name"]).suffix == ".pkl"
