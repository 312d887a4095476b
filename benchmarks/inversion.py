"""Inversion quality and speed of every method on held-out real faces, in one run on one machine.

Rows: W+ projection (300 steps, per loss given), PTI (W pivot + generator tuning), and the encoders
(pSp, e4e, ReStyle at 1 and 5 iterations, the hypernetwork) for which a checkpoint is given or bundled
(for gankit-faces: ``gankit-faces-e4e`` and ``gankit-faces-hyperstyle``). Columns, all against the
target at the generator's resolution, per image then averaged:

* MSE on [-1, 1] images, and PSNR (dB);
* LPIPS-alex when its weights are on disk (else "n/a");
* face-feature distance: :class:`inversion.losses.FaceFeatureDistance` (dlib's face ResNet, LPIPS-like,
  0 = identical, at most 4), the offline stand-in for LPIPS;
* ID similarity: cosine of dlib face descriptors (the offline identity network), 1 = same;
* seconds per image (wall time of the method over all images / N; batches of ``--batch``).

Faces: by default the held-out UTKFace images of the bundled encoders (every 40th file of the sorted
``../shared/datasets/utkface`` list, which their training never saw), centre-cropped and resized to
the generator's resolution with Lanczos. ``--images DIR`` takes any folder instead.

    python benchmarks/inversion.py --n 16                     # gankit-faces, its bundled encoders
    python benchmarks/inversion.py --encoder psp=my_psp.pt --encoder restyle=my_restyle.pt
    python benchmarks/inversion.py --generator ffhq.pkl --encoder e4e=e4e_ffhq_encode.pt --images faces/

Prints a markdown table, writes ``--out``/results.json and a grid (targets, then one row per method).
"""
from __future__ import annotations

import argparse
import json
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
from measure import cpu_seconds, loadavg, sync  # noqa: E402

UTKFACE = ROOT.parent / "shared" / "datasets" / "utkface"
HELDOUT_EVERY = 40   # the bundled encoders were trained on the other files (see encoders/models/MODEL_CARD.md)


def heldout_files(folder: Path, every: int = HELDOUT_EVERY):
    """Every ``every``-th image of the sorted file list (1-based: the every-th, 2*every-th, ...)."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
    return [p for i, p in enumerate(files, 1) if i % every == 0]


def load_faces(paths, res):
    from PIL import Image
    out = []
    for p in paths:
        with Image.open(p) as im:
            im = im.convert("RGB")
            s = min(im.size)
            left, top = (im.width - s) // 2, (im.height - s) // 2
            im = im.crop((left, top, left + s, top + s)).resize((res, res), Image.LANCZOS)
            out.append(np.asarray(im).transpose(2, 0, 1))
    x = torch.from_numpy(np.stack(out)).float()
    return x / 127.5 - 1.0                                                      # [N, 3, res, res]


class Metrics:
    """Per-image MSE, PSNR, LPIPS (when available), face-feature distance and ID similarity."""

    def __init__(self, device):
        from inversion.losses import FaceFeatureDistance, IdentityLoss
        self.ffd = FaceFeatureDistance(alignment="psp").to(device).eval()
        self.idl = IdentityLoss(self.ffd.net, alignment="psp").to(device).eval()
        self.lpips, self.lpips_note = None, ""
        try:
            from inversion.losses import LPIPS
            self.lpips = LPIPS("alex").to(device).eval()
        except (OSError, ImportError, ValueError) as e:
            self.lpips_note = str(e).splitlines()[0]

    @torch.no_grad()
    def __call__(self, y, x):
        y = y.float().clamp(-1, 1)
        mse = ((y - x) ** 2).flatten(1).mean(1)
        out = dict(mse=mse, psnr=10 * torch.log10(4.0 / mse.clamp_min(1e-12)),
                   face_features=self.ffd.per_image(y, x), id_sim=1.0 - self.idl.per_image(y, x))
        if self.lpips is not None:
            out["lpips"] = self.lpips.model(y, x).flatten()
        return {k: v.cpu().numpy() for k, v in out.items()}


def run_method(name, fn, x, batch, device):
    """(images [N, 3, R, R], seconds per image, cpu seconds) of ``fn(batch) -> images``."""
    ys = []
    sync(device)
    t, c = time.perf_counter(), cpu_seconds()
    for i in range(0, x.shape[0], batch):
        ys.append(fn(x[i:i + batch]).detach().cpu())
    sync(device)
    wall, cpu = time.perf_counter() - t, cpu_seconds() - c
    return torch.cat(ys), wall / x.shape[0], cpu / x.shape[0]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--generator", default="gankit-faces")
    ap.add_argument("--images", default=None, help="folder of faces (default: UTKFace held-out split)")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--batch", type=int, default=1, help="images per call of every method (1 = latency)")
    ap.add_argument("--encoder", action="append", default=[], metavar="METHOD=CKPT",
                    help="psp|e4e|restyle|hyperstyle checkpoint (repeatable); bundled ones are added for gankit-faces")
    ap.add_argument("--steps", type=int, default=300, help="W+ projection steps")
    ap.add_argument("--losses", default="mse;mse,face-features",
                    help="';'-separated projection/PTI loss specs, one row each")
    ap.add_argument("--w-warmup", type=float, default=0.0, help="projection w_warmup (0 = NVIDIA's recipe)")
    ap.add_argument("--pti-steps", type=int, default=350)
    ap.add_argument("--pivot-steps", type=int, default=450)
    ap.add_argument("--skip", default="", help="comma-separated rows to skip: projection,pti,psp,e4e,restyle,...")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="benchmark_inversion")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    skip = {s.strip() for s in a.skip.split(",") if s.strip()}

    import encoders
    from encoders.registry import default_for
    from inversion.methods import invert

    G = generators.load(a.generator, device=device).eval()
    R = G.img_resolution
    folder = Path(a.images) if a.images else UTKFACE
    if not folder.is_dir():
        sys.exit(f"no faces: {folder} is not a folder (pass --images DIR)")
    files = heldout_files(folder) if a.images is None else sorted(
        p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
    files = files[:a.n]
    x = load_faces(files, R).to(device)
    metrics = Metrics(device)

    ckpts = dict(default_for(a.generator)) if a.generator == "gankit-faces" else {}
    for spec in a.encoder:
        k, _, v = spec.partition("=")
        if k not in ("psp", "e4e", "restyle", "hyperstyle") or not v:
            sys.exit(f"--encoder wants METHOD=CKPT with METHOD psp|e4e|restyle|hyperstyle, got {spec!r}")
        ckpts[k] = v

    rows = []   # (label, fn)
    from inversion.projection import w_stats
    stats = w_stats(G, 10000) if not {"projection", "pti"} <= skip else None
    for loss in [s for s in a.losses.split(";") if s.strip()]:
        if "projection" not in skip:
            rows.append((f"W+ projection {a.steps} steps ({loss})",
                         lambda xb, loss=loss: invert(xb, method="projection", G=G, space="w+", steps=a.steps,
                                                      loss=loss, stats=stats, w_warmup=a.w_warmup, device=device,
                                                      progress=False).images))
        if "pti" not in skip:
            rows.append((f"PTI {a.pivot_steps}+{a.pti_steps} steps ({loss})",
                         lambda xb, loss=loss: invert(xb, method="pti", G=G, steps=a.pti_steps, loss=loss,
                                                      pivot_kwargs=dict(steps=a.pivot_steps, loss=loss),
                                                      device=device, progress=False).images))
    models = {}
    for m in ("psp", "e4e", "restyle", "hyperstyle"):
        if m in ckpts and m not in skip:
            models[m] = encoders.load(ckpts[m], device=device)
    for m, model in models.items():
        if m == "restyle":
            for it in (1, 5):
                rows.append((f"ReStyle {it} iter ({Path(str(ckpts[m])).stem})",
                             lambda xb, model=model, it=it: invert(xb, method="restyle", encoder=model, iters=it,
                                                                   device=device).images))
        else:
            rows.append((f"{ {'psp': 'pSp', 'e4e': 'e4e', 'hyperstyle': 'hypernetwork'}[m] } "
                         f"({Path(str(ckpts[m])).stem})",
                         lambda xb, model=model, m=m: invert(xb, method=m, encoder=model, device=device).images))

    print(f"# inversion benchmark: {len(files)} faces from {folder} at {R}px, generator {a.generator}, "
          f"device {device}, threads {torch.get_num_threads()}, batch {a.batch}, load {loadavg()}")
    if metrics.lpips is None:
        print(f"# LPIPS n/a: {metrics.lpips_note}")
    results, grid = [], [x.cpu()]
    for label, fn in rows:
        y, spi, cpi = run_method(label, fn, x, a.batch, device)
        if y.shape[-1] != R:
            y = torch.nn.functional.interpolate(y, size=(R, R), mode="area")
        m = metrics(y.to(device), x)
        rec = dict(method=label, sec_per_image=spi, cpu_sec_per_image=cpi,
                   **{k: float(np.mean(v)) for k, v in m.items()}, per_image={k: v.tolist() for k, v in m.items()})
        results.append(rec)
        grid.append(y.cpu())
        print(f"  {label}: {spi:.4f} s/img, MSE {rec['mse']:.4f}, face-features {rec['face_features']:.4f}, "
              f"ID {rec['id_sim']:.3f}", flush=True)

    cols = ["MSE", "PSNR dB", "LPIPS", "face-feature dist.", "ID sim.", "s / image"]
    print("\n| method | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols))
    for r in results:
        lp = f"{r['lpips']:.4f}" if "lpips" in r else "n/a"
        print(f"| {r['method']} | {r['mse']:.4f} | {r['psnr']:.2f} | {lp} | {r['face_features']:.4f} | "
              f"{r['id_sim']:.3f} | {r['sec_per_image']:.4f} |")

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = dict(generator=a.generator, images=[str(p) for p in files], resolution=R, device=str(device),
                threads=torch.get_num_threads(), batch=a.batch, steps=a.steps, losses=a.losses,
                w_warmup=a.w_warmup, encoders={k: str(v) for k, v in ckpts.items()}, load=loadavg())
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(dict(meta=meta, results=results), indent=1))
    os.replace(tmp, out / "results.json")
    from generators.images import grid as make_grid, save_image, to_uint8
    k = min(len(files), 8)
    save_image(make_grid(list(to_uint8(torch.cat([g[:k] for g in grid]))), cols=k), out / "grid.png")
    print(f"\nwrote {out / 'results.json'} and {out / 'grid.png'} (rows: targets, then the methods in table order)")


if __name__ == "__main__":
    main()
