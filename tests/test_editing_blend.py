"""Model blending vs shared/fixtures/editing/blend (Pinkney's blend_models.py and its PyTorch port)."""
import math
import os

import numpy as np
import pytest
import torch

from editing import blend as eb

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "fixtures")


def _fixture():
    path = os.path.join(ROOT, "editing", "blend", "blend_res256.npz")
    if not os.path.exists(path):
        pytest.skip(f"{path} missing")
    return np.load(path)


COLUMNS = {"intended": "y_intended_x_ge_0", "pinkney": "y_tf_original", "port": "y_pytorch_port", "step": "y_step_x_gt_0"}


def test_layer_weights_match_all_settings():
    d = _fixture()
    names = [str(n) for n in d["layer_nv_name"]]
    for n, res, lev, pos in zip(names, d["layer_res"], d["layer_level"], d["layer_pos"]):
        assert eb.module_position(n) == (int(res), int(lev), int(pos))
    for s in range(int(d["settings_count"])):
        res, level, width = d[f"s{s}_args"]
        width = None if np.isnan(width) else float(width)
        for rule, col in COLUMNS.items():
            if rule == "step" and width:
                continue
            ys = eb.param_weights([n + ".weight" for n in names], int(res), width, level=int(level), rule=rule)
            got = np.array([ys[n + ".weight"] for n in names])
            np.testing.assert_allclose(got, d[f"s{s}_{col}"], atol=1e-6, err_msg=f"s{s} {rule}")


def test_param_level_weights_s0():
    d = _fixture()
    res, level, _ = d["s0_args"]
    names = [str(n) for n in d["pt_param_names"]]
    ys = eb.param_weights(names, int(res), None, level=int(level), rule="port")
    np.testing.assert_allclose([ys[n] for n in names], d["pt_param_y_s0"], atol=0)
    assert all(ys[n] == 0 for n in names if n.startswith("mapping."))


def _pair():
    path = os.path.join(ROOT, "nvidia", "sg2ada_skip_32.pkl")
    if not os.path.exists(path):
        pytest.skip("sg2 fixture missing")
    import generators
    A = generators.load(path).eval()
    B = generators.load(path).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in B.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return A, B


def test_blend_generators():
    A, B = _pair()
    C = eb.blend(A, B, switch_res=16, width=None)
    pa, pb, pc = dict(A.named_parameters()), dict(B.named_parameters()), dict(C.named_parameters())
    for n in pc:
        pos = eb.module_position(n[len("synthesis."):]) if n.startswith("synthesis.") else None
        src = pb if (pos is not None and pos[0] >= 16) else pa      # 16x16 conv0 is the first from B
        assert torch.equal(pc[n], src[n]), n
    for n, b in C.named_buffers():
        assert torch.equal(b, dict(A.named_buffers())[n])           # w_avg, noise from the base
    # soft switch: exact per-parameter mix
    S = eb.blend(A, B, switch_res=16, width=1.0)
    n = "synthesis.b16.conv1.weight"
    y = 1 / (1 + math.exp(-1.0))
    torch.testing.assert_close(dict(S.named_parameters())[n], (1 - y) * pa[n] + y * pb[n])
    # alpha interpolation: alpha 0 is the base, alpha 1 the other (mapping included)
    z = torch.randn([2, A.z_dim])
    with torch.no_grad():
        torch.testing.assert_close(eb.blend(A, B, alpha=0.0)(z, None), A(z, None))
        M = eb.blend(A, B, alpha=1.0)
        for n, p in M.named_parameters():
            assert torch.equal(p, pb[n]), n
        # switching above the top resolution keeps the base model's images
        torch.testing.assert_close(eb.blend(A, B, switch_res=64)(z, None), A(z, None))


def test_blend_errors():
    with pytest.raises(ValueError):
        eb.param_weights(["synthesis.b4.const"])
    with pytest.raises(ValueError):
        eb.param_weights(["synthesis.b4.const"], switch_res=24)
    with pytest.raises(ValueError):
        eb.param_weights(["synthesis.L0_36_32.weight"], switch_res=16)
