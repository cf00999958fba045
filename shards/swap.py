"""Replace the shard set in an output folder without a moment in which the folder holds no whole set.

`b1k-shards merge --overwrite` and `b1k-preprocess --overwrite` build the new set in a folder beside
OUT (`.<OUT>.b1k-new`, in OUT's parent: the same filesystem), complete with its manifest, and then
swap the two folders in one step (`renameat2(RENAME_EXCHANGE)`): before it OUT is the old set, after
it the new one; the old one, now beside OUT, is removed last. A kill at any moment leaves OUT whole.

Where the filesystem cannot exchange two names (e.g. NFS), the old set is moved aside first
(`.<OUT>.b1k-old`, renamed, never deleted before the new set is in) and the new one renamed in;
a kill between the two renames leaves the old set whole beside OUT, and the next run into OUT moves
it back (`restore_aside`) before anything else. Where OUT cannot be renamed at all (a mount point),
the files are replaced inside OUT, manifest first, and a warning says a kill then could leave OUT
without a set.

OUT's lock (`shards.lock`, a file inside OUT) is hard-linked into the new folder before the swap, so
the lock this run holds stays at OUT's path throughout.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from schemas.manifest import MANIFEST_NAME
from shards.lock import LOCK_NAME
from shards.writer import atomic_write_text

log = logging.getLogger(__name__)

_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100
_CANNOT_EXCHANGE = (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP)  # the filesystem (or kernel) lacks it
_CANNOT_RENAME = (errno.EBUSY, errno.EXDEV, errno.EPERM, errno.EACCES)  # e.g. OUT is a mount point


def staged_path(out: Path) -> Path:
    return out.parent / f".{out.name}.b1k-new"


def aside_path(out: Path) -> Path:
    return out.parent / f".{out.name}.b1k-old"


def restore_aside(out: Path) -> None:
    """Move back an old set a killed swap left beside OUT (only where OUT is then absent)."""
    out = Path(out).absolute()
    aside = aside_path(out)
    if not out.exists() and aside.is_dir():
        log.warning("%s: putting back the set a stopped run had moved aside to %s", out, aside)
        with contextlib.suppress(FileNotFoundError):  # another run put it back first
            os.rename(aside, out)


@contextlib.contextmanager
def staging(out: Path) -> Iterator[Path]:
    """A fresh, empty folder beside OUT to build the new set in; removed when the block ends (after a
    `swap_in` it holds the old set). Call with OUT's lock held: the name is OUT's, so no other run
    uses it, and a leftover of a killed run is removed first."""
    stage = staged_path(Path(out).resolve())
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def swap_in(out: Path, stage: Path) -> None:
    """Make the complete set in `stage` (from `staging`) OUT's set, the old one ending up in `stage`."""
    out = Path(out).resolve()
    with contextlib.suppress(OSError):  # the lock this run holds stays at OUT's path
        os.link(out / LOCK_NAME, stage / LOCK_NAME)
    try:
        _exchange(stage, out)
    except OSError as exc:
        if exc.errno in _CANNOT_EXCHANGE:
            _rename_aside(out, stage)
        elif exc.errno in _CANNOT_RENAME:
            _replace_inside(out, stage, exc)
        else:
            raise
    _sync_folder(out.parent)


def swap_in_built(out: Path, files: Path, manifest_text: str) -> None:
    """Make the shards and sidecars in `files` (a folder on OUT's filesystem, e.g. inside OUT) with
    this manifest OUT's set: `files` moves beside OUT, gets its manifest, and is swapped in
    (`swap_in`); the old set is removed last. Until the swap OUT keeps its old set (and whatever else
    it held, e.g. a work dir that `--resume` continues)."""
    out = Path(out).resolve()
    stage = staged_path(out)
    shutil.rmtree(stage, ignore_errors=True)  # a killed run's leftover (OUT's lock is held)
    try:
        os.rename(files, stage)
    except OSError as exc:
        if exc.errno not in _CANNOT_RENAME:
            raise
        atomic_write_text(Path(files) / MANIFEST_NAME, manifest_text)
        _replace_inside(out, Path(files), exc)
        return
    atomic_write_text(stage / MANIFEST_NAME, manifest_text)
    swap_in(out, stage)
    shutil.rmtree(stage, ignore_errors=True)


def _exchange(a: Path, b: Path) -> None:
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        raise OSError(errno.ENOSYS, "renameat2 is not available")
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(a), None, str(b))


def _rename_aside(out: Path, stage: Path) -> None:
    """The old set aside, the new one in, the old one back where `staging` removes it."""
    aside = aside_path(out)
    shutil.rmtree(aside, ignore_errors=True)
    os.rename(out, aside)
    os.rename(stage, out)  # a kill before this line: `restore_aside` puts the old set back
    os.rename(aside, stage)


def _replace_inside(out: Path, stage: Path, why: OSError) -> None:
    log.warning(
        "%s cannot be renamed (%s): replacing its files in place; a kill now could leave it without a set",
        out, why.strerror,
    )  # fmt: skip
    (out / MANIFEST_NAME).unlink(missing_ok=True)  # first: from now on OUT reads as incomplete
    for entry in out.iterdir():
        if entry.name != LOCK_NAME:
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    for entry in sorted(stage.iterdir(), key=lambda e: e.name == MANIFEST_NAME):  # the manifest last
        if entry.name != LOCK_NAME:
            shutil.move(entry, out / entry.name)


def _sync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (a crash after it keeps it)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
