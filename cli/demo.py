"""``gankit demo``: the main job on the bundled face model, end to end, in about a minute on CPU.

1. samples: a grid of faces from ``gankit-faces`` (NVIDIA's seed -> z convention);
2. inversion: W+ projection of a face (``--image PATH``, else a generated face the projector has not
   seen the latent of) with the MSE loss, reporting PSNR;
3. editing: the top SeFa directions applied to the inverted face, written as strips and a GIF.
"""
from __future__ import annotations

import json
from pathlib import Path

import click


def run_demo(out, seeds, image=None, steps=100, model="gankit-faces", echo=click.echo):
    import numpy as np
    import torch

    import generators
    from editing import apply as apply_edit
    from editing.sefa import factorize
    from generators import images as imgs
    from generators.images import parse_range
    from inversion.projection import project

    torch.manual_seed(0)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    G = generators.load(model).eval()
    res = G.img_resolution
    meta = getattr(G, "gankit_meta", {}).get("training", {})

    # 1. samples
    seeds = parse_range(seeds)
    z = torch.from_numpy(np.stack([np.random.RandomState(s).randn(G.z_dim) for s in seeds])).float()
    with torch.no_grad():
        samples = imgs.to_uint8(G(z, noise_mode="const"))
    imgs.save_image(imgs.grid(list(samples), cols=int(np.ceil(np.sqrt(len(seeds))))), out / "samples.png")

    # 2. inversion
    if image is not None:
        from generators.dataset import DatasetError, prepare_image
        from PIL import Image, UnidentifiedImageError
        try:
            with Image.open(image) as im:
                arr = prepare_image(im, res)
        except (UnidentifiedImageError, OSError) as e:
            raise DatasetError(f"{image}: unreadable image ({e})") from None
        target = torch.from_numpy(arr).float().unsqueeze(0) / 127.5 - 1
        source = str(image)
    else:
        zt = torch.from_numpy(np.random.RandomState(10_000).randn(1, G.z_dim)).float()
        with torch.no_grad():
            target = G(zt, noise_mode="const")
        source = "generated face (seed 10000)"
    result = project(G, target, space="w+", steps=steps, loss="mse", optimize_noise=False, seed=0, progress=True)
    recon = result.images.detach().clamp(-1, 1)
    mse = float((recon - target.clamp(-1, 1)).square().mean()) / 4          # on a [0, 1] scale
    psnr = 10 * np.log10(1 / max(mse, 1e-12))
    imgs.save_image(imgs.grid([imgs.to_uint8(target)[0], imgs.to_uint8(recon)[0]], cols=2), out / "inversion.png")

    # 3. editing: SeFa's top directions on the inverted face
    _, dirs = factorize(G)
    ws = result.ws.detach()                                                  # [1, num_ws, w_dim]
    strengths = np.linspace(-4, 4, 7)
    rows, frames = [], []
    for k in range(3):
        sweep = apply_edit(ws, torch.from_numpy(dirs[k]), strengths)           # [S, 1, num_ws, w_dim]
        with torch.no_grad():
            strip = imgs.to_uint8(G.synthesis(sweep[:, 0], noise_mode="const"))
        rows.extend(list(strip))
        if k == 0:
            frames = list(strip) + list(strip[::-1])
    imgs.save_image(imgs.grid(rows, cols=len(strengths)), out / "edits_sefa.png")
    imgs.save_video(frames, out / "edit_sefa0.gif", fps=6)

    summary = {"model": model, "resolution": res, "num_ws": G.num_ws, "training": meta,
               "inversion": {"source": source, "space": "w+", "steps": steps, "loss": "mse", "psnr_db": psnr},
               "edits": {"method": "sefa", "directions": [0, 1, 2], "strengths": strengths.tolist()}}
    (out / "demo.json").write_text(json.dumps(summary, indent=2))
    kimg = meta.get("kimg")
    echo(f"gankit demo: bundled model {model} ({res}x{res}, StyleGAN2-ADA"
         + (f", {kimg:.0f} kimg on UTKFace)" if kimg else ")"))
    echo(f"  {out / 'samples.png'}: {len(seeds)} samples (seeds {seeds[0]}..{seeds[-1]})")
    echo(f"  {out / 'inversion.png'}: target | W+ projection of the {source}, {steps} steps, PSNR {psnr:.1f} dB")
    echo(f"  {out / 'edits_sefa.png'}, {out / 'edit_sefa0.gif'}: SeFa directions 0-2 at strengths -4..4")
    return summary
