"""The training stream: per-worker raw-sample streams of the shard sets, decoded into batches by each
DataLoader worker, resumable exactly.

Each DataLoader worker of each rank (a *slot*) builds, per epoch, a chain of generator stages
(each takes the stream and yields, as webdataset's do), listed in `epoch_stream`:

1. `epoch_plan`: the epoch's shard order, a permutation seeded by (seed, epoch), the same on every
   rank; the slot's share of it, split by node (rank) and then by worker, like webdataset's
   `split_by_node` / `split_by_worker`: whole shards when there are at least as many shards as parts,
   otherwise every part reads the shards and keeps every `parts`-th sample (so 8 workers on a 3-shard
   set still all work, and ranks stay disjoint);
2. `plan_raw`: the shards read and checked as they stream (`read_shard`); with `--task-balance` each
   sample of task t repeated r_t times in a row (`repeat_by_task`, `train.balance`); the sample strides;
3. `shuffle`: a buffer shuffle over the raw (still encoded) samples, seeded by (seed, epoch, slot),
   whose picks are episode-stratified (`train.stratify`; `--no-stratify`: webdataset's plain one);
4. `require_samples`, the resumed run's skip, `tag_epoch`;

then, per worker, `mixed` (several `--shards` sets) and `train.batch.batched`: batches of
`batch_size` consecutive samples, each decoded straight into its row.

The DataLoader hands out the workers' batches round-robin, so the rank's batch q comes from worker
q % workers. Because each slot's stream is a pure function of (seed, epoch, slot) and the number of
samples a slot yields per epoch is known from the manifest, the *data position* is just the number of
batches consumed: on resume every worker skips, without decoding, exactly the samples it had
delivered (`resume_point`).
"""

from __future__ import annotations

import collections
import itertools
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import webdataset as wds
from torch.utils.data import IterableDataset, get_worker_info

from schemas.sample import parse_sample_key
from shards.errors import ShardSetError
from shards.guard import CorruptShardLog, VerifiedShards, iter_checked_shard
from shards.reader import iter_tar_samples
from train.balance import TaskRepeats
from train.batch import BatchBuffers, BatchRef, SampleFormat, batched
from train.errors import DataSpecError, ShardReadError
from train.seeds import seed_of
from train.spec import DataSpec, ShardRef
from train.stratify import EpisodeSchedule, stratified_shuffle


@dataclass(frozen=True)
class SlotPlan:
    """What one slot reads in one epoch: its shards in order, each sample repeated by its task
    (`--task-balance`), then sample strides (stride, offset)."""

    shards: tuple[ShardRef, ...]
    strides: tuple[tuple[int, int], ...]
    repeats: TaskRepeats | None = None

    @property
    def samples(self) -> int:
        """Samples the slot yields per epoch, known from the manifest alone."""
        count = (lambda s: s.samples) if self.repeats is None else self.repeats.shard_samples
        total = sum(count(s) for s in self.shards)
        for stride, offset in self.strides:
            total = len(range(offset, total, stride))
        return total


@dataclass(frozen=True)
class Slot:
    """One DataLoader worker of one rank as a shard set's stream sees it: whose samples it reads
    (its seed, rank of world, worker of workers) and how it shuffles and batches them."""

    seed: int
    rank: int = 0
    world: int = 1
    worker: int = 0
    workers: int = 1
    batch_size: int = 1
    shuffle_buffer: int = 0  # samples; 0 or 1: read in order


@dataclass(frozen=True)
class ShardChecks:
    """How shards are checked as they stream (`read_shard`)."""

    corrupt: CorruptShardLog | None = None  # `--skip-corrupt`: problems recorded here (else they raise)
    verified: VerifiedShards | None = None  # shards this process has hashed already


STRICT = ShardChecks()  # every problem raises; every shard hashed as it streams


@dataclass(frozen=True)
class SlotSource:
    """One shard set's train split as the slots read it."""

    shards: tuple[ShardRef, ...]
    checks: ShardChecks = STRICT
    repeats: TaskRepeats | None = None  # `--task-balance`: each sample repeated by its task
    schedule: EpisodeSchedule | None = None  # `--stratify`'s picks (None: webdataset's plain shuffle)


def plan_slot(
    shards: list[ShardRef],
    order: list[int],
    rank: int,
    world: int,
    worker: int,
    workers: int,
    repeats: TaskRepeats | None = None,
) -> SlotPlan:
    """Split `shards` (in `order`) by node, then by worker: by whole shards while there are enough,
    by sample stride otherwise. The slots of one epoch partition the samples (with `repeats`, the
    repeated samples)."""
    selected = [shards[i] for i in order]
    strides: list[tuple[int, int]] = []
    for part, parts in ((rank, world), (worker, workers)):
        if parts <= 1:
            continue
        if not strides and len(selected) >= parts:
            selected = selected[part::parts]
        else:
            strides.append((parts, part))
    return SlotPlan(tuple(selected), tuple(strides), repeats)


def epoch_order(n_shards: int, seed: int, epoch: int) -> list[int]:
    return np.random.default_rng(seed_of(seed, epoch, 0x5A4D)).permutation(n_shards).tolist()


def read_shard(
    ref: ShardRef | str, corrupt: CorruptShardLog | None = None, verified: VerifiedShards | None = None
) -> Iterator[dict]:
    """Raw samples of one shard. With a `ShardRef`, `shards.guard` checks it as it streams (size, sample
    count, sha256, members) and a problem raises `ShardCorruptError` naming it, or, with a `corrupt`
    log (`--skip-corrupt`), is recorded there and ends the shard. `verified`: the shards this process
    has hashed already (not hashed again while unchanged)."""
    url = ref if isinstance(ref, str) else ref.url
    try:
        if isinstance(ref, str):
            yield from iter_tar_samples(url)
        else:
            yield from iter_checked_shard(
                url,
                entry=ref.entry,
                members=ref.members,
                location=ref.location,
                skip=corrupt,
                verified=verified,
                zero_copy=True,  # members are views of a map of the file: decoded from where they lie
            )
    except GeneratorExit:  # first: closed at interpreter exit, this module's names may be gone
        raise
    except ShardSetError:
        raise
    except Exception as exc:
        raise ShardReadError(f"cannot read shard {url}: {type(exc).__name__}: {exc}") from exc


def plan_raw(plan: SlotPlan, checks: ShardChecks = STRICT) -> Iterator[dict]:
    """The plan's raw samples: its shards read and checked one after the other, each sample repeated
    by its task (`--task-balance`), then the slot's share by sample stride."""
    stream: Iterator[dict] = itertools.chain.from_iterable(
        read_shard(s, checks.corrupt, checks.verified) for s in plan.shards
    )
    if plan.repeats is not None:
        stream = repeat_by_task(stream, plan.repeats.of_episode)
    for stride, offset in plan.strides:
        stream = itertools.islice(stream, offset, None, stride)
    return stream


def repeat_by_task(stream: Iterator[dict], repeats_of_episode: Callable[[int], int]) -> Iterator[dict]:
    """Each raw sample `repeats_of_episode(its episode)` times in a row (`--task-balance`); the task
    comes from the key's episode, so nothing is parsed. The copies share the members, not the dict."""
    for raw in stream:
        repeats = repeats_of_episode(parse_sample_key(raw["__key__"])[0])
        yield raw
        for _ in range(repeats - 1):
            yield dict(raw)


def slot_stream(source: SlotSource, slot: Slot, skip: int = 0) -> Iterator[dict]:
    """The infinite raw-sample stream of one slot (epoch after epoch), skipping its first `skip` samples.

    Whole epochs are skipped by arithmetic; inside an epoch the skipped samples are read but not decoded."""
    first_pick = 0  # the slot's samples before this epoch, skipped ones included
    for epoch in itertools.count():
        plan = epoch_plan(source, slot, epoch)
        if skip < plan.samples:
            yield from epoch_stream(source, slot, plan, epoch, first_pick, skip)
            skip = 0
        else:
            skip -= plan.samples
        first_pick += plan.samples


def epoch_plan(source: SlotSource, slot: Slot, epoch: int) -> SlotPlan:
    """What the slot reads in `epoch`: its share of the epoch's shard order."""
    order = epoch_order(len(source.shards), slot.seed, epoch)
    plan = plan_slot(
        list(source.shards), order, slot.rank, slot.world, slot.worker, slot.workers, source.repeats
    )
    if plan.samples == 0:
        raise DataSpecError(
            f"worker {slot.worker} of rank {slot.rank} gets no sample of a "
            f"{sum(s.samples for s in source.shards)}-sample split ({slot.world} ranks x {slot.workers} "
            "workers): use fewer workers"
        )
    return plan


def epoch_stream(
    source: SlotSource, slot: Slot, plan: SlotPlan, epoch: int, first_pick: int, skip: int
) -> Iterator[dict]:
    """One epoch of a slot, stage by stage (each takes the stream and yields, as webdataset's do).
    `first_pick`: the slot's samples before this epoch (where the episode schedule is)."""
    stream = plan_raw(plan, source.checks)  # read, check, repeat by task, the slot's share
    stream = shuffle(stream, source, slot, epoch, first_pick)
    stream = require_samples(stream, slot)
    stream = itertools.islice(stream, skip, None)  # what a resumed run consumed: read, not decoded
    return tag_epoch(stream, epoch)


def shuffle(
    stream: Iterator[dict], source: SlotSource, slot: Slot, epoch: int, first_pick: int
) -> Iterator[dict]:
    """A buffer shuffle seeded by (seed, epoch, slot): episode-stratified picks with a schedule,
    webdataset's plain shuffle without one, none with a buffer of 0 or 1."""
    if slot.shuffle_buffer <= 1:
        return stream
    rng = random.Random(seed_of(slot.seed, epoch, slot.rank, slot.worker, 0x5EED))
    if source.schedule is None:
        return wds.filters.shuffle(slot.shuffle_buffer, initial=slot.shuffle_buffer, rng=rng)(stream)
    wanted = picks_wanted(source.schedule, slot, first_pick)
    return stratified_shuffle(stream, slot.shuffle_buffer, rng, wanted)


def picks_wanted(schedule: EpisodeSchedule, slot: Slot, first_pick: int) -> Iterator[tuple[int, ...]]:
    """The episodes each of the slot's picks asks for, from its `first_pick`-th on. Workers fill
    whole batches, which the DataLoader hands out round-robin: worker w's q-th batch is the rank's
    batch q * workers + w (`rank_item`)."""
    b, worker, workers = slot.batch_size, slot.worker, slot.workers
    q, position = divmod(first_pick, b)
    orders = itertools.islice(schedule.permutations(q * workers + worker), 0, None, workers)
    for order in orders:
        yield from schedule.positions(order)[position:]
        position = 0


def require_samples(stream: Iterator[dict], slot: Slot) -> Iterator[dict]:
    """The stream, refused when it yields nothing: every shard of the slot was skipped as corrupt
    (an endless stream of empty epochs would spin forever)."""
    empty = True
    for raw in stream:
        empty = False
        yield raw
    if empty:
        raise DataSpecError(
            f"worker {slot.worker} of rank {slot.rank}: no readable shard left (all skipped as corrupt)"
        )


def tag_epoch(stream: Iterator[dict], epoch: int) -> Iterator[dict]:
    """Each raw sample marked with its epoch (batches report the newest)."""
    for raw in stream:
        raw["__epoch__"] = epoch
        yield raw


def mixed(streams: list[Iterator[dict]], choices: Iterator[int]) -> Iterator[dict]:
    """The next sample of the stream each choice names (several `--shards` sets)."""
    for choice in choices:
        yield next(streams[choice])


def mixture_choices(weights: list[float], seed: int, rank: int, worker: int) -> Iterator[int]:
    """Which source each successive sample of a slot comes from (deterministic, seeded per slot)."""
    probs = np.asarray(weights, dtype=np.float64)
    probs = probs / probs.sum()
    rng = np.random.default_rng(seed_of(seed, rank, worker, 0x313C))
    while True:
        yield from rng.choice(len(probs), size=4096, p=probs).tolist()


def rank_item(n: int, worker: int, workers: int, batch_size: int) -> int:
    """The rank's sample index of a worker's n-th sample: workers fill whole batches, which the
    DataLoader hands out round-robin (worker w's q-th batch is the rank's batch q * workers + w)."""
    batch, position = divmod(n, batch_size)
    return (batch * workers + worker) * batch_size + position


def resume_point(batches_consumed: int, loader_worker: int, workers: int) -> tuple[int, int]:
    """(logical worker, batches of it already consumed) for DataLoader worker `loader_worker` after
    `batches_consumed` batches. The DataLoader asks its worker 0 first: the next batch is the rank's
    batch `batches_consumed`, whose logical worker worker 0 plays (and so on round-robin)."""
    worker = (loader_worker + batches_consumed) % workers
    return worker, len(range(worker, batches_consumed, workers))


def _worker(num_workers: int) -> int:
    """This DataLoader worker's id (0 in the consuming process), checked against the stream's count."""
    info = get_worker_info()
    if info is None:
        return 0
    if info.num_workers != num_workers:
        raise ValueError(
            f"the stream was made for {num_workers} DataLoader workers, the loader has {info.num_workers}: "
            "build the loader with make_loader"
        )
    return info.id


class TrainStream(IterableDataset):
    """Infinite per-rank stream of batches, starting after `start_batches` consumed batches.

    With `num_workers` > 0 (iterate it with `train.loader.make_loader` and `batches`), each
    DataLoader worker decodes whole batches of its own samples into its shared buffers and hands
    over `BatchRef`s; iterated in this process, it yields batches of their own (worker 0 of 1)."""

    def __init__(
        self,
        spec: DataSpec,
        *,
        chunk_size: int,
        seed: int,
        batch_size: int,
        rank: int = 0,
        world: int = 1,
        shuffle_buffer: int = 1000,
        start_batches: int = 0,
        stratify: bool = True,
        corrupt: CorruptShardLog | None = None,
        num_workers: int = 0,
    ):
        super().__init__()
        self.corrupt = corrupt
        # per process: each worker keeps its own over the epochs
        checks = ShardChecks(corrupt, VerifiedShards())
        self.sources = [
            SlotSource(
                tuple(src.train),
                checks,
                src.repeats,
                EpisodeSchedule.of(src.episodes, batch_size, seed_of(seed, index), rank)
                if stratify
                else None,
            )
            for index, src in enumerate(spec.sources)
        ]
        self.batch_size = batch_size
        self.weights = [src.weight for src in spec.sources]
        self.format = SampleFormat.of(spec, chunk_size)
        self.seed = seed
        self.rank = rank
        self.world = world
        self.shuffle_buffer = shuffle_buffer
        self.start_batches = start_batches
        self.num_workers = num_workers
        self.buffers = BatchBuffers(self.format, batch_size, num_workers) if num_workers > 0 else None

    def __iter__(self) -> Iterator[dict[str, Any] | BatchRef]:
        if get_worker_info() is None:  # in the consuming process: batch by batch
            return self.worker_batches()
        worker = _worker(self.num_workers)
        return self.worker_batches(worker, self.num_workers, buffers=self.buffers)

    def worker_batches(
        self, loader_worker: int = 0, workers: int = 1, buffers: BatchBuffers | None = None
    ) -> Iterator[dict[str, Any] | BatchRef]:
        """The batches DataLoader worker `loader_worker` of `workers` makes (see `batched`)."""
        raws = self.raw_samples(loader_worker, workers)
        return batched(
            raws, self.format, self.batch_size, buffers=buffers, worker=loader_worker, corrupt=self.corrupt
        )

    def raw_samples(self, loader_worker: int = 0, workers: int = 1) -> Iterator[dict]:
        """The raw samples of DataLoader worker `loader_worker` of `workers`, in batch order."""
        worker, consumed = resume_point(self.start_batches, loader_worker, workers)
        skip = consumed * self.batch_size
        if len(self.sources) == 1:
            return slot_stream(self.sources[0], self.slot(0, worker, workers), skip)
        choices = mixture_choices(self.weights, self.seed, self.rank, worker)
        # the skipped samples' sources are the first `skip` draws of this slot's mixture
        skipped = collections.Counter(itertools.islice(choices, skip))
        streams = [
            slot_stream(source, self.slot(index, worker, workers), skipped[index])
            for index, source in enumerate(self.sources)
        ]
        return mixed(streams, choices)

    def slot(self, source: int, worker: int, workers: int) -> Slot:
        """Logical worker `worker` of `workers` of this rank, reading source `source`."""
        return Slot(
            seed=seed_of(self.seed, source),
            rank=self.rank,
            world=self.world,
            worker=worker,
            workers=workers,
            batch_size=self.batch_size,
            shuffle_buffer=self.shuffle_buffer,
        )


class ValStream(IterableDataset):
    """One deterministic pass over the val splits (no shuffle), split by node and worker, in batches
    (each worker's last one may be short), handed over like `TrainStream`'s."""

    def __init__(
        self,
        spec: DataSpec,
        *,
        chunk_size: int,
        batch_size: int,
        rank: int = 0,
        world: int = 1,
        corrupt: CorruptShardLog | None = None,
        num_workers: int = 0,
    ):
        super().__init__()
        self.corrupt = corrupt
        self.shards = [ref for src in spec.sources for ref in src.val]
        self.format = SampleFormat.of(spec, chunk_size)
        self.batch_size = batch_size
        self.rank = rank
        self.world = world
        self.num_workers = num_workers
        self.buffers = BatchBuffers(self.format, batch_size, num_workers) if num_workers > 0 else None
        # per process: persistent workers keep it between passes
        self.checks = ShardChecks(corrupt, VerifiedShards())

    def __len__(self) -> int:  # samples of the whole split (all ranks)
        return sum(s.samples for s in self.shards)

    def __iter__(self) -> Iterator[dict[str, Any] | BatchRef]:
        in_worker = get_worker_info() is not None
        worker, workers = (_worker(self.num_workers), self.num_workers) if in_worker else (0, 1)
        in_order = list(range(len(self.shards)))
        plan = plan_slot(self.shards, in_order, self.rank, self.world, worker, workers)
        raws = plan_raw(plan, self.checks)
        buffers = self.buffers if in_worker else None
        return batched(
            raws, self.format, self.batch_size, buffers=buffers, worker=worker, corrupt=self.corrupt
        )
