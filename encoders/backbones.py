"""Encoder backbones in the key layouts of the published checkpoints.

* :class:`IRSEBackbone` - ArcFace's IR-SE network (``input_layer`` + ``body.N`` units), the trunk of
  pSp, e4e, ReStyle's ``BackboneEncoder`` and HyperStyle's ``WEncoder``; :class:`ArcFace` adds
  ``output_layer`` (the ID network ``model_ir_se50.pth``). gankit's only IR-SE implementation: the
  ID loss (``inversion.arcface``) builds its network here too.
* :class:`ResNetBackbone` - torchvision's ResNet-34 blocks flattened into ``body.N`` after a 7x7
  stem with PReLU and no max-pool (ReStyle's ``ResNet*BackboneEncoder``, HyperStyle's hypernet).
* :class:`GradualStyleBlock` ("map2style") - stride-2 3x3 convs down to 1x1, then an equalized linear.

Every depth and width is a constructor argument; ``*_spec_from_state_dict`` read them from a
checkpoint's tensor shapes, so the same code builds the real networks and shrunk ones.
"""
from __future__ import annotations

import math
import re
from typing import Dict, List, Mapping, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

# ArcFace IR-SE50: units per stage and widths (TreB1eN / pSp ``get_blocks(50)``)
IRSE50_STAGES = ((64, 3), (128, 4), (256, 14), (512, 3))
# torchvision resnet34: blocks per stage and widths
RESNET34_STAGES = ((64, 3), (128, 4), (256, 6), (512, 3))


class EqualLinear(nn.Module):
    """pSp's equalized linear: ``x @ (W * lr_mul / sqrt(in)).T + b * lr_mul``."""

    def __init__(self, in_dim: int, out_dim: int, lr_mul: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.zeros(out_dim))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul

    def forward(self, x):
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class SEModule(nn.Module):
    """Squeeze-and-excitation: global average -> 1x1 (C -> C/r) -> ReLU -> 1x1 -> sigmoid -> scale."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=False)

    def forward(self, x):
        s = x.mean(dim=(2, 3), keepdim=True)
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(s))))
        return x * s


class BottleneckIRSE(nn.Module):
    """IR-SE unit: ``res_layer(x) + shortcut(x)`` (BN-conv-PReLU-conv(stride)-BN-SE), no activation after."""

    def __init__(self, in_channels: int, depth: int, stride: int, se_hidden: int):
        super().__init__()
        self.stride = stride
        if in_channels == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)         # keyless subsampling x[:, :, ::s, ::s]
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(in_channels, depth, 1, stride, bias=False),
                                                nn.BatchNorm2d(depth))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
            SEModule(depth, se_hidden))

    def forward(self, x):
        return self.res_layer(x) + self.shortcut_layer(x)


def irse_units(stages: Sequence[Tuple[int, int]], in_width: int = None, se_reduction: int = 16) -> List[tuple]:
    """[(in, depth, stride, se_hidden)] for stages [(width, n_units)]; the first unit of each stage has stride 2."""
    units, prev = [], in_width if in_width is not None else stages[0][0]
    for width, n in stages:
        for i in range(n):
            units.append((prev, width, 2 if i == 0 else 1, max(1, width // se_reduction)))
            prev = width
    return units


class IRSEBackbone(nn.Module):
    """ArcFace IR-SE trunk. ``units``: [(in, depth, stride, se_hidden)] in ``body`` order.

    ``features(x)`` returns the output of the last unit of every stage (256 input -> 128, 64, 32, 16 px).
    """

    def __init__(self, in_nc: int, units: Sequence[Tuple[int, int, int, int]]):
        super().__init__()
        units = [tuple(int(v) for v in u) for u in units]
        c1 = units[0][0]
        self.in_nc = in_nc
        self.units = units
        self.input_layer = nn.Sequential(nn.Conv2d(in_nc, c1, 3, 1, 1, bias=False), nn.BatchNorm2d(c1),
                                         nn.PReLU(c1))
        self.body = nn.Sequential(*[BottleneckIRSE(*u) for u in units])
        starts = [i for i, u in enumerate(units) if i == 0 or u[0] != u[1]]
        self.stage_ends = [s - 1 for s in starts[1:]] + [len(units) - 1]   # body index ending each stage
        self.stage_widths = [units[e][1] for e in self.stage_ends]

    def features(self, x) -> List[torch.Tensor]:
        x = self.input_layer(x)
        out = []
        ends = set(self.stage_ends)
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in ends:
                out.append(x)
        return out


def irse_spec_from_state_dict(sd: Mapping[str, torch.Tensor], prefix: str = "") -> Dict[str, object]:
    """``dict(in_nc, units)`` of an IR-SE trunk from its tensors (``prefix`` e.g. ``"encoder."``)."""
    idx = sorted({int(m.group(1)) for k in sd for m in [re.match(re.escape(prefix) + r"body\.(\d+)\.", k)] if m})
    if not idx or idx != list(range(len(idx))):
        raise KeyError(f"no contiguous {prefix}body.N units")
    units = []
    for i in idx:
        p = f"{prefix}body.{i}."
        cin = sd[p + "res_layer.0.weight"].shape[0]
        depth = sd[p + "res_layer.1.weight"].shape[0]
        se_hidden = sd[p + "res_layer.5.fc1.weight"].shape[0]
        stage_start = i == 0 or (p + "shortcut_layer.0.weight") in sd
        units.append((cin, depth, 2 if stage_start else 1, se_hidden))
    in_nc = sd[prefix + "input_layer.0.weight"].shape[1]
    return dict(in_nc=int(in_nc), units=units)


class ArcFace(IRSEBackbone):
    """IR-SE + ``output_layer`` (BN2d, dropout, flatten, linear, BN1d): an L2-normalised embedding.

    Input: 112x112 face crops in [-1, 1] (:func:`arcface_input` makes them from pSp-aligned 256 px images).
    """

    def __init__(self, in_nc: int, units, embedding_dim: int = 512, grid: int = 7):
        super().__init__(in_nc, units)
        c4 = self.stage_widths[-1]
        self.input_size = 16 * grid                                       # four stride-2 stages: 112 -> 7
        self.output_layer = nn.Sequential(nn.BatchNorm2d(c4), nn.Dropout(0.6), nn.Flatten(),
                                          nn.Linear(c4 * grid * grid, embedding_dim), nn.BatchNorm1d(embedding_dim))

    def embed_raw(self, x):
        return self.output_layer(self.features(x)[-1])                    # [N, E]

    def forward(self, x):
        e = self.embed_raw(x)
        return e / e.norm(dim=1, keepdim=True)


def arcface_input(images: torch.Tensor, size: int = 112) -> torch.Tensor:
    """pSp's ID-loss preprocessing: images -> adaptive average to 256 px (pSp's ``face_pool``: box
    averaging when larger, pixel replication when smaller) -> crop rows 35:223, cols 32:220 -> adaptive
    average to ``size``."""
    if images.shape[-1] != 256 or images.shape[-2] != 256:
        images = F.adaptive_avg_pool2d(images, (256, 256))
    return F.adaptive_avg_pool2d(images[:, :, 35:223, 32:220], (size, size))


def arcface_from_state_dict(sd: Mapping[str, torch.Tensor]) -> ArcFace:
    spec = irse_spec_from_state_dict(sd)
    lin = sd["output_layer.3.weight"]                                     # [E, C4 * g * g]
    c4 = sd["output_layer.0.weight"].shape[0]
    grid = int(round(math.sqrt(lin.shape[1] / c4)))
    net = ArcFace(spec["in_nc"], spec["units"], embedding_dim=lin.shape[0], grid=grid)
    load_state(net, sd)
    return net.eval()


# ----------------------------------------------------------------------------------------------
# ResNet-34 backbone (ReStyle / HyperStyle)


class BasicBlock(nn.Module):
    """torchvision's BasicBlock: conv3x3(stride)-BN-ReLU-conv3x3-BN + identity/downsample, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                            nn.BatchNorm2d(out_channels))

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + idt)


def resnet_blocks(stages: Sequence[Tuple[int, int]]) -> List[tuple]:
    """[(in, out, stride)]: stage 1 keeps the size, stages 2-4 start with a stride-2 block."""
    blocks, prev = [], stages[0][0]
    for si, (width, n) in enumerate(stages):
        for i in range(n):
            blocks.append((prev, width, 2 if (i == 0 and si > 0) else 1))
            prev = width
    return blocks


class ResNetBackbone(nn.Module):
    """7x7/2 stem (``conv1``, ``bn1``, PReLU ``relu``), no max-pool, ``body`` = flattened BasicBlocks.

    256 px input -> 128 (stem and stage 1), 64, 32, 16 px. ``features(x)`` returns the final map.
    """

    def __init__(self, in_nc: int, blocks: Sequence[Tuple[int, int, int]]):
        super().__init__()
        blocks = [tuple(int(v) for v in b) for b in blocks]
        c1 = blocks[0][0]
        self.in_nc, self.blocks = in_nc, blocks
        self.conv1 = nn.Conv2d(in_nc, c1, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(c1)
        self.relu = nn.PReLU(c1)
        self.body = nn.Sequential(*[BasicBlock(*b) for b in blocks])
        self.out_channels = blocks[-1][1]

    def features(self, x) -> torch.Tensor:
        return self.body(self.relu(self.bn1(self.conv1(x))))


def resnet_spec_from_state_dict(sd: Mapping[str, torch.Tensor], prefix: str = "") -> Dict[str, object]:
    idx = sorted({int(m.group(1)) for k in sd for m in [re.match(re.escape(prefix) + r"body\.(\d+)\.", k)] if m})
    if not idx or idx != list(range(len(idx))):
        raise KeyError(f"no contiguous {prefix}body.N blocks")
    blocks = []
    for i in idx:
        p = f"{prefix}body.{i}."
        w = sd[p + "conv1.weight"]
        blocks.append((w.shape[1], w.shape[0], 2 if (p + "downsample.0.weight") in sd else 1))
    return dict(in_nc=int(sd[prefix + "conv1.weight"].shape[1]), blocks=blocks)


# ----------------------------------------------------------------------------------------------
# map2style


class GradualStyleBlock(nn.Module):
    """map2style: ``n_convs`` x (3x3 stride-2 conv + LeakyReLU(0.01)) to 1x1, flatten, EqualLinear.

    Keys ``convs.{0,2,4,...}`` (activations at the odd indices) and ``linear``. The references always
    use enough convs to reach 1x1; gankit also allows fewer (compact encoders) and then averages the
    remaining map, which is the identity when it is already 1x1.
    """

    def __init__(self, in_channels: int, out_channels: int, n_convs: int):
        super().__init__()
        layers = []
        for i in range(n_convs):
            layers += [nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 3, 2, 1), nn.LeakyReLU()]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(out_channels, out_channels)
        self.out_channels = out_channels

    def forward(self, x):
        x = self.convs(x)                                                      # [N, S, h, w]
        if x.shape[-1] > 1 or x.shape[-2] > 1:
            x = x.mean(dim=(2, 3), keepdim=True)                               # [N, S, 1, 1]
        return self.linear(x.flatten(1))                                      # [N, S]


def count_convs(sd: Mapping[str, torch.Tensor], prefix: str) -> int:
    """Number of ``{prefix}convs.K.weight`` tensors."""
    return len([k for k in sd if re.fullmatch(re.escape(prefix) + r"convs\.\d+\.weight", k)])


def load_state(net: nn.Module, sd: Mapping[str, torch.Tensor], prefix: str = "") -> None:
    """Strict copy of ``{prefix}*`` tensors into ``net``; ``num_batches_tracked`` may be absent (older files).

    Raises KeyError naming missing / unexpected / wrong-shaped keys.
    """
    own = net.state_dict()
    src = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    missing = [k for k in own if k not in src and not k.endswith("num_batches_tracked")]
    extra = [k for k in src if k not in own]
    bad = [k for k in own if k in src and tuple(own[k].shape) != tuple(src[k].shape)]
    if missing or extra or bad:
        raise KeyError("; ".join(s for s in (
            f"missing {[prefix + k for k in missing[:4]]}" if missing else "",
            f"unexpected {[prefix + k for k in extra[:4]]}" if extra else "",
            f"wrong shape {[prefix + k for k in bad[:4]]}" if bad else "") if s))
    with torch.no_grad():
        for k, t in own.items():
            if k in src:
                t.copy_(src[k].to(t.dtype))
