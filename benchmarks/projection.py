"""Images per second of batched projection (N = 1, 4, 16 images in one optimization) against a Python
loop of single-image projections, same steps, same machine; prints the ratio.

The generator is a checkpoint (``--generator``; default the 32 px NVIDIA fixture when ../shared is
present, else a seeded random 64 px StyleGAN2). Targets are images of that generator. Both sides use
the same recipe (NVIDIA's: noise optimization, w jitter, the lr schedule) with ``--loss`` (default mse,
so no download is needed) and share one w_avg/w_std computation, which is not timed. Each figure is
the best of ``--reps`` runs; the load average and this process's CPU use are printed because shared
machines distort timings (see ../shared/research/perf_anchors.md).

    python benchmarks/projection.py                           # CPU
    python benchmarks/projection.py --device cuda --steps 100 --sizes 1,4,16,64
    python benchmarks/projection.py --generator ffhq.pkl --loss lpips --device cuda
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
BENCH = str(Path(__file__).resolve().parent)
# benchmarks/inversion.py shares its name with the ``inversion`` package: keep this folder out of the way
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != BENCH]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.append(BENCH)
import generators  # noqa: E402
from inversion.projection import project, w_stats  # noqa: E402
from measure import cpu_seconds, loadavg, sync  # noqa: E402

FIXTURE = ROOT.parent / "shared" / "fixtures" / "nvidia" / "sg2ada_skip_32.pkl"


def load_generator(source, device):
    if source:
        return generators.load(source, device=device)
    if FIXTURE.exists():
        return generators.load(FIXTURE, device=device)
    torch.manual_seed(0)
    return generators.Generator(z_dim=64, w_dim=64, img_resolution=64, img_channels=3,
                                mapping_kwargs=dict(num_layers=4),
                                synthesis_kwargs=dict(channel_base=2048, channel_max=128)).eval().to(device)


def timed(fn, device, reps):
    best = float("inf")
    for _ in range(reps):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generator", default=None)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--sizes", default="1,4,16")
    ap.add_argument("--space", default="w+", choices=["w", "w+", "z"])
    ap.add_argument("--loss", default="mse")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    G = load_generator(args.generator, dev)
    sizes = [int(s) for s in args.sizes.split(",")]
    nmax = max(sizes)
    z = torch.from_numpy(np.random.RandomState(0).randn(nmax, G.z_dim)).float().to(dev)
    c = torch.zeros([nmax, G.c_dim], device=dev)
    if G.c_dim:
        c[:, 0] = 1
    with torch.no_grad():
        targets = G(z, c if G.c_dim else None)
    stats = w_stats(G, 10000, device=dev)
    from inversion.losses import ReconstructionLoss
    loss = ReconstructionLoss(args.loss, device=dev)
    kw = dict(space=args.space, steps=args.steps, loss=loss, stats=stats, progress=False, device=dev)

    def run(i0, n):
        cc = c[i0:i0 + n] if G.c_dim else None
        return project(G, targets[i0:i0 + n], seed=i0, c=cc, **kw)

    run(0, 1)  # warm-up
    print(f"# projection benchmark: {type(G).__module__} {G.img_resolution}px num_ws={G.num_ws} w_dim={G.w_dim}, "
          f"{args.steps} steps, space {args.space}, loss {args.loss}, device {dev}, "
          f"threads {torch.get_num_threads()}, load {loadavg():.2f}")
    print(f"{'N':>4} {'batched img/s':>14} {'loop img/s':>11} {'ratio':>7} {'CPU use':>8}")
    for n in sizes:
        c0, w0 = cpu_seconds(), time.perf_counter()
        t_batch = timed(lambda: run(0, n), dev, args.reps)
        t_loop = timed(lambda: [run(i, 1) for i in range(n)], dev, args.reps)
        use = (cpu_seconds() - c0) / (time.perf_counter() - w0)
        print(f"{n:>4} {n / t_batch:>14.3f} {n / t_loop:>11.3f} {t_loop / t_batch:>6.2f}x {use:>8.2f}")


if __name__ == "__main__":
    main()
