"""Helpers for the preprocess tests: run the tool, read a shard set back, decode source frames directly."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import av
import numpy as np
from PIL import Image

from preprocess.pipeline import PreprocessConfig, run
from shards.codec import decode_sample
from shards.reader import iter_tar_samples, open_shard_set


def preprocess(dataset: Path, out: Path, **options) -> dict:
    """Run b1k-preprocess in-process (one worker unless told) and return its manifest's JSON."""
    options.setdefault("workers", 1)
    options.setdefault("progress", False)
    return run(PreprocessConfig(dataset_path=dataset, output_dir=out, **options)).to_json()


def read_set(out: Path, decode: bool = True) -> tuple[dict, dict[str, dict[str, dict]]]:
    """(manifest JSON, {split: {key: sample}}); checks every shard's bytes, sha256 and sample count."""
    shard_set = open_shard_set(str(out))
    manifest = shard_set.manifest.to_json()
    splits: dict[str, dict[str, dict]] = {}
    for split in ("train", "val"):
        samples: dict[str, dict] = {}
        for shard in manifest["splits"][split]["shards"]:
            path = Path(out) / shard["name"]
            data = path.read_bytes()
            assert len(data) == shard["bytes"], shard
            assert hashlib.sha256(data).hexdigest() == shard["sha256"], shard
            count = 0
            for raw in iter_tar_samples(str(path)):
                key = raw["__key__"]
                assert key not in samples, f"duplicate sample {key}"
                samples[key] = decode_sample(raw) if decode else raw
                count += 1
            assert count == shard["samples"], shard
        splits[split] = samples
    return manifest, splits


def sample_order(out: Path, split: str = "train") -> list[str]:
    manifest = open_shard_set(str(out)).manifest.to_json()
    keys = []
    for shard in manifest["splits"][split]["shards"]:
        keys += [raw["__key__"] for raw in iter_tar_samples(str(Path(out) / shard["name"]))]
    return keys


@lru_cache(maxsize=64)
def _decode_all(path: str) -> tuple[tuple[float, ...], tuple[np.ndarray, ...]]:
    with av.open(path) as container:
        stream = container.streams.video[0]
        times, frames = [], []
        for frame in container.decode(stream):
            times.append(float(frame.pts * stream.time_base))
            frames.append(frame.to_ndarray(format="rgb24"))
    return tuple(times), tuple(frames)


def direct_frame(path: Path, timestamp: float) -> np.ndarray:
    """The source frame closest to `timestamp` in a whole-file PyAV decode (independent of preprocess/video.py)."""
    times, frames = _decode_all(str(path))
    i = int(np.argmin(np.abs(np.asarray(times) - timestamp)))
    assert abs(times[i] - timestamp) < 0.5 / 30, (path, timestamp, times[i])
    return frames[i]


def resized(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    if rgb.shape[:2] == (height, width):
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((width, height), Image.Resampling.BILINEAR))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def expected_chunk(actions: np.ndarray, start: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Independent restatement of the contract: actions [i, i+H), last action repeated past the end."""
    length = len(actions)
    rows, pad = [], []
    for k in range(start, start + horizon):
        rows.append(actions[min(k, length - 1)])
        pad.append(k >= length)
    return np.stack(rows), np.asarray(pad)


def numpy_stats(values: np.ndarray) -> dict[str, np.ndarray]:
    """(N, D) -> the stats numpy computes directly."""
    values = values.astype(np.float64)
    return {
        "mean": values.mean(0),
        "std": values.std(0),
        "min": values.min(0),
        "max": values.max(0),
        "q01": np.quantile(values, 0.01, axis=0),
        "q99": np.quantile(values, 0.99, axis=0),
    }


def check_stats(entry: dict, values: np.ndarray) -> None:
    """Manifest stats vs numpy: rtol 1e-6 for moments/extremes, q01/q99 within 1e-3 of the range."""
    expected = numpy_stats(values)
    assert entry["count"] == len(values)
    for name in ("mean", "std", "min", "max"):
        np.testing.assert_allclose(entry[name], expected[name], rtol=1e-6, atol=1e-9, err_msg=name)
    span = np.maximum(expected["max"] - expected["min"], 1e-12)
    for name in ("q01", "q99"):
        err = np.abs(np.asarray(entry[name]) - expected[name]) / span
        assert err.max() <= 1e-3, (name, err.max())
