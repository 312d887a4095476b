"""gankit editing: latent directions and edits for StyleGAN1/2/3.

* ``editing.apply(ws, direction, strength, layers=None)`` -- add a direction to W+ codes;
  ``editing.mix(ws_a, ws_b, layers)`` -- style mixing by layer range.
* ``editing.interfacegan`` -- ``train_boundary``, ``project_boundary``, ``linear_interpolate``.
* ``editing.ganspace`` -- ``fit`` (PCA of W), ``edit``, GANSpace ``.npz`` I/O.
* ``editing.sefa`` -- ``factorize`` (closed-form directions from style-affine weights).
* ``editing.blend`` -- ``blend`` (model interpolation / resolution-dependent layer swapping).
* ``editing.directions`` -- direction files (gankit ``.npz``; InterFaceGAN, GANSpace, rosinality, e4e).

Submodules are imported lazily (numpy only at import; torch/sklearn when used).
"""
import importlib

from .apply import apply, mix, parse_layers

__all__ = ["apply", "mix", "parse_layers", "interfacegan", "ganspace", "sefa", "blend", "directions"]

_SUBMODULES = {"interfacegan", "ganspace", "sefa", "blend", "directions"}


def __getattr__(name):
    if name in _SUBMODULES:
        mod = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = mod
        return mod
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
