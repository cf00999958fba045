"""`b1k-train --eval-every N`: `b1k-eval`'s action error on the val split during training, at cheap
settings (`--eval-frames` frames, the same ones every time), logged next to the validation loss.

train/ and deploy/ meet here only through the checkpoint format and b1k-eval's command line: the trainer
runs `b1k-eval` (`python -m deploy.eval.cli`) as a program on a checkpoint of the weights it would save
now (the EMA's with `--ema-decay`) and reads its `report.json` back into the log record. That checkpoint
is the one saved at this step when there is one; otherwise `train.loop` writes one for the evaluator
alone (`pretrained_model/` under the step's eval dir), deleted once evaluated. So the number logged is
exactly what `b1k-eval` says of that checkpoint, through the same `ChunkModel` / `Policy` `b1k-serve` runs.

Each step's report stays in `<output-dir>/eval/<step>/` (`report.json`, `error_by_progress.png`, and
`b1k-eval.log`, the program's output). The trainer waits for the evaluation (rank 0; the other ranks wait
at the next gradient sync), as it did when it evaluated in memory: records stay in step order, which
wandb requires (a record logged for an earlier step than the last is dropped), and no second copy of
the model shares the device with training. The price is the program's start (python, torch, lerobot)
and loading the checkpoint back, each evaluation: seconds, beside the N training steps between two.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from train.config import TrainError

logger = logging.getLogger(__name__)

EVAL_DIR = "eval"  # <output-dir>/eval/<step>/: b1k-eval's --out for that step
EVAL_PROGRAM = "deploy.eval.cli"  # b1k-eval, run as a program: train/ imports nothing from deploy/
EVAL_LOG = "b1k-eval.log"
REPORT_FILE = "report.json"  # what b1k-eval writes in --out (deploy.eval.report documents its keys)
FAILURE_LINES = 20  # of b1k-eval's output, in the error when it fails


@dataclass(frozen=True)
class ActionEval:
    """b1k-eval's settings for one run: the val split of one shard set, `frames` frames (the same ones
    every time: b1k-eval spreads them over the episodes deterministically), noise seeded by `seed`."""

    location: str
    output_dir: Path
    frames: int
    batch_size: int
    seed: int
    vlm_model: str | None = None  # a local backbone dir, for machines without the Hub

    def step_dir(self, step: int) -> Path:
        return Path(self.output_dir) / EVAL_DIR / str(step)

    def command(self, checkpoint: Path, step: int, device: str) -> list[str]:
        """The b1k-eval command line for `checkpoint` at `step`."""
        command = [
            sys.executable, "-m", EVAL_PROGRAM, "--checkpoint", str(checkpoint), "--shards", self.location,
            "--split", "val", "--out", str(self.step_dir(step)), "--seed", str(self.seed),
            "--max-frames", str(self.frames), "--batch-size", str(self.batch_size), "--device", device,
            "--no-progress",
        ]  # fmt: skip
        if self.vlm_model is not None:
            command += ["--vlm-model", self.vlm_model]
        return command

    def __call__(self, checkpoint: Path, step: int, device: str) -> dict:
        """Run b1k-eval on `checkpoint` (a `pretrained_model` dir) and return the eval log record."""
        out = self.step_dir(step)
        out.mkdir(parents=True, exist_ok=True)
        (out / REPORT_FILE).unlink(missing_ok=True)  # a report left by an interrupted run is not this one
        log = out / EVAL_LOG
        with log.open("w") as output:
            done = subprocess.run(
                self.command(checkpoint, step, device), stdout=output, stderr=subprocess.STDOUT, check=False
            )
        if done.returncode != 0 or not (out / REPORT_FILE).is_file():
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-FAILURE_LINES:])
            raise TrainError(
                f"--eval-every: b1k-eval of step {step} failed (exit {done.returncode}); its output is in "
                f"{log}, ending:\n{tail}"
            )
        return eval_record(json.loads((out / REPORT_FILE).read_text()), step)


def eval_record(report: dict, step: int) -> dict:
    """The eval log record of a one-checkpoint b1k-eval report (`deploy.eval.report`'s keys)."""
    (entry,) = report["checkpoints"]
    record = {
        "kind": "eval",
        "step": step,
        "eval_frames": entry["frames"],
        "action_mae": entry["overall"]["mae"],
        "action_rmse": entry["overall"]["rmse"],
        "executed_mae": entry["executed"]["mae"],
        "baseline_mae": report["baseline"]["overall"]["mae"],
    }
    for group, row in entry["by_group"].items():
        record[f"action_mae_{group}"] = row["mae"]
    for i, row in enumerate(entry["by_progress"]):
        record[f"action_mae_bin{i}"] = row["mae"]
    return record


def make_action_eval(cfg, spec, output_dir: Path) -> ActionEval | None:
    """The `--eval-every` evaluator of a run, on the val split of the first `--shards` set that has one
    (None with `--eval-every 0` or without a val split)."""
    if cfg.eval_every <= 0:
        return None
    sources = [src for src in spec.sources if src.val]
    if not sources:
        logger.warning(
            "--eval-every %d: no --shards set has a val split; no action error is logged", cfg.eval_every
        )
        return None
    local_backbone = cfg.vlm_model is not None and Path(cfg.vlm_model).expanduser().is_dir()
    return ActionEval(
        sources[0].location,
        Path(output_dir),
        frames=cfg.eval_frames,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        vlm_model=str(Path(cfg.vlm_model).expanduser().resolve()) if local_backbone else None,
    )
