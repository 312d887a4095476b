"""Helper for tests/test_training.py: one tiny StyleGAN2+ADA run, launched by the test either in this
process (``train(out, batch_gpu)``) or under ``torchrun --nproc_per_node 2`` (``python this.py OUT``).

Both runs use the same options and synthetic dataset, so the multi-process run must end with the
same weights as the single-process one that runs the same rounds one after the other.
"""
import sys

import numpy as np
import torch

STEPS = 6
SNAP_STEPS = 3
BATCH = 8


def make_dataset():
    """16 images of 16x16: a random colour per image plus a horizontal ramp (different per image)."""
    from generators.dataset import ImageDataset
    rng = np.random.default_rng(1)
    base = rng.integers(40, 216, size=(16, 3, 1, 1)).astype(np.float32)
    ramp = np.linspace(-30, 30, 16, dtype=np.float32)[None, None, None, :] * rng.choice([-1, 1], (16, 1, 1, 1))
    return ImageDataset(np.clip(base + ramp + np.zeros((1, 1, 16, 1)), 0, 255).astype(np.uint8))


def make_options(out, batch_gpu=4):
    from generators.training import TrainOptions
    # ADA on with adaptive p (interval 2, fast rate), lazy R1 and path length both inside the run; a
    # snapshot after step 3 falls inside an ADA interval (partial sign sums on every process).
    return TrainOptions(out=str(out), config="stylegan2", resolution=16, batch=BATCH, batch_gpu=batch_gpu,
                        kimg=STEPS * BATCH / 1000, snap_kimg=SNAP_STEPS * BATCH / 1000, seed=3, z_dim=32, w_dim=32,
                        channels={4: 32, 8: 32, 16: 16}, aug="ada", p=0.2, ada_kimg=0.5, ada_interval=2,
                        target=0.0, g_reg_interval=2, d_reg_interval=2, grid=2, log_every=1,
                        deterministic=True, device="cpu")


def train(out, batch_gpu=4, resume=None):
    from generators.training import Trainer
    return Trainer(make_options(out, batch_gpu), resume=resume, dataset=make_dataset(), progress=False).run()


if __name__ == "__main__":
    torch.set_num_threads(1)
    train(sys.argv[1])
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
