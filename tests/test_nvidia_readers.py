"""NVIDIA checkpoint readers: safe unpickling, exact tensors, derived architecture."""
from __future__ import annotations

import functools
import io
import os
import pickle
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from generators.formats import nvidia_pkl, nvidia_tf, safe_pickle
from generators.formats.nvidia_pkl import generator_family, read_nvidia_pkl
from generators.formats.nvidia_tf import read_nvidia_tf
from generators.formats.safe_pickle import TFNetworkState, load_pickle, load_storage_bytes
from generators.spec import CheckpointError, UnsafeCheckpointError

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FIXTURES = SHARED / "fixtures" / "nvidia"
_SKIP = f"shared NVIDIA fixtures not found at {FIXTURES}"


def _fixture_names():
    if not FIXTURES.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=_SKIP))]
    return sorted(p.name for p in FIXTURES.glob("*.pkl"))


def _need(name: str) -> Path:
    path = FIXTURES / name
    if not path.is_file():
        pytest.skip(_SKIP)
    return path


@functools.lru_cache(maxsize=None)
def _load(name: str):
    return load_pickle(_need(name))


@functools.lru_cache(maxsize=None)
def _npz(name: str):
    with np.load(_need(name[:-4] + ".npz"), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}, list(z.files)


def _is_sg3(obj) -> bool:
    return isinstance(obj, dict) and generator_family(obj["G_ema"]) == "stylegan3"


def _read(name: str):
    obj = _load(name)
    if isinstance(obj, tuple):
        return read_nvidia_tf(obj)
    return read_nvidia_pkl(obj)


def _section(files, prefix):
    return [k[len(prefix):] for k in files if k.startswith(prefix)]


def _assert_exact(sd, arrays, files, prefix):
    """Same names in the same order; each tensor equal in dtype, shape and value."""
    assert list(sd) == _section(files, prefix)
    for name, t in sd.items():
        ref = arrays[prefix + name]
        got = t.detach().cpu().numpy()
        assert got.dtype == ref.dtype and got.shape == ref.shape, name
        assert np.array_equal(got, ref), name


def _assert_checksums(sd, arrays, files):
    """``G_checksum/<name>`` = [sum, sum of squares] in float64."""
    assert list(sd) == _section(files, "G_checksum/")
    for name, t in sd.items():
        d = t.detach().to(torch.float64)
        got = np.array([d.sum().item(), (d * d).sum().item()])
        np.testing.assert_allclose(got, arrays["G_checksum/" + name], rtol=1e-12, atol=0, err_msg=name)


# ------------------------------------------------------------------- fixtures, exactly


@pytest.mark.parametrize("name", _fixture_names())
def test_tensors_match_reference_exactly(name):
    arrays, files = _npz(name)
    obj = _load(name)
    ck = _read(name)
    _assert_exact(ck.networks["D"].state_dict, arrays, files, "D/")
    if _is_sg3(obj):
        _assert_exact(ck.networks["G_ema"].state_dict, arrays, files, "G_ema/")
        _assert_checksums(ck.networks["G"].state_dict, arrays, files)
        assert ck.networks["G_ema"].kind == "stylegan3.Generator"
        assert ck.networks["D"].kind == "stylegan2.Discriminator"
        return
    assert ck.format == ("nvidia-tf" if isinstance(obj, tuple) else "nvidia-pkl")
    _assert_exact(ck.networks["G_ema"].state_dict, arrays, files, "G_ema/")
    _assert_checksums(ck.networks["G"].state_dict, arrays, files)
    assert ck.networks["G_ema"].kind == "stylegan2.Generator"
    assert ck.networks["D"].kind == "stylegan2.Discriminator"


def test_stylegan3_generator_geometry_and_d_read():
    obj = _load("sg3_t_32.pkl")
    g = read_nvidia_pkl(obj, networks=["G_ema"]).networks["G_ema"].kwargs
    layers = g["synthesis_kwargs"]["layers"]
    assert [s["name"] for s in layers] == obj["G_ema"].state["_modules"]["synthesis"].state["layer_names"]
    assert layers[5]["up_factor"] == 4 and layers[5]["padding"] == [-6, -9, -6, -9]
    assert layers[-1]["is_torgb"] and layers[-1]["conv_kernel"] == 1
    assert g["synthesis_kwargs"]["input"] == dict(channels=32, size=[36, 36], sampling_rate=16.0, bandwidth=2.0)
    d = read_nvidia_pkl(obj, networks=["D"]).networks["D"].kwargs
    assert d["channels"] == {"4": 32, "8": 32, "16": 16, "32": 8}
    assert d["architecture"] == "resnet" and d["mbstd_group_size"] == 4


def test_nothing_from_nvidia_code_is_imported():
    _load("sg2ada_skip_32.pkl")
    _load("sg2_tf_32.pkl")
    assert not any(m.split(".")[0] in ("dnnlib", "torch_utils", "training") for m in sys.modules)


# --------------------------------------------------------------- derived architecture


def test_kwargs_skip_32():
    ck = _read("sg2ada_skip_32.pkl")
    g = ck.networks["G_ema"].kwargs
    assert (g["z_dim"], g["c_dim"], g["w_dim"], g["img_resolution"], g["img_channels"]) == (32, 0, 32, 32, 3)
    assert g["mapping_kwargs"] == dict(num_layers=8, embed_features=0, layer_features=32, activation="lrelu",
                                       lr_multiplier=0.01, w_avg_beta=0.995)
    s = g["synthesis_kwargs"]
    assert s["architecture"] == "skip" and s["channels"] == {"4": 32, "8": 32, "16": 32, "32": 16}
    # num_fp16_res=4 in a 32 px net puts b8, b16, b32 in fp16 (b4 never): 3 blocks.
    assert s["conv_clamp"] == 256.0 and s["num_fp16_res"] == 3
    assert s["use_noise"] is True and s["activation"] == "lrelu" and s["resample_filter"] == [1, 3, 3, 1]
    d = ck.networks["D"].kwargs
    assert d["architecture"] == "resnet" and d["mbstd_group_size"] == 4 and d["mbstd_num_channels"] == 1
    assert d["conv_clamp"] == 256.0 and d["num_fp16_res"] == 3 and d["cmap_dim"] == 0
    assert ck.extras["training_set_kwargs"]["resolution"] == 32
    assert ck.meta["augment_pipe"] == "AugmentPipe"
    assert "synthesis.b4.resample_filter" in ck.networks["G_ema"].state_dict


def test_kwargs_cond_resnet_32():
    ck = _read("sg2ada_cond_resnet_32.pkl")
    g = ck.networks["G_ema"].kwargs
    assert (g["z_dim"], g["c_dim"], g["w_dim"]) == (16, 4, 32)
    assert g["mapping_kwargs"]["num_layers"] == 2 and g["mapping_kwargs"]["embed_features"] == 32
    s = g["synthesis_kwargs"]
    assert s["architecture"] == "resnet" and s["channels"] == {"4": 64, "8": 32, "16": 16, "32": 8}
    assert s["conv_clamp"] is None and s["num_fp16_res"] == 0
    d = ck.networks["D"].kwargs
    assert d["architecture"] == "skip" and d["mbstd_group_size"] == 2 and d["cmap_dim"] == 64
    assert d["mapping_kwargs"]["embed_features"] == 64 and d["mapping_kwargs"]["num_layers"] == 8


def test_kwargs_min_16_and_stylegan3_repo_sg2():
    d = _read("sg2ada_min_16.pkl").networks["D"].kwargs
    assert d["architecture"] == "orig" and d["mbstd_group_size"] is None
    g = _read("sg3_stylegan2_16.pkl").networks["G_ema"].kwargs
    # conv_clamp / num_fp16_res are not in that file's init kwargs: read from the layers.
    assert g["synthesis_kwargs"]["conv_clamp"] == 256.0 and g["synthesis_kwargs"]["num_fp16_res"] == 2
    assert g["mapping_kwargs"]["w_avg_beta"] == 0.998
    assert _read("sg2ada_min_16.pkl").extras == {}


def test_kwargs_tf():
    ck = _read("sg2_tf_32.pkl")
    g = ck.networks["G_ema"].kwargs
    assert g["synthesis_kwargs"]["channels"] == {"4": 32, "8": 32, "16": 32, "32": 16}
    assert g["mapping_kwargs"]["lr_multiplier"] == 0.01 and g["mapping_kwargs"]["layer_features"] == 32
    d = ck.networks["D"].kwargs
    assert d["architecture"] == "resnet" and d["mbstd_group_size"] is None  # converter default: whole batch


def test_conv_clamp_disagreement_is_an_error():
    obj = load_pickle(_need("sg2ada_skip_32.pkl"))             # fresh copy: mutated below
    b8 = obj["G_ema"].state["_modules"]["synthesis"].state["_modules"]["b8"]
    b8.state["_modules"]["conv1"].state["conv_clamp"] = 128
    with pytest.raises(CheckpointError, match="conv_clamp"):
        read_nvidia_pkl(obj, networks=["G_ema"])


def test_filter_taps():
    f = torch.outer(torch.tensor([1.0, 3, 3, 1]), torch.tensor([1.0, 3, 3, 1])) / 64
    assert nvidia_pkl.filter_taps(f, "x") == [1, 3, 3, 1]
    assert nvidia_pkl.filter_taps(nvidia_tf.setup_filter([1, 2, 1]), "x") == [1, 2, 1]


# -------------------------------------------------- TF: synthetic variants and refusals


def _tf_net(name, version, static, variables, components=None):
    net = TFNetworkState()
    net.__setstate__(dict(version=version, name=name, static_kwargs=dict(static), components=components or {},
                          build_module_src="# omitted", build_func_name=name, variables=list(variables)))
    return net


def _np(t):
    return t.detach().cpu().numpy().astype(np.float32)


def _tf_conv(w, flip=False):
    """[out, in, kh, kw] -> TF [kh, kw, in, out] (inverse of the reader's conversion)."""
    a = _np(w).transpose(2, 3, 1, 0)
    return np.ascontiguousarray(a[::-1, ::-1] if flip else a)


def _to_tf(ck):
    """A version-5 (G, D, Gs) tuple holding the networks of a PyTorch-era checkpoint."""
    def gen(spec, name):
        kw, sd = spec.kwargs, spec.state_dict
        s, m = kw["synthesis_kwargs"], kw["mapping_kwargs"]
        static = dict(latent_size=kw["z_dim"], label_size=kw["c_dim"], dlatent_size=kw["w_dim"],
                      resolution=kw["img_resolution"], num_channels=kw["img_channels"],
                      mapping_layers=m["num_layers"], mapping_fmaps=m["layer_features"], architecture=s["architecture"],
                      fmap_base=int(s["channels"]["4"]) * 2, fmap_max=max(s["channels"].values()))
        if kw["c_dim"]:
            static["label_fmaps"] = m["embed_features"]
        syn, noise, j = [], [], 0
        for r in sorted(int(x) for x in s["channels"]):
            p, tf = f"synthesis.b{r}.", f"{r}x{r}/"
            if r == 4:
                syn.append(("4x4/Const/const", _np(sd[p + "const"])[None]))
            for conv, scope, flip in (("conv0", tf + "Conv0_up", True), ("conv1", tf + ("Conv" if r == 4 else "Conv1"), False)):
                if p + conv + ".weight" not in sd:
                    continue
                syn += [(scope + "/weight", _tf_conv(sd[p + conv + ".weight"], flip)),
                        (scope + "/mod_weight", _np(sd[p + conv + ".affine.weight"]).T.copy()),
                        (scope + "/mod_bias", _np(sd[p + conv + ".affine.bias"]) - np.float32(1)),
                        (scope + "/noise_strength", np.float32(_np(sd[p + conv + ".noise_strength"]))),
                        (scope + "/bias", _np(sd[p + conv + ".bias"]))]
                noise.append((f"noise{j}", _np(sd[p + conv + ".noise_const"])[None, None]))
                j += 1
            if p + "torgb.weight" in sd:
                syn += [(tf + "ToRGB/weight", _tf_conv(sd[p + "torgb.weight"])),
                        (tf + "ToRGB/mod_weight", _np(sd[p + "torgb.affine.weight"]).T.copy()),
                        (tf + "ToRGB/mod_bias", _np(sd[p + "torgb.affine.bias"]) - np.float32(1)),
                        (tf + "ToRGB/bias", _np(sd[p + "torgb.bias"]))]
            if p + "skip.weight" in sd:
                syn.append((tf + "Skip/weight", _tf_conv(sd[p + "skip.weight"], True)))
        mp = []
        if kw["c_dim"]:
            mp += [("LabelEmbed/weight", _np(sd["mapping.embed.weight"]).T.copy()),
                   ("LabelEmbed/bias", _np(sd["mapping.embed.bias"]))]
        for i in range(m["num_layers"]):
            mp += [(f"Dense{i}/weight", _np(sd[f"mapping.fc{i}.weight"]).T.copy()),
                   (f"Dense{i}/bias", _np(sd[f"mapping.fc{i}.bias"]))]
        comps = dict(synthesis=_tf_net("G_synthesis", 5, static, noise + syn),
                     mapping=_tf_net("G_mapping", 5, static, mp))
        return _tf_net(name, 5, static, [("lod", np.float32(0)), ("dlatent_avg", _np(sd["mapping.w_avg"]))], comps)

    def disc(spec):
        kw, sd = spec.kwargs, spec.state_dict
        static = dict(label_size=kw["c_dim"], resolution=kw["img_resolution"], num_channels=kw["img_channels"],
                      architecture=kw["architecture"], fmap_base=int(kw["channels"]["4"]) * 2,
                      fmap_max=max(kw["channels"].values()), mbstd_group_size=kw["mbstd_group_size"],
                      mapping_layers=kw["mapping_kwargs"]["num_layers"], mapping_fmaps=kw["cmap_dim"],
                      mapping_lrmul=kw["mapping_kwargs"]["lr_multiplier"])
        var = []
        if kw["c_dim"]:
            var += [("LabelEmbed/weight", _np(sd["mapping.embed.weight"]).T.copy()),
                    ("LabelEmbed/bias", _np(sd["mapping.embed.bias"]))]
            for i in range(kw["mapping_kwargs"]["num_layers"]):
                var += [(f"Mapping{i}/weight", _np(sd[f"mapping.fc{i}.weight"]).T.copy()),
                        (f"Mapping{i}/bias", _np(sd[f"mapping.fc{i}.bias"]))]
        for r in sorted((int(x) for x in kw["channels"]), reverse=True):
            for pt, tf in (("fromrgb", "FromRGB"), ("conv0", "Conv0"), ("conv1", "Conv1_down"), ("skip", "Skip")):
                p = f"b{r}.{pt if r > 4 else {'conv0': 'conv'}.get(pt, pt)}."
                scope = f"{r}x{r}/{tf if r > 4 else {'Conv0': 'Conv'}.get(tf, tf)}"
                if p + "weight" in sd:
                    var.append((scope + "/weight", _tf_conv(sd[p + "weight"])))
                    if p + "bias" in sd:
                        var.append((scope + "/bias", _np(sd[p + "bias"])))
        var += [("4x4/Dense0/weight", _np(sd["b4.fc.weight"]).T.copy()), ("4x4/Dense0/bias", _np(sd["b4.fc.bias"])),
                ("Output/weight", _np(sd["b4.out.weight"]).T.copy()), ("Output/bias", _np(sd["b4.out.bias"]))]
        return _tf_net("D", 5, static, var)

    return gen(ck.networks["G"], "G"), disc(ck.networks["D"]), gen(ck.networks["G_ema"], "Gs")


def test_tf_conversion_reproduces_pytorch_layout_for_cond_resnet():
    """Conditional, resnet G / skip D, 2 mapping layers, mbstd 2: TF round trip gives NVIDIA's order and values."""
    ref = _read("sg2ada_cond_resnet_32.pkl")
    tf = read_nvidia_tf(_to_tf(ref))
    for net in ("G_ema", "G", "D"):
        want, got = ref.networks[net].state_dict, tf.networks[net].state_dict
        assert list(got) == list(want), net
        for k in want:
            assert got[k].dtype == want[k].dtype and torch.equal(got[k], want[k]), (net, k)
    g_ref, g_tf = ref.networks["G_ema"].kwargs, tf.networks["G_ema"].kwargs
    assert g_tf["synthesis_kwargs"]["channels"] == g_ref["synthesis_kwargs"]["channels"]
    assert g_tf["mapping_kwargs"]["embed_features"] == 32
    d_tf = tf.networks["D"].kwargs
    assert d_tf["cmap_dim"] == 64 and d_tf["mbstd_group_size"] == 2 and d_tf["architecture"] == "skip"


def test_tf_freeze_layers_moves_weights_after_filter():
    G, D, Gs = _load("sg2_tf_32.pkl")
    D2 = _tf_net("D", 4, dict(D.state["static_kwargs"], freeze_layers=2), D.state["variables"])
    sd = read_nvidia_tf((G, D2, Gs)).networks["D"].state_dict
    names = list(sd)
    # b32.fromrgb and b32.conv0 are frozen (weights registered as buffers after resample_filter).
    assert names[1:4] == ["b32.fromrgb.resample_filter", "b32.fromrgb.weight", "b32.fromrgb.bias"]
    assert names[4:7] == ["b32.conv0.resample_filter", "b32.conv0.weight", "b32.conv0.bias"]
    assert names[7:10] == ["b32.conv1.weight", "b32.conv1.bias", "b32.conv1.resample_filter"]


def test_tf_unknown_kwarg_and_mixed_stylegan1_are_refused():
    G, D, Gs = _load("sg2_tf_32.pkl")
    Gs2 = _tf_net("Gs", 4, dict(Gs.state["static_kwargs"], fmap_decay=1.0), Gs.state["variables"],
                  Gs.state["components"])
    with pytest.raises(CheckpointError, match="fmap_decay"):
        read_nvidia_tf((G, D, Gs2))
    # version 3 goes to the StyleGAN1 reader (tests/test_stylegan1.py), which refuses a mix of versions
    old = _tf_net("Gs", 3, Gs.state["static_kwargs"], Gs.state["variables"], Gs.state["components"])
    with pytest.raises(CheckpointError, match="StyleGAN1 .*version 4, expected 3"):
        read_nvidia_tf((G, D, old))


# --------------------------------------------------------------- malicious and broken


class _Reduce:
    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _refused(data: bytes, global_name: str):
    with pytest.raises(UnsafeCheckpointError) as info:
        load_pickle(data)
    msg = str(info.value)
    assert "\n" not in msg and f"'{global_name}'" in msg and "nothing from it was run" in msg


def test_os_system_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    data = pickle.dumps({"G": _Reduce(os.system, (f"touch {marker}",))}, protocol=4)
    _refused(data, f"{os.system.__module__}.system")          # posix.system on Linux
    _refused(pickle.dumps(_Reduce(os.system, (f"touch {marker}",)), protocol=2), f"{os.system.__module__}.system")
    assert not marker.exists()


def test_exec_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned_exec"
    data = pickle.dumps(_Reduce(exec, (f"open({str(marker)!r}, 'w').close()",)), protocol=3)
    _refused(data, "builtins.exec")
    assert not marker.exists()


def _storage_stream(storage_global: bytes, payload: bytes = struct.pack("<f", 1.5)) -> bytes:
    """A legacy torch.save stream whose persistent id names ``storage_global`` (b'module\\nname')."""
    d = lambda o: pickle.dumps(o, protocol=2)  # noqa: E731
    obj = (b"\x80\x02(X\x07\x00\x00\x00storagec" + storage_global + b"\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpu"
           b"K\x01Nt" + b"Q.")
    return (d(0x1950A86A20F9469CFC6C) + d(1001) + d({"protocol_version": 1001, "little_endian": True})
            + obj + d(["0"]) + struct.pack("<q", 1) + payload)


def test_nested_storage_stream_is_restricted(tmp_path):
    marker = tmp_path / "pwned_nested"
    assert load_storage_bytes(_storage_stream(b"torch\nFloatStorage")).tolist() == [1.5]
    evil = _storage_stream(b"posix\nsystem")
    with pytest.raises(UnsafeCheckpointError, match="'posix.system'"):
        load_storage_bytes(evil)
    wrapped = pickle.dumps(_Reduce(torch.storage._load_from_bytes, (evil,)), protocol=4)
    _refused(wrapped, "posix.system")
    # A non-storage torch global in the stream is refused too.
    with pytest.raises(UnsafeCheckpointError, match="'torch.load'"):
        load_storage_bytes(_storage_stream(b"torch\nload"))
    assert not marker.exists()


def test_truncated_storage_stream():
    good = _storage_stream(b"torch\nFloatStorage")
    for cut in (len(good) - 2, len(good) - 6, 30):
        with pytest.raises(CheckpointError):
            load_storage_bytes(good[:cut])


@pytest.mark.parametrize("name", _fixture_names())
def test_truncated_fixture_is_a_checkpoint_error(name):
    data = _need(name).read_bytes()
    with pytest.raises(CheckpointError) as info:
        load_pickle(data[: len(data) // 2])
    assert not isinstance(info.value, UnsafeCheckpointError)
    assert "\n" not in str(info.value)


def test_garbage_and_wrong_top_level():
    with pytest.raises(CheckpointError):
        load_pickle(b"not a pickle at all")
    with pytest.raises(CheckpointError):
        read_nvidia_pkl({"foo": 1})
    with pytest.raises(CheckpointError):
        read_nvidia_tf(("a", "b", "c"))
    with pytest.raises(CheckpointError):
        load_pickle(io.BytesIO(b""))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64,
                                   torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool])
def test_storage_dtypes_and_strides_roundtrip(dtype):
    """torch's own pickling of a strided view (nested legacy stream) decodes to the same values, contiguous."""
    x = (torch.arange(24) % 5).to(dtype).reshape(2, 3, 4).permute(2, 0, 1)[1:]   # [3, 2, 3], offset, strided
    y = load_pickle(pickle.dumps(torch.nn.Parameter(x, requires_grad=False) if dtype.is_floating_point else x))
    assert y.dtype == dtype and y.shape == x.shape and y.is_contiguous() and torch.equal(y, x)


def test_readers_never_use_unrestricted_loaders():
    for mod in (safe_pickle, nvidia_pkl, nvidia_tf):
        src = Path(mod.__file__).read_text()
        assert "torch.load(" not in src and "pickle.load(" not in src and "pickle.loads(" not in src
