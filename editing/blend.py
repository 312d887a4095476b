"""Model blending: whole-model weight interpolation and resolution-dependent layer swapping.

``blend(G_base, G_other, switch_res=None, width=None, alpha=None, level=0, rule="intended")``
returns a copy of ``G_base`` whose synthesis parameters are ``y * other + (1 - y) * base``:

* ``switch_res`` given (layer swapping, Pinkney & Adler 2020, arXiv 2010.05334): each synthesis
  module gets a position ``p = 2 log2(res / 4) + level`` (level 0 = ``b{r}.const``/``conv0``/``skip``,
  level 1 = ``conv1``/``torgb``), ``x = p - p(switch_res, level)``.
  With a truthy ``width``: ``y = 1 / (1 + exp(-x / width))`` (0.5 at the switch). Without (or 0):
  a hard switch; with ``rule="intended"`` (default) the named resolution/level is the **first**
  module taken from ``G_other`` (``x >= 0``). ``alpha`` (if also given) scales y.
* ``switch_res`` None: every synthesis parameter uses ``y = alpha`` (and the mapping network too,
  unless ``blend_mapping=False``).

Never blended (always from ``G_base``): buffers (``w_avg``, noise constants, filters) and, for
layer swapping, the mapping network. Compatibility rules (``rule``):
``"pinkney"`` = justinpinkney/stylegan2 ``blend_models.py`` (hard switch only when ``x > 1``, and the
4x4 ``Conv`` = ``b4.conv1`` is never blended), ``"port"`` = the t27/stylegan2-ada-pytorch port
(``x > 1``, ``b4.conv1`` blended), ``"step"`` = ``x > 0`` (the width -> 0 limit of the logistic).
Works for StyleGAN2 and StyleGAN1 layouts (``synthesis.b{res}.*``); StyleGAN3 only with ``alpha``.
The result is a normal generator: save it with ``generators.save``.
"""
from __future__ import annotations

import copy
import math
import re


__all__ = ["blend", "module_position", "layer_weight", "param_weights", "RULES"]

RULES = ("intended", "pinkney", "port", "step")
_LEVEL = {"const": 0, "conv0": 0, "skip": 0, "conv1": 1, "torgb": 1}
_NAME = re.compile(r"^(?:synthesis\.)?b(\d+)\.(const|conv0|conv1|torgb|skip)(?:\.|$)")


def module_position(name):
    """``(res, level, pos)`` of a synthesis parameter/module name like ``synthesis.b32.conv1.weight``,
    or None when it is not inside a resolution block."""
    m = _NAME.match(name)
    if m is None:
        return None
    res, sub = int(m.group(1)), m.group(2)
    level = _LEVEL[sub]
    return res, level, 2 * int(round(math.log2(res / 4))) + level


def layer_weight(res, level, switch_res, switch_level=0, width=None, rule="intended", sub=None):
    """y (weight of ``G_other``) for the module at ``(res, level)``; ``sub`` is the module kind
    (``conv1`` etc.), only needed for ``rule="pinkney"``'s 4x4-conv omission."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    if rule == "pinkney" and res == 4 and sub == "conv1":
        return 0.0
    p = 2 * math.log2(res / 4) + level
    x = p - (2 * math.log2(switch_res / 4) + switch_level)
    if width:
        return float(1.0 / (1.0 + math.exp(-x / float(width))))
    if rule == "intended":
        return 1.0 if x >= 0 else 0.0
    if rule == "step":
        return 1.0 if x > 0 else 0.0
    return 1.0 if x > 1 else 0.0


def param_weights(names, switch_res=None, width=None, alpha=None, level=0, rule="intended",
                  blend_mapping=None):
    """Per-parameter y for the given parameter names (see :func:`blend`); names that stay with the
    base model get 0."""
    if switch_res is None and alpha is None:
        raise ValueError("give switch_res (layer swapping) and/or alpha (weight interpolation)")
    if switch_res is not None:
        r = int(switch_res)
        if r < 4 or 2 ** int(round(math.log2(r))) != r:
            raise ValueError(f"switch_res must be a power of two >= 4, got {switch_res}")
        if level not in (0, 1):
            raise ValueError("level must be 0 (const/conv0) or 1 (conv1/toRGB)")
    if blend_mapping is None:
        blend_mapping = switch_res is None
    out = {}
    for n in names:
        y = 0.0
        if n.startswith("synthesis."):
            if switch_res is None:
                y = float(alpha)
            else:
                pos = module_position(n)
                if pos is None:
                    raise ValueError(f"cannot place {n!r} at a resolution (layer swapping needs StyleGAN1/2 blocks)")
                sub = _NAME.match(n).group(2)
                y = layer_weight(pos[0], pos[1], switch_res, level, width, rule, sub)
                if alpha is not None:
                    y *= float(alpha)
        elif n.startswith("mapping.") and blend_mapping:
            y = float(alpha if alpha is not None else 0.0) if switch_res is None else 0.0
        out[n] = y
    return out


def blend(G_base, G_other, switch_res=None, width=None, alpha=None, level=0, rule="intended", blend_mapping=None):
    """Blend two compatible generators (same architecture); returns a new generator (copy of ``G_base``)."""
    import torch
    pb = dict(G_base.named_parameters())
    po = dict(G_other.named_parameters())
    if set(pb) != set(po):
        diff = sorted(set(pb) ^ set(po))[:5]
        raise ValueError(f"generators are not compatible (parameter names differ, e.g. {diff})")
    for n in pb:
        if pb[n].shape != po[n].shape:
            raise ValueError(f"{n}: shape {tuple(pb[n].shape)} vs {tuple(po[n].shape)}")
    ys = param_weights(list(pb), switch_res, width, alpha, level, rule, blend_mapping)
    G = copy.deepcopy(G_base)
    with torch.no_grad():
        for n, p in G.named_parameters():
            y = ys[n]
            if y != 0.0:
                p.copy_((1.0 - y) * pb[n].detach() + y * po[n].detach().to(p.device, p.dtype))
    for attr in ("_w2_cache", "_w2_key"):          # drop derived caches keyed on the weights
        for m in G.modules():
            if hasattr(m, attr):
                setattr(m, attr, None)
    G.blend_info = dict(switch_res=switch_res, width=width, alpha=alpha, level=level, rule=rule,
                        weights={n: y for n, y in ys.items() if y != 0.0})
    return G
