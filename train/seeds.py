"""Seeds derived from integers (seed, epoch, rank, worker, ...): the same in every process and Python
version, so every DataLoader worker of every rank computes the same schedules without talking."""

from __future__ import annotations

import numpy as np


def seed_of(*parts: int) -> int:
    """A 64-bit seed from integers."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, np.uint64)[0])
