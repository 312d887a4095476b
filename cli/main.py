"""``gankit`` command line: thin wrappers over the Python API.

Every error a user can cause (missing or unreadable file, wrong kind of checkpoint, unsafe
pickle, offline download) prints one line ``gankit: error: ...`` and exits with status 1.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click


from cli.errors import CLIError, _user_errors, run_safely  # noqa: E402,F401  (shared by the command modules)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gankit")
def main():
    """gankit: StyleGAN inversion and editing toolkit."""


def _generate(G, seeds, trunc, trunc_cutoff, class_idx, noise_mode, out, batch, device, tag="seed"):
    import numpy as np
    import torch
    from tqdm import tqdm
    from generators import images

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if G.c_dim > 0 and class_idx is None:
        raise CLIError(f"this generator is conditional (c_dim={G.c_dim}): pass --class K")
    if class_idx is not None and not (0 <= class_idx < max(G.c_dim, 1)) :
        raise CLIError(f"--class must be in [0, {G.c_dim - 1}]" if G.c_dim else "this generator is unconditional")
    tiles, written = [], []
    for i in tqdm(range(0, len(seeds), batch), desc="generate", unit="batch", disable=len(seeds) <= batch):
        chunk = seeds[i:i + batch]
        # NVIDIA's convention: z = RandomState(seed).randn(1, z_dim), so seeds give the same images.
        z = torch.from_numpy(np.stack([np.random.RandomState(s).randn(G.z_dim) for s in chunk])).float().to(device)
        c = torch.zeros([len(chunk), G.c_dim], device=device)
        if G.c_dim > 0:
            c[:, class_idx] = 1
        with torch.no_grad():
            img = G(z, c, truncation_psi=trunc, truncation_cutoff=trunc_cutoff, noise_mode=noise_mode)
        for s, arr in zip(chunk, images.to_uint8(img)):
            path = out / f"{tag}{s:04d}.png"
            images.save_image(arr, path)
            tiles.append(arr)
            written.append(path)
    images.save_image(images.grid(tiles), out / "grid.png")
    return written


@main.command()
@click.option("--generator", "-g", "source", required=True, help="checkpoint path, registry name or URL")
@click.option("--seeds", default="0-7", show_default=True, help="e.g. 0-7 or 1,5,9")
@click.option("--trunc", default=1.0, show_default=True, type=float, help="truncation psi")
@click.option("--trunc-cutoff", default=None, type=int, help="truncate only the first N ws")
@click.option("--class", "class_idx", default=None, type=int, help="class label for conditional models")
@click.option("--noise-mode", default="const", show_default=True, type=click.Choice(["const", "random", "none"]))
@click.option("--network", default="G_ema", show_default=True, type=click.Choice(["G_ema", "G"]))
@click.option("--batch", default=8, show_default=True, type=int)
@click.option("--device", default="cpu", show_default=True)
@click.option("--translate", default=None, help="StyleGAN3 only: translate the image by x,y (e.g. 0.25,-0.1)")
@click.option("--rotate", default=None, type=float, help="StyleGAN3 only: rotate the image by this many degrees")
@click.option("--latents", "latents_file", default=None, type=click.Path(dir_okay=False),
              help="render the latents of this file (gankit .npz, projected_w.npz, latents.pt/.npy, 0.pt) "
                   "instead of seeds")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="output folder")
@run_safely
def generate(source, seeds, trunc, trunc_cutoff, class_idx, noise_mode, network, batch, device, translate, rotate,
             latents_file, out):
    """Generate images for a list of seeds (PNGs plus grid.png), or render a latent file (--latents)."""
    import generators
    from generators.images import parse_range

    if latents_file is not None:
        from cli.invert_cmds import generate_from_latents
        G = generators.load(source, device=device, network=network)
        written = generate_from_latents(G, latents_file, out, noise_mode, batch, device)
        click.echo(f"wrote {len(written)} images and grid.png to {out} from {latents_file}")
        return

    seeds = parse_range(seeds)
    shift = (0.0, 0.0)
    if translate is not None:
        try:
            shift = tuple(float(v) for v in translate.split(","))
            assert len(shift) == 2
        except (ValueError, AssertionError):
            raise CLIError(f"--translate takes two numbers x,y, not {translate!r}") from None
    G = generators.load(source, device=device, network=network)
    if translate is not None or rotate is not None:
        if not hasattr(G, "set_transform"):
            raise CLIError(f"--translate/--rotate need a StyleGAN3 generator; this one is {type(G).__module__}")
        G.set_transform(translate=shift, angle_deg=rotate or 0.0)
    written = _generate(G, seeds, trunc, trunc_cutoff, class_idx, noise_mode, out, batch, device)
    click.echo(f"wrote {len(written)} images and grid.png to {out} "
               f"({G.img_resolution}x{G.img_resolution}, psi={trunc}, noise={noise_mode})")


@main.command()
@click.argument("src")
@click.argument("dst", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", default=None, type=click.Choice(["gankit", "rosinality"]),
              help="output format (default: from the suffix: .pt/.pth -> rosinality, else gankit)")
@run_safely
def convert(src, dst, fmt):
    """Convert any readable checkpoint to gankit's format or rosinality's .pt."""
    import generators

    ckpt = generators.convert(src, dst, format=fmt)
    click.echo(f"converted {src} ({ckpt.format}; networks {', '.join(ckpt.networks)}) -> {dst}")


@main.command()
@click.argument("ckpt")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@run_safely
def info(ckpt, as_json):
    """Format, architecture, resolution, num_ws, parameters and sha256 of a checkpoint."""
    import generators

    d = generators.info(ckpt)
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    click.echo(f"file:    {d['source']}")
    click.echo(f"format:  {d['format']}")
    click.echo(f"sha256:  {d['sha256']}")
    for name, n in d["networks"].items():
        bits = [f"{k}={n[k]}" for k in ("architecture", "img_resolution", "img_channels", "z_dim", "w_dim",
                                        "c_dim", "num_ws") if k in n]
        click.echo(f"{name}: {n['kind']}  {' '.join(bits)}  parameters={n['parameters']:,}")
        if "channels" in n:
            click.echo("    channels: " + " ".join(f"{r}:{c}" for r, c in n["channels"].items()))
    if "latent_avg_shape" in d:
        click.echo(f"latent_avg: {d['latent_avg_shape']}")


@main.command()
@click.option("--family", default=None, help="filter by family, e.g. stylegan2-ada")
@run_safely
def models(family):
    """List the official models of the registry (downloaded on first use)."""
    from generators import registry

    for m in registry.list_models():
        if family and m["family"] != family:
            continue
        click.echo(f"{m['name']:<36} {m['family']:<13} {m['resolution']:>5}  {m['format']}")


@main.command()
@click.option("--out", "-o", default="out/demo", show_default=True, type=click.Path(file_okay=False))
@click.option("--seeds", default="0-15", show_default=True)
@click.option("--image", default=None, type=click.Path(exists=True, dir_okay=False),
              help="a face photo to invert and edit (default: a generated face)")
@click.option("--steps", default=100, show_default=True, type=click.IntRange(min=1), help="projection steps")
@run_safely
def demo(out, seeds, image, steps):
    """The bundled default job: samples, inversion and edits with gankit's face model."""
    from cli.demo import run_demo
    run_demo(out, seeds, image=image, steps=steps)


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".jfif", ".ppm", ".pgm"}


def _expand_inputs(inputs):
    """Files as given; folders expand to the image files directly inside them (sorted)."""
    paths = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            paths += sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES)
        else:
            paths.append(p)
    return paths


def _unique_stem(path, used):
    stem = path.stem
    if stem in used:
        stem = f"{path.stem}_{path.suffix.lstrip('.').lower() or 'noext'}"
    base, k = stem, 2
    while stem in used:
        stem, k = f"{base}-{k}", k + 1
    used.add(stem)
    return stem


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="output folder")
@click.option("--size", default=None, type=click.IntRange(min=1),
              help="output size in pixels  [default: the preset's, ffhq 1024, psp 256]")
@click.option("--preset", default="ffhq", show_default=True, type=click.Choice(["ffhq", "psp"]),
              help="ffhq: NVlabs/ffhq-dataset (rendered at 4x, LANCZOS down); psp: pSp/e4e 256, no supersampling")
@click.option("--faces", "face", default="largest", show_default=True,
              help="largest | best (detector score) | all | K (index in score order)")
@click.option("--backend", default="dlib", show_default=True, type=click.Choice(["dlib", "dlib-cnn", "fan"]))
@click.option("--transform-size", default=None, type=click.IntRange(min=1),
              help="size of the QUAD render before the final resize  [default: size x 4 for ffhq, size for psp]")
@click.option("--no-padding", is_flag=True, help="no reflect/blur/fade padding (black outside the photo)")
@click.option("--upsample", default=None, type=click.IntRange(min=0),
              help="detector upsampling  [default: 1 for dlib (the references'), 0 for dlib-cnn]")
@click.option("--min-face", default=0.0, type=float, show_default=True,
              help="ignore faces whose detection box is smaller than this (pixels)")
@click.option("--fix-roll", default=None, type=click.FloatRange(min=0),
              help="re-predict landmarks upright for faces tilted by at least this many degrees "
                   "(not in the FFHQ reference; e.g. 20)")
@run_safely
def align(inputs, out, size, preset, face, backend, transform_size, no_padding, upsample, min_face, fix_roll):
    """Align faces the FFHQ way: OUT/<stem>.png + OUT/<stem>.json (with --faces all: <stem>_<k>).

    Keeps going past files that fail; ends with a one-line summary and exit status 1 if any failed.
    """
    from tqdm import tqdm
    from inversion import faces as F

    F.resolve_sizes(preset, size, transform_size)          # bad sizes fail before any work
    choice = F.landmarks.parse_face_choice(face)
    F.landmarks.get_backend(backend, upsample)              # a missing model fails once, up front
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = _expand_inputs(inputs)
    if not paths:
        raise CLIError("no input images (folders are searched for " + ", ".join(sorted(IMAGE_SUFFIXES)) + ")")
    counts = {"no face": 0, "unreadable": 0, "too small": 0, "other errors": 0}
    n_faces = n_ok = 0
    used = set()
    for path in tqdm(paths, desc="align", unit="img", disable=None):
        stem = _unique_stem(path, used)
        try:
            res = F.align_face(path, size, preset, backend, choice, transform_size=transform_size,
                               enable_padding=not no_padding, upsample=upsample, min_face_size=min_face,
                               fix_roll=fix_roll)
            pairs = res if choice == "all" else [res]
            for aligned, rec in pairs:
                name = f"{stem}_{rec['face']['index']}.png" if choice == "all" else f"{stem}.png"
                F.save_aligned(aligned, rec, out / name)
            n_faces += len(pairs)
            n_ok += 1
            continue
        except F.UnreadableImageError as e:
            kind, msg = "unreadable", str(e)
        except F.NoFaceError as e:
            kind, msg = "no face", str(e)
        except F.FaceTooSmallError as e:
            kind, msg = "too small", str(e)
        except MemoryError:
            kind, msg = "other errors", "out of memory"
        except Exception as e:  # keep going past any other failure, reported in one line
            kind = "other errors"
            msg = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if not msg.startswith(str(path)):
            msg = f"{path}: {msg}"
        tqdm.write(f"gankit: error: {msg}", file=sys.stderr)
        counts[kind] += 1
    failed = sum(counts.values())
    click.echo(f"aligned {n_faces} face(s) from {n_ok} of {len(paths)} file(s) into {out}; "
               + ", ".join(f"{k}: {v}" for k, v in counts.items()))
    if failed:
        sys.exit(1)


@main.command()
@click.argument("photo")
@click.argument("edited")
@click.argument("record")
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False), help="output image (.png keeps it lossless)")
@click.option("--blend", default="feather", show_default=True, type=click.Choice(["feather", "poisson"]))
@run_safely
def paste(photo, edited, record, out, blend):
    """Paste an edited aligned face back into PHOTO using the alignment RECORD (.json)."""
    from inversion import faces as F

    result = F.paste_back(photo, edited, record, blend=blend)
    F.save_image(result, out)
    click.echo(f"pasted {edited} into {photo} ({blend}) -> {out} (upright: EXIF orientation applied)")


from cli.editing_cmds import register as _register_editing, register_edit as _register_edit  # noqa: E402
from cli.editing_cmds import register_mix as _register_mix  # noqa: E402

_register_editing(main, run_safely, CLIError)
_register_edit(main, run_safely, CLIError)
_register_mix(main, run_safely, CLIError)
from cli.invert_cmds import register as _register_invert  # noqa: E402
_register_invert(main, run_safely, CLIError)

from cli.metrics_cmds import make_metrics_command  # noqa: E402
main.add_command(make_metrics_command(run_safely, CLIError))

from cli.train_cmds import make_dataset_group, make_train_group  # noqa: E402
main.add_command(make_train_group(run_safely, CLIError), name="train")
main.add_command(make_dataset_group(run_safely, CLIError), name="dataset")


if __name__ == "__main__":
    main()
