"""``gankit train encoder``: train a pSp / e4e / ReStyle / HyperStyle encoder for a generator.

Defined as a plain click command; the ``train`` group attaches it (``train.add_command(encoder)``).
"""
from __future__ import annotations

import click

from .errors import run_safely


def _ints(value):
    if value is None:
        return None
    try:
        return [int(v) for v in str(value).split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None


@click.command("encoder")
@click.option("--type", "method", required=True, type=click.Choice(["psp", "e4e", "restyle", "hyperstyle"]),
              help="encoder kind")
@click.option("--generator", "-g", "generator", required=True, help="generator checkpoint, registry name or URL")
@click.option("--data", default=None, type=click.Path(exists=True), help="folder/zip of aligned real images")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="output directory")
@click.option("--steps", default=100000, show_default=True, type=int)
@click.option("--batch", default=4, show_default=True, type=int)
@click.option("--lr", default=1e-4, show_default=True, type=float)
@click.option("--input-size", default=256, show_default=True, type=int, help="encoder input resolution")
@click.option("--widths", default=None, help="trunk widths per stage, e.g. 64,128,256,512 (default: paper's)")
@click.option("--depths", default=None, help="units per stage, e.g. 3,4,14,3 (default: paper's)")
@click.option("--head-convs", default=None,
              help="stride-2 convs per map2style head: one int for every row or one per row (default: to 1x1)")
@click.option("--layers-to-tune", default=None, help="HyperStyle: generator weight layers to refine (default: all "
              "non-toRGB)")
@click.option("--hyper-dims", default=None, help="HyperStyle sizes z_dim,hyper_hidden,refine_hidden,refine_out "
              "(default 512,128,256,512)")
@click.option("--backbone", default="ir_se", show_default=True, type=click.Choice(["ir_se", "resnet34"]),
              help="ReStyle trunk")
@click.option("--variant", default="psp", show_default=True, type=click.Choice(["psp", "e4e"]), help="ReStyle rows")
@click.option("--iters", default=5, show_default=True, type=int, help="ReStyle/HyperStyle refinements per batch")
@click.option("--synthetic-fraction", default=0.5, show_default=True, type=float,
              help="share of each batch sampled from G with known w (1.0 without --data)")
@click.option("--truncation", default=1.0, show_default=True, type=float, help="psi of the synthetic samples")
@click.option("--l2-lambda", default=1.0, show_default=True, type=float)
@click.option("--lpips-lambda", default=0.8, show_default=True, type=float, help="LPIPS-alex (if its weights exist)")
@click.option("--id-lambda", default=0.1, show_default=True, type=float,
              help="ArcFace ID (model_ir_se50.pth in the torch cache) else the offline dlib identity loss")
@click.option("--w-norm-lambda", default=0.0, show_default=True, type=float)
@click.option("--latent-lambda", default=1.0, show_default=True, type=float, help="synthetic samples: ||w_hat - w||^2")
@click.option("--delta-norm-lambda", default=2e-4, show_default=True, type=float, help="e4e delta regularizer")
@click.option("--w-discriminator-lambda", default=0.1, show_default=True, type=float, help="e4e latent discriminator")
@click.option("--progressive-start", default=20000, show_default=True, type=int, help="e4e")
@click.option("--progressive-every", default=2000, show_default=True, type=int, help="e4e")
@click.option("--w-encoder", default=None, type=click.Path(exists=True, dir_okay=False),
              help="HyperStyle: trained W encoder to start from")
@click.option("--snapshot-every", default=5000, show_default=True, type=int)
@click.option("--resume", default=None, type=click.Path(exists=True, dir_okay=False), help="snapshot to continue")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--device", default="cpu", show_default=True)
@run_safely
def encoder(method, generator, data, out_dir, steps, batch, lr, input_size, widths, depths, head_convs,
            layers_to_tune, hyper_dims, backbone, variant, iters,
            synthetic_fraction, truncation, l2_lambda, lpips_lambda, id_lambda, w_norm_lambda, latent_lambda,
            delta_norm_lambda, w_discriminator_lambda, progressive_start, progressive_every, w_encoder,
            snapshot_every, resume, seed, device):
    """Train an encoder for GENERATOR (frozen); snapshots, final.pt and log.jsonl go to --out."""
    import generators
    from encoders.training import TrainConfig, train
    G = generators.load(generator, device=device)
    hc = _ints(head_convs)
    hyper = {}
    if layers_to_tune is not None:
        hyper["layers_to_tune"] = _ints(layers_to_tune)
    if hyper_dims is not None:
        dims = _ints(hyper_dims)
        if len(dims) != 4:
            raise click.BadParameter(f"--hyper-dims needs 4 integers, got {hyper_dims!r}")
        hyper.update(zip(("z_dim", "hyper_hidden", "refine_hidden", "refine_out"), dims))
    cfg = TrainConfig(method=method, steps=steps, batch=batch, lr=lr, input_size=input_size, widths=_ints(widths),
                      depths=_ints(depths), head_convs=(hc[0] if hc and len(hc) == 1 else hc),
                      hyper=hyper, backbone=backbone, variant=variant, iters=iters,
                      synthetic_fraction=synthetic_fraction, truncation=truncation, l2_lambda=l2_lambda,
                      lpips_lambda=lpips_lambda, id_lambda=id_lambda, w_norm_lambda=w_norm_lambda,
                      latent_lambda=latent_lambda, delta_norm_lambda=delta_norm_lambda,
                      w_discriminator_lambda=w_discriminator_lambda, progressive_start=progressive_start,
                      progressive_every=progressive_every, snapshot_every=snapshot_every, seed=seed,
                      w_encoder=w_encoder)
    logs = train(G, cfg, out_dir, data=data, device=device, resume=resume)
    if logs:
        click.echo(f"trained {len(logs)} steps, last loss {logs[-1]['loss']:.4f}; checkpoint {out_dir}/final.pt")
