"""Format-neutral description of what a checkpoint holds.

Every reader turns its file into a :class:`Checkpoint`: named networks, each a
:class:`NetworkSpec` (which class, the constructor kwargs, a state dict in gankit's
naming), plus loose extras (e.g. a rosinality ``latent_avg``). Builders in
``generators.loading`` turn a spec into a module; writers turn a checkpoint into a file.
Keeping this layer plain (JSON-able kwargs + tensors) is what makes every format
convertible to every other one.

gankit's StyleGAN2 naming is NVIDIA stylegan2-ada-pytorch's ``state_dict()`` naming, so
code written for NVIDIA's ``G`` keeps working.

Kwargs schema, kind ``"stylegan2.Generator"``::

    z_dim, c_dim, w_dim, img_resolution, img_channels,
    mapping_kwargs:   num_layers, embed_features, layer_features, activation,
                      lr_multiplier, w_avg_beta
    synthesis_kwargs: architecture ("orig" | "skip" | "resnet"),
                      channels {"4": C4, "8": C8, ...}  (explicit width per resolution),
                      conv_clamp (None or float), num_fp16_res, use_noise, activation,
                      resample_filter (1-D taps, e.g. [1, 3, 3, 1])

Kind ``"stylegan2.Discriminator"``::

    c_dim, img_resolution, img_channels, architecture, channels {"4": ..., "R": ...},
    cmap_dim, conv_clamp, num_fp16_res, activation, resample_filter,
    mbstd_group_size (None = whole batch), mbstd_num_channels,
    mapping_kwargs: num_layers, embed_features, layer_features, activation, lr_multiplier

Kind ``"stylegan1.Generator"`` (parameter naming and conventions: ``generators/stylegan1.py``)::

    z_dim, c_dim, w_dim, img_resolution, img_channels,
    default_truncation_psi, default_truncation_cutoff   (what the original applies by default)
    mapping_kwargs:   num_layers, layer_features, activation, lr_multiplier (TF 0.01,
                      rosinality 1), normalize_latents, w_avg_beta
    synthesis_kwargs: channels {"4": C4, ...}, fused_up [resolutions], shared_noise,
                      use_noise, norm_eps (TF 1e-8, rosinality 1e-5), bias_before_blur,
                      blur_filter (1-D taps or None), activation

Kind ``"stylegan1.Discriminator"``::

    c_dim, img_resolution, img_channels, channels {"4": ..., "R": ...},
    mid_channels {"8": ..., "R": ...}, fc_features, fused_down [resolutions],
    fromrgb_activation, mbstd_group_size (None = whole batch), mbstd_num_channels,
    blur_filter, activation

Kind ``"stylegan3.Generator"`` (NVIDIA stylegan3 naming; ``generators/stylegan3.py``)::

    z_dim, c_dim, w_dim, img_resolution, img_channels,
    mapping_kwargs:   num_layers, lr_multiplier, w_avg_beta
    synthesis_kwargs: channel_base, channel_max, num_layers, num_critical, first_cutoff,
                      first_stopband, last_stopband_rel, margin_size, output_scale,
                      num_fp16_res, conv_kernel (3 = T, 1 = R), filter_size, lrelu_upsampling,
                      use_radial_filters, conv_clamp, magnitude_ema_beta
                      (the paper's formulas turn these into the layer geometry), or explicit:
                      input {channels, size [w, h], sampling_rate, bandwidth},
                      layers [{name, is_torgb, is_critically_sampled, use_fp16, in/out_channels,
                               in/out_size [w, h], in/out/tmp_sampling_rate, in/out_cutoff,
                               in/out_half_width, conv_kernel, conv_clamp, magnitude_ema_beta,
                               up_factor, up_taps, down_factor, down_taps, down_radial,
                               padding [x0, x1, y0, y1]}, ...]   (pickles: from each layer's state)
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict

import torch


class CheckpointError(Exception):
    """A file cannot be read as a checkpoint (unknown kind, truncated, inconsistent)."""


class UnsafeCheckpointError(CheckpointError):
    """A file references a global outside the allow-list; nothing from it was executed."""


@dataclasses.dataclass
class NetworkSpec:
    kind: str                              # e.g. "stylegan2.Generator"
    kwargs: Dict[str, Any]                 # JSON-able constructor kwargs
    state_dict: Dict[str, torch.Tensor]    # gankit (= NVIDIA PyTorch) names

    def num_params(self) -> int:
        return sum(int(t.numel()) for t in self.state_dict.values())


@dataclasses.dataclass
class Checkpoint:
    format: str                                        # "nvidia-pkl", "nvidia-tf", "rosinality", "gankit", ...
    networks: Dict[str, NetworkSpec]                   # "G_ema", "G", "D"
    extras: Dict[str, Any] = dataclasses.field(default_factory=dict)   # latent_avg, opts, ...
    meta: Dict[str, Any] = dataclasses.field(default_factory=dict)     # provenance: source, sha256, notes

    def pick(self, network: str = "G_ema") -> NetworkSpec:
        """The requested network; ``G_ema`` falls back to ``G`` when a file has no EMA copy."""
        if network in self.networks:
            return self.networks[network]
        if network == "G_ema" and "G" in self.networks:
            return self.networks["G"]
        have = ", ".join(sorted(self.networks)) or "none"
        raise CheckpointError(f"network {network!r} not in this {self.format} checkpoint (has: {have})")
