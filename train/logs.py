"""What a run writes as it goes: `RunLog` (the JSONL log `train_log.jsonl`, TensorBoard when installed,
wandb with `--wandb-project`, the curves PNG at the end), `StepTimes` (step time and data wait since the
last train record). The console's log lines: `shards.command.configure_logging`."""

from __future__ import annotations

import json
import logging
from pathlib import Path

logger = logging.getLogger(__name__)

LOG_FILE = "train_log.jsonl"


class RunLog:
    """JSONL log (+ TensorBoard when installed) written by rank 0 only."""

    def __init__(self, output_dir: Path, enabled: bool, resume_step: int | None):
        self.enabled = enabled
        self.path = Path(output_dir) / LOG_FILE
        self.tb = None
        self.wandb = None  # a wandb run (train.tracking), set by train.setup with --wandb-project
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


class StepTimes:
    """Seconds per step (data wait included) and seconds waiting for the batch, since the last train
    record: lerobot's `AverageMeter`s, as `lerobot-train` times its steps."""

    def __init__(self) -> None:
        from lerobot.utils.logging_utils import AverageMeter

        self.step_s = AverageMeter("step_s", ":.3f")
        self.wait_s = AverageMeter("data_wait_s", ":.3f")

    def add(self, step_s: float, wait_s: float) -> None:
        self.step_s.update(step_s)
        self.wait_s.update(wait_s)

    def samples_per_s(self, samples_per_step: int) -> float:
        return self.step_s.count * samples_per_step / max(self.step_s.sum, 1e-9)

    def data_wait_share(self) -> float:
        return self.wait_s.sum / max(self.step_s.sum, 1e-9)

    def reset(self) -> None:
        self.step_s.reset()
        self.wait_s.reset()
