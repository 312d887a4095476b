"""HyperStyle (Alaluf et al. 2022): a hypernetwork predicts per-image offsets of the generator's
conv weights, refining an initial W inversion over a few iterations.

Generator weight layers, in HyperStyle's order (:func:`weight_layers`): for StyleGAN2 every block's
``conv0`` (not at 4 px), ``conv1``, ``torgb`` (rosinality: 0 conv1, 1 to_rgb1, then convs.{2k},
convs.{2k+1}, to_rgbs.{k}); for StyleGAN3 the synthesis layers in order. Offsets act multiplicatively
on the raw weight before modulation: ``W' = W * (1 + delta)`` per sample (:func:`synthesize_with_offsets`).

Hypernet (``SharedWeightsHyperNetResNet``): ResNet-34 on ``cat([x, y_hat])`` -> 16x16 map -> one block
per tuned layer j:
* ``HyperRefinementBlock`` (the square 3x3 layers of the widest width): convs to a code z ``[N, Z]``,
  EqualLinear, then a hypernet shared by all of them: ``h = (z @ w2 + b2).reshape(N, Cin, Z)``,
  ``k = h @ w1 + b1`` -> reshaped (not transposed) to ``[N, Cout, Cin, 3, 3]``.
* ``RefinementBlock`` (others): stride-2 convs, (3x3 layers: average pool), 1x1 conv to Cin*Cout values
  reshaped to ``[N, Cout, Cin]`` and repeated over the kernel positions.

Inference: ``codes = WEncoder(x) + latent_avg`` (fixed); ``y_w = G(codes)``; iteration t:
``delta_t = delta_{t-1} + hypernet(cat([x, face_pool(y_{t-1})]))``, ``y_t = G(codes, delta_t)``.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from .backbones import EqualLinear, ResNetBackbone
from .base import EncoderError, EncoderInverter

# ----------------------------------------------------------------------------------------------
# Generator side: which weights, and synthesis with per-sample offsets


def weight_layers(G: nn.Module) -> List[Tuple[str, nn.Module]]:
    """[(parameter name in G, layer module)] of every modulated conv in HyperStyle's order."""
    syn = G.synthesis
    out = []
    if hasattr(syn, "block_resolutions"):                                     # StyleGAN2
        for res in syn.block_resolutions:
            block = getattr(syn, f"b{res}")
            for name in ("conv0", "conv1", "torgb"):
                if hasattr(block, name):
                    out.append((f"synthesis.b{res}.{name}.weight", getattr(block, name)))
    elif hasattr(syn, "layer_names"):                                         # StyleGAN3
        for name in syn.layer_names:
            out.append((f"synthesis.{name}.weight", getattr(syn, name)))
    else:
        raise EncoderError(f"cannot list the weight layers of a {type(syn).__name__}")
    return out


def layer_shapes(G: nn.Module) -> List[Tuple[int, int, int]]:
    """[(Cout, Cin, k)] per weight layer."""
    return [tuple(m.weight.shape[:3]) for _, m in weight_layers(G)]


def offsets_by_name(G: nn.Module, deltas: Sequence[Optional[torch.Tensor]]) -> Dict[str, torch.Tensor]:
    """A per-layer list (None = untuned) -> {parameter name: [N, O, I, k, k]}."""
    layers = weight_layers(G)
    if len(deltas) != len(layers):
        raise EncoderError(f"{len(deltas)} offsets for a generator with {len(layers)} weight layers")
    return {name: d for (name, _), d in zip(layers, deltas) if d is not None}


def _forget_weight_caches(modules) -> None:
    # gankit's layers cache weight statistics keyed by the weight's storage; weights swapped in by
    # functional_call are temporaries, so the cache must not outlive one call.
    for m in modules:
        for attr in ("_w2_key", "_wn_key", "_w2_cache", "_wn_cache"):
            m.__dict__.pop(attr, None)


def synthesize_with_offsets(G: nn.Module, ws: torch.Tensor,
                            offsets: Union[Dict[str, torch.Tensor], Sequence[Optional[torch.Tensor]], None],
                            noise_mode: str = "const") -> torch.Tensor:
    """G.synthesis(ws) with sample n's weights ``W * (1 + offsets[name][n])``.

    ``offsets``: {parameter name (see :func:`weight_layers`): ``[N, O, I, k, k]``} or a per-layer list
    (None = unchanged). Differentiable w.r.t. ws and offsets. Samples run one at a time (each has its
    own generator weights).
    """
    if offsets is None:
        return G.synthesis(ws, noise_mode=noise_mode)
    if not isinstance(offsets, dict):
        offsets = offsets_by_name(G, offsets)
    mods = dict(weight_layers(G))
    unknown = [k for k in offsets if k not in mods]
    if unknown:
        raise EncoderError(f"offsets for unknown generator weights {unknown[:3]}")
    N = ws.shape[0]
    for k, d in offsets.items():
        if d.ndim != 5 or d.shape[0] not in (1, N) or tuple(d.shape[1:]) != tuple(mods[k].weight.shape):
            raise EncoderError(f"offset {k} has shape {list(d.shape)}, expected [{N}, "
                               f"{', '.join(map(str, mods[k].weight.shape))}]")
    touched = [mods[k] for k in offsets]
    images = []
    try:
        for n in range(N):
            params = {k[len("synthesis."):]: mods[k].weight * (1 + d[n if d.shape[0] > 1 else 0])
                      for k, d in offsets.items()}
            _forget_weight_caches(touched)
            images.append(functional_call(G.synthesis, params, (ws[n:n + 1],), {"noise_mode": noise_mode}))
    finally:
        _forget_weight_caches(touched)
    return torch.cat(images, dim=0)


# ----------------------------------------------------------------------------------------------
# Hypernetwork


class SharedWeightsHypernet(nn.Module):
    """z [N, Z] -> kernel offsets [N, Cout, Cin, k, k] through two matrices shared by many layers."""

    def __init__(self, z_dim: int, in_channels: int, out_channels: int, kernel: int = 3):
        super().__init__()
        self.z_dim, self.in_channels, self.out_channels, self.kernel = z_dim, in_channels, out_channels, kernel
        self.w1 = nn.Parameter(torch.randn(z_dim, out_channels * kernel * kernel) * 0.01)
        self.b1 = nn.Parameter(torch.zeros(out_channels * kernel * kernel))
        self.w2 = nn.Parameter(torch.randn(z_dim, in_channels * z_dim) / math.sqrt(z_dim))
        self.b2 = nn.Parameter(torch.zeros(in_channels * z_dim))

    def forward(self, z):
        N = z.shape[0]
        h = (z @ self.w2 + self.b2).reshape(N, self.in_channels, self.z_dim)     # [N, Cin, Z]
        k = h @ self.w1 + self.b1                                                # [N, Cin, Cout*k*k]
        return k.reshape(N, self.out_channels, self.in_channels, self.kernel, self.kernel)


def _conv_stack(widths: Sequence[int], strides: Sequence[int]) -> nn.Sequential:
    layers = []
    for i, s in enumerate(strides):
        layers += [nn.Conv2d(widths[i], widths[i + 1], 3, s, 1), nn.LeakyReLU()]
    return nn.Sequential(*layers)


class HyperRefinementBlock(nn.Module):
    """16x16 features -> code z (stride-1 conv, then stride-2 convs to 1x1, EqualLinear) -> shared hypernet."""

    def __init__(self, hypernet: SharedWeightsHypernet, in_channels: int, hidden: int, n_down: int):
        super().__init__()
        Z = hypernet.z_dim
        widths = [in_channels] + [hidden] * n_down + [Z]
        self.convs = _conv_stack(widths, [1] + [2] * n_down)
        self.linear = EqualLinear(Z, Z)
        self.hypernet = hypernet

    def forward(self, f):
        z = self.linear(self.convs(f).flatten(1))                                # [N, Z]
        return self.hypernet(z)


class RefinementBlock(nn.Module):
    """16x16 features -> Cin*Cout channel-wise offsets, repeated over the kernel positions.

    3x3 layers: ``n_down`` stride-2 convs, average pool, 1x1 conv (keys ``output.1``); 1x1 (toRGB)
    layers: stride-2 convs down to 1x1 and a 1x1 conv, no pooling (keys ``output.0``).
    """

    def __init__(self, in_channels: int, hidden: int, out_hidden: int, layer_in: int, layer_out: int, kernel: int,
                 n_down: int):
        super().__init__()
        self.layer_in, self.layer_out, self.kernel = layer_in, layer_out, kernel
        widths = [in_channels] + [hidden] * (n_down - 1) + [out_hidden]
        self.convs = _conv_stack(widths, [2] * n_down)
        head = nn.Conv2d(out_hidden, layer_in * layer_out, 1)
        self.output = nn.Sequential(nn.AdaptiveAvgPool2d(1), head) if kernel != 1 else nn.Sequential(head)

    def forward(self, f):
        y = self.output(self.convs(f)).flatten(1)                                # [N, Cout*Cin]
        y = y.reshape(-1, self.layer_out, self.layer_in, 1, 1)
        return y.expand(-1, -1, -1, self.kernel, self.kernel)


def default_shared_layers(shapes: Sequence[Tuple[int, int, int]], tune: Sequence[int]) -> List[int]:
    """The tuned 3x3 layers with the first layer's square shape (the 512x512 ones of a 1024 FFHQ G)."""
    c = shapes[0][0]
    return [j for j in tune if shapes[j] == (c, c, 3)]


class SharedWeightsHyperNetResNet(ResNetBackbone):
    """6-channel ResNet-34 trunk + one refinement block per tuned generator layer.

    ``layer_shapes``: [(Cout, Cin, k)] for every generator weight layer (``refinement_blocks`` has one
    slot per layer, None where not tuned). ``forward(x6)`` -> per-layer list of offsets or None.
    """

    def __init__(self, in_nc: int, blocks, layer_shapes: Sequence[Tuple[int, int, int]],
                 layers_to_tune: Sequence[int], shared_layers: Optional[Sequence[int]] = None, z_dim: int = 512,
                 hyper_hidden: int = 128, refine_hidden: int = 256, refine_out: int = 512,
                 feature_size: int = 16):
        super().__init__(in_nc, blocks)
        self.layer_shapes = [tuple(int(v) for v in s) for s in layer_shapes]
        self.layers_to_tune = sorted(int(j) for j in layers_to_tune)
        bad = [j for j in self.layers_to_tune if not 0 <= j < len(self.layer_shapes)]
        if bad:
            raise EncoderError(f"layers_to_tune {bad} out of range: the generator has {len(self.layer_shapes)} "
                               f"weight layers")
        shared = default_shared_layers(self.layer_shapes, self.layers_to_tune) if shared_layers is None \
            else sorted(int(j) for j in shared_layers)
        n_down = int(round(math.log2(feature_size)))
        self.feature_size = 2 ** n_down
        R = self.out_channels
        self.shared_layers = shared
        if shared:
            c = self.layer_shapes[shared[0]]
            self.shared_weight_hypernet = SharedWeightsHypernet(z_dim, c[1], c[0], c[2])
        self.refinement_blocks = nn.ModuleList()
        for j, (cout, cin, k) in enumerate(self.layer_shapes):
            if j not in self.layers_to_tune:
                self.refinement_blocks.append(None)
            elif j in shared:
                self.refinement_blocks.append(HyperRefinementBlock(self.shared_weight_hypernet, R, hyper_hidden,
                                                                   n_down))
            else:
                self.refinement_blocks.append(RefinementBlock(R, refine_hidden, refine_out, cin, cout, k,
                                                              n_down if k == 1 else max(1, n_down - 1)))

    def forward(self, x) -> List[Optional[torch.Tensor]]:
        f = self.features(x)                                                     # [N, R4, 16, 16]
        return [None if blk is None else blk(f) for blk in self.refinement_blocks]


def add_offsets(a: Optional[List[Optional[torch.Tensor]]], b: List[Optional[torch.Tensor]]):
    """Per-layer sum (None + None = None)."""
    if a is None:
        return list(b)
    return [x if y is None else (y if x is None else x + y) for x, y in zip(a, b)]


class HyperStyle(EncoderInverter):
    """HyperStyle inversion: W-encoder codes, then ``iters`` hypernetwork refinements of the weights."""

    method = "hyperstyle"
    default_iters = 5

    def __init__(self, hypernet: SharedWeightsHyperNetResNet, w_encoder: nn.Module, G: nn.Module,
                 latent_avg: Optional[torch.Tensor] = None, input_size: int = 256):
        super().__init__(G, latent_avg, input_size)
        if list(hypernet.layer_shapes) != [tuple(s) for s in layer_shapes(G)]:
            raise EncoderError("the hypernetwork was built for a generator with other weight layers")
        if w_encoder.n_styles != G.num_ws or w_encoder.style_dim != G.w_dim:
            raise EncoderError(f"the W encoder makes [{w_encoder.n_styles}, {w_encoder.style_dim}] codes, the "
                               f"generator needs [{G.num_ws}, {G.w_dim}]")
        self.hypernet = hypernet
        self.w_encoder = w_encoder

    def initial_codes(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_encoder(x) + self.latent_avg[None]

    def step(self, x: torch.Tensor, y_prev_pooled: torch.Tensor, acc):
        """One refinement: returns (this iteration's offsets, accumulated offsets)."""
        d = self.hypernet(torch.cat([x, y_prev_pooled], dim=1))
        return d, add_offsets(acc, d)

    def invert(self, images, iters: Optional[int] = None, codes: Optional[torch.Tensor] = None) -> dict:
        """``codes``: start from these ws (e.g. another encoder's) instead of the W encoder's."""
        iters = self.default_iters if iters is None else int(iters)
        if iters < 1:
            raise EncoderError(f"iters must be >= 1, got {iters}")
        x = self.prepare(images)
        codes = self.initial_codes(x) if codes is None else codes.to(x)
        y_w = self.synthesize(codes)
        y_in, acc, history = self.pool(y_w), None, []
        for _ in range(iters):
            d, acc = self.step(x, y_in, acc)
            y = synthesize_with_offsets(self.G, codes, acc)
            history.append(dict(deltas=d, images=y))
            y_in = self.pool(y)
        return dict(ws=codes, images=y, history=history, offsets=offsets_by_name(self.G, acc),
                    initial_images=y_w)
