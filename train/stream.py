"""The training stream: per-worker raw-sample streams of the shard sets, decoded into batches by each
DataLoader worker, resumable exactly.

Each DataLoader worker of each rank (a *slot*) builds, per epoch:

1. the epoch's shard order: a permutation seeded by (seed, epoch), the same on every rank;
2. its share of it, split by node (rank) and then by worker, like webdataset's `split_by_node` /
   `split_by_worker`: whole shards when there are at least as many shards as parts, otherwise
   every part reads the shards and keeps every `parts`-th sample (so 8 workers on a 3-shard set
   still all work, and ranks stay disjoint); with `--task-balance` each sample of task t is first
   repeated r_t times in a row (`train.balance`);
3. a buffer shuffle over the raw (still encoded) samples, seeded by (seed, epoch, slot), whose picks
   are episode-stratified (`train.stratify`; `--no-stratify`: webdataset's plain buffer shuffle);
4. batches of `batch_size` consecutive samples, each decoded straight into its row (`train.batch`).

The DataLoader hands out the workers' batches round-robin, so the rank's batch q comes from worker
q % workers. Because each slot's stream is a pure function of (seed, epoch, slot) and the number of
samples a slot yields per epoch is known from the manifest, the *data position* is just the number of
batches consumed: on resume every worker skips, without decoding, exactly the samples it had
delivered (`resume_point`).
"""

from __future__ import annotations

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


def plan_slot(
    shards: list[ShardRef],
    order: list[int] | None,
    rank: int,
    world: int,
    worker: int,
    workers: int,
    repeats: TaskRepeats | None = None,
) -> SlotPlan:
    """Split `shards` (in `order`) by node, then by worker: by whole shards while there are enough,
    by sample stride otherwise. The slots of one epoch partition the samples (with `repeats`, the
    repeated samples)."""
    selected = [shards[i] for i in order] if order is not None else list(shards)
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


def plan_raw(
    plan: SlotPlan, corrupt: CorruptShardLog | None = None, verified: VerifiedShards | None = None
) -> Iterator[dict]:
    stream: Iterator[dict] = itertools.chain.from_iterable(
        read_shard(s, corrupt, verified) for s in plan.shards
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


def slot_stream(
    shards: list[ShardRef],
    *,
    seed: int,
    rank: int,
    world: int,
    worker: int,
    workers: int,
    shuffle_buffer: int,
    skip: int = 0,
    schedule: EpisodeSchedule | None = None,
    batch_size: int = 1,
    corrupt: CorruptShardLog | None = None,
    verified: VerifiedShards | None = None,
    repeats: TaskRepeats | None = None,
) -> Iterator[dict]:
    """The infinite raw-sample stream of one slot (epoch after epoch), skipping its first `skip` samples.

    Whole epochs are skipped by arithmetic; inside an epoch the skipped samples are read but not decoded.
    With a `schedule`, the shuffle buffer's n-th pick asks for the episode the schedule wants at the
    rank's sample this one becomes (`rank_item`: workers fill whole batches of `batch_size`).
    """
    position = 0  # samples of this slot before the current epoch (skipped ones included)
    for epoch in itertools.count():
        plan = plan_slot(shards, epoch_order(len(shards), seed, epoch), rank, world, worker, workers, repeats)
        size = plan.samples
        if size == 0:
            raise DataSpecError(
                f"worker {worker} of rank {rank} gets no sample of a {sum(s.samples for s in shards)}-sample "
                f"split ({world} ranks x {workers} workers): use fewer workers"
            )
        if skip >= size:
            skip -= size
            position += size
            continue
        stream = plan_raw(plan, corrupt, verified)
        if shuffle_buffer > 1:
            rng = random.Random(seed_of(seed, epoch, rank, worker, 0x5EED))
            if schedule is not None:
                stream = stratified_shuffle(
                    stream,
                    shuffle_buffer,
                    rng,
                    lambda n: schedule.wanted(rank_item(n, worker, workers, batch_size)),
                    position,
                )
            else:
                stream = wds.filters.shuffle(shuffle_buffer, initial=shuffle_buffer, rng=rng)(stream)
        read = 0
        for index, raw in enumerate(stream):
            read += 1
            if index < skip:
                continue
            raw["__epoch__"] = epoch
            yield raw
        if read == 0:  # every shard of this slot was skipped as corrupt: do not spin forever
            raise DataSpecError(
                f"worker {worker} of rank {rank}: no readable shard left (all skipped as corrupt)"
            )
        skip = 0
        position += size


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
        self.sources = [src.train for src in spec.sources]
        self.episodes = [src.episodes for src in spec.sources]
        self.repeats = [src.repeats for src in spec.sources]  # `--task-balance` (None: off)
        self.batch_size = batch_size
        self.stratify = stratify
        self.weights = [src.weight for src in spec.sources]
        self.format = SampleFormat.of(spec, chunk_size)
        self.seed = seed
        self.rank = rank
        self.world = world
        self.shuffle_buffer = shuffle_buffer
        self.start_batches = start_batches
        self.num_workers = num_workers
        self.buffers = BatchBuffers(self.format, batch_size, num_workers) if num_workers > 0 else None
        self.verified = VerifiedShards()  # per process: each worker keeps its own over the epochs

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
        b = self.batch_size
        worker, consumed = resume_point(self.start_batches, loader_worker, workers)
        skip = consumed * b
        if len(self.sources) == 1:
            per_source = [skip]
        else:  # the skipped samples' sources are the first `skip` draws of this slot's mixture
            choices = mixture_choices(self.weights, self.seed, self.rank, worker)
            per_source = [0] * len(self.sources)
            for choice in itertools.islice(choices, skip):
                per_source[choice] += 1
        streams = [
            slot_stream(
                shards,
                seed=seed_of(self.seed, index),
                rank=self.rank,
                world=self.world,
                worker=worker,
                workers=workers,
                shuffle_buffer=self.shuffle_buffer,
                skip=per_source[index],
                schedule=EpisodeSchedule(self.episodes[index], b, seed_of(self.seed, index), self.rank)
                if self.stratify
                else None,
                batch_size=b,
                corrupt=self.corrupt,
                verified=self.verified,
                repeats=self.repeats[index],
            )
            for index, shards in enumerate(self.sources)
        ]
        if len(streams) == 1:
            yield from streams[0]
            return
        for choice in choices:
            yield next(streams[choice])


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
        self.verified = VerifiedShards()  # per process: persistent workers keep it between passes

    def __len__(self) -> int:  # samples of the whole split (all ranks)
        return sum(s.samples for s in self.shards)

    def __iter__(self) -> Iterator[dict[str, Any] | BatchRef]:
        in_worker = get_worker_info() is not None
        worker, workers = (_worker(self.num_workers), self.num_workers) if in_worker else (0, 1)
        plan = plan_slot(self.shards, None, self.rank, self.world, worker, workers)
        raws = plan_raw(plan, self.corrupt, self.verified)
        buffers = self.buffers if in_worker else None
        return batched(
            raws, self.format, self.batch_size, buffers=buffers, worker=worker, corrupt=self.corrupt
        )
