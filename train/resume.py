"""What `--resume` must find unchanged, and what it does when something changed.

A resumed run continues the interrupted one exactly only if the data order and the model are the
same. The data order is a pure function of what a checkpoint's data position records (the shard
sets' manifests, seed, batch size, ranks, workers, shuffle buffer, stratification, task repeats);
the model of the options in `MODEL_OPTIONS`. A difference in either is refused, naming every one,
unless `--force-resume` is given: then each is logged and the run goes on. Extending the run
(`--max-steps`) or changing the LR schedule is what resuming is for: only logged.
"""

from __future__ import annotations

import logging
from typing import Any

from schemas.errors import B1kError

logger = logging.getLogger(__name__)

# Keys of the data position (`b1k_data_position.json`) that decide which sample comes when.
DATA_ORDER = (
    "manifests",
    "seed",
    "batch_size",
    "world_size",
    "num_workers",
    "shuffle_buffer",
    "stratify",
    "task_repeats",
)
# `b1k-train` options (b1k_train_config.json) that change what is trained.
MODEL_OPTIONS = (
    "chunk_size", "temporal_alpha", "freeze_vision", "train_expert_only", "precision", "augment",
    "action_repr", "action_norm", "relative_groups", "ema_decay",  # train.recipes
)  # fmt: skip
# Options whose change is expected when a run is resumed; logged.
SCHEDULE_OPTIONS = ("max_steps", "lr", "warmup_steps", "decay_steps", "decay_lr")


class ResumeMismatchError(B1kError, RuntimeError):
    """`--resume` with another shard set or options that change the model or the data order."""


def differences(recorded: dict[str, Any], now: dict[str, Any], keys: tuple[str, ...]) -> list[str]:
    """`key: was X, now Y` for each of `keys` whose recorded value differs (absent keys: not compared,
    a checkpoint older than the key says nothing about it)."""
    return [
        f"{key}: was {_short(recorded[key])}, now {_short(now.get(key))}"
        for key in keys
        if key in recorded and recorded[key] != now.get(key)
    ]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def check_resume(
    position: dict[str, Any],
    position_now: dict[str, Any],
    config: dict[str, Any] | None,
    config_now: dict[str, Any],
    *,
    force: bool,
) -> None:
    """Refuse a resume that would not continue the same run (`ResumeMismatchError` naming each
    difference), or with `force` log each difference; log schedule changes either way."""
    changed = differences(position, position_now, DATA_ORDER)
    if config is not None:
        changed += differences(config, config_now, MODEL_OPTIONS)
        for change in differences(config, config_now, SCHEDULE_OPTIONS):
            logger.warning(f"--resume: {change} (the LR schedule changes)")
    if not changed:
        return
    if not force:
        raise ResumeMismatchError(
            "--resume: this run would not continue the checkpoint's: "
            + "; ".join(changed)
            + ". Resume with the same shard sets and options, or pass --force-resume to go on anyway "
            "(the data order or the model will differ from an uninterrupted run)"
        )
    for change in changed:
        logger.warning(f"--resume (--force-resume): {change}; the run differs from an uninterrupted one")
