"""`b1k-train --eval-every N`: `b1k-eval`'s action error on the val split during training, at cheap
settings (`--eval-frames` frames, the same ones every time), logged next to the validation loss.

The policy in training is evaluated as it is in memory, through the same `deploy.eval.evaluate` code (and so
the same `ChunkModel` / `Policy` `b1k-serve` runs) as a saved checkpoint would be: its `DeploySpec` comes
from the run's provenance, exactly what the checkpoint records.
"""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)


class ActionEval:
    """Evaluates the policy on the val split of one shard set; `__call__` returns the log record."""

    def __init__(
        self, location: str, output_dir: Path, provenance: dict, *, frames: int, batch_size: int, seed: int
    ):
        from deploy.eval.evaluate import EvalConfig

        self.location = location
        self.output_dir = Path(output_dir)
        self.provenance = provenance
        self.config = EvalConfig(split="val", seed=seed, max_frames=frames, batch_size=batch_size)

    def __call__(self, policy, preprocessor, postprocessor, step: int, device) -> dict:
        from deploy.checkpoint import LoadedCheckpoint, spec_from
        from deploy.eval.evaluate import evaluate

        spec = spec_from(self.output_dir, policy.config, {**self.provenance, "step": step})
        loaded = LoadedCheckpoint(policy, preprocessor, postprocessor, spec, str(device))
        was_training = policy.training
        policy.eval()
        try:
            report = evaluate([self.output_dir], self.location, self.config, load=lambda _: loaded)
        finally:
            if was_training:
                policy.train()
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


def make_action_eval(cfg, spec, output_dir: Path, provenance: dict) -> ActionEval | None:
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
    return ActionEval(
        sources[0].location,
        output_dir,
        provenance,
        frames=cfg.eval_frames,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
    )
