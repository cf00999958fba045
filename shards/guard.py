"""Corrupt shards while streaming: fail loudly by default, or skip and count (`--skip-corrupt`).

`iter_checked_shard(url, entry=..., members=..., location=..., skip=None|CorruptShardLog)` reads
one shard in place of `iter_tar_samples(url)`, after verifying it against its manifest entry:
verify, then read. A local shard is hashed in place (size and sha256) before its first sample; a
remote one is downloaded into the cache with a size bound, verified and read from there
(`shards.fetch`, which retries network failures). A shard that is not its manifest's bytes
therefore yields no sample at all. A tar read error, a sample that lacks a schema member, or a
sample count that differs from the manifest becomes a `ShardCorruptError` naming the shard and
suggesting `b1k-shards verify`. The trainer's stream (`train/`) and `ShardSet.checked_samples`
(a split in manifest order, e.g. for `b1k-eval`) both read every shard through it.

With `skip=None` the error is raised (the default: training stops and says why). With a
`CorruptShardLog` the rest of that shard is skipped, a warning is logged in the worker, and the
event is appended to the log's file, so the training process can count and report the skipped
shards (`log.count`, `log.summary()`). Only a problem found while reading (a damaged tar; in the
trainer, a sample that does not decode) can come after some of a shard's samples were used, and the
log says how many.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from schemas.manifest import ShardEntry
from shards.errors import ShardCorruptError
from shards.fetch import DEFAULT_RETRY, RetryPolicy, fetched
from shards.scan import ShardScan, is_local, local_file_problem

logger = logging.getLogger(__name__)


class CorruptShardLog:
    """Records shards skipped because they are corrupt; shared by DataLoader workers via a file.

    Create it once in the training process, before the DataLoader starts its workers (the object
    pickles as its path; each worker appends one JSON line per skip). With several ranks, give
    each rank its own path. `count` is the number of distinct shards found corrupt so far (the rest
    of a shard skipped, or samples of it that do not decode).
    """

    def __init__(self, path: str | Path | None = None, *, keep: bool = False):
        """`keep`: go on with the records already in `path` (a resumed run: the shards its first part
        skipped stay on record); else start it empty."""
        if path is None:
            fd, path = tempfile.mkstemp(prefix="b1k-corrupt-shards-", suffix=".jsonl")
            os.close(fd)
        self.path = str(path)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        if not (keep and Path(self.path).is_file()):
            Path(self.path).write_text("")

    def record(self, error: ShardCorruptError, *, sample_only: bool = False) -> None:
        """Log and append a skip: of the rest of the shard, or with `sample_only` of one sample that
        does not decode (the shard's other samples are still read)."""
        event = {
            "url": error.url,
            "reason": error.reason,
            "samples_read": error.samples_read,
            "skipped": "sample" if sample_only else "shard",
            "pid": os.getpid(),
            "time": time.time(),
        }
        line = json.dumps(event, sort_keys=True) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode("utf-8"))  # one short O_APPEND write: lines never interleave
        finally:
            os.close(fd)
        if sample_only:
            logger.warning(
                "skipping a sample of corrupt shard %s: %s (--skip-corrupt)", error.url, error.reason
            )
            return
        used = f"; {error.samples_read} of its samples were already read" if error.samples_read else ""
        logger.warning("skipping corrupt shard %s: %s%s (--skip-corrupt)", error.url, error.reason, used)

    def events(self) -> list[dict]:
        try:
            text = Path(self.path).read_text()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def shards(self) -> dict[str, str]:
        """Each skipped shard's URL and the first reason recorded for it."""
        out: dict[str, str] = {}
        for event in self.events():
            out.setdefault(event["url"], event["reason"])
        return out

    @property
    def count(self) -> int:
        return len(self.shards())

    def summary(self) -> str:
        shards = self.shards()
        if not shards:
            return "no corrupt shards skipped"
        events = self.events()
        cut = {event["url"] for event in events if event["skipped"] == "shard"}
        samples = sum(1 for event in events if event["skipped"] == "sample")
        skipped = []
        if cut:
            skipped.append(f"the rest of {len(cut)} corrupt shard{'s' if len(cut) != 1 else ''}")
        if samples:
            skipped.append(f"{samples} sample{'s' if samples != 1 else ''} that did not decode")
        listed = "; ".join(f"{url}: {reason}" for url, reason in shards.items())
        return (
            f"skipped {' and '.join(skipped)} (--skip-corrupt), so this run trained on fewer samples "
            f"than the manifest lists: {listed}. Run `b1k-shards verify` on the set to see every problem."
        )

    def __repr__(self) -> str:
        return f"CorruptShardLog({self.path!r})"


class VerifiedShards:
    """The local shards whose sha256 this process has already checked, each with what `os.stat`
    said of the file then (size, mtime, inode, device and ctime). A later pass over an unchanged file
    skips re-hashing it (a training worker reads its shards again every epoch; hashing is ~3% of its
    work); its size, tar structure, sample count and members are still checked. Shards read
    through a URL or command are always hashed.

    The ctime is what an in-place rewrite cannot fake: `os.utime` restores an mtime, but every write
    or utime call sets the ctime to the present (only changing the system clock could set it back)."""

    def __init__(self):
        self._seen: dict[str, tuple[int, ...]] = {}

    @staticmethod
    def identity(url: str) -> tuple[int, ...] | None:
        if not is_local(url):
            return None
        try:
            st = os.stat(url)
        except OSError:
            return None
        return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev, st.st_ctime_ns)

    def holds(self, url: str, identity: tuple[int, ...] | None) -> bool:
        return identity is not None and self._seen.get(url) == identity

    def add(self, url: str, identity: tuple[int, ...]) -> None:
        self._seen[url] = identity


@contextlib.contextmanager
def _verified_file(
    url: str, entry: ShardEntry | None, hashed_before: bool, retry: RetryPolicy
) -> Iterator[str]:
    """Where to read shard `url` from once it is known to be its manifest entry's bytes: a local file
    hashed in place (unless hashed before, unchanged), a remote one downloaded and verified into a
    temporary file (`shards.fetch`). Without an entry there is nothing to verify against: as it is."""
    if entry is None or hashed_before:
        yield url
    elif is_local(url):
        if problem := local_file_problem(url, entry):
            raise ShardCorruptError.of(url, problem)
        yield url
    else:
        with fetched(url, entry, retry) as path:
            yield str(path)


def _checked_shard(
    url: str,
    entry: ShardEntry | None,
    required: Sequence[str],
    location: str | None,
    verified: VerifiedShards | None = None,
    zero_copy: bool = False,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> Iterator[dict]:
    identity = verified.identity(url) if verified is not None and entry is not None else None
    hashed_before = verified is not None and verified.holds(url, identity)
    try:
        with _verified_file(url, entry, hashed_before, retry) as path:
            if verified is not None and identity is not None:
                verified.add(url, identity)
            # hashed before and unchanged since: its header checksums need no second look either
            scan = ShardScan(path, digest=False, check_headers=not hashed_before, zero_copy=zero_copy)
            for sample in scan:
                sample["__url__"] = url  # the shard's address, not the temporary copy's
                missing = [m for m in required if m not in sample]
                if missing:
                    plural = "s" if len(missing) > 1 else ""
                    reason = f"sample {sample['__key__']} lacks member{plural} {', '.join(missing)}"
                    raise ShardCorruptError.of(url, reason, scan.samples - 1, location)
                yield sample
            if entry is not None and scan.samples != entry.samples:
                reason = f"{scan.samples} samples, manifest says {entry.samples}"
                raise ShardCorruptError.of(url, reason, scan.samples, location)
    except ShardCorruptError as error:
        if location is not None or error.url != url:  # name the shard (not a temporary copy) and its set
            raise ShardCorruptError.of(url, error.reason, error.samples_read, location) from error.__cause__
        raise


def iter_checked_shard(
    url: str,
    *,
    entry: ShardEntry | None = None,
    members: Sequence[str] | None = None,
    location: str | None = None,
    skip: CorruptShardLog | None = None,
    verified: VerifiedShards | None = None,
    zero_copy: bool = False,
) -> Iterator[dict]:
    """The raw samples of one shard (like `iter_tar_samples`), verified first, then checked as they stream.

    `entry` is the shard's manifest entry (`ShardSet.expected(split)[url]`): the shard's size and
    sha256 are checked before its first sample (a remote shard is downloaded and verified first:
    `shards.fetch`), and its sample count at the end. `members` (`ShardSet.members`) must be in every sample. A problem raises
    `ShardCorruptError` naming the shard and suggesting `b1k-shards verify <location>`; with `skip`
    it is recorded there (a warning is logged) and the shard simply ends. With `verified`, an
    unchanged local shard already hashed in this process is not hashed again. With `zero_copy`, a
    local shard's members are memoryviews of a map of the file (`ShardScan`), not bytes.
    """
    try:
        yield from _checked_shard(url, entry, tuple(members or ()), location, verified, zero_copy)
    except ShardCorruptError as error:
        if skip is None:
            raise
        skip.record(error)
