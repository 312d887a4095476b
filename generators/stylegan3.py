"""StyleGAN3 ("Alias-Free GAN", Karras et al. 2021) generator, configs T and R, pure PyTorch.

Module names, parameter names and layer math follow NVIDIA's stylegan3 ``networks_stylegan3.py``
so that its pickles load by name (``G.mapping``, ``G.synthesis.input``, ``G.synthesis.L{i}_{size}_{ch}``)
and code written for NVIDIA's ``G`` keeps working (``G.synthesis.input.transform`` included).

Layer geometry (sizes, sampling rates, cutoffs, transition bands, filter taps, paddings) is
computed in the constructor from the init kwargs as in the paper (Sec. 3.2 / App. F) - or taken
verbatim from ``layers`` / ``input`` (what a pickle's per-layer state says), so any checkpoint
rebuilds exactly even where its settings are unusual.

The filtered leaky ReLU is ``ops.filtered_lrelu``: polyphase up-sampling, strided down-sampling,
no zero-stuffed tensors, strips of rows that stay in cache. Everything else is fused where
NVIDIA's reference spends extra passes (the activation gain and the input normalisation by
``magnitude_ema`` are folded into the demodulation coefficients).
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import ops
from . import stylegan2
from .stylegan2 import FullyConnectedLayer

__all__ = ["Generator", "MappingNetwork", "SynthesisNetwork", "SynthesisInput", "SynthesisLayer",
           "make_transform", "design_lowpass_filter", "layer_geometry"]


# ----------------------------------------------------------------------------------------
# Filter design (Kaiser-windowed sinc, or jinc for radially symmetric filters)


def _kaiser_beta(numtaps: int, width: float) -> float:
    """Kaiser window beta for a transition band ``width`` (in units of Nyquist)."""
    atten = 2.285 * (numtaps - 1) * math.pi * width + 7.95          # dB
    if atten > 50:
        return 0.1102 * (atten - 8.7)
    if atten > 21:
        return 0.5842 * (atten - 21) ** 0.4 + 0.07886 * (atten - 21)
    return 0.0


def design_lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float,
                          radial: bool = False) -> Optional[torch.Tensor]:
    """Low-pass FIR with ``numtaps`` taps (None for 1 = identity), cutoff and transition ``width``
    in the units of the sampling rate ``fs``. 1-D windowed sinc normalised to unit DC gain, or
    (``radial``) a 2-D jinc with a separable Kaiser window, normalised to sum 1."""
    if numtaps < 1:
        raise ValueError(f"numtaps must be >= 1, not {numtaps}")
    if numtaps == 1:
        return None
    nyq = fs / 2
    beta = _kaiser_beta(numtaps, width / nyq)
    window = np.kaiser(numtaps, beta)
    x = np.arange(numtaps) - (numtaps - 1) / 2
    if not radial:
        c = cutoff / nyq
        h = c * np.sinc(c * x) * window
        return torch.as_tensor(h / h.sum(), dtype=torch.float32)
    t = x / fs
    r = torch.as_tensor(np.hypot(*np.meshgrid(t, t)), dtype=torch.float64)
    arg = 2 * cutoff * math.pi * r
    j1 = torch.special.bessel_j1(arg)
    f = torch.where(r > 0, j1 / (math.pi * r).clamp_min(1e-300), torch.full_like(r, cutoff)).numpy()
    f = f * np.outer(window, window)
    return torch.as_tensor(f / f.sum(), dtype=torch.float32)


# ----------------------------------------------------------------------------------------
# Geometry


def layer_geometry(img_resolution: int, img_channels: int, channel_base: float = 32768, channel_max: int = 512,
                   num_layers: int = 14, num_critical: int = 2, first_cutoff: float = 2,
                   first_stopband: float = 2 ** 2.1, last_stopband_rel: float = 2 ** 0.3, margin_size: int = 10,
                   num_fp16_res: int = 4, conv_kernel: int = 3, filter_size: int = 6, lrelu_upsampling: int = 2,
                   use_radial_filters: bool = False, conv_clamp: Optional[float] = 256,
                   magnitude_ema_beta: float = 0.999) -> Tuple[Dict[str, Any], List[Dict[str, Any]]]:
    """(input spec, per-layer specs) of a StyleGAN3 synthesis network, from its hyperparameters.

    Cutoffs f_c and minimum stopbands f_t follow a geometric progression from the first layer to
    the last ``num_critical`` (critically sampled) layers; the sampling rate is the smallest power
    of two >= 2 f_t (at most the image resolution); the transition half-width is
    max(f_t, s/2) - f_c; widths are channel_base / 2 / f_c (at most channel_max). Each layer
    up-samples to ``lrelu_upsampling`` x the larger of its input and output rates for the
    nonlinearity.
    """
    L = num_layers
    last_cutoff = img_resolution / 2
    last_stopband = last_cutoff * last_stopband_rel
    exponents = np.minimum(np.arange(L + 1) / (L - num_critical), 1)
    cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** exponents
    stopbands = first_stopband * (last_stopband / first_stopband) ** exponents
    rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, img_resolution))))
    half_widths = np.maximum(stopbands, rates / 2) - cutoffs
    sizes = rates + margin_size * 2
    sizes[-2:] = img_resolution
    channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
    channels[-1] = img_channels
    inp = dict(channels=int(channels[0]), size=[int(sizes[0])] * 2, sampling_rate=float(rates[0]),
               bandwidth=float(cutoffs[0]))
    layers = []
    for idx in range(L + 1):
        prev = max(idx - 1, 0)
        is_torgb = idx == L
        spec = dict(
            is_torgb=is_torgb, is_critically_sampled=bool(idx >= L - num_critical),
            use_fp16=bool(rates[idx] * 2 ** num_fp16_res > img_resolution),
            in_channels=int(channels[prev]), out_channels=int(channels[idx]),
            in_size=[int(sizes[prev])] * 2, out_size=[int(sizes[idx])] * 2,
            in_sampling_rate=int(rates[prev]), out_sampling_rate=int(rates[idx]),
            in_cutoff=float(cutoffs[prev]), out_cutoff=float(cutoffs[idx]),
            in_half_width=float(half_widths[prev]), out_half_width=float(half_widths[idx]),
            conv_kernel=1 if is_torgb else int(conv_kernel), conv_clamp=conv_clamp,
            magnitude_ema_beta=float(magnitude_ema_beta))
        spec.update(_resampling(spec, filter_size, lrelu_upsampling, use_radial_filters))
        spec["name"] = f"L{idx}_{spec['out_size'][0]}_{spec['out_channels']}"
        layers.append(spec)
    return inp, layers


def _resampling(spec: Dict[str, Any], filter_size: int, lrelu_upsampling: int, use_radial_filters: bool) -> dict:
    """Up/down factors, taps, radial flag and padding of one layer."""
    torgb = spec["is_torgb"]
    tmp = max(spec["in_sampling_rate"], spec["out_sampling_rate"]) * (1 if torgb else lrelu_upsampling)
    up = int(np.rint(tmp / spec["in_sampling_rate"]))
    down = int(np.rint(tmp / spec["out_sampling_rate"]))
    if spec["in_sampling_rate"] * up != tmp or spec["out_sampling_rate"] * down != tmp:
        raise ValueError(f"sampling rates {spec['in_sampling_rate']} -> {spec['out_sampling_rate']} are not integer "
                         f"divisors of the intermediate rate {tmp}")
    up_taps = filter_size * up if up > 1 and not torgb else 1
    down_taps = filter_size * down if down > 1 and not torgb else 1
    k = spec["conv_kernel"]
    pad = []
    for axis in range(2):   # x, then y
        total = (spec["out_size"][axis] - 1) * down + 1 - (spec["in_size"][axis] + k - 1) * up + up_taps + down_taps - 2
        lo = (total + up) // 2          # symmetric sample positions (paper App. C.3)
        pad += [int(lo), int(total - lo)]
    return dict(tmp_sampling_rate=tmp, up_factor=up, up_taps=up_taps, down_factor=down, down_taps=down_taps,
                down_radial=bool(use_radial_filters and not spec["is_critically_sampled"]), padding=pad)


# ----------------------------------------------------------------------------------------
# Mapping


class MappingNetwork(nn.Module):
    """StyleGAN3 mapping: normalised z (and normalised embed(c)) -> ``num_layers`` lrelu FCs of
    width w_dim -> w, broadcast to ``num_ws``; tracks ``w_avg``; truncation of the first
    ``truncation_cutoff`` ws (all by default)."""

    def __init__(self, z_dim, c_dim, w_dim, num_ws, num_layers=2, lr_multiplier=0.01, w_avg_beta=0.998):
        super().__init__()
        if z_dim <= 0:
            raise ValueError("StyleGAN3 mapping needs z_dim > 0")
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers, self.w_avg_beta = num_layers, w_avg_beta
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, w_dim)
        features = [z_dim + (w_dim if c_dim > 0 else 0)] + [w_dim] * num_layers
        for idx in range(num_layers):
            setattr(self, f"fc{idx}", FullyConnectedLayer(features[idx], features[idx + 1], activation="lrelu",
                                                          lr_multiplier=lr_multiplier))
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z, c=None, truncation_psi=1, truncation_cutoff=None, update_emas=False):
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must be [N, {self.z_dim}], got {list(z.shape)}")
        x = ops.normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            if c is None or c.ndim != 2 or c.shape[1] != self.c_dim:
                raise ValueError(f"this network is conditional: pass c of shape [N, {self.c_dim}]")
            y = ops.normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1)
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        if update_emas:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            x = ops.truncate(x, self.w_avg, truncation_psi, truncation_cutoff)
        return x

    def extra_repr(self):
        return f"z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}"


# ----------------------------------------------------------------------------------------
# Synthesis


def make_transform(translate: Sequence[float] = (0.0, 0.0), angle_deg: float = 0.0) -> torch.Tensor:
    """The user transform of NVIDIA's gen_images: [[c, s, tx], [-s, c, ty], [0, 0, 1]] (float64).

    ``G.synthesis.input.transform`` holds its *inverse*: ``G.synthesis.input.set_transform(m)``
    (or ``G.set_transform(translate, angle_deg)``) writes it.
    """
    a = math.radians(float(angle_deg))
    c, s = math.cos(a), math.sin(a)
    return torch.tensor([[c, s, float(translate[0])], [-s, c, float(translate[1])], [0.0, 0.0, 1.0]],
                        dtype=torch.float64)


class SynthesisInput(nn.Module):
    """Fourier features: ``channels`` sinusoids of frequency <= ``bandwidth`` sampled on a
    ``size`` grid at ``sampling_rate``, rotated/translated by an affine of w and by the user
    ``transform`` buffer (NVIDIA's convention: the inverse of the transform of the image),
    then mixed by a learned ``weight``."""

    def __init__(self, w_dim, channels, size, sampling_rate, bandwidth):
        super().__init__()
        self.w_dim, self.channels = w_dim, int(channels)
        size = [int(size), int(size)] if np.isscalar(size) else [int(v) for v in size]
        self.size = size                                  # [width, height]
        self.sampling_rate, self.bandwidth = float(sampling_rate), float(bandwidth)
        freqs = torch.randn([self.channels, 2])           # uniform on a disc of radius bandwidth
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs /= radii * radii.square().exp().pow(0.25)
        freqs *= self.bandwidth
        phases = torch.rand([self.channels]) - 0.5
        self.weight = nn.Parameter(torch.randn([self.channels, self.channels]))
        self.affine = FullyConnectedLayer(w_dim, 4)
        with torch.no_grad():                            # starts as the identity transform
            self.affine.weight.zero_()
            self.affine.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
        self.register_buffer("transform", torch.eye(3, 3))
        self.register_buffer("freqs", freqs)
        self.register_buffer("phases", phases)

    def set_transform(self, user_matrix) -> None:
        """Set the buffer to the inverse of a 3x3 user transform (see :func:`make_transform`)."""
        m = torch.as_tensor(user_matrix, dtype=torch.float64).reshape(3, 3)
        with torch.no_grad():
            self.transform.copy_(torch.linalg.inv(m).to(self.transform.dtype))

    def forward(self, w):
        N = w.shape[0]
        t = self.affine(w)                                       # (r_c, r_s, t_x, t_y)
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        c, s, tx, ty = t.unbind(dim=1)
        one, zero = torch.ones_like(c), torch.zeros_like(c)
        m_r = torch.stack([c, -s, zero, s, c, zero, zero, zero, one], dim=1).view(N, 3, 3)   # rotation
        m_t = torch.stack([one, zero, -tx, zero, one, -ty, zero, zero, one], dim=1).view(N, 3, 3)  # translation
        T = m_r @ m_t @ self.transform.unsqueeze(0)
        phases = self.phases.unsqueeze(0) + (self.freqs.unsqueeze(0) @ T[:, :2, 2:]).squeeze(2)   # [N, C]
        freqs = self.freqs.unsqueeze(0) @ T[:, :2, :2]                                              # [N, C, 2]
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth) /
                      (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)                         # [N, C]
        W, H = self.size
        theta = torch.eye(2, 3, device=w.device)
        theta[0, 0] = 0.5 * W / self.sampling_rate
        theta[1, 1] = 0.5 * H / self.sampling_rate
        grid = F.affine_grid(theta.unsqueeze(0), [1, 1, H, W], align_corners=False)               # [1, H, W, 2]
        x = (grid.unsqueeze(3) @ freqs.permute(0, 2, 1).unsqueeze(1).unsqueeze(2)).squeeze(3)    # [N, H, W, C]
        x = x + phases.unsqueeze(1).unsqueeze(2)
        x = torch.sin(x * (2 * math.pi)) * amplitudes.unsqueeze(1).unsqueeze(2)
        x = x @ (self.weight * (1 / math.sqrt(self.channels))).t()
        return x.permute(0, 3, 1, 2)                              # [N, C, H, W], channels-last memory

    def extra_repr(self):
        return (f"w_dim={self.w_dim}, channels={self.channels}, size={self.size}, "
                f"sampling_rate={self.sampling_rate:g}, bandwidth={self.bandwidth:g}")


class SynthesisLayer(nn.Module):
    """Modulated conv (demodulated; ToRGB: not) -> bias -> filtered leaky ReLU -> clamp.

    The input is normalised by sqrt(``magnitude_ema``) (the running mean square of the input,
    updated with ``update_emas``); this and the activation gain are folded into the conv.
    """

    def __init__(self, w_dim, is_torgb, is_critically_sampled, use_fp16, in_channels, out_channels, in_size,
                 out_size, in_sampling_rate, out_sampling_rate, in_cutoff, out_cutoff, in_half_width,
                 out_half_width, conv_kernel=3, filter_size=6, lrelu_upsampling=2, use_radial_filters=False,
                 conv_clamp=256, magnitude_ema_beta=0.999, tmp_sampling_rate=None, up_factor=None, up_taps=None,
                 down_factor=None, down_taps=None, down_radial=None, padding=None):
        super().__init__()
        self.w_dim = w_dim
        self.is_torgb, self.is_critically_sampled, self.use_fp16 = bool(is_torgb), bool(is_critically_sampled), \
            bool(use_fp16)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        two = lambda v: [int(v), int(v)] if np.isscalar(v) else [int(a) for a in v]   # noqa: E731
        self.in_size, self.out_size = two(in_size), two(out_size)                     # [width, height]
        self.in_sampling_rate, self.out_sampling_rate = in_sampling_rate, out_sampling_rate
        self.in_cutoff, self.out_cutoff = float(in_cutoff), float(out_cutoff)
        self.in_half_width, self.out_half_width = float(in_half_width), float(out_half_width)
        self.conv_kernel = 1 if self.is_torgb else int(conv_kernel)
        self.conv_clamp = None if conv_clamp is None else float(conv_clamp)
        self.magnitude_ema_beta = float(magnitude_ema_beta)
        derived = _resampling(dict(is_torgb=self.is_torgb, is_critically_sampled=self.is_critically_sampled,
                                   in_sampling_rate=in_sampling_rate, out_sampling_rate=out_sampling_rate,
                                   in_size=self.in_size, out_size=self.out_size, conv_kernel=self.conv_kernel),
                              filter_size, lrelu_upsampling, use_radial_filters) \
            if None in (tmp_sampling_rate, up_factor, up_taps, down_factor, down_taps, down_radial, padding) else {}
        pick = lambda name, v: derived[name] if v is None else v                     # noqa: E731
        self.tmp_sampling_rate = pick("tmp_sampling_rate", tmp_sampling_rate)
        self.up_factor, self.up_taps = int(pick("up_factor", up_factor)), int(pick("up_taps", up_taps))
        self.down_factor, self.down_taps = int(pick("down_factor", down_factor)), int(pick("down_taps", down_taps))
        self.down_radial = bool(pick("down_radial", down_radial))
        self.padding = [int(p) for p in pick("padding", padding)]
        if len(self.padding) != 4:
            raise ValueError(f"padding must be [x0, x1, y0, y1], not {self.padding}")

        self.affine = FullyConnectedLayer(w_dim, self.in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([self.out_channels, self.in_channels, self.conv_kernel,
                                                self.conv_kernel]))
        self.bias = nn.Parameter(torch.zeros([self.out_channels]))
        self.register_buffer("magnitude_ema", torch.ones([]))
        self.register_buffer("up_filter", design_lowpass_filter(
            self.up_taps, self.in_cutoff, self.in_half_width * 2, self.tmp_sampling_rate))
        self.register_buffer("down_filter", design_lowpass_filter(
            self.down_taps, self.out_cutoff, self.out_half_width * 2, self.tmp_sampling_rate, radial=self.down_radial))
        self.act_gain = 1.0 if self.is_torgb else math.sqrt(2)
        self.slope = 1.0 if self.is_torgb else 0.2

    def spec(self) -> Dict[str, Any]:
        """This layer's geometry as JSON-able kwargs (what ``SynthesisNetwork(layers=...)`` takes)."""
        return dict(
            is_torgb=self.is_torgb, is_critically_sampled=self.is_critically_sampled, use_fp16=self.use_fp16,
            in_channels=self.in_channels, out_channels=self.out_channels, in_size=list(self.in_size),
            out_size=list(self.out_size), in_sampling_rate=self.in_sampling_rate,
            out_sampling_rate=self.out_sampling_rate, tmp_sampling_rate=self.tmp_sampling_rate,
            in_cutoff=self.in_cutoff, out_cutoff=self.out_cutoff, in_half_width=self.in_half_width,
            out_half_width=self.out_half_width, conv_kernel=self.conv_kernel, conv_clamp=self.conv_clamp,
            magnitude_ema_beta=self.magnitude_ema_beta, up_factor=self.up_factor, up_taps=self.up_taps,
            down_factor=self.down_factor, down_taps=self.down_taps, down_radial=self.down_radial,
            padding=list(self.padding))

    def _norm_weight(self):
        """weight / rms over (in, k, k) and its sum of squares over (k, k) [O, I]; cached without autograd."""
        def make(w):
            wn = w * w.square().mean(dim=[1, 2, 3], keepdim=True).rsqrt()
            return wn, wn.square().sum(dim=[2, 3])
        if torch.is_grad_enabled() and self.weight.requires_grad:
            return make(self.weight)
        key = (self.weight.data_ptr(), self.weight._version, self.weight.device)
        if getattr(self, "_wn_key", None) != key:
            self._wn_cache = make(self.weight.detach())
            self._wn_key = key
        return self._wn_cache

    def forward(self, x, w, noise_mode="const", force_fp32=False, update_emas=False, fused_modconv=None,
                input_owned=False):
        """x: [N, in_channels, in_h, in_w], w: [N, w_dim] -> [N, out_channels, out_h, out_w].
        ``input_owned``: x is a temporary of the caller and may be overwritten."""
        if x.ndim != 4 or x.shape[1] != self.in_channels or list(x.shape[2:]) != self.in_size[::-1]:
            raise ValueError(f"{self.out_size[0]}px layer expects x [N, {self.in_channels}, {self.in_size[1]}, "
                             f"{self.in_size[0]}], got {list(x.shape)}")
        if update_emas:
            cur = x.detach().to(torch.float32).square().mean()
            self.magnitude_ema.copy_(cur.lerp(self.magnitude_ema, self.magnitude_ema_beta))
        input_gain = self.magnitude_ema.rsqrt()
        styles = self.affine(w)                                                   # [N, I]
        use_fp16 = self.use_fp16 and not force_fp32 and (x.device.type == "cuda" or ops.FP16_ON_CPU)
        dtype = torch.float16 if use_fp16 else torch.float32
        if x.dtype != dtype:
            x, input_owned = x.to(dtype), True
        x = x.contiguous(memory_format=torch.channels_last)
        g = input_gain * self.act_gain                   # lrelu is positively homogeneous: fold the gain
        if self.is_torgb:
            weight, w2 = self.weight, None
            styles = styles * (1 / math.sqrt(self.in_channels * self.conv_kernel ** 2))
        else:
            weight, w2 = self._norm_weight()
            styles = styles * styles.square().mean().rsqrt()
        x, post = ops.modulated_conv2d(x, weight, styles, padding=self.conv_kernel - 1,
                                       demodulate=not self.is_torgb, fused_modconv=fused_modconv, gain=g,
                                       w2=w2, input_owned=input_owned)
        # NVIDIA: filtered_lrelu(conv + bias) with the activation gain applied after the bias
        x = ops.scale_bias_noise(x, post, self.bias * self.act_gain, None)
        return ops.filtered_lrelu(x, self.up_filter, self.down_filter, None, up=self.up_factor,
                                  down=self.down_factor, padding=self.padding, gain=1.0, slope=self.slope,
                                  clamp=self.conv_clamp, input_owned=True)

    def extra_repr(self):
        return (f"w_dim={self.w_dim}, is_torgb={self.is_torgb}, is_critically_sampled={self.is_critically_sampled}, "
                f"in={self.in_channels}x{self.in_size}@{self.in_sampling_rate:g}, "
                f"out={self.out_channels}x{self.out_size}@{self.out_sampling_rate:g}, up={self.up_factor}, "
                f"down={self.down_factor}, radial={self.down_radial}")


_LAYER_KEYS = ("is_torgb", "is_critically_sampled", "use_fp16", "in_channels", "out_channels", "in_size", "out_size",
               "in_sampling_rate", "out_sampling_rate", "tmp_sampling_rate", "in_cutoff", "out_cutoff",
               "in_half_width", "out_half_width", "conv_kernel", "conv_clamp", "magnitude_ema_beta", "up_factor",
               "up_taps", "down_factor", "down_taps", "down_radial", "padding")


class SynthesisNetwork(nn.Module):
    """ws [N, num_layers + 2, w_dim] -> image [N, img_channels, R, R]: Fourier input, ``num_layers``
    alias-free layers and a ToRGB layer, output times ``output_scale``.

    ``input`` / ``layers``: explicit geometry (dicts as :meth:`SynthesisLayer.spec` returns, plus
    ``name``); when given they are used as is instead of the formulas of :func:`layer_geometry`.
    """

    def __init__(self, w_dim, img_resolution, img_channels, channel_base=32768, channel_max=512, num_layers=14,
                 num_critical=2, first_cutoff=2, first_stopband=2 ** 2.1, last_stopband_rel=2 ** 0.3,
                 margin_size=10, output_scale=0.25, num_fp16_res=4, conv_kernel=3, filter_size=6,
                 lrelu_upsampling=2, use_radial_filters=False, conv_clamp=256, magnitude_ema_beta=0.999,
                 input=None, layers=None):
        super().__init__()
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.num_critical, self.margin_size = num_critical, margin_size
        self.output_scale, self.num_fp16_res = float(output_scale), num_fp16_res
        geo_in, geo_layers = (None, None)
        if input is None or layers is None:
            geo_in, geo_layers = layer_geometry(
                img_resolution, img_channels, channel_base, channel_max, num_layers, num_critical, first_cutoff,
                first_stopband, last_stopband_rel, margin_size, num_fp16_res, conv_kernel, filter_size,
                lrelu_upsampling, use_radial_filters, conv_clamp, magnitude_ema_beta)
        input = dict(input) if input is not None else geo_in
        layers = [dict(s) for s in layers] if layers is not None else geo_layers
        if len(layers) < 1 or not layers[-1].get("is_torgb") or any(s.get("is_torgb") for s in layers[:-1]):
            raise ValueError("layers must end with exactly one ToRGB layer")
        self.num_layers = len(layers) - 1
        self.num_ws = self.num_layers + 2
        self.input = SynthesisInput(w_dim=w_dim, channels=input["channels"], size=input["size"],
                                    sampling_rate=input["sampling_rate"], bandwidth=input["bandwidth"])
        self.layer_names = []
        layer_kw = dict(filter_size=filter_size, lrelu_upsampling=lrelu_upsampling,
                        use_radial_filters=use_radial_filters)
        for spec in layers:
            kw = {k: spec[k] for k in _LAYER_KEYS if k in spec}
            layer = SynthesisLayer(w_dim=w_dim, **layer_kw, **kw)
            name = spec.get("name") or f"L{len(self.layer_names)}_{layer.out_size[0]}_{layer.out_channels}"
            setattr(self, name, layer)
            self.layer_names.append(name)
        last = getattr(self, self.layer_names[-1])
        if last.out_channels != img_channels or last.out_size != [img_resolution, img_resolution]:
            raise ValueError(f"the last layer makes {last.out_channels}x{last.out_size}, not the "
                             f"{img_channels}x{img_resolution}x{img_resolution} image")
        self.channels = {name: getattr(self, name).out_channels for name in self.layer_names}

    def layer_specs(self) -> List[Dict[str, Any]]:
        return [dict(name=n, **getattr(self, n).spec()) for n in self.layer_names]

    def input_spec(self) -> Dict[str, Any]:
        i = self.input
        return dict(channels=i.channels, size=list(i.size), sampling_rate=i.sampling_rate, bandwidth=i.bandwidth)

    def forward(self, ws, noise_mode="const", force_fp32=False, update_emas=False, fused_modconv=None):
        """``noise_mode`` is accepted for API compatibility (StyleGAN3 has no noise inputs)."""
        if noise_mode not in ("const", "random", "none"):
            raise ValueError(f"noise_mode must be const, random or none, not {noise_mode!r}")
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ValueError(f"ws must be [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        ws = ws.to(torch.float32).unbind(dim=1)
        x = self.input(ws[0])
        for name, w in zip(self.layer_names, ws[1:]):
            x = getattr(self, name)(x, w, force_fp32=force_fp32, update_emas=update_emas,
                                    fused_modconv=fused_modconv, input_owned=True)
        x = x.to(torch.float32)
        if self.output_scale != 1:
            x = x.mul_(self.output_scale) if ops._can_inplace(x) else x * self.output_scale
        return x.contiguous()


class Generator(stylegan2.Generator):
    """z, c -> image. ``G.mapping`` and ``G.synthesis`` can be called separately (NVIDIA's API).

    Kwargs: z_dim, c_dim, w_dim, img_resolution, img_channels, ``mapping_kwargs`` (num_layers,
    lr_multiplier, w_avg_beta) and ``synthesis_kwargs`` (see :class:`SynthesisNetwork`; NVIDIA's
    flat form ``Generator(..., channel_base=..., conv_kernel=1, ...)`` is accepted too).
    StyleGAN3-R = ``conv_kernel=1, use_radial_filters=True`` and doubled channel_base/channel_max.
    """

    family = "stylegan3"
    mapping_class = None      # this module's MappingNetwork / SynthesisNetwork, set below the class
    synthesis_class = None

    def set_transform(self, translate=(0.0, 0.0), angle_deg=0.0) -> None:
        """Translate / rotate the generated image (sets ``synthesis.input.transform`` to the inverse)."""
        self.synthesis.input.set_transform(make_transform(translate, angle_deg))

    def forward(self, z, c=None, truncation_psi=1, truncation_cutoff=None, noise_mode="const", update_emas=False,
                **synthesis_kwargs):
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)
        return self.synthesis(ws, noise_mode=noise_mode, update_emas=update_emas, **synthesis_kwargs)


Generator.mapping_class = MappingNetwork
Generator.synthesis_class = SynthesisNetwork
