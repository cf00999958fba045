"""Episode-stratified shuffling: a shuffle buffer whose picks ask for given episodes, and the per-batch
schedule of which episodes each batch position asks for, so that a batch's samples come from distinct
episodes whenever the buffers hold them (`--no-stratify`: webdataset's plain buffer shuffle)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

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


class EpisodeSchedule:
    """Which episodes each position of a batch asks for, so a batch's samples come from distinct episodes.

    Per (rank, batch) a random permutation of the train episodes is drawn; position p of the batch asks
    for perm[p], then perm[p + B], perm[p + 2B], ... (B = batch size): the positions' candidate lists
    are disjoint, so two workers never fall back on the same episode. Every worker computes the same
    schedule from the seed: no communication is needed.
    """

    BLOCK = 64  # batches drawn from one seeded generator: seeding one cost 3x a draw

    def __init__(self, episodes: list[int], batch_size: int, seed: int, rank: int, candidates: int = 8):
        self.episodes = np.asarray(sorted(episodes), dtype=np.int64)
        self.batch_size = max(1, batch_size)
        self.seed = seed
        self.rank = rank
        self.candidates = candidates
        self._batch = -1
        self._wanted: list[tuple[int, ...]] = []  # per position of the current batch
        self._rng: np.random.Generator | None = None
        self._block = -1
        self._drawn = 0  # batches of the current block drawn so far

    def wanted(self, item: int) -> tuple[int, ...]:
        """The episodes asked for, in order of preference, at this rank's `item`-th sample."""
        if len(self.episodes) == 0:
            return ()
        batch, position = divmod(item, self.batch_size)
        if batch != self._batch:
            order = self._draw(batch)
            # fewer episodes than positions: share them round-robin
            self._wanted = [tuple(order[p % len(order) :: self.batch_size]) for p in range(self.batch_size)]
            self._batch = batch
        return self._wanted[position]

    def _draw(self, batch: int) -> list[int]:
        """Batch `batch`'s permutation: draw number batch % BLOCK of the generator of its block
        (a function of seed, rank and batch alone, however the batches are visited)."""
        block, index = divmod(batch, self.BLOCK)
        if self._rng is None or block != self._block or index < self._drawn:
            self._rng = np.random.default_rng(seed_of(self.seed, self.rank, block, 0xE915))
            self._block, self._drawn = block, 0
        count = min(len(self.episodes), self.batch_size * self.candidates)
        while True:
            chosen = self._rng.choice(len(self.episodes), size=count, replace=False)
            self._drawn += 1
            if self._drawn > index:
                return self.episodes[chosen].tolist()


def stratified_shuffle(
    stream: Iterator[dict],
    bufsize: int,
    rng: random.Random,
    wanted: Callable[[int], tuple[int, ...]],
    start: int,
) -> Iterator[dict]:
    """Buffer `bufsize` samples, then yield one pick per new sample (draining at the end); pick number
    `start + n` asks for the episodes `wanted(start + n)`."""
    buffer = StratifiedBuffer()
    index = start
    for raw in stream:
        buffer.add(raw)
        if len(buffer) >= bufsize:
            yield buffer.pick(rng, wanted(index))
            index += 1
    while len(buffer):
        yield buffer.pick(rng, wanted(index))
        index += 1
