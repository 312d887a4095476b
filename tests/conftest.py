"""Shared test helpers: where ../shared is, and the fixture tolerance checks."""
from pathlib import Path

import numpy as np
import pytest
import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FIXTURES = SHARED / "fixtures"

torch.set_num_threads(min(2, torch.get_num_threads()))


def need_shared(*parts) -> Path:
    """Path under ../shared/fixtures, or skip the test (with the reason) when it is absent."""
    p = FIXTURES.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared material not available: {p}")
    return p


def fixture_files(subdir, pattern):
    d = FIXTURES / subdir
    return sorted(d.glob(pattern)) if d.is_dir() else []


def assert_close(ours, ref, atol, what=""):
    """max |ours - ref| <= atol * max(1, max |ref|) (the fixture READMEs' rule)."""
    ours = ours.detach().cpu().numpy() if isinstance(ours, torch.Tensor) else np.asarray(ours)
    ref = np.asarray(ref)
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} != {ref.shape}"
    scale = max(1.0, float(np.abs(ref).max()) if ref.size else 1.0)
    err = float(np.abs(ours.astype(np.float64) - ref.astype(np.float64)).max()) if ref.size else 0.0
    assert err <= atol * scale, f"{what}: max abs diff {err:.3g} > {atol * scale:.3g}"
    return err
