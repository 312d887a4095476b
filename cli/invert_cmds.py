"""``gankit invert`` (projection / PTI / encoders of image files) and ``gankit generate --latents`` rendering.

    gankit invert photos/ --generator G --method projection --space w+ --steps 1000 --batch 8 --out runs/a
    gankit invert photos/ --method e4e --encoder e4e_ffhq_encode.pt --align --out runs/b
    gankit invert photos/ --method hyperstyle --encoder hyperstyle_ffhq.pt --w-encoder faces_w_encoder.pt --out runs/c
    gankit generate --generator G --latents runs/a/latents.npz --out runs/a/render

``invert`` writes ``OUT/latents.npz`` (gankit latent file, rewritten after every batch) and ``OUT/<stem>.png``
reconstructions. PTI also writes the tuned generator of each batch under ``OUT/generators/`` (full gankit
checkpoint, or ``--deltas`` for weight deltas) with ``OUT/generators/index.json`` mapping stems to files.
HyperStyle also writes each image's weight offsets to ``OUT/offsets/<stem>.safetensors`` (see
``inversion.offsets``); ``gankit edit`` and ``gankit generate --latents`` apply them.
Re-running the same command skips images already in ``latents.npz`` (resumable).

Encoder methods (psp, e4e, restyle, hyperstyle) take ``--encoder`` (checkpoint or encoder registry name);
the generator is the one embedded in it (its sha256 goes into ``latents.npz``) unless ``--generator`` names
another of the same architecture (e.g. a fine-tuned one). Their inputs are brought to the encoder's input
size (256) by a centre crop and a bilinear resize, as the references' ``Resize``, or by ``--align`` (the
FFHQ alignment with the pSp preset, 256 px, as those repositories' ``align_all_parallel.py``).
"""
from __future__ import annotations

import json
from pathlib import Path

import click

LOSS_CHOICES = ("lpips", "lpips-alex", "mse", "arcface", "face-features", "id-dlib")


def _load_targets(paths, G=None, align: bool = False, size=None, channels=None, resample=None, preset="ffhq"):
    """Images -> [N, C, R, R] in [-1, 1]: FFHQ alignment (``--align``; ``preset`` of ``align_face``) or
    NVIDIA's centre crop + resize (``resample``: LANCZOS unless given). R, C: ``size``/``channels`` or G's."""
    import numpy as np
    import torch
    from PIL import Image, ImageOps
    R = int(size) if size is not None else G.img_resolution
    C = int(channels) if channels is not None else getattr(G, "img_channels", 3)
    resample = Image.LANCZOS if resample is None else resample
    out = []
    for p in paths:
        if align:
            from inversion import faces as F
            img, _ = F.align_face(p, R, preset)
        else:
            try:
                with Image.open(p) as im:
                    img = ImageOps.exif_transpose(im)
                    img.load()
            except (OSError, ValueError) as e:
                raise OSError(f"{p}: cannot read image ({str(e).splitlines()[0] if str(e) else type(e).__name__})") \
                    from None
            w, h = img.size
            s = min(w, h)
            img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
            img = img.resize((R, R), resample)
        img = img.convert("L" if C == 1 else "RGB")
        a = np.asarray(img, dtype=np.float32).reshape(R, R, C).transpose(2, 0, 1)
        out.append(torch.from_numpy(a / 127.5 - 1.0))
    return torch.stack(out)


class _Video:
    """Collects target | reconstruction frames of a batch and writes one animated GIF per image."""

    def __init__(self, targets, every):
        from generators.images import to_uint8
        self.targets, self.every, self.frames = to_uint8(targets), every, []
        self._to_uint8 = to_uint8

    def __call__(self, step, ws, images, total):
        if step % self.every == 0:
            self.frames.append(self._to_uint8(images))

    def write(self, paths):
        import numpy as np
        from generators.formats.atomic import atomic_path
        from generators.images import to_pil
        for i, p in enumerate(paths):
            frames = [to_pil(np.concatenate([self.targets[i], f[i]], axis=1)) for f in self.frames]
            if not frames:
                continue
            with atomic_path(p) as tmp:
                frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


ENCODER_METHODS = ("psp", "e4e", "restyle", "hyperstyle")
# options of the optimizers that mean nothing to an encoder (an explicit value is refused)
_OPTIMIZER_ONLY = ("space", "steps", "pti_steps", "loss", "lr", "seed", "no_noise", "w_warmup", "w_avg_samples",
                   "locality",
                   "deltas", "video")


def _given(name) -> bool:
    """True when the option ``name`` was set on the command line (not its default)."""
    from click.core import ParameterSource
    src = click.get_current_context().get_parameter_source(name)
    return src not in (None, ParameterSource.DEFAULT)


def _flag(name) -> str:
    return "--" + name.replace("_", "-")


def _resume(lat_path, sha, method, CLIError):
    """The latent file of an earlier run into the same folder (None if none); refuses another generator/method."""
    from inversion import latents as L
    if not lat_path.exists():
        return None
    done = L.load(lat_path)
    if done.generator_sha256 and done.generator_sha256 != sha:
        raise CLIError(f"{lat_path} was made with another generator; use a new --out folder")
    if done.method and done.method != method:
        raise CLIError(f"{lat_path} was made with --method {done.method}; use a new --out folder")
    return done


def _pending(lat_path, sha, method, paths, stems, CLIError):
    """(earlier latents or None, [(path, stem)] still to invert); prints when nothing or something is left."""
    done = _resume(lat_path, sha, method, CLIError)
    done_names = set(done.names) if done is not None else set()
    todo = [(p, s) for p, s in zip(paths, stems) if s not in done_names]
    if not todo:
        click.echo(f"all {len(paths)} image(s) already inverted in {lat_path}")
    elif done_names:
        click.echo(f"resuming: {len(done_names)} done, {len(todo)} to go")
    return done, todo


def register(main, run_safely, CLIError):
    @main.command()
    @click.argument("images", nargs=-1, required=True)
    @click.option("--generator", "-g", "source", default=None,
                  help="checkpoint path, registry name or URL (projection/pti: required; encoder methods: render "
                       "with this generator instead of the encoder's own)")
    @click.option("--method", default="projection", show_default=True,
                  type=click.Choice(["projection", "pti"] + list(ENCODER_METHODS)))
    @click.option("--encoder", "encoder", default=None,
                  help="psp/e4e/restyle/hyperstyle: encoder checkpoint or encoder registry name  [default for "
                       "e4e/hyperstyle with gankit-faces (or no --generator): the bundled gankit-faces-e4e / "
                       "gankit-faces-hyperstyle]")
    @click.option("--iters", default=None, type=click.IntRange(min=1),
                  help="restyle/hyperstyle refinement iterations  [default: the model's, 5]")
    @click.option("--w-encoder", "w_encoder", default=None,
                  help="hyperstyle: the W encoder it starts from (default: the file its checkpoint names)")
    @click.option("--space", default="w+", show_default=True, type=click.Choice(["w", "w+", "z"]),
                  help="latent space of the projection (PTI pivots: w unless given)")
    @click.option("--steps", default=None, type=click.IntRange(min=1),
                  help="projection steps  [default: 1000; PTI pivot: 450]")
    @click.option("--pti-steps", default=350, show_default=True, type=click.IntRange(min=0),
                  help="PTI generator-tuning steps (stops early at the LPIPS threshold)")
    @click.option("--batch", default=8, show_default=True, type=click.IntRange(min=1),
                  help="images inverted together (results equal separate runs)")
    @click.option("--loss", "loss", default=None,
                  help="loss terms with optional weights, e.g. lpips | mse | lpips,mse=0.1  [default: lpips; "
                       "PTI: mse,lpips-alex]; terms: "
                       + ", ".join(LOSS_CHOICES) + " (face-features and id-dlib need no download)")
    @click.option("--lr", default=None, type=float, help="peak learning rate [projection 0.1, PTI 3e-4]")
    @click.option("--seed", default=303, show_default=True, type=int, help="image i of the run uses seed + i")
    @click.option("--no-noise", is_flag=True, help="do not optimize the noise inputs (keep the generator's)")
    @click.option("--w-warmup", default=0.0, show_default=True, type=click.FloatRange(0, 1, max_open=True),
                  help="W+ projection: fraction of the steps spent in W first (0 = NVIDIA's recipe)")
    @click.option("--w-avg-samples", default=10000, show_default=True, type=click.IntRange(min=2))
    @click.option("--locality", is_flag=True, help="PTI locality regularization (alpha 30, weight 0.1)")
    @click.option("--deltas", is_flag=True, help="PTI: save weight deltas instead of full checkpoints")
    @click.option("--align", is_flag=True, help="FFHQ-align faces first (dlib); default: centre crop + resize")
    @click.option("--video", is_flag=True, help="write OUT/<stem>_progress.gif (target | reconstruction)")
    @click.option("--device", default="cpu", show_default=True)
    @click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="output folder")
    @run_safely
    def invert(images, source, method, encoder, iters, w_encoder, space, steps, pti_steps, batch, loss, lr, seed,
               no_noise, w_warmup, w_avg_samples, locality, deltas, align, video, device, out):
        """Invert images into a generator's latent space (projection, PTI or an encoder); resumable."""
        from cli.main import _expand_inputs, _unique_stem

        if method in ENCODER_METHODS:
            if encoder is None:
                from encoders.registry import default_for
                encoder = default_for(source or "gankit-faces").get(method)
                if encoder is None:
                    raise CLIError(f"--method {method} needs --encoder CHECKPOINT (a checkpoint file or an encoder "
                                   f"registry name); gankit bundles e4e and hyperstyle encoders only for gankit-faces")
            bad = [_flag(n) for n in _OPTIMIZER_ONLY if _given(n)]
            if bad:
                raise CLIError(f"{', '.join(bad)} {'does' if len(bad) == 1 else 'do'} not apply to --method {method} "
                               f"(only to projection/pti)")
            if w_encoder is not None and method != "hyperstyle":
                raise CLIError("--w-encoder is for --method hyperstyle")
        else:
            if source is None:
                raise CLIError(f"--method {method} needs --generator")
            bad = [f for f, v in (("--encoder", encoder), ("--iters", iters), ("--w-encoder", w_encoder))
                   if v is not None]
            if bad:
                raise CLIError(f"{', '.join(bad)} {'is' if len(bad) == 1 else 'are'} only for the encoder methods "
                               f"({', '.join(ENCODER_METHODS)}), not --method {method}")
        if loss is None:
            loss = "lpips" if method == "projection" else "mse,lpips-alex"
        if method not in ENCODER_METHODS:
            from inversion.losses import LossSpecError, parse_loss
            try:
                parse_loss(loss)
            except LossSpecError as e:
                raise CLIError(str(e)) from None
        paths = _expand_inputs(images)
        if not paths:
            raise CLIError("no input images")
        for p in paths:
            if not p.is_file():
                raise CLIError(f"{p}: no such file")
        used = set()
        stems = [_unique_stem(p, used) for p in paths]
        out = Path(out)
        if method in ENCODER_METHODS:
            return _invert_encoder(paths, stems, source, method, encoder, iters, w_encoder, batch, align, device, out,
                                   CLIError)
        if steps is None:
            steps = 1000 if method == "projection" else 450
        return _invert_optimizer(paths, stems, source, method, space, steps, pti_steps, batch, loss, lr, seed,
                                 no_noise, w_avg_samples, locality, deltas, align, video, device, out, CLIError,
                                 w_warmup=w_warmup)


def _invert_optimizer(paths, stems, source, method, space, steps, pti_steps, batch, loss, lr, seed, no_noise,
                      w_avg_samples, locality, deltas, align, video, device, out, CLIError, w_warmup=0.0):
    """Projection / PTI over the images in batches; ``latents.npz`` is rewritten after every batch."""
    from tqdm import tqdm
    import generators
    from editing.directions import generator_sha256
    from generators.images import save_image, to_uint8
    from inversion import latents as L
    from inversion.losses import ReconstructionLoss
    from inversion.projection import project, w_stats

    out.mkdir(parents=True, exist_ok=True)
    lat_path = out / "latents.npz"
    G = generators.load(source, device=device)
    sha = generator_sha256(G)
    done, todo = _pending(lat_path, sha, method, paths, stems, CLIError)
    if not todo:
        return
    loss_fn = ReconstructionLoss(loss, device=device)      # missing weights fail here, before any work
    stats = w_stats(G, w_avg_samples, device=device) if method == "projection" else None
    index_path = out / "generators" / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {}

    for b in tqdm(range(0, len(todo), batch), desc=f"invert ({method})", unit="batch", disable=None):
        chunk = todo[b:b + batch]
        targets = _load_targets([p for p, _ in chunk], G, align)
        names = [s for _, s in chunk]
        rec = _Video(targets, max(1, steps // 100)) if video and method == "projection" else None
        seeds = [seed + paths.index(p) for p, _ in chunk]   # independent of batching and resuming
        if method == "projection":
            res = project(G, targets, space=space, steps=steps, loss=loss_fn, seed=seeds,
                          lr=lr if lr is not None else 0.1, optimize_noise=not no_noise, stats=stats,
                          device=device, callback=rec, w_warmup=w_warmup if space == "w+" else 0.0)
        else:
            from inversion.pivotal_tuning import pti, save_deltas, save_tuned
            pk = dict(space=space if space != "w+" else "w", steps=steps, w_avg_samples=w_avg_samples,
                      seed=seeds, optimize_noise=not no_noise)
            res = pti(G, targets, steps=pti_steps, lr=lr if lr is not None else 3e-4, loss=loss_fn.weights,
                      locality=locality, pivot_kwargs=pk, seed=seeds[0], device=device)
            gdir = out / "generators"
            gdir.mkdir(exist_ok=True)
            fname = f"{names[0]}.deltas.safetensors" if deltas else f"{names[0]}.safetensors"
            if deltas:
                save_deltas(res.generator, G, gdir / fname)
            else:
                save_tuned(res.generator, gdir / fname)
            index.update({n: fname for n in names})
            from generators.formats.atomic import atomic_path
            with atomic_path(index_path) as tmp:
                Path(tmp).write_text(json.dumps(index, indent=1, sort_keys=True))
        for n, arr in zip(names, to_uint8(res.images)):
            save_image(arr, out / f"{n}.png")
        if rec is not None:
            rec.write([out / f"{n}_progress.gif" for n in names])
        new = L.Latents.from_result(res, names, generator_sha256=sha)
        done = new if done is None else L.Latents.concat([done, new])
        L.save(lat_path, done)
    msg = ", ".join(f"{k} {float(v.mean()):.4g}" for k, v in sorted(done.losses.items()))
    click.echo(f"inverted {len(todo)} image(s) ({method}, {done.space}) into {out}: latents.npz, <stem>.png"
               + (", generators/" if method == "pti" else "") + (f"; mean final {msg}" if msg else ""))


def _invert_encoder(paths, stems, source, method, encoder, iters, w_encoder, batch, align, device, out, CLIError):
    """pSp / e4e / ReStyle / HyperStyle over the images in batches (``inversion.invert``); resumable like
    the optimizers. HyperStyle's offsets go to ``OUT/offsets/<stem>.safetensors`` before the latent file
    lists the image, so every image in ``latents.npz`` has its offsets."""
    from PIL import Image
    from tqdm import tqdm
    import encoders
    from editing.directions import generator_sha256
    from generators.images import save_image, to_uint8
    from inversion import latents as L
    from inversion import offsets as O
    from inversion.methods import invert as run_invert

    model = encoders.load(encoder, device=device, w_encoder=w_encoder)
    have = getattr(model, "method", "")
    if have not in ENCODER_METHODS:
        raise CLIError(f"{encoder}: not an inversion encoder (it holds a network of type {type(model).__name__})")
    if have != method:
        raise CLIError(f"{encoder} is a {have} checkpoint, not {method} (use --method {have})")
    if iters is not None and method in ("psp", "e4e") and iters != 1:
        raise CLIError(f"{method} is a single-pass encoder: --iters must be 1 or omitted")
    G = None
    if source is not None:
        import generators
        G = generators.load(source, device=device)
    sha = generator_sha256(G if G is not None else model.G)
    lat_path = out / "latents.npz"
    done, todo = _pending(lat_path, sha, method, paths, stems, CLIError)
    if not todo:
        return
    out.mkdir(parents=True, exist_ok=True)
    size = int(getattr(model, "input_size", 256))
    for b in tqdm(range(0, len(todo), batch), desc=f"invert ({method})", unit="batch", disable=None):
        chunk = todo[b:b + batch]
        targets = _load_targets([p for p, _ in chunk], align=align, size=size, channels=3, resample=Image.BILINEAR,
                                preset="psp")
        names = [s for _, s in chunk]
        res = run_invert(targets, method=method, encoder=model, iters=iters, device=device, G=G, batch=len(chunk),
                         progress=False)
        for n, arr in zip(names, to_uint8(res.images)):
            save_image(arr, out / f"{n}.png")
        if res.offsets:
            for i, n in enumerate(names):
                O.save(O.path_for(out / O.FOLDER, n), {k: v[i] for k, v in res.offsets.items()}, name=n,
                       method=res.method, generator_sha256=sha)
        new = L.Latents.from_result(res, names, generator_sha256=sha)
        done = new if done is None else L.Latents.concat([done, new])
        L.save(lat_path, done)
    msg = ", ".join(f"{k} {float(v.mean()):.4g}" for k, v in sorted(done.losses.items()))
    click.echo(f"inverted {len(todo)} image(s) ({method}, {done.space}) into {out}: latents.npz, <stem>.png"
               + (f", {O.FOLDER}/" if method == "hyperstyle" else "") + (f"; mean final {msg}" if msg else ""))


def generate_from_latents(G, latents_path, out, noise_mode="const", batch=8, device="cpu", offsets="auto"):
    """Render every latent of a latent file (any supported format) to ``out/<name>.png`` + grid.png.
    Noise maps stored in the file (projection results) are used; otherwise ``noise_mode``. HyperStyle
    weight offsets (``offsets``: "auto" = the sidecar folder next to a gankit latent file, a folder or
    file, or None) are applied with ``encoders.hyperstyle.synthesize_with_offsets``."""
    import torch
    from generators import images
    from inversion import latents as L
    from inversion import offsets as O

    lat = L.read(latents_path)
    ws = lat.torch(device, num_ws=G.num_ws).float()
    if ws.shape[2] != G.w_dim:
        raise ValueError(f"{latents_path}: latents have w_dim {ws.shape[2]}; the generator has {G.w_dim}")
    files = None
    if offsets is not None:
        files = O.locate(latents_path, lat.names, lat.method, None if offsets == "auto" else offsets)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tiles, written = [], []
    step = 1 if files is not None else batch
    for i in range(0, len(lat), step):
        with torch.no_grad():
            if files is not None:
                from encoders.hyperstyle import synthesize_with_offsets
                offs = {k: v[None] for k, v in O.load(files[i], device).items()}
                img = synthesize_with_offsets(G, ws[i:i + 1], offs, noise_mode=noise_mode)
            else:
                kw = {}
                if lat.noise is not None and noise_mode == "const":
                    kw["noise"] = [torch.from_numpy(n[i:i + batch]).to(device) for n in lat.noise]
                img = G.synthesis(ws[i:i + batch], noise_mode=noise_mode, **kw)
        for name, arr in zip(lat.names[i:i + step], images.to_uint8(img)):
            path = out / f"{name}.png"
            images.save_image(arr, path)
            tiles.append(arr)
            written.append(path)
    images.save_image(images.grid(tiles), out / "grid.png")
    return written
