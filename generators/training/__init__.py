"""Generator training: datasets in, snapshots out (StyleGAN1 progressive, StyleGAN2/ADA, StyleGAN3).

    from generators.training import TrainOptions, train
    train(TrainOptions(data="faces/", out="runs/x", config="stylegan2", resolution=64, kimg=100))
"""
from .augment import AdaptiveP, AugmentPipe
from .configs import CONFIGS, TrainOptions, resolved
from .loop import Trainer, TrainingError, latest_state, train

__all__ = ["TrainOptions", "Trainer", "train", "TrainingError", "AugmentPipe", "AdaptiveP", "CONFIGS",
           "resolved", "latest_state"]
