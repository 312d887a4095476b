"""Face descriptors per second: gankit's port of dlib's face ResNet vs dlib's own compute_face_descriptor.

Both sides get the same 150x150 chips (dlib's chips of the fixture faces when ../shared is present,
else random RGB chips: the cost does not depend on the content). dlib: a Python loop of
``face_recognition_model_v1.compute_face_descriptor(chip)`` (and, for reference, its list-of-chips
batch call). Port: ``net(chips)`` under ``no_grad`` at batch 1 and 32 on the CPU (and the GPU when one
is there), plus forward + backward at batch 32 (what IdentityLoss costs in training). Each figure is
the best of ``--reps`` timed runs after a warm-up; the load average and this process's CPU use
(CPU s / wall s) are printed because shared machines distort every number (see
``../shared/research/perf_anchors.md``).

    python benchmarks/identity.py                     # CPU with 1 thread and torch's default
    python benchmarks/identity.py --threads 2 --reps 5
    python benchmarks/identity.py --device cuda
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
from inversion import identity  # noqa: E402
BENCH = str(Path(__file__).resolve().parent)
# benchmarks/inversion.py shares its name with the ``inversion`` package: keep this folder out of the way
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != BENCH]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.append(BENCH)
from measure import cpu_seconds, loadavg, sync  # noqa: E402

SHARED = ROOT.parent / "shared"








def timed(fn, n_items, reps, device=torch.device("cpu")):
    """(best items/s, CPU utilisation of that run, load before)."""
    fn()
    best = (0.0, 0.0, 0.0)
    for _ in range(reps):
        load, c0 = loadavg(), cpu_seconds()
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        wall = time.perf_counter() - t
        rate = n_items / wall
        if rate > best[0]:
            best = (rate, (cpu_seconds() - c0) / wall, load)
    return best


def fixture_chips(n):
    """Chips of the fixture faces (dlib's HOG detector + 68 points), or None."""
    raw = SHARED / "fixtures" / "faces" / "raw"
    try:
        import dlib
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import face_recognition_models as frm
        from PIL import Image, ImageOps
    except ImportError:
        return None
    if not raw.is_dir():
        return None
    det = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(frm.pose_predictor_model_location())
    chips = []
    for p in sorted(raw.iterdir()):
        img = np.asarray(ImageOps.exif_transpose(Image.open(p)).convert("RGB"))
        for d in det(img, 0):
            lm = np.array([(q.x, q.y) for q in sp(img, d).parts()])
            chips.append(identity.face_chip(img, lm))
    if not chips:
        return None
    return np.stack([chips[i % len(chips)] for i in range(n)])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", nargs="+", default=["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, nargs="+", default=None,
                    help="torch CPU thread counts to time (default: 1 and torch's default). dlib runs on one "
                         "thread; with two threads on a 2-core machine that has another busy job, every op waits "
                         "for the descheduled thread (measured here: 1.7 vs 94 desc/s at batch 1)")
    ap.add_argument("--dlib-faces", type=int, default=32, help="chips in dlib's timed loop")
    args = ap.parse_args()
    threads = args.threads or sorted({1, torch.get_num_threads()})
    n = max(max(args.batch), args.dlib_faces)
    chips = fixture_chips(n)
    source = "fixture faces"
    if chips is None:
        chips = np.random.default_rng(0).integers(0, 256, (n, 150, 150, 3), dtype=np.uint8)
        source = "random chips"
    print(f"torch {torch.__version__}, cpus {os.cpu_count()}, chips: {source}, "
          f"model {identity.default_model_path().name}")

    dlib_rate = None
    try:
        import dlib
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import face_recognition_models as frm
        fr = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
        k = args.dlib_faces
        loop = [np.ascontiguousarray(c) for c in chips[:k]]
        dlib_rate, util, load = timed(lambda: [fr.compute_face_descriptor(c) for c in loop], k, args.reps)
        print(f"dlib {dlib.__version__} compute_face_descriptor(chip) loop: {dlib_rate:8.1f} desc/s  "
              f"(cpu util {util:.2f}, load {load:.1f})")
        brate, util, load = timed(lambda: fr.compute_face_descriptor(loop), k, args.reps)
        print(f"dlib compute_face_descriptor([chips]) batch call: {brate:8.1f} desc/s  "
              f"(cpu util {util:.2f}, load {load:.1f})")
    except ImportError:
        print("dlib not installed: no reference timing")

    for dev_name in args.device:
        device = torch.device(dev_name)
        if device.type == "cuda" and not torch.cuda.is_available():
            print("cuda: not available")
            continue
        net = identity.load(device=device)
        x_all = identity.chips_to_tensor(chips, device)
        for nt in (threads if device.type == "cpu" else [torch.get_num_threads()]):
            torch.set_num_threads(nt)
            label = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu {nt} thr"
            for b in args.batch:
                x = x_all[:b]

                def fwd():
                    with torch.no_grad():
                        net(x)
                rate, util, load = timed(fwd, b, args.reps, device)
                ratio = f"  = {rate / dlib_rate:5.2f}x dlib's loop" if dlib_rate else ""
                print(f"port {label:>12} batch {b:>3} forward:          {rate:8.1f} desc/s{ratio}  "
                      f"(cpu util {util:.2f}, load {load:.1f})", flush=True)
            b = max(args.batch)
            x = x_all[:b].clone().requires_grad_(True)

            def fwd_bwd():
                net(x).sum().backward()
            rate, util, load = timed(fwd_bwd, b, args.reps, device)
            print(f"port {label:>12} batch {b:>3} forward+backward: {rate:8.1f} img/s   "
                  f"(cpu util {util:.2f}, load {load:.1f})", flush=True)


if __name__ == "__main__":
    main()
