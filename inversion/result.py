"""What every inversion method returns: :class:`InversionResult`.

Projection, PTI and the encoders all hand back the same small record so that callers (CLI, latent
files, editing) do not care how the latents were found.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np
import torch

__all__ = ["InversionResult"]


@dataclass
class InversionResult:
    """Latents and reconstructions of N images.

    ws:      [N, num_ws, w_dim] float32 (W results are repeated over the num_ws slots, as NVIDIA does)
    images:  [N, C, H, W] reconstructions in [-1, 1] (rendered with ``noise`` when it is given)
    losses:  per-image final values, name -> [N] float array (e.g. "total", "mse", "lpips", "psnr")
    history: per-step values, name -> [steps, N] float array (may be empty)
    noise:   optional per-image noise maps, one [N, 1, r, r] tensor per noise input of the synthesis
             network (``G.synthesis.noise_shapes()`` order); None for StyleGAN3 / when not optimized
    offsets: optional per-layer weight offsets (hypernetwork methods)
    method:  "projection", "pti", "psp", ...
    space:   "w", "w+", "z"
    """

    ws: torch.Tensor
    images: torch.Tensor
    losses: Dict[str, np.ndarray] = field(default_factory=dict)
    history: Dict[str, np.ndarray] = field(default_factory=dict)
    noise: Optional[List[torch.Tensor]] = None
    offsets: Optional[Dict[str, torch.Tensor]] = None
    method: str = ""
    space: str = "w+"

    def __len__(self) -> int:
        return int(self.ws.shape[0])

    def select(self, idx) -> "InversionResult":
        """The results of a subset of the images (``idx``: int, slice or index list)."""
        if isinstance(idx, int):
            idx = [idx]
        def pick(t):
            return t[idx]

        return InversionResult(
            ws=pick(self.ws), images=pick(self.images),
            losses={k: np.asarray(v)[idx] for k, v in self.losses.items()},
            history={k: np.asarray(v)[:, idx] for k, v in self.history.items()},
            noise=[pick(n) if n.shape[0] == len(self) else n for n in self.noise] if self.noise is not None else None,
            offsets=self.offsets, method=self.method, space=self.space)
