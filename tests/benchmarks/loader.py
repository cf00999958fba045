"""Loader measurements: samples/s delivered as training batches.

Each measurement runs in a fresh process (`python -m tests.benchmarks.loader KIND ...`, one JSON
line on stdout) so that no decoder state, page cache warm-up of Python objects or forked worker
state leaks from one configuration into the next.

  lerobot  LeRobotDataset(delta_timestamps={"action": 50 steps}) through a torch DataLoader
           (batch 8, shuffle, num_workers 0 or N), video backend as lerobot picks it (torchcodec
           when FFmpeg's shared libraries load, else PyAV) or forced.
  shards   our shard stream as the trainer builds it (train.data), num_workers N.
  floor    the bare floor: decode the same JPEG bytes (3 cameras per sample) in a tight loop with
           the decoder the trainer's stream uses (shards.codec.decode_image_into, into one reused
           buffer per camera, as into a batch row), one process = one worker; `--decoder tensor|pil` for torchvision's
           or Pillow's decoder instead.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

from schemas.r1pro import ACTION_KEY, CAMERAS, FPS

BATCH_SIZE = 8
CHUNK = 50


# ----------------------------------------------------------------------------- timing


def cpu_seconds() -> tuple[float, float]:
    """(this process, its live descendants: the DataLoader workers) user+system CPU seconds."""
    try:
        import psutil  # present with lerobot's dependencies; only the CPU columns need it
    except ImportError:
        return time.process_time(), float("nan")
    me = psutil.Process()
    children = 0.0
    for child in me.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            children += sum(child.cpu_times()[:2])
    return sum(me.cpu_times()[:2]), children


def time_batches(
    batches, *, batch_size: int, seconds: float, warmup_batches: int, min_batches: int = 5
) -> dict:
    """Pull batches; the first `warmup_batches` (worker start, first decodes) are not timed; then
    count samples for at least `seconds` (and `min_batches`). CPU time of the consuming process and
    of its workers over the timed window gives samples per CPU-second, which other work on a shared
    machine disturbs far less than samples/s."""
    start = time.perf_counter()
    it = iter(batches)
    for _ in range(warmup_batches):
        next(it)
    warm = time.perf_counter()
    own0, workers0 = cpu_seconds()
    n = 0
    while True:
        next(it)
        n += 1
        elapsed = time.perf_counter() - warm
        if elapsed >= seconds and n >= min_batches:
            break
    own1, workers1 = cpu_seconds()
    cpu = (own1 - own0) + (workers1 - workers0)
    return {
        "samples_per_s": n * batch_size / elapsed,
        "samples_per_cpu_s": n * batch_size / cpu if cpu > 0 else None,  # nan cpu: not > 0
        "main_cpu_s": own1 - own0,
        "workers_cpu_s": workers1 - workers0,
        "batches": n,
        "timed_s": elapsed,
        "startup_s": warm - start,
        "warmup_batches": warmup_batches,
    }


# ----------------------------------------------------------------------------- lerobot


def detect_video_backend(root: str) -> dict:
    """Which backend lerobot picks by default, and whether torchcodec really decodes here
    (it needs FFmpeg's shared libraries; without them lerobot falls back to PyAV)."""
    from lerobot.utils.import_utils import get_safe_default_video_backend

    info: dict = {"lerobot_default": get_safe_default_video_backend()}
    try:
        from torchcodec.decoders import VideoDecoder

        video = next(Path(root, "videos").rglob("*.mp4"))
        frame = VideoDecoder(str(video), seek_mode="approximate").get_frame_at(0)
        info["torchcodec_decodes"] = True
        info["torchcodec_frame_shape"] = list(frame.data.shape)
    except Exception as exc:  # ImportError, RuntimeError (no libavcodec), OSError
        info["torchcodec_decodes"] = False
        info["torchcodec_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[
            :300
        ]
    info["effective_default"] = (
        "torchcodec" if info["lerobot_default"] == "torchcodec" and info["torchcodec_decodes"] else "pyav"
    )
    return info


def parse_episodes(text: str | None) -> list[int] | None:
    """'0:4' -> [0, 1, 2, 3]; '0,2' -> [0, 2]; None -> None (all)."""
    if not text:
        return None
    out: list[int] = []
    for part in text.split(","):
        if ":" in part:
            start, stop = part.split(":")
            out.extend(range(int(start), int(stop)))
        else:
            out.append(int(part))
    return out


def lerobot_dataset(root: str, backend: str | None, episodes: list[int] | None = None):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    delta = {ACTION_KEY: [i / FPS for i in range(CHUNK)]}
    return LeRobotDataset(
        "bench/b1k-synthetic", root=root, episodes=episodes, delta_timestamps=delta, video_backend=backend
    )


def measure_lerobot(
    root: str,
    backend: str | None,
    num_workers: int,
    seconds: float,
    seed: int = 0,
    episodes: str | None = None,
) -> dict:
    import torch

    logging.getLogger().setLevel(logging.ERROR)
    torch.manual_seed(seed)
    threads = limit_main_threads(num_workers)
    dataset = lerobot_dataset(root, backend, parse_episodes(episodes))
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=BATCH_SIZE,
        shuffle=True,
        num_workers=num_workers,
        drop_last=True,
        persistent_workers=num_workers > 0,
        prefetch_factor=2 if num_workers > 0 else None,
    )
    batches = _forever(loader)
    result = time_batches(
        batches, batch_size=BATCH_SIZE, seconds=seconds, warmup_batches=max(2, 2 * num_workers)
    )
    result.update(
        kind="lerobot",
        torch_threads=threads,
        backend=getattr(dataset, "_video_backend", backend),
        num_workers=num_workers,
        frames=len(dataset),
    )
    return result


def _forever(loader):
    while True:
        yield from loader


# ----------------------------------------------------------------------------- shards


def shard_urls(shard_dir: str, split: str = "train") -> list[str]:
    from shards.reader import open_shard_set

    shard_set = open_shard_set(shard_dir)
    urls = shard_set.urls(split)
    if split == "train":
        urls += shard_set.urls("val") if not urls else []
    return urls


def trainer_batches(shard_dir: str, num_workers: int, seed: int):
    """Batches exactly as b1k-train gets them (train.data: open_data -> TrainStream -> make_loader -> batches)."""
    from shards.codec import retain_freed_memory
    from train import data as train_data

    if num_workers == 0:  # as b1k-train does when it decodes in its own process
        retain_freed_memory()
    spec = train_data.open_data([shard_dir])
    stream = train_data.TrainStream(
        spec, chunk_size=CHUNK, seed=seed, batch_size=BATCH_SIZE, num_workers=num_workers
    )
    loader = train_data.make_loader(stream, persistent=True)
    return train_data.batches(loader, pin_memory=False, copy=False)  # as b1k-train on CPU


def limit_main_threads(num_workers: int) -> int:
    """Torch intra-op threads of the consuming process, as b1k-train sets them on CPU (cores minus
    data workers, at least 1; OMP_NUM_THREADS wins): applied to every loader alike."""
    import torch

    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) - num_workers))
    return torch.get_num_threads()


def measure_shards(
    shard_dir: str,
    num_workers: int,
    seconds: float,
    seed: int = 0,
) -> dict:
    threads = limit_main_threads(num_workers)
    batches = trainer_batches(shard_dir, num_workers, seed)
    result = time_batches(
        batches, batch_size=BATCH_SIZE, seconds=seconds, warmup_batches=max(4, 4 * num_workers)
    )
    first = next(batches)
    result.update(
        kind="shards",
        torch_threads=threads,
        loader="train.data (b1k-train's stream)",
        num_workers=num_workers,
        image_shapes={k: list(v.shape[1:]) for k, v in first.items() if k.startswith("observation.images")},
        image_dtype=str(next(v.dtype for k, v in first.items() if k.startswith("observation.images"))),
    )
    return result


# ----------------------------------------------------------------------------- floor


def load_jpeg_samples(shard_dir: str, limit: int = 200) -> list[list[bytes]]:
    """The JPEG bytes of the first `limit` samples (3 cameras each)."""
    from shards.reader import iter_tar_samples

    out: list[list[bytes]] = []
    for url in shard_urls(shard_dir):
        for raw in iter_tar_samples(url):
            out.append([raw[f"{camera.name}.jpg"] for camera in CAMERAS])
            if len(out) >= limit:
                return out
    return out


def reader_decoder(which: str = "auto"):
    """(decode function of (JPEG bytes, camera index), name): the image decoder the trainer's stream
    uses (`into`: shards.codec's `decode_image_into`, straight into a reused buffer per camera as
    into a batch row), torchvision's (`tensor`: `decode_image_tensor`, a new tensor per image) or
    Pillow's (`pil`: `decode_image`)."""
    from shards import codec

    if which in ("auto", "into") and hasattr(codec, "decode_image_into"):
        buffers: dict[int, np.ndarray] = {}

        def decode_into(data: bytes, camera: int) -> None:
            if camera not in buffers:
                height, width = codec.decode_image_tensor(data).shape[1:]
                buffers[camera] = np.empty((height, width, 3), np.uint8)
            codec.decode_image_into(data, buffers[camera])

        return decode_into, "shards.codec.decode_image_into (simplejpeg, straight into the buffer)"
    if which in ("auto", "tensor", "into"):
        return (lambda data, _camera: codec.decode_image_tensor(data)), "shards.codec.decode_image_tensor"
    return (lambda data, _camera: codec.decode_image(data)), "shards.codec.decode_image"


def measure_floor(shard_dir: str, seconds: float, decoder: str = "auto") -> dict:
    """Decode the same JPEG bytes in a tight loop, one process: samples/s of one worker."""
    import torch

    torch.set_num_threads(1)  # like a DataLoader worker
    decode, name = reader_decoder(decoder)
    samples = load_jpeg_samples(shard_dir)
    for images in samples[:5]:  # warm-up
        for camera, data in enumerate(images):
            decode(data, camera)
    n = 0
    start = time.perf_counter()
    cpu0 = time.process_time()
    while True:
        for camera, data in enumerate(samples[n % len(samples)]):
            decode(data, camera)
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and n >= 20:
            break
    cpu = time.process_time() - cpu0
    return {
        "kind": "floor",
        "decoder": name,
        "samples_per_s": n / elapsed,
        "samples_per_cpu_s": n / cpu if cpu > 0 else None,
        "samples": n,
        "timed_s": elapsed,
        "jpeg_bytes_per_sample": float(np.mean([sum(len(b) for b in s) for s in samples])),
    }


# ----------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.loader")
    parser.add_argument(
        "kind", choices=["lerobot", "shards", "floor", "backend", "profile-shards", "profile-lerobot"]
    )
    parser.add_argument(
        "--root", help="LeRobot dataset root (lerobot, backend) or shard set dir (shards, floor)"
    )
    parser.add_argument("--backend", default=None, help="force a lerobot video backend (torchcodec, pyav)")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--profile-out", default=None)
    parser.add_argument("--episodes", default=None, help="lerobot: episode indices, e.g. 0:4")
    parser.add_argument(
        "--decoder", choices=["auto", "into", "tensor", "pil"], default="auto", help="floor: image decoder"
    )
    args = parser.parse_args(argv)
    if args.kind == "lerobot":
        result = measure_lerobot(args.root, args.backend, args.workers, args.seconds, episodes=args.episodes)
    elif args.kind == "shards":
        result = measure_shards(args.root, args.workers, args.seconds)
    elif args.kind == "floor":
        result = measure_floor(args.root, args.seconds, args.decoder)
    elif args.kind == "backend":
        result = detect_video_backend(args.root)
    else:
        from tests.benchmarks.profiling import profile_call

        fn = measure_shards if args.kind == "profile-shards" else measure_lerobot
        kwargs = {"num_workers": 0, "seconds": args.seconds}
        if args.kind == "profile-lerobot":
            kwargs.update(backend=args.backend, episodes=args.episodes)
        result = profile_call(fn, args.root, out=args.profile_out, **kwargs)
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()
    os._exit(0)  # do not wait for persistent DataLoader workers / decoder threads to wind down


if __name__ == "__main__":
    raise SystemExit(main())
