"""Build the benchmark's source data: a LeRobot v3.0 dataset written by lerobot's own writer
(`LeRobotDataset.create` / `add_frame` / `save_episode`, default AV1 encoding: libsvtav1, yuv420p,
lerobot's default GOP and CRF) at the real BEHAVIOR camera sizes (head 720x720, wrists 480x480),
with a 256-dim state and a 23-dim action, and textured moving content (see scenes.py).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from schemas.r1pro import ACTION_DIM, ACTION_KEY, CAMERAS, FPS, STATE_DIM, STATE_KEY
from tests.benchmarks.scenes import CameraScene

TASKS = ("hiding Easter eggs", "picking up trash", "putting dishes away after cleaning")
BUILD_INFO = "bench_build.json"


@dataclass
class BuiltDataset:
    root: str
    episode_lengths: list[int]
    frames: int
    build_s: float
    video_bytes: dict[str, int] = field(default_factory=dict)  # per camera name, all mp4 files
    jpeg_bytes_per_frame: dict[str, float] = field(default_factory=dict)  # at `jpeg_quality`
    jpeg_quality: int = 0
    spec: dict = field(default_factory=dict)

    @property
    def av1_bytes_per_frame(self) -> dict[str, float]:
        return {cam: size / self.frames for cam, size in self.video_bytes.items()}

    def to_json(self) -> dict:
        out = asdict(self)
        out["av1_bytes_per_frame"] = self.av1_bytes_per_frame
        return out


def features() -> dict:
    feats = {
        camera.video_key: {
            "dtype": "video",
            "shape": (camera.height, camera.width, 3),
            "names": ["height", "width", "channels"],
        }
        for camera in CAMERAS
    }
    feats[STATE_KEY] = {"dtype": "float32", "shape": (STATE_DIM,), "names": None}
    feats[ACTION_KEY] = {"dtype": "float32", "shape": (ACTION_DIM,), "names": None}
    return feats


def smooth_signals(rng: np.random.Generator, length: int, dim: int) -> np.ndarray:
    """(length, dim) float32: sums of slow sinusoids plus small noise (joint-like trajectories)."""
    t = np.arange(length, dtype=np.float64)[:, None]
    out = np.zeros((length, dim))
    for _ in range(3):
        amp = rng.uniform(0.05, 0.5, size=dim)
        omega = rng.uniform(0.002, 0.05, size=dim)
        phase = rng.uniform(0, 2 * np.pi, size=dim)
        out += amp * np.sin(omega * t + phase)
    out += rng.normal(0, 0.005, size=out.shape)
    return out.astype(np.float32)


def build_dataset(
    root: Path,
    episode_lengths: list[int],
    *,
    seed: int = 0,
    jpeg_quality: int | None = None,
    log=print,
) -> BuiltDataset:
    """Write a v3.0 dataset with lerobot's writer at `root` (replaced if present), one episode per length."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from shards.codec import encode_jpeg

    if jpeg_quality is None:  # the shard default, so the table compares like with like
        from preprocess.images import DEFAULT_JPEG_QUALITY

        jpeg_quality = DEFAULT_JPEG_QUALITY

    spec = {
        "episode_lengths": list(episode_lengths),
        "seed": seed,
        "jpeg_quality": jpeg_quality,
        "version": 1,
    }
    info_path = root / BUILD_INFO
    if info_path.is_file():
        cached = json.loads(info_path.read_text())
        if cached.get("spec") == spec:
            cached.pop("av1_bytes_per_frame", None)
            log(f"dataset: reusing {root} ({cached['frames']} frames)")
            return BuiltDataset(**cached)
    if root.exists():
        shutil.rmtree(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    logging.getLogger("lerobot").setLevel(logging.WARNING)
    start = time.perf_counter()
    dataset = LeRobotDataset.create(
        repo_id="bench/b1k-synthetic",
        fps=FPS,
        features=features(),
        root=root,
        robot_type="R1Pro",
        use_videos=True,
        image_writer_threads=2,
    )
    jpeg_sizes: dict[str, list[int]] = {camera.name: [] for camera in CAMERAS}
    for episode, length in enumerate(episode_lengths):
        rng = np.random.default_rng((seed, episode))
        scenes = {
            camera.name: CameraScene(
                seed * 1_000_003 + episode * 101 + k, camera.height, camera.width, wrist=camera.name != "head"
            )
            for k, camera in enumerate(CAMERAS)
        }
        state = smooth_signals(rng, length, STATE_DIM)
        action = smooth_signals(rng, length, ACTION_DIM)
        task = TASKS[episode % len(TASKS)]
        t0 = time.perf_counter()
        for i in range(length):
            frame = {camera.video_key: scenes[camera.name].frame(i) for camera in CAMERAS}
            if i % 25 == 0:  # JPEG size at the shard quality, sampled
                for camera in CAMERAS:
                    jpeg_sizes[camera.name].append(len(encode_jpeg(frame[camera.video_key], jpeg_quality)))
            frame[STATE_KEY] = state[i]
            frame[ACTION_KEY] = action[i]
            frame["task"] = task
            dataset.add_frame(frame)
        dataset.save_episode()
        log(f"dataset: episode {episode} ({length} frames) written in {time.perf_counter() - t0:.1f}s")
    dataset.finalize()
    build_s = time.perf_counter() - start
    video_bytes = {
        camera.name: sum(p.stat().st_size for p in (root / "videos" / camera.video_key).rglob("*.mp4"))
        for camera in CAMERAS
    }
    built = BuiltDataset(
        root=str(root),
        episode_lengths=list(episode_lengths),
        frames=int(sum(episode_lengths)),
        build_s=build_s,
        video_bytes=video_bytes,
        jpeg_bytes_per_frame={cam: float(np.mean(v)) for cam, v in jpeg_sizes.items()},
        jpeg_quality=jpeg_quality,
        spec=spec,
    )
    info_path.write_text(json.dumps(built.to_json(), indent=2))
    return built
