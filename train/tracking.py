"""Weights & Biases for `b1k-train --wandb-project P` (optional: `pip install 'b1k-smolvla[wandb]'`), as the
original script and `lerobot-train` log to it. Every JSONL record goes there too, as `<kind>/<key>` at its
step; `WANDB_MODE=offline` keeps the run on disk (`wandb sync` later)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from schemas.errors import B1kError


class TrackingError(B1kError, RuntimeError):
    """wandb was asked for and cannot be used."""


def start_wandb(project: str | None, disabled: bool, output_dir: Path, config: dict[str, Any]):
    """A wandb run, or None with no project or `--wandb-disable`."""
    if not project or disabled:
        return None
    try:
        import wandb
    except ImportError:
        raise TrackingError(
            f"--wandb-project {project}: wandb is not installed (pip install 'b1k-smolvla[wandb]', or pass "
            f"--wandb-disable)"
        ) from None
    return wandb.init(
        project=project, dir=str(output_dir), name=Path(output_dir).name, config=config, resume="allow"
    )


def log_record(run, record: dict) -> None:
    """One JSONL record as wandb scalars `<kind>/<key>` at the record's step."""
    prefix = record.get("kind", "train")
    values = {
        f"{prefix}/{key}": value
        for key, value in record.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in ("step", "kind")
    }
    run.log(values, step=int(record["step"]))
