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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from schemas.provenance import ActionRecipeRecord, Provenance, TrainerRecord
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

if TYPE_CHECKING:
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy
    from lerobot.processor import PolicyProcessorPipeline
    from torch.optim.lr_scheduler import LRScheduler
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from shards.guard import CorruptShardLog
    from train.recipes import ChunkStats

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
    policy: SmolVLAPolicy  # what is saved and evaluated
    model: torch.nn.Module  # the policy, or its DDP wrapper: what the training step runs
    params: list[torch.nn.Parameter]  # the trainable ones, whose gradient norm is clipped
    preprocessor: PolicyProcessorPipeline  # lerobot's processor pipelines
    postprocessor: PolicyProcessorPipeline
    optimizer: torch.optim.Optimizer
    scheduler: LRScheduler
    ema: EMA | None
    amp_dtype: torch.dtype | None  # autocast dtype (None: full precision)
    start_step: int  # 0, or the step of the checkpoint resumed from
    resume_dir: Path | None
    load_report: LoadReport
    provenance: Provenance  # what every checkpoint records of the data and the run (b1k_provenance.json)
    batches: Iterator[dict[str, Any]] | None  # the train batches, one per step (None once closed)
    val_loader: DataLoader | None  # None without --val-every or without a val split
    corrupt: CorruptShardLog | None  # with --skip-corrupt
    log: RunLog
    action_eval: ActionEval | None  # --eval-every's evaluator (rank 0 only)
    key_log: IO[str] | None  # --log-sample-keys
    progress: tqdm | None  # the bar (rank 0 with --progress)

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


@dataclass(frozen=True)
class RunData:
    """The data a run trains on, checked, and how its actions are represented (`open_run_data`)."""

    spec: DataSpec
    task_repeats: dict[str, int] | None  # --task-balance's repeats per task (part of the data order)
    alpha: float  # the temporal weight's alpha (--temporal-alpha, else the manifest's)
    recipe: ActionRecipe
    norm_stats: dict  # what lerobot's normaliser gets (`train.recipes.normalizer_stats`)
    chunk_stats: ChunkStats | None  # the chunk-target stats, when the recipe needs them


@dataclass(frozen=True)
class Trainable:
    """The policy and what trains it, at the step the run starts from (`build_trainable`)."""

    policy: SmolVLAPolicy
    report: LoadReport
    model: torch.nn.Module  # the policy, or its DDP wrapper
    preprocessor: PolicyProcessorPipeline
    postprocessor: PolicyProcessorPipeline
    optimizer: torch.optim.Optimizer
    scheduler: LRScheduler
    ema: EMA | None
    start_step: int


@dataclass(frozen=True)
class RunLogs:
    """Where a run reports (`open_logs`)."""

    log: RunLog
    action_eval: ActionEval | None
    key_log: IO[str] | None
    progress: tqdm | None


def setup(cfg: TrainConfig, dist_info: Dist) -> Run:
    """Everything before the first step, in the order exact resuming needs (module docstring)."""
    device = prepare_process(cfg, dist_info)
    data = open_run_data(cfg, dist_info.main)
    resume_dir = resume_target(cfg)
    trainable = build_trainable(cfg, dist_info, device, data, resume_dir)
    step = trainable.start_step
    corrupt = _corrupt_log(cfg, dist_info.rank)  # before the DataLoader forks its workers
    _check_buffers(cfg, data.spec)
    train_loader = data_mod.make_loader(_train_stream(cfg, dist_info, data.spec, step, corrupt))
    val_loader = _val_loader(cfg, data.spec, dist_info.rank, dist_info.world, corrupt)
    load_report = first_load_report(resume_dir, trainable.report.to_json())
    provenance = _provenance(
        cfg, data.spec, data.alpha, data.recipe, data.chunk_stats, load_report, dist_info.world
    )
    logs = open_logs(cfg, dist_info, data.spec, step, resumed=resume_dir is not None)
    return Run(
        cfg=cfg,
        dist=dist_info,
        device=device,
        spec=data.spec,
        alpha=data.alpha,
        task_repeats=data.task_repeats,
        policy=trainable.policy,
        model=trainable.model,
        params=[p for p in trainable.policy.parameters() if p.requires_grad],
        preprocessor=trainable.preprocessor,
        postprocessor=trainable.postprocessor,
        optimizer=trainable.optimizer,
        scheduler=trainable.scheduler,
        ema=trainable.ema,
        amp_dtype=autocast_dtype(cfg.precision, device),
        start_step=step,
        resume_dir=resume_dir,
        load_report=trainable.report,
        provenance=provenance,
        # each batch is used up in its step, so no copy out of the workers' buffers
        batches=data_mod.batches(train_loader, pin_memory=device.type == "cuda", copy=False),
        val_loader=val_loader,
        corrupt=corrupt,
        log=logs.log,
        action_eval=logs.action_eval,
        key_log=logs.key_log,
        progress=logs.progress,
    )


def prepare_process(cfg: TrainConfig, dist_info: Dist) -> torch.device:
    """This process's device and CPU threads; the step options checked."""
    device = resolve_device(cfg, dist_info.local_rank, dist_info.world)
    limit_cpu_threads(device, cfg.num_workers, dist_info.world)
    if cfg.num_workers == 0:  # this process decodes the images (workers do so themselves)
        retain_freed_memory()
    if cfg.batch_size < 1 or cfg.max_steps < 1:
        raise TrainError("--batch-size and --max-steps must be >= 1")
    return device


def open_run_data(cfg: TrainConfig, main: bool) -> RunData:
    """The shard sets and the action recipe; what verify calls broken, and camera claims no image
    has, refused."""
    spec = data_mod.open_data(cfg.shards, task_balance=cfg.task_balance)
    refuse_broken(spec, cfg.allow_split_overlap)
    check_cameras(spec)  # before a buffer is sized by the manifest's camera sizes
    task_repeats = _task_repeats(cfg, spec, main)
    _check_chunk_size(cfg, spec)
    alpha = spec.manifest_alpha if cfg.temporal_alpha is None else float(cfg.temporal_alpha)
    recipe = ActionRecipe(cfg.action_repr, cfg.action_norm, tuple(cfg.relative_groups))
    recipe.check(spec)
    norm_stats, chunk_stats = normalizer_stats(spec, recipe, cfg.chunk_size)
    return RunData(spec, task_repeats, alpha, recipe, norm_stats, chunk_stats)


def build_trainable(
    cfg: TrainConfig, dist_info: Dist, device: torch.device, data: RunData, resume_dir: Path | None
) -> Trainable:
    """The policy, its processors, optimizer and schedule, and --resume's state: the global torch RNG
    seeded before the policy is built, then restored from the checkpoint."""
    from lerobot.utils.random_utils import set_seed

    set_seed(cfg.seed)
    policy, report = build_policy(
        data.spec,
        pretrained=str(resume_dir / "pretrained_model") if resume_dir is not None else cfg.pretrained_model,
        vlm_model=None if resume_dir is not None else cfg.vlm_model,
        chunk_size=cfg.chunk_size,
        device=str(device),
        freeze_vision=cfg.freeze_vision,
        train_expert_only=cfg.train_expert_only,
    )
    _set_optimizer_options(policy.config, cfg)
    preprocessor, postprocessor = make_processors(
        policy.config, data.spec, data.recipe, data.norm_stats, data.chunk_stats
    )
    if dist_info.main:
        _log_model(policy, report, device, dist_info.world)
    optimizer = policy.config.get_optimizer_preset().build(policy.get_optim_params())
    scheduler = policy.config.get_scheduler_preset().build(optimizer, cfg.max_steps)
    step = 0
    if resume_dir is not None:
        step, optimizer, scheduler = _load_training_state(resume_dir, optimizer, scheduler, cfg.max_steps)
        check_resumed(resume_dir, cfg, data_order(cfg, dist_info.world, data.spec, data.task_repeats))
        if dist_info.main:
            logger.info(f"resumed from {resume_dir} at step {step}")
    ema = EMA(policy, cfg.ema_decay) if cfg.ema_decay is not None else None
    if ema is not None and resume_dir is not None:  # the checkpoint's weights are the EMA; raw ones here
        ema.load_raw(resume_dir / "training_state" / RAW_WEIGHTS_FILE)
    if dist_info.main:
        logger.info(
            f"actions: {data.recipe.describe()}" + (f"; EMA of the weights, decay {ema.decay}" if ema else "")
        )
    model = _distributed(policy, dist_info, device)
    return Trainable(policy, report, model, preprocessor, postprocessor, optimizer, scheduler, ema, step)


def _distributed(policy: SmolVLAPolicy, dist_info: Dist, device: torch.device) -> torch.nn.Module:
    """What the training step runs: the policy, wrapped in DDP under torchrun."""
    if not dist_info.enabled:
        return policy
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        policy, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True
    )


def _corrupt_log(cfg: TrainConfig, rank: int) -> CorruptShardLog | None:
    """--skip-corrupt's record, one file per rank; a resumed run keeps the shards skipped before it."""
    if not cfg.skip_corrupt:
        return None
    from shards.guard import CorruptShardLog

    path = Path(cfg.output_dir) / f"corrupt_shards_rank{rank}.jsonl"
    return CorruptShardLog(path, keep=cfg.resume is not None)


def _train_stream(
    cfg: TrainConfig, dist_info: Dist, spec: DataSpec, step: int, corrupt: CorruptShardLog | None
) -> data_mod.TrainStream:
    """The rank's train stream, from the batch after the `step` ones consumed."""
    return data_mod.TrainStream(
        spec,
        chunk_size=cfg.chunk_size,
        seed=cfg.seed,
        rank=dist_info.rank,
        world=dist_info.world,
        shuffle_buffer=cfg.shuffle_buffer,
        start_batches=step,
        batch_size=cfg.batch_size,
        stratify=cfg.stratify,
        corrupt=corrupt,
        num_workers=cfg.num_workers,
    )


def open_logs(cfg: TrainConfig, dist_info: Dist, spec: DataSpec, start_step: int, resumed: bool) -> RunLogs:
    """The JSONL log (+ wandb) and --eval-every's evaluator on rank 0, --log-sample-keys' file, the
    progress bar."""
    output_dir, main = Path(cfg.output_dir), dist_info.main
    if main:
        output_dir.mkdir(parents=True, exist_ok=True)
    run_log = RunLog(output_dir, main, start_step if resumed else None)
    action_eval = None
    if main:  # --eval-every: rank 0 evaluates; the others wait at the next gradient sync
        run_log.wandb = start_wandb(cfg.wandb_project, cfg.wandb_disable, output_dir, cfg.to_json())
        action_eval = make_action_eval(cfg, spec, output_dir)
    key_log = None
    if cfg.log_sample_keys:
        output_dir.mkdir(parents=True, exist_ok=True)
        key_log = (output_dir / f"sample_keys_rank{dist_info.rank}.jsonl").open("a")
    progress = None
    if cfg.progress and main:
        from tqdm import tqdm

        progress = tqdm(
            total=cfg.max_steps, initial=start_step, desc="train", unit="step", dynamic_ncols=True
        )
    return RunLogs(run_log, action_eval, key_log, progress)


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
) -> Provenance:
    """What every checkpoint records of the data and the run (`b1k_provenance.json`, read by deploy/)."""
    stats = (
        "manifest (every train frame's action)"
        if chunk_stats is None
        else f"chunk targets: every step of every train chunk of {cfg.chunk_size}, padded steps excluded"
    )
    return replace(
        spec.provenance(),
        temporal_alpha=alpha,
        chunk_size=cfg.chunk_size,
        load_report=load_report,
        action_recipe=ActionRecipeRecord.from_json({**recipe.to_json(), "stats": stats}, "action_recipe"),
        ema_decay=cfg.ema_decay,
        trainer=TrainerRecord(
            tool="b1k-train",
            command=tuple(sys.argv),
            started=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            world_size=world,
        ),
    )
