"""An offline face-identity network: dlib's face-recognition ResNet, read from its own file, in PyTorch.

``dlib_face_recognition_resnet_model_v1.dat`` (a 29-conv ResNet trained for face verification, 99.38 %
on LFW) ships inside the ``face-recognition-models`` package, so identity can be measured and trained
on a machine that downloads nothing.

    net = identity.load()                            # torch.nn.Module, eval, gradients off
    d = net(chips)                                   # [N, 3, 150, 150] RGB 0..255 -> [N, 128]
    chip = identity.face_chip(rgb, landmarks)        # == dlib.get_face_chip(img, shape, 150, 0.25)
    d = identity.describe(rgb, landmarks)            # == compute_face_descriptor(img, shape)
    x = identity.aligned_to_chip(images)             # FFHQ-aligned [-1, 1] -> chips, differentiable
    d = net(x)                                       # gradients reach ``images``

Two descriptors are "the same person" for dlib when their Euclidean distance is below 0.6
(``SAME_PERSON_DISTANCE``). On CPU the port's descriptors equal dlib's to about 1e-6. On a GPU,
PyTorch may run convolutions in TF32 (``torch.backends.cudnn.allow_tf32``, on by default), which
keeps only 10 mantissa bits per product: turn it off where dlib-equal numbers matter.

The reader
----------
The file is dlib's own serialization of ``loss_metric<fc_no_bias<128, avg_pool_everything<...>>>``:
an ``add_loss_layer`` (version 1, ``"loss_metric_2"``, margin, distance threshold) over a stack of
``add_layer`` / ``add_tag_layer`` / ``add_skip_layer`` objects. Each ``add_layer`` writes its version,
then its whole sub-network, then its own details, so the file holds the versions of all layers top
down, then the input layer (``"input_rgb_image_sized"``, the mean R, G, B subtracted before dividing
by 256, the chip size), then the layer details bottom up (``con_4``, ``affine_``, ``relu_``,
``max_pool_2``, ``avg_pool_2``, ``add_prev_``, ``fc_2``), each followed by its run-time state (three
bools and some cached tensors, skipped). Tag and skip layers write only a version, so which marker is a
tag and which a skip is recovered from the residual-unit pattern; every shape (channels, kernels,
strides, paddings, units per stage, mean colour, chip size) is taken from the file and cross-checked.
Integers use dlib's variable-length format (a control byte with the sign and the byte count, then
little-endian bytes); tensors are version 2 (raw little-endian float32) or version 1 (each float as a
(mantissa, exponent) pair of such integers). Anything else is refused with one line naming what was
expected (:class:`IdentityModelError`).

Architecture read from the file (dlib's names; ``con`` = conv + bias, ``affine`` = batch norm folded
into a per-channel scale and shift)::

    input 150x150 RGB, (x - mean) / 256
    con 7x7/2, 32  affine  relu  max_pool 3x3/2
    3 x [32 res]  4 x [64: 1 down + 3 res]  3 x [128: down + 2 res]  3 x [256: down + 2 res]  1 x [256 down]
    avg_pool_everything  fc_no_bias 128

    res  = relu(x + affine(con3x3(relu(affine(con3x3(x))))))
    down = relu(avg_pool2x2/2(x) (+) affine(con3x3(relu(affine(con3x3/2(x))))))

``(+)`` is dlib's ``add_prev`` for tensors of different shapes: both are zero-padded (channels, rows,
columns; at the end) to the larger shape before adding. It matters: at 8x8 the strided conv gives 3x3
while the pooled shortcut gives 4x4.

The exact dlib path
-------------------
:func:`face_chip` reproduces ``get_face_chip_details`` (a similarity fit of 33 of the 68 landmarks,
or the 5 points, to dlib's mean face, padding 0.25) and ``extract_image_chips`` (dlib's 2:1
image pyramid, [1 4 6 4 1] filter with integer arithmetic, when the face is more than twice the chip
size; then bilinear sampling, black outside the image). :func:`describe` runs the network on it;
results equal dlib's within float rounding.

The differentiable path (aligned faces)
---------------------------------------
:func:`aligned_to_chip` maps an FFHQ-aligned image (any resolution, [-1, 1]) to the chip frame with a
fixed crop derived from the two templates (no landmarks): dlib's mean face placed in the FFHQ frame
by FFHQ's own rule (eyes at the mean of points 36-41 / 42-47, mouth at the mean of 48 and 54; with
that face ``2 |eye_to_eye| > 1.8 |eye_to_mouth|``, so the half side is twice the eye distance), then
dlib's chip of that face, including dlib's centring quirk (the chip's corner pixels land on the
corners of a rectangle ``size * scale`` wide *including* both end pixels). In the aligned frame
(``u = (col + 0.5) / R``) the chip is the axis-aligned square with

    centre  (0.5047, 0.6075)       side  0.7085      (FFHQ_CHIP_CENTER, FFHQ_CHIP_SIDE)

i.e. 70.9 % of the aligned image, a little below the middle (dlib's mean face is not centred on
x = 0.5: its eye centre is at 0.4901). Measured on the fixture faces aligned with FFHQ's rule, dlib's
own landmark-based chips of the aligned images lie within a few percent of this square (mean scale
0.95 of it, corners about 0.01 of the image size away) and descriptors from this crop are at
distance 0.17 on average (max 0.28) from dlib's landmark-based descriptors, far inside the 0.6
"same person" radius. pSp / e4e alignment uses the same geometry at 256 px (see
``shared/research/alignment.md`` section 8), so ``alignment="psp"`` gives the same crop.
Downscaling mirrors dlib: 2:1 steps of the same binomial filter while the crop is more than twice
the chip, then bilinear ``grid_sample``; every step is a torch op, so gradients reach the image.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "IdentityModelError", "DlibFaceResNet", "default_model_path", "read_model", "load",
    "chip_details", "face_chip", "face_chips", "describe", "describe_batch", "describe_chips", "chips_to_tensor",
    "aligned_to_chip", "aligned_chip_box", "SAME_PERSON_DISTANCE", "FFHQ_CHIP_CENTER", "FFHQ_CHIP_SIDE",
]

MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
SAME_PERSON_DISTANCE = 0.6  # dlib's threshold: Euclidean distance < 0.6 means "same person"
CHIP_SIZE = 150
CHIP_PADDING = 0.25


class IdentityModelError(ValueError):
    """A file is not dlib's face-recognition ResNet (foreign, truncated or inconsistent)."""


# ----------------------------------------------------------------------------------------------
# dlib serialization reader
# ----------------------------------------------------------------------------------------------

class _Stream:
    """dlib's serialization primitives over an in-memory file (see dlib/serialize.h)."""

    def __init__(self, data: bytes, name: str):
        self.b = data
        self.arr = np.frombuffer(data, np.uint8)
        self.pos = 0
        self.name = name

    def fail(self, what: str, found: str = "") -> None:
        raise IdentityModelError(
            f"{self.name}: not dlib's face-recognition ResNet ({MODEL_FILE}): expected {what} at byte "
            f"{self.pos}" + (f", found {found}" if found else ""))

    def need(self, n: int, what: str) -> None:
        if self.pos + n > len(self.b):
            raise IdentityModelError(
                f"{self.name}: truncated {MODEL_FILE}: expected {what} at byte {self.pos} but the file "
                f"ends at byte {len(self.b)}")

    def int_(self, what: str = "an integer") -> int:
        self.need(1, what)
        c = self.b[self.pos]
        n = c & 0x0F
        if c & 0x70 or n > 8:
            self.fail(what, f"byte 0x{c:02x}")
        self.need(1 + n, what)
        v = int.from_bytes(self.b[self.pos + 1:self.pos + 1 + n], "little")
        self.pos += 1 + n
        return -v if c & 0x80 else v

    def float_(self, what: str = "a float") -> float:
        m = self.int_(what)
        e = self.int_(what)
        if e >= 32000:  # dlib's float_details codes for inf, -inf, nan
            return {32000: math.inf, 32001: -math.inf}.get(e, math.nan)
        return math.ldexp(float(m), e)

    def str_(self, what: str = "a string", maxlen: int = 64) -> str:
        n = self.int_(what)
        if not 0 <= n <= maxlen:
            self.fail(what, f"a string length of {n}")
        self.need(n, what)
        s = self.b[self.pos:self.pos + n]
        self.pos += n
        return s.decode("latin-1")

    def expect_str(self, allowed: Sequence[str], what: str) -> str:
        at = self.pos
        s = self.str_(what)
        if s not in allowed:
            self.pos = at
            self.fail(what, repr(s))
        return s

    def bools(self, n: int) -> None:
        self.need(n, f"{n} bools")
        if any(ch not in b"01" for ch in self.b[self.pos:self.pos + n]):
            self.fail(f"{n} bools ('0'/'1')", repr(self.b[self.pos:self.pos + n]))
        self.pos += n

    def tensor(self, what: str) -> np.ndarray:
        """resizable_tensor: version, num_samples, k, nr, nc, then the floats."""
        version = self.int_(what)
        if version not in (1, 2):
            self.fail(f"{what} (tensor version 1 or 2)", f"version {version}")
        dims = [self.int_(what) for _ in range(4)]
        if min(dims) < 0 or int(np.prod(dims, dtype=np.int64)) > len(self.b):
            self.fail(what, f"dimensions {dims}")
        n = int(np.prod(dims, dtype=np.int64))
        if version == 2:
            self.need(4 * n, f"{what} ({n} floats)")
            out = np.frombuffer(self.b, "<f4", n, self.pos).astype(np.float32)
            self.pos += 4 * n
        else:
            out = self._packed_floats(n, what)
        return out.reshape(dims)

    def _packed_floats(self, n: int, what: str) -> np.ndarray:
        """n floats, each a (mantissa, exponent) pair of dlib integers.

        Vectorized on the common case (3-byte mantissa, 1-byte exponent: 6 bytes a float), with the
        scalar reader for the others (compacted mantissas, zeros, large exponents)."""
        out = np.empty(n, np.float64)
        a = self.arr
        k = 0
        run = 256
        while k < n:
            cnt = min(n - k, run)
            idx = self.pos + 6 * np.arange(cnt, dtype=np.int64)
            idx = idx[idx + 5 < len(a)]
            c1, c2 = a[idx], a[idx + 4]
            ok = ((c1 & 0x7F) == 3) & ((c2 & 0x7F) == 1)
            bad = np.flatnonzero(~ok)
            good = len(idx) if len(bad) == 0 else int(bad[0])
            if good:
                i = idx[:good]
                m = a[i + 1].astype(np.int64) | (a[i + 2].astype(np.int64) << 8) | (a[i + 3].astype(np.int64) << 16)
                m = np.where(c1[:good] & 0x80, -m, m)
                e = a[i + 5].astype(np.int64)
                e = np.where(c2[:good] & 0x80, -e, e)
                out[k:k + good] = np.ldexp(m.astype(np.float64), e.astype(np.int32))
                k += good
                self.pos += 6 * good
            if k < n and (good < len(idx) or len(idx) < cnt):  # an irregular float, or near the end
                out[k] = self.float_(f"{what} (float {k} of {n})")
                k += 1
                run = 256
            else:
                run = min(run * 2, 1 << 16)
        return out.astype(np.float32)

    def alias(self, what: str) -> Tuple[int, int, int, int]:
        """alias_tensor: version 1, num_samples, k, nr, nc."""
        if self.int_(what) != 1:
            self.fail(f"{what} (alias_tensor version 1)")
        return tuple(self.int_(what) for _ in range(4))


def _read_details(s: _Stream, what: str) -> dict:
    """One layer's details (dlib/dnn/layers.h), as a plain dict."""
    kind = s.expect_str(("con_4", "affine_", "relu_", "max_pool_2", "avg_pool_2", "add_prev_", "fc_2"),
                        f"a layer of the face ResNet ({what})")
    d: dict = {"kind": kind}
    if kind == "con_4":
        params = s.tensor("con_ parameters").reshape(-1)
        nf, nr, nc, sy, sx, py, px = (s.int_("con_ settings") for _ in range(7))
        fshape = s.alias("con_ filter shape")
        bshape = s.alias("con_ bias shape")
        for _ in range(4):
            s.float_("con_ learning-rate multipliers")
        kin = fshape[1]
        if fshape != (nf, kin, nr, nc) or bshape != (1, nf, 1, 1) or params.size != nf * kin * nr * nc + nf:
            s.fail("consistent con_ shapes", f"filters {fshape}, biases {bshape}, {params.size} parameters")
        d.update(weight=params[:nf * kin * nr * nc].reshape(nf, kin, nr, nc), bias=params[nf * kin * nr * nc:],
                 stride=(sy, sx), padding=(py, px))
    elif kind == "affine_":
        params = s.tensor("affine_ parameters").reshape(-1)
        g = s.alias("affine_ gamma shape")
        b = s.alias("affine_ beta shape")
        mode = s.int_("affine_ mode")
        c = g[1]
        if mode != 0 or g != (1, c, 1, 1) or b != g or params.size != 2 * c:
            s.fail("a per-channel (conv-mode) affine_", f"mode {mode}, gamma {g}, beta {b}, {params.size} values")
        d.update(scale=params[:c], shift=params[c:])
    elif kind in ("max_pool_2", "avg_pool_2"):
        nr, nc, sy, sx, py, px = (s.int_(f"{kind} settings") for _ in range(6))
        d.update(window=(nr, nc), stride=(sy, sx), padding=(py, px))
    elif kind == "fc_2":
        nout = s.int_("fc_ outputs")
        nin = s.int_("fc_ inputs")
        params = s.tensor("fc_ parameters").reshape(-1)
        w = s.alias("fc_ weight shape")
        s.alias("fc_ bias shape")
        bias_mode = s.int_("fc_ bias mode")
        for _ in range(4):
            s.float_("fc_ learning-rate multipliers")
        if bias_mode != 1 or w[:2] != (nin, nout) or params.size != nin * nout:
            s.fail("fc_no_bias weights", f"bias mode {bias_mode}, weights {w}, {params.size} values")
        # dlib computes out = in x W with W stored [inputs, outputs] row-major
        d.update(weight=params.reshape(nin, nout).T.copy())
    return d


def _read_layer_state(s: _Stream, bottom_version: Optional[int] = None) -> None:
    """add_layer's run-time state after the details: 3 bools, x_grad, cached_output, params_grad or
    grad_final, and (bottom layer, version 3) the sample expansion factor. Skipped."""
    s.bools(3)
    for name in ("x_grad", "cached_output", "params_grad" if bottom_version is None else "grad_final"):
        s.tensor(f"the layer's {name}")
    if bottom_version == 3:
        s.int_("the sample expansion factor")


def _parse_network(data: bytes, name: str) -> dict:
    """Parse the file into {"input": {...}, "loss": {...}, "nodes": [bottom-up list]}."""
    s = _Stream(data, name)
    if len(data) == 0:
        raise IdentityModelError(f"{name}: empty file, expected dlib's face-recognition ResNet ({MODEL_FILE})")
    if s.int_("add_loss_layer version 1") != 1:
        s.pos = 0
        s.fail("add_loss_layer version 1")
    s.expect_str(("loss_metric_2",), "the metric-learning loss 'loss_metric_2'")
    loss = {"margin": s.float_("loss_metric_ margin"), "distance_threshold": s.float_("loss_metric_ threshold")}
    # versions of the layers, top down: 2 = add_layer, 1 = tag or skip, 3 = the layer on the input
    versions: List[int] = []
    while True:
        at = s.pos
        v = s.int_("a layer version")
        if v == 3:
            versions.append(3)
            break
        if v in (1, 2) and len(versions) < 10000:
            versions.append(v)
            continue
        # an older bottom layer (version 2): this integer was the input layer's name length
        if versions and versions[-1] == 2:
            s.pos = at
            break
        s.pos = at
        s.fail("a layer version (1, 2 or 3)", f"{v}")
    bottom_version = versions.pop()
    s.expect_str(("input_rgb_image_sized",), "the input layer 'input_rgb_image_sized'")
    mean = [s.float_("the input layer's mean colour") for _ in range(3)]
    rows, cols = s.int_("the input size"), s.int_("the input size")
    inp = {"mean": mean, "size": (rows, cols)}
    nodes = [_read_details(s, "on the input")]
    _read_layer_state(s, bottom_version)
    for v in reversed(versions):
        if v == 1:
            nodes.append({"kind": "marker"})
            continue
        nodes.append(_read_details(s, f"layer {len(nodes)}"))
        _read_layer_state(s)
    if s.pos != len(data):
        raise IdentityModelError(f"{name}: {len(data) - s.pos} unexpected bytes after the network at byte "
                                 f"{s.pos}; expected the end of {MODEL_FILE}")
    return {"input": inp, "loss": loss, "nodes": nodes}


def _kinds(nodes: Sequence[dict]) -> List[str]:
    return [n["kind"] for n in nodes]


_RES = ["marker", "con_4", "affine_", "relu_", "con_4", "affine_", "add_prev_", "relu_"]
_DOWN = ["marker", "con_4", "affine_", "relu_", "con_4", "affine_", "marker", "marker", "avg_pool_2",
         "add_prev_", "relu_"]


def _structure(parsed: dict, name: str) -> dict:
    """Match the bottom-up node list to the face ResNet's grammar; return a build plan."""
    nodes = parsed["nodes"]

    def refuse(i: int, what: str) -> None:
        got = " ".join(_kinds(nodes[i:i + 4]))
        raise IdentityModelError(f"{name}: not dlib's face-recognition ResNet ({MODEL_FILE}): expected {what} "
                                 f"as layer {i} from the input, found {got or 'the end'}")

    if _kinds(nodes[:4]) != ["con_4", "affine_", "relu_", "max_pool_2"]:
        refuse(0, "con affine relu max_pool")
    stem_conv, stem_aff, _, pool = nodes[:4]
    ch = stem_conv["weight"].shape[0]
    if stem_conv["weight"].shape[1] != 3 or stem_aff["scale"].size != ch:
        refuse(0, "a 3-channel stem with matching affine")
    units = []
    i = 4
    while i < len(nodes) and nodes[i]["kind"] == "marker":
        if _kinds(nodes[i:i + len(_DOWN)]) == _DOWN:
            seq, down = nodes[i:i + len(_DOWN)], True
        elif _kinds(nodes[i:i + len(_RES)]) == _RES:
            seq, down = nodes[i:i + len(_RES)], False
        else:
            refuse(i, "a residual unit (tag con affine relu con affine [tag skip avg_pool] add_prev relu)")
        c1, a1, c2, a2 = seq[1], seq[2], seq[4], seq[5]
        out = c1["weight"].shape[0]
        ok = (c1["weight"].shape[1] == ch and a1["scale"].size == out and c2["weight"].shape[:2] == (out, out)
              and a2["scale"].size == out)
        if down:
            ap = seq[8]
            ok = ok and ap["window"] != (0, 0) and ap["padding"] == (0, 0)
        else:
            ok = ok and out == ch and c1["stride"] == (1, 1) and c2["stride"] == (1, 1)
        if not ok:
            refuse(i, f"a residual unit with consistent shapes (input {ch} channels)")
        units.append({"down": down, "conv1": c1, "aff1": a1, "conv2": c2, "aff2": a2,
                      "pool": seq[8] if down else None})
        ch = out
        i += len(seq)
    if not units:
        refuse(4, "residual units")
    if _kinds(nodes[i:]) != ["avg_pool_2", "fc_2"] or nodes[i]["window"] != (0, 0):
        refuse(i, "avg_pool_everything fc_no_bias at the top")
    fc = nodes[i + 1]
    if fc["weight"].shape[1] != ch:
        refuse(i + 1, f"fc_no_bias over {ch} inputs")
    return {"input": parsed["input"], "loss": parsed["loss"], "stem_conv": stem_conv, "stem_aff": stem_aff,
            "stem_pool": pool, "units": units, "fc": fc}


def default_model_path() -> Path:
    """``dlib_face_recognition_resnet_model_v1.dat`` inside the installed face-recognition-models."""
    import importlib.util
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise IdentityModelError("face-recognition-models is not installed (pip install face-recognition-models);"
                                 f" it provides {MODEL_FILE}")
    return Path(spec.origin).parent / "models" / MODEL_FILE


_PLAN_CACHE: Dict[tuple, dict] = {}


def read_model(path: Union[str, Path, None] = None) -> dict:
    """Parse a model file into a build plan (numpy weights); cached per (path, size, mtime)."""
    p = Path(path).expanduser() if path is not None else default_model_path()
    try:
        st = p.stat()
    except OSError as e:
        raise IdentityModelError(f"{p}: cannot read the face-recognition model: {e.strerror or e}") from None
    if p.is_dir():
        raise IdentityModelError(f"{p}: is a directory, expected {MODEL_FILE}")
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _PLAN_CACHE:
        try:
            data = p.read_bytes()
        except OSError as e:
            raise IdentityModelError(f"{p}: cannot read the face-recognition model: {e.strerror or e}") from None
        _PLAN_CACHE.clear()
        _PLAN_CACHE[key] = _structure(_parse_network(data, str(p)), str(p))
    return _PLAN_CACHE[key]


# ----------------------------------------------------------------------------------------------
# The network
# ----------------------------------------------------------------------------------------------

def _pad_add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev: zero-pad both to the larger shape (at the end of C, H, W), then add."""
    if a.shape == b.shape:
        return a + b
    shape = [max(x, y) for x, y in zip(a.shape, b.shape)]

    def pad(t):
        return F.pad(t, (0, shape[3] - t.shape[3], 0, shape[2] - t.shape[2], 0, shape[1] - t.shape[1]))
    return pad(a) + pad(b)


def _conv(d: dict, fold: Optional[dict]) -> nn.Conv2d:
    w = d["weight"].astype(np.float64)
    bias = d["bias"].astype(np.float64)
    if fold is not None:  # fold the following affine (per-channel scale, shift) into the conv
        g = fold["scale"].astype(np.float64)
        w = w * g[:, None, None, None]
        bias = bias * g + fold["shift"].astype(np.float64)
    conv = nn.Conv2d(w.shape[1], w.shape[0], w.shape[2:], stride=d["stride"], padding=d["padding"], bias=True)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(w))
        conv.bias.copy_(torch.from_numpy(bias))
    return conv


class _Affine(nn.Module):
    def __init__(self, d: dict):
        super().__init__()
        self.scale = nn.Parameter(torch.from_numpy(d["scale"].copy()).view(1, -1, 1, 1))
        self.shift = nn.Parameter(torch.from_numpy(d["shift"].copy()).view(1, -1, 1, 1))

    def forward(self, x):
        return torch.addcmul(self.shift, x, self.scale)


class _Unit(nn.Module):
    """relu(shortcut (+) affine(con(relu(affine(con(x))))))."""

    def __init__(self, u: dict, fold: bool):
        super().__init__()
        self.down = u["down"]
        self.conv1 = _conv(u["conv1"], u["aff1"] if fold else None)
        self.aff1 = nn.Identity() if fold else _Affine(u["aff1"])
        self.conv2 = _conv(u["conv2"], u["aff2"] if fold else None)
        self.aff2 = nn.Identity() if fold else _Affine(u["aff2"])
        if self.down:
            p = u["pool"]
            self.pool = nn.AvgPool2d(p["window"], p["stride"])
        self.in_channels = self.conv1.in_channels
        self.out_channels = self.conv2.out_channels

    def forward(self, x):
        y = self.aff2(self.conv2(F.relu(self.aff1(self.conv1(x)))))
        return F.relu(_pad_add(y, self.pool(x) if self.down else x))


class DlibFaceResNet(nn.Module):
    """dlib's face-recognition ResNet. ``forward(chips)``: [N, 3, 150, 150] RGB 0..255 -> [N, 128].

    Built from a parsed model file (:func:`load`). Other input sizes run (the net is convolutional up to
    a global average) but only 150x150 chips give dlib's descriptors. ``features(chips)`` returns the
    output of every residual unit and the descriptor, for perceptual distances.
    """

    def __init__(self, plan: dict, fold: bool = True):
        super().__init__()
        inp = plan["input"]
        self.chip_size = tuple(inp["size"])
        self.register_buffer("mean", torch.tensor(inp["mean"], dtype=torch.float32).view(1, 3, 1, 1))
        self.margin = plan["loss"]["margin"]
        self.distance_threshold = plan["loss"]["distance_threshold"]
        self.stem = _conv(plan["stem_conv"], plan["stem_aff"] if fold else None)
        self.stem_aff = nn.Identity() if fold else _Affine(plan["stem_aff"])
        p = plan["stem_pool"]
        self.stem_pool = nn.MaxPool2d(p["window"], p["stride"], p["padding"])
        self.units = nn.ModuleList(_Unit(u, fold) for u in plan["units"])
        w = plan["fc"]["weight"]
        self.fc = nn.Linear(w.shape[1], w.shape[0], bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.from_numpy(w))
        # stage ends: the last unit before each change of resolution / width, and the last unit
        ends = [i for i in range(len(self.units) - 1) if self.units[i + 1].down]
        self.stage_ends = ends + [len(self.units) - 1]
        # NHWC: on CPU this takes oneDNN's convolutions at every size (about 2x faster, forward and
        # backward, than the default path, which falls back to im2col for small feature maps)
        self.to(memory_format=torch.channels_last)

    @property
    def descriptor_dim(self) -> int:
        return self.fc.out_features

    def normalize(self, chips: torch.Tensor) -> torch.Tensor:
        """dlib's input layer: (pixel - mean colour) / 256."""
        return (chips - self.mean) / 256.0

    def _trunk(self, chips: torch.Tensor, keep: bool):
        x = self.normalize(chips).contiguous(memory_format=torch.channels_last)
        x = self.stem_pool(F.relu(self.stem_aff(self.stem(x))))
        outs = []
        for u in self.units:
            x = u(x)
            if keep:
                outs.append(x)
        return x, outs

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        x, _ = self._trunk(chips, False)
        return self.fc(x.mean(dim=(2, 3)))

    def features(self, chips: torch.Tensor) -> Tuple[List[torch.Tensor], torch.Tensor]:
        """(outputs of every residual unit, descriptor [N, 128])."""
        x, outs = self._trunk(chips, True)
        return outs, self.fc(x.mean(dim=(2, 3)))


def load(path: Union[str, Path, None] = None, device: Union[str, torch.device, None] = None,
         fold: bool = True) -> DlibFaceResNet:
    """Read dlib's face-recognition ResNet (default: the file in face-recognition-models).

    Returns the network in eval mode with gradients off for its weights (a frozen loss network);
    ``fold=False`` keeps each affine layer separate instead of folding it into the preceding conv.
    Raises :class:`IdentityModelError` (one line) for any other file.
    """
    net = DlibFaceResNet(read_model(path), fold=fold).eval().requires_grad_(False)
    return net.to(device) if device is not None else net


_DEFAULT_NETS: Dict[str, DlibFaceResNet] = {}


def _default_net(device=None) -> DlibFaceResNet:
    key = str(torch.device(device) if device is not None else torch.device("cpu"))
    if key not in _DEFAULT_NETS:
        _DEFAULT_NETS[key] = load(device=key)
    return _DEFAULT_NETS[key]


# ----------------------------------------------------------------------------------------------
# The exact dlib path: get_face_chip_details + extract_image_chips
# ----------------------------------------------------------------------------------------------

# dlib's mean face (image_transforms/interpolation.h, get_face_chip_details): landmarks 17..67 of the
# iBUG 68-point layout in a unit square (dlib, Boost Software License 1.0).
_MEAN_FACE_X = np.array([
    0.000213256, 0.0752622, 0.18113, 0.29077, 0.393397, 0.586856, 0.689483, 0.799124,
    0.904991, 0.98004, 0.490127, 0.490127, 0.490127, 0.490127, 0.36688, 0.426036,
    0.490127, 0.554217, 0.613373, 0.121737, 0.187122, 0.265825, 0.334606, 0.260918,
    0.182743, 0.645647, 0.714428, 0.793132, 0.858516, 0.79751, 0.719335, 0.254149,
    0.340985, 0.428858, 0.490127, 0.551395, 0.639268, 0.726104, 0.642159, 0.556721,
    0.490127, 0.423532, 0.338094, 0.290379, 0.428096, 0.490127, 0.552157, 0.689874,
    0.553364, 0.490127, 0.42689])
_MEAN_FACE_Y = np.array([
    0.106454, 0.038915, 0.0187482, 0.0344891, 0.0773906, 0.0773906, 0.0344891,
    0.0187482, 0.038915, 0.106454, 0.203352, 0.307009, 0.409805, 0.515625, 0.587326,
    0.609345, 0.628106, 0.609345, 0.587326, 0.216423, 0.178758, 0.179852, 0.231733,
    0.245099, 0.244077, 0.231733, 0.179852, 0.178758, 0.216423, 0.244077, 0.245099,
    0.780233, 0.745405, 0.727388, 0.742578, 0.727388, 0.745405, 0.780233, 0.864805,
    0.902192, 0.909281, 0.902192, 0.864805, 0.784792, 0.778746, 0.785343, 0.778746,
    0.784792, 0.824182, 0.831803, 0.824182])
# landmarks used by the fit: 27..54 and 60..64 (no jaw, no eyebrows, no lower lip)
_FIT_68 = np.array([i for i in range(17, 68) if not (55 <= i <= 59 or 65 <= i <= 67 or 17 <= i <= 26)])
# dlib's 5-point template (shape_predictor_5_face_landmarks: eye corners and the nose base)
_MEAN_FACE_5 = np.array([[0.8595674595992, 0.2134981538014], [0.6460604764104, 0.2289674387677],
                         [0.1205750620789, 0.2137274526848], [0.3340850613712, 0.2290642403242],
                         [0.4901123135679, 0.6277975316475]])


def _landmarks(shape) -> np.ndarray:
    """[K, 2] float64 from an array-like or a dlib full_object_detection."""
    if hasattr(shape, "parts") and callable(shape.parts):
        pts = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
    else:
        pts = np.asarray(shape, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] not in (68, 5):
        raise ValueError(f"landmarks must be [68, 2] (iBUG 300-W) or [5, 2] (dlib's 5 points), got {pts.shape}")
    return pts


def _similarity(src: np.ndarray, dst: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Least-squares similarity transform src -> dst (Umeyama 1991, eqs. 34-43): dst ~ M @ src + t."""
    ms, md = src.mean(0), dst.mean(0)
    s0, d0 = src - ms, dst - md
    var_s = (s0 ** 2).sum(1).mean()
    cov = d0.T @ s0 / len(src)
    u, d, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(cov) < 0 or (np.linalg.det(cov) == 0 and np.linalg.det(u) * np.linalg.det(vt) < 0):
        sign[1, 1] = -1  # flip the smaller singular direction
    r = u @ sign @ vt
    c = np.trace(np.diag(d) @ sign) / var_s if var_s != 0 else 1.0
    return c * r, md - c * r @ ms


def chip_details(landmarks, size: int = CHIP_SIZE, padding: float = CHIP_PADDING) -> dict:
    """dlib's ``get_face_chip_details``: the chip's rectangle (l, t, r, b) in the photo and its angle."""
    pts = _landmarks(landmarks)
    if pts.shape[0] == 68:
        tmpl = np.stack([_MEAN_FACE_X[_FIT_68 - 17], _MEAN_FACE_Y[_FIT_68 - 17]], 1)
        dst = pts[_FIT_68]
    else:
        tmpl, dst = _MEAN_FACE_5, pts
    src = (padding + tmpl) / (2 * padding + 1) * size
    m, t = _similarity(src, dst)
    p = m @ np.array([1.0, 0.0])
    angle = math.atan2(p[1], p[0])
    scale = math.hypot(p[0], p[1])
    cx, cy = m @ np.array([size / 2.0, size / 2.0]) + t
    w = size * scale - 1  # centered_drect: the rectangle's inclusive width is size * scale
    return {"rect": (cx - w / 2, cy - w / 2, cx + w / 2, cy + w / 2), "angle": angle, "rows": size, "cols": size}


def _rect_area(r) -> float:
    l, t, rr, b = r
    if t > b or l > rr:
        return 0.0
    return (rr - l + 1) * (b - t + 1)


def _rect_down(r):
    """pyramid_down<2>::rect_down: each corner p -> p/2 - (1.25, 0.75)."""
    l, t, rr, b = r
    x1, y1, x2, y2 = l / 2 - 1.25, t / 2 - 0.75, rr / 2 - 1.25, b / 2 - 0.75
    return (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))


def _rotate(center, p, angle):
    ca, sa = math.cos(angle), math.sin(angle)
    x, y = p[0] - center[0], p[1] - center[1]
    return (ca * x - sa * y + center[0], sa * x + ca * y + center[1])


def _pyramid_down(img: np.ndarray) -> np.ndarray:
    """pyramid_down<2> on an RGB uint8 image: [1 4 6 4 1] rows then columns, integer, / 256 (floor)."""
    nr, nc = img.shape[:2]
    if nr <= 8 or nc <= 8:
        return np.zeros((0, 0, img.shape[2]), np.uint8)
    x = img.astype(np.int32)
    w = (nc - 3) // 2
    cs = 2 * np.arange(w)
    t = x[:, cs] + 4 * x[:, cs + 1] + 6 * x[:, cs + 2] + 4 * x[:, cs + 3] + x[:, cs + 4]
    h = (nr - 3) // 2
    rs = 2 + 2 * np.arange(h)
    out = t[rs - 2] + 4 * t[rs - 1] + 6 * t[rs] + 4 * t[rs + 1] + t[rs + 2]
    return (out // 256).astype(np.uint8)


def _bilinear(img: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """interpolate_bilinear for RGB: black where the 2x2 neighbourhood leaves the image; the double
    result is converted to uint8 as dlib's assign_pixel does (clamp, then truncate)."""
    h, w = img.shape[:2]
    left = np.floor(px).astype(np.int64)
    top = np.floor(py).astype(np.int64)
    inside = (left >= 0) & (top >= 0) & (left + 1 <= w - 1) & (top + 1 <= h - 1)
    lc = np.clip(left, 0, max(w - 2, 0))
    tc = np.clip(top, 0, max(h - 2, 0))
    lr = (px - left)[..., None]
    tb = (py - top)[..., None]
    f = img.astype(np.float64)
    if h < 2 or w < 2:
        return np.zeros(px.shape + (img.shape[2],), np.uint8)
    tl, tr = f[tc, lc], f[tc, lc + 1]
    bl, br = f[tc + 1, lc], f[tc + 1, lc + 1]
    val = (1 - tb) * ((1 - lr) * tl + lr * tr) + tb * ((1 - lr) * bl + lr * br)
    out = np.clip(val, 0, 255).astype(np.uint8)
    out[~inside] = 0
    return out


def _as_rgb_uint8(img) -> np.ndarray:
    a = np.asarray(img)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 image [H, W, 3], got {a.dtype} {a.shape}")
    return a


def face_chips(img, landmarks_list: Sequence, size: int = CHIP_SIZE, padding: float = CHIP_PADDING) -> np.ndarray:
    """dlib's ``extract_image_chips(img, get_face_chip_details(shapes, size, padding))``: [N, size, size, 3].

    All faces of one photo share one image pyramid, exactly as dlib's ``compute_face_descriptor(img,
    shapes)`` does (so a chip can differ by a level from the one-face call when the faces are far apart).
    """
    img = _as_rgb_uint8(img)
    dets = [chip_details(lm, size, padding) for lm in landmarks_list]
    if not dets:
        return np.zeros((0, size, size, 3), np.uint8)
    H, W = img.shape[:2]
    # bounding box of everything needed, and the pyramid depth
    box = None  # integer (l, t, r, b)
    max_depth = 0
    for d in dets:
        depth, grow = 0, 2.0
        r = _rect_down(d["rect"])
        while _rect_area(r) > d["rows"] * d["cols"]:
            r = _rect_down(r)
            depth += 1
            grow = grow * 2 + 2
        l, t, rr, b = d["rect"]
        c = ((l + rr) / 2, (t + b) / 2)
        corners = [_rotate(c, p, d["angle"]) for p in ((l, t), (rr, t), (l, b), (rr, b))]
        xs, ys = [p[0] for p in corners], [p[1] for p in corners]
        g = (max(min(xs) - grow, 0), max(min(ys) - grow, 0), min(max(xs) + grow, W - 1), min(max(ys) + grow, H - 1))
        gi = tuple(int(math.floor(v + 0.5)) for v in g)  # drectangle -> rectangle
        if gi[0] <= gi[2] and gi[1] <= gi[3]:
            box = gi if box is None else (min(box[0], gi[0]), min(box[1], gi[1]),
                                          max(box[2], gi[2]), max(box[3], gi[3]))
        max_depth = max(max_depth, depth)
    if box is None:
        return np.zeros((len(dets), size, size, 3), np.uint8)
    base = img[box[1]:box[3] + 1, box[0]:box[2] + 1]
    levels = []
    cur = base
    for _ in range(max_depth):
        cur = _pyramid_down(cur)
        levels.append(cur)
    out = np.zeros((len(dets), dets[0]["rows"], dets[0]["cols"], 3), np.uint8)
    for k, d in enumerate(dets):
        rows, cols = d["rows"], d["cols"]
        l, t, rr, b = d["rect"]
        r = (l - box[0], t - box[1], rr - box[0], b - box[1])
        level = -1
        while _rect_area(_rect_down(r)) > rows * cols:
            level += 1
            r = _rect_down(r)
        c = ((r[0] + r[2]) / 2, (r[1] + r[3]) / 2)
        tl = np.array(_rotate(c, (r[0], r[1]), d["angle"]))
        tr = np.array(_rotate(c, (r[2], r[1]), d["angle"]))
        bl = np.array(_rotate(c, (r[0], r[3]), d["angle"]))
        # the affine map sending chip corners (0,0), (cols-1,0), (0,rows-1) to tl, tr, bl
        ex = (tr - tl) / max(cols - 1, 1)
        ey = (bl - tl) / max(rows - 1, 1)
        cc, rr_ = np.meshgrid(np.arange(cols, dtype=np.float64), np.arange(rows, dtype=np.float64))
        px = tl[0] + ex[0] * cc + ey[0] * rr_
        py = tl[1] + ex[1] * cc + ey[1] * rr_
        src = base if level == -1 else levels[level]
        out[k] = _bilinear(src, px, py)
    return out


def face_chip(img, landmarks, size: int = CHIP_SIZE, padding: float = CHIP_PADDING) -> np.ndarray:
    """The face chip dlib cuts for this face: ``dlib.get_face_chip(img, shape, size, padding)``, [size, size, 3]
    uint8. ``landmarks``: [68, 2] (iBUG 300-W) or [5, 2], or a dlib full_object_detection."""
    return face_chips(img, [landmarks], size, padding)[0]


def chips_to_tensor(chips: np.ndarray, device=None) -> torch.Tensor:
    """[N, H, W, 3] (or [H, W, 3]) uint8 chips -> [N, 3, H, W] float32 0..255, the network's input."""
    a = np.asarray(chips)
    if a.ndim == 3:
        a = a[None]
    return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2))).to(device=device, dtype=torch.float32)


@torch.no_grad()
def describe_chips(chips: np.ndarray, net: Optional[nn.Module] = None, batch_size: int = 32) -> np.ndarray:
    """Descriptors [N, 128] (float64) of uint8 chips [N, 150, 150, 3] (e.g. :func:`face_chips` of many
    photos), in batches; on the network's device."""
    net = net if net is not None else _default_net()
    dev = next(net.parameters()).device
    chips = np.asarray(chips)
    chips = chips[None] if chips.ndim == 3 else chips
    outs = [net(chips_to_tensor(chips[i:i + batch_size], dev)).double().cpu()
            for i in range(0, len(chips), batch_size)]
    return torch.cat(outs).numpy() if outs else np.zeros((0, net.descriptor_dim))


def describe_batch(img, landmarks_list: Sequence, net: Optional[nn.Module] = None, batch_size: int = 16,
                   padding: float = CHIP_PADDING) -> np.ndarray:
    """dlib's ``compute_face_descriptor(img, shapes)`` for all faces of one photo: [N, 128] float64."""
    return describe_chips(face_chips(img, landmarks_list, CHIP_SIZE, padding), net, batch_size)


def describe(img, landmarks, net: Optional[nn.Module] = None, padding: float = CHIP_PADDING) -> np.ndarray:
    """dlib's ``face_recognition_model_v1.compute_face_descriptor(img, shape)``: [128] float64."""
    return describe_batch(img, [landmarks], net, padding=padding)[0]


# ----------------------------------------------------------------------------------------------
# The differentiable path: aligned (FFHQ / pSp) images -> chips
# ----------------------------------------------------------------------------------------------

def _ffhq_template_chip() -> Tuple[float, float, float, float]:
    """dlib's mean face put through FFHQ's alignment rule, and dlib's chip of that face.

    Template units: dlib's mean face lives in the unit square; the chip (padding p) covers
    [-p, 1 + p] in both axes, centred on (0.5, 0.5). Returns (cu, cv, ratio, side): the chip centre in
    normalized FFHQ coordinates (0..1 across the aligned image), the chip side over the FFHQ side, and
    the FFHQ side in template units. (The template is symmetric, so FFHQ's x axis is horizontal.)
    """
    def pt(i):
        return np.array([_MEAN_FACE_X[i - 17], _MEAN_FACE_Y[i - 17]])
    eye_l = np.mean([pt(i) for i in range(36, 42)], 0)
    eye_r = np.mean([pt(i) for i in range(42, 48)], 0)
    mouth = (pt(48) + pt(54)) / 2
    eye_avg = (eye_l + eye_r) / 2
    e2e, e2m = eye_r - eye_l, mouth - eye_avg
    x = e2e - np.array([-e2m[1], e2m[0]])       # FFHQ: eye_to_eye - flipud(eye_to_mouth) * [-1, 1]
    half = max(2.0 * np.hypot(*e2e), 1.8 * np.hypot(*e2m))
    x = x / np.hypot(*x) * half
    y = np.array([-x[1], x[0]])
    q0 = eye_avg + 0.1 * e2m - x - y            # the quad's top-left corner
    side = 2 * half
    cu, cv = (np.array([0.5, 0.5]) - q0) / side
    return float(cu), float(cv), float((1 + 2 * CHIP_PADDING) / side), float(side)


_TPL = _ffhq_template_chip()
FFHQ_CHIP_CENTER = (round(_TPL[0], 4), round(_TPL[1], 4))
FFHQ_CHIP_SIDE = round(_TPL[2], 4)


def aligned_chip_box(resolution: int, alignment: str = "ffhq", size: int = CHIP_SIZE) -> Tuple[float, float, float]:
    """The chip's sampling grid in an aligned image of ``resolution`` px, in pixel index coordinates:
    (x of chip pixel 0, y of chip pixel 0, step between chip pixels).

    Follows dlib exactly for dlib's mean face: chip point ``size/2`` (not ``(size-1)/2``) sits on the
    template centre, and the ``size`` chip pixels span ``size * scale - 1`` image pixels
    (``scale`` = image pixels per chip pixel)."""
    if alignment not in ("ffhq", "psp"):
        raise ValueError(f"alignment must be 'ffhq' or 'psp', got {alignment!r}")
    cu, cv, ratio, _ = _TPL
    R = float(resolution)
    scale = ratio * R / size                    # image px per chip px (similarity scale)
    # centre of the chip = tform(size/2): the template centre, in index coordinates
    cx, cy = cu * R - 0.5, cv * R - 0.5
    step = (size * scale - 1) / (size - 1)
    return cx - step * (size - 1) / 2, cy - step * (size - 1) / 2, step


_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def _pyr_down(x: torch.Tensor) -> torch.Tensor:
    """Differentiable pyramid_down<2>: [1 4 6 4 1]/16 separable, no padding, keep every other pixel."""
    c = x.shape[1]
    k = _BINOMIAL.to(x)
    x = F.conv2d(x, k.view(1, 1, 1, 5).expand(c, 1, 1, 5), stride=(1, 2), groups=c)
    return F.conv2d(x, k.view(1, 1, 5, 1).expand(c, 1, 5, 1), stride=(2, 1), groups=c)


def aligned_to_chip(images: torch.Tensor, alignment: str = "ffhq", size: int = CHIP_SIZE) -> torch.Tensor:
    """FFHQ- (or pSp-) aligned images [N, 3, H, W] in [-1, 1] -> chips [N, 3, size, size] in 0..255.

    A fixed crop (see the module docstring: centre (0.505, 0.607), side 0.709 of the image), with dlib's
    downscaling (2:1 binomial pyramid while the crop is over twice the chip, then bilinear), all in
    torch ops so gradients reach ``images``. Square inputs are expected (H == W)."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images [N, 3, H, W], got {tuple(images.shape)}")
    N, _, H, W = images.shape
    if H != W:
        raise ValueError(f"aligned images are square, got {H}x{W}")
    x = (images.float() + 1.0) * 127.5
    x0, y0, step = aligned_chip_box(W, alignment, size)
    j = torch.arange(size, device=x.device, dtype=torch.float64)
    px, py = x0 + step * j, y0 + step * j
    # dlib's level choice: go down while the crop after one more 2:1 step is still over the chip size;
    # positions follow dlib's pyramid_down<2>::point_down, p -> p / 2 - (1.25, 0.75)
    crop = step * size
    while crop / 2 > size and min(x.shape[2:]) > 8:
        x = _pyr_down(x)
        px, py, crop = px / 2 - 1.25, py / 2 - 0.75, crop / 2
    h, w = x.shape[2:]
    gx = ((px + 0.5) / w * 2 - 1).float()
    gy = ((py + 0.5) / h * 2 - 1).float()
    gyy, gxx = torch.meshgrid(gy, gx, indexing="ij")
    grid = torch.stack([gxx, gyy], -1).unsqueeze(0).expand(N, size, size, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
