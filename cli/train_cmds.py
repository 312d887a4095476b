"""``gankit train generator`` and ``gankit dataset pack``.

Multi-process training: ``torchrun --nproc_per_node N $(which gankit) train generator ...`` (or
``torchrun --nproc_per_node N -m cli.main train generator ...``); every process reads the dataset,
rank 0 writes the snapshots and log.
"""
from __future__ import annotations

import json

import click


def _channels(spec):
    """'4:256,8:128,...' -> {4: 256, 8: 128, ...}"""
    if not spec:
        return None
    out = {}
    for part in spec.split(","):
        try:
            res, ch = part.split(":")
            out[int(res)] = int(ch)
        except ValueError:
            raise click.BadParameter(f"expected RES:CHANNELS pairs like 4:256,8:128, got {part!r}") from None
    return out


def make_train_group(run_safely, CLIError):
    @click.group()
    def train():
        """Train generators (and encoders)."""

    @train.command("generator")
    @click.option("--config", default="stylegan2", show_default=True,
                  type=click.Choice(["stylegan2", "stylegan3-t", "stylegan3-r", "stylegan1"]))
    @click.option("--data", required=True, help="image folder or dataset_tool zip")
    @click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="run folder")
    @click.option("--resolution", default=64, show_default=True, type=int)
    @click.option("--kimg", default=1000.0, show_default=True, type=float, help="train length in thousands of images")
    @click.option("--snap", "snap_kimg", default=50.0, show_default=True, type=float, help="snapshot every N kimg")
    @click.option("--batch", default=32, show_default=True, type=int, help="global batch")
    @click.option("--batch-gpu", default=None, type=int, help="images per process per round")
    @click.option("--seed", default=0, show_default=True, type=int)
    @click.option("--mirror/--no-mirror", default=False, show_default=True, help="x-flip the dataset")
    @click.option("--labels", default=None, type=click.Path(dir_okay=False), help="CSV of labels: conditional model")
    @click.option("--label-columns", default=None, help="comma-separated CSV columns to use")
    @click.option("--cond", is_flag=True, help="conditional model from the dataset's own dataset.json labels")
    @click.option("--aug", default="ada", show_default=True, type=click.Choice(["ada", "fixed", "noaug"]))
    @click.option("--p", "aug_p", default=0.0, show_default=True, type=float, help="initial/fixed augment probability")
    @click.option("--target", default=0.6, show_default=True, type=float, help="ADA target r_t")
    @click.option("--gamma", default=None, type=float, help="R1 weight (default: 0.0002 res^2/batch; SG1: 10)")
    @click.option("--glr", default=None, type=float)
    @click.option("--dlr", default=None, type=float)
    @click.option("--cbase", default=16384, show_default=True, type=int)
    @click.option("--cmax", default=512, show_default=True, type=int)
    @click.option("--channels", default=None, help="explicit widths, e.g. 4:256,8:128,16:64,32:32,64:32")
    @click.option("--z-dim", default=512, show_default=True, type=int)
    @click.option("--w-dim", default=512, show_default=True, type=int)
    @click.option("--map", "map_layers", default=None, type=int, help="mapping layers (default per config)")
    @click.option("--loss", default="r1", show_default=True, type=click.Choice(["r1", "wgan-gp"]),
                  help="StyleGAN1 loss")
    @click.option("--phase-kimg", default=100.0, show_default=True, type=float, help="StyleGAN1 kimg per phase")
    @click.option("--max-images", default=None, type=int)
    @click.option("--deterministic", is_flag=True, help="deterministic algorithms (exact resume on CPU)")
    @click.option("--device", default="auto", show_default=True)
    @click.option("--resume", default=None, type=click.Path(exists=True),
                  help="run folder or training-state-*.pt to continue")
    @run_safely
    def generator(config, data, out, resolution, kimg, snap_kimg, batch, batch_gpu, seed, mirror, labels,
                  label_columns, cond, aug, aug_p, target, gamma, glr, dlr, cbase, cmax, channels, z_dim, w_dim, map_layers,
                  loss, phase_kimg, max_images, deterministic, device, resume):
        """Train a StyleGAN1/2/3 generator on a folder or zip of images."""
        from generators.dataset import DatasetError
        from generators.training import TrainingError, TrainOptions, Trainer
        opts = TrainOptions(
            data=data, out=out, config=config, resolution=resolution, kimg=kimg, snap_kimg=snap_kimg, batch=batch,
            batch_gpu=batch_gpu, seed=seed, mirror=mirror, labels=labels,
            label_columns=label_columns.split(",") if label_columns else None, use_labels=cond, aug=aug, p=aug_p, target=target,
            gamma=gamma, glr=glr, dlr=dlr, cbase=cbase, cmax=cmax, channels=_channels(channels), z_dim=z_dim,
            w_dim=w_dim, map_layers=map_layers, loss=loss, phase_kimg=phase_kimg, max_images=max_images,
            deterministic=deterministic, device=device)
        try:
            last = Trainer(opts, resume=resume).run()
        except (TrainingError, DatasetError) as e:
            raise CLIError(str(e).splitlines()[0]) from None
        click.echo(f"last snapshot: {last}")

    from cli.encoder_cmds import encoder
    train.add_command(encoder)
    return train


def make_dataset_group(run_safely, CLIError):
    @click.group()
    def dataset():
        """Prepare training datasets."""

    @dataset.command("pack")
    @click.argument("src", type=click.Path(exists=True))
    @click.argument("dst", type=click.Path(dir_okay=False))
    @click.option("--resolution", required=True, type=int)
    @click.option("--labels", default=None, type=click.Path(exists=True, dir_okay=False), help="CSV of labels")
    @click.option("--label-columns", default=None, help="comma-separated CSV columns to keep")
    @click.option("--max-images", default=None, type=int)
    @run_safely
    def pack(src, dst, resolution, labels, label_columns, max_images):
        """Write NVIDIA's dataset_tool zip (PNG + dataset.json) from a folder or zip."""
        from generators.dataset import pack as pack_dataset
        n = pack_dataset(src, dst, resolution, labels=labels,
                         label_columns=label_columns.split(",") if label_columns else None, max_images=max_images)
        click.echo(json.dumps({"images": n, "out": str(dst), "resolution": resolution}))

    return dataset
