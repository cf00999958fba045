"""The manifest of a shard set (`manifest.json`, schema v1) and its validation.

A manifest is kept as a plain JSON dict (it is shared between teams and tools); this module
says what it must contain and names precisely what is wrong when it does not.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from schemas.r1pro import DEFAULT_LAYOUT, LayoutError, StateLayout, layout_named
from schemas.sample import SCHEMA_VERSION

MANIFEST_NAME = "manifest.json"
SPLITS = ("train", "val")
STAT_KEYS = ("observation.state", "action")
STAT_VECTORS = ("mean", "std", "min", "max", "q01", "q99", "sum", "sum_sq")
# Limits on what a manifest may claim (SECURITY.md): what it says sizes downloads, buffers and loops
# before any shard is read, so a claim past these is refused when the manifest is read.
MAX_MANIFEST_BYTES = 64 << 20  # a 10k-shard, 100k-episode set's manifest is ~10 MB
MAX_MANIFEST_DEPTH = 32  # JSON nesting (ours is at most 6 deep); deeper is refused, not a RecursionError
MAX_CAMERA_SIDE = 4096  # pixels: BEHAVIOR's cameras are at most 1280 px wide
MAX_SHARD_BYTES = 64 << 30  # b1k-preprocess writes 1 GiB shards by default
MAX_HORIZON = 10_000  # action-chunk steps (50 by default)
_TAR_BLOCK = 512  # a tar is whole blocks, and a sample takes at least one (a member's header)


class ManifestError(ValueError):
    """The manifest is missing, unreadable or does not follow schema v1."""


def _require(obj: dict, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(obj, dict):
        raise ManifestError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if key not in obj:
        raise ManifestError(f"{where}: missing key {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ManifestError(f"{where}.{key}: expected {names}, got {type(value).__name__} {value!r:.60}")
    return value


def _require_vector(obj: dict, key: str, dim: int, where: str) -> list[float]:
    values = _require(obj, key, list, where)
    if len(values) != dim:
        raise ManifestError(f"{where}.{key}: expected {dim} values, got {len(values)}")
    for i, v in enumerate(values):
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            raise ManifestError(f"{where}.{key}[{i}]: expected a finite number, got {v!r}")
    return values


# A file name inside a set: plain relative path segments of letters, digits, `.`, `_`, `-` (no scheme,
# no `..`, no leading `-` or `.`, nothing a shell or a URL parser reads specially). Sets travel between
# people, and a name ends up in a path, a URL and possibly a `pipe:` command line.
_NAME_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,199}")
MAX_NAME_SEGMENTS = 8


def require_set_name(name: str, where: str) -> str:
    """`name` if it is a plain relative path inside the set; else a ManifestError naming the field."""
    segments = name.split("/")
    if len(segments) > MAX_NAME_SEGMENTS or not all(_NAME_SEGMENT.fullmatch(seg) for seg in segments):
        raise ManifestError(
            f"{where}: expected a path relative to the set's root: segments of letters, digits, '.', '_' and "
            f"'-', not starting with '.' or '-' (no scheme, '..', spaces or shell characters), got {name!r:.80}"
        )
    return name


def _require_task_key(key: str, where: str) -> None:
    """Task and episode keys are decimal integers (JSON object keys are strings)."""
    if not (key.isdigit() or (key.startswith("-") and key[1:].isdigit())):
        raise ManifestError(f"{where}: expected an integer key, got {key!r:.60}")


def _require_count(obj: dict, key: str, where: str, most: int | None = None) -> int:
    value = _require(obj, key, int, where)
    if value < 0 or (most is not None and value > most):
        bound = f"0..{most}" if most is not None else ">= 0"
        raise ManifestError(f"{where}.{key}: expected {bound}, got {value}")
    return value


def _require_shard_entry(shard: dict, at: str) -> None:
    """A shard entry's name, counts and digest: sizes and counts are what readers allocate, skip and
    download by, so they must be possible for a tar (whole 512-byte blocks, a block per sample at least)."""
    require_set_name(_require(shard, "name", str, at), f"{at}.name")
    samples = _require_count(shard, "samples", at)
    size = _require_count(shard, "bytes", at, most=MAX_SHARD_BYTES)
    if size % _TAR_BLOCK or samples > size // _TAR_BLOCK:
        raise ManifestError(
            f"{at}: {samples} samples in {size} bytes is not a tar (whole {_TAR_BLOCK}-byte blocks, "
            "at least one per sample)"
        )
    digest = _require(shard, "sha256", str, at)
    if len(digest) != 64 or digest.strip("0123456789abcdef"):
        raise ManifestError(f"{at}.sha256: expected 64 hex characters, got {digest!r:.80}")


def _require_episodes(entry: dict, where: str) -> None:
    for i, episode in enumerate(_require(entry, "episodes", list, where)):
        if not isinstance(episode, int) or isinstance(episode, bool) or episode < 0:
            raise ManifestError(
                f"{where}.episodes[{i}]: expected an episode index (int >= 0), got {episode!r:.60}"
            )


def state_layout_of(manifest: dict, where: str = "manifest") -> StateLayout:
    """The R1Pro state layout a manifest's state indices refer to (sets written before layouts were
    recorded hold the 2025 one)."""
    name = manifest.get("state", {}).get("layout", DEFAULT_LAYOUT.name)
    try:
        return layout_named(name)
    except LayoutError as exc:
        raise ManifestError(f"{where}.state.layout: {exc}") from None


def validate_stats(stats: dict, dims: dict[str, int], where: str = "manifest.stats") -> None:
    for key in STAT_KEYS:
        entry = _require(stats, key, dict, where)
        for vector in STAT_VECTORS:
            _require_vector(entry, vector, dims[key], f"{where}.{key}")
        count = _require(entry, "count", int, f"{where}.{key}")
        if count < 0:
            raise ManifestError(f"{where}.{key}.count: expected >= 0, got {count}")


def validate_manifest(manifest: Any, where: str = "manifest") -> dict:
    """Check a manifest against schema v1; return it, or raise ManifestError naming the bad field."""
    if not isinstance(manifest, dict):
        raise ManifestError(f"{where}: expected a JSON object, got {type(manifest).__name__}")
    version = _require(manifest, "schema_version", int, where)
    if version != SCHEMA_VERSION:
        raise ManifestError(f"{where}.schema_version: this tool reads schema {SCHEMA_VERSION}, got {version}")
    _require(manifest, "created_by", dict, where)
    _require(manifest, "source", dict, where)
    fps = _require(manifest, "fps", (int, float), where)
    if fps <= 0:
        raise ManifestError(f"{where}.fps: expected > 0, got {fps}")
    _require(manifest, "frame_stride", int, where)

    cameras = _require(manifest, "cameras", dict, where)
    if not cameras:
        raise ManifestError(f"{where}.cameras: expected at least one camera")
    for name, camera in cameras.items():
        at = f"{where}.cameras.{name}"
        _require(camera, "video_key", str, at)
        for key in ("height", "width"):
            side = _require(camera, key, int, at)
            if not 0 < side <= MAX_CAMERA_SIDE:
                raise ManifestError(f"{at}.{key}: expected 1..{MAX_CAMERA_SIDE} pixels, got {side}")
        _require(camera, "encoding", str, at)

    state = _require(manifest, "state", dict, where)
    _require(state, "preset", str, f"{where}.state")
    indices = _require(state, "indices", list, f"{where}.state")
    names = _require(state, "names", list, f"{where}.state")
    if len(names) != len(indices) or not indices:
        raise ManifestError(
            f"{where}.state: expected as many names as indices (>0), got {len(names)} and {len(indices)}"
        )
    layout = state_layout_of(manifest, where)
    for i, index in enumerate(indices):
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < layout.dim:
            raise ManifestError(
                f"{where}.state.indices[{i}]: expected an index into the {layout.describe()} state, got {index!r}"
            )
    action = _require(manifest, "action", dict, where)
    action_dim = _require(action, "dim", int, f"{where}.action")
    if len(_require(action, "names", list, f"{where}.action")) != action_dim:
        raise ManifestError(f"{where}.action.names: expected {action_dim} names")
    horizon = _require(manifest, "horizon", int, where)
    if not 1 <= horizon <= MAX_HORIZON:
        raise ManifestError(f"{where}.horizon: expected 1..{MAX_HORIZON}, got {horizon}")
    temporal = _require(manifest, "temporal", dict, where)
    _require(temporal, "alpha", (int, float), f"{where}.temporal")

    validate_stats(
        _require(manifest, "stats", dict, where),
        {"observation.state": len(indices), "action": action_dim},
        f"{where}.stats",
    )

    splits = _require(manifest, "splits", dict, where)
    for split in SPLITS:
        entry = _require(splits, split, dict, f"{where}.splits")
        _require_episodes(entry, f"{where}.splits.{split}")
        shards = _require(entry, "shards", list, f"{where}.splits.{split}")
        for counter in ("samples", "frames"):
            if counter in entry:
                _require_count(entry, counter, f"{where}.splits.{split}")
        if "tasks" in entry:
            for task, totals in _require(entry, "tasks", dict, f"{where}.splits.{split}").items():
                at = f"{where}.splits.{split}.tasks.{task}"
                _require_task_key(task, at)
                for key in ("episodes", "samples"):
                    _require_count(totals, key, at)
        if "episode_tasks" in entry:
            for episode, task in _require(entry, "episode_tasks", dict, f"{where}.splits.{split}").items():
                at = f"{where}.splits.{split}.episode_tasks.{episode}"
                _require_task_key(episode, at)
                if not isinstance(task, int) or isinstance(task, bool):
                    raise ManifestError(f"{at}: expected a task index (int), got {task!r:.60}")
        for i, shard in enumerate(shards):
            at = f"{where}.splits.{split}.shards[{i}]"
            if "tasks" in shard:
                counts = _require(shard, "tasks", dict, at)
                for task in counts:
                    _require_task_key(task, f"{at}.tasks")
                    _require_count(counts, task, f"{at}.tasks")
            _require_shard_entry(shard, at)
    for key, task in _require(manifest, "tasks", dict, where).items():
        _require_task_key(key, f"{where}.tasks")
        if not isinstance(task, str):
            raise ManifestError(f"{where}.tasks.{key}: expected a task string, got {type(task).__name__}")
    _validate_task_details(manifest, where)
    for key, sidecar in (manifest.get("stats_values") or {}).items():
        at = f"{where}.stats_values.{key}"
        require_set_name(_require(sidecar, "name", str, at), f"{at}.name")
        _require_count(sidecar, "bytes", at, most=MAX_SHARD_BYTES)  # what a reader of it reads at most
        _require(sidecar, "sha256", str, at)
    return manifest


def _validate_task_details(manifest: dict, where: str) -> None:
    """`task_details` (optional; sets written since tasks carry the evaluator's id): per task id of
    `tasks`, its name, instruction, prompt and evaluator id (`schemas.tasks.TaskInfo`)."""
    if "task_details" not in manifest:
        return
    for task, detail in _require(manifest, "task_details", dict, where).items():
        at = f"{where}.task_details.{task:.40}"
        _require_task_key(task, f"{where}.task_details")
        _require(detail, "name", str, at)
        _require(detail, "prompt", str, at)
        evaluator_id = detail.get("evaluator_id")
        if evaluator_id is not None and (not isinstance(evaluator_id, int) or isinstance(evaluator_id, bool)):
            raise ManifestError(f"{at}.evaluator_id: expected an int or null, got {evaluator_id!r:.40}")
        instruction = detail.get("instruction")
        if instruction is not None and not isinstance(instruction, str):
            raise ManifestError(
                f"{at}.instruction: expected a string or null, got {type(instruction).__name__}"
            )


def json_depth(value: Any) -> int:
    """How deeply `value` nests lists and dicts (0 for a scalar), found without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is not None:
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in children)
    return deepest


def parse_manifest(text: str | bytes, where: str = "manifest.json") -> dict:
    if len(text) > MAX_MANIFEST_BYTES:
        raise ManifestError(
            f"{where}: {len(text)} bytes, more than a manifest may have ({MAX_MANIFEST_BYTES})"
        )
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{where}: not valid JSON ({exc})") from None
    except RecursionError:  # json's decoder recurses once per level
        raise ManifestError(f"{where}: JSON nested more than {MAX_MANIFEST_DEPTH} levels deep") from None
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if json_depth(manifest) > MAX_MANIFEST_DEPTH:
        raise ManifestError(f"{where}: JSON nested more than {MAX_MANIFEST_DEPTH} levels deep")
    return validate_manifest(manifest, where)


def dump_manifest(manifest: dict) -> str:
    """Canonical text (sorted keys) so that equal manifests are byte-identical."""
    return json.dumps(manifest, indent=2, sort_keys=True) + "\n"


def shards_of(manifest: dict, split: str) -> list[dict]:
    if split not in SPLITS:
        raise ManifestError(f"unknown split {split!r}; expected one of {SPLITS}")
    return manifest["splits"][split]["shards"]
