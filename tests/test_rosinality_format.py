"""rosinality StyleGAN2 reader/writer and the decoders embedded in pSp / e4e / ReStyle /
HyperStyle checkpoints, checked against the community fixtures.

The expected gankit (NVIDIA) state dicts are built here from the npz parameter copies with an
explicit name translation of our own, so these checks do not reuse the reader's tables.
"""
from __future__ import annotations

import argparse
import copy
import functools
import io
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from generators.formats.rosinality import read_embedded_decoder, read_rosinality, write_rosinality
from generators.spec import CheckpointError

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
COMMUNITY = SHARED / "fixtures" / "community"
NVIDIA_SKIP32 = SHARED / "fixtures" / "nvidia" / "sg2ada_skip_32.npz"


def _params(sub: str):
    files = sorted((COMMUNITY / sub).glob("*.pt"))
    if not files:
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"shared fixtures not found under {COMMUNITY / sub}"))]
    return [pytest.param(p, id=p.stem) for p in files]


ROS_FILES = _params("stylegan2_rosinality")
EMB_FILES = _params("embedded_decoders")
ALL_FILES = ROS_FILES + EMB_FILES


@functools.lru_cache(maxsize=None)
def _load(path: Path):
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(path, map_location="cpu", weights_only=True)


@functools.lru_cache(maxsize=None)
def _npz(path: Path):
    with np.load(path.with_suffix(".npz")) as z:
        return {k: z[k] for k in z.files}


def _is_embedded(path: Path) -> bool:
    return path.parent.name == "embedded_decoders"


@functools.lru_cache(maxsize=None)
def _read(path: Path):
    obj = _load(path)
    return read_embedded_decoder(obj) if _is_embedded(path) else read_rosinality(obj)


def _group(npz, prefix):
    return {k[len(prefix):]: torch.from_numpy(v) for k, v in npz.items() if k.startswith(prefix)}


def _default_filter():
    f = torch.tensor([1.0, 3.0, 3.0, 1.0])
    return torch.outer(f, f) / 64.0


# ------------------------------------------------------------------------------------------
# Independent translation rosinality -> NVIDIA names (the reference for the reader)
# ------------------------------------------------------------------------------------------

def _layer_of_conv(k: int) -> str:
    return f"synthesis.b{8 << (k // 2)}.conv{k % 2}"


def expected_generator(ros: dict) -> dict:
    """NVIDIA name -> tensor for every tensor rosinality stores (no defaults, no w_avg)."""
    out = {}
    for name, t in ros.items():
        m = re.fullmatch(r"style\.(\d+)\.(weight|bias)", name)
        if m:
            out[f"mapping.fc{int(m[1]) - 1}.{m[2]}"] = t
            continue
        if name == "input.input":
            out["synthesis.b4.const"] = t[0]
            continue
        m = re.fullmatch(r"noises\.noise_(\d+)", name)
        if m:
            i = int(m[1])
            layer = "synthesis.b4.conv1" if i == 0 else _layer_of_conv(i - 1)
            out[f"{layer}.noise_const"] = t[0, 0]
            continue
        m = re.fullmatch(r"(conv1|convs\.(\d+))\.(.+)", name)
        if m:
            layer = "synthesis.b4.conv1" if m[1] == "conv1" else _layer_of_conv(int(m[2]))
            rest = m[3]
            if rest == "conv.weight":
                out[f"{layer}.weight"] = t[0]
            elif rest == "conv.blur.kernel":
                out[f"{layer}.resample_filter"] = t / 4
            elif rest.startswith("conv.modulation."):
                out[f"{layer}.affine.{rest.rsplit('.', 1)[1]}"] = t
            elif rest == "noise.weight":
                out[f"{layer}.noise_strength"] = t.reshape(())
            elif rest == "activate.bias":
                out[f"{layer}.bias"] = t
            else:
                raise AssertionError(name)
            continue
        m = re.fullmatch(r"(to_rgb1|to_rgbs\.(\d+))\.(.+)", name)
        if m:
            block = "synthesis.b4" if m[1] == "to_rgb1" else f"synthesis.b{8 << int(m[2])}"
            rest = m[3]
            if rest == "bias":
                out[f"{block}.torgb.bias"] = t.reshape(-1)
            elif rest == "upsample.kernel":
                out[f"{block}.resample_filter"] = t / 4
            elif rest == "conv.weight":
                out[f"{block}.torgb.weight"] = t[0]
            elif rest.startswith("conv.modulation."):
                out[f"{block}.torgb.affine.{rest.rsplit('.', 1)[1]}"] = t
            else:
                raise AssertionError(name)
            continue
        raise AssertionError(f"unexpected rosinality generator key {name}")
    return out


def expected_discriminator(ros: dict, size: int) -> dict:
    out = {}
    for name, t in ros.items():
        if name == "convs.0.0.weight":
            out[f"b{size}.fromrgb.weight"] = t
            continue
        if name == "convs.0.1.bias":
            out[f"b{size}.fromrgb.bias"] = t
            continue
        m = re.fullmatch(r"convs\.(\d+)\.(.+)", name)
        if m:
            b = f"b{size >> (int(m[1]) - 1)}"
            out[{"conv1.0.weight": f"{b}.conv0.weight", "conv1.1.bias": f"{b}.conv0.bias",
                 "conv2.0.kernel": f"{b}.conv1.resample_filter", "conv2.1.weight": f"{b}.conv1.weight",
                 "conv2.2.bias": f"{b}.conv1.bias", "skip.0.kernel": f"{b}.skip.resample_filter",
                 "skip.1.weight": f"{b}.skip.weight"}[m[2]]] = t
            continue
        out[{"final_conv.0.weight": "b4.conv.weight", "final_conv.1.bias": "b4.conv.bias",
             "final_linear.0.weight": "b4.fc.weight", "final_linear.0.bias": "b4.fc.bias",
             "final_linear.1.weight": "b4.out.weight", "final_linear.1.bias": "b4.out.bias"}[name]] = t
    return out


def _assert_same(a: torch.Tensor, b: torch.Tensor, name: str):
    assert isinstance(a, torch.Tensor), name
    assert a.dtype == b.dtype and tuple(a.shape) == tuple(b.shape), f"{name}: {a.dtype}{list(a.shape)} vs {b.dtype}{list(b.shape)}"
    assert torch.equal(a, b), f"{name}: values differ"


def _check_network(sd: dict, expected: dict, extra_defaults: bool = True):
    for name, t in expected.items():
        assert name in sd, f"{name} missing"
        _assert_same(sd[name], t, name)
    rest = [k for k in sd if k not in expected]
    for k in rest:
        if k == "mapping.w_avg":
            continue
        assert k.endswith("resample_filter"), f"unexpected extra tensor {k}"
        _assert_same(sd[k], _default_filter(), k)
    for k, t in sd.items():
        if k.endswith("resample_filter"):
            assert float(t.sum()) == 1.0, k


def _expected_w_avg(latent_avg, S):
    if latent_avg is None:
        return torch.zeros(S)
    la = torch.as_tensor(latent_avg)
    if la.dim() == 1:
        return la
    assert bool((la == la[:1]).all())  # the fixtures repeat one vector per layer
    return la[0]


# ------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ALL_FILES)
def test_generator_matches_npz(path):
    ckpt, npz = _read(path), _npz(path)
    g = ckpt.networks["G_ema"]
    assert g.kind == "stylegan2.Generator"
    _check_network(g.state_dict, expected_generator(_group(npz, "g_ema/")))
    # architecture from shapes
    kw, sk, mk = g.kwargs, g.kwargs["synthesis_kwargs"], g.kwargs["mapping_kwargs"]
    assert sk["channels"] == {str(int(r)): int(c) for r, c in zip(npz["channels_res"], npz["channels_width"])}
    assert kw["img_resolution"] == int(npz["size"])
    assert kw["z_dim"] == kw["w_dim"] == int(npz["style_dim"])
    assert mk["num_layers"] == int(npz["n_mlp"])
    assert mk["lr_multiplier"] == 0.01 and np.float32(mk["lr_multiplier"]) == npz["lr_mlp"]
    assert kw["c_dim"] == 0 and kw["img_channels"] == 3
    assert sk["architecture"] == "skip" and sk["conv_clamp"] is None and sk["num_fp16_res"] == 0
    assert sk["use_noise"] is True and list(sk["resample_filter"]) == [1, 3, 3, 1]
    # noise buffers: n_latent - 1 layers, all carried over
    n_noise = sum(1 for k in g.state_dict if k.endswith("noise_const"))
    assert n_noise == int(npz["num_layers"]) == int(npz["n_latent"]) - 1
    for i in range(n_noise):
        layer = "synthesis.b4.conv1" if i == 0 else _layer_of_conv(i - 1)
        assert torch.equal(g.state_dict[f"{layer}.noise_const"], torch.from_numpy(npz[f"noise_{i}"][0, 0]))
    # w_avg and latent_avg
    la = npz.get("latent_avg")
    _assert_same(g.state_dict["mapping.w_avg"], _expected_w_avg(la, kw["w_dim"]), "mapping.w_avg")
    if la is None:
        assert "latent_avg" not in ckpt.extras
    else:
        _assert_same(ckpt.extras["latent_avg"], torch.from_numpy(la), "extras latent_avg")


@pytest.mark.parametrize("path", ALL_FILES)
def test_key_order_matches_nvidia(path):
    """Same resolution and depth as the NVIDIA fixture -> identical state-dict key list."""
    if not NVIDIA_SKIP32.is_file():
        pytest.skip(f"{NVIDIA_SKIP32} not found")
    ckpt, npz = _read(path), _npz(path)
    g = ckpt.networks["G_ema"]
    with np.load(NVIDIA_SKIP32) as nv:
        nv_g = [k[len("G_ema/"):] for k in nv.files if k.startswith("G_ema/")]
        nv_d = [k[len("D/"):] for k in nv.files if k.startswith("D/")]
    if int(npz["size"]) == 32 and int(npz["n_mlp"]) == 8:
        assert list(g.state_dict) == nv_g
        if "D" in ckpt.networks:
            assert list(ckpt.networks["D"].state_dict) == nv_d
    else:  # same pattern, checked per name family
        assert [k for k in g.state_dict if k.startswith("mapping.")][0] == "mapping.w_avg"
        assert list(g.state_dict)[:2] == nv_g[:2]


@pytest.mark.parametrize("path", ROS_FILES)
def test_rosinality_forms(path):
    obj, npz, ckpt = _load(path), _npz(path), _read(path)
    assert ckpt.format == "rosinality"
    if "d" in obj:
        assert set(ckpt.networks) == {"G_ema", "G", "D"}
        # training G differs from g_ema and is read from 'g'
        _check_network(ckpt.networks["G"].state_dict, expected_generator(dict(obj["g"])))
        assert not torch.equal(ckpt.networks["G"].state_dict["mapping.fc0.weight"],
                               ckpt.networks["G_ema"].state_dict["mapping.fc0.weight"])
        d = ckpt.networks["D"]
        size = int(npz["size"])
        _check_network(d.state_dict, expected_discriminator(_group(npz, "d/"), size))
        assert d.kwargs["channels"] == {str(int(r)): int(c) for r, c in zip(npz["channels_res"], npz["channels_width"])}
        assert d.kwargs["architecture"] == "resnet" and d.kwargs["img_resolution"] == size
        assert d.kwargs["mbstd_group_size"] == 4 and d.kwargs["mbstd_num_channels"] == 1
        assert d.kwargs["c_dim"] == 0 and d.kwargs["conv_clamp"] is None
        # args kept as a plain dict, optimizer states dropped
        assert isinstance(ckpt.extras["args"], dict) and ckpt.extras["args"]["size"] == size
        assert "g_optim" not in ckpt.extras and "d_optim" not in ckpt.extras
    else:
        assert set(ckpt.networks) == {"G_ema"}
    # bare generator state dict
    bare = read_rosinality(obj["g_ema"])
    assert set(bare.networks) == {"G_ema"}
    for k, t in ckpt.networks["G_ema"].state_dict.items():
        if k != "mapping.w_avg":
            _assert_same(bare.networks["G_ema"].state_dict[k], t, k)
    assert not bool(bare.networks["G_ema"].state_dict["mapping.w_avg"].any())


def test_g_ema_latent_avg_form_with_g_and_d():
    path = next((p.values[0] for p in ROS_FILES if p.values[0] is not None and "train" in p.values[0].stem), None)
    if path is None:
        pytest.skip("sg2 train fixture not found")
    obj = _load(path)
    la = torch.linspace(-1, 1, obj["g_ema"]["style.1.weight"].shape[1])
    form = {"g_ema": obj["g_ema"], "latent_avg": la, "g": obj["g"], "d": obj["d"]}
    ckpt = read_rosinality(form)
    assert set(ckpt.networks) == {"G_ema", "G", "D"}
    _assert_same(ckpt.networks["G_ema"].state_dict["mapping.w_avg"], la, "w_avg")
    _assert_same(ckpt.networks["G"].state_dict["mapping.w_avg"], la, "w_avg G")
    ckpt2 = read_rosinality({"g_ema": obj["g_ema"], "latent_avg": la[None]})
    _assert_same(ckpt2.networks["G_ema"].state_dict["mapping.w_avg"], la, "w_avg from [1, S]")


_EMB_FORMAT = {"psp": "psp", "e4e": "e4e", "restyle": "restyle", "hyperstyle": "hyperstyle"}


@pytest.mark.parametrize("path", EMB_FILES)
def test_embedded_decoder_format_and_extras(path):
    obj, ckpt = _load(path), _read(path)
    assert ckpt.format == _EMB_FORMAT[path.stem.split("_")[0]]
    assert ckpt.extras["opts"] == obj["opts"]
    assert list(ckpt.networks) == ["G_ema"]
    # read_rosinality recognises the embedded form too
    assert read_rosinality(obj).format == ckpt.format


@pytest.mark.parametrize("path", EMB_FILES)
def test_embedded_decoder_trusts_shapes_over_opts(path):
    obj = _load(path)
    opts = dict(obj["opts"])
    key = "stylegan_size" if "stylegan_size" in opts else "output_size"
    opts[key] = 1024
    with pytest.warns(UserWarning, match="shapes"):
        ckpt = read_embedded_decoder({**obj, "opts": opts})
    assert ckpt.networks["G_ema"].kwargs["img_resolution"] == int(_npz(path)["size"])


@pytest.mark.parametrize("path", EMB_FILES[:1])
def test_embedded_latent_avg_shapes(path):
    obj = _load(path)
    la = obj["latent_avg"]
    S = la.shape[-1]
    base = {k: v for k, v in obj.items() if k != "latent_avg"}
    c = read_embedded_decoder(base)                               # absent
    assert "latent_avg" not in c.extras and not c.networks["G_ema"].state_dict["mapping.w_avg"].any()
    c = read_embedded_decoder({**base, "latent_avg": la[0].clone()})      # [S]
    _assert_same(c.networks["G_ema"].state_dict["mapping.w_avg"], la[0], "[S]")
    c = read_embedded_decoder({**base, "latent_avg": la[:1].clone()})     # [1, S]
    _assert_same(c.networks["G_ema"].state_dict["mapping.w_avg"], la[0], "[1, S]")
    varied = la + torch.arange(la.shape[0], dtype=la.dtype)[:, None]      # [n, S], rows differ
    c = read_embedded_decoder({**base, "latent_avg": varied})
    assert c.networks["G_ema"].state_dict["mapping.w_avg"].shape == (S,)
    assert not c.networks["G_ema"].state_dict["mapping.w_avg"].any()
    _assert_same(c.extras["latent_avg"], varied, "extras")
    # ... and its writer keeps that original tensor (not expressible at the top level)
    back = _roundtrip_file(write_rosinality(c))
    _assert_same(read_rosinality(back).extras["latent_avg"], varied, "round-tripped latent_avg")


# ------------------------------------------------------------------------------------------
# Writing
# ------------------------------------------------------------------------------------------

def _roundtrip_file(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, map_location="cpu", weights_only=True)   # no allow-list needed


def _assert_state_dict_equal(got: dict, want: dict, what: str):
    assert list(got) == list(want), f"{what}: key order differs"
    for k in want:
        _assert_same(got[k], want[k], f"{what}/{k}")


@pytest.mark.parametrize("path", ALL_FILES)
def test_write_reproduces_original(path):
    obj, ckpt, npz = _load(path), _read(path), _npz(path)
    out = write_rosinality(ckpt)
    if _is_embedded(path):
        want_g = {k[len("decoder."):]: v for k, v in obj["state_dict"].items() if k.startswith("decoder.")}
    else:
        want_g = obj["g_ema"]
    _assert_state_dict_equal(out["g_ema"], want_g, "g_ema")
    assert list(want_g) == [k[len("g_ema/"):] for k in npz if k.startswith("g_ema/")]
    for slot in ("g", "d"):
        if slot in obj:
            _assert_state_dict_equal(out[slot], obj[slot], slot)
        else:
            assert slot not in out
    la = obj.get("latent_avg")
    if la is None:
        assert "latent_avg" not in out
    elif la.dim() == 1:
        _assert_same(out["latent_avg"], la, "latent_avg")
    else:   # [n_styles, S] of one repeated vector -> convert_weight.py's [S] form
        _assert_same(out["latent_avg"], la[0], "latent_avg")
        _assert_same(out["gankit"]["extras"]["latent_avg"], la, "gankit latent_avg")

    # through a real file, and back into gankit: identical networks and extras
    back = read_rosinality(_roundtrip_file(out))
    assert set(back.networks) == set(ckpt.networks)
    for name, spec in ckpt.networks.items():
        assert back.networks[name].kwargs == spec.kwargs, name
        _assert_state_dict_equal(back.networks[name].state_dict, spec.state_dict, name)
    if la is not None:
        _assert_same(back.extras["latent_avg"], la, "extras latent_avg after round trip")
    if "opts" in ckpt.extras:
        assert back.extras["opts"] == ckpt.extras["opts"]


def _modified(ckpt, name, **changes):
    c = copy.copy(ckpt)
    c.networks = dict(ckpt.networks)
    spec = copy.copy(ckpt.networks[name])
    spec.kwargs = copy.deepcopy(spec.kwargs)
    for path, value in changes.items():
        d = spec.kwargs
        parts = path.split("__")
        for p in parts[:-1]:
            d = d[p]
        d[parts[-1]] = value
    c.networks[name] = spec
    return c


_G_INEXPRESSIBLE = [
    {"c_dim": 4},
    {"synthesis_kwargs__architecture": "resnet"},
    {"synthesis_kwargs__architecture": "orig"},
    {"z_dim": 8},
    {"mapping_kwargs__layer_features": 64},
    {"mapping_kwargs__lr_multiplier": 0.1},
    {"mapping_kwargs__activation": "relu"},
    {"synthesis_kwargs__activation": "relu"},
    {"synthesis_kwargs__use_noise": False},
    {"synthesis_kwargs__resample_filter": [1, 2, 1]},
    {"img_channels": 1},
]


@pytest.mark.parametrize("change", _G_INEXPRESSIBLE, ids=lambda c: next(iter(c)))
def test_write_refuses_inexpressible_generator(change):
    path = next((p.values[0] for p in ROS_FILES if p.values[0] is not None), None)
    if path is None:
        pytest.skip("rosinality fixtures not found")
    bad = _modified(_read(path), "G_ema", **change)
    with pytest.raises(CheckpointError) as e:
        write_rosinality(bad)
    assert "\n" not in str(e.value)


def test_write_refuses_nondefault_filter_buffer_and_bad_state_dict():
    path = next((p.values[0] for p in ROS_FILES if p.values[0] is not None), None)
    if path is None:
        pytest.skip("rosinality fixtures not found")
    ckpt = _read(path)
    c = _modified(ckpt, "G_ema")
    sd = dict(c.networks["G_ema"].state_dict)
    sd["synthesis.b8.conv0.resample_filter"] = sd["synthesis.b8.conv0.resample_filter"] * 2
    c.networks["G_ema"].state_dict = sd
    with pytest.raises(CheckpointError, match="filter"):
        write_rosinality(c)
    c = _modified(ckpt, "G_ema")
    sd = dict(c.networks["G_ema"].state_dict)
    del sd["synthesis.b8.conv1.affine.bias"]
    c.networks["G_ema"].state_dict = sd
    with pytest.raises(CheckpointError, match="missing"):
        write_rosinality(c)


def _train_path():
    path = next((p.values[0] for p in ROS_FILES if p.values[0] is not None and "train" in p.values[0].stem), None)
    if path is None:
        pytest.skip("sg2 train fixture not found")
    return path


@pytest.mark.parametrize("change", [{"architecture": "skip"}, {"c_dim": 3}, {"mbstd_group_size": 2},
                                    {"mbstd_group_size": None}, {"mbstd_num_channels": 2}, {"conv_clamp": 256}],
                         ids=lambda c: f"{next(iter(c))}={next(iter(c.values()))}")
def test_write_leaves_out_inexpressible_discriminator(change):
    bad = _modified(_read(_train_path()), "D", **change)
    with pytest.warns(UserWarning, match="discriminator"):
        out = write_rosinality(bad)
    assert "d" not in out and "g_ema" in out and "g" in out


def test_conv_clamp_and_w_avg_survive_through_gankit_key():
    ckpt = _read(_train_path())
    c = _modified(ckpt, "G_ema", synthesis_kwargs__conv_clamp=256, synthesis_kwargs__num_fp16_res=2)
    w = torch.linspace(-2, 2, c.networks["G_ema"].kwargs["w_dim"])
    c.networks["G_ema"].state_dict = {**c.networks["G_ema"].state_dict, "mapping.w_avg": w}
    out = write_rosinality(c)
    _assert_same(out["latent_avg"], w, "latent_avg = w_avg")
    back = read_rosinality(_roundtrip_file(out))
    assert back.networks["G_ema"].kwargs["synthesis_kwargs"]["conv_clamp"] == 256
    assert back.networks["G_ema"].kwargs["synthesis_kwargs"]["num_fp16_res"] == 2
    assert back.networks["G_ema"].kwargs == c.networks["G_ema"].kwargs
    _assert_same(back.networks["G_ema"].state_dict["mapping.w_avg"], w, "w_avg")
    assert back.networks["G"].kwargs["synthesis_kwargs"]["conv_clamp"] is None
    # rosinality's own view of the file: the usual keys with the usual names
    assert set(out["g_ema"]) == set(_load(_train_path())["g_ema"])


def test_write_only_raw_generator_becomes_g_ema():
    ckpt = _read(_train_path())
    c = copy.copy(ckpt)
    c.networks = {"G": ckpt.networks["G"]}
    out = write_rosinality(c)
    assert "g" not in out and "d" not in out
    _assert_state_dict_equal(out["g_ema"], _load(_train_path())["g"], "g_ema from G")


# ------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------

def test_reader_errors():
    path = _train_path()
    obj = _load(path)
    with pytest.raises(CheckpointError):
        read_rosinality({"foo": torch.zeros(1)})
    with pytest.raises(CheckpointError):
        read_rosinality([1, 2])
    with pytest.raises(CheckpointError, match="missing"):
        read_rosinality({k: v for k, v in obj["g_ema"].items() if k != "to_rgbs.0.conv.modulation.bias"})
    bad = dict(obj["g_ema"])
    bad["convs.1.activate.bias"] = torch.zeros(bad["convs.1.activate.bias"].numel() + 1)
    with pytest.raises(CheckpointError, match="shape"):
        read_rosinality(bad)
    with pytest.raises(CheckpointError, match="unexpected"):
        read_rosinality({**obj["g_ema"], "convs.1.conv.blur.kernel": torch.zeros(4, 4)})
    with pytest.raises(CheckpointError):
        read_embedded_decoder({"state_dict": {"encoder.x": torch.zeros(1)}, "opts": {}})
    sg1 = COMMUNITY / "stylegan1_rosinality" / "sg1_train.pt"
    if sg1.is_file():
        with pytest.raises(CheckpointError, match="StyleGAN1"):
            read_rosinality(_load(sg1))


def test_old_file_without_noise_buffers_still_reads():
    obj = _load(_train_path())
    sd = {k: v for k, v in obj["g_ema"].items() if not k.startswith("noises.")}
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        ckpt = read_rosinality(sd)
    assert any("noise" in str(w.message) for w in rec)
    assert ckpt.networks["G_ema"].state_dict["synthesis.b4.conv1.noise_const"].shape == (4, 4)


# ------------------------------------------------------------------------------------------
# Forward pass (only when the network modules are importable)
# ------------------------------------------------------------------------------------------

def _close(got: torch.Tensor, ref: np.ndarray, what: str):
    err = float(np.abs(got.detach().numpy() - ref).max())
    tol = 1e-4 * max(1.0, float(np.abs(ref).max()))
    assert err <= tol, f"{what}: max abs diff {err:.3g} > {tol:.3g}"


@pytest.mark.parametrize("path", ALL_FILES)
def test_forward_matches_reference(path):
    try:
        from generators.loading import build
    except ImportError as e:  # network modules not there yet
        pytest.skip(f"generators.loading unavailable: {e}")
    ckpt, npz = _read(path), _npz(path)
    G = build(ckpt.networks["G_ema"]).eval()
    with torch.no_grad():
        for ws, img in (("ws", "img_ws"), ("ws_plus", "img_wplus"), ("ws_mix", "img_mix")):
            _close(G.synthesis(torch.from_numpy(npz[ws]), noise_mode="const"), npz[img], img)
        _close(G.mapping(torch.from_numpy(npz["z"]), None), npz["ws"], "mapping")
        if "D" in ckpt.networks:
            D = build(ckpt.networks["D"]).eval()
            for logits, img in (("d_img_z", "img_z"), ("d_img_wplus", "img_wplus")):
                _close(D(torch.from_numpy(npz[img]), None), npz[logits], logits)


def test_nvidia_style_checkpoint_round_trip_keeps_extras():
    """A checkpoint without a latent_avg extra (e.g. from an NVIDIA pickle) gets a top-level
    latent_avg = w_avg for rosinality's tools, but reads back without a new extra."""
    ckpt = _read(_train_path())
    c = _modified(ckpt, "G_ema")
    c.extras = {"note": "x"}
    w = torch.full((c.networks["G_ema"].kwargs["w_dim"],), 0.5)
    c.networks["G_ema"].state_dict = {**c.networks["G_ema"].state_dict, "mapping.w_avg": w}
    out = write_rosinality(c)
    _assert_same(out["latent_avg"], w, "latent_avg")
    back = read_rosinality(_roundtrip_file(out))
    assert back.extras == {"note": "x"}
    _assert_same(back.networks["G_ema"].state_dict["mapping.w_avg"], w, "w_avg")
