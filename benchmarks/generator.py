"""Generator throughput: images/s of a config-f StyleGAN2 (or StyleGAN3-T/R) and the fraction of a matmul peak.

Method (see ../shared/research/perf_anchors.md): one process; for every repetition the fp32
matmul peak (best of 3 ``torch.mm`` 2048^3) is measured before and after the timed call, and
the achieved GFLOP/s is divided by their mean. FLOPs = 2 x MACs of every convolution and
matmul, counted with ``torch.utils.flop_counter.FlopCounterMode`` (transposed convolutions per
input pixel). Timed call: ``G.synthesis(ws, noise_mode="const")`` under ``no_grad`` in eval,
after one warm-up. CPU utilisation (CPU s / wall s) and the load average are printed per
repetition: runs below ~1.8 on 2 cores were contended and should not be compared.

    python benchmarks/generator.py                      # 256 and 1024, batch 1 and 8, CPU
    python benchmarks/generator.py --res 256 --batch 1 8 --reps 3 --device cuda
    python benchmarks/generator.py --family stylegan3-t --res 256 --batch 1 --reps 2

StyleGAN3 uses NVIDIA's train.py settings: cbase 32768, cmax 512, 2 mapping layers; R adds
conv_kernel 1, cbase 65536, cmax 1024 and radial down filters. Its GFLOP/img counts what gankit
executes (the small dense matrix products of the row filters included); "modulated convs" is the
work every implementation must do (NVIDIA's reference executes 508.9 GFLOP/img for T at 256,
462.9 of them modulated convolutions; R: 436.0 and 198.9).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

BENCH = str(Path(__file__).resolve().parent)
# benchmarks/inversion.py shares its name with the ``inversion`` package: keep this folder out of the way
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != BENCH]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.append(BENCH)
from generators import stylegan3  # noqa: E402
from measure import cpu_seconds, loadavg, matmul_peak, sync  # noqa: E402
from generators.stylegan2 import Generator  # noqa: E402






def config_f(res, **synthesis_kwargs):
    return Generator(z_dim=512, w_dim=512, img_resolution=res, img_channels=3,
                     mapping_kwargs=dict(num_layers=8),
                     synthesis_kwargs=dict(channel_base=32768, channel_max=512, conv_clamp=256,
                                           architecture="skip", **synthesis_kwargs))


def sg3(res, radial=False):
    """StyleGAN3-T (or -R) with the settings of NVIDIA's train.py."""
    kw = dict(channel_base=32768, channel_max=512, magnitude_ema_beta=0.5 ** (32 / 20e3))
    if radial:
        kw.update(conv_kernel=1, channel_base=65536, channel_max=1024, use_radial_filters=True)
    return stylegan3.Generator(z_dim=512, w_dim=512, img_resolution=res, img_channels=3,
                               mapping_kwargs=dict(num_layers=2), synthesis_kwargs=kw)


FAMILIES = {"stylegan2": config_f, "stylegan3-t": sg3, "stylegan3-r": lambda res: sg3(res, radial=True)}


def modconv_gflop(G):
    """GFLOP per image of the modulated convolutions (the work every implementation does)."""
    syn = G.synthesis
    if not hasattr(syn, "layer_names"):
        return None
    total = 0
    for name in syn.layer_names:
        L = getattr(syn, name)
        k = L.conv_kernel
        total += 2 * L.out_channels * L.in_channels * k * k * (L.in_size[0] + k - 1) * (L.in_size[1] + k - 1)
    return total / 1e9


def count_gflop(G, ws, **kw):
    """(GFLOP counted over every convolution and matrix product, GFLOP of the modulated convs or None)."""
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        G.synthesis(ws, noise_mode="const", **kw)
    return fc.get_total_flops() / 1e9, modconv_gflop(G)






def bench(res, batch, reps, device, fused_modconv=False, family="stylegan2"):
    torch.manual_seed(0)
    G = FAMILIES[family](res).eval().requires_grad_(False).to(device)
    z = torch.randn(batch, G.z_dim, device=device)
    with torch.no_grad():
        ws = G.mapping(z)
    gflop_img, conv_gflop = count_gflop(G, ws[:1], fused_modconv=fused_modconv)
    with torch.no_grad():
        G.synthesis(ws[:1], noise_mode="const", fused_modconv=fused_modconv)  # warm-up at batch 1
        G.synthesis(ws, noise_mode="const", fused_modconv=fused_modconv)
    rows = []
    for _ in range(reps):
        p0 = matmul_peak(device)
        l0, c0 = loadavg(), cpu_seconds()
        sync(device)
        t = time.perf_counter()
        with torch.no_grad():
            G.synthesis(ws, noise_mode="const", fused_modconv=fused_modconv)
        sync(device)
        wall = time.perf_counter() - t
        util = (cpu_seconds() - c0) / wall
        p1 = matmul_peak(device)
        gflops = gflop_img * batch / wall
        rows.append(dict(img_s=batch / wall, gflops=gflops, peak=(p0 + p1) / 2, frac=gflops / ((p0 + p1) / 2),
                         util=util, load=(l0, loadavg())))
    return gflop_img, conv_gflop, rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--res", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--fused-modconv", action="store_true", help="grouped-conv path instead of activation scaling")
    ap.add_argument("--family", choices=sorted(FAMILIES), default="stylegan2",
                    help="stylegan2 = config-f (default); stylegan3-t / -r with NVIDIA's train.py settings")
    args = ap.parse_args()
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, "
          f"cpus {os.cpu_count()}" + (f", {torch.cuda.get_device_name()}" if device.type == "cuda" else ""))
    print(f"matmul peak (2048^3 fp32, best of 3): {matmul_peak(device):.1f} GFLOP/s")
    print(f"{args.family}: {'res':>5} {'batch':>5} {'GFLOP/img':>9} {'img/s min/med/max':>22} {'GFLOP/s med':>11} "
          f"{'peak':>11} {'fraction min/med/max':>21} {'cpu util':>9} {'load':>9}")
    for res in args.res:
        for batch in args.batch:
            gflop_img, conv_gflop, rows = bench(res, batch, args.reps, device, args.fused_modconv, args.family)
            ims = sorted(r["img_s"] for r in rows)
            fr = sorted(r["frac"] for r in rows)
            peaks = [r["peak"] for r in rows]
            print(f"{'':>{len(args.family) + 1}} {res:>5} {batch:>5} {gflop_img:>9.1f} "
                  f"{ims[0]:>6.3f}/{statistics.median(ims):>6.3f}/{ims[-1]:>6.3f}     "
                  f"{statistics.median(r['gflops'] for r in rows):>11.1f} "
                  f"{min(peaks):>5.0f}-{max(peaks):<5.0f} "
                  f"{fr[0]:>6.2f}/{statistics.median(fr):>5.2f}/{fr[-1]:>5.2f}     "
                  f"{min(r['util'] for r in rows):>4.2f}-{max(r['util'] for r in rows):<4.2f}"
                  f"{min(r['load'][0] for r in rows):>5.1f}-{max(r['load'][1] for r in rows):<4.1f}",
                  flush=True)
            if conv_gflop is not None:
                cf = sorted(conv_gflop * r["img_s"] / r["peak"] for r in rows)
                print(f"{'':>{len(args.family) + 1}}   modulated convs {conv_gflop:.1f} GFLOP/img; fraction of peak "
                      f"counting only those: {cf[0]:.2f}/{statistics.median(cf):.2f}/{cf[-1]:.2f}", flush=True)


if __name__ == "__main__":
    main()
