"""Setting a training run up, before its first step: ranks and device, the data, the policy and its
processors, optimizer and LR schedule, `--resume`, the loaders and the logs. `setup(cfg, dist)` returns
all of it as one `Run`.

The order is part of exact resuming: the global torch RNG is seeded before the policy is built,
`--resume` restores it from the checkpoint, and only then does the train loader start its workers.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch
import torch.distributed as dist

from shards.codec import retain_freed_memory
from train import data as data_mod
from train.action_eval import ActionEval, make_action_eval
from train.batch import SLOTS_PER_WORKER, layout_bytes
from train.checkpoint import check_resumed, data_order, first_load_report, resume_target
from train.checks import check_buffer_memory, check_cameras, refuse_broken
from train.config import TrainConfig, TrainError
from train.data import DataSpec, DataSpecError
from train.logs import RunLog
from train.model import LoadReport, autocast_dtype, build_policy, count_parameters, make_processors
from train.recipes import EMA, RAW_WEIGHTS_FILE, ActionRecipe, normalizer_stats
from train.tracking import start_wandb

logger = logging.getLogger(__name__)


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


@dataclass
class Run:
    """Everything a training run works with, set up once by `setup`; `close` ends what it opened."""

    cfg: TrainConfig
    dist: Dist
    device: torch.device
    spec: DataSpec
    alpha: float  # the temporal weight's alpha (--temporal-alpha, else the manifest's)
    task_repeats: dict[str, int] | None  # --task-balance's repeats per task (part of the data order)
    policy: Any  # lerobot's SmolVLAPolicy: what is saved and evaluated
    model: torch.nn.Module  # the policy, or its DDP wrapper: what the training step runs
    params: list[torch.nn.Parameter]  # the trainable ones, whose gradient norm is clipped
    preprocessor: Any  # lerobot's processor pipelines
    postprocessor: Any
    optimizer: torch.optim.Optimizer
    scheduler: Any
    ema: EMA | None
    amp_dtype: torch.dtype | None  # autocast dtype (None: full precision)
    start_step: int  # 0, or the step of the checkpoint resumed from
    resume_dir: Path | None
    load_report: LoadReport
    provenance: dict  # what every checkpoint records of the data and the run (b1k_provenance.json)
    batches: Iterator[dict[str, Any]] | None  # the train batches, one per step (None once closed)
    val_loader: Any  # None without --val-every or without a val split
    corrupt: Any  # shards.guard.CorruptShardLog with --skip-corrupt, else None
    log: RunLog
    action_eval: ActionEval | None  # --eval-every's evaluator (rank 0 only)
    key_log: IO[str] | None  # --log-sample-keys
    progress: Any  # the tqdm bar (rank 0 with --progress), else None

    @property
    def output_dir(self) -> Path:
        return Path(self.cfg.output_dir)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close()
        if self.key_log is not None:
            self.key_log.close()
        self.log.close()
        self.batches = None  # the loader's iterator with it: its workers stop


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


def setup(cfg: TrainConfig, dist_info: Dist) -> Run:
    """Everything before the first step, in the order exact resuming needs (module docstring)."""
    from lerobot.utils.random_utils import set_seed

    main, rank, world = dist_info.main, dist_info.rank, dist_info.world
    device = resolve_device(cfg, dist_info.local_rank, world)
    limit_cpu_threads(device, cfg.num_workers, world)
    if cfg.num_workers == 0:  # this process decodes the images (workers do so themselves)
        retain_freed_memory()
    if cfg.batch_size < 1 or cfg.max_steps < 1:
        raise TrainError("--batch-size and --max-steps must be >= 1")

    # Data and the action recipe; what verify calls broken, and camera claims no image has, refused
    spec = data_mod.open_data(cfg.shards, task_balance=cfg.task_balance)
    refuse_broken(spec, cfg.allow_split_overlap)
    check_cameras(spec)  # before a buffer is sized by the manifest's camera sizes
    task_repeats = _task_repeats(cfg, spec, main)
    _check_chunk_size(cfg, spec)
    alpha = spec.manifest_alpha if cfg.temporal_alpha is None else float(cfg.temporal_alpha)
    recipe = ActionRecipe(cfg.action_repr, cfg.action_norm, tuple(cfg.relative_groups))
    recipe.check(spec)
    norm_stats, chunk_stats = normalizer_stats(spec, recipe, cfg.chunk_size)
    resume_dir = resume_target(cfg)

    # The policy, its processors, optimizer and schedule; --resume's state
    set_seed(cfg.seed)
    policy, report = build_policy(
        spec,
        pretrained=str(resume_dir / "pretrained_model") if resume_dir is not None else cfg.pretrained_model,
        vlm_model=None if resume_dir is not None else cfg.vlm_model,
        chunk_size=cfg.chunk_size,
        device=str(device),
        freeze_vision=cfg.freeze_vision,
        train_expert_only=cfg.train_expert_only,
    )
    _set_optimizer_options(policy.config, cfg)
    preprocessor, postprocessor = make_processors(policy.config, spec, recipe, norm_stats, chunk_stats)
    if main:
        _log_model(policy, report, device, world)
    optimizer = policy.config.get_optimizer_preset().build(policy.get_optim_params())
    scheduler = policy.config.get_scheduler_preset().build(optimizer, cfg.max_steps)
    step = 0
    if resume_dir is not None:
        step, optimizer, scheduler = _load_training_state(resume_dir, optimizer, scheduler, cfg.max_steps)
        check_resumed(resume_dir, cfg, data_order(cfg, world, spec, task_repeats))
        if main:
            logger.info(f"resumed from {resume_dir} at step {step}")
    ema = EMA(policy, cfg.ema_decay) if cfg.ema_decay is not None else None
    if ema is not None and resume_dir is not None:  # the checkpoint's weights are the EMA; raw ones here
        ema.load_raw(resume_dir / "training_state" / RAW_WEIGHTS_FILE)
    if main:
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

    # Loaders
    output_dir = Path(cfg.output_dir)
    corrupt = None
    if cfg.skip_corrupt:  # created before the DataLoader forks its workers; one file per rank
        from shards.guard import CorruptShardLog

        # a resumed run keeps the record of the shards skipped before it
        corrupt = CorruptShardLog(
            output_dir / f"corrupt_shards_rank{rank}.jsonl", keep=cfg.resume is not None
        )
    _check_buffers(cfg, spec)
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
        num_workers=cfg.num_workers,
    )
    train_loader = data_mod.make_loader(train_stream)
    val_loader = _val_loader(cfg, spec, rank, world, corrupt)

    # Logs
    provenance = _provenance(
        cfg, spec, alpha, recipe, chunk_stats, first_load_report(resume_dir, report.to_json()), world
    )
    if main:
        output_dir.mkdir(parents=True, exist_ok=True)
    run_log = RunLog(output_dir, main, step if resume_dir is not None else None)
    action_eval = None
    if main:  # --eval-every: rank 0 evaluates; the others wait at the next gradient sync
        run_log.wandb = start_wandb(cfg.wandb_project, cfg.wandb_disable, output_dir, cfg.to_json())
        action_eval = make_action_eval(cfg, spec, output_dir)
    key_log = None
    if cfg.log_sample_keys:
        output_dir.mkdir(parents=True, exist_ok=True)
        key_log = (output_dir / f"sample_keys_rank{rank}.jsonl").open("a")
    progress = None
    if cfg.progress and main:
        from tqdm import tqdm

        progress = tqdm(total=cfg.max_steps, initial=step, desc="train", unit="step", dynamic_ncols=True)

    return Run(
        cfg=cfg,
        dist=dist_info,
        device=device,
        spec=spec,
        alpha=alpha,
        task_repeats=task_repeats,
        policy=policy,
        model=model,
        params=[p for p in policy.parameters() if p.requires_grad],
        preprocessor=preprocessor,
        postprocessor=postprocessor,
        optimizer=optimizer,
        scheduler=scheduler,
        ema=ema,
        amp_dtype=amp_dtype,
        start_step=step,
        resume_dir=resume_dir,
        load_report=report,
        provenance=provenance,
        # each batch is used up in its step, so no copy out of the workers' buffers
        batches=data_mod.batches(train_loader, pin_memory=device.type == "cuda", copy=False),
        val_loader=val_loader,
        corrupt=corrupt,
        log=run_log,
        action_eval=action_eval,
        key_log=key_log,
        progress=progress,
    )


def _load_training_state(resume_dir: Path, optimizer, scheduler, max_steps: int) -> tuple[int, Any, Any]:
    """lerobot's `load_training_state` (optimizer, scheduler, step, RNG), its failures one `TrainError`
    naming the checkpoint, and a step that is not the checkpoint's own (a negative one would train
    silently from there) refused."""
    from lerobot.common.train_utils import load_training_state

    try:
        step, optimizer, scheduler = load_training_state(resume_dir, optimizer, scheduler)
    except Exception as exc:  # a truncated safetensors file, a garbage RNG state: whatever lerobot says
        reason = (str(exc).strip().splitlines() or [""])[0][:300]
        raise TrainError(
            f"--resume {resume_dir}: cannot load its training state ({type(exc).__name__}: {reason}); "
            "resume from another checkpoint"
        ) from None
    expected = int(resume_dir.name) if resume_dir.name.isdigit() else None
    if not isinstance(step, int) or step < 0 or (expected is not None and step != expected):
        raise TrainError(
            f"--resume {resume_dir}: its training state says step {step!r}, the checkpoint is step {expected}; "
            "resume from another checkpoint"
        )
    return step, optimizer, scheduler


def _check_buffers(cfg: TrainConfig, spec: DataSpec) -> None:
    """The shared batch buffers (train and val workers') fit this machine's memory: checked before any is made."""
    slots = (cfg.num_workers + min(cfg.num_workers, 2)) * SLOTS_PER_WORKER
    if slots:
        layout = data_mod.SampleFormat.of(spec, cfg.chunk_size).layout(cfg.batch_size)
        check_buffer_memory(layout_bytes(layout), slots)


def _task_repeats(cfg: TrainConfig, spec: DataSpec, main: bool) -> dict[str, int] | None:
    """--task-balance's repeats per task (logged), None without it."""
    balance = data_mod.task_balance_rows(spec)  # [] without --task-balance
    if balance and main:
        logger.info("--task-balance: each sample of a task streams r times in a row per epoch")
        for row in balance:
            logger.info(
                f"  {row['samples']:>9} samples x {row['repeats']:>3} = {row['effective']:>9} per epoch: {row['task']}"
            )
    return {row["task"]: row["repeats"] for row in balance} if cfg.task_balance else None


def _check_chunk_size(cfg: TrainConfig, spec: DataSpec) -> None:
    if cfg.chunk_size > spec.horizon:
        raise DataSpecError(
            f"--chunk-size {cfg.chunk_size} is above the stored horizon {spec.horizon} of the shard set "
            f"(re-run b1k-preprocess with --horizon >= {cfg.chunk_size}, or lower --chunk-size)"
        )
    if cfg.chunk_size < 1:
        raise DataSpecError("--chunk-size must be >= 1")


def _set_optimizer_options(pc, cfg: TrainConfig) -> None:
    """The policy config's optimizer and scheduler presets (lerobot's SmolVLA ones) with our options."""
    pc.optimizer_lr = cfg.lr
    pc.optimizer_grad_clip_norm = cfg.grad_clip
    pc.scheduler_warmup_steps = cfg.warmup_steps
    pc.scheduler_decay_steps = cfg.decay_steps
    pc.scheduler_decay_lr = cfg.decay_lr


def _log_model(policy, report: LoadReport, device: torch.device, world: int) -> None:
    total, trainable = count_parameters(policy)
    logger.info(report.summary())
    logger.info(f"policy: {total:,} parameters, {trainable:,} trainable; device {device}, world size {world}")


def _val_loader(cfg: TrainConfig, spec: DataSpec, rank: int, world: int, corrupt):
    """The val split's loader (persistent workers, reused at every --val-every); None without a val
    split or with --val-every 0."""
    if cfg.val_every <= 0 or not any(src.val for src in spec.sources):
        return None
    val_stream = data_mod.ValStream(
        spec,
        chunk_size=cfg.chunk_size,
        batch_size=cfg.batch_size,
        rank=rank,
        world=world,
        corrupt=corrupt,
        num_workers=min(cfg.num_workers, 2),
    )
    return data_mod.make_loader(val_stream, persistent=True)


def _provenance(
    cfg: TrainConfig,
    spec: DataSpec,
    alpha: float,
    recipe: ActionRecipe,
    chunk_stats,
    load_report: dict,
    world: int,
) -> dict:
    """What every checkpoint records of the data and the run (`b1k_provenance.json`, read by deploy/)."""
    return {
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
