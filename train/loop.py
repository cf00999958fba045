"""The training loop: one readable function, `train(TrainConfig)`.

Per step: a batch from the shard stream -> images float [0,1] CHW -> lerobot's preprocessor
(normalise with the manifest's stats, tokenise the task) -> `SmolVLAPolicy.forward(batch,
reduction="none")` -> temporal weighting -> backward -> grad clip -> AdamW step -> cosine-with-warmup
schedule (lerobot's SmolVLA presets). Logs as JSONL (plus tqdm, TensorBoard when installed), val
loss, checkpoints in lerobot's layout:

    <output-dir>/checkpoints/<step>/pretrained_model/   SmolVLAPolicy.from_pretrained(...) and
        config.json, model.safetensors,                  lerobot's processor pipelines load it as is
        policy_preprocessor*.json/.safetensors, policy_postprocessor*..., b1k_provenance.json
    <output-dir>/checkpoints/<step>/training_state/     lerobot's save_training_state (optimizer,
        ..., b1k_data_position.json                      scheduler, step, RNG) + our data position
    <output-dir>/checkpoints/last -> <step>

Determinism: the global torch RNG is re-seeded from (seed, rank, step) before every step, and the data
stream is a pure function of (seed, consumed batches), so `--resume` continues exactly where an
uninterrupted run would be. Multi-GPU/multi-node through `torchrun` (DDP); only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from schemas.r1pro import RELATIVE_ACTION_GROUPS
from shards.codec import decodes_into_place
from shards.lock import FolderLock, FolderLockedError
from train import data as data_mod
from train.data import ACTION_KEY, PAD_KEY, STATE_KEY, DataSpec, DataSpecError
from train.model import DEFAULT_PRETRAINED, autocast_dtype, build_policy, count_parameters, make_processors
from train.recipes import EMA, RAW_WEIGHTS_FILE, ActionRecipe, normalizer_stats
from train.resume import check_resume

logger = logging.getLogger(__name__)

PROVENANCE_FILE = "b1k_provenance.json"
TRAIN_CONFIG_FILE = "b1k_train_config.json"
DATA_POSITION_FILE = "b1k_data_position.json"
LOG_FILE = "train_log.jsonl"


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


# ---------------------------------------------------------------------------------------------
# Loss


def temporal_weights(progress: torch.Tensor, alpha: float) -> torch.Tensor:
    """weight = 1 + alpha * progress^2 (schemas.sample.temporal_weight), per sample."""
    return 1.0 + alpha * progress.to(torch.float32) ** 2


def weighted_loss(
    per_sample: torch.Tensor, weights: torch.Tensor, action_is_pad: torch.Tensor | None, action_dim: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(weighted, unweighted) loss from `SmolVLAPolicy.forward(batch, reduction="none")`.

    Sample i's per-sample loss l_i is the mean over its n_i valid (step, dim) elements. Every valid
    element of sample i carries the sample's temporal weight w_i, so

        weighted = sum_i w_i n_i l_i / sum_i w_i n_i = mean_i(v_i l_i),  v_i = w_i n_i / mean_j(w_j n_j)

    (v: per-sample weights normalised to mean 1 over the batch). With alpha = 0 (all w_i = 1) this is
    exactly lerobot's mean loss (`reduction="mean"`), padded chunks included; without padding it is
    the plain weighted mean sum_i w_i l_i / sum_i w_i. `unweighted` is lerobot's mean loss.
    """
    if action_is_pad is None:
        counts = torch.full_like(per_sample, float(action_dim))
    else:
        counts = ((~action_is_pad).sum(dim=1) * action_dim).clamp_min(1).to(per_sample.dtype)
    weights = weights.to(per_sample.dtype)
    sums = per_sample * counts
    weighted = (weights * sums).sum() / (weights * counts).sum()
    unweighted = sums.sum() / counts.sum()
    return weighted, unweighted


# ---------------------------------------------------------------------------------------------
# Distributed / device


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def init_distributed(device_kind: str) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
    return Dist(rank, world, local)


def resolve_device(cfg: TrainConfig, local_rank: int, world: int) -> torch.device:
    cuda = torch.cuda.is_available()
    if cfg.gpu_id is not None:
        if not cuda:
            raise TrainError(
                f"--gpu-id {cfg.gpu_id} given but CUDA is not available on this machine (use --device cpu)"
            )
        if world > 1:
            raise TrainError("--gpu-id cannot be used under torchrun (each rank uses cuda:LOCAL_RANK)")
        if cfg.gpu_id >= torch.cuda.device_count():
            raise TrainError(f"--gpu-id {cfg.gpu_id}: only {torch.cuda.device_count()} CUDA device(s)")
        return torch.device(f"cuda:{cfg.gpu_id}")
    wanted = cfg.device
    if wanted == "auto":
        wanted = "cuda" if cuda else "cpu"
    device = torch.device(wanted)
    if device.type == "cuda":
        if not cuda:
            raise TrainError(f"--device {cfg.device} given but CUDA is not available on this machine")
        if world > 1 or device.index is None:
            device = torch.device(f"cuda:{local_rank if world > 1 else 0}")
        torch.cuda.set_device(device)
    return device


def limit_cpu_threads(device: torch.device, num_workers: int, world: int) -> None:
    """On CPU, leave the DataLoader workers their cores: torch's intra-op threads spinning on every
    core against the decoding workers made steps ~10x slower on a 2-core machine. OMP_NUM_THREADS,
    when set, wins."""
    if device.type != "cpu" or "OMP_NUM_THREADS" in os.environ:
        return
    threads = max(1, (os.cpu_count() or 1) // world - num_workers)
    torch.set_num_threads(threads)
    logger.info("CPU training: %d torch thread(s) per process beside %d data worker(s)", threads, num_workers)


def _step_seed(seed: int, rank: int, step: int) -> int:
    return data_mod._seed(seed, rank, step, 0x57E9) % (2**63 - 1)


# ---------------------------------------------------------------------------------------------
# Checkpoints


def checkpoints_dir(output_dir: Path) -> Path:
    return Path(output_dir) / "checkpoints"


def list_checkpoints(output_dir: Path) -> list[Path]:
    root = checkpoints_dir(output_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and not p.is_symlink() and p.name.isdigit()]
    return sorted(found, key=lambda p: int(p.name))


def last_checkpoint(output_dir: Path) -> Path | None:
    link = checkpoints_dir(output_dir) / "last"
    if link.exists():
        return link.resolve()
    found = list_checkpoints(output_dir)
    return found[-1] if found else None


def _point_last(checkpoint: Path) -> None:
    link = checkpoint.parent / "last"
    tmp = checkpoint.parent / ".last.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(checkpoint.name)
    os.replace(tmp, link)


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def _link_files(source: Path, target: Path) -> None:
    """Make the policy loadable from the step dir itself as well as from lerobot's
    `<step>/pretrained_model` layout: hard links, so no second copy of the weights (copies where
    the filesystem has no hard links)."""
    for path in source.iterdir():
        if path.is_file():
            try:
                os.link(path, target / path.name)
            except OSError:
                shutil.copy2(path, target / path.name)


def save_checkpoint(
    output_dir: Path,
    step: int,
    max_steps: int,
    *,
    policy,
    preprocessor,
    postprocessor,
    optimizer,
    scheduler,
    provenance: dict,
    train_config: dict,
    data_position: dict,
    keep_last: int,
    world: int,
    batch_size: int,
    ema: EMA | None = None,
) -> Path:
    """Write checkpoint `step` (temporary dir, then rename: complete or absent), point `last` at it,
    keep the newest `keep_last`.

    Layout: lerobot's (`pretrained_model/` + `training_state/`), with the policy and processor files
    also at the top of the step dir, so `SmolVLAPolicy.from_pretrained(<output>/checkpoints/last)` and
    `.../last/pretrained_model` both load it."""
    from lerobot.common.train_utils import get_step_checkpoint_dir, save_training_state

    final = get_step_checkpoint_dir(Path(output_dir), max_steps, step)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    pretrained = tmp / "pretrained_model"
    with ema.swapped_in() if ema is not None else contextlib.nullcontext():  # the EMA weights, if any
        policy.save_pretrained(pretrained)
    preprocessor.save_pretrained(pretrained)
    postprocessor.save_pretrained(pretrained)
    _write_json(pretrained / PROVENANCE_FILE, {**provenance, "step": step})
    _write_json(pretrained / TRAIN_CONFIG_FILE, train_config)
    _link_files(pretrained, tmp)
    save_training_state(tmp, step, optimizer, scheduler, num_processes=world, batch_size=batch_size)
    _write_json(tmp / "training_state" / DATA_POSITION_FILE, data_position)
    if ema is not None:  # the raw weights, which --resume continues from
        from safetensors.torch import save_file

        save_file(ema.raw_state(), str(tmp / "training_state" / RAW_WEIGHTS_FILE))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _point_last(final)
    if keep_last > 0:
        for old in list_checkpoints(output_dir)[:-keep_last]:
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
    return final


def data_order(cfg: TrainConfig, world: int, spec: DataSpec, task_repeats: dict | None) -> dict:
    """What decides the order of the samples (`train.resume.DATA_ORDER`): saved with every checkpoint,
    compared by `--resume`."""
    return {
        "manifests": [data_mod.manifest_fingerprint(src.manifest) for src in spec.sources],
        "seed": cfg.seed,
        "batch_size": cfg.batch_size,
        "world_size": world,
        "num_workers": cfg.num_workers,
        "shuffle_buffer": cfg.shuffle_buffer,
        "stratify": cfg.stratify,
        "task_repeats": task_repeats,
    }


def _resolve_resume(cfg: TrainConfig) -> Path:
    if cfg.resume in (None, ""):
        raise TrainError("internal: no resume target")
    if cfg.resume == "last":
        found = last_checkpoint(cfg.output_dir)
        if found is None:
            raise TrainError(f"--resume: no checkpoint under {checkpoints_dir(cfg.output_dir)}")
        return found
    path = Path(cfg.resume)
    if path.name == "pretrained_model":
        path = path.parent
    if not (path / "training_state").is_dir() or not (path / "pretrained_model").is_dir():
        raise TrainError(
            f"--resume {cfg.resume}: not a checkpoint dir (expected pretrained_model/ and training_state/)"
        )
    return path.resolve()


# ---------------------------------------------------------------------------------------------
# Batches


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


# ---------------------------------------------------------------------------------------------
# Logging


class RunLog:
    """JSONL log (+ TensorBoard when installed) written by rank 0 only."""

    def __init__(self, output_dir: Path, enabled: bool, resume_step: int | None):
        self.enabled = enabled
        self.path = Path(output_dir) / LOG_FILE
        self.tb = None
        self.wandb = None  # a wandb run (train.tracking), set by the loop with --wandb-project
        if not enabled:
            return
        if resume_step is not None and self.path.exists():
            # Entries past the checkpoint we resume from belong to the interrupted run: drop them.
            kept = [
                line
                for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= resume_step
            ]
            self.path.write_text("".join(line + "\n" for line in kept))
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(Path(output_dir) / "tensorboard"))
        except Exception:  # tensorboard not installed
            self.tb = None

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
        if self.tb is not None:
            prefix = record.get("kind", "train")
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("step", "kind"):
                    self.tb.add_scalar(f"{prefix}/{key}", value, record["step"])
        if self.wandb is not None:
            from train.tracking import log_record

            log_record(self.wandb, record)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.enabled:  # the run's curves as a PNG next to the log (train.curves)
            from train.curves import CURVES_FILE, plot_curves

            try:
                plot_curves(self.path, self.path.parent / CURVES_FILE)
            except Exception as exc:  # a plot must never fail a finished run
                logger.warning("could not plot the run's curves: %s", exc)
        if self.wandb is not None:
            self.wandb.finish()


# ---------------------------------------------------------------------------------------------
# Validation


@torch.no_grad()
def evaluate(
    policy,
    preprocessor,
    loader,
    spec: DataSpec,
    *,
    device,
    alpha,
    seed,
    rank,
    dist_info: Dist,
    max_batches,
    amp_dtype,
):
    """Loss on the val split (fixed noise), summed over ranks: {val_loss, val_weighted_loss, val_samples}."""
    was_training = policy.training
    policy.eval()
    torch.manual_seed(data_mod._seed(seed, rank, 0x7A1) % (2**63 - 1))
    totals = torch.zeros(4, dtype=torch.float64)  # sum w*n*l, sum w*n, sum n*l, sum n ; then samples
    samples = 0
    for index, raw in enumerate(data_mod.batches(iter(loader), pin_memory=device.type == "cuda", copy=False)):
        if max_batches > 0 and index >= max_batches:
            break
        batch = preprocessor(to_policy_batch(raw, spec, device))
        weights = temporal_weights(
            raw["progress"] if isinstance(raw["progress"], torch.Tensor) else torch.tensor(raw["progress"]),
            alpha,
        ).to(device)
        with _autocast(device, amp_dtype):
            per_sample, _ = policy.forward(batch, reduction="none")
        per_sample = per_sample.float()
        counts = ((~batch[PAD_KEY]).sum(dim=1) * spec.action_dim).clamp_min(1).float()
        totals += (
            torch.stack(
                [
                    (weights * counts * per_sample).sum(),
                    (weights * counts).sum(),
                    (counts * per_sample).sum(),
                    counts.sum(),
                ]
            )
            .double()
            .cpu()
        )
        samples += per_sample.shape[0]
    stats = torch.cat([totals, torch.tensor([float(samples)], dtype=torch.float64)])
    if dist_info.enabled:
        stats = stats.to(device if device.type == "cuda" else "cpu")
        dist.all_reduce(stats)
        stats = stats.cpu()
    if was_training:
        policy.train()
    if stats[4] == 0:
        return None
    return {
        "val_weighted_loss": float(stats[0] / stats[1]),
        "val_loss": float(stats[2] / stats[3]),
        "val_samples": int(stats[4]),
    }


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# ---------------------------------------------------------------------------------------------
# The loop


def train(cfg: TrainConfig) -> TrainResult:
    """Run (or resume) a training run; returns the final step and checkpoint."""
    from lerobot.common.train_utils import load_training_state
    from lerobot.utils.random_utils import set_seed

    requested_cuda = (
        cfg.gpu_id is not None
        or cfg.device.startswith("cuda")
        or (cfg.device == "auto" and torch.cuda.is_available())
    )
    dist_info = init_distributed("cuda" if requested_cuda and torch.cuda.is_available() else "cpu")
    try:
        # One run per output dir (rank 0 holds the lock for all ranks): two runs would interleave
        # their checkpoints and logs.
        with FolderLock(cfg.output_dir, "b1k-train") if dist_info.main else contextlib.nullcontext():
            return _train(cfg, dist_info, set_seed, load_training_state)
    except FolderLockedError as exc:
        raise TrainError(f"--output-dir {exc}") from None
    finally:
        if dist_info.enabled and dist.is_initialized():
            dist.destroy_process_group()


def _train(cfg: TrainConfig, dist_info: Dist, set_seed, load_training_state) -> TrainResult:
    rank, world = dist_info.rank, dist_info.world
    device = resolve_device(cfg, dist_info.local_rank, world)
    limit_cpu_threads(device, cfg.num_workers, world)
    if cfg.num_workers == 0:  # this process decodes the images (workers do so themselves)
        data_mod.retain_freed_memory()
    if cfg.batch_size < 1 or cfg.max_steps < 1:
        raise TrainError("--batch-size and --max-steps must be >= 1")
    spec = data_mod.open_data(cfg.shards, task_balance=cfg.task_balance)
    balance = data_mod.task_balance_rows(spec)  # [] without --task-balance
    task_repeats = {row["task"]: row["repeats"] for row in balance} if cfg.task_balance else None
    if balance and dist_info.main:
        logger.info("--task-balance: each sample of a task streams r times in a row per epoch")
        for row in balance:
            logger.info(
                f"  {row['samples']:>9} samples x {row['repeats']:>3} = {row['effective']:>9} per epoch: {row['task']}"
            )
    if cfg.chunk_size > spec.horizon:
        raise DataSpecError(
            f"--chunk-size {cfg.chunk_size} is above the stored horizon {spec.horizon} of the shard set "
            f"(re-run b1k-preprocess with --horizon >= {cfg.chunk_size}, or lower --chunk-size)"
        )
    if cfg.chunk_size < 1:
        raise DataSpecError("--chunk-size must be >= 1")
    alpha = spec.manifest_alpha if cfg.temporal_alpha is None else float(cfg.temporal_alpha)
    output_dir = Path(cfg.output_dir)
    recipe = ActionRecipe(cfg.action_repr, cfg.action_norm, tuple(cfg.relative_groups))
    recipe.check(spec)
    norm_stats, chunk_stats = normalizer_stats(spec, recipe, cfg.chunk_size)

    resume_dir: Path | None = None
    if cfg.resume:
        resume_dir = _resolve_resume(cfg)
    elif list_checkpoints(output_dir):
        raise TrainError(
            f"{output_dir} already holds checkpoints: pass --resume to continue, or another --output-dir"
        )

    set_seed(cfg.seed)
    if resume_dir is not None:
        policy, report = build_policy(
            spec,
            pretrained=str(resume_dir / "pretrained_model"),
            vlm_model=None,
            chunk_size=cfg.chunk_size,
            device=str(device),
            freeze_vision=cfg.freeze_vision,
            train_expert_only=cfg.train_expert_only,
        )
    else:
        policy, report = build_policy(
            spec,
            pretrained=cfg.pretrained_model,
            vlm_model=cfg.vlm_model,
            chunk_size=cfg.chunk_size,
            device=str(device),
            freeze_vision=cfg.freeze_vision,
            train_expert_only=cfg.train_expert_only,
        )
    pc = policy.config
    pc.optimizer_lr = cfg.lr
    pc.optimizer_grad_clip_norm = cfg.grad_clip
    pc.scheduler_warmup_steps = cfg.warmup_steps
    pc.scheduler_decay_steps = cfg.decay_steps
    pc.scheduler_decay_lr = cfg.decay_lr
    preprocessor, postprocessor = make_processors(pc, spec, recipe, norm_stats, chunk_stats)
    total, trainable = count_parameters(policy)
    if dist_info.main:
        logger.info(
            "images: JPEGs decoded straight into the batch buffers (shards._jpeg)"
            if decodes_into_place()
            else "images: decoded with torchvision and copied into the batch buffers (shards._jpeg is not "
            "built: re-install with a C compiler and libjpeg's headers, e.g. libjpeg-dev: a 13-19% faster loader)"
        )
        logger.info(report.summary())
        logger.info(
            f"policy: {total:,} parameters, {trainable:,} trainable; device {device}, world size {world}"
        )

    optimizer = pc.get_optimizer_preset().build(policy.get_optim_params())
    scheduler = pc.get_scheduler_preset().build(optimizer, cfg.max_steps)
    step = 0
    if resume_dir is not None:
        step, optimizer, scheduler = load_training_state(resume_dir, optimizer, scheduler)
        position = json.loads((resume_dir / "training_state" / DATA_POSITION_FILE).read_text())
        saved_config = resume_dir / "pretrained_model" / TRAIN_CONFIG_FILE
        check_resume(
            position,
            data_order(cfg, world, spec, task_repeats),
            json.loads(saved_config.read_text()) if saved_config.is_file() else None,
            cfg.to_json(),
            force=cfg.force_resume,
        )
        if dist_info.main:
            logger.info(f"resumed from {resume_dir} at step {step}")
    ema = EMA(policy, cfg.ema_decay) if cfg.ema_decay is not None else None
    if ema is not None and resume_dir is not None:  # the checkpoint's weights are the EMA; raw ones here
        ema.load_raw(resume_dir / "training_state" / RAW_WEIGHTS_FILE)
    if dist_info.main:
        logger.info(
            f"actions: {recipe.describe()}" + (f"; EMA of the weights, decay {ema.decay}" if ema else "")
        )

    model = policy
    if dist_info.enabled:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(
            policy, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True
        )

    amp_dtype = autocast_dtype(cfg.precision, device)
    pin = device.type == "cuda"
    corrupt = None
    if cfg.skip_corrupt:  # created before the DataLoader forks its workers; one file per rank
        from shards.guard import CorruptShardLog

        corrupt = CorruptShardLog(output_dir / f"corrupt_shards_rank{rank}.jsonl")
    train_stream = data_mod.TrainStream(
        spec,
        chunk_size=cfg.chunk_size,
        seed=cfg.seed,
        rank=rank,
        world=world,
        shuffle_buffer=cfg.shuffle_buffer,
        start_batches=step,
        batch_size=cfg.batch_size,
        stratify=cfg.stratify,
        corrupt=corrupt,
    )
    train_loader = data_mod.make_loader(train_stream, num_workers=cfg.num_workers)
    val_loader = None
    if cfg.val_every > 0 and any(src.val for src in spec.sources):
        val_stream = data_mod.ValStream(
            spec,
            chunk_size=cfg.chunk_size,
            batch_size=cfg.batch_size,
            rank=rank,
            world=world,
            corrupt=corrupt,
        )
        val_loader = data_mod.make_loader(
            val_stream,
            num_workers=min(cfg.num_workers, 2),
            persistent=True,
        )

    load_report = report.to_json()
    if resume_dir is not None:  # keep how the run started (e.g. what a fine-tune loaded)
        previous = resume_dir / "pretrained_model" / PROVENANCE_FILE
        if previous.is_file():
            load_report = json.loads(previous.read_text()).get("load_report", load_report)
    provenance = {
        **spec.provenance(),
        "temporal_alpha": alpha,
        "chunk_size": cfg.chunk_size,
        "load_report": load_report,
        "action_recipe": {
            **recipe.to_json(),
            "stats": "manifest (every train frame's action)"
            if chunk_stats is None
            else f"chunk targets: every step of every train chunk of {cfg.chunk_size}, padded steps excluded",
        },
        "ema": {"decay": cfg.ema_decay} if cfg.ema_decay is not None else None,
        "trainer": {
            "tool": "b1k-train",
            "command": sys.argv,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "world_size": world,
        },
    }
    if dist_info.main:
        output_dir.mkdir(parents=True, exist_ok=True)
    run_log = RunLog(output_dir, dist_info.main, step if resume_dir is not None else None)
    if dist_info.main:
        from train.tracking import start_wandb

        run_log.wandb = start_wandb(cfg.wandb_project, cfg.wandb_disable, output_dir, cfg.to_json())
    action_eval = None
    if dist_info.main:  # --eval-every: rank 0 evaluates; the others wait at the next gradient sync
        from train.action_eval import make_action_eval

        action_eval = make_action_eval(cfg, spec, output_dir, provenance)
    key_log = None
    if cfg.log_sample_keys:
        output_dir.mkdir(parents=True, exist_ok=True)
        key_log = (output_dir / f"sample_keys_rank{rank}.jsonl").open("a")

    result = TrainResult(step=step, last_checkpoint=resume_dir, load_report=report)
    progress = None
    if cfg.progress and dist_info.main:
        from tqdm import tqdm

        progress = tqdm(total=cfg.max_steps, initial=step, desc="train", unit="step", dynamic_ncols=True)

    params = [p for p in policy.parameters() if p.requires_grad]
    loader_iter = iter(train_loader)
    batch_iter = data_mod.batches(
        loader_iter, pin_memory=pin, copy=False
    )  # each batch is used up in its step
    window = {"time": 0.0, "wait": 0.0, "steps": 0}
    policy.train()
    try:
        while step < cfg.max_steps:
            t0 = time.perf_counter()
            raw = next(batch_iter)
            t_data = time.perf_counter()
            step += 1
            torch.manual_seed(_step_seed(cfg.seed, rank, step))
            batch = preprocessor(to_policy_batch(raw, spec, device, augment=cfg.augment))
            weights = temporal_weights(torch.tensor(raw["progress"], dtype=torch.float32), alpha).to(device)
            with _autocast(device, amp_dtype):
                per_sample, _ = model(batch, reduction="none")
            loss, plain = weighted_loss(per_sample.float(), weights, batch[PAD_KEY], spec.action_dim)

            finite = torch.isfinite(loss.detach()).to(torch.float32)
            if dist_info.enabled:
                finite = finite.to(device) if device.type == "cuda" else finite.cpu()
                dist.all_reduce(finite, op=dist.ReduceOp.MIN)
            if finite.item() < 1:
                raise NonFiniteLossError(
                    f"non-finite loss ({loss.item()}) at step {step}", step, last_checkpoint(output_dir)
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            clip = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
            grad_norm = torch.nn.utils.clip_grad_norm_(params, clip)
            if not torch.isfinite(grad_norm):
                raise NonFiniteLossError(
                    f"non-finite gradient norm ({grad_norm.item()}) at step {step}",
                    step,
                    last_checkpoint(output_dir),
                )
            optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update()
            t_end = time.perf_counter()
            window["time"] += t_end - t0
            window["wait"] += t_data - t0
            window["steps"] += 1
            result.losses[step] = float(loss.detach())
            if key_log is not None:
                key_log.write(json.dumps({"step": step, "keys": list(raw["key"])}) + "\n")

            if cfg.log_every > 0 and (step % cfg.log_every == 0 or step == cfg.max_steps):
                values = torch.tensor([float(loss.detach()), float(plain.detach())], dtype=torch.float64)
                if dist_info.enabled:
                    values = values.to(device) if device.type == "cuda" else values
                    dist.all_reduce(values)
                    values = values.cpu() / world
                record = {
                    "kind": "train",
                    "step": step,
                    "weighted_loss": float(values[0]),
                    "loss": float(values[1]),
                    "lr": scheduler.get_last_lr()[0],
                    "grad_norm": float(grad_norm),
                    "samples_per_s": window["steps"] * cfg.batch_size * world / max(window["time"], 1e-9),
                    "data_wait_share": window["wait"] / max(window["time"], 1e-9),
                    "epoch": max(raw["epoch"]),
                }
                if corrupt is not None:
                    record["skipped_shards"] = corrupt.count
                run_log.write(record)
                if progress is not None:
                    progress.set_postfix(
                        loss=f"{record['weighted_loss']:.4f}",
                        lr=f"{record['lr']:.2e}",
                        wait=f"{record['data_wait_share']:.0%}",
                    )
                window = {"time": 0.0, "wait": 0.0, "steps": 0}

            if val_loader is not None and (step % cfg.val_every == 0 or step == cfg.max_steps):
                val = evaluate(
                    policy,
                    preprocessor,
                    val_loader,
                    spec,
                    device=device,
                    alpha=alpha,
                    seed=cfg.seed,
                    rank=rank,
                    dist_info=dist_info,
                    max_batches=cfg.val_batches,
                    amp_dtype=amp_dtype,
                )
                if val is not None:
                    run_log.write({"kind": "val", "step": step, **val})
                    if progress is not None:
                        progress.write(
                            f"step {step}: val loss {val['val_loss']:.4f} (weighted {val['val_weighted_loss']:.4f})"
                        )

            if action_eval is not None and (step % cfg.eval_every == 0 or step == cfg.max_steps):
                with ema.swapped_in() if ema is not None else contextlib.nullcontext():  # what is deployed
                    record = action_eval(policy, preprocessor, postprocessor, step, device)
                run_log.write(record)
                if progress is not None:
                    progress.write(
                        f"step {step}: val action MAE {record['action_mae']:.4f} (executed "
                        f"{record['executed_mae']:.4f}, baseline {record['baseline_mae']:.4f})"
                    )

            if (cfg.save_every > 0 and step % cfg.save_every == 0) or step == cfg.max_steps:
                if dist_info.main:
                    result.last_checkpoint = save_checkpoint(
                        output_dir,
                        step,
                        cfg.max_steps,
                        policy=policy,
                        preprocessor=preprocessor,
                        postprocessor=postprocessor,
                        optimizer=optimizer,
                        scheduler=scheduler,
                        provenance=provenance,
                        train_config={**cfg.to_json(), "world_size": world},
                        data_position={
                            "step": step,
                            "items_per_rank": step * cfg.batch_size,
                            **data_order(cfg, world, spec, task_repeats),
                        },
                        keep_last=cfg.keep_last,
                        ema=ema,
                        world=world,
                        batch_size=cfg.batch_size,
                    )
                if dist_info.enabled:
                    dist.barrier()
            if progress is not None:
                progress.update(1)
        result.step = step
        if corrupt is not None and corrupt.count:
            logger.warning(corrupt.summary())
        return result
    finally:
        if progress is not None:
            progress.close()
        if key_log is not None:
            key_log.close()
        run_log.close()
        del batch_iter, loader_iter


def configure_logging(rank: int) -> None:
    level = logging.INFO if rank == 0 else logging.WARNING
    logging.basicConfig(
        level=level, format=f"%(asctime)s [rank {rank}] %(message)s", stream=sys.stderr, force=True
    )
