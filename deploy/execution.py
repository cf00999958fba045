"""How a policy turns predicted chunks into actions (`ExecutionConfig`), apart from `deploy.policy` so
that `b1k-serve` can parse its options and listen before torch is imported."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_ENSEMBLE_COEFF = 0.01


@dataclass(frozen=True)
class ExecutionConfig:
    """How chunks become actions. `action_steps=None` takes the checkpoint's `n_action_steps`."""

    action_steps: int | None = None
    ensemble: bool = False
    ensemble_coeff: float = DEFAULT_ENSEMBLE_COEFF
    seed: int = 0
