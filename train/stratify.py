"""Episode-stratified shuffling: a shuffle buffer whose picks ask for given episodes, and the per-batch
schedule of which episodes each batch position asks for, so that a batch's samples come from distinct
episodes whenever the buffers hold them (`--no-stratify`: webdataset's plain buffer shuffle)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from schemas.sample import parse_sample_key
from train.seeds import seed_of


class StratifiedBuffer:
    """A shuffle buffer (like webdataset's) whose picks can ask for given episodes.

    `pick(rng, candidates)` returns a random buffered sample of the first candidate episode that is
    buffered, else a random buffered sample. Over an epoch every sample still comes out exactly once;
    only the order changes. Adding and taking are O(1): a taken sample's hole is filled with the last
    one, both in the buffer and in its episode's list of positions.
    """

    def __init__(self):
        self.items: list[dict] = []
        self.episodes: list[int] = []
        self.slots: list[int] = []  # where each item's position is in its episode's list
        self.where: dict[int, list[int]] = {}  # episode -> positions in items (unordered)

    def __len__(self) -> int:
        return len(self.items)

    def add(self, raw: dict) -> None:
        episode = parse_sample_key(raw["__key__"])[0]
        positions = self.where.setdefault(episode, [])
        self.slots.append(len(positions))
        positions.append(len(self.items))
        self.items.append(raw)
        self.episodes.append(episode)

    def pick(self, rng: random.Random, candidates: tuple[int, ...] = ()) -> dict:
        for episode in candidates:
            positions = self.where.get(episode)
            if positions:
                return self._take(positions[rng.randrange(len(positions))])
        return self._take(rng.randrange(len(self.items)))

    def _take(self, k: int) -> dict:
        items, episodes, slots = self.items, self.episodes, self.slots
        item, episode = items[k], episodes[k]
        positions = self.where[episode]
        moved = positions.pop()  # fill k's place in its episode's list with the list's last
        if moved != k:
            positions[slots[k]] = moved
            slots[moved] = slots[k]
        if not positions:
            del self.where[episode]
        last = len(items) - 1
        if k != last:  # fill the hole in the buffer with its last item
            items[k], episodes[k], slots[k] = items[last], episodes[last], slots[last]
            self.where[episodes[k]][slots[k]] = k
        items.pop()
        episodes.pop()
        slots.pop()
        return item


@dataclass(frozen=True)
class EpisodeSchedule:
    """Which episodes each position of a batch asks for, so a batch's samples come from distinct episodes.

    Per (rank, batch) a random permutation of the train episodes is drawn; position p of the batch asks
    for perm[p], then perm[p + B], perm[p + 2B], ... (B = batch size): the positions' candidate lists
    are disjoint, so two workers never fall back on the same episode. Every worker computes the same
    schedule from the seed: no communication is needed.
    """

    episodes: tuple[int, ...]  # the train episodes, sorted
    batch_size: int
    seed: int
    rank: int
    candidates: int = 8  # episodes asked for per position

    # Batches drawn one after another from one seeded generator (seeding one costs ~3 draws); it
    # also fixes the order of the runs made so far, which `--resume` continues.
    BLOCK: ClassVar[int] = 64

    @classmethod
    def of(cls, episodes: list[int], batch_size: int, seed: int, rank: int) -> EpisodeSchedule:
        return cls(tuple(sorted(episodes)), max(1, batch_size), seed, rank)

    def permutations(self, first: int) -> Iterator[np.ndarray]:
        """The permutation of each of this rank's batches, from batch `first` on, as indices into
        `episodes`: a function of (seed, rank, batch) alone, however far the stream starts."""
        count = min(len(self.episodes), self.batch_size * self.candidates)
        for block in itertools.count(first // self.BLOCK):
            rng = np.random.default_rng(seed_of(self.seed, self.rank, block, 0xE915))
            for batch in range(block * self.BLOCK, (block + 1) * self.BLOCK):
                chosen = rng.choice(len(self.episodes), size=count, replace=False)
                if batch >= first:
                    yield chosen

    def positions(self, chosen: np.ndarray) -> list[tuple[int, ...]]:
        """What each position of a batch asks for, in order of preference, given its permutation."""
        if len(chosen) == 0:
            return [()] * self.batch_size
        order = [self.episodes[i] for i in chosen.tolist()]
        # fewer episodes than positions: share them round-robin
        return [tuple(order[p % len(order) :: self.batch_size]) for p in range(self.batch_size)]

    def wanted(self, item: int) -> tuple[int, ...]:
        """The episodes asked for at this rank's `item`-th sample."""
        batch, position = divmod(item, self.batch_size)
        return self.positions(next(self.permutations(batch)))[position]


def stratified_shuffle(
    stream: Iterator[dict], bufsize: int, rng: random.Random, wanted: Iterator[tuple[int, ...]]
) -> Iterator[dict]:
    """Buffer `bufsize` samples, then yield one pick per new sample (draining at the end); each pick
    asks for the episodes `wanted` yields next."""
    buffer = StratifiedBuffer()
    for raw in stream:
        buffer.add(raw)
        if len(buffer) >= bufsize:
            yield buffer.pick(rng, next(wanted))
    while len(buffer):
        yield buffer.pick(rng, next(wanted))
