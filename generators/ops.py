"""Pure-PyTorch ops shared by the StyleGAN networks: FIR resampling, bias + activation,
modulated convolution. No compiled extensions; CPU and GPU take the same code.

Semantics follow NVIDIA's stylegan2-ada-pytorch ops (``upfirdn2d``, ``bias_act``,
``conv2d_resample``, ``modulated_conv2d``) so that checkpoints reproduce exactly; the
implementations are our own and avoid the reference's extra passes (in-place element-wise
work when no gradient is needed, separable FIR, demodulation as one small matmul).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F

# fp16 blocks (num_fp16_res) run on CUDA only; set True to run them on CPU too (slow; lets the fp16
# code path be tested on a machine without a GPU).
FP16_ON_CPU = False

# name -> (function, default gain). The default gain keeps activations' variance at ~1.
ACTIVATIONS = {
    "linear": (lambda x, inplace: x, 1.0),
    "relu": (lambda x, inplace: F.relu_(x) if inplace else F.relu(x), math.sqrt(2)),
    "lrelu": (lambda x, inplace: F.leaky_relu_(x, 0.2) if inplace else F.leaky_relu(x, 0.2), math.sqrt(2)),
    "tanh": (lambda x, inplace: x.tanh_() if inplace else x.tanh(), 1.0),
    "sigmoid": (lambda x, inplace: x.sigmoid_() if inplace else x.sigmoid(), 1.0),
    "elu": (lambda x, inplace: F.elu(x, inplace=inplace), 1.0),
    "selu": (lambda x, inplace: F.selu(x, inplace=inplace), 1.0),
    "softplus": (lambda x, inplace: F.softplus(x), 1.0),
    "swish": (lambda x, inplace: x * torch.sigmoid(x), math.sqrt(2)),
}


def activation_gain(act: str) -> float:
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act!r}; known: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[act][1]


def _can_inplace(x: torch.Tensor) -> bool:
    return not (torch.is_grad_enabled() and x.requires_grad)


def bias_act(x: torch.Tensor, b: Optional[torch.Tensor] = None, dim: int = 1, act: str = "linear",
             gain: Optional[float] = None, clamp: Optional[float] = None) -> torch.Tensor:
    """``clamp(act(x + b) * gain, -clamp, clamp)`` with ``b`` broadcast along ``dim``.

    Works in place (one tensor, no temporaries) when autograd does not need the input.
    """
    fn, def_gain = ACTIVATIONS[act]
    gain = def_gain if gain is None else float(gain)
    inplace = _can_inplace(x)
    if b is not None:
        shape = [1] * x.ndim
        shape[dim] = -1
        b = b.to(x.dtype).reshape(shape)
        x = x.add_(b) if inplace else x + b
        inplace = _can_inplace(x)
    x = fn(x, inplace)
    if gain != 1:
        x = x.mul_(gain) if _can_inplace(x) else x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp_(-clamp, clamp) if _can_inplace(x) else x.clamp(-clamp, clamp)
    return x


# ----------------------------------------------------------------------------------------
# FIR filters


def setup_filter(f: Union[Sequence[float], torch.Tensor, None], normalize: bool = True,
                 separable: bool = False) -> Optional[torch.Tensor]:
    """1-D taps -> 2-D filter (outer product; normalised to sum 1), or a given 2-D filter as is."""
    if f is None:
        return None
    f = torch.as_tensor(f, dtype=torch.float32)
    if f.ndim == 0:
        f = f[None]
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if normalize:
        f = f / f.sum()
    return f


def separable_taps(f: torch.Tensor):
    """Return (fy, fx) 1-D taps with ``outer(fy, fx) == f`` exactly enough, or None."""
    if f.ndim == 1:
        return f, f
    fy = f.sum(dim=1)
    fx = f.sum(dim=0)
    s = f.sum()
    if s == 0:
        return None
    if torch.allclose(torch.outer(fy, fx) / s, f, rtol=1e-6, atol=1e-8):
        return fy / s.sqrt(), fx / s.sqrt()
    return None


def _fir_axis(x: torch.Tensor, taps: torch.Tensor, axis: int, pad0: int, pad1: int) -> torch.Tensor:
    """Correlate ``x`` along ``axis`` (-1 = W, -2 = H) with 1-D ``taps`` after zero padding.

    A weighted sum of shifted views: memory-bound like any FIR, but without the depthwise
    convolution's per-channel overhead.
    """
    if pad0 < 0 or pad1 < 0:  # negative padding = crop
        n = x.shape[axis]
        x = x.narrow(axis, max(-pad0, 0), n - max(-pad0, 0) - max(-pad1, 0))
        pad0, pad1 = max(pad0, 0), max(pad1, 0)
    if pad0 or pad1:
        p = [0, 0, 0, 0]
        if axis == -1:
            p[0], p[1] = pad0, pad1
        else:
            p[2], p[3] = pad0, pad1
        x = F.pad(x, p)
    k = taps.numel()
    n_out = x.shape[axis] - k + 1
    t = taps.tolist()
    out = x.narrow(axis, 0, n_out) * t[0]
    for i in range(1, k):
        if t[i] == 0:
            continue
        sl = x.narrow(axis, i, n_out)
        if _can_inplace(out):
            out.add_(sl, alpha=t[i])
        else:
            out = out + sl * t[i]
    return out


def upfirdn2d(x: torch.Tensor, f: Optional[torch.Tensor], up: int = 1, down: int = 1,
              padding: Sequence[int] = (0, 0, 0, 0), flip_filter: bool = False,
              gain: float = 1.0) -> torch.Tensor:
    """Upsample (zero insertion), pad, FIR-filter, downsample: NVIDIA's upfirdn2d semantics.

    x: [N, C, H, W]; f: [fh, fw] or [ft] (separable) filter; padding = [x0, x1, y0, y1]
    (negative = crop). Convolution (not correlation) unless ``flip_filter``.
    """
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    upx, upy = (up, up) if isinstance(up, int) else up
    downx, downy = (down, down) if isinstance(down, int) else down
    if len(padding) == 2:
        padding = [padding[0], padding[0], padding[1], padding[1]]
    px0, px1, py0, py1 = [int(p) for p in padding]
    N, C, H, W = x.shape
    # zero insertion
    if upx > 1 or upy > 1:
        x = x.reshape(N, C, H, 1, W, 1)
        x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
        x = x.reshape(N, C, H * upy, W * upx)
    f = f.to(device=x.device, dtype=torch.float32)
    taps = separable_taps(f)
    if taps is not None and C >= 8 and px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        # Many channels: two depthwise 1-D convolutions in channels-last layout are the fastest CPU path.
        g = gain ** 0.5
        fy, fx = taps[0] * g, taps[1] * g
        if not flip_filter:
            fy, fx = fy.flip(0), fx.flip(0)
        x = x.contiguous(memory_format=torch.channels_last)
        wx = fx.to(x.dtype).view(1, 1, 1, -1).expand(C, 1, 1, -1).contiguous(memory_format=torch.channels_last)
        wy = fy.to(x.dtype).view(1, 1, -1, 1).expand(C, 1, -1, 1).contiguous(memory_format=torch.channels_last)
        x = F.conv2d(x, wx, padding=(0, px0), groups=C)
        x = F.conv2d(x, wy, padding=(py0, 0), groups=C)
    elif taps is not None:
        g = gain ** 0.5
        fy, fx = taps[0] * g, taps[1] * g
        if not flip_filter:
            fy, fx = fy.flip(0), fx.flip(0)
        x = _fir_axis(x, fx, -1, px0, px1)
        x = _fir_axis(x, fy, -2, py0, py1)
    else:
        fk = f * gain
        if not flip_filter:
            fk = fk.flip([0, 1])
        x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
        x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]
        w = fk.to(x.dtype)[None, None].repeat(C, 1, 1, 1)
        x = F.conv2d(x, w, groups=C)
    if downx > 1 or downy > 1:
        x = x[:, :, ::downy, ::downx]
    return x


def _filter_size(f: Optional[torch.Tensor]):
    if f is None:
        return 1, 1
    if f.ndim == 1:
        return f.shape[0], f.shape[0]
    return f.shape[1], f.shape[0]  # fw, fh


def upsample2d(x, f, up=2, gain=None):
    """2x FIR upsampling that keeps the image size exactly doubled (NVIDIA's padding rule)."""
    fw, fh = _filter_size(f)
    p = [(fw + up - 1) // 2, (fw - up) // 2, (fh + up - 1) // 2, (fh - up) // 2]
    return upfirdn2d(x, f, up=up, padding=p, gain=up * up if gain is None else gain)


def downsample2d(x, f, down=2):
    fw, fh = _filter_size(f)
    p = [(fw - down + 1) // 2, (fw - down) // 2, (fh - down + 1) // 2, (fh - down) // 2]
    return upfirdn2d(x, f, down=down, padding=p)


# ----------------------------------------------------------------------------------------
# Convolution with resampling


def conv2d_resample(x: torch.Tensor, w: torch.Tensor, f: Optional[torch.Tensor] = None, up: int = 1,
                    down: int = 1, padding: int = 0, groups: int = 1, flip_weight: bool = True) -> torch.Tensor:
    """2-D convolution with optional FIR up/down-sampling (NVIDIA's conv2d_resample rules).

    w: [out, in/groups, kh, kw]. ``flip_weight=True`` = correlation (``F.conv2d``).
    up=2 is a stride-2 transposed convolution followed by the FIR (cheapest: 9 MACs per
    input pixel); down=2 is FIR then a strided convolution.
    """
    out_channels, in_per_group, kh, kw = w.shape
    fw, fh = _filter_size(f)
    px0 = px1 = py0 = py1 = int(padding)
    if up > 1:
        px0 += (fw + up - 1) // 2
        px1 += (fw - up) // 2
        py0 += (fh + up - 1) // 2
        py1 += (fh - up) // 2
    if down > 1:
        px0 += (fw - down + 1) // 2
        px1 += (fw - down) // 2
        py0 += (fh - down + 1) // 2
        py1 += (fh - down) // 2

    def conv(x, w, stride=1, pad=0, transpose=False, flip=flip_weight):
        if not flip and (w.shape[2] > 1 or w.shape[3] > 1):
            w = w.flip([2, 3])
        if transpose:
            return F.conv_transpose2d(x, w, stride=stride, padding=pad, groups=groups)
        return F.conv2d(x, w, stride=stride, padding=pad, groups=groups)

    if kw == 1 and kh == 1 and down > 1 and up == 1:
        x = upfirdn2d(x, f, down=down, padding=[px0, px1, py0, py1])
        return conv(x, w)
    if kw == 1 and kh == 1 and up > 1 and down == 1:
        x = conv(x, w)
        return upfirdn2d(x, f, up=up, padding=[px0, px1, py0, py1], gain=up * up)
    if down > 1 and up == 1:
        x = upfirdn2d(x, f, padding=[px0, px1, py0, py1])
        return conv(x, w, stride=down)
    if up > 1:
        if groups == 1:
            wt = w.transpose(0, 1)
        else:
            wt = w.reshape(groups, out_channels // groups, in_per_group, kh, kw)
            wt = wt.transpose(1, 2).reshape(groups * in_per_group, out_channels // groups, kh, kw)
        px0 -= kw - 1
        px1 -= kw - up
        py0 -= kh - 1
        py1 -= kh - up
        pxt = max(min(-px0, -px1), 0)
        pyt = max(min(-py0, -py1), 0)
        x = conv(x, wt, stride=up, pad=[pyt, pxt], transpose=True, flip=not flip_weight)
        x = upfirdn2d(x, f, padding=[px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt], gain=up * up)
        if down > 1:
            x = upfirdn2d(x, f, down=down)
        return x
    if up == 1 and down == 1 and px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return conv(x, w, pad=[py0, px0])
    x = upfirdn2d(x, None if up == 1 else f, up=up, padding=[px0, px1, py0, py1], gain=up * up)
    x = conv(x, w)
    if down > 1:
        x = upfirdn2d(x, f, down=down)
    return x


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, up: int = 1, down: int = 1,
                     padding: int = 0, resample_filter: Optional[torch.Tensor] = None, demodulate: bool = True,
                     flip_weight: bool = True, fused_modconv: Optional[bool] = None, gain: float = 1.0,
                     w2: Optional[torch.Tensor] = None, input_owned: bool = False):
    """StyleGAN2 modulated convolution.

    x: [N, I, H, W], weight: [O, I, kh, kw], styles: [N, I]; ``gain`` scales the output
    (folded into the weights or the demodulation, so it costs no extra pass).
    ``w2`` = ``weight.square().sum([2, 3])`` [O, I] may be passed in (cached by the caller).
    ``input_owned=True`` lets the activation scaling overwrite ``x`` (the caller no longer needs it).

    Returns ``(y, post_scale)``. ``fused_modconv=True``: every sample gets its own modulated
    and demodulated kernel (one grouped convolution; with N = 1 a plain convolution, the
    fastest path) and ``post_scale`` is None. ``fused_modconv=False``: the activations are
    scaled by the styles, one shared-weight convolution runs over the whole batch (efficient
    for any N), and the demodulation coefficients times ``gain`` are returned as ``post_scale``
    [N, O] for the caller to fuse with bias and noise. ``None`` picks fused for N = 1.
    """
    N = x.shape[0]
    O, I, kh, kw = weight.shape
    if fused_modconv is None:
        fused_modconv = N == 1
    if x.dtype == torch.float16 and demodulate:  # pre-normalise to avoid fp16 overflow
        weight = weight * (1 / math.sqrt(I * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)
        w2 = None
    scale = None
    if demodulate:
        # sum over (i, kh, kw) of (w[o,i] * s[n,i])^2 = s^2 @ (sum_k w^2)^T
        if w2 is None:
            w2 = weight.float().square().sum(dim=[2, 3])                        # [O, I]
        scale = (styles.float().square() @ w2.t() + 1e-8).rsqrt()              # [N, O]
        if gain != 1:
            scale = scale * gain
    elif gain != 1:
        scale = torch.full([N, O], float(gain), device=x.device)
    if not fused_modconv:
        s = styles.to(x.dtype).reshape(N, -1, 1, 1)
        x = x.mul_(s) if input_owned and _can_inplace(x) else x * s
        x = conv2d_resample(x, weight.to(x.dtype), f=resample_filter, up=up, down=down,
                            padding=padding, flip_weight=flip_weight)
        return x, scale
    w = weight.unsqueeze(0) * styles.reshape(N, 1, -1, 1, 1)                   # [N, O, I, kh, kw]
    if scale is not None:
        w = w * scale.reshape(N, -1, 1, 1, 1)
    if N == 1:
        x = conv2d_resample(x, w[0].to(x.dtype), f=resample_filter, up=up, down=down, padding=padding,
                            flip_weight=flip_weight)
        return x, None
    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, I, kh, kw).to(x.dtype)
    x = conv2d_resample(x, w, f=resample_filter, up=up, down=down, padding=padding, groups=N,
                        flip_weight=flip_weight)
    return x.reshape(N, -1, *x.shape[2:]), None


def scale_bias_noise(x: torch.Tensor, scale: Optional[torch.Tensor], bias: Optional[torch.Tensor],
                     noise: Optional[torch.Tensor]) -> torch.Tensor:
    """``x * scale[N, C] + bias[C] + noise`` in as few passes as possible (in place without autograd)."""
    N, C = x.shape[:2]
    inplace = _can_inplace(x)
    if scale is not None and bias is not None:
        b, s = bias.to(x.dtype).reshape(1, C, 1, 1), scale.to(x.dtype).reshape(N, C, 1, 1)
        x = torch.addcmul(b, x, s, out=x) if inplace else torch.addcmul(b, x, s)
    elif scale is not None:
        s = scale.to(x.dtype).reshape(N, C, 1, 1)
        x = x.mul_(s) if inplace else x * s
    elif bias is not None:
        b = bias.to(x.dtype).reshape(1, C, 1, 1)
        x = x.add_(b) if inplace else x + b
    if noise is not None:
        x = x.add_(noise) if _can_inplace(x) else x + noise
    return x


HOMOGENEOUS = ("linear", "relu", "lrelu")  # act(x * g) == act(x) * g for g > 0


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()
