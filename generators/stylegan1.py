"""StyleGAN (Karras et al. 2019, "A Style-Based Generator Architecture for GANs"), pure PyTorch.

Generator and discriminator of the StyleGAN paper with the API of gankit's StyleGAN2 (NVIDIA's
vocabulary): ``G.mapping(z, c)`` -> ws ``[N, num_ws, w_dim]``, ``G.synthesis(ws)`` -> image,
``G(z, c)``, ``D(img, c)`` -> logits ``[N, 1]``; plus the progressive-growing controls of the
original (``step``: output resolution ``4 * 2**step``, ``alpha``: fade-in of the newest block).

One set of modules represents both NVIDIA's official TF networks (``networks_stylegan.py``:
``G_style`` / ``G_mapping`` / ``G_synthesis`` / ``D_basic``) and rosinality's
``style-based-gan-pytorch`` checkpoints. Parameters are stored in **NVIDIA's TF convention**
(TF values, PyTorch layouts); readers of other formats convert on read. Every weight is
multiplied at run time by ``gain * lr_multiplier / sqrt(fan_in)``, ``fan_in = in * k * k``.

Generator (``C`` = the layer's output width, ``r`` = resolution):

* ``mapping.fc{i}.weight`` [out, in], ``.bias`` [out]: gain sqrt(2), ``lr_multiplier`` (TF 0.01,
  rosinality 1), which also scales the bias; lrelu 0.2 after each layer, no extra gain.
* ``mapping.embed.weight`` [z_dim, c_dim]: TF ``LabelConcat`` (``c @ W^T``, unscaled, concatenated
  to z before the pixel norm). ``mapping.w_avg`` [w_dim]: the truncation centre.
* ``synthesis.b4.const`` [C, 4, 4]: the learned constant; ``b4.conv0`` is the layer on it (no weight).
* ``synthesis.b{r}.conv0.weight`` [C, C_in, 3, 3]: nearest 2x up + 3x3 conv, gain sqrt(2), then the
  blur. Blocks in ``fused_up`` compute the same function as one transposed conv whose kernel is the
  sum of the four one-pixel shifts of the *flipped* weight (TF stores the transposed-conv
  orientation, so readers flip fused kernels). ``conv1.weight`` [C, C, 3, 3]: gain sqrt(2).
* ``...conv{0,1}.bias`` [C]: added after the noise (TF); with ``bias_before_blur`` (rosinality) the
  up-conv's bias is added before the blur.
* ``...conv{0,1}.noise_strength`` [C]: per channel, unscaled. ``...noise_const`` [r, r]: the const
  noise; with ``shared_noise`` (rosinality) only ``conv0`` has one and both layers use it.
* ``...conv{0,1}.affine.weight`` [2C, w_dim] (gain 1), ``.bias`` [2C]: ``s = affine(w)``, then
  ``x * s[:C] + s[C:]`` after lrelu and instance norm (eps ``norm_eps``: TF 1e-8, rosinality
  1e-5). The scale half of the bias includes the +1 that TF adds at run time.
* ``synthesis.b{r}.torgb.weight`` [img_channels, C, 1, 1] (gain 1), ``.bias``: one per resolution.

Discriminator: ``b{r}.fromrgb`` [C_r, img_channels, 1, 1] (gain sqrt(2), lrelu unless
``fromrgb_activation=False``), ``b{r}.conv0`` [mid_r, C_r, 3, 3], blur, ``b{r}.conv1``
[C_{r/2}, mid_r, 3, 3] with 2x down-sampling (conv + 2x2 average, or in ``fused_down`` blocks one
stride-2 conv with the averaged shifted kernel), ``b4.conv`` [C4, C4 + mbstd, 3, 3], ``b4.fc``
[F, 16 C4], ``b4.out`` [max(c_dim, 1), F] (gain 1); all other gains sqrt(2).

Block ``r`` uses ws ``2k-4`` (conv0) and ``2k-3`` (conv1), ``k = log2(r)``, so
``num_ws = 2 * log2(img_resolution) - 2`` (rosinality's one-style-per-block generator gets the
same layer numbering: its blocks take ws 2i and 2i+1, equal unless a caller mixes inside a block).
"""
from __future__ import annotations

import copy
import math
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import ops
from .stylegan2 import MinibatchStdLayer, channels_table

SQRT2 = math.sqrt(2)
NOISE_MODES = ("const", "random", "none")
ACTIVATIONS = ("lrelu", "relu")


def _act(x: torch.Tensor, activation: str) -> torch.Tensor:
    return F.leaky_relu(x, 0.2) if activation == "lrelu" else F.relu(x)


def _check_activation(activation: str) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, not {activation!r}")


def blur_kernel(taps: Optional[Sequence[float]]) -> Optional[torch.Tensor]:
    """1-D taps (odd length) -> normalised 2-D kernel [k, k] (TF ``blur2d``); None = no blur."""
    if taps is None:
        return None
    f = torch.tensor([float(t) for t in taps], dtype=torch.float32, device="cpu")
    if f.ndim != 1 or f.numel() % 2 != 1 or float(f.sum()) == 0:
        raise ValueError(f"blur_filter must be an odd-length list of taps with a non-zero sum, not {taps!r}")
    f = torch.outer(f, f)
    return f / f.sum()


def _blur(x: torch.Tensor, k: Optional[torch.Tensor]) -> torch.Tensor:
    if k is None:
        return x
    C = x.shape[1]
    w = k.to(x.dtype)[None, None].expand(C, 1, *k.shape)
    return F.conv2d(x, w, padding=k.shape[-1] // 2, groups=C)


def instance_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    """Per sample and channel over H, W (biased variance, no affine)."""
    x = x - x.mean(dim=[2, 3], keepdim=True)
    return x * torch.rsqrt(x.square().mean(dim=[2, 3], keepdim=True) + eps)


def _shifted_sum(w: torch.Tensor) -> torch.Tensor:
    """[.., .., 3, 3] -> [.., .., 4, 4]: pad by one and add the four one-pixel shifts."""
    w = F.pad(w, [1, 1, 1, 1])
    return w[:, :, 1:, 1:] + w[:, :, :-1, 1:] + w[:, :, 1:, :-1] + w[:, :, :-1, :-1]


_G_SUB = ["const"] + [f"conv{j}.{n}" for j in (0, 1) for n in
                      ("weight", "bias", "noise_strength", "noise_const", "affine.weight", "affine.bias")] + \
    ["torgb.weight", "torgb.bias"]
_D_SUB = [f"{m}.{n}" for m in ("fromrgb", "conv0", "conv1", "conv", "fc", "out") for n in ("weight", "bias")]


def state_dict_order(kind: str, keys) -> List[str]:
    """``keys`` sorted into the order ``state_dict()`` of the ``kind`` module lists them (readers use
    this so that converted files list tensors as the module does, without building a module)."""
    def rank(k: str):
        parts = k.split(".")
        if kind.endswith("Generator"):
            if parts[0] == "synthesis" and parts[1].startswith("b"):
                rest = ".".join(parts[2:])
                return (0, int(parts[1][1:]), _G_SUB.index(rest) if rest in _G_SUB else len(_G_SUB), rest)
            if parts[0] == "mapping":
                if parts[1] == "w_avg":
                    return (1, -2, 0, "")
                if parts[1] == "embed":
                    return (1, -1, 0, "")
                if parts[1].startswith("fc") and parts[1][2:].isdigit():
                    return (1, int(parts[1][2:]), 0 if parts[-1] == "weight" else 1, "")
            return (2, 0, 0, k)
        if parts[0].startswith("b") and parts[0][1:].isdigit():
            rest = ".".join(parts[1:])
            return (0, -int(parts[0][1:]), _D_SUB.index(rest) if rest in _D_SUB else len(_D_SUB), rest)
        return (1, 0, 0, k)
    return sorted(keys, key=rank)


# ----------------------------------------------------------------------------------------
# Layers


class EqualLinear(nn.Module):
    """``x @ (W * gain * lr / sqrt(in))^T + b * lr``."""

    def __init__(self, in_features, out_features, bias=True, gain=1.0, lr_multiplier=1.0, bias_init=0.0):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        if bias:
            b = torch.as_tensor(bias_init, dtype=torch.float32)
            self.bias = nn.Parameter(b.expand(out_features).clone() if b.ndim == 0 else b.clone())
        else:
            self.bias = None
        self.weight_gain = gain * lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x):
        w = self.weight.to(x.dtype) * self.weight_gain
        if self.bias is None:
            return x.matmul(w.t())
        b = self.bias.to(x.dtype)
        if self.bias_gain != 1:
            b = b * self.bias_gain
        return torch.addmm(b.unsqueeze(0), x, w.t())

    def extra_repr(self):
        return f"in={self.in_features}, out={self.out_features}"


class EqualConv2d(nn.Module):
    """Equalized-lr convolution, stride 1, 'same' padding: ``conv(x, W * gain / sqrt(fan_in)) + b``."""

    def __init__(self, in_channels, out_channels, kernel_size, bias=True, gain=SQRT2):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None
        self.weight_gain = gain / math.sqrt(in_channels * kernel_size ** 2)
        self.padding = kernel_size // 2

    def forward(self, x):
        b = self.bias.to(x.dtype) if self.bias is not None else None
        return F.conv2d(x, (self.weight * self.weight_gain).to(x.dtype), b, padding=self.padding)


class MappingNetwork(nn.Module):
    """z (+ c) -> pixel norm -> ``num_layers`` x (equal-lr dense, lrelu) -> w, broadcast to num_ws."""

    def __init__(self, z_dim, c_dim, w_dim, num_ws, num_layers=8, layer_features=None, activation="lrelu",
                 lr_multiplier=0.01, normalize_latents=True, w_avg_beta=0.995):
        super().__init__()
        _check_activation(activation)
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers, self.activation, self.w_avg_beta = num_layers, activation, w_avg_beta
        self.normalize_latents = normalize_latents
        if layer_features is None:
            layer_features = w_dim
        in_features = z_dim * 2 if c_dim > 0 else z_dim
        features = [in_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if num_layers < 1:
            raise ValueError("the mapping network needs at least one layer")
        if c_dim > 0:  # TF LabelConcat: labels @ W [c_dim, z_dim], no scaling, no bias
            self.embed = EqualLinear(c_dim, z_dim, bias=False)
            self.embed.weight_gain = 1.0
        for idx in range(num_layers):
            setattr(self, f"fc{idx}", EqualLinear(features[idx], features[idx + 1], gain=SQRT2,
                                                  lr_multiplier=lr_multiplier))
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z, c=None, truncation_psi=1, truncation_cutoff=None, update_emas=False):
        x = z.to(torch.float32)
        if self.c_dim > 0:
            if c is None or c.ndim != 2 or c.shape[1] != self.c_dim:
                raise ValueError(f"this network is conditional: pass c of shape [N, {self.c_dim}]")
            x = torch.cat([x, self.embed(c.to(torch.float32))], dim=1)
        if self.normalize_latents:
            x = x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + 1e-8)
        for idx in range(self.num_layers):
            x = _act(getattr(self, f"fc{idx}")(x), self.activation)
        if update_emas and self.w_avg_beta is not None:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            x = ops.truncate(x, self.w_avg, truncation_psi, truncation_cutoff)
        return x


class SynthesisLayer(nn.Module):
    """(const | 2x-up conv + blur | conv) -> + noise -> + bias -> act -> instance norm -> style."""

    def __init__(self, in_channels, out_channels, w_dim, resolution, mode="conv", fused=False, use_noise=True,
                 own_noise=True, bias_before_blur=False, blur_filter=(1, 2, 1), norm_eps=1e-8,
                 activation="lrelu"):
        super().__init__()
        if mode not in ("const", "up", "conv"):
            raise ValueError(f"mode must be const, up or conv, not {mode!r}")
        _check_activation(activation)
        self.in_channels, self.out_channels, self.w_dim = in_channels, out_channels, w_dim
        self.resolution, self.mode, self.fused, self.use_noise = resolution, mode, bool(fused), use_noise
        self.bias_before_blur, self.norm_eps, self.activation = bool(bias_before_blur), float(norm_eps), activation
        if mode != "const":
            self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 3, 3]))
            self.weight_gain = SQRT2 / math.sqrt(in_channels * 9)
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        if use_noise:
            self.noise_strength = nn.Parameter(torch.zeros([out_channels]))
            if own_noise:
                self.register_buffer("noise_const", torch.randn([resolution, resolution]))
        self.affine = EqualLinear(w_dim, 2 * out_channels, gain=1.0,
                                  bias_init=[1.0] * out_channels + [0.0] * out_channels)
        k = blur_kernel(blur_filter) if mode == "up" else None
        self.register_buffer("blur_kernel", k, persistent=False)

    def forward(self, x, w, noise=None):
        """x: [N, in, r/2, r/2] ([N, C, 4, 4] for const), w: [N, w_dim], noise: [N or 1, 1, r, r] or None."""
        bias = self.bias.to(x.dtype).reshape(1, -1, 1, 1)
        late_bias = True
        if self.mode == "up":
            weight = (self.weight * self.weight_gain).to(x.dtype)
            if self.fused:   # one transposed conv == nearest 2x + 3x3 conv (TF's fused_scale)
                wt = weight.flip([2, 3]).permute(1, 0, 2, 3)                     # [in, out, 3, 3]
                x = F.conv_transpose2d(x, _shifted_sum(wt), stride=2, padding=1)
            else:
                x = F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), weight, padding=1)
            if self.bias_before_blur:
                x = x + bias
                late_bias = False
            x = _blur(x, self.blur_kernel)
        elif self.mode == "conv":
            x = F.conv2d(x, (self.weight * self.weight_gain).to(x.dtype), padding=1)
        if noise is not None and self.use_noise:
            x = x + noise.to(x.dtype) * self.noise_strength.to(x.dtype).reshape(1, -1, 1, 1)
        if late_bias:
            x = x + bias
        x = instance_norm(_act(x, self.activation), self.norm_eps)
        s = self.affine(w.to(x.dtype))
        C = self.out_channels
        return x * s[:, :C, None, None] + s[:, C:, None, None]

    def extra_repr(self):
        return (f"in={self.in_channels}, out={self.out_channels}, res={self.resolution}, mode={self.mode}"
                + (", fused" if self.fused else ""))


class ToRGBLayer(nn.Module):
    def __init__(self, in_channels, img_channels):
        super().__init__()
        self.weight = nn.Parameter(torch.randn([img_channels, in_channels, 1, 1]))
        self.bias = nn.Parameter(torch.zeros([img_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x):
        return F.conv2d(x, (self.weight * self.weight_gain).to(x.dtype), self.bias.to(x.dtype))


class SynthesisBlock(nn.Module):
    """One resolution: conv0 (const at 4x4, else 2x up) and conv1; its own toRGB (progressive growing)."""

    def __init__(self, in_channels, out_channels, w_dim, resolution, img_channels, fused=False, shared_noise=False,
                 use_noise=True, **layer_kwargs):
        super().__init__()
        self.in_channels, self.out_channels, self.resolution = in_channels, out_channels, resolution
        self.shared_noise, self.use_noise = bool(shared_noise), bool(use_noise)
        if resolution == 4:
            self.const = nn.Parameter(torch.ones([out_channels, 4, 4]))
            self.conv0 = SynthesisLayer(out_channels, out_channels, w_dim, 4, mode="const", use_noise=use_noise,
                                        **layer_kwargs)
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, mode="up", fused=fused,
                                        use_noise=use_noise, **layer_kwargs)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, mode="conv", use_noise=use_noise,
                                    own_noise=not shared_noise, **layer_kwargs)
        self.torgb = ToRGBLayer(out_channels, img_channels)

    @property
    def num_noise(self) -> int:
        return 0 if not self.use_noise else (1 if self.shared_noise else 2)

    def _noise(self, layer: SynthesisLayer, given, N, like: torch.Tensor, noise_mode: str):
        if given is not None:
            return given
        if noise_mode == "random":
            return torch.randn([N, 1, self.resolution, self.resolution], device=like.device, dtype=like.dtype)
        if noise_mode == "const":
            return layer.noise_const.to(like.dtype)[None, None]
        return None

    def forward(self, x, ws, noise_mode="const", noise=None):
        """x: previous features (None at 4x4); ws: [N, 2, w_dim]; noise: ``num_noise`` maps or Nones."""
        N = ws.shape[0]
        if self.resolution == 4:
            x = self.const.to(ws.dtype).unsqueeze(0).repeat([N, 1, 1, 1])
        noise = list(noise) if noise is not None else [None] * self.num_noise
        n0 = n1 = None
        if self.use_noise:
            n0 = self._noise(self.conv0, noise[0], N, ws, noise_mode)
            n1 = n0 if self.shared_noise else self._noise(self.conv1, noise[1], N, ws, noise_mode)
        x = self.conv0(x, ws[:, 0], n0)
        return self.conv1(x, ws[:, 1], n1)


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] -> image [N, img_channels, 4 * 2**step, ...] (default: full resolution)."""

    def __init__(self, w_dim, img_resolution, img_channels, channel_base=16384, channel_max=512, channels=None,
                 fused_up=None, shared_noise=False, use_noise=True, norm_eps=1e-8, bias_before_blur=False,
                 blur_filter=(1, 2, 1), activation="lrelu"):
        super().__init__()
        log2 = int(round(math.log2(img_resolution))) if img_resolution > 0 else 0
        if img_resolution < 4 or 2 ** log2 != img_resolution:
            raise ValueError(f"img_resolution must be a power of two >= 4, not {img_resolution}")
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.block_resolutions = [2 ** i for i in range(2, log2 + 1)]
        self.channels = channels_table(self.block_resolutions, channel_base, channel_max, channels)
        if fused_up is None:   # TF's fused_scale='auto': transposed conv from 128 px output on
            fused_up = [r for r in self.block_resolutions if r >= 128]
        self.fused_up = sorted(int(r) for r in fused_up)
        self.shared_noise, self.use_noise = bool(shared_noise), bool(use_noise)
        self.num_ws = 2 * len(self.block_resolutions)
        for res in self.block_resolutions:
            block = SynthesisBlock(self.channels[res // 2] if res > 4 else 0, self.channels[res], w_dim, res,
                                   img_channels, fused=res in self.fused_up, shared_noise=shared_noise,
                                   use_noise=use_noise, bias_before_blur=bias_before_blur, blur_filter=blur_filter,
                                   norm_eps=norm_eps, activation=activation)
            setattr(self, f"b{res}", block)

    def noise_shapes(self):
        """[(block, layer, resolution)] of every noise input, in the order ``noise=[...]`` takes them.
        With ``shared_noise`` there is one per block (``conv0``'s, used by both layers)."""
        out = []
        for res in self.block_resolutions:
            if self.use_noise:
                out.append((f"b{res}", "conv0", res))
                if not self.shared_noise:
                    out.append((f"b{res}", "conv1", res))
        return out

    def forward(self, ws, noise_mode="const", noise=None, step=None, alpha=1.0):
        """``step`` s renders 4 * 2**s px with blocks 0..s (default: all); ``0 <= alpha < 1`` (with s > 0)
        fades in the last block: ``(1 - alpha) * up2(toRGB_{s-1}(x_{s-1})) + alpha * toRGB_s(x_s)``.
        ``ws`` needs at least ``2 (s + 1)`` and at most ``num_ws`` entries. ``noise``: optional list in
        ``noise_shapes()`` order of [N or 1, 1, r, r] maps (None entries follow ``noise_mode``); entries
        for blocks above ``step`` may be left out."""
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be const, random or none, not {noise_mode!r}")
        nb = len(self.block_resolutions)
        step = nb - 1 if step is None else int(step)
        if not 0 <= step < nb:
            raise ValueError(f"step must be in [0, {nb - 1}] for this {self.img_resolution} px network, not {step}")
        need = 2 * (step + 1)
        if ws.ndim != 3 or ws.shape[2] != self.w_dim or not need <= ws.shape[1] <= self.num_ws:
            raise ValueError(f"ws must be [N, {self.num_ws}, {self.w_dim}] (at least {need} ws for step {step}), "
                             f"got {list(ws.shape)}")
        if noise is not None and len(noise) > len(self.noise_shapes()):
            raise ValueError(f"noise has {len(noise)} maps; this network takes at most {len(self.noise_shapes())} "
                             "(see noise_shapes())")
        ws = ws.to(torch.float32)
        x = prev = None
        n_idx = 0
        for i in range(step + 1):
            block = getattr(self, f"b{self.block_resolutions[i]}")
            k = block.num_noise
            cur = None
            if noise is not None:
                cur = [noise[j] if j < len(noise) else None for j in range(n_idx, n_idx + k)]
            prev = x
            x = block(x, ws[:, 2 * i:2 * i + 2], noise_mode=noise_mode, noise=cur)
            n_idx += k
        img = getattr(self, f"b{self.block_resolutions[step]}").torgb(x)
        if step > 0 and 0 <= alpha < 1:
            skip = getattr(self, f"b{self.block_resolutions[step - 1]}").torgb(prev)
            skip = F.interpolate(skip, scale_factor=2, mode="nearest")
            img = (1 - alpha) * skip + alpha * img
        return img


class Generator(nn.Module):
    """z, c -> image. ``G.mapping`` and ``G.synthesis`` can be called separately (NVIDIA's API).

    ``default_truncation_psi`` / ``default_truncation_cutoff`` record what the original code applies
    when the network is run without arguments (NVIDIA's TF ``Gs``: psi 0.7 on the first 8 ws;
    rosinality's generate.py: 0.7 on all). gankit's calls default to psi = 1 like every other
    network; pass these attributes explicitly to reproduce the original samples.
    """

    family = "stylegan1"

    def __init__(self, z_dim=512, c_dim=0, w_dim=512, img_resolution=1024, img_channels=3, mapping_kwargs=None,
                 synthesis_kwargs=None, default_truncation_psi=1.0, default_truncation_cutoff=None):
        super().__init__()
        mapping_kwargs = dict(mapping_kwargs or {})
        synthesis_kwargs = dict(synthesis_kwargs or {})
        if "blur_filter" in synthesis_kwargs and synthesis_kwargs["blur_filter"] is not None:
            synthesis_kwargs["blur_filter"] = list(synthesis_kwargs["blur_filter"])
        if "fused_up" in synthesis_kwargs and synthesis_kwargs["fused_up"] is not None:
            synthesis_kwargs["fused_up"] = [int(r) for r in synthesis_kwargs["fused_up"]]
        self.init_kwargs = copy.deepcopy(dict(
            z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
            mapping_kwargs=mapping_kwargs, synthesis_kwargs=synthesis_kwargs,
            default_truncation_psi=default_truncation_psi, default_truncation_cutoff=default_truncation_cutoff))
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.default_truncation_psi = float(default_truncation_psi)
        self.default_truncation_cutoff = default_truncation_cutoff
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, self.num_ws, **mapping_kwargs)

    def forward(self, z, c=None, truncation_psi=1, truncation_cutoff=None, noise_mode="const", update_emas=False,
                step=None, alpha=1.0, noise=None):
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)
        return self.synthesis(ws, noise_mode=noise_mode, noise=noise, step=step, alpha=alpha)


# ----------------------------------------------------------------------------------------
# Discriminator


class DiscriminatorBlock(nn.Module):
    """fromRGB (used when the image enters here), conv0 3x3, blur, conv1 3x3 with 2x down-sampling."""

    def __init__(self, in_channels, mid_channels, out_channels, resolution, img_channels, fused=False,
                 fromrgb_activation=True, blur_filter=(1, 2, 1), activation="lrelu"):
        super().__init__()
        self.resolution, self.fused, self.activation = resolution, bool(fused), activation
        self.fromrgb_activation = bool(fromrgb_activation)
        self.fromrgb = EqualConv2d(img_channels, in_channels, 1)
        self.conv0 = EqualConv2d(in_channels, mid_channels, 3)
        self.conv1 = EqualConv2d(mid_channels, out_channels, 3)
        self.register_buffer("blur_kernel", blur_kernel(blur_filter), persistent=False)

    def from_rgb(self, img):
        x = self.fromrgb(img)
        return _act(x, self.activation) if self.fromrgb_activation else x

    def forward(self, x):
        x = _act(self.conv0(x), self.activation)
        x = _blur(x, self.blur_kernel)
        c = self.conv1
        w = (c.weight * c.weight_gain).to(x.dtype)
        if self.fused:   # stride-2 conv with the shift-averaged 4x4 kernel (TF's fused_scale)
            x = F.conv2d(x, _shifted_sum(w) * 0.25, stride=2, padding=1)
        else:
            x = F.avg_pool2d(F.conv2d(x, w, padding=1), 2)
        return _act(x + c.bias.to(x.dtype).reshape(1, -1, 1, 1), self.activation)


class DiscriminatorEpilogue(nn.Module):
    """4x4: fromRGB (step 0 only), minibatch stddev, conv 3x3, dense, output dense."""

    def __init__(self, in_channels, fc_features, c_dim, img_channels, fromrgb_activation=True, mbstd_group_size=4,
                 mbstd_num_channels=1, activation="lrelu"):
        super().__init__()
        self.c_dim, self.activation, self.fromrgb_activation = c_dim, activation, bool(fromrgb_activation)
        self.fromrgb = EqualConv2d(img_channels, in_channels, 1)
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels > 0 else None
        self.conv = EqualConv2d(in_channels + mbstd_num_channels, in_channels, 3)
        self.fc = EqualLinear(in_channels * 16, fc_features, gain=SQRT2)
        self.out = EqualLinear(fc_features, max(c_dim, 1), gain=1.0)

    def from_rgb(self, img):
        x = self.fromrgb(img)
        return _act(x, self.activation) if self.fromrgb_activation else x

    def forward(self, x, c=None):
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = _act(self.conv(x), self.activation)
        x = _act(self.fc(x.flatten(1)), self.activation)
        x = self.out(x)
        if self.c_dim > 0:   # TF LabelSwitch
            x = (x * c.to(x.dtype)).sum(dim=1, keepdim=True)
        return x


class Discriminator(nn.Module):
    """image [N, C, 4 * 2**step, ...] (+ c) -> logits [N, 1]; the default step is the full resolution.

    ``mbstd_group_size=None`` takes the stddev over the whole batch (rosinality); TF uses groups of 4.
    ``mid_channels`` {res: width} is conv0's output width (TF: = channels[res]; rosinality:
    channels[res // 2]); ``fc_features`` the 4x4 dense width (TF: nf(0); rosinality: channels[4]).
    """

    family = "stylegan1"

    def __init__(self, c_dim=0, img_resolution=1024, img_channels=3, channel_base=16384, channel_max=512,
                 channels=None, mid_channels=None, fc_features=None, fused_down=None, fromrgb_activation=True,
                 mbstd_group_size=4, mbstd_num_channels=1, blur_filter=(1, 2, 1), activation="lrelu"):
        super().__init__()
        _check_activation(activation)
        log2 = int(round(math.log2(img_resolution))) if img_resolution > 0 else 0
        if img_resolution < 4 or 2 ** log2 != img_resolution:
            raise ValueError(f"img_resolution must be a power of two >= 4, not {img_resolution}")
        self.c_dim, self.img_resolution, self.img_channels = c_dim, img_resolution, img_channels
        self.block_resolutions = [2 ** i for i in range(log2, 2, -1)]          # [R, ..., 8]
        self.channels = channels_table(self.block_resolutions + [4], channel_base, channel_max, channels)
        mids = {r: self.channels[r] for r in self.block_resolutions}
        if mid_channels is not None:
            mids.update({int(k): int(v) for k, v in mid_channels.items()})
        if fused_down is None:   # TF's fused_scale='auto': from 128 px input on
            fused_down = [r for r in self.block_resolutions if r >= 128]
        fused_down = sorted(int(r) for r in fused_down)
        fc_features = self.channels[4] if fc_features is None else int(fc_features)
        self.init_kwargs = copy.deepcopy(dict(
            c_dim=c_dim, img_resolution=img_resolution, img_channels=img_channels, channel_base=channel_base,
            channel_max=channel_max, channels={str(r): c for r, c in sorted(self.channels.items())},
            mid_channels={str(r): c for r, c in sorted(mids.items())}, fc_features=fc_features,
            fused_down=fused_down, fromrgb_activation=bool(fromrgb_activation), mbstd_group_size=mbstd_group_size,
            mbstd_num_channels=mbstd_num_channels,
            blur_filter=list(blur_filter) if blur_filter is not None else None, activation=activation))
        for res in self.block_resolutions:
            setattr(self, f"b{res}", DiscriminatorBlock(
                self.channels[res], mids[res], self.channels[res // 2], res, img_channels, fused=res in fused_down,
                fromrgb_activation=fromrgb_activation, blur_filter=blur_filter, activation=activation))
        self.b4 = DiscriminatorEpilogue(self.channels[4], fc_features, c_dim, img_channels,
                                        fromrgb_activation=fromrgb_activation, mbstd_group_size=mbstd_group_size,
                                        mbstd_num_channels=mbstd_num_channels, activation=activation)

    def forward(self, img, c=None, step=None, alpha=1.0, **kwargs):
        nb = len(self.block_resolutions) + 1
        step = nb - 1 if step is None else int(step)
        if not 0 <= step < nb:
            raise ValueError(f"step must be in [0, {nb - 1}] for this {self.img_resolution} px network, not {step}")
        res = 4 * 2 ** step
        if img.ndim != 4 or img.shape[1] != self.img_channels or tuple(img.shape[2:]) != (res, res):
            raise ValueError(f"images must be [N, {self.img_channels}, {res}, {res}] for step {step}, "
                             f"got {list(img.shape)}")
        if self.c_dim > 0 and (c is None or c.ndim != 2 or c.shape[1] != self.c_dim):
            raise ValueError(f"this discriminator is conditional: pass c of shape [N, {self.c_dim}]")
        img = img.to(torch.float32)
        x = getattr(self, f"b{res}").from_rgb(img)
        r = res
        while r > 4:
            x = getattr(self, f"b{r}")(x)
            if r == res and 0 <= alpha < 1:
                skip = getattr(self, f"b{r // 2}").from_rgb(F.avg_pool2d(img, 2))
                x = (1 - alpha) * skip + alpha * x
            r //= 2
        return self.b4(x, c)
