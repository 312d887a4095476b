"""StyleGAN2 / StyleGAN2-ADA generator and discriminator (Karras et al. 2020), pure PyTorch.

Module names, parameter names and layer math follow NVIDIA's stylegan2-ada-pytorch
``training/networks.py`` so that its checkpoints load by name and user code written for
NVIDIA's ``G`` keeps working. Each network records the kwargs it was built with
(``init_kwargs``), which gankit saves next to the weights.

Differences from the reference, all numerically equivalent: widths can be given per
resolution (``channels``; community checkpoints do not follow ``channel_base``), the
modulated convolution defaults to the activation-scaling path (batches stay efficient), and
element-wise work is fused and in place when no gradient is needed.
"""
from __future__ import annotations

import copy
import math
from typing import Dict, Optional

import numpy as np
import torch
from torch import nn

from . import ops


def channels_table(resolutions, channel_base=32768, channel_max=512, channels=None) -> Dict[int, int]:
    """Width per resolution: explicit ``channels`` ({res: ch}, keys may be str) or NVIDIA's rule."""
    if channels is not None:
        table = {int(k): int(v) for k, v in channels.items()}
        missing = [r for r in resolutions if r not in table]
        if missing:
            raise ValueError(f"channels table lacks resolutions {missing}")
        return table
    return {r: min(channel_base // r, channel_max) for r in resolutions}


class FullyConnectedLayer(nn.Module):
    """Equalized-lr linear layer: ``act(x @ (W * lr/sqrt(in))^T + b * lr)``."""

    def __init__(self, in_features, out_features, bias=True, activation="linear", lr_multiplier=1.0, bias_init=0.0):
        super().__init__()
        self.in_features, self.out_features, self.activation = in_features, out_features, activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x):
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return ops.bias_act(x.matmul(w.t()), b, act=self.activation)

    def extra_repr(self):
        return f"in={self.in_features}, out={self.out_features}, activation={self.activation}"


class Conv2dLayer(nn.Module):
    """Equalized-lr convolution with optional FIR up/down-sampling, bias, activation, clamp."""

    def __init__(self, in_channels, out_channels, kernel_size, bias=True, activation="linear", up=1, down=1,
                 resample_filter=(1, 3, 3, 1), conv_clamp=None, trainable=True):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.activation, self.up, self.down, self.conv_clamp = activation, up, down, conv_clamp
        self.register_buffer("resample_filter", ops.setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)
        self.act_gain = ops.activation_gain(activation)
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size])
        bias_t = torch.zeros([out_channels]) if bias else None
        if trainable:
            self.weight = nn.Parameter(weight)
            self.bias = nn.Parameter(bias_t) if bias else None
        else:  # frozen layers keep their tensors as buffers (NVIDIA's freeze_layers)
            self.register_buffer("weight", weight)
            self.register_buffer("bias", bias_t) if bias else setattr(self, "bias", None)

    def forward(self, x, gain=1.0):
        w = self.weight * self.weight_gain
        x = ops.conv2d_resample(x, w.to(x.dtype), f=self.resample_filter, up=self.up, down=self.down,
                                padding=self.padding, flip_weight=(self.up == 1))
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        b = self.bias.to(x.dtype) if self.bias is not None else None
        return ops.bias_act(x, b, act=self.activation, gain=self.act_gain * gain, clamp=clamp)


class MappingNetwork(nn.Module):
    """z (+ embedded c) -> w, broadcast to ``num_ws`` copies; tracks ``w_avg``; truncation."""

    def __init__(self, z_dim, c_dim, w_dim, num_ws, num_layers=8, embed_features=None, layer_features=None,
                 activation="lrelu", lr_multiplier=0.01, w_avg_beta=0.995):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers, self.w_avg_beta = num_layers, w_avg_beta
        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            setattr(self, f"fc{idx}", FullyConnectedLayer(features[idx], features[idx + 1], activation=activation,
                                                          lr_multiplier=lr_multiplier))
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z, c=None, truncation_psi=1, truncation_cutoff=None, update_emas=False):
        x = None
        if self.z_dim > 0:
            x = ops.normalize_2nd_moment(z.to(torch.float32))                # [N, z_dim]
        if self.c_dim > 0:
            if c is None or c.ndim != 2 or c.shape[1] != self.c_dim:
                raise ValueError(f"this network is conditional: pass c of shape [N, {self.c_dim}]")
            y = ops.normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1) if x is not None else y
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)                                    # [N, w_dim]
        if update_emas and self.num_ws is not None and self.w_avg_beta is not None:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])                     # [N, num_ws, w_dim]
        if truncation_psi != 1:
            x = ops.truncate(x, self.w_avg, truncation_psi, truncation_cutoff)
        return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (+2x up) -> demodulate -> + noise -> bias, lrelu * gain, clamp."""

    def __init__(self, in_channels, out_channels, w_dim, resolution, kernel_size=3, up=1, use_noise=True,
                 activation="lrelu", resample_filter=(1, 3, 3, 1), conv_clamp=None):
        super().__init__()
        self.in_channels, self.out_channels, self.w_dim = in_channels, out_channels, w_dim
        self.resolution, self.up, self.use_noise = resolution, up, use_noise
        self.activation, self.conv_clamp = activation, conv_clamp
        self.register_buffer("resample_filter", ops.setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.act_gain = ops.activation_gain(activation)
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def _w2(self):
        """weight.square().sum([2, 3]) [O, I]; cached while the weight cannot change under autograd."""
        if torch.is_grad_enabled() and self.weight.requires_grad:
            return None
        key = (self.weight.data_ptr(), self.weight._version, self.weight.device)
        if getattr(self, "_w2_key", None) != key:
            self._w2_cache = self.weight.detach().float().square().sum(dim=[2, 3])
            self._w2_key = key
        return self._w2_cache

    def forward(self, x, w, noise_mode="const", fused_modconv=None, gain=1.0, noise=None, input_owned=False):
        """x: [N, I, H, W], w: [N, w_dim] -> [N, O, res, res]. ``noise`` overrides noise_mode.
        ``input_owned``: x is a temporary of the caller and may be overwritten (saves memory traffic)."""
        if noise_mode not in ("const", "random", "none"):
            raise ValueError(f"noise_mode must be const, random or none, not {noise_mode!r}")
        N = x.shape[0]
        styles = self.affine(w)                                                 # [N, I]
        g = self.act_gain * gain
        fold = self.activation in ops.HOMOGENEOUS   # fold the gain into the conv (act(x*g) = act(x)*g)
        x, scale = ops.modulated_conv2d(x, self.weight, styles, up=self.up, padding=self.padding,
                                        resample_filter=self.resample_filter, flip_weight=(self.up == 1),
                                        fused_modconv=fused_modconv, gain=g if fold else 1.0, w2=self._w2(),
                                        input_owned=input_owned)
        if noise is None and self.use_noise and noise_mode != "none":
            if noise_mode == "random":
                noise = torch.randn([N, 1, self.resolution, self.resolution], device=x.device, dtype=x.dtype)
            else:
                noise = self.noise_const.to(x.dtype)[None, None]
        elif noise is not None and not self.use_noise:
            noise = None
        if noise is not None:
            noise = noise.to(x.dtype) * (self.noise_strength.to(x.dtype) * (g if fold else 1.0))
        bias = self.bias * g if fold else self.bias
        x = ops.scale_bias_noise(x, scale, bias, noise)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return ops.bias_act(x, None, act=self.activation, gain=1.0 if fold else g, clamp=clamp)


class ToRGBLayer(nn.Module):
    """1x1 modulated conv without demodulation (styles carry the 1/sqrt(in) gain) + bias."""

    def __init__(self, in_channels, out_channels, w_dim, kernel_size=1, conv_clamp=None):
        super().__init__()
        self.in_channels, self.out_channels, self.w_dim, self.conv_clamp = in_channels, out_channels, w_dim, conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)

    def forward(self, x, w, fused_modconv=None):
        styles = self.affine(w) * self.weight_gain                              # [N, I]
        if self.weight.shape[2:] == (1, 1) and fused_modconv is None:
            # 1x1: per-sample weights [N, O, I] in one batched matmul, no pass over x for the styles
            N, I, H, W = x.shape
            wn = (self.weight[:, :, 0, 0].unsqueeze(0) * styles.unsqueeze(1)).to(x.dtype)   # [N, O, I]
            if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
                y = torch.bmm(x.permute(0, 2, 3, 1).reshape(N, H * W, I), wn.transpose(1, 2))  # [N, HW, O]
                x = y.reshape(N, H, W, -1).permute(0, 3, 1, 2)
            else:
                x = torch.bmm(wn, x.reshape(N, I, H * W)).reshape(N, -1, H, W)
        else:
            x, _ = ops.modulated_conv2d(x, self.weight, styles, demodulate=False, fused_modconv=fused_modconv)
        return ops.bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution: (const | 2x-up conv0) -> conv1 -> (toRGB), architecture orig/skip/resnet."""

    def __init__(self, in_channels, out_channels, w_dim, resolution, img_channels, is_last, architecture="skip",
                 resample_filter=(1, 3, 3, 1), conv_clamp=None, use_fp16=False, use_noise=True, activation="lrelu"):
        super().__init__()
        if architecture not in ("orig", "skip", "resnet"):
            raise ValueError(f"architecture must be orig, skip or resnet, not {architecture!r}")
        self.in_channels, self.out_channels, self.w_dim = in_channels, out_channels, w_dim
        self.resolution, self.img_channels, self.is_last = resolution, img_channels, is_last
        self.architecture, self.use_fp16 = architecture, use_fp16
        self._owns_input = False   # set by SynthesisNetwork: x comes from the previous block
        self.register_buffer("resample_filter", ops.setup_filter(resample_filter))
        self.num_conv = 0
        self.num_torgb = 0
        layer_kwargs = dict(use_noise=use_noise, activation=activation, resample_filter=resample_filter,
                            conv_clamp=conv_clamp)
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2, **layer_kwargs)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, **layer_kwargs)
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
            self.num_torgb += 1
        if in_channels != 0 and architecture == "resnet":
            self.skip = Conv2dLayer(in_channels, out_channels, kernel_size=1, bias=False, up=2,
                                    resample_filter=resample_filter)

    def forward(self, x, img, ws, noise_mode="const", force_fp32=False, fused_modconv=None, noise=None):
        """ws: [N, num_conv + num_torgb, w_dim]; noise: optional list of per-layer maps."""
        w_iter = iter(ws.unbind(dim=1))
        noise = list(noise) if noise is not None else [None] * self.num_conv
        use_fp16 = self.use_fp16 and not force_fp32 and (ws.device.type == "cuda" or ops.FP16_ON_CPU)
        dtype = torch.float16 if use_fp16 else torch.float32
        if self.in_channels == 0:
            x = self.const.to(dtype).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
            x = x.contiguous(memory_format=torch.channels_last)   # NHWC: the fastest conv/FIR layout
            x = self.conv1(x, next(w_iter), noise_mode, fused_modconv, noise=noise[0], input_owned=True)
        else:
            x_in = x
            x = x.to(dtype).contiguous(memory_format=torch.channels_last)
            owned = x is not x_in or self._owns_input   # never overwrite a tensor the user passed in
            if self.architecture == "resnet":
                y = self.skip(x, gain=np.sqrt(0.5))
                x = self.conv0(x, next(w_iter), noise_mode, fused_modconv, noise=noise[0], input_owned=owned)
                x = self.conv1(x, next(w_iter), noise_mode, fused_modconv, gain=np.sqrt(0.5), noise=noise[1],
                               input_owned=True)
                x = y.add_(x) if ops._can_inplace(y) else y + x
            else:
                x = self.conv0(x, next(w_iter), noise_mode, fused_modconv, noise=noise[0], input_owned=owned)
                x = self.conv1(x, next(w_iter), noise_mode, fused_modconv, noise=noise[1], input_owned=True)
        if img is not None:
            img = ops.upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == "skip":
            y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv).to(torch.float32)
            img = (img.add_(y) if ops._can_inplace(img) else img + y) if img is not None else y
        return x, img


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] -> image [N, img_channels, R, R]."""

    def __init__(self, w_dim, img_resolution, img_channels, channel_base=32768, channel_max=512, channels=None,
                 num_fp16_res=0, architecture="skip", conv_clamp=None, use_noise=True, activation="lrelu",
                 resample_filter=(1, 3, 3, 1)):
        super().__init__()
        log2 = int(np.log2(img_resolution))
        if img_resolution < 4 or 2 ** log2 != img_resolution:
            raise ValueError(f"img_resolution must be a power of two >= 4, not {img_resolution}")
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.block_resolutions = [2 ** i for i in range(2, log2 + 1)]
        self.channels = channels_table(self.block_resolutions, channel_base, channel_max, channels)
        fp16_resolution = max(2 ** (log2 + 1 - num_fp16_res), 8)
        self.num_ws = 0
        for res in self.block_resolutions:
            in_channels = self.channels[res // 2] if res > 4 else 0
            block = SynthesisBlock(in_channels, self.channels[res], w_dim, res, img_channels,
                                   is_last=(res == img_resolution), architecture=architecture,
                                   resample_filter=resample_filter, conv_clamp=conv_clamp,
                                   use_fp16=(res >= fp16_resolution), use_noise=use_noise, activation=activation)
            block._owns_input = True
            self.num_ws += block.num_conv
            if res == img_resolution:
                self.num_ws += block.num_torgb
            setattr(self, f"b{res}", block)

    def noise_shapes(self):
        """[(block, layer name, resolution)] for every layer that takes noise, in w order."""
        out = []
        for res in self.block_resolutions:
            if res > 4:
                out.append((f"b{res}", "conv0", res))
            out.append((f"b{res}", "conv1", res))
        return out

    def forward(self, ws, noise_mode="const", force_fp32=False, fused_modconv=None, noise=None):
        """ws: [N, num_ws, w_dim] -> [N, C, R, R]. ``noise``: optional list of [N or 1, 1, r, r]
        maps, one per conv layer in order (see ``noise_shapes``); overrides ``noise_mode``."""
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ValueError(f"ws must be [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        ws = ws.to(torch.float32)
        x = img = None
        w_idx = n_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            cur_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            cur_noise = noise[n_idx:n_idx + block.num_conv] if noise is not None else None
            x, img = block(x, img, cur_ws, noise_mode=noise_mode, force_fp32=force_fp32,
                           fused_modconv=fused_modconv, noise=cur_noise)
            w_idx += block.num_conv
            n_idx += block.num_conv
        return img


class Generator(nn.Module):
    """z, c -> image. ``G.mapping`` and ``G.synthesis`` can be called separately (NVIDIA's API)."""

    family = "stylegan2"
    mapping_class = None     # set below the class: MappingNetwork (StyleGAN3 overrides both)
    synthesis_class = None

    def __init__(self, z_dim=512, c_dim=0, w_dim=512, img_resolution=1024, img_channels=3, mapping_kwargs=None,
                 synthesis_kwargs=None, **flat_synthesis_kwargs):
        """``flat_synthesis_kwargs``: NVIDIA's stylegan3 repo passes synthesis settings flat."""
        super().__init__()
        mapping_kwargs = dict(mapping_kwargs or {})
        synthesis_kwargs = dict(synthesis_kwargs or {}, **flat_synthesis_kwargs)
        self.init_kwargs = copy.deepcopy(dict(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=img_resolution,
                                              img_channels=img_channels, mapping_kwargs=mapping_kwargs,
                                              synthesis_kwargs=synthesis_kwargs))
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = self.synthesis_class(w_dim, img_resolution, img_channels, **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = self.mapping_class(z_dim, c_dim, w_dim, self.num_ws, **mapping_kwargs)

    def forward(self, z, c=None, truncation_psi=1, truncation_cutoff=None, noise_mode="const", update_emas=False,
                **synthesis_kwargs):
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)
        return self.synthesis(ws, noise_mode=noise_mode, **synthesis_kwargs)


Generator.mapping_class = MappingNetwork
Generator.synthesis_class = SynthesisNetwork


# ----------------------------------------------------------------------------------------
# Discriminator


class DiscriminatorBlock(nn.Module):
    """(fromRGB) -> conv0 -> 2x-down conv1 (+ 1x1 skip for resnet)."""

    def __init__(self, in_channels, tmp_channels, out_channels, resolution, img_channels, architecture="resnet",
                 activation="lrelu", resample_filter=(1, 3, 3, 1), conv_clamp=None, use_fp16=False,
                 trainable=True):
        super().__init__()
        if architecture not in ("orig", "skip", "resnet"):
            raise ValueError(f"architecture must be orig, skip or resnet, not {architecture!r}")
        self.in_channels, self.resolution, self.img_channels = in_channels, resolution, img_channels
        self.architecture, self.use_fp16 = architecture, use_fp16
        self.register_buffer("resample_filter", ops.setup_filter(resample_filter))
        if in_channels == 0 or architecture == "skip":
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, kernel_size=1, activation=activation,
                                       conv_clamp=conv_clamp, trainable=trainable)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, kernel_size=3, activation=activation,
                                 conv_clamp=conv_clamp, trainable=trainable)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, kernel_size=3, activation=activation, down=2,
                                 resample_filter=resample_filter, conv_clamp=conv_clamp, trainable=trainable)
        if architecture == "resnet":
            self.skip = Conv2dLayer(tmp_channels, out_channels, kernel_size=1, bias=False, down=2,
                                    resample_filter=resample_filter, trainable=trainable)

    def forward(self, x, img, force_fp32=False):
        dev = (x if x is not None else img).device
        use_fp16 = self.use_fp16 and not force_fp32 and (dev.type == "cuda" or ops.FP16_ON_CPU)
        dtype = torch.float16 if use_fp16 else torch.float32
        if x is not None:
            x = x.to(dtype)
        if self.in_channels == 0 or self.architecture == "skip":
            y = self.fromrgb(img.to(dtype))
            x = x + y if x is not None else y
            img = ops.downsample2d(img, self.resample_filter) if self.architecture == "skip" else None
        if self.architecture == "resnet":
            y = self.skip(x, gain=np.sqrt(0.5))
            x = self.conv0(x)
            x = self.conv1(x, gain=np.sqrt(0.5))
            x = y + x
        else:
            x = self.conv0(x)
            x = self.conv1(x)
        return x, img


class MinibatchStdLayer(nn.Module):
    """Append the std over groups of samples (sample n is in group slot n mod N/G)."""

    def __init__(self, group_size, num_channels=1):
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x):
        N, C, H, W = x.shape
        G = min(self.group_size, N) if self.group_size is not None else N
        if N % G != 0:
            raise ValueError(f"batch size {N} must be divisible by the minibatch-std group size {G}")
        F_ = self.num_channels
        c = C // F_
        y = x.reshape(G, -1, F_, c, H, W)                                       # [G, n, F, c, H, W]
        y = y - y.mean(dim=0)
        y = y.square().mean(dim=0)
        y = (y + 1e-8).sqrt()
        y = y.mean(dim=[2, 3, 4])                                                # [n, F]
        y = y.reshape(-1, F_, 1, 1).repeat(G, 1, H, W)                           # [N, F, H, W]
        return torch.cat([x, y], dim=1)


class DiscriminatorEpilogue(nn.Module):
    def __init__(self, in_channels, cmap_dim, resolution, img_channels, architecture="resnet", mbstd_group_size=4,
                 mbstd_num_channels=1, activation="lrelu", conv_clamp=None):
        super().__init__()
        self.in_channels, self.cmap_dim, self.resolution = in_channels, cmap_dim, resolution
        self.img_channels, self.architecture = img_channels, architecture
        if architecture == "skip":
            self.fromrgb = Conv2dLayer(img_channels, in_channels, kernel_size=1, activation=activation)
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels > 0 else None
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, kernel_size=3, activation=activation,
                                conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * resolution ** 2, in_channels, activation=activation)
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x, img, cmap):
        x = x.to(torch.float32)
        if self.architecture == "skip":
            x = x + self.fromrgb(img.to(torch.float32))
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        x = self.fc(x.flatten(1))
        x = self.out(x)
        if self.cmap_dim > 0:
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / np.sqrt(self.cmap_dim))
        return x


class Discriminator(nn.Module):
    """image [N, C, R, R] (+ c) -> logits [N, 1]."""

    family = "stylegan2"

    def __init__(self, c_dim=0, img_resolution=1024, img_channels=3, architecture="resnet", channel_base=32768,
                 channel_max=512, channels=None, num_fp16_res=0, conv_clamp=None, cmap_dim=None,
                 mbstd_group_size=4, mbstd_num_channels=1, activation="lrelu", resample_filter=(1, 3, 3, 1),
                 freeze_layers=0, mapping_kwargs=None):
        super().__init__()
        mapping_kwargs = dict(mapping_kwargs or {})
        self.init_kwargs = copy.deepcopy(dict(
            c_dim=c_dim, img_resolution=img_resolution, img_channels=img_channels, architecture=architecture,
            channel_base=channel_base, channel_max=channel_max, channels=channels, num_fp16_res=num_fp16_res,
            conv_clamp=conv_clamp, cmap_dim=cmap_dim, mbstd_group_size=mbstd_group_size,
            mbstd_num_channels=mbstd_num_channels, activation=activation,
            resample_filter=list(resample_filter) if resample_filter is not None else None,
            freeze_layers=freeze_layers, mapping_kwargs=mapping_kwargs))
        self.c_dim, self.img_resolution, self.img_channels = c_dim, img_resolution, img_channels
        log2 = int(np.log2(img_resolution))
        if img_resolution < 4 or 2 ** log2 != img_resolution:
            raise ValueError(f"img_resolution must be a power of two >= 4, not {img_resolution}")
        self.block_resolutions = [2 ** i for i in range(log2, 2, -1)]
        self.channels = channels_table(self.block_resolutions + [4], channel_base, channel_max, channels)
        fp16_resolution = max(2 ** (log2 + 1 - num_fp16_res), 8)
        if cmap_dim is None:
            cmap_dim = self.channels[4]
        if c_dim == 0:
            cmap_dim = 0
        self.cmap_dim = cmap_dim
        cur_layer = 0
        for res in self.block_resolutions:
            in_channels = self.channels[res] if res < img_resolution else 0
            num_layers = (in_channels == 0 or architecture == "skip") + 2 + (architecture == "resnet")
            block = DiscriminatorBlock(in_channels, self.channels[res], self.channels[res // 2], res, img_channels,
                                       architecture=architecture, activation=activation,
                                       resample_filter=resample_filter, conv_clamp=conv_clamp,
                                       use_fp16=(res >= fp16_resolution),
                                       trainable=(cur_layer + num_layers > freeze_layers))
            cur_layer += num_layers
            setattr(self, f"b{res}", block)
        if c_dim > 0:
            self.mapping = MappingNetwork(z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None,
                                          **mapping_kwargs)
        self.b4 = DiscriminatorEpilogue(self.channels[4], cmap_dim=cmap_dim, resolution=4, img_channels=img_channels,
                                        architecture=architecture, mbstd_group_size=mbstd_group_size,
                                        mbstd_num_channels=mbstd_num_channels, activation=activation,
                                        conv_clamp=conv_clamp)

    def forward(self, img, c=None, force_fp32=False, **kwargs):
        x = None
        for res in self.block_resolutions:
            x, img = getattr(self, f"b{res}")(x, img, force_fp32=force_fp32)
        cmap = None
        if self.c_dim > 0:
            if c is None or c.ndim != 2 or c.shape[1] != self.c_dim:
                raise ValueError(f"this discriminator is conditional: pass c of shape [N, {self.c_dim}]")
            cmap = self.mapping(None, c)
        return self.b4(x, img, cmap)
