"""``gankit blend`` and ``gankit directions sefa|ganspace`` (thin wrappers over ``editing``)."""
from __future__ import annotations

import click


def register(main, run_safely, CLIError):
    @main.command()
    @click.argument("base")
    @click.argument("other")
    @click.option("--out", "-o", required=True, type=click.Path(dir_okay=False), help="output checkpoint (gankit format)")
    @click.option("--switch-res", default=None, type=int, help="first resolution taken from OTHER (layer swapping)")
    @click.option("--level", default=0, show_default=True, type=click.IntRange(0, 1),
                  help="0: switch at the resolution's first conv, 1: at its second conv/toRGB")
    @click.option("--width", default=None, type=float, help="logistic width (positions); omit for a hard switch")
    @click.option("--alpha", default=None, type=float, help="weight of OTHER (whole-model interpolation or scale of y)")
    @click.option("--rule", default="intended", show_default=True,
                  type=click.Choice(["intended", "pinkney", "port", "step"]))
    @run_safely
    def blend(base, other, out, switch_res, level, width, alpha, rule):
        """Blend two compatible generators: layer swapping (--switch-res/--width) or interpolation (--alpha).
        Mapping network, w_avg and noise come from BASE when swapping layers."""
        import generators
        from editing.blend import blend as do_blend

        if switch_res is None and alpha is None:
            raise CLIError("give --switch-res and/or --alpha")
        Ga, Gb = generators.load(base), generators.load(other)
        G = do_blend(Ga, Gb, switch_res=switch_res, width=width, alpha=alpha, level=level, rule=rule)
        generators.save(G, out)
        n = len(G.blend_info["weights"])
        click.echo(f"blended {base} + {other} -> {out} ({n} parameters take weight from OTHER)")

    @main.group()
    def directions():
        """Compute latent directions and write gankit direction files (.npz)."""

    register_interfacegan(directions, run_safely, CLIError)

    @directions.command()
    @click.option("--generator", "-g", "source", required=True)
    @click.option("--layers", default="all", show_default=True, help="all|coarse|middle|fine or e.g. 0-3,7")
    @click.option("--num", "-k", default=None, type=int, help="keep the top K directions (default all)")
    @click.option("--out", "-o", required=True, type=click.Path(dir_okay=False))
    @run_safely
    def sefa(source, layers, num, out):
        """SeFa closed-form directions from the style-affine weights."""
        import generators
        from editing import directions as D
        from editing import sefa as S

        G = generators.load(source)
        ev, dirs = S.factorize(G, layers)
        idx = S.resolve_layers(layers, G.num_ws).tolist()
        k = num or len(ev)
        d = D.Directions(vectors=dirs[:k], names=[f"sefa{i}" for i in range(k)], space="w", method="sefa",
                         layers=idx, generator_sha256=D.generator_sha256(G), extra={"eigenvalues": ev[:k]})
        D.save(out, d)
        click.echo(f"wrote {k} SeFa directions (layers {layers}) to {out}")

    @directions.command()
    @click.option("--generator", "-g", "source", required=True)
    @click.option("--components", "-k", default=80, show_default=True, type=int)
    @click.option("--samples", "-n", default=300000, show_default=True, type=int)
    @click.option("--stdev-samples", default=5000, show_default=True, type=int)
    @click.option("--estimator", default="ipca", show_default=True, type=click.Choice(["ipca", "pca"]))
    @click.option("--seed", default=0, show_default=True, type=int)
    @click.option("--batch", default=1000, show_default=True, type=int)
    @click.option("--device", default="cpu", show_default=True)
    @click.option("--out", "-o", required=True, type=click.Path(dir_okay=False))
    @click.option("--ganspace-npz", default=None, type=click.Path(dir_okay=False),
                  help="also write GANSpace's own cache .npz")
    @run_safely
    def ganspace(source, components, samples, stdev_samples, estimator, seed, batch, device, out, ganspace_npz):
        """GANSpace: PCA of sampled W; strengths are in units of lat_stdev."""
        import generators
        from editing import directions as D
        from editing import ganspace as GS

        G = generators.load(source, device=device)
        comps = GS.fit_generator(G, components, samples, stdev_samples, seed=seed, estimator=estimator,
                                 batch_size=batch, device=device)
        d = D.read_ganspace(comps)
        d.generator_sha256 = D.generator_sha256(G)
        D.save(out, d)
        if ganspace_npz:
            GS.save(ganspace_npz, comps)
        click.echo(f"wrote {components} GANSpace components ({estimator}, {samples} samples) to {out}")


def parse_strengths(spec):
    """``"-3:3:7"`` -> 7 values from -3 to 3; ``"-2,0,2"`` -> list; ``"1.5"`` -> [1.5]."""
    import numpy as np
    spec = str(spec).strip()
    if ":" in spec:
        parts = spec.split(":")
        if len(parts) != 3:
            raise ValueError(f"--strength {spec!r}: use START:END:STEPS")
        return np.linspace(float(parts[0]), float(parts[1]), int(parts[2])).tolist()
    return [float(v) for v in spec.split(",") if v.strip()]


def register_edit(main, run_safely, CLIError):
    @main.command()
    @click.option("--generator", "-g", "source", required=True)
    @click.option("--direction", "-d", "direction", required=True, help="direction file (.npz/.npy/.pt, any supported layout) or gankit-faces-directions (bundled)")
    @click.option("--index", "-i", default="0", show_default=True, help="direction index or name")
    @click.option("--latents", "-l", default=None, type=click.Path(exists=True, dir_okay=False),
                  help="latent file: gankit's latents.npz (gankit invert) or any format it reads, or an .npz with "
                       "'ws' [N, num_ws, w_dim] (or 'w' [N, w_dim]); default: --seeds")
    @click.option("--offsets", "offsets", default=None, type=click.Path(exists=True),
                  help="HyperStyle weight offsets: a folder of <name>.safetensors or one file for every latent "
                       "[default: the offsets/ folder next to a HyperStyle latents.npz]")
    @click.option("--no-offsets", is_flag=True, help="render HyperStyle latents without their weight offsets")
    @click.option("--seeds", default="0-3", show_default=True, help="used when no --latents are given")
    @click.option("--trunc", default=1.0, show_default=True, type=float)
    @click.option("--strength", default="-3:3:7", show_default=True, help="START:END:STEPS or a comma list")
    @click.option("--layers", default=None, help="W+ rows to edit (e.g. 0-5, coarse); default: the file's layers or all")
    @click.option("--raw", is_flag=True, help="do not multiply by the file's per-direction scales (GANSpace stdev)")
    @click.option("--video", default="gif", show_default=True, type=click.Choice(["gif", "mp4", "none"]),
                  help="the sweep as an animation (mp4 needs imageio-ffmpeg)")
    @click.option("--fps", default=6.67, show_default=True, type=click.FloatRange(min=0.1), help="animation speed")
    @click.option("--out", "-o", required=True, type=click.Path(file_okay=False))
    @run_safely
    def edit(source, direction, index, latents, offsets, no_offsets, seeds, trunc, strength, layers, raw, video, fps,
             out):
        """Apply a direction at several strengths: per-image strips, grid.png and sweep.gif (or sweep.mp4).

        HyperStyle results (``gankit invert --method hyperstyle``) are rendered with their per-image weight
        offsets, so the edits keep the detail of the reconstruction."""
        from pathlib import Path

        import numpy as np
        import torch
        import generators
        from editing import apply as apply_edit
        from editing import directions as D
        from generators import images

        if video == "mp4" and not images.mp4_available():
            raise CLIError("--video mp4 needs imageio-ffmpeg: pip install imageio-ffmpeg, or use --video gif")
        G = generators.load(source)
        dirs = D.read(direction)
        key = int(index) if str(index).lstrip("-").isdigit() else index
        try:
            vec = dirs.vector(key, scaled=not raw)
        except (ValueError, IndexError):
            raise CLIError(f"direction {index!r} not in {direction} ({len(dirs)} directions)")
        if vec.shape[-1] != G.w_dim:
            raise CLIError(f"direction has {vec.shape[-1]} dims but the generator's w_dim is {G.w_dim}")
        if offsets is not None and no_offsets:
            raise CLIError("give --offsets or --no-offsets, not both")
        if offsets is not None and not latents:
            raise CLIError("--offsets needs --latents (the offsets belong to inverted images)")
        offset_files = None                     # per latent: its HyperStyle offsets file
        if latents:
            ws, offset_files = _read_edit_latents(latents, G, offsets, no_offsets, CLIError)
        else:
            seed_list = images.parse_range(seeds)
            z = torch.from_numpy(np.stack([np.random.RandomState(s).randn(G.z_dim) for s in seed_list])).float()
            c = torch.zeros([len(seed_list), G.c_dim]) if G.c_dim else None
            with torch.no_grad():
                ws = G.mapping(z, c, truncation_psi=trunc)
        if ws.ndim != 3 or ws.shape[1:] != (G.num_ws, G.w_dim):
            raise CLIError(f"latents must be [N, {G.num_ws}, {G.w_dim}], got {list(ws.shape)}")
        if layers is None and dirs.layers:
            layers = dirs.layers
        values = parse_strengths(strength)
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        rows = []                               # rows[n] = list of frames for image n
        with torch.no_grad():
            if offset_files is None:
                for s in values:
                    img = images.to_uint8(G.synthesis(apply_edit(ws, vec, s, layers), noise_mode="const"))
                    for n, arr in enumerate(img):
                        if len(rows) <= n:
                            rows.append([])
                        rows[n].append(arr)
            else:                               # one image at a time: each has its own generator weights
                from encoders.hyperstyle import synthesize_with_offsets
                from inversion import offsets as O
                for n in range(len(ws)):
                    offs = {k: v[None] for k, v in O.load(offset_files[n]).items()}   # [1, O, I, k, k]
                    edited = torch.cat([apply_edit(ws[n:n + 1], vec, s, layers) for s in values])
                    rows.append(list(images.to_uint8(synthesize_with_offsets(G, edited, offs, noise_mode="const"))))
        for n, frames in enumerate(rows):
            images.save_image(np.concatenate(frames, axis=1), out / f"strip{n:04d}.png")
        images.save_image(images.grid([f for frames in rows for f in frames], cols=len(values)), out / "grid.png")
        written = "strips, grid.png"
        if video != "none":
            sweep = [images.grid([frames[t] for frames in rows]) for t in range(len(values))]
            sweep = sweep + sweep[-2:0:-1]      # ping-pong
            images.save_video(sweep, out / f"sweep.{video}", fps=fps)
            written += f", sweep.{video}"
        click.echo(f"edited {len(rows)} image(s) at {len(values)} strengths -> {out} ({written})")


def _read_edit_latents(path, G, offsets, no_offsets, CLIError):
    """``ws`` [N, num_ws, w_dim] of a latent file, and each latent's HyperStyle offsets file (or None).

    An .npz with ``ws`` (or a 2-D ``w`` [N, w_dim]) is read as such; everything else through
    ``inversion.latents.read`` (gankit's latents.npz and the reference tools' formats)."""
    import numpy as np
    import torch
    from inversion import latents as L
    from inversion import offsets as O

    if str(path).lower().endswith(".npz"):
        with np.load(path, allow_pickle=False) as f:
            if "ws" in f.files:
                ws = torch.from_numpy(f["ws"]).float()
            elif "w" in f.files and "format" not in f.files and f["w"].ndim == 2:
                ws = torch.from_numpy(f["w"]).float()[:, None].repeat(1, G.num_ws, 1)
            else:
                ws = None
        if ws is not None:
            if offsets is not None:
                raise CLIError(f"{path} has no image names to match offsets to; use a gankit latents.npz")
            return ws, None
    lat = L.read(path)
    ws = lat.torch(num_ws=G.num_ws).float()
    files = None if no_offsets else O.locate(path, lat.names, lat.method, offsets)
    return ws, files


def register_interfacegan(directions_group, run_safely, CLIError):
    @directions_group.command()
    @click.option("--generator", "-g", "source", required=True)
    @click.option("--attribute", "-a", required=True, help="label column (e.g. Smiling, age, gender)")
    @click.option("--labels", required=True, type=click.Path(exists=True, dir_okay=False), help="label CSV (first column: file)")
    @click.option("--images", default=None, type=click.Path(exists=True, file_okay=False), help="image folder (default: the CSV's)")
    @click.option("--task", default="auto", show_default=True, type=click.Choice(["auto", "binary", "regression"]))
    @click.option("--max-images", default=None, type=int, help="use only the first N labelled images")
    @click.option("--size", default=64, show_default=True, type=int, help="classifier input size")
    @click.option("--epochs", default=10, show_default=True, type=int)
    @click.option("--samples", "-n", default=10000, show_default=True, type=int, help="generator samples to score")
    @click.option("--ratio", default=0.02, show_default=True, type=float, help="chosen_num_or_ratio")
    @click.option("--split", default=0.7, show_default=True, type=float, help="train/val split of the chosen rows")
    @click.option("--space", default="w", show_default=True, type=click.Choice(["w", "z"]))
    @click.option("--seed", default=0, show_default=True, type=int)
    @click.option("--device", default="cpu", show_default=True)
    @click.option("--out", "-o", required=True, type=click.Path(dir_okay=False), help="gankit direction .npz")
    @run_safely
    def interfacegan(source, attribute, labels, images, task, max_images, size, epochs, samples, ratio, split, space,
                     seed, device, out):
        """Train an attribute classifier on labelled images, score generator samples, fit the boundary."""
        import numpy as np

        import generators
        from editing import attributes as A
        from editing import directions as D
        from editing.interfacegan import train_boundary

        paths, y = A.read_labels(labels, attribute, images)
        if max_images:
            paths, y = paths[:max_images], y[:max_images]
        if task == "auto":
            task = "binary" if set(np.unique(y).tolist()) <= {0.0, 1.0} else "regression"
        model, info = A.train_attribute_model(paths, y, task=task, size=size, epochs=epochs, seed=seed, device=device)
        G = generators.load(source, device=device)
        z, w, s = A.score_generator(G, model, samples, seed=seed, device=device)
        codes = w if space == "w" else z
        b, det = train_boundary(codes, s, ratio, split, seed=seed, return_details=True)
        d = D.Directions(vectors=b, names=[attribute], space=space, method="interfacegan",
                         generator_sha256=D.generator_sha256(G))
        D.save(out, d)
        quality = {k: round(v, 4) for k, v in info.items() if k in ("val_accuracy", "val_mae")}
        click.echo(f"wrote the {attribute} boundary ({space}, classifier {task} {quality}, "
                   f"boundary val accuracy {det.get('val_accuracy', float('nan')):.3f}) to {out}")


def register_mix(main, run_safely, CLIError):
    @main.command()
    @click.option("--generator", "-g", "source", required=True)
    @click.option("--rows", default="0-3", show_default=True, help="seeds of the row (destination) images")
    @click.option("--cols", default="4-7", show_default=True, help="seeds whose styles are copied in")
    @click.option("--styles", default="0-6", show_default=True, help="W+ rows taken from the column seed")
    @click.option("--trunc", default=1.0, show_default=True, type=float)
    @click.option("--out", "-o", required=True, type=click.Path(file_okay=False))
    @run_safely
    def mix(source, rows, cols, styles, trunc, out):
        """Style-mixing grid (NVIDIA style_mixing.py layout): row seed with --styles rows from the column seed."""
        from pathlib import Path

        import numpy as np
        import torch

        import generators
        from editing import mix as do_mix
        from generators import images

        G = generators.load(source)
        rseeds, cseeds = images.parse_range(rows), images.parse_range(cols)

        def ws_for(seeds):
            z = torch.from_numpy(np.stack([np.random.RandomState(s).randn(G.z_dim) for s in seeds])).float()
            c = torch.zeros([len(seeds), G.c_dim]) if G.c_dim else None
            return G.mapping(z, c, truncation_psi=trunc)

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        with torch.no_grad():
            wr, wc = ws_for(rseeds), ws_for(cseeds)
            img_r = images.to_uint8(G.synthesis(wr, noise_mode="const"))
            img_c = images.to_uint8(G.synthesis(wc, noise_mode="const"))
            blank = np.full_like(img_r[0], 255)
            tiles = [blank] + list(img_c)
            for i, rs in enumerate(rseeds):
                mixed = do_mix(wr[i:i + 1].repeat(len(cseeds), 1, 1), wc, styles)
                row = images.to_uint8(G.synthesis(mixed, noise_mode="const"))
                tiles += [img_r[i]] + list(row)
                for j, cs in enumerate(cseeds):
                    images.save_image(row[j], out / f"{rs}-{cs}.png")
        images.save_image(images.grid(tiles, cols=len(cseeds) + 1), out / "grid.png")
        click.echo(f"wrote {len(rseeds) * len(cseeds)} mixed images and grid.png to {out} (styles {styles})")
