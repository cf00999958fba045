"""What `b1k-train` checks of its shard sets before it sizes a buffer or builds a model: it refuses to
train on what `b1k-shards verify` calls broken, and on camera sizes that its shards' images do not have.

- `refuse_broken`: stats no data could have (std 0 or 1e-300 on data that varies, values past
  float32: `shards.stats.stats_problems`), shards listed twice, split totals that differ from their
  shards', and (unless `--allow-split-overlap`) episodes in both train and val. Each is a
  `DataSpecError` naming the set and the problem.
- `check_cameras`: a set's manifest says how large each camera's images are, and the batch buffers are
  sized by it (a 2048 px claim is gigabytes of shared memory). Before any is made, the first sample of
  each set's first train shard (its shard verified against the manifest first, as every read is) has
  each image's header read and compared with its camera's claimed size.
- `check_buffer_memory`: the buffers' total against this machine's memory, before they are made.
"""

from __future__ import annotations

import logging
import os

from shards.codec import image_size
from shards.errors import ShardSetError
from shards.guard import iter_checked_shard
from shards.verify import listing_problems, overlap_problems, stats_set_problems
from train.errors import DataSpecError
from train.spec import DataSpec, ShardSource

logger = logging.getLogger(__name__)


def refuse_broken(spec: DataSpec, allow_split_overlap: bool) -> None:
    """`DataSpecError` naming the first set whose manifest `verify` calls broken; a train/val overlap
    is only logged with `allow_split_overlap`."""
    for src in spec.sources:
        manifest = src.manifest
        problems = stats_set_problems(manifest) + listing_problems(manifest)
        overlap = overlap_problems(manifest)
        if overlap and allow_split_overlap:
            logger.warning(
                "%s: %s (--allow-split-overlap: the val loss measures training data)",
                src.location,
                overlap[0],
            )
        elif overlap:
            problems += [f"{overlap[0]} (--allow-split-overlap trains anyway)"]
        if problems:
            more = f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
            raise DataSpecError(
                f"{src.location}: refusing to train on a broken set: {'; '.join(problems[:3])}{more}; "
                f"see `b1k-shards verify {src.location}`"
            )


def check_cameras(spec: DataSpec) -> None:
    """Each set's first train sample has images of its cameras' claimed sizes (`DataSpecError` if not)."""
    for src in spec.sources:
        sample = _first_sample(src)
        for camera in spec.cameras:
            size = image_size(sample.get(camera.member, b""))
            if size != (camera.height, camera.width):
                found = f"{size[0]}x{size[1]}" if size else "no readable JPEG/PNG header"
                raise DataSpecError(
                    f"{src.location}: its manifest says camera {camera.name} is {camera.height}x{camera.width}, "
                    f"but sample {sample.get('__key__')} of {sample.get('__url__')} has {found} in {camera.member}; "
                    f"see `b1k-shards verify {src.location}`"
                )


def _first_sample(src: ShardSource) -> dict:
    """The first sample of the set's first readable train shard (a corrupt one is left to the stream,
    which stops on it or, with `--skip-corrupt`, skips it; when none can be read, the first one's error)."""
    first_error: ShardSetError | None = None
    for ref in src.train:
        try:
            samples = iter_checked_shard(ref.url, entry=ref.entry, members=ref.members, location=ref.location)
            sample = next(samples, None)
            samples.close()
        except ShardSetError as exc:
            first_error = first_error or exc
            continue
        if sample is not None:
            return sample
    if first_error is not None:
        raise first_error
    raise DataSpecError(f"{src.location}: its train shards hold no sample")


def check_buffer_memory(buffer_bytes: int, buffers: int) -> None:
    """`DataSpecError` when `buffers` batch buffers of `buffer_bytes` each would not fit in this
    machine's memory (they are shared memory: nothing would page them out)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return
    need = buffer_bytes * buffers
    if need > total:
        raise DataSpecError(
            f"the batch buffers need {need / 2**30:.1f} GiB ({buffers} x {buffer_bytes / 2**20:.0f} MiB), this "
            f"machine has {total / 2**30:.1f} GiB: lower --batch-size or --num-workers"
        )
