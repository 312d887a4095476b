"""Pure-PyTorch ops shared by the StyleGAN networks: FIR resampling, bias + activation,
modulated convolution. No compiled extensions; CPU and GPU take the same code.

Semantics follow NVIDIA's stylegan2-ada-pytorch / stylegan3 ops (``upfirdn2d``, ``bias_act``,
``conv2d_resample``, ``modulated_conv2d``, ``filtered_lrelu``) so that checkpoints reproduce exactly; the
implementations are our own and avoid the reference's extra passes (in-place element-wise
work when no gradient is needed, separable FIR, demodulation as one small matmul).
"""
from __future__ import annotations

import math
import threading
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


def truncate(ws: torch.Tensor, w_avg: torch.Tensor, psi: float, cutoff: Optional[int] = None) -> torch.Tensor:
    """Truncation trick: ``w_avg + psi * (w - w_avg)`` on the first ``cutoff`` ws (all when None).

    ws: [N, num_ws, w_dim] or [N, w_dim] (then every row is truncated).
    """
    if psi == 1:
        return ws
    if cutoff is None or ws.ndim == 2:
        return w_avg.lerp(ws, psi)
    ws = ws.clone()
    ws[:, :cutoff] = w_avg.lerp(ws[:, :cutoff], psi)
    return ws


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


# ----------------------------------------------------------------------------------------
# Polyphase FIR resampling and the filtered leaky ReLU (StyleGAN3)
#
# NVIDIA's reference inserts zeros, filters at the up-sampled rate and then throws away 3 of
# every 4 down-filtered samples. Here nothing is computed that is not needed:
#   * along W (the inner spatial axis of channels-last tensors) up-sampling is a depthwise
#     stride-``up`` transposed convolution (each output meets only the taps that hit input
#     samples: polyphase, written interleaved) and down-sampling is a depthwise convolution
#     with stride ``down`` (only kept samples);
#   * along H every output row is a short combination of input rows, so a strip of rows is
#     one small matrix product A @ X with X = [rows, W * C]: polyphase up- or strided
#     down-sampling with interleaving for free, run by BLAS at memory speed;
#   * the filtered leaky ReLU runs in strips of output rows, so its up-sampled intermediate
#     stays in cache and the element-wise work is done in place.

_FIR_CACHE: "dict" = {}


def _cached(key, make):
    v = _FIR_CACHE.get(key)
    if v is None:
        if len(_FIR_CACHE) > 1024:
            _FIR_CACHE.clear()
        v = _FIR_CACHE[key] = make()
    return v


def _corr_taps(f: Optional[torch.Tensor], flip_filter: bool = False) -> tuple:
    """1-D correlation taps (NVIDIA's filters are convolutions unless ``flip_filter``)."""
    if f is None:
        return (1.0,)
    t = f.detach().to(torch.float64).cpu().reshape(-1).tolist()
    return tuple(t if flip_filter else t[::-1])


def up_matrix(taps: Sequence[float], up: int, pad0: int, out_start: int, out_len: int, in_start: int,
              in_len: int) -> torch.Tensor:
    """[out_len, in_len] float64 matrix of "insert up-1 zeros, pad by pad0, correlate with taps"
    from input samples [in_start, ...) to output samples [out_start, ...) (zeros elsewhere)."""
    K = len(taps)
    m = torch.arange(out_start, out_start + out_len).unsqueeze(1)
    i = torch.arange(in_start, in_start + in_len).unsqueeze(0)
    j = pad0 + i * up - m                                   # tap that input i meets at output m
    t = torch.tensor(list(taps), dtype=torch.float64)
    return torch.where((j >= 0) & (j < K), t[j.clamp(0, K - 1)], torch.zeros((), dtype=torch.float64))


def down_matrix(taps: Sequence[float], down: int, out_len: int, in_len: int) -> torch.Tensor:
    """[out_len, in_len] float64 matrix of "correlate with taps, keep every down-th sample"."""
    K = len(taps)
    j = torch.arange(in_len).unsqueeze(0) - torch.arange(out_len).unsqueeze(1) * down
    t = torch.tensor(list(taps), dtype=torch.float64)
    return torch.where((j >= 0) & (j < K), t[j.clamp(0, K - 1)], torch.zeros((), dtype=torch.float64))


def fir_rows(x: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """Mix the rows (H axis) of a channels-last [N, C, H, W] tensor: out[:, :, r] = sum_h A[r, h] x[:, :, h].

    One matrix product per sample on [H, W*C]; returns a channels-last [N, C, R, W] tensor.
    """
    N, C, H, W = x.shape
    X = x.permute(0, 2, 3, 1).reshape(N, H, W * C)          # a view for channels-last input
    A = A.to(dtype=x.dtype, device=x.device)
    Y = torch.matmul(A, X[0]).unsqueeze(0) if N == 1 else torch.matmul(A, X)
    return Y.view(N, A.shape[0], W, C).permute(0, 3, 1, 2)


def up_cols(x: torch.Tensor, taps: Sequence[float], up: int, pad0: int, out_len: int) -> torch.Tensor:
    """Up-sample the W axis of channels-last x: insert up-1 zeros, pad by pad0, correlate with taps,
    keep output samples [0, out_len). Polyphase: one depthwise stride-``up`` transposed convolution."""
    N, C, H, W = x.shape
    K = len(taps)
    if up == 1 and K == 1:
        y = _axis_window(x, -pad0, out_len)
        return y if taps[0] == 1.0 else y * taps[0]
    # transposed conv (weight = reversed correlation taps): out[m] = convT[m + K - 1 - pad0]
    q0 = K - 1 - pad0
    L = (W - 1) * up + K
    eL = -(-max(0, -q0) // up)
    eR = -(-max(0, q0 + out_len - L) // up)
    if eL or eR:
        x = F.pad(x, [eL, eR])
        q0 += eL * up
        L += (eL + eR) * up
    P = max(0, min(q0, L - (q0 + out_len)))
    w = _cached(("upc", tuple(taps), C, x.dtype, x.device), lambda: torch.tensor(
        list(taps)[::-1], dtype=torch.float64).to(dtype=x.dtype, device=x.device).view(1, 1, 1, K)
        .expand(C, 1, 1, K).contiguous())
    y = F.conv_transpose2d(x, w, stride=(1, up), padding=(0, P), groups=C)
    return y.narrow(3, q0 - P, out_len)


def _axis_window(x: torch.Tensor, start: int, length: int) -> torch.Tensor:
    """Columns [start, start + length) of x along W, zero outside."""
    W = x.shape[3]
    a, b = max(start, 0), min(start + length, W)
    y = x.narrow(3, a, max(b - a, 0))
    if a - start or start + length - b:
        y = F.pad(y, [a - start, start + length - b])
    return y


def down_cols(x: torch.Tensor, taps: Sequence[float], down: int) -> torch.Tensor:
    """Correlate the W axis with taps and keep every ``down``-th sample (strided depthwise conv)."""
    C, K = x.shape[1], len(taps)
    if K == 1 and down == 1:
        return x if taps[0] == 1.0 else x * taps[0]
    w = _cached(("dnc", tuple(taps), C, x.dtype, x.device), lambda: torch.tensor(
        list(taps), dtype=torch.float64).to(dtype=x.dtype, device=x.device).view(1, 1, 1, K)
        .expand(C, 1, 1, K).contiguous(memory_format=torch.channels_last))
    return F.conv2d(x, w, stride=(1, down), groups=C)


def _lrelu_clamp(x: torch.Tensor, slope: float, gain: float, clamp: Optional[float], inplace: bool) -> torch.Tensor:
    if slope != 1:
        x = F.leaky_relu_(x, slope) if inplace else F.leaky_relu(x, slope)
    if gain != 1:
        x = x.mul_(gain) if inplace else x * gain
    if clamp is not None:
        x = x.clamp_(-clamp, clamp) if inplace else x.clamp(-clamp, clamp)
    return x


# Target size (bytes) of the up-sampled intermediate per strip of the filtered leaky ReLU.
FLRELU_STRIP_BYTES = {"cpu": 16 << 20, "cuda": 256 << 20}


def _sep_taps(f: Optional[torch.Tensor], flip_filter: bool):
    """(taps_y, taps_x) correlation taps of a 1-D or separable 2-D filter; None if not separable."""
    if f is None or f.ndim == 1:
        t = _corr_taps(f, flip_filter)
        return t, t
    sep = separable_taps(f.detach().to(torch.float64).cpu())
    if sep is None:
        return None
    return _corr_taps(sep[0], flip_filter), _corr_taps(sep[1], flip_filter)


def filtered_lrelu(x: torch.Tensor, fu: Optional[torch.Tensor] = None, fd: Optional[torch.Tensor] = None,
                   b: Optional[torch.Tensor] = None, up: int = 1, down: int = 1,
                   padding: Union[int, Sequence[int]] = 0, gain: float = math.sqrt(2), slope: float = 0.2,
                   clamp: Optional[float] = None, flip_filter: bool = False, input_owned: bool = False,
                   strip_bytes: Optional[int] = None, rolling: Optional[bool] = None) -> torch.Tensor:
    """NVIDIA's ``filtered_lrelu``: add bias ``b``; up-sample (insert up-1 zeros, pad by ``padding``
    = [x0, x1, y0, y1] (negative = crop), FIR ``fu`` with gain up^2); ``clamp(lrelu(.) * gain)``;
    FIR ``fd`` and keep every ``down``-th sample. fu, fd: 1-D (separable) or 2-D taps, or None.

    Polyphase / strided throughout (see above), in strips of output rows, in place where autograd
    allows. ``input_owned``: x is a temporary of the caller and may be overwritten. ``rolling``
    (default: on CPU without autograd) computes every intermediate row once, per sample, in small
    steps (``strip_bytes`` of new up-sampled rows); otherwise strips of ``strip_bytes`` recompute
    their overlap (fewer, larger operations: GPU, autograd).
    """
    if isinstance(padding, int):
        padding = [padding] * 4
    if len(padding) == 2:
        padding = [padding[0], padding[0], padding[1], padding[1]]
    px0, px1, py0, py1 = [int(p) for p in padding]
    up, down = int(up), int(down)
    N, C, H, W = x.shape
    need_grad = torch.is_grad_enabled() and (x.requires_grad or (b is not None and b.requires_grad))
    ut = _sep_taps(fu, flip_filter)
    if ut is None:  # non-separable up filter (never in StyleGAN3): the reference formula
        if b is not None:
            x = x + b.to(x.dtype).reshape(1, -1, 1, 1)
        x = upfirdn2d(x, fu, up=up, padding=[px0, px1, py0, py1], gain=up ** 2, flip_filter=flip_filter)
        x = _lrelu_clamp(x, slope, gain, clamp, inplace=not need_grad)
        return upfirdn2d(x, fd, down=down, flip_filter=flip_filter)
    uty, utx = tuple(v * up for v in ut[0]), tuple(v * up for v in ut[1])
    dt = _sep_taps(fd, flip_filter)
    fd2 = None
    if dt is None:                                    # e.g. StyleGAN3-R's radial down filter
        fd2 = fd if flip_filter else fd.flip([0, 1])
        Kdy, Kdx = fd.shape
        fd_key = (Kdy, Kdx, tuple(fd2.detach().reshape(-1).tolist()))
    else:
        Kdy, Kdx = len(dt[0]), len(dt[1])
    Kuy, Kux = len(uty), len(utx)
    Th = H * up + py0 + py1 - Kuy + 1
    Tw = W * up + px0 + px1 - Kux + 1
    Ho = (Th - Kdy) // down + 1
    Wo = (Tw - Kdx) // down + 1
    if Ho <= 0 or Wo <= 0:
        raise ValueError(f"filtered_lrelu: empty output ({Ho}x{Wo}) for input {H}x{W}")

    if b is not None:
        b = b.to(x.dtype).reshape(1, -1, 1, 1)
        x = x.add_(b) if (input_owned and not need_grad) else x + b
        input_owned = True
    x = x.contiguous(memory_format=torch.channels_last)
    dev, dtype = x.device, x.dtype
    identity_up = up == 1 and Kuy == 1 and Kux == 1 and uty[0] == 1.0 and utx[0] == 1.0
    if clamp is not None and not need_grad and not identity_up and x.numel():
        # |up-sampled| <= max|x| * L1(taps_y) * L1(taps_x), and the activation does not grow it: when
        # that bound is inside the clamp range, clamping would change nothing - skip the pass.
        lo, hi = torch.aminmax(x.permute(0, 2, 3, 1))          # memory order: no copy
        bound = max(-float(lo), float(hi)) * sum(map(abs, uty)) * sum(map(abs, utx))
        bound *= abs(gain) * max(1.0, abs(slope))
        if bound * (1 + 1e-4) < clamp:
            clamp = None

    def strip(o0: int, o1: int) -> torch.Tensor:
        t0, t1 = o0 * down, (o1 - 1) * down + Kdy               # up-sampled rows these outputs need
        r0 = max(0, -(-(t0 - py0) // up))                        # input rows that reach them
        r1 = min(H, (t1 - 1 - py0 + Kuy - 1) // up + 1)
        if identity_up:
            y = x.narrow(2, t0 - py0, t1 - t0) if py0 <= t0 and t1 - py0 <= H else \
                F.pad(x, [0, 0, max(py0, 0), max(py1, 0)]).narrow(2, t0 - min(py0, 0), t1 - t0)
            y = _axis_window(y, -px0, Tw)
            inplace = not need_grad and (input_owned and (o0, o1) == (0, Ho) or
                                         y.untyped_storage().data_ptr() != x.untyped_storage().data_ptr())
        elif r1 <= r0:                                           # only padding reaches these rows
            y = x.new_zeros([N, t1 - t0, Tw, C]).permute(0, 3, 1, 2)
            inplace = not need_grad
        else:
            y = up_cols(x.narrow(2, r0, r1 - r0), utx, up, px0, Tw)
            A = _cached(("upr", uty, up, py0 + r0 * up - t0, t1 - t0, r1 - r0, dtype, dev),
                        lambda: up_matrix(uty, up, py0, t0, t1 - t0, r0, r1 - r0).to(dtype=dtype, device=dev))
            y = fir_rows(y, A)
            inplace = not need_grad
        y = _lrelu_clamp(y, slope, gain, clamp, inplace=inplace)
        if fd2 is not None:
            w2 = _cached(("fd2", fd_key, C, dtype, dev),
                         lambda: fd2.to(dtype=dtype, device=dev)[None, None].expand(C, 1, Kdy, Kdx)
                         .contiguous(memory_format=torch.channels_last))
            return F.conv2d(y, w2, stride=down, groups=C)
        if Kdy > 1 or down > 1 or dt[0][0] != 1.0:
            D = _cached(("dnr", dt[0], down, o1 - o0, t1 - t0, dtype, dev),
                        lambda: down_matrix(dt[0], down, o1 - o0, t1 - t0).to(dtype=dtype, device=dev))
            y = fir_rows(y, D)
        return down_cols(y, dt[1], down)

    if rolling is None:
        rolling = dev.type == "cpu"
    if rolling and not need_grad and not identity_up:
        limit = FLRELU_ROLLING_BYTES if strip_bytes is None else strip_bytes
        step = max(1, min(Ho, limit // max(1, C * Tw * x.element_size() * down)))
        out = torch.empty([N, Ho, Wo, C], dtype=dtype, device=dev).permute(0, 3, 1, 2)
        for n in range(N):
            _flrelu_rolling(x[n:n + 1], out[n:n + 1], step, up, down, px0, py0, Tw, uty, utx, dt, fd2,
                            fd_key if fd2 is not None else None, slope, gain, clamp)
        return out
    limit = FLRELU_STRIP_BYTES.get(dev.type, 64 << 20) if strip_bytes is None else strip_bytes
    per_row = max(1, N * C * Tw * x.element_size() * down)     # up-sampled bytes per output row
    step = max(1, min(Ho, limit // per_row))
    if step >= Ho:
        return strip(0, Ho).contiguous(memory_format=torch.channels_last)
    if need_grad:
        return torch.cat([strip(o0, min(Ho, o0 + step)) for o0 in range(0, Ho, step)], dim=2) \
            .contiguous(memory_format=torch.channels_last)
    out = torch.empty([N, Ho, Wo, C], dtype=dtype, device=dev).permute(0, 3, 1, 2)
    for o0 in range(0, Ho, step):
        o1 = min(Ho, o0 + step)
        out[:, :, o0:o1].copy_(strip(o0, o1))
    return out


# Up-sampled bytes computed per step of the rolling CPU path (small: the working set stays in cache).
FLRELU_ROLLING_BYTES = 8 << 20
FLRELU_WINDOW = 2          # row windows hold this many steps of rows (fewer moves vs. memory held)

_WORKSPACE = threading.local()


def _workspace(name: str, numel: int, dtype, device) -> torch.Tensor:
    """A reusable flat buffer (per thread): large fresh allocations cost page faults on every call."""
    cache = getattr(_WORKSPACE, "bufs", None)
    if cache is None:
        cache = _WORKSPACE.bufs = {}
    key = (name, dtype, device)
    buf = cache.get(key)
    if buf is None or buf.numel() < numel:
        buf = cache[key] = torch.empty(numel, dtype=dtype, device=device)
    return buf[:numel]


def release_workspace() -> None:
    """Free this thread's reusable FIR buffers (they are re-created on the next call)."""
    _WORKSPACE.bufs = {}


class _RowWindow:
    """Rows [start, start + n) of a long [rows, width] signal in a reusable buffer; old rows are
    dropped by moving the still-needed ones to the front when the buffer is full."""

    def __init__(self, name, cap, width, dtype, device):
        self.buf = _workspace(name, cap * width, dtype, device).view(cap, width)
        self.cap, self.start, self.n = cap, 0, 0

    def rows(self, a, b):
        return self.buf[a - self.start:b - self.start]

    def reserve(self, keep_from, end):
        """Make room for rows up to ``end`` keeping rows >= keep_from; returns the slice for rows [start+n, end)."""
        if end - self.start > self.cap:
            k0 = max(keep_from, self.start)
            kept = self.start + self.n - k0
            if kept > 0:
                src = self.buf[k0 - self.start:k0 - self.start + kept]
                if k0 - self.start >= kept:
                    self.buf[:kept].copy_(src)
                else:
                    self.buf[:kept].copy_(src.clone())
            self.start, self.n = k0, max(kept, 0)
            if end - self.start > self.cap:
                raise RuntimeError("row window too small")
        a = self.start + self.n
        self.n = end - self.start
        return self.buf[a - self.start:end - self.start]


def _separable_terms(f2: torch.Tensor, max_terms: int = 5):
    """A 2-D filter as a sum of separable terms (SVD), if few terms reproduce it to float32 precision:
    (list of H taps, [terms, taps_W] W taps) or None. The dropped singular values sum to at most
    2^-24 of the largest tap, i.e. below the rounding of the stored float32 filter itself."""
    f = f2.detach().to(torch.float64).cpu()
    Um, S, Vh = torch.linalg.svd(f)
    tail = S.flip(0).cumsum(0).flip(0).tolist() + [0.0]      # tail[k] = sum of S[k:]
    tol = 2.0 ** -24 * float(f.abs().max())
    r = next(k for k in range(1, len(tail)) if tail[k] <= tol)
    if r > max_terms:
        return None
    return [tuple((S[k] * Um[:, k]).tolist()) for k in range(r)], Vh[:r].clone()


def _flrelu_rolling(x, out, step, up, down, px0, py0, Tw, uty, utx, dt, fd2, fd_key, slope, gain, clamp):
    """One sample of ``filtered_lrelu`` without autograd, ``step`` output rows at a time, nothing twice.

    Every intermediate row is computed once and kept in a small window while later outputs still
    need it: W-up-sampled input rows U (transposed conv) -> new up-sampled rows T = A_up @ U (one
    GEMM), activation in place on the new rows only -> output rows = A_down @ T (one GEMM) ->
    strided W filter (or the 2-D radial filter) -> ``out``.
    """
    _, C, H, W = x.shape
    Ho = out.shape[2]
    dtype, dev = x.dtype, x.device
    Kuy = len(uty)
    Kdy = fd2.shape[0] if fd2 is not None else len(dt[0])
    row = Tw * C
    t_need = (step - 1) * down + Kdy                       # up-sampled rows behind one step of outputs
    u_need = -(-t_need // up) + Kuy
    T = _RowWindow("flrelu_T", FLRELU_WINDOW * t_need + 8, row, dtype, dev)
    U = _RowWindow("flrelu_U", FLRELU_WINDOW * u_need + 8, row, dtype, dev)
    lowrank = _cached(("lowrank", fd_key), lambda: _separable_terms(fd2)) if fd2 is not None else None
    for o0 in range(0, Ho, step):
        o1 = min(Ho, o0 + step)
        t0, t1 = o0 * down, (o1 - 1) * down + Kdy
        t_hi = T.start + T.n
        if t1 > t_hi:
            a = max(t0, t_hi)                                        # new up-sampled rows [a, t1)
            r0 = min(max(0, -(-(a - py0) // up)), H)
            r1 = max(min(H, (t1 - 1 - py0 + Kuy - 1) // up + 1), r0)
            if T.n == 0:
                T.start = a
            dst = T.reserve(t0, t1)
            if r1 <= r0:
                dst.zero_()
            else:
                u_hi = U.start + U.n
                if U.n == 0 or r0 > u_hi:
                    U.start, U.n, u_hi = r0, 0, r0
                if r1 > u_hi:
                    new = up_cols(x.narrow(2, u_hi, r1 - u_hi), utx, up, px0, Tw)
                    U.reserve(r0, r1).view(1, r1 - u_hi, Tw, C).copy_(new.permute(0, 2, 3, 1))
                A = _cached(("upr", uty, up, py0 + r0 * up - a, t1 - a, r1 - r0, dtype, dev),
                            lambda: up_matrix(uty, up, py0, a, t1 - a, r0, r1 - r0).to(dtype=dtype, device=dev))
                torch.mm(A, U.rows(r0, r1), out=dst)
            _lrelu_clamp(dst, slope, gain, clamp, inplace=True)
        Tv = T.rows(t0, t1)
        if fd2 is not None and lowrank is not None:
            # sum_k (H taps a_k) x (W taps b_k): one GEMM for all a_k, then one depthwise conv whose
            # kernel rows (dilated by the number of output rows) apply b_k to block k and sum them
            hk, wk = lowrank
            o = o1 - o0
            D = _cached(("dnr2", fd_key, down, o, t1 - t0, dtype, dev), lambda: torch.cat(
                [down_matrix(a, down, o, t1 - t0) for a in hk]).to(dtype=dtype, device=dev))
            Z = torch.mm(D, Tv)
            w2 = _cached(("fd2lr", fd_key, C, dtype, dev),
                         lambda: wk.to(dtype=dtype, device=dev)[None].expand(C, *wk.shape).unsqueeze(1)
                         .contiguous(memory_format=torch.channels_last))
            Y = F.conv2d(Z.view(1, len(hk) * o, Tw, C).permute(0, 3, 1, 2), w2, stride=(1, down),
                         dilation=(o, 1), groups=C)
        elif fd2 is not None:
            w2 = _cached(("fd2", fd_key, C, dtype, dev),
                         lambda: fd2.to(dtype=dtype, device=dev)[None, None].expand(C, 1, *fd2.shape)
                         .contiguous(memory_format=torch.channels_last))
            Y = F.conv2d(Tv.view(1, t1 - t0, Tw, C).permute(0, 3, 1, 2), w2, stride=down, groups=C)
        else:
            D = _cached(("dnr", dt[0], down, o1 - o0, t1 - t0, dtype, dev),
                        lambda: down_matrix(dt[0], down, o1 - o0, t1 - t0).to(dtype=dtype, device=dev))
            Z = torch.mm(D, Tv)
            Y = down_cols(Z.view(1, o1 - o0, Tw, C).permute(0, 3, 1, 2), dt[1], down)
        out[:, :, o0:o1].copy_(Y.narrow(2, 0, o1 - o0).narrow(3, 0, out.shape[3]))
