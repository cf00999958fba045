"""Small, schema-valid shard sets for the tests, written with `shards.writer` + `shards.codec`.

One writer (`write_shard_set`) serves the shards/ and train/ tests; each conftest passes its own sizes.
Values encode where they come from, so tests can prove alignment:
- state[d] = episode + frame / 100 + d / 1000 (small values: float32 means stay exact to ~1e-5)
- the action of frame t is a smooth target sin(episode + t / 10 + d / 7) * (1 + d / dim); the chunk of
  frame i is the actions [i, i+H), padded by repeating the last one (`action_is_pad`)
- every camera image is a flat colour of (episode, frame, camera) with a 4-pixel white marker in the
  top-left corner, JPEG quality 95.
- with `skills=skill_of`, the json's `skill` follows the frame (`skill_of`: an episode's first frame
  unannotated, then `SKILLS` in thirds); without it the json has no `skill` (a set written before skills).
The manifest mirrors what `b1k-preprocess` writes (partition, options, splits with samples/frames, stats
over the train split at full rate, optionally with their sidecars).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from schemas.manifest import MANIFEST_NAME, dump_manifest, validate_manifest
from schemas.presets import TOP32_INDICES, preset_indices
from schemas.r1pro import ACTION_DIM, action_names, state_names
from schemas.sample import SCHEMA_VERSION, TEMPORAL_FORMULA, progress, sample_key, temporal_weight
from shards.codec import encode_jpeg, encode_sample
from shards.reader import iter_tar_samples, open_shard_set
from shards.stats import compute_stats, load_stats_values, write_stats_values
from shards.writer import ShardWriter, atomic_write_text

CAMERAS = {"head": (16, 16), "left_wrist": (16, 16), "right_wrist": (16, 16)}
CAMERA_INDEX = {name: i for i, name in enumerate(CAMERAS)}
WIDE_CAMERAS = {"head": (24, 32), "left_wrist": (16, 16), "right_wrist": (16, 16)}  # head not square
QUALITY = 95
TASKS = {0: "pick up the radio", 1: "put the dishes away"}
SKILLS = ("move to", "pick up from", "place on")
SkillOf = Callable[[int, int, int], "str | None"]  # (episode, frame, episode length) -> the frame's skill


def state_of(episode: int, frame: int, dim: int = 32) -> np.ndarray:
    return (episode + frame / 100 + np.arange(dim) / 1000).astype(np.float32)


def action_of(episode: int, frame: int, dim: int = ACTION_DIM) -> np.ndarray:
    d = np.arange(dim)
    return (np.sin(episode + frame / 10 + d / 7) * (1 + d / dim)).astype(np.float32)


def skill_of(episode: int, frame: int, length: int) -> str | None:
    """The synthetic annotation: frame 0 unannotated (None, as a gap before the first segment), then
    `SKILLS` over thirds of the episode (10 frames: 1-3 "move to", 4-6 "pick up from", 7-9 "place on")."""
    if frame == 0:
        return None
    return SKILLS[min(3 * frame // length, len(SKILLS) - 1)]


def skill_counts(skills: SkillOf, frames: Iterable[tuple[int, int, int]]) -> dict[str, int]:
    """{skill: samples} over (episode, frame, length) triples, annotated frames only (JSON keys are strings),
    in skill order: the manifest's `splits.<split>.skills`."""
    counts: dict[str, int] = {}
    for episode, frame, length in frames:
        skill = skills(episode, frame, length)
        if skill is not None:
            counts[skill] = counts.get(skill, 0) + 1
    return dict(sorted(counts.items()))


def colour_of(episode: int, frame: int, camera: str) -> tuple[int, int, int]:
    return ((37 * episode + 11) % 200 + 20, (23 * frame + 5) % 200 + 20, 60 + 60 * CAMERA_INDEX[camera])


def image_of(episode: int, frame: int, camera: str, size: tuple[int, int] | None = None) -> np.ndarray:
    height, width = CAMERAS[camera] if size is None else size
    image = np.empty((height, width, 3), np.uint8)
    image[:] = colour_of(episode, frame, camera)
    image[:4, :4] = 255
    return image


def episode_lengths(
    episodes: Mapping[int, int] | int, length: int | Sequence[int], first_episode: int = 0
) -> dict[int, int]:
    """{episode: length}: `episodes` as is, or `episodes` episodes from `first_episode` of `length` frames
    (one length for all, or one per episode)."""
    if isinstance(episodes, Mapping):
        return dict(episodes)
    return {first_episode + e: (length if isinstance(length, int) else length[e]) for e in range(episodes)}


def interleaved(lengths: Mapping[int, int]) -> list[tuple[int, int]]:
    """Round-robin over episodes, so every shard mixes episodes (as `b1k-preprocess` does)."""
    cursors = {e: 0 for e in sorted(lengths)}
    order = []
    while cursors:
        for e in list(cursors):
            order.append((e, cursors[e]))
            cursors[e] += 1
            if cursors[e] == lengths[e]:
                del cursors[e]
    return order


def make_sample(
    episode: int,
    frame: int,
    length: int,
    *,
    horizon: int,
    alpha: float,
    task_index: int,
    task: str,
    cameras: Mapping[str, tuple[int, int]],
    state_dim: int = 32,
    nan_action: bool = False,
    skills: SkillOf | None = None,
) -> dict:
    steps = np.minimum(np.arange(frame, frame + horizon), length - 1)
    action = np.stack([action_of(episode, int(t)) for t in steps])
    if nan_action:
        action[:] = np.nan
    is_pad = np.arange(frame, frame + horizon) >= length
    prog = float(progress(frame, length))
    meta = {
        "episode_index": episode,
        "frame_index": frame,
        "episode_length": length,
        "timestamp": frame / 30.0,
        "progress": prog,
        "weight": float(temporal_weight(prog, alpha)),
        "task_index": task_index,
        "task": task,
    }
    if skills is not None:  # else no field at all, as in sets written before skills
        meta["skill"] = skills(episode, frame, length)
    images = {cam: encode_jpeg(image_of(episode, frame, cam, size), QUALITY) for cam, size in cameras.items()}
    state = state_of(episode, frame, state_dim)
    return encode_sample(sample_key(episode, frame), images, state, action, is_pad, meta)


def _task_counts(tasks: Iterable[int]) -> dict[str, int]:
    """{task index: samples}, as the manifest records it (keys are strings, in task order)."""
    counts: dict[int, int] = {}
    for task in tasks:
        counts[task] = counts.get(task, 0) + 1
    return {str(t): counts[t] for t in sorted(counts)}


def _stats(
    root: Path,
    train: dict[int, int],
    state_dim: int,
    nan_action: set[tuple[int, int]],
    sidecar: bool,
    episode_index: bool = False,
) -> tuple[dict, dict]:
    """Stats over the train split's frames (those with a NaN action left out), and their sidecars."""
    frames = [(e, f) for e in sorted(train) for f in range(train[e]) if (e, f) not in nan_action]
    stats, stats_values = {}, {}
    for key, dim, fn in (("observation.state", state_dim, state_of), ("action", ACTION_DIM, action_of)):
        values = np.stack([fn(e, f, dim) for e, f in frames])
        if sidecar:
            episodes = None
            if episode_index:  # (episode, columns) of each train episode, as b1k-preprocess records it
                episodes = [
                    (e, sum(1 for f in range(train[e]) if (e, f) not in nan_action)) for e in sorted(train)
                ]
            entry = write_stats_values(root, key, [values], len(frames), dim, episodes=episodes)
            stats_values[key] = entry.to_json()
            stats[key] = compute_stats(load_stats_values(root / entry.name))
        else:
            stats[key] = compute_stats(values.T.astype(np.float64))
    return stats, stats_values


def write_shard_set(
    root: Path,
    *,
    episodes: Mapping[int, int] | int = 12,
    length: int | Sequence[int] = 20,
    first_episode: int = 0,
    val_episodes: Iterable[int] = (),
    cameras: Mapping[str, tuple[int, int]] | None = None,
    state_dim: int = 32,
    horizon: int = 8,
    alpha: float = 2.0,
    tasks: Mapping[int, str] | None = None,
    episode_tasks: Mapping[int, int] | None = None,
    samples_per_shard: int = 40,
    interleave: bool = True,
    stats_sidecar: bool = False,
    sidecar_episodes: bool = False,
    state_preset: str | None = None,
    nan_action: Iterable[tuple[int, int]] = (),
    partition: tuple[int, int] | None = None,
    fingerprint: str = "synthetic-fingerprint",
    skills: SkillOf | None = None,
) -> dict:
    """Write a shard set under `root` and return its manifest.

    `episodes`: {episode: length}, or a count of episodes from `first_episode` of `length` frames each.
    Episodes take the tasks (`TASKS` by default) round-robin by episode index, or as `episode_tasks`
    ({episode: task index}) says; the splits and shards record their samples per task as
    `b1k-preprocess` does (`splits.<split>.tasks`, `.episode_tasks`, `.shards[i].tasks`). `interleave=False`
    writes episodes one after the other (episode-pure shards). `nan_action`: (episode, frame) samples whose
    action chunk is NaN (left out of the stats). With `partition=(K, N)` only the sorted episodes [K::N]
    are written, like `b1k-preprocess --partition K/N`. `stats_sidecar`: write the stats' values sidecars
    (`sidecar_episodes`: with each episode's columns recorded, as `b1k-preprocess` does). `state_preset`:
    a preset of `schemas.presets` recorded as the set's state (e.g. `aligned`; its dims set `state_dim`).
    `skills` (e.g. `skill_of`): each sample's json gets `skill` = skills(episode, frame, length) and each
    split records `skills` ({skill: samples} of its annotated frames); None: no skill anywhere.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    preset_dims = None
    if state_preset is not None:
        preset_dims = list(preset_indices(state_preset))
        state_dim = len(preset_dims)
    lengths = episode_lengths(episodes, length, first_episode)
    cameras = dict(CAMERAS if cameras is None else cameras)
    tasks = dict(TASKS if tasks is None else tasks)
    task_keys = sorted(tasks)
    task_of = {e: task_keys[e % len(task_keys)] for e in lengths} | dict(episode_tasks or {})
    val, nan = set(val_episodes), set(nan_action)
    mine = sorted(lengths)
    if partition is not None:
        mine = mine[partition[0] :: partition[1]]
    splits = {}
    for split in ("train", "val"):
        chosen = {e: lengths[e] for e in mine if (e in val) == (split == "val")}
        order = (
            interleaved(chosen) if interleave else [(e, f) for e in sorted(chosen) for f in range(chosen[e])]
        )
        prefix = split if partition is None else f"{split}-p{partition[0]:03d}of{partition[1]:03d}"
        with ShardWriter(root, prefix=prefix, max_samples=samples_per_shard) as writer:
            for e, f in order:
                task_index = task_of[e]
                writer.write(
                    make_sample(
                        e,
                        f,
                        chosen[e],
                        horizon=horizon,
                        alpha=alpha,
                        task_index=task_index,
                        task=tasks[task_index],
                        cameras=cameras,
                        state_dim=state_dim,
                        nan_action=(e, f) in nan,
                        skills=skills,
                    )
                )
        shards, start = [s.to_json() for s in writer.shards], 0
        for shard in shards:  # the shards cut `order` in sequence
            shard["tasks"] = _task_counts(task_of[e] for e, _ in order[start : start + shard["samples"]])
            start += shard["samples"]
        splits[split] = {
            "episodes": sorted(chosen),
            "shards": shards,
            "samples": sum(chosen.values()),
            "frames": sum(chosen.values()),
            "tasks": {
                task: {"episodes": sum(str(task_of[e]) == task for e in chosen), "samples": samples}
                for task, samples in _task_counts(task_of[e] for e, _ in order).items()
            },
            "episode_tasks": {str(e): task_of[e] for e in sorted(chosen)},
        }
        if skills is not None:
            splits[split]["skills"] = skill_counts(skills, ((e, f, chosen[e]) for e, f in order))
    train = {e: lengths[e] for e in splits["train"]["episodes"]}
    stats, stats_values = _stats(root, train, state_dim, nan, stats_sidecar, sidecar_episodes)
    indices = list(TOP32_INDICES[:state_dim]) if state_dim <= 32 else list(range(state_dim))
    indices = indices if preset_dims is None else preset_dims
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "created_by": {
            "tool": "tests.shardsets",
            "version": "0",
            "command": "write_shard_set",
            "time": "now",
        },
        "source": {"path": "/data/synthetic", "codebase_version": "v3.0", "fingerprint": fingerprint},
        "fps": 30,
        "frame_stride": 1,
        "cameras": {
            name: {
                "video_key": f"observation.images.rgb.{name}",
                "height": h,
                "width": w,
                "encoding": "jpeg",
                "quality": QUALITY,
            }
            for name, (h, w) in cameras.items()
        },
        "state": {
            "preset": state_preset or ("top32" if state_dim == 32 else "custom"),
            "indices": indices,
            "names": state_names(indices) if max(indices) < 256 else [f"s{i}" for i in indices],
        },
        "action": {"dim": ACTION_DIM, "names": action_names()},
        "horizon": horizon,
        "temporal": {"alpha": float(alpha), "formula": TEMPORAL_FORMULA},
        "stats": stats,
        **({"stats_values": stats_values} if stats_sidecar else {}),
        "splits": splits,
        "tasks": {str(k): v for k, v in sorted(tasks.items())},
        "seed": 0,
        "partition": None
        if partition is None
        else {"index": partition[0], "count": partition[1], "rule": "[index::count]"},
        "selected_episodes": len(lengths),
        "skipped_episodes": [],
        "options": {
            "seed": 0,
            "horizon": horizon,
            "partition": None if partition is None else f"{partition[0]}/{partition[1]}",
        },
    }
    validate_manifest(manifest)
    atomic_write_text(root / MANIFEST_NAME, dump_manifest(manifest))
    return manifest


def read_manifest(root: Path) -> dict:
    return json.loads((Path(root) / MANIFEST_NAME).read_text())


def write_manifest(root: Path, manifest: dict) -> None:
    atomic_write_text(Path(root) / MANIFEST_NAME, dump_manifest(copy.deepcopy(manifest)))


def samples_of(location: str | Path) -> dict:
    """{(split, key): members} of every sample of a shard set: equal sets hold equal samples."""
    s = open_shard_set(location)
    return {
        (split, x["__key__"]): {k: v for k, v in x.items() if not k.startswith("__")}
        for split in ("train", "val")
        for url in s.urls(split)
        for x in iter_tar_samples(url)
    }
