"""The pure-PyTorch ops against direct, independent formulas."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from generators import ops
from generators.stylegan2 import Discriminator, Generator


def naive_upfirdn2d(x, f, up, down, pad, gain):
    """Textbook definition with explicit loops over the filter taps (true convolution)."""
    x = x.double().numpy()
    f = np.asarray(f, dtype=np.float64) * gain
    N, C, H, W = x.shape
    u = np.zeros((N, C, H * up, W * up))
    u[:, :, ::up, ::up] = x
    px0, px1, py0, py1 = pad
    u = np.pad(u, ((0, 0), (0, 0), (max(py0, 0), max(py1, 0)), (max(px0, 0), max(px1, 0))))
    u = u[:, :, max(-py0, 0): u.shape[2] - max(-py1, 0), max(-px0, 0): u.shape[3] - max(-px1, 0)]
    fh, fw = f.shape
    oh, ow = u.shape[2] - fh + 1, u.shape[3] - fw + 1
    out = np.zeros((N, C, oh, ow))
    ff = f[::-1, ::-1]  # convolution = correlation with the flipped filter
    for i in range(fh):
        for j in range(fw):
            out += ff[i, j] * u[:, :, i:i + oh, j:j + ow]
    return torch.from_numpy(out[:, :, ::down, ::down])


@pytest.mark.parametrize("C", [3, 16])
@pytest.mark.parametrize("up,down,pad,gain", [(1, 1, (1, 1, 1, 1), 1), (2, 1, (2, 1, 2, 1), 4), (1, 2, (1, 1, 1, 1), 1),
                                              (1, 1, (2, 0, -1, 1), 1), (2, 2, (1, 2, 0, 1), 4)])
def test_upfirdn2d_matches_definition(C, up, down, pad, gain):
    torch.manual_seed(0)
    x = torch.randn(2, C, 9, 7)
    for taps in ([1, 3, 3, 1], [1, 2, 5]):  # symmetric and asymmetric (orientation matters)
        f = ops.setup_filter(taps)
        got = ops.upfirdn2d(x, f, up=up, down=down, padding=pad, gain=gain)
        ref = naive_upfirdn2d(x, f, up, down, pad, gain)
        assert got.shape == ref.shape
        assert torch.allclose(got.double(), ref, atol=1e-5), (taps, float((got.double() - ref).abs().max()))
    f2 = torch.rand(3, 4)  # non-separable 2-D filter
    got = ops.upfirdn2d(x, f2, up=up, down=down, padding=pad, gain=gain)
    assert torch.allclose(got.double(), naive_upfirdn2d(x, f2, up, down, pad, gain), atol=1e-5)


def test_bias_act_formula_and_grad():
    torch.manual_seed(0)
    x = torch.randn(4, 5, 3, 3, requires_grad=True)
    b = torch.randn(5, requires_grad=True)
    y = ops.bias_act(x, b, act="lrelu", clamp=0.5)
    ref = (F.leaky_relu(x + b.view(1, -1, 1, 1), 0.2) * math.sqrt(2)).clamp(-0.5, 0.5)
    assert torch.allclose(y, ref)
    y.sum().backward()
    assert x.grad is not None and b.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("up", [1, 2])
def test_modulated_conv_paths_agree_with_per_sample_reference(up):
    """Fused (grouped), non-fused (activation scaling) and N=1 paths equal a per-sample plain conv."""
    torch.manual_seed(1)
    N, I, O, H = 3, 6, 5, 8
    x, w, s = torch.randn(N, I, H, H), torch.randn(O, I, 3, 3), torch.randn(N, I)
    f = ops.setup_filter([1, 3, 3, 1])
    refs = []
    for n in range(N):
        wn = w * s[n].view(1, -1, 1, 1)
        wn = wn / (wn.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).sqrt()
        if up == 1:
            y = F.conv2d(x[n:n + 1], wn, padding=1)
        else:  # zero-insert, pad, flipped-kernel conv, then the x4 [1,3,3,1] blur (NVIDIA's definition)
            y = F.conv_transpose2d(x[n:n + 1], wn.transpose(0, 1), stride=2)
            y = naive_upfirdn2d(y, f, 1, 1, (1, 1, 1, 1), 4).float()
        refs.append(y)
    ref = torch.cat(refs)
    for fused in (True, False):
        y, scale = ops.modulated_conv2d(x, w, s, up=up, padding=1, resample_filter=f, flip_weight=(up == 1),
                                        fused_modconv=fused)
        if scale is not None:
            y = y * scale.view(N, -1, 1, 1)
        assert torch.allclose(y, ref, atol=1e-4), fused
    y1, _ = ops.modulated_conv2d(x[1:2], w, s[1:2], up=up, padding=1, resample_filter=f, flip_weight=(up == 1))
    assert torch.allclose(y1, ref[1:2], atol=1e-4)


def test_minibatch_std_groups_by_stride():
    from generators.stylegan2 import MinibatchStdLayer
    x = torch.randn(8, 4, 2, 2)
    y = MinibatchStdLayer(4)(x)[:, -1, 0, 0]
    for n in range(8):
        group = x[[m for m in range(8) if m % 2 == n % 2]]
        expect = (group.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
        assert torch.allclose(y[n], expect, atol=1e-6)


@pytest.mark.parametrize("arch", ["orig", "skip", "resnet"])
def test_train_step_gradients_flow(arch):
    """G and D of every architecture are differentiable end to end (what training and inversion need)."""
    torch.manual_seed(0)
    G = Generator(z_dim=8, w_dim=8, img_resolution=16, c_dim=2, mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(channel_base=128, channel_max=16, architecture=arch, conv_clamp=256))
    D = Discriminator(c_dim=2, img_resolution=16, channel_base=128, channel_max=16, architecture=arch)
    z, c = torch.randn(4, 8), F.one_hot(torch.tensor([0, 1, 0, 1]), 2).float()
    loss = F.softplus(-D(G(z, c, noise_mode="random"), c)).mean()
    loss.backward()
    for net in (G, D):
        for name, p in net.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
    # W+ code optimisation (inversion) gets a gradient too
    ws = G.mapping(z, c).detach().requires_grad_(True)
    G.synthesis(ws, noise_mode="const").square().mean().backward()
    assert ws.grad.abs().sum() > 0


def test_noise_modes_and_truncation():
    torch.manual_seed(0)
    G = Generator(z_dim=8, w_dim=8, img_resolution=8, mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(channel_base=64, channel_max=8)).eval()
    with torch.no_grad():
        for layer in (G.synthesis.b4.conv1, G.synthesis.b8.conv0, G.synthesis.b8.conv1):
            layer.noise_strength.fill_(0.5)
        G.mapping.w_avg.normal_()
        z = torch.randn(2, 8)
        a, b = G(z, noise_mode="const"), G(z, noise_mode="const")
        assert torch.equal(a, b)
        assert not torch.allclose(G(z, noise_mode="random"), a)
        assert not torch.allclose(G(z, noise_mode="none"), a)
        ws = G.mapping(z)
        wt = G.mapping(z, truncation_psi=0.5, truncation_cutoff=2)
        assert torch.allclose(wt[:, :2], G.mapping.w_avg + 0.5 * (ws[:, :2] - G.mapping.w_avg))
        assert torch.equal(wt[:, 2:], ws[:, 2:])
        assert torch.allclose(G.mapping(z, truncation_psi=0), G.mapping.w_avg.expand_as(ws))
        with pytest.raises(ValueError):
            G.synthesis(ws[:, :-1])
        with pytest.raises(ValueError):
            G(z, noise_mode="loud")


def test_update_emas_tracks_w_avg():
    torch.manual_seed(0)
    G = Generator(z_dim=4, w_dim=4, img_resolution=4, mapping_kwargs=dict(num_layers=1, w_avg_beta=0.5),
                  synthesis_kwargs=dict(channel_base=16, channel_max=4))
    z = torch.randn(16, 4)
    with torch.no_grad():
        w = G.mapping(z)[:, 0]
        G.mapping(z, update_emas=True)
    assert torch.allclose(G.mapping.w_avg, 0.5 * w.mean(0))


def test_fp16_blocks_close_to_fp32(monkeypatch):
    """The fp16 path (pre-normalised modulation, clamping) agrees with fp32 to fp16 precision."""
    torch.manual_seed(0)
    G = Generator(z_dim=16, w_dim=16, img_resolution=32, mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(channel_base=512, channel_max=32, num_fp16_res=2, conv_clamp=256)).eval()
    D = Discriminator(img_resolution=32, channel_base=512, channel_max=32, num_fp16_res=2, conv_clamp=256)
    z = torch.randn(4, 16)
    with torch.no_grad():
        ref = G(z, force_fp32=True)
        dref = D(ref, force_fp32=True)
        monkeypatch.setattr(ops, "FP16_ON_CPU", True)
        for fused in (None, True, False):
            img = G(z, fused_modconv=fused)
            assert img.dtype == torch.float32
            err = float((img - ref).abs().max() / ref.abs().max())
            assert err < 2e-2, (fused, err)
        d = D(ref)
    assert float((d - dref).abs().max()) < 2e-2 * max(1.0, float(dref.abs().max()))
