"""shards.writer: shards appear only complete (temporary name while open, rename on close), rotate
by samples and bytes, carry a sha256 that matches the file, and are byte-identical for the same
samples."""

import hashlib
import os

import numpy as np
import pytest

from shards.codec import encode_sample
from shards.reader import iter_tar_samples
from shards.writer import ShardInfo, ShardWriter, atomic_write_text, write_tar


def _samples(n: int, payload: int = 100) -> list[dict]:
    rng = np.random.default_rng(1)
    out = []
    for i in range(n):
        image = rng.integers(0, 255, payload, dtype=np.uint8).tobytes()  # incompressible bytes
        out.append(
            encode_sample(
                f"e00000001_f{i:06d}",
                {"head": image},
                np.zeros(2),
                np.zeros((1, 23)),
                np.zeros(1, bool),
                {"i": i},
            )
        )
    return out


def _check(root, info: ShardInfo):
    path = root / info.name
    data = path.read_bytes()
    assert info.bytes == len(data) == path.stat().st_size
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert info.samples == len(list(iter_tar_samples(str(path))))


def test_rotation_by_samples(tmp_path):
    with ShardWriter(tmp_path, prefix="train", max_samples=4) as writer:
        for sample in _samples(10):
            writer.write(sample)
    shards = writer.shards
    assert [s.name for s in shards] == ["train-000000.tar", "train-000001.tar", "train-000002.tar"]
    assert [s.samples for s in shards] == [4, 4, 2]
    for info in shards:
        _check(tmp_path, info)
    assert sorted(p.name for p in tmp_path.iterdir()) == [s.name for s in shards]
    keys = [s["__key__"] for info in shards for s in iter_tar_samples(str(tmp_path / info.name))]
    assert keys == [f"e00000001_f{i:06d}" for i in range(10)]


def test_rotation_by_bytes(tmp_path):
    with ShardWriter(tmp_path, prefix="val", max_bytes=20_000, max_samples=1000, start_index=5) as writer:
        for sample in _samples(12, payload=4000):
            writer.write(sample)
    shards = writer.shards
    assert len(shards) > 1 and shards[0].name == "val-000005.tar"
    assert [s.name for s in shards] == [f"val-{i:06d}.tar" for i in range(5, 5 + len(shards))]
    assert sum(s.samples for s in shards) == 12
    # the limit counts member payload (webdataset's rule): ~4 kB a sample, so about 5 samples a shard
    assert all(s.samples <= 6 for s in shards)
    for info in shards:
        _check(tmp_path, info)


def test_open_shard_has_temporary_name_until_closed(tmp_path):
    writer = ShardWriter(tmp_path, max_samples=3)
    samples = _samples(4)
    for sample in samples[:3]:
        writer.write(sample)
    # the first shard is full but still open (webdataset rotates on the next write)
    assert [p.name for p in tmp_path.iterdir()] == ["train-000000.tar.tmp"]
    writer.write(samples[3])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train-000000.tar", "train-000001.tar.tmp"]
    shards = writer.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train-000000.tar", "train-000001.tar"]
    assert [s.samples for s in shards] == [3, 1]


def test_error_inside_context_leaves_no_partial_shard(tmp_path):
    with pytest.raises(RuntimeError), ShardWriter(tmp_path, max_samples=3) as writer:
        for sample in _samples(5):
            writer.write(sample)
        raise RuntimeError("interrupted")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["train-000000.tar"]  # the complete one stays; the open one is gone
    _check(tmp_path, writer.shards[0])


def test_no_samples_no_shard(tmp_path):
    with ShardWriter(tmp_path) as writer:
        pass
    assert writer.shards == [] and list(tmp_path.iterdir()) == []


def test_same_samples_give_identical_bytes(tmp_path):
    infos = []
    for name in ("a", "b"):
        with ShardWriter(tmp_path / name, max_samples=4) as writer:
            for sample in _samples(6):
                writer.write(sample)
        infos.append(writer.shards)
    assert [(s.name, s.sha256, s.bytes) for s in infos[0]] == [(s.name, s.sha256, s.bytes) for s in infos[1]]
    os.utime(tmp_path / "a" / "train-000000.tar", (0, 0))  # file times are not part of the content
    assert (tmp_path / "a" / "train-000000.tar").read_bytes() == (
        tmp_path / "b" / "train-000000.tar"
    ).read_bytes()


def test_write_tar_is_atomic(tmp_path):
    info = write_tar(tmp_path / "episode.tar", _samples(3))
    assert info.name == "episode.tar" and info.samples == 3
    _check(tmp_path, info)

    def failing():
        yield from _samples(2)
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_tar(tmp_path / "broken.tar", failing())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["episode.tar"]


def test_atomic_write_text_replaces(tmp_path):
    path = tmp_path / "manifest.json"
    atomic_write_text(path, "one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_shard_info_to_json():
    info = ShardInfo("train-000000.tar", 3, 100, "0" * 64)
    assert info.to_json() == {"name": "train-000000.tar", "samples": 3, "bytes": 100, "sha256": "0" * 64}
