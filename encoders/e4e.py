"""e4e (Tov et al. 2021): one base code w0 for every row plus per-row deltas, switched on progressively.

``Encoder4Editing`` has the modules and key names of pSp's ``GradualStyleEncoder`` (checkpoints differ
only in ``opts['encoder_type']``): ``w0 = styles[0](c3)``; row i = ``w0 + styles[i](F_i)`` for
``1 <= i <= progressive_stage`` (F_i = c3 / p2 / p1 as in pSp), the other rows stay w0. A loaded or
finished model is at the last stage (every row has its delta); training raises the stage over time.
"""
from __future__ import annotations

from typing import Optional

import torch

from .psp import PSP, GradualStyleEncoder, style_source


class Encoder4Editing(GradualStyleEncoder):
    """GradualStyleEncoder with e4e's forward; ``progressive_stage`` = number of rows with a delta."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.progressive_stage = self.n_styles - 1

    def forward(self, x, stage: Optional[int] = None):
        stage = self.progressive_stage if stage is None else stage
        feats = self.pyramid(x)
        w0 = self.styles[0](feats[0])                                            # [N, S]
        rows = [w0]
        for i in range(1, self.n_styles):
            rows.append(w0 + self.styles[i](feats[style_source(i)]) if i <= stage else w0)
        return torch.stack(rows, dim=1)                                         # [N, n_styles, S]


class E4E(PSP):
    """e4e inversion: as pSp, with the e4e encoder (``ws = encoder(x) + latent_avg``)."""

    method = "e4e"
