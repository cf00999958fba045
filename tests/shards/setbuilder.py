"""Small, schema-valid shard sets for the shards/ tests, built with shards.writer + shards.codec.

Values encode where they come from, so tests can prove alignment:
- state[d] = episode * 1000 + frame + d / 100 (float32-exact for the sizes used here)
- the source action of frame t is episode * 1000 + t + d / 100 - 0.5; the chunk of frame i is
  actions [i, i+H), padded by repeating the last one (`action_is_pad`)
- every camera image is a flat colour (episode, frame, camera) with a 4-pixel white marker in
  the top-left corner, JPEG quality 95.
The manifest mirrors what `b1k-preprocess` writes (partition, options, splits with samples/frames,
stats sidecars over the train split at full rate, columns ordered by (episode, frame)).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from schemas.manifest import MANIFEST_NAME, dump_manifest, validate_manifest
from schemas.presets import TOP32_INDICES
from schemas.r1pro import ACTION_DIM, action_names, state_names
from schemas.sample import SCHEMA_VERSION, TEMPORAL_FORMULA, progress, sample_key, temporal_weight
from shards.codec import encode_jpeg, encode_sample
from shards.stats import compute_stats, load_stats_values, write_stats_values
from shards.writer import ShardWriter, atomic_write_text

CAMERAS = {"head": (24, 32), "left_wrist": (16, 16), "right_wrist": (16, 16)}
CAMERA_INDEX = {name: i for i, name in enumerate(CAMERAS)}
DEFAULT_EPISODES = {0: 9, 1: 6, 2: 3, 3: 5, 4: 7}


def state_of(episode: int, frame: int, dim: int = 32) -> np.ndarray:
    return (episode * 1000 + frame + np.arange(dim) / 100).astype(np.float32)


def action_of(episode: int, frame: int) -> np.ndarray:
    return (episode * 1000 + frame + np.arange(ACTION_DIM) / 100 - 0.5).astype(np.float32)


def colour_of(episode: int, frame: int, camera: str) -> tuple[int, int, int]:
    return ((37 * episode + 11) % 200 + 20, (23 * frame + 5) % 200 + 20, 60 + 60 * CAMERA_INDEX[camera])


def image_of(episode: int, frame: int, camera: str) -> np.ndarray:
    height, width = CAMERAS[camera]
    image = np.empty((height, width, 3), np.uint8)
    image[:] = colour_of(episode, frame, camera)
    image[:4, :4] = 255
    return image


def make_sample(
    episode: int, frame: int, length: int, horizon: int, alpha: float, task_index: int, task: str
) -> dict:
    idx = np.minimum(np.arange(frame, frame + horizon), length - 1)
    action = np.stack([action_of(episode, int(t)) for t in idx])
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
    images = {camera: encode_jpeg(image_of(episode, frame, camera), 95) for camera in CAMERAS}
    return encode_sample(sample_key(episode, frame), images, state_of(episode, frame), action, is_pad, meta)


def _interleave(episodes: dict[int, int]) -> Iterable[tuple[int, int]]:
    """Round-robin over episodes, so every shard mixes episodes."""
    cursors = {e: 0 for e in sorted(episodes)}
    while cursors:
        for e in list(cursors):
            yield e, cursors[e]
            cursors[e] += 1
            if cursors[e] == episodes[e]:
                del cursors[e]


def build_shard_set(
    root: Path,
    *,
    episodes: dict[int, int] | None = None,
    val_episodes: Iterable[int] = (3,),
    horizon: int = 4,
    alpha: float = 0.5,
    tasks: dict[int, str] | None = None,
    task_of: dict[int, int] | None = None,
    partition: tuple[int, int] | None = None,
    max_samples: int = 7,
    fingerprint: str = "synthetic-fingerprint",
    state_preset: str = "top32",
) -> dict:
    """Write a shard set under `root` and return its manifest. With `partition=(K, N)` only the
    sorted episodes [K::N] are written, like `b1k-preprocess --partition K/N`."""
    root = Path(root)
    episodes = dict(DEFAULT_EPISODES if episodes is None else episodes)
    tasks = {0: "pick up the egg"} if tasks is None else tasks
    task_of = task_of or {}
    val = set(val_episodes)
    mine = sorted(episodes)
    if partition is not None:
        mine = mine[partition[0] :: partition[1]]
    splits = {}
    for split in ("train", "val"):
        chosen = {e: episodes[e] for e in mine if (e in val) == (split == "val")}
        prefix = split if partition is None else f"{split}-p{partition[0]:03d}of{partition[1]:03d}"
        with ShardWriter(root, prefix=prefix, max_samples=max_samples) as writer:
            for episode, frame in _interleave(chosen):
                task_index = task_of.get(episode, min(tasks))
                writer.write(
                    make_sample(
                        episode, frame, chosen[episode], horizon, alpha, task_index, tasks[task_index]
                    )
                )
        splits[split] = {
            "episodes": sorted(chosen),
            "shards": [s.to_json() for s in writer.shards],
            "samples": sum(chosen.values()),
            "frames": sum(chosen.values()),
        }
    train = splits["train"]["episodes"]
    total = sum(episodes[e] for e in train)
    stats, stats_values = {}, {}
    for key, dim, fn in (("observation.state", 32, state_of), ("action", ACTION_DIM, action_of)):
        chunks = (np.stack([fn(e, f) for f in range(episodes[e])]) for e in train)
        entry = write_stats_values(root, key, chunks, total, dim)
        stats_values[key] = entry
        stats[key] = compute_stats(load_stats_values(root / entry["name"]))
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "created_by": {
            "tool": "tests.shards.setbuilder",
            "version": "0",
            "command": "build_shard_set",
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
                "quality": 95,
            }
            for name, (h, w) in CAMERAS.items()
        },
        "state": {
            "preset": state_preset,
            "indices": list(TOP32_INDICES),
            "names": state_names(TOP32_INDICES),
        },
        "action": {"dim": ACTION_DIM, "names": action_names()},
        "horizon": horizon,
        "temporal": {"alpha": float(alpha), "formula": TEMPORAL_FORMULA},
        "stats": stats,
        "stats_values": stats_values,
        "splits": splits,
        "tasks": {str(k): v for k, v in sorted(tasks.items())},
        "seed": 0,
        "partition": None
        if partition is None
        else {"index": partition[0], "count": partition[1], "rule": "[index::count]"},
        "selected_episodes": len(episodes),
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
