"""From a raw batch of the shard stream to the loss: the batch SmolVLA expects (with `--augment`'s
jitter), the temporal weight of each sample, and the weighted flow-matching loss. Training
(`weighted_loss`) and the val loss (sums over many batches) share one set of sums, `loss_sums`."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from train.data import ACTION_KEY, PAD_KEY, STATE_KEY, DataSpec


def to_policy_batch(
    raw: dict[str, Any], spec: DataSpec, device: torch.device, *, augment: bool = False
) -> dict[str, Any]:
    """The batch keys SmolVLA expects: images float [0,1] (B,3,H,W), state, action, action_is_pad, task."""
    batch: dict[str, Any] = {}
    for key in spec.image_keys:
        images = raw[key].to(device, non_blocking=True).float().div_(255.0)
        if augment:
            images = color_jitter(images)
        batch[key] = images
    state = raw[STATE_KEY].to(device, non_blocking=True)
    if augment:
        state = gripper_jitter(state, spec)
    batch[STATE_KEY] = state
    batch[ACTION_KEY] = raw[ACTION_KEY].to(device, non_blocking=True)
    batch[PAD_KEY] = raw[PAD_KEY].to(device, non_blocking=True)
    batch["task"] = list(raw["task"])
    return batch


def color_jitter(images: torch.Tensor, strength: float = 0.2) -> torch.Tensor:
    """Per-image brightness, contrast and saturation in [1-strength, 1+strength] (global torch RNG)."""
    b = images.shape[0]

    def factor() -> torch.Tensor:
        return (1 + strength * (2 * torch.rand(b, 1, 1, 1) - 1)).to(images.device)

    images = images * factor()
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    images = (images - mean) * factor() + mean
    gray = 0.299 * images[:, 0:1] + 0.587 * images[:, 1:2] + 0.114 * images[:, 2:3]
    images = (images - gray) * factor() + gray
    return images.clamp_(0.0, 1.0)


def gripper_jitter(state: torch.Tensor, spec: DataSpec, scale: float = 0.05) -> torch.Tensor:
    """Gaussian noise on the gripper dims, sigma = `scale` x the dim's std (data units)."""
    dims = spec.gripper_state_dims()
    if not dims:
        return state
    std = torch.tensor([spec.stats[STATE_KEY]["std"][d] for d in dims], dtype=state.dtype)
    noise = (torch.randn(state.shape[0], len(dims)) * std * scale).to(state.device, state.dtype)
    state = state.clone()
    state[:, dims] += noise
    return state


def temporal_weights(progress: torch.Tensor, alpha: float) -> torch.Tensor:
    """weight = 1 + alpha * progress^2 (schemas.sample.temporal_weight), per sample."""
    return 1.0 + alpha * progress.to(torch.float32) ** 2


def batch_weights(raw: dict[str, Any], alpha: float, device: torch.device) -> torch.Tensor:
    """The temporal weight of each sample of a raw batch (its `progress` list), on `device`."""
    return temporal_weights(torch.tensor(raw["progress"], dtype=torch.float32), alpha).to(device)


def loss_sums(
    per_sample: torch.Tensor, weights: torch.Tensor, action_is_pad: torch.Tensor | None, action_dim: int
) -> torch.Tensor:
    """[sum_i w_i n_i l_i, sum_i w_i n_i, sum_i n_i l_i, sum_i n_i] of one batch: sample i's per-sample
    loss l_i (from `SmolVLAPolicy.forward(batch, reduction="none")`) is the mean over its n_i valid
    (step, dim) elements, w_i its temporal weight. Ratios of these sums are the losses (`weighted_loss`);
    sums over batches and ranks, the val loss of many batches."""
    if action_is_pad is None:
        counts = torch.full_like(per_sample, float(action_dim))
    else:
        counts = ((~action_is_pad).sum(dim=1) * action_dim).clamp_min(1).to(per_sample.dtype)
    weights = weights.to(per_sample.dtype)
    sums = per_sample * counts
    return torch.stack([(weights * sums).sum(), (weights * counts).sum(), sums.sum(), counts.sum()])


def weighted_loss(
    per_sample: torch.Tensor, weights: torch.Tensor, action_is_pad: torch.Tensor | None, action_dim: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(weighted, unweighted) loss from `SmolVLAPolicy.forward(batch, reduction="none")`.

    Every valid element of sample i carries the sample's temporal weight w_i (`loss_sums`), so

        weighted = sum_i w_i n_i l_i / sum_i w_i n_i = mean_i(v_i l_i),  v_i = w_i n_i / mean_j(w_j n_j)

    (v: per-sample weights normalised to mean 1 over the batch). With alpha = 0 (all w_i = 1) this is
    exactly lerobot's mean loss (`reduction="mean"`), padded chunks included; without padding it is
    the plain weighted mean sum_i w_i l_i / sum_i w_i. `unweighted` is lerobot's mean loss.
    """
    sums = loss_sums(per_sample, weights, action_is_pad, action_dim)
    return sums[0] / sums[1], sums[2] / sums[3]


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Mixed precision in `dtype` on `device` (`train.model.autocast_dtype`); None: full precision."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
