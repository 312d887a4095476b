"""``gankit metrics``: dlib detection rate, FD-dlib, FID and KID of a generator against a folder of real faces.

Registered in ``cli/main.py`` by ``main.add_command(make_metrics_command(run_safely, CLIError))``.
"""
from __future__ import annotations

import json
from pathlib import Path

import click

METRICS = ("detection", "fd-dlib", "fid", "kid")


def list_images(folder) -> list:
    """Every file under ``folder`` (recursive, sorted) whose suffix Pillow can read."""
    from PIL import Image

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    exts = {e.lower() for e in Image.registered_extensions()}
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in exts)


def read_images(paths, desc="read") -> list:
    """uint8 RGB [H, W, 3] arrays (EXIF orientation applied); an unreadable file is a one-line error."""
    import numpy as np
    from PIL import Image, ImageOps, UnidentifiedImageError
    from tqdm import tqdm

    out = []
    for p in tqdm(paths, desc=desc, unit="img", disable=len(paths) < 200):
        try:
            with Image.open(p) as im:
                out.append(np.asarray(ImageOps.exif_transpose(im).convert("RGB")))
        except (UnidentifiedImageError, OSError) as e:
            raise ValueError(f"{p}: unreadable image ({str(e).splitlines()[0] if str(e) else type(e).__name__})") \
                from None
    return out


def sample_real(real, real2, num, seed):
    """Paths of ``num`` real images (a seeded random sample, so that sorted file names do not bias the set)
    and, for ``real2``, ``num`` more: from the same shuffled list when it is the same folder (disjoint)."""
    import numpy as np

    files = list_images(real)
    perm = [files[i] for i in np.random.RandomState(seed).permutation(len(files))]
    first = perm[:num]
    second = None
    if real2 is not None:
        if Path(real2).resolve() == Path(real).resolve():
            second = perm[num:2 * num]
        else:
            files2 = list_images(real2)
            second = [files2[i] for i in np.random.RandomState(seed + 1).permutation(len(files2))][:num]
    return first, second


def generate_images(G, num, trunc, seed, batch, device, noise_mode):
    """``num`` uint8 images from seeds ``seed .. seed + num - 1`` (NVIDIA's seed -> z convention)."""
    import numpy as np
    import torch
    from tqdm import tqdm
    from generators.images import to_uint8

    torch.manual_seed(seed)  # noise_mode="random" draws from torch's generator
    seeds = list(range(seed, seed + num))
    out = []
    for i in tqdm(range(0, num, batch), desc="generate", unit="batch", disable=num <= batch):
        chunk = seeds[i:i + batch]
        z = torch.from_numpy(np.stack([np.random.RandomState(s).randn(G.z_dim) for s in chunk])).float().to(device)
        c = torch.zeros([len(chunk), G.c_dim], device=device)
        with torch.no_grad():
            img = G(z, c, truncation_psi=trunc, noise_mode=noise_mode)
        if img.shape[1] != 3:
            raise ValueError(f"the generator makes {img.shape[1]}-channel images; face metrics need RGB")
        out += list(to_uint8(img))
    return out


def _fmt(v, nd=4):
    return "-" if v is None else f"{v:.{nd}f}"


def make_metrics_command(run_safely, CLIError):
    @click.command("metrics")
    @click.option("--generator", "-g", "source", default=None, help="checkpoint path or registry name")
    @click.option("--real", required=True, type=click.Path(exists=True, file_okay=False),
                  help="folder of real images (recursive, any Pillow format)")
    @click.option("--real2", default=None, type=click.Path(exists=True, file_okay=False),
                  help="a second real folder for a real-vs-real baseline (the same folder: a disjoint sample)")
    @click.option("--num", default=1000, show_default=True, type=click.IntRange(min=2),
                  help="generated images, and real images per folder")
    @click.option("--metrics", "which", default="detection,fd-dlib", show_default=True,
                  help="comma list of " + ", ".join(METRICS))
    @click.option("--trunc", default=1.0, show_default=True, type=float, help="truncation psi")
    @click.option("--seed", default=0, show_default=True, type=int, help="first seed; also shuffles the real files")
    @click.option("--batch", default=32, show_default=True, type=click.IntRange(min=1))
    @click.option("--noise-mode", default="random", show_default=True, type=click.Choice(["random", "const", "none"]))
    @click.option("--network", default="G_ema", show_default=True, type=click.Choice(["G_ema", "G"]))
    @click.option("--device", default="cpu", show_default=True)
    @click.option("--detect-size", default=256, show_default=True, type=click.IntRange(min=32),
                  help="smaller images are upscaled (LANCZOS) to this side for dlib's HOG detector")
    @click.option("--upsample", default=0, show_default=True, type=click.IntRange(min=0),
                  help="dlib upsample_num_times on top of --detect-size")
    @click.option("--kid-subsets", default=100, show_default=True, type=click.IntRange(min=1))
    @click.option("--kid-subset-size", default=1000, show_default=True, type=click.IntRange(min=2))
    @click.option("--json", "json_out", default=None, type=click.Path(dir_okay=False), help="write the results here")
    @run_safely
    def metrics(source, real, real2, num, which, trunc, seed, batch, noise_mode, network, device, detect_size,
                upsample, kid_subsets, kid_subset_size, json_out):
        """Face-quality metrics of a generator against real faces: dlib detection rate (fake and real),
        FD-dlib (Fréchet distance of dlib descriptors of detected faces), FID and KID (Inception, cached
        weights only). One line on stdout; --json for everything."""
        from inversion import quality as Q
        from inversion.metrics import frechet_distance, kernel_inception_distance

        chosen = [m.strip() for m in which.split(",") if m.strip()]
        bad = [m for m in chosen if m not in METRICS]
        if bad or not chosen:
            raise CLIError(f"--metrics: unknown {', '.join(bad) or '(none given)'}; choose from {', '.join(METRICS)}")
        if source is None and real2 is None:
            raise CLIError("give --generator (fake vs real) and/or --real2 (real vs real)")
        inception = None
        if "fid" in chosen or "kid" in chosen:
            inception = Q.load_inception(device=device)     # fails in one line before any work
        first, second = sample_real(real, real2, num, seed)
        if len(first) < 2:
            raise CLIError(f"{real}: found {len(first)} readable image file(s); need at least 2")
        if second is not None and len(second) < 2:
            raise CLIError(f"{real2}: not enough images for a second sample ({len(second)} left"
                           + (" after the first --num" if Path(real2).resolve() == Path(real).resolve() else "") + ")")
        sets = {"real": read_images(first, "read real")}
        if second is not None:
            sets["real2"] = read_images(second, "read real2")
        if source is not None:
            import generators
            G = generators.load(source, device=device, network=network)
            if G.c_dim:
                raise CLIError(f"this generator is conditional (c_dim={G.c_dim}); metrics take unconditional ones")
            sets["fake"] = generate_images(G, num, trunc, seed, batch, device, noise_mode)

        res = {"metrics": chosen, "generator": source, "real": str(real), "real2": real2,
               "num": {k: len(v) for k, v in sets.items()},
               "settings": {"trunc": trunc, "seed": seed, "noise_mode": noise_mode, "network": network,
                            "detect_size": detect_size, "upsample": upsample}}
        others = [k for k in ("fake", "real2") if k in sets]
        if "detection" in chosen or "fd-dlib" in chosen:
            want_desc = "fd-dlib" in chosen
            scans = {k: Q.face_scan(v, detect_size, upsample, descriptors=want_desc, batch_size=batch,
                                    progress=f"dlib {k}") for k, v in sets.items()}
            res["detection"] = {k: s.summary() for k, s in scans.items()}
            if want_desc:
                res["fd_dlib"] = {}
                for k in others:
                    a, b = scans[k].descriptors, scans["real"].descriptors
                    # too few faces for a Gaussian fit: no value (null), the detection rates say why
                    res["fd_dlib"][f"{k}_vs_real"] = frechet_distance(a, b) if min(len(a), len(b)) >= 2 else None
                res["fd_dlib"]["faces"] = {k: int(len(s.descriptors)) for k, s in scans.items()}
        if inception is not None:
            feats = {k: Q.inception_features(v, inception, batch, progress=f"inception {k}") for k, v in sets.items()}
            res["inception"] = {"weights": inception.source, "flavour": inception.flavour}
            for k in others:
                if "fid" in chosen:
                    res.setdefault("fid", {})[f"{k}_vs_real"] = frechet_distance(feats[k], feats["real"])
                if "kid" in chosen:
                    mean, std = kernel_inception_distance(feats[k], feats["real"], kid_subsets, kid_subset_size,
                                                          seed=seed)
                    res.setdefault("kid", {})[f"{k}_vs_real"] = {"mean": mean, "std": std}

        cols = []
        if "detection" in res:
            cols.append("detection " + " ".join(f"{k} {res['detection'][k]['rate']:.3f}"
                                                for k in ("fake", "real", "real2") if k in res["detection"]))
        for key, name in (("fd_dlib", "fd-dlib"), ("fid", "fid")):
            if key in res:
                cols.append(f"{name} " + " ".join(f"{k} {_fmt(res[key].get(f'{k}_vs_real'))}" for k in others))
        if "kid" in res:
            cols.append("kid " + " ".join(f"{k} {_fmt(res['kid'][f'{k}_vs_real']['mean'], 5)}" for k in others))
        click.echo(" | ".join(cols) + "  (" + ", ".join(f"{k} {n}" for k, n in res["num"].items()) + ")")
        if json_out:
            from generators.formats.atomic import atomic_path
            with atomic_path(json_out) as tmp:
                Path(tmp).write_text(json.dumps(res, indent=2) + "\n")

    return metrics
