"""Small, schema-valid shard sets for the trainer tests, written with `shards.writer` + `shards.codec`.

Episodes are interleaved round-robin into the shards (as `b1k-preprocess` mixes them) unless
`interleave=False`. Values encode their origin: state[d] = episode + frame/100 + d/1000, action chunks
are the next frames' smooth "targets" (padded past the end, `action_is_pad`), images are flat colours
of (episode, frame, camera) with a little noise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from schemas.manifest import MANIFEST_NAME, dump_manifest, validate_manifest
from schemas.presets import TOP32_INDICES
from schemas.r1pro import ACTION_DIM, action_names, state_names
from schemas.sample import SCHEMA_VERSION, TEMPORAL_FORMULA, progress, sample_key, temporal_weight
from shards.codec import encode_jpeg, encode_sample
from shards.stats import compute_stats
from shards.writer import ShardWriter, atomic_write_text

CAMERAS = {"head": (16, 16), "left_wrist": (16, 16), "right_wrist": (16, 16)}
TASKS = {0: "pick up the radio", 1: "put the dishes away"}


def state_of(episode: int, frame: int, dim: int) -> np.ndarray:
    return (episode + frame / 100 + np.arange(dim) / 1000).astype(np.float32)


def target_of(episode: int, frame: int, dim: int) -> np.ndarray:
    return (np.sin(episode + frame / 10 + np.arange(dim) / 7) * (1 + np.arange(dim) / dim)).astype(np.float32)


def image_of(episode: int, frame: int, camera_index: int, size: tuple[int, int], rng) -> np.ndarray:
    base = np.array([(40 * episode) % 255, (9 * frame) % 255, 80 * camera_index % 255], dtype=np.int16)
    noise = rng.integers(-10, 10, size=(*size, 3), dtype=np.int16)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def interleaved(lengths: dict[int, int]) -> list[tuple[int, int]]:
    cursors = {e: 0 for e in sorted(lengths)}
    order = []
    while cursors:
        for e in list(cursors):
            order.append((e, cursors[e]))
            cursors[e] += 1
            if cursors[e] == lengths[e]:
                del cursors[e]
    return order


def write_shard_set(
    root: Path,
    *,
    episodes: int = 12,
    length: int | list[int] = 20,
    val_episodes: tuple[int, ...] = (),
    cameras: dict[str, tuple[int, int]] | None = None,
    state_dim: int = 32,
    action_dim: int = ACTION_DIM,
    horizon: int = 8,
    alpha: float = 2.0,
    samples_per_shard: int = 40,
    interleave: bool = True,
    nan_action: tuple[tuple[int, int], ...] = (),
    seed: int = 0,
    first_episode: int = 0,
) -> dict:
    """Write a shard set; returns the manifest. `nan_action`: (episode, frame) samples whose action is NaN."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    cameras = dict(CAMERAS if cameras is None else cameras)
    lengths = {
        first_episode + e: (length[e] if isinstance(length, list) else length) for e in range(episodes)
    }
    rng = np.random.default_rng(seed)
    indices = list(TOP32_INDICES[:state_dim]) if state_dim <= 32 else list(range(state_dim))
    splits, stats_values = {}, {"observation.state": [], "action": []}
    for split in ("train", "val"):
        chosen = {e: n for e, n in lengths.items() if (e in val_episodes) == (split == "val")}
        order = (
            interleaved(chosen) if interleave else [(e, f) for e in sorted(chosen) for f in range(chosen[e])]
        )
        with ShardWriter(root, prefix=split, max_samples=samples_per_shard) as writer:
            for e, f in order:
                n = chosen[e]
                steps = np.minimum(np.arange(f, f + horizon), n - 1)
                action = np.stack([target_of(e, int(t), action_dim) for t in steps])
                if (e, f) in nan_action:
                    action[:] = np.nan
                prog = float(progress(f, n))
                meta = {
                    "episode_index": e,
                    "frame_index": f,
                    "episode_length": n,
                    "timestamp": f / 30.0,
                    "progress": prog,
                    "weight": float(temporal_weight(prog, alpha)),
                    "task_index": e % 2,
                    "task": TASKS[e % 2],
                }
                images = {
                    cam: encode_jpeg(image_of(e, f, i, size, rng), 90)
                    for i, (cam, size) in enumerate(cameras.items())
                }
                state = state_of(e, f, state_dim)
                writer.write(
                    encode_sample(
                        sample_key(e, f), images, state, action, np.arange(f, f + horizon) >= n, meta
                    )
                )
                if split == "train" and (e, f) not in nan_action:
                    stats_values["observation.state"].append(state)
                    stats_values["action"].append(target_of(e, f, action_dim))
        splits[split] = {"episodes": sorted(chosen), "shards": [s.to_json() for s in writer.shards]}
    stats = {
        key: compute_stats(np.stack(values).T.astype(np.float64)) for key, values in stats_values.items()
    }
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "created_by": {
            "tool": "tests.train.conftest",
            "version": "0",
            "command": "write_shard_set",
            "time": "now",
        },
        "source": {"path": "/synthetic", "codebase_version": "v3.0", "fingerprint": f"train-tests-{seed}"},
        "fps": 30,
        "frame_stride": 1,
        "cameras": {
            name: {
                "video_key": f"observation.images.rgb.{name}",
                "height": h,
                "width": w,
                "encoding": "jpeg",
                "quality": 90,
            }
            for name, (h, w) in cameras.items()
        },
        "state": {
            "preset": "top32" if state_dim == 32 else "custom",
            "indices": indices,
            "names": state_names(indices) if max(indices) < 256 else [f"s{i}" for i in indices],
        },
        "action": {
            "dim": action_dim,
            "names": action_names()[:action_dim]
            if action_dim <= ACTION_DIM
            else [f"a{i}" for i in range(action_dim)],
        },
        "horizon": horizon,
        "temporal": {"alpha": float(alpha), "formula": TEMPORAL_FORMULA},
        "stats": stats,
        "splits": splits,
        "tasks": {str(k): v for k, v in TASKS.items()},
    }
    validate_manifest(manifest)
    atomic_write_text(root / MANIFEST_NAME, dump_manifest(manifest))
    return manifest
