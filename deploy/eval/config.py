"""What `b1k-eval` is asked to do (`EvalConfig`), and the error it raises on input it cannot evaluate."""

from __future__ import annotations

from dataclasses import dataclass, field

from deploy.policy import ExecutionConfig
from schemas.errors import B1kError

DEFAULT_BINS = 5
DEFAULT_BATCH_SIZE = 32


class EvalError(B1kError, ValueError):
    """Input `b1k-eval` cannot evaluate (the message says what and where)."""


@dataclass(frozen=True)
class EvalConfig:
    split: str = "val"
    seed: int = 0
    bins: int = DEFAULT_BINS
    max_frames: int | None = None  # None: every frame of the split
    batch_size: int = DEFAULT_BATCH_SIZE
    device: str = "auto"
    vlm_model: str | None = None
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    progress: bool = False
