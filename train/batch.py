"""Batches: raw samples decoded straight into the rows of a batch, and the shared-memory buffers that
DataLoader workers decode into and the trainer reads from (`BatchBuffers`).

A batch's tensors (images uint8 (B, 3, H, W), state, action chunk, padding mask) live in one byte
buffer (`BatchLayout`); its per-sample values (task, progress, episode, frame, key, epoch) are lists.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from schemas.r1pro import ACTION_KEY, PAD_KEY, STATE_KEY
from schemas.sample import ACTION_IS_PAD_MEMBER, ACTION_MEMBER, JSON_MEMBER, STATE_MEMBER
from shards.codec import decode_image_into, npy_into
from shards.errors import ShardCorruptError
from shards.guard import CorruptShardLog
from train.spec import CameraSpec, DataSpec

# Per-sample values a batch carries as lists (the tensors are in its buffer).
LIST_KEYS = ("task", "progress", "episode_index", "frame_index", "key", "epoch")


# ---------------------------------------------------------------------------------------------
# Where a batch's tensors live in its buffer


@dataclass(frozen=True)
class TensorSlot:
    """Where one batch tensor lives in a batch buffer: byte offset, dtype and logical shape.

    A 4-D (B, C, H, W) image tensor is stored channels-last (B, H, W, C): JPEG decoders write
    pixels interleaved, so an image is decoded straight into its row, while a channel-first
    copy is a strided gather that measured ~1 ms per 512x512 image here. SmolVLA gets the
    (B, C, H, W) view; every torch op takes it, and `.to(device)` keeps the layout."""

    key: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    offset: int

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    def stored(self, buffer: torch.Tensor) -> torch.Tensor:
        """The tensor as it lies in `buffer` (images (B, H, W, C): what decoders write into)."""
        flat = buffer[self.offset : self.offset + self.nbytes].view(self.dtype)
        if len(self.shape) == 4:
            b, c, h, w = self.shape
            return flat.view(b, h, w, c)
        return flat.view(self.shape)

    def view(self, buffer: torch.Tensor, rows: int | None = None) -> torch.Tensor:
        """The tensor with its logical shape (images (B, C, H, W), a view of the stored layout); with
        `rows`, its first rows only (a short last batch)."""
        stored = self.stored(buffer)[:rows]
        return stored.permute(0, 3, 1, 2) if len(self.shape) == 4 else stored


BatchLayout = tuple[TensorSlot, ...]


def layout_bytes(layout: BatchLayout) -> int:
    return max((s.offset + s.nbytes for s in layout), default=0)


def allocate_batch(layout: BatchLayout, *, shared: bool = False, pin_memory: bool = False) -> torch.Tensor:
    """One byte buffer for a whole batch (in shared memory for a hand-over between processes)."""
    buffer = torch.empty(layout_bytes(layout), dtype=torch.uint8, pin_memory=pin_memory)
    return buffer.share_memory_() if shared else buffer


# ---------------------------------------------------------------------------------------------
# Decoding: a raw sample straight into its row of each batch tensor


@dataclass(frozen=True)
class SampleFormat:
    """The tensors of a training sample as the manifest describes them, and how a raw sample is
    decoded into a batch row of them: JPEGs by the decoder itself (`shards.codec.decode_image_into`;
    copying a decoded image in had cost ~20% of decoding it), npy members read in place, no
    per-sample tensors or dicts."""

    cameras: tuple[CameraSpec, ...]
    state_dim: int
    action_dim: int
    chunk_size: int
    horizons: tuple[int, ...]  # the stored horizons of the sets: an action member has one of them

    @classmethod
    def of(cls, spec: DataSpec, chunk_size: int) -> SampleFormat:
        horizons = tuple(sorted({src.manifest.horizon for src in spec.sources})) or (spec.horizon,)
        return cls(tuple(spec.cameras), spec.state_dim, spec.action_dim, chunk_size, horizons)

    def layout(self, batch_size: int) -> BatchLayout:
        """Where each tensor of a batch of `batch_size` samples lives in its buffer."""
        tensors = [(cam.key, torch.uint8, (3, cam.height, cam.width)) for cam in self.cameras]
        tensors += [
            (STATE_KEY, torch.float32, (self.state_dim,)),
            (ACTION_KEY, torch.float32, (self.chunk_size, self.action_dim)),
            (PAD_KEY, torch.bool, (self.chunk_size,)),
        ]
        slots, offset = [], 0
        for key, dtype, shape in tensors:
            offset = -(-offset // 64) * 64  # aligned for every dtype (and cache lines)
            slots.append(TensorSlot(key, dtype, (batch_size, *shape), offset))
            offset += slots[-1].nbytes
        return tuple(slots)

    def decode_into(self, raw: dict, row: list[np.ndarray], lists: dict[str, list]) -> None:
        """Decode `raw` into `row`, its row of each batch tensor (in `layout` order, images
        channels-last), and append its metadata to `lists`. A sample that does not decode, or does
        not match the manifest, raises `ShardCorruptError` naming it and its shard; its row is
        then left to the next sample, and `lists` are untouched."""
        member = "?"  # what was being decoded, for the error
        try:
            for cam, image in zip(self.cameras, row, strict=False):
                member = cam.member
                decode_image_into(raw[member], image)  # ValueError if not the manifest's size
            state, action, pad = row[len(self.cameras) :]
            member = STATE_MEMBER
            npy_into(raw[member], state)
            for target, member in ((action, ACTION_MEMBER), (pad, ACTION_IS_PAD_MEMBER)):
                npy_into(raw[member], target, rows=self.horizons)  # the chunk: the first chunk_size steps
            member = JSON_MEMBER
            # UTF-8 by the schema: skips json's encoding sniffing (and takes a memoryview). The four
            # fields a batch carries are read alone, not as a `schemas.sample.SampleMeta`: checking and
            # building one per sample measured as much again as the json.loads (15 vs 14 us, 2-core
            # machine under load). A field missing or off its type still fails here, naming the sample.
            meta = json.loads(str(raw[member], "utf-8"))
            values = (
                str(meta["task"]),
                float(meta["progress"]),
                int(meta["episode_index"]),
                int(meta["frame_index"]),
                str(raw["__key__"]),
                int(raw.get("__epoch__", 0)),
            )
        except Exception as exc:
            reason = f"sample {raw.get('__key__')} does not decode ({member}: {type(exc).__name__}: {exc})"
            raise ShardCorruptError.of(str(raw.get("__url__", "?")), reason) from exc
        for name, value in zip(LIST_KEYS, values, strict=True):
            lists.setdefault(name, []).append(value)


class BatchWriter:
    """Fills one batch buffer row by row, decoding each raw sample into its row as it comes."""

    def __init__(self, fmt: SampleFormat, buffer: torch.Tensor, batch_size: int, slot: int | None = None):
        self.format = fmt
        self.buffer = buffer
        self.slot = slot  # its index in a `BatchBuffers`; None: a buffer of its own
        self.layout = fmt.layout(batch_size)
        # numpy views: torch's copy_ runs on its thread pool, which measured 10-100x slower when
        # other processes hold the cores; made once per buffer (they cost more than decoding a small sample)
        tensors = [slot.stored(buffer).numpy() for slot in self.layout]  # images channels-last
        self.rows = [[tensor[row] for tensor in tensors] for row in range(batch_size)]
        self.lists: dict[str, list] = {}
        self.count = 0

    def start(self) -> BatchWriter:
        """Start a batch (again) in this buffer."""
        self.lists, self.count = {}, 0
        return self

    @property
    def full(self) -> bool:
        return self.count == len(self.rows)

    def add(self, raw: dict) -> None:
        """Decode `raw` into the next row (a sample that does not decode raises and takes no row)."""
        self.format.decode_into(raw, self.rows[self.count], self.lists)
        self.count += 1

    def batch(self) -> dict[str, Any]:
        """The batch so far: its per-sample lists and its tensors as views of the buffer."""
        return {**self.lists, **{slot.key: slot.view(self.buffer, self.count) for slot in self.layout}}

    def finish(self) -> dict[str, Any] | BatchRef:
        """What is handed over: a `BatchRef` to a shared buffer's batch, or a batch of its own."""
        return self.batch() if self.slot is None else BatchRef(self.slot, self.count, self.lists)


def decode_batch(raws: list[dict], fmt: SampleFormat) -> dict[str, Any]:
    """One batch of these raw samples, in a buffer of its own: tensors and per-sample lists."""
    writer = BatchWriter(fmt, allocate_batch(fmt.layout(len(raws))), len(raws)).start()
    for raw in raws:
        writer.add(raw)
    return writer.batch()


# ---------------------------------------------------------------------------------------------
# Shared-memory batch buffers, reused: the hand-over between DataLoader workers and the trainer

PREFETCH_ITEMS = 2  # per worker, torch's default: with 1, a worker that has finished its item idles
# until the consumer takes one and asks it for the next (~4% of the workers' time measured here)
SLOTS_PER_WORKER = PREFETCH_ITEMS + 2  # enough never to refill a batch in use (`BatchBuffers`)


@dataclass(frozen=True)
class BatchRef:
    """A batch as a worker hands it over: which buffer holds its tensors, how many rows, and the
    per-sample lists. A few hundred bytes through the DataLoader's queue, whatever the image size."""

    slot: int
    rows: int
    lists: dict[str, list] = field(default_factory=dict)


class BatchBuffers:
    """Shared-memory batch buffers, made in the training process before its DataLoader workers start
    (they inherit them): worker w fills its `SLOTS_PER_WORKER` buffers in turn and hands over a
    `BatchRef`; the trainer reads the tensors as views of the same memory (`batch`).

    What reuse buys, measured (the bench's paced consumer: batch 32 every 80 ms, 8 workers, 2 cores;
    docs/performance.md, "What the data layer keeps"): against one collated batch per item in fresh
    shared memory, which the worker that fills it and the trainer that reads it each page-fault in
    (~75 MB a batch at 512 px), a data wait of 0.6-0.7% instead of 18-19% and 0.86-0.88 worker cores
    per GPU instead of 1.30-1.44 at 512 px; 0.8-0.9% instead of 4.5% at 224 px.

    Reuse is safe: the DataLoader asks a worker for its item n + PREFETCH_ITEMS only once its item n
    has been handed to the trainer, which is done with a batch before it takes the next (code that
    keeps batches copies them: `batch(copy=True)`), so PREFETCH_ITEMS + 2 buffers per worker never
    refill one in use."""

    def __init__(self, fmt: SampleFormat, batch_size: int, workers: int):
        self.format = fmt
        self.batch_size = batch_size
        self.layout = fmt.layout(batch_size)
        self.buffers = [allocate_batch(self.layout, shared=True) for _ in range(workers * SLOTS_PER_WORKER)]
        # made on first use, per process (a worker's writers, the trainer's views): never pickled
        self._writers: dict[int, BatchWriter] = {}
        self._views: dict[int, dict[str, torch.Tensor]] = {}

    def __getstate__(self) -> dict:  # a spawned worker gets the buffers (torch shares them), not the caches
        return {**self.__dict__, "_writers": {}, "_views": {}}

    def slots_of(self, worker: int) -> Iterator[int]:
        """The buffers worker `worker` fills, in turn, forever."""
        first = worker * SLOTS_PER_WORKER
        while True:
            yield from range(first, first + SLOTS_PER_WORKER)

    def writer(self, slot: int) -> BatchWriter:
        if slot not in self._writers:
            self._writers[slot] = BatchWriter(self.format, self.buffers[slot], self.batch_size, slot)
        return self._writers[slot].start()

    def batch(self, ref: BatchRef, *, copy: bool = True, into: torch.Tensor | None = None) -> dict[str, Any]:
        """The batch `ref` names: tensors as views of its shared buffer (valid until the trainer takes
        a few more batches), or with `copy`, of a private copy (one memcpy), made in `into` when given
        (a pinned buffer the trainer reuses, `PinnedBuffers`)."""
        buffer = self.buffers[ref.slot]
        if copy or into is not None:
            own = allocate_batch(self.layout) if into is None else into
            np.copyto(own.numpy(), buffer.numpy())
            return {**ref.lists, **{slot.key: slot.view(own, ref.rows) for slot in self.layout}}
        if ref.slot not in self._views:
            self._views[ref.slot] = {slot.key: slot.view(buffer) for slot in self.layout}
        views = self._views[ref.slot]
        if ref.rows < self.batch_size:
            views = {key: view[: ref.rows] for key, view in views.items()}
        return {**ref.lists, **views}


def batched(
    raws: Iterator[dict],
    fmt: SampleFormat,
    batch_size: int,
    *,
    buffers: BatchBuffers | None = None,
    worker: int = 0,
    corrupt: CorruptShardLog | None = None,
) -> Iterator[dict[str, Any] | BatchRef]:
    """Batches of `batch_size` raw samples, decoded (the last one may be short): `BatchRef`s into
    worker `worker`'s `buffers` in a DataLoader worker, batches of their own without. A sample that
    does not decode raises `ShardCorruptError`, or with a `corrupt` log (`--skip-corrupt`) is
    recorded there and its row goes to the next sample."""
    slots = buffers.slots_of(worker) if buffers is not None else None
    writer: BatchWriter | None = None
    for raw in raws:
        if writer is None:
            if slots is not None:
                writer = buffers.writer(next(slots))
            else:
                writer = BatchWriter(fmt, allocate_batch(fmt.layout(batch_size)), batch_size).start()
        try:
            writer.add(raw)
        except ShardCorruptError as error:
            if corrupt is None:
                raise
            corrupt.record(error, sample_only=True)
            continue
        if writer.full:
            yield writer.finish()
            writer = None
    if writer is not None and writer.count:
        yield writer.finish()
