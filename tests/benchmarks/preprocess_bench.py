"""Preprocess measurements: b1k-preprocess end to end vs the bare floor of its work.

The floor (`python -m tests.benchmarks.preprocess_bench floor ...`, a fresh process) is a tight
loop over the same camera videos: decode each mp4 sequentially with PyAV, convert to RGB24 the way
preprocess does (`frame.to_ndarray(format="rgb24")`) and resize + JPEG-encode with preprocess's own
function (`preprocess.images.encode_rgb_jpeg`) at the same stored size and quality, with glibc's
malloc told to keep freed memory as the episode workers do (`shards.codec.retain_freed_memory`). It runs with
the decoder single-threaded (one core: `threads=1`) or with the threading preprocess uses
(`threads=auto`). Its frames per CPU-second is the per-core floor.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

from schemas.r1pro import CAMERAS
from tests.benchmarks.measure import measure_subprocess, run_json


def camera_videos(root: str | Path) -> dict[str, list[Path]]:
    return {c.name: sorted((Path(root) / "videos" / c.video_key).rglob("*.mp4")) for c in CAMERAS}


def floor(
    root: str, image_size: str | None, jpeg_quality: int | None, threads: str, max_frames: int | None = None
) -> dict:
    """Decode + RGB + resize + JPEG of every frame of every camera video, sequentially (the first
    `max_frames` of each camera: v3.0 files hold the episodes in order, so these are the first episodes)."""
    import av

    from preprocess.images import DEFAULT_JPEG_QUALITY, ImageSize, encode_rgb_jpeg
    from shards.codec import retain_freed_memory

    retain_freed_memory()  # as preprocess's episode workers do: the same work done the same way
    quality = jpeg_quality or DEFAULT_JPEG_QUALITY
    size = ImageSize.parse(image_size)
    camera_frames: dict[str, int] = {}
    jpeg_bytes = 0
    stage_s = {"decode": 0.0, "rgb": 0.0, "resize_jpeg": 0.0}
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for camera in CAMERAS:
        height, width = size.target(camera.height, camera.width)
        count = 0
        for path in camera_videos(root)[camera.name]:
            if max_frames is not None and count >= max_frames:
                break
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                if threads == "1":
                    stream.codec_context.thread_count = 1
                else:
                    stream.thread_type = "AUTO"
                frames = container.decode(stream)
                while max_frames is None or count < max_frames:
                    t0 = time.perf_counter()
                    frame = next(frames, None)
                    t1 = time.perf_counter()
                    if frame is None:
                        break
                    rgb = frame.to_ndarray(format="rgb24")
                    t2 = time.perf_counter()
                    jpeg_bytes += len(encode_rgb_jpeg(rgb, height, width, quality))
                    t3 = time.perf_counter()
                    stage_s["decode"] += t1 - t0
                    stage_s["rgb"] += t2 - t1
                    stage_s["resize_jpeg"] += t3 - t2
                    count += 1
        camera_frames[camera.name] = count
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    frames = min(camera_frames.values())
    return {
        "kind": "floor",
        "threads": threads,
        "image_size": size.describe(),
        "jpeg_quality": quality,
        "frames": frames,
        "camera_frames": camera_frames,
        "wall_s": wall,
        "cpu_s": cpu,
        "frames_per_s": frames / wall,
        "frames_per_cpu_s": frames / cpu,
        "stage_s": stage_s,
        "jpeg_bytes_per_frame": jpeg_bytes / frames,
    }


def measure_floor(
    root: str,
    image_size: str | None,
    threads: str,
    jpeg_quality: int | None = None,
    max_frames: int | None = None,
) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "tests.benchmarks.preprocess_bench",
        "floor",
        "--root",
        root,
        "--threads",
        threads,
    ]
    if max_frames:
        cmd += ["--max-frames", str(max_frames)]
    if image_size:
        cmd += ["--image-size", image_size]
    if jpeg_quality:
        cmd += ["--jpeg-quality", str(jpeg_quality)]
    out = run_json(cmd)
    return out


def preprocess_command() -> list[str]:
    script = Path(sys.executable).with_name("b1k-preprocess")
    return [str(script)] if script.exists() else [sys.executable, "-m", "preprocess.cli"]


def run_preprocess(
    dataset: str,
    output_dir: Path,
    *,
    workers: int,
    image_size: str | None = None,
    episodes: str | None = None,
    extra: list[str] | None = None,
    log_dir: Path,
    name: str,
) -> dict:
    """Run b1k-preprocess as a measured subprocess; returns wall/CPU/RSS plus what it wrote."""
    if output_dir.exists():
        shutil.rmtree(output_dir)
    cmd = [
        *preprocess_command(),
        "--dataset-path",
        dataset,
        "--output-dir",
        str(output_dir),
        "--workers",
        str(workers),
    ]
    if image_size:
        cmd += ["--image-size", image_size]
    if episodes:
        cmd += ["--episodes", episodes]
    cmd += extra or []
    log_dir.mkdir(parents=True, exist_ok=True)
    result = measure_subprocess(cmd, log_path=log_dir / f"{name}.log")
    if result["rc"] != 0:
        tail = Path(result["log"]).read_text(errors="replace")[-3000:]
        raise RuntimeError(f"b1k-preprocess failed (rc {result['rc']}): {' '.join(cmd)}\n{tail}")
    result.update(shard_set_summary(output_dir))
    # b1k-preprocess's own elapsed time (after interpreter start and imports): "done: ... 4.9 s (20.2 frames/s)"
    done = re.findall(r"done: .*?([0-9]+(?:\.[0-9]+)?) s\b", Path(result["log"]).read_text(errors="replace"))
    result["internal_s"] = float(done[-1]) if done else None
    result["frames_per_s"] = result["frames"] / result["wall_s"]
    result["frames_per_cpu_s"] = result["frames"] / result["cpu_s"] if result["cpu_s"] else None
    result["workers"] = workers
    result["image_size"] = image_size or "default"
    return result


def import_baseline(log_dir: Path) -> dict:
    """Peak RSS of a process that only imports what b1k-preprocess imports (no data): the part of
    the peak that cannot depend on episode length."""
    code = "import preprocess.cli, preprocess.pipeline, preprocess.episode, preprocess.video, av, pyarrow.parquet"
    return measure_subprocess([sys.executable, "-c", code], log_path=log_dir / "import-baseline.log")


def shard_set_summary(output_dir: Path) -> dict:
    manifest = json.loads((output_dir / "manifest.json").read_text())
    shards = [s for split in manifest["splits"].values() for s in split["shards"]]
    samples = sum(s["samples"] for s in shards)
    episodes = sorted({e for split in manifest["splits"].values() for e in split.get("episodes", [])})
    stride = int(manifest.get("frame_stride", 1) or 1)
    return {
        # one digest over every shard's name and sha256: equal digests = byte-identical shard sets
        "shards_sha256": hashlib.sha256(
            json.dumps([(s["name"], s["sha256"]) for s in shards]).encode()
        ).hexdigest(),
        "samples": samples,
        "frames": samples * stride,  # frames decoded (stride 1 in the bench: one sample per frame)
        "shards": len(shards),
        "shard_bytes": sum(s["bytes"] for s in shards),
        "shard_bytes_per_sample": sum(s["bytes"] for s in shards) / samples if samples else 0.0,
        "episodes": episodes,
        "stored_sizes": {
            name: [c.get("height"), c.get("width")] for name, c in manifest.get("cameras", {}).items()
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.preprocess_bench")
    parser.add_argument("kind", choices=["floor", "profile-floor"])
    parser.add_argument("--root", required=True)
    parser.add_argument("--image-size", default=None)
    parser.add_argument("--jpeg-quality", type=int, default=None)
    parser.add_argument("--threads", choices=["1", "auto"], default="1")
    parser.add_argument("--max-frames", type=int, default=None, help="frames per camera (the first episodes)")
    parser.add_argument("--profile-out", default=None)
    args = parser.parse_args(argv)
    if args.kind == "floor":
        result = floor(args.root, args.image_size, args.jpeg_quality, args.threads, args.max_frames)
    else:
        from tests.benchmarks.profiling import profile_call

        result = profile_call(
            floor,
            args.root,
            args.image_size,
            args.jpeg_quality,
            args.threads,
            args.max_frames,
            out=args.profile_out,
        )
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    raise SystemExit(main())
