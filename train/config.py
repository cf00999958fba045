"""`b1k-train`'s options (`TrainConfig`, one field per CLI option), what a run returns, and why it stops."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.r1pro import RELATIVE_ACTION_GROUPS
from train.model import DEFAULT_PRETRAINED


class TrainError(RuntimeError):
    """A training run cannot start or must stop; the message says why."""


class NonFiniteLossError(TrainError):
    """The loss (or gradient) became NaN/inf; the run stopped without saving."""

    def __init__(self, message: str, step: int, last_checkpoint: Path | None):
        super().__init__(message)
        self.step = step
        self.last_checkpoint = last_checkpoint


@dataclass
class TrainConfig:
    """Every option of `b1k-train` (same names, same defaults)."""

    shards: list[str]
    output_dir: Path = Path("outputs/b1k-smolvla")
    pretrained_model: str | None = DEFAULT_PRETRAINED
    vlm_model: str | None = None
    batch_size: int = 8  # per process
    max_steps: int = 30_000
    lr: float = 1e-4
    chunk_size: int = 50
    temporal_alpha: float | None = None  # None: the manifest's alpha
    freeze_vision: bool | None = None  # None: the checkpoint's / SmolVLA preset's setting
    train_expert_only: bool | None = None
    num_workers: int = 8
    device: str = "auto"
    gpu_id: int | None = None
    seed: int = 1000
    save_every: int = 1000
    keep_last: int = 3
    log_every: int = 10
    val_every: int = 500
    val_batches: int = 50
    eval_every: int = 0  # b1k-eval's action error on the val split every N steps (0 = never)
    eval_frames: int = 256  # frames of that evaluation (the same ones every time)
    wandb_project: str | None = None  # log to Weights & Biases (optional extra)
    wandb_disable: bool = False
    resume: str | None = None  # "last" or a checkpoint dir
    force_resume: bool = False  # resume although the shard sets or options changed (each logged)
    warmup_steps: int = 1_000
    decay_steps: int = 30_000
    decay_lr: float = 2.5e-6
    grad_clip: float = 10.0
    precision: str = "auto"
    augment: bool = False
    shuffle_buffer: int = 1000
    stratify: bool = True  # episode-stratified picks from the shuffle buffer
    task_balance: bool = False  # repeat a small task's samples so that it weighs like the largest
    skip_corrupt: bool = False  # skip (and count) corrupt shards instead of stopping
    allow_split_overlap: bool = False  # train although episodes are in both train and val (logged)
    progress: bool = True
    log_sample_keys: bool = False
    action_repr: str = "absolute"  # or "relative" (train.recipes)
    action_norm: str = "mean_std"  # or "quantile", "per_timestep"
    relative_groups: list[str] = field(default_factory=lambda: list(RELATIVE_ACTION_GROUPS))
    ema_decay: float | None = None  # checkpoints hold the EMA of the weights (None: the weights)

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        out["output_dir"] = str(self.output_dir)
        return out


@dataclass
class TrainResult:
    step: int
    last_checkpoint: Path | None
    losses: dict[int, float] = field(default_factory=dict)  # step -> weighted loss (this rank)
    load_report: Any = None
