"""The DataLoader over a training or val stream, and the trainer's side of it: batches one by one, as
views of the workers' shared buffers or copied out of them (`batches`)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader

from shards.codec import retain_freed_memory
from train.batch import PREFETCH_ITEMS, BatchLayout, BatchRef, allocate_batch
from train.stream import TrainStream, ValStream


def _init_worker(_worker_id: int) -> None:
    retain_freed_memory()
    # What a worker inherits from its parent (torch, lerobot, numpy: ~175k objects) lives as long as
    # it does: frozen, the cyclic GC's full collections scan only what the stream allocates
    # (~3 us less per 224 px sample measured here, 8% of the worker's own Python work).
    gc.freeze()


def make_loader(dataset: TrainStream | ValStream, *, persistent: bool = False) -> DataLoader:
    """A DataLoader over a stream of batches (decoded in its `num_workers` workers), handed out
    round-robin over the workers, in order (iterate it with `batches`)."""
    kwargs: dict[str, Any] = {}
    if dataset.num_workers > 0:
        kwargs["prefetch_factor"] = PREFETCH_ITEMS  # what `BatchBuffers` counts on
        kwargs["persistent_workers"] = persistent
        kwargs["worker_init_fn"] = _init_worker
    return DataLoader(dataset, batch_size=None, num_workers=dataset.num_workers, collate_fn=_as_is, **kwargs)


def _as_is(item: Any) -> Any:
    """The DataLoader's per-item conversion (torch's `default_convert` walks every list): none needed."""
    return item


class PinnedBuffers:
    """Two pinned host buffers the trainer copies its batches into, in turn, for asynchronous
    host-to-GPU copies: made once, where a fresh pinned buffer per batch cost a page-locking
    allocation every step (cudaHostAlloc of a whole batch; not yet measured on a GPU: `make test-gpu`).

    A buffer is refilled only after the GPU has done reading it: when the consumer asks for the next
    batch it has queued its copies of this one, so an event recorded then on the current stream marks
    their end, and the refill two batches later waits for it."""

    def __init__(self, layout: BatchLayout, count: int = 2):
        self.buffers = [allocate_batch(layout, pin_memory=True) for _ in range(count)]
        self.events: list[torch.cuda.Event | None] = [None] * count
        self.turn = 0

    def take(self) -> torch.Tensor:
        event = self.events[self.turn]
        if event is not None:
            event.synchronize()
        return self.buffers[self.turn]

    def handed_over(self) -> None:
        """The consumer is done queueing work on the buffer last taken."""
        event = torch.cuda.Event()
        event.record()
        self.events[self.turn] = event
        self.turn = (self.turn + 1) % len(self.buffers)


def batches(loader: DataLoader, *, pin_memory: bool = False, copy: bool = True) -> Iterator[dict[str, Any]]:
    """One pass of `loader` (endless for a train stream), batch by batch, their tensors copied out of
    the workers' buffers (into reused pinned buffers for asynchronous host-to-GPU copies when
    `pin_memory`: `PinnedBuffers`).

    `copy=False` (without `pin_memory`) saves that copy: the tensors are then views of a worker's
    buffer, which it refills once the consumer has taken a few further batches. A loop that is done
    with each batch before it takes the next (b1k-train on CPU) may use them; code that keeps
    batches must copy."""
    buffers = loader.dataset.buffers
    pinned = PinnedBuffers(buffers.layout) if pin_memory and buffers is not None else None
    for item in loader:
        if isinstance(item, BatchRef) and pinned is not None:
            yield buffers.batch(item, into=pinned.take())
            pinned.handed_over()
        elif isinstance(item, BatchRef):
            yield buffers.batch(item, copy=copy)
        elif pin_memory:
            yield {k: v.pin_memory() if isinstance(v, torch.Tensor) else v for k, v in item.items()}
        else:
            yield item
