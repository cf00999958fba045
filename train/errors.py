"""What the trainer's data layer raises: a set it cannot train on, a shard it cannot read."""

from __future__ import annotations

from schemas.errors import B1kError
from shards.errors import ShardSetError


class ShardReadError(ShardSetError):
    """A shard cannot be read or decoded; the message names it."""


class DataSpecError(B1kError, ValueError):
    """The shard sets cannot be trained on together, or with these options."""
