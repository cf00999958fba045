"""The training loop: `train(TrainConfig)`, one step read from batch to update in `train_step`.

Per step: a batch from the shard stream -> images float [0,1] CHW -> lerobot's preprocessor
(normalise with the manifest's stats, tokenise the task) -> `SmolVLAPolicy.forward(batch,
reduction="none")` -> temporal weighting -> backward -> grad clip -> AdamW step -> cosine-with-warmup
schedule (lerobot's SmolVLA presets). Then, when due: a train record in the log, the val loss, a
checkpoint, `--eval-every`'s action error (b1k-eval run on a checkpoint of this step). The rest lives by job:

- `train.setup`: everything before the first step (`setup(cfg, dist) -> Run`).
- `train.loss`: raw batch -> policy batch -> weighted loss.
- `train.logs`: the JSONL log (+ TensorBoard, wandb, curves) and step times.
- `train.checkpoint`: checkpoints in lerobot's layout, and where `--resume` starts.

Determinism: the global torch RNG is re-seeded from (seed, rank, step) before every step, and the data
stream is a pure function of (seed, consumed batches), so `--resume` continues exactly where an
uninterrupted run would be. Multi-GPU/multi-node through `torchrun` (DDP); only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from shards.lock import FolderLock, FolderLockedError
from train import data as data_mod
from train.checkpoint import data_order, last_checkpoint, save_checkpoint, save_pretrained
from train.config import NonFiniteLossError, TrainConfig, TrainError, TrainResult, write_record
from train.data import PAD_KEY
from train.logs import StepTimes
from train.loss import autocast, batch_weights, loss_sums, to_policy_batch, weighted_loss
from train.seeds import seed_of
from train.setup import Dist, Run, init_distributed, setup

logger = logging.getLogger(__name__)


def train(cfg: TrainConfig) -> TrainResult:
    """Run (or resume) a training run; returns the final step and checkpoint."""
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
            return _train(cfg, dist_info)
    except FolderLockedError as exc:
        raise TrainError(f"--output-dir {exc}") from None
    finally:
        if dist_info.enabled and dist.is_initialized():
            dist.destroy_process_group()


def _train(cfg: TrainConfig, dist_info: Dist) -> TrainResult:
    from lerobot.common.train_utils import should_save_checkpoint

    run = setup(cfg, dist_info)
    if dist_info.main:  # the resolved options, before the first step (as lerobot-train keeps its config)
        write_record(run.output_dir, train_config(run))
    result = TrainResult(step=run.start_step, last_checkpoint=run.resume_dir, load_report=run.load_report)
    times = StepTimes()  # since the last train record
    step = run.start_step
    run.policy.train()
    try:
        while step < cfg.max_steps:
            step += 1
            out = train_step(run, step)
            times.add(out.step_s, out.wait_s)
            result.losses[step] = out.loss
            if run.key_log is not None:
                run.key_log.write(json.dumps({"step": step, "keys": out.keys}) + "\n")
            if cfg.log_every > 0 and (step % cfg.log_every == 0 or step == cfg.max_steps):
                log_train(run, step, out, times)
                times.reset()
            if run.val_loader is not None and (step % cfg.val_every == 0 or step == cfg.max_steps):
                validate(run, step)
            saved = None
            if should_save_checkpoint(step, cfg.save_every, cfg.max_steps):
                saved = save(run, step)
                if saved is not None:  # rank 0
                    result.last_checkpoint = saved
            if run.action_eval is not None and (step % cfg.eval_every == 0 or step == cfg.max_steps):
                evaluate_actions(run, step, saved)
            if run.progress is not None:
                run.progress.update(1)
        result.step = step
        if run.corrupt is not None and run.corrupt.count:
            logger.warning(run.corrupt.summary())
        return result
    finally:
        run.close()


# ---------------------------------------------------------------------------------------------
# One step


@dataclass
class StepResult:
    """What one optimizer step leaves for the log."""

    loss: float  # the weighted loss (this rank)
    plain_loss: torch.Tensor  # lerobot's mean loss, detached (read only when logged: a device sync)
    grad_norm: torch.Tensor  # before clipping
    epoch: int  # the newest epoch of the batch's samples
    keys: list[str]  # the batch's sample keys (--log-sample-keys)
    step_s: float  # the whole step, waiting for the batch included
    wait_s: float  # waiting for the batch


def train_step(run: Run, step: int) -> StepResult:
    """The next batch -> weighted loss -> backward -> clip -> AdamW and LR schedule steps (-> EMA).
    A NaN/inf loss or gradient norm stops the run without saving (`NonFiniteLossError`)."""
    cfg, device = run.cfg, run.device
    t0 = time.perf_counter()
    raw = next(run.batches)
    t_data = time.perf_counter()
    torch.manual_seed(step_seed(cfg.seed, run.dist.rank, step))
    batch = run.preprocessor(to_policy_batch(raw, run.spec, device, augment=cfg.augment))
    weights = batch_weights(raw, run.alpha, device)
    with autocast(device, run.amp_dtype):
        per_sample, _ = run.model(batch, reduction="none")
    loss, plain = weighted_loss(per_sample.float(), weights, batch[PAD_KEY], run.spec.action_dim)
    if not _finite_on_every_rank(loss, run):
        raise NonFiniteLossError(
            f"non-finite loss ({loss.item()}) at step {step}", step, last_checkpoint(run.output_dir)
        )
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(
        run.params, cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
    )
    if not torch.isfinite(grad_norm):
        raise NonFiniteLossError(
            f"non-finite gradient norm ({grad_norm.item()}) at step {step}",
            step,
            last_checkpoint(run.output_dir),
        )
    run.optimizer.step()
    run.scheduler.step()
    if run.ema is not None:
        run.ema.update()
    t_end = time.perf_counter()
    return StepResult(
        loss=float(loss.detach()),
        plain_loss=plain.detach(),
        grad_norm=grad_norm,
        epoch=max(raw["epoch"]),
        keys=list(raw["key"]),
        step_s=t_end - t0,
        wait_s=t_data - t0,
    )


def step_seed(seed: int, rank: int, step: int) -> int:
    """The global torch RNG's seed for `step` (noise, flow-matching time, --augment's jitter)."""
    return seed_of(seed, rank, step, 0x57E9) % (2**63 - 1)


def _finite_on_every_rank(loss: torch.Tensor, run: Run) -> bool:
    """Whether the loss is finite on every rank (so that all ranks stop together)."""
    finite = torch.isfinite(loss.detach()).to(torch.float32)
    if run.dist.enabled:
        finite = finite.to(run.device) if run.device.type == "cuda" else finite.cpu()
        dist.all_reduce(finite, op=dist.ReduceOp.MIN)
    return finite.item() >= 1


# ---------------------------------------------------------------------------------------------
# Log, validate, save


def log_train(run: Run, step: int, out: StepResult, times: StepTimes) -> None:
    """The train record: this step's losses (mean over ranks), LR, gradient norm, and since the last
    record the throughput and the share of the time spent waiting for data."""
    cfg, world = run.cfg, run.dist.world
    values = torch.tensor([out.loss, float(out.plain_loss)], dtype=torch.float64)
    if run.dist.enabled:
        values = values.to(run.device) if run.device.type == "cuda" else values
        dist.all_reduce(values)
        values = values.cpu() / world
    record = {
        "kind": "train",
        "step": step,
        "weighted_loss": float(values[0]),
        "loss": float(values[1]),
        "lr": run.scheduler.get_last_lr()[0],
        "grad_norm": float(out.grad_norm),
        "samples_per_s": times.samples_per_s(cfg.batch_size * world),
        "data_wait_share": times.data_wait_share(),
        "epoch": out.epoch,
    }
    if run.corrupt is not None:
        record["skipped_shards"] = run.corrupt.count
    run.log.write(record)
    if run.progress is not None:
        run.progress.set_postfix(
            loss=f"{record['weighted_loss']:.4f}",
            lr=f"{record['lr']:.2e}",
            wait=f"{record['data_wait_share']:.0%}",
        )


def validate(run: Run, step: int) -> None:
    """The val record: the loss on the val split (`val_loss`)."""
    val = val_loss(run)
    if val is None:
        return
    run.log.write({"kind": "val", "step": step, **val})
    if run.progress is not None:
        run.progress.write(
            f"step {step}: val loss {val['val_loss']:.4f} (weighted {val['val_weighted_loss']:.4f})"
        )


@torch.no_grad()
def val_loss(run: Run) -> dict | None:
    """Loss on the val split (fixed noise, up to --val-batches batches), summed over ranks:
    {val_loss, val_weighted_loss, val_samples}; None when the split gave no sample."""
    policy, device = run.policy, run.device
    was_training = policy.training
    policy.eval()
    torch.manual_seed(seed_of(run.cfg.seed, run.dist.rank, 0x7A1) % (2**63 - 1))
    totals = torch.zeros(4, dtype=torch.float64)  # `loss_sums`, over the batches
    samples = 0
    loader_batches = data_mod.batches(run.val_loader, pin_memory=device.type == "cuda", copy=False)
    for index, raw in enumerate(loader_batches):
        if run.cfg.val_batches > 0 and index >= run.cfg.val_batches:
            break
        batch = run.preprocessor(to_policy_batch(raw, run.spec, device))
        weights = batch_weights(raw, run.alpha, device)
        with autocast(device, run.amp_dtype):
            per_sample, _ = policy.forward(batch, reduction="none")
        per_sample = per_sample.float()
        totals += loss_sums(per_sample, weights, batch[PAD_KEY], run.spec.action_dim).double().cpu()
        samples += per_sample.shape[0]
    stats = torch.cat([totals, torch.tensor([float(samples)], dtype=torch.float64)])
    if run.dist.enabled:
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


def evaluate_actions(run: Run, step: int, saved: Path | None) -> None:
    """The eval record: --eval-every's action error on the val split (b1k-eval, `train.action_eval`), of
    the checkpoint `saved` at this step, else of one written for the evaluator alone and deleted after:
    the weights a checkpoint saved now would hold (the EMA's with --ema-decay)."""
    scratch = None if saved is not None else run.action_eval.step_dir(step) / "pretrained_model"
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)  # one left by an interrupted run
        save_pretrained(
            scratch,
            step,
            policy=run.policy,
            preprocessor=run.preprocessor,
            postprocessor=run.postprocessor,
            provenance=run.provenance,
            train_config=train_config(run),
            ema=run.ema,
        )
    try:
        record = run.action_eval(scratch or saved / "pretrained_model", step, str(run.device))
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    run.log.write(record)
    if run.progress is not None:
        run.progress.write(
            f"step {step}: val action MAE {record['action_mae']:.4f} (executed "
            f"{record['executed_mae']:.4f}, baseline {record['baseline_mae']:.4f})"
        )


def train_config(run: Run) -> dict:
    """The run's options as a checkpoint records them (`b1k_train_config.json`)."""
    return run.cfg.record(run.dist.world)


def save(run: Run, step: int) -> Path | None:
    """Checkpoint `step` (rank 0 writes; every rank waits for it); its path on rank 0, else None."""
    cfg, world = run.cfg, run.dist.world
    saved = None
    if run.dist.main:
        saved = save_checkpoint(
            run.output_dir,
            step,
            cfg.max_steps,
            policy=run.policy,
            preprocessor=run.preprocessor,
            postprocessor=run.postprocessor,
            optimizer=run.optimizer,
            scheduler=run.scheduler,
            provenance=run.provenance,
            train_config=train_config(run),
            data_position={
                "step": step,
                "items_per_rank": step * cfg.batch_size,
                **data_order(cfg, world, run.spec, run.task_repeats),
            },
            keep_last=cfg.keep_last,
            ema=run.ema,
            world=world,
            batch_size=cfg.batch_size,
        )
    if run.dist.enabled:
        dist.barrier()
    return saved
