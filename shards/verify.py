"""`b1k-shards verify`: check every file of a shard set against its manifest.

Per shard (full check): it exists; its size, sha256 and sample count match the manifest; every
sample has every member of schema v1 (and nothing is duplicated); every member decodes; shapes
and dtypes are right (`schemas.sample.sample_problems`, and each image has its camera's stored
size); the key, `json` and split agree (episode/frame, episode listed in the shard's split, task
known, `action_is_pad`/`progress`/`weight` consistent). `quick` checks sizes and sha256 only.

Per set: `.tar` files in the directory that the manifest does not list, sample keys that appear
twice, train/val episode overlap, per-split sample totals, and the stats sidecars (size, sha256,
shape; in a full check the manifest's stats are recomputed from them and compared).
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from schemas.manifest import MANIFEST_NAME, SPLITS, Manifest, ShardEntry
from schemas.sample import (
    ACTION_IS_PAD_MEMBER,
    JSON_MEMBER,
    SampleMeta,
    image_member,
    json_problems,
    parse_sample_key,
    sample_problems,
    temporal_weight,
)
from shards.codec import decode_member, decode_npy
from shards.errors import ShardCorruptError
from shards.reader import ShardSet
from shards.scan import ShardScan, digest_file, end_problems, local_size_problem, size_problem
from shards.stats import stats_of, stats_problems

MAX_SAMPLE_PROBLEMS = 5
STATS_RTOL = 1e-9


@dataclass
class ShardCheck:
    """The outcome for one shard (or one file the manifest does not list)."""

    split: str
    name: str
    problems: list[str] = field(default_factory=list)
    samples: int = 0
    bytes: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class VerifyReport:
    location: str
    quick: bool
    shards: list[ShardCheck] = field(default_factory=list)
    set_problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def bad_shards(self) -> list[ShardCheck]:
        return [s for s in self.shards if not s.ok]

    @property
    def ok(self) -> bool:
        return not self.bad_shards and not self.set_problems

    def lines(self, verbose: bool = False) -> list[str]:
        out = []
        for shard in self.shards:
            if shard.ok and verbose:
                out.append(
                    f"ok   {shard.name}  ({shard.split}, {shard.samples} samples, {shard.bytes} bytes)"
                )
            elif not shard.ok:
                out.append(f"BAD  {shard.name}  ({shard.split})")
                out.extend(f"       - {problem}" for problem in shard.problems)
        out.extend(f"BAD  {problem}" for problem in self.set_problems)
        out.extend(f"note {warning}" for warning in self.warnings)
        checked = sum(1 for s in self.shards if s.split in SPLITS)
        kind = "sizes and sha256 only" if self.quick else "full check"
        if self.ok:
            samples = sum(s.samples for s in self.shards)
            count = f", {samples} samples" if not self.quick else ""
            out.append(f"OK: {checked} shards{count} match the manifest ({kind})")
        else:
            bad = [s for s in self.bad_shards if s.split in SPLITS]
            extra = [s for s in self.bad_shards if s.split not in SPLITS]
            parts = [f"{len(bad)} of {checked} shards bad"]
            if extra:
                parts.append(f"{len(extra)} file{'s' if len(extra) != 1 else ''} not in the manifest")
            if self.set_problems:
                parts.append(
                    f"{len(self.set_problems)} set problem{'s' if len(self.set_problems) != 1 else ''}"
                )
            out.append(f"FAILED: {', '.join(parts)} ({kind})")
        return out

    def to_json(self) -> dict:
        return {
            "location": self.location,
            "quick": self.quick,
            "ok": self.ok,
            "shards": [vars(s) for s in self.shards],
            "set_problems": self.set_problems,
            "warnings": self.warnings,
        }


class _Context:
    """What a sample must look like in this set."""

    def __init__(self, shard_set: ShardSet):
        manifest = shard_set.manifest
        self.members = shard_set.members
        self.images = {
            image_member(name, camera.encoding): (camera.height, camera.width)
            for name, camera in manifest.cameras.items()
        }
        self.state_dim = manifest.state.dim
        self.action_dim = manifest.action.dim
        self.horizon = manifest.horizon
        self.alpha = float(manifest.temporal.alpha)
        self.tasks = {str(task) for task in manifest.tasks}
        self.episodes = {name: set(split.episodes) for name, split in manifest.splits}
        self.keys: dict[str, str] = {}
        self.duplicates: list[str] = []
        self.lock = threading.Lock()

    def note_key(self, key: str, shard: str) -> None:
        """Remember which shard holds `key`; a key seen in another shard is a duplicate."""
        with self.lock:
            first = self.keys.setdefault(key, shard)
            if first != shard:
                self.duplicates.append(f"sample {key} appears in {first} and in {shard}")


def check_sample(raw: dict[str, Any], ctx: _Context, split: str) -> list[str]:
    """What is wrong with one raw sample (member name -> bytes)."""
    key = raw.get("__key__", "?")
    problems = []
    missing = [m for m in ctx.members if m not in raw]
    if missing:
        problems.append(f"lacks member{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    decoded: dict[str, Any] = {}
    for name in ctx.members:
        if name not in raw:
            continue
        try:
            decoded[name] = decode_member(name, raw[name], image_size=ctx.images.get(name))
        except Exception as exc:
            problems.append(f"{name} does not decode ({type(exc).__name__}: {exc})")
    for problem in sample_problems(decoded, ctx.state_dim, ctx.action_dim, ctx.horizon):
        # missing and undecodable members are reported above
        absent = problem.startswith("missing member") or (
            problem.startswith("missing or invalid member") and JSON_MEMBER not in decoded
        )
        if not absent:
            problems.append(problem)
    for name, (height, width) in ctx.images.items():
        image = decoded.get(name)
        if isinstance(image, np.ndarray) and image.shape != (height, width, 3):
            problems.append(f"{name} is {list(image.shape)}, manifest says {height}x{width}x3")
    try:
        episode, frame = parse_sample_key(key)
    except ValueError as exc:
        problems.append(str(exc))
        return problems
    if episode not in ctx.episodes[split]:
        problems.append(f"episode {episode} is not listed in the {split} split's episodes")
    if not json_problems(decoded.get(JSON_MEMBER)):  # else reported above
        meta = SampleMeta.from_json(decoded[JSON_MEMBER])
        problems += _json_agrees(meta, episode, frame, decoded.get(ACTION_IS_PAD_MEMBER), ctx)
    return problems


def _json_agrees(meta: SampleMeta, episode: int, frame: int, pad: Any, ctx: _Context) -> list[str]:
    """What in a sample's json disagrees with its key, the manifest, or its own padding mask."""
    problems = []
    if (meta.episode_index, meta.frame_index) != (episode, frame):
        problems.append(
            f"json says episode {meta.episode_index} frame {meta.frame_index}, key says {episode}/{frame}"
        )
    if str(meta.task_index) not in ctx.tasks:
        problems.append(f"json task_index {meta.task_index} is not in the manifest's tasks")
    length = meta.episode_length
    if length <= 0:
        return problems
    expected = frame / (length - 1) if length > 1 else 0.0
    if not math.isclose(meta.progress, expected, rel_tol=1e-9, abs_tol=1e-12):
        problems.append(f"json progress {meta.progress} != frame/(length-1) = {expected}")
    else:
        weight = temporal_weight(expected, ctx.alpha)
        if not math.isclose(meta.weight, weight, rel_tol=1e-9, abs_tol=1e-12):
            problems.append(f"json weight {meta.weight} != 1 + alpha*progress^2 = {weight}")
    past_end = np.arange(frame, frame + ctx.horizon) >= length
    if isinstance(pad, np.ndarray) and pad.shape == past_end.shape and not np.array_equal(pad, past_end):
        problems.append(f"action_is_pad does not mark frames past the episode end ({length} frames)")
    return problems


def _check_shard(
    shard_set: ShardSet, split: str, entry: ShardEntry, quick: bool, ctx: _Context
) -> ShardCheck:
    name = entry.name
    url = shard_set.url(name)
    check = ShardCheck(split, name)
    problem = local_size_problem(url, entry)
    if problem is not None and "missing" in problem:
        check.problems.append(problem)
        return check
    if quick:
        try:
            size, digest = digest_file(url)
        except ShardCorruptError as exc:
            check.problems.append(exc.reason)
            return check
        check.bytes = size
        if size != entry.bytes:
            check.problems.append(size_problem(size, entry.bytes))
        if digest != entry.sha256:
            check.problems.append(f"sha256 mismatch (manifest {entry.sha256[:12]}…, file {digest[:12]}…)")
        return check
    scan = ShardScan(url)
    sample_problem_count = 0
    keys_here: set[str] = set()
    try:
        for raw in scan:
            key = raw["__key__"]
            if key in keys_here:
                check.problems.append(f"sample {key} appears twice in this shard")
            keys_here.add(key)
            ctx.note_key(key, name)
            found = check_sample(raw, ctx, split)
            if found:
                sample_problem_count += 1
                if sample_problem_count <= MAX_SAMPLE_PROBLEMS:
                    check.problems.append(f"sample {key}: {'; '.join(found)}")
    except ShardCorruptError as exc:
        check.problems.append(exc.reason + (f" after {scan.samples} samples" if scan.samples else ""))
        if problem is not None:
            check.problems.append(problem)
        check.samples, check.bytes = scan.samples, scan.bytes
        return check
    if sample_problem_count > MAX_SAMPLE_PROBLEMS:
        check.problems.append(f"... and {sample_problem_count - MAX_SAMPLE_PROBLEMS} more bad samples")
    check.samples, check.bytes = scan.samples, scan.bytes
    check.problems[:0] = end_problems(scan, entry)
    return check


def _extra_files(shard_set: ShardSet, report: VerifyReport) -> None:
    if shard_set.kind != "local":
        report.warnings.append(
            f"files of {'an http' if shard_set.kind == 'http' else 'a pipe:'} set cannot be listed: shards not in the manifest are not looked for"
        )
        return
    root = Path(shard_set.root)
    listed = {shard.name for _, shard in shard_set.manifest.splits.shards}
    listed |= {entry.name for entry in shard_set.manifest.sidecars()}
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        name = path.relative_to(root).as_posix()
        if name in listed or name == MANIFEST_NAME or name.startswith(".work/"):
            continue
        if name.endswith(".tar"):
            report.shards.append(
                ShardCheck("-", name, ["not in the manifest (a shard this set does not list)"])
            )
        elif name.endswith(".tmp"):
            report.warnings.append(
                f"{name}: leftover temporary file of an interrupted write (safe to delete)"
            )


def _check_stats(shard_set: ShardSet, quick: bool, report: VerifyReport) -> None:
    manifest = shard_set.manifest
    if not manifest.stats_values:
        report.warnings.append(
            "no stats sidecars (stats_values): stats cannot be re-checked or merged exactly"
        )
        return
    for key, stats in manifest.stats.items():
        entry = manifest.sidecar(key)
        if entry is None:
            report.set_problems.append(f"stats_values has no sidecar for {key!r}")
            continue
        name = entry.name
        where = f"stats sidecar {name}"
        try:
            data = shard_set.read_bytes(name, entry.bytes)  # no more than the manifest says
        except Exception as exc:
            report.set_problems.append(f"{where}: cannot read ({exc})")
            continue
        if len(data) != entry.bytes:
            report.set_problems.append(f"{where}: size {len(data)} bytes, manifest says {entry.bytes}")
        digest = hashlib.sha256(data).hexdigest()
        if digest != entry.sha256:
            report.set_problems.append(
                f"{where}: sha256 mismatch (manifest {entry.sha256[:12]}…, file {digest[:12]}…)"
            )
            continue
        if quick:
            continue
        try:
            array = decode_npy(data)
        except Exception as exc:
            report.set_problems.append(f"{where}: not a readable .npy ({exc})")
            continue
        count, dim = stats.count, len(stats.mean)
        if array.shape != (dim, count) or array.dtype != np.float64:
            report.set_problems.append(
                f"{where}: float64{list(array.shape)} {array.dtype}, expected float64[{dim}, {count}] (dims x stats count)"
            )
            continue
        recomputed = stats_of(array)
        for (stat, stored), values in zip(stats.vectors.items(), recomputed.vectors.values(), strict=True):
            got = np.asarray(values, dtype=np.float64)
            want = np.asarray(stored, dtype=np.float64)
            if got.shape != want.shape or not np.allclose(got, want, rtol=STATS_RTOL, atol=1e-12):
                bad = (
                    int(np.argmax(~np.isclose(got, want, rtol=STATS_RTOL, atol=1e-12)))
                    if got.shape == want.shape
                    else 0
                )
                report.set_problems.append(
                    f"stats.{key}.{stat}: manifest differs from the sidecar's values "
                    f"(dim {bad}: manifest {np.ravel(want)[bad]!r}, recomputed {np.ravel(got)[bad]!r})"
                )


def overlap_problems(manifest: Manifest) -> list[str]:
    """Episodes in both splits: the val numbers then measure training data."""
    overlap = set(manifest.splits.train.episodes) & set(manifest.splits.val.episodes)
    return [f"episodes {sorted(overlap)[:10]} are in both train and val"] if overlap else []


def listing_problems(manifest: Manifest) -> list[str]:
    """Shards listed twice (by name, or the same bytes under two names) and split totals that differ
    from their shards'."""
    problems = []
    for name, split in manifest.splits:
        listed = split.shard_samples
        if split.samples is not None and split.samples != listed:
            problems.append(f"splits.{name}.samples is {split.samples}, its shards list {listed}")
    shards = {(s.name, s.sha256) for _, s in manifest.splits.shards}
    names = [s.name for _, s in manifest.splits.shards]
    if repeated := sorted(n for n, times in Counter(names).items() if times > 1):
        problems.append(f"shards listed more than once: {repeated[:10]}")
    digests = Counter(digest for _, digest in shards)
    if copies := sorted(name for name, digest in shards if digests[digest] > 1):
        problems.append(f"shards with the same bytes under other names: {copies[:10]}")
    return problems


def stats_set_problems(manifest: Manifest) -> list[str]:
    """The manifest's stats, where no data could have them (`shards.stats.stats_problems`)."""
    return [problem for key, stats in manifest.stats.items() for problem in stats_problems(stats, key)]


def _check_splits(manifest: Manifest, report: VerifyReport) -> None:
    report.set_problems.extend(overlap_problems(manifest) + listing_problems(manifest))
    report.set_problems.extend(stats_set_problems(manifest))


def verify_set(
    location: str,
    *,
    quick: bool = False,
    workers: int = 4,
    progress: Callable[[ShardCheck], None] | None = None,
) -> VerifyReport:
    """Verify the set at `location` (dir, manifest path, http(s) prefix, `pipe:` template).

    The manifest itself must open (ManifestError / ShardSetError otherwise)."""
    from shards.reader import open_shard_set

    shard_set = open_shard_set(location)
    manifest = shard_set.manifest
    report = VerifyReport(str(location), quick)
    ctx = _Context(shard_set)
    jobs = list(manifest.splits.shards)

    def run(job: tuple[str, ShardEntry]) -> ShardCheck:
        check = _check_shard(shard_set, job[0], job[1], quick, ctx)
        if progress is not None:
            progress(check)
        return check

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        report.shards = list(pool.map(run, jobs))
    _extra_files(shard_set, report)
    _check_splits(manifest, report)
    report.set_problems.extend(ctx.duplicates[:20])
    if len(ctx.duplicates) > 20:
        report.set_problems.append(f"... and {len(ctx.duplicates) - 20} more repeated sample keys")
    _check_stats(shard_set, quick, report)
    return report
