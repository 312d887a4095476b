"""SeFa vs shared/fixtures/editing/sefa (genforce/sefa factorize_weight, rosinality closed form)."""
import os
import re

import numpy as np
import pytest
import torch

from editing import sefa

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "fixtures")


def _fixture(family):
    path = os.path.join(ROOT, "editing", "sefa", f"sefa_{family}_res256_w64.npz")
    if not os.path.exists(path):
        pytest.skip(f"fixture {path} missing")
    d = np.load(path)
    names = sorted(k for k in d.files if re.fullmatch(r"weight_\d+", k))
    return d, [d[k] for k in names]


def _gf_weights(family, d, weights):
    """Weights indexed by genforce SeFa index (= W+ row)."""
    if family == "sg2":
        gi = d["layer_gf_index"]
        return [weights[j] for j in np.argsort(gi) if gi[j] >= 0]
    return weights


def _check(d, preset, ev, dirs):
    ref = d[f"gf_{preset}_dirs"]
    cos = np.abs((dirs[:10].astype(np.float64) * ref).sum(1) / np.linalg.norm(ref, axis=1))
    assert cos.min() >= 0.99999, (preset, cos)
    np.testing.assert_allclose(ev[:10], d[f"gf_{preset}_eigvals"], rtol=1e-5)
    np.testing.assert_allclose(ev, d[f"gf_{preset}_eigvals_all"], rtol=1e-3, atol=1e-5)
    assert np.all(np.diff(ev) <= 0)
    np.testing.assert_allclose(np.linalg.norm(dirs, axis=1), 1, atol=1e-5)


@pytest.mark.parametrize("family", ["sg1", "sg2", "sg3"])
def test_factorize_weights_all_presets(family):
    d, weights = _fixture(family)
    ws = _gf_weights(family, d, weights)
    assert len(ws) == int(d["num_ws"])
    for preset in d["preset_names"]:
        preset = str(preset)
        layers = preset if preset in ("all", "coarse", "middle", "fine") else d[f"gf_{preset}_layers"].tolist()
        assert sefa.resolve_layers(layers, len(ws)).tolist() == d[f"gf_{preset}_layers"].tolist()
        ev, dirs = sefa.factorize(ws, layers)
        assert ev.shape == (64,) and dirs.shape == (64, 64)
        _check(d, preset, ev, dirs)


def test_layer_strings():
    assert sefa.resolve_layers("0-1", 14).tolist() == [0, 1]
    assert sefa.resolve_layers("2-5", 14).tolist() == [2, 3, 4, 5]
    assert sefa.resolve_layers("fine", 10).tolist() == [6, 7, 8, 9]       # clipped to num_ws - 1
    assert sefa.resolve_layers("5,1-2,2", 14).tolist() == [1, 2, 5]
    with pytest.raises(ValueError):
        sefa.resolve_layers("0-20", 14)


def _load_affines(G, d, weights, names_key):
    sd = G.state_dict()
    for name, w in zip(d[names_key], weights):
        name = str(name)
        assert sd[name].shape == w.shape, (name, sd[name].shape, w.shape)
        sd[name] = torch.from_numpy(w)
    G.load_state_dict(sd)


def test_factorize_stylegan2_generator():
    from generators.stylegan2 import Generator
    d, weights = _fixture("sg2")
    G = Generator(z_dim=64, w_dim=64, img_resolution=256, mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(channel_base=4096, channel_max=64))
    assert G.num_ws == int(d["num_ws"])
    _load_affines(G, d, weights, "layer_nv_name")
    for preset in ("all", "coarse", "middle", "fine"):
        _check(d, preset, *sefa.factorize(G, preset))
    # rosinality compatibility: raw stack incl. the 4x4 toRGB, excl. the final one
    s, v = sefa.factorize_rosinality(G)
    np.testing.assert_allclose(s, d["ros_singular_values"], rtol=1e-4)
    cos = np.abs((v[:10] * d["ros_eigvec"].T[:10]).sum(1))
    assert cos.min() >= 0.9999


def test_factorize_rosinality_weights():
    d, weights = _fixture("sg2")
    s, v = sefa.factorize_rosinality([weights[i] for i in d["ros_included_rows"]])
    np.testing.assert_allclose(s, d["ros_singular_values"], rtol=1e-4)
    cos = np.abs((v * d["ros_eigvec"].T).sum(1))
    assert cos[:10].min() >= 0.9999


def test_factorize_stylegan1_generator():
    from generators.stylegan1 import Generator
    d, weights = _fixture("sg1")
    G = Generator(z_dim=64, w_dim=64, img_resolution=256, mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(channel_base=2048, channel_max=64))
    names = []
    for i in range(int(d["num_ws"])):
        names.append(f"synthesis.b{4 * 2 ** (i // 2)}.conv{i % 2}.affine.weight")
    sd = G.state_dict()
    for name, w in zip(names, weights):
        assert sd[name].shape == w.shape, (name, sd[name].shape, w.shape)
        sd[name] = torch.from_numpy(w)
    G.load_state_dict(sd)
    for preset in ("all", "coarse", "middle", "fine"):
        _check(d, preset, *sefa.factorize(G, preset))


def test_factorize_stylegan3_checkpoint():
    path = os.path.join(ROOT, "nvidia", "sg3_t_32.pkl")
    if not os.path.exists(path):
        pytest.skip("sg3 fixture missing")
    import generators
    G = generators.load(path)
    ws = sefa.style_weights(G)
    assert len(ws) == G.num_ws and ws[0].shape == (4, G.w_dim)
    ev, dirs = sefa.factorize(G, "all")
    assert ev.shape == (G.w_dim,) and np.all(np.diff(ev) <= 0) and np.all(np.isfinite(dirs))
    ev2, dirs2 = sefa.factorize(ws, "all")
    np.testing.assert_allclose(ev, ev2, rtol=1e-6)
    ev3, _ = sefa.factorize(G, "1-3")        # input affine not included
    assert np.isfinite(ev3).all()
