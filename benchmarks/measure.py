"""Measurement helpers shared by the benchmarks (the method of ../shared/research/perf_anchors.md)."""
from __future__ import annotations

import resource
import time

import torch


def sync(device):
    """Wait for queued GPU work so wall-clock timings are real."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device, n=2048, reps=3, dtype=torch.float32):
    """Best of ``reps`` square ``torch.mm`` calls, in GFLOP/s (output buffer allocated beforehand)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    best = 0.0
    for _ in range(reps):
        sync(device)
        t = time.perf_counter()
        torch.mm(a, b, out=out)
        sync(device)
        best = max(best, 2 * n ** 3 / (time.perf_counter() - t) / 1e9)
    return best


def cpu_seconds():
    """User + system CPU seconds of this process (CPU utilisation = delta / wall time)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def loadavg():
    try:
        return float(open("/proc/loadavg").read().split()[0])
    except OSError:
        return float("nan")
