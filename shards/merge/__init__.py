"""`b1k-shards merge OUT SET...`: one shard set from several.

Two uses, freely mixed in one call:
- the partition outputs of one preprocess (`b1k-preprocess --partition K/N`): they must come from
  the same run configuration (source fingerprint and every option that decides the samples) and
  all N must be present; the result is the set one run over the whole selection would have
  written, up to the shard layout (same samples, same episodes and splits, same stats);
- sets of different tasks (or datasets) into one multi-task set: refused, naming the field and
  the values, when their schema version, state preset/indices, horizon, cameras, action layout,
  fps, frame stride or temporal alpha differ; their episodes must be disjoint.

A merge, step by step, one module each: check and group the inputs (`shards.merge.inputs`); place
their shards in OUT, hardlinked or copied and checked (`shards.merge.shards`); merge the stats
exactly from the inputs' sidecars (`shards.merge.stats`); write the manifest, last
(`shards.merge.manifest`). A non-empty OUT is refused without `overwrite`; OUT is locked
(`shards.lock`) for the whole merge. The merged set is built beside OUT and swapped in whole
(`shards.swap`): a merge that fails or is killed at any point leaves OUT's earlier set (or nothing,
where there was none) as it was.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from schemas.manifest import MANIFEST_NAME, Manifest, dump_manifest
from shards.lock import FolderLock, FolderLockedError
from shards.merge.inputs import (
    MergeError,
    MergeInput,
    check_compatible,
    check_disjoint,
    group_inputs,
    merge_tasks,
)
from shards.merge.manifest import TOOL, build_manifest
from shards.merge.shards import (
    PlacedShard,
    check_output,
    check_placed,
    check_replaceable,
    place_shards,
    transfer_shard,
)
from shards.merge.stats import merge_stats
from shards.reader import open_shard_set
from shards.swap import restore_aside, staging, swap_in
from shards.writer import atomic_write_text


def merge_sets(
    out: str | Path,
    locations: list[str],
    *,
    overwrite: bool = False,
    link: bool = True,
    workers: int = 4,
    command: str | None = None,
    log: Callable[[str], None] | None = None,
) -> Manifest:
    """Merge the sets at `locations` into a new set at `out`; returns the merged manifest."""
    log = log or (lambda message: print(message, file=sys.stderr))
    if not locations:
        raise MergeError("nothing to merge: give at least one SET")
    inputs = []
    for order, location in enumerate(locations):
        inputs.append(MergeInput(open_shard_set(location), order))
    roots = [
        i.shard_set.root if i.shard_set.kind != "local" else str(Path(i.shard_set.root).resolve())
        for i in inputs
    ]
    for i, root in enumerate(roots):
        if root in roots[:i]:
            raise MergeError(f"{locations[i]} is given twice")
    check_compatible(inputs)
    groups = group_inputs(inputs)
    ordered = [inp for group in groups for inp in group]
    check_disjoint(ordered)
    tasks = merge_tasks(ordered)
    for group in groups:
        part = group[0].partition
        what = f"partitions 0..{part.count - 1} of one run" if part else "a complete set"
        log(f"merge: {what}: {', '.join(i.location for i in group)}")

    out = Path(out)
    check_output(out, inputs)
    restore_aside(out)
    try:
        with FolderLock(out, TOOL):  # held until the new set is in OUT
            check_replaceable(out, overwrite)
            with staging(out) as stage:
                manifest = _merge_into(
                    stage, ordered, groups, tasks, link=link, workers=workers, command=command, log=log
                )
                swap_in(out, stage)
    except FolderLockedError as exc:
        raise MergeError(f"OUT {exc}") from None
    train, val = manifest.splits.train, manifest.splits.val
    log(
        f"merge: wrote {out / MANIFEST_NAME}: {len(train.episodes)} train / "
        f"{len(val.episodes)} val episodes, {train.shard_samples} / {val.shard_samples} samples, "
        f"{len(tasks)} task{'s' if len(tasks) != 1 else ''}"
    )
    return manifest


def _merge_into(
    out: Path,
    ordered: list[MergeInput],
    groups: list[list[MergeInput]],
    tasks: dict[int, str],
    *,
    link: bool,
    workers: int,
    command: str | None,
    log: Callable[[str], None],
) -> Manifest:
    """The merge proper into the empty folder `out` (OUT's stage): place the shards (each one's tar
    read through: a shard no reader can read is not merged), merge stats, manifest last."""
    placed = place_shards(ordered)
    outcomes: dict[str, int] = {}

    def move(p: PlacedShard) -> str:
        how = transfer_shard(p.inp, p.entry, out / p.name, link)
        check_placed(out / p.name, p.entry, p.inp.shard_set.url(p.entry.name), p.inp.location)
        return how

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for how in pool.map(move, placed):
            outcomes[how] = outcomes.get(how, 0) + 1
    log(
        f"merge: {len(placed)} shards placed ({', '.join(f'{n} {how}' for how, n in sorted(outcomes.items()))})"
    )

    shard_paths = {
        inp.order: [out / p.name for p in placed if p.inp is inp and p.split == "train"] for inp in ordered
    }
    stats, stats_values = merge_stats(out, ordered, shard_paths, log)
    manifest = build_manifest(
        ordered, groups, placed, stats, stats_values, tasks, command or " ".join(sys.argv)
    )
    atomic_write_text(out / MANIFEST_NAME, dump_manifest(manifest))
    return manifest


__all__ = ["MergeError", "check_compatible", "merge_sets"]
