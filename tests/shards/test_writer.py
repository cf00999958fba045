"""shards.writer: shards appear only complete (temporary name while open, rename on close), rotate
by samples and bytes, carry a sha256 that matches the file, and are byte-identical for the same
samples, whether one writer writes them in order or each shard of a plan is written on its own."""

import hashlib
import io
import os
import tarfile

import numpy as np
import pytest

from shards.codec import encode_sample
from shards.reader import iter_tar_samples
from shards.writer import (
    ShardInfo,
    ShardWriter,
    atomic_write_text,
    encode_tar_sample,
    iter_raw_samples,
    plan_shards,
    write_tar,
)


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


def test_write_tar_without_digest_writes_the_same_bytes(tmp_path):
    hashed = write_tar(tmp_path / "a.tar", _samples(3))
    plain = write_tar(tmp_path / "b.tar", _samples(3), digest=False)
    assert plain.sha256 == "" and plain.bytes == hashed.bytes and plain.samples == 3
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()


def test_atomic_write_text_replaces(tmp_path):
    path = tmp_path / "manifest.json"
    atomic_write_text(path, "one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_shard_info_to_json():
    info = ShardInfo("train-000000.tar", 3, 100, "0" * 64)
    assert info.to_json() == {"name": "train-000000.tar", "samples": 3, "bytes": 100, "sha256": "0" * 64}


def _tarfile_bytes(samples: list[dict]) -> bytes:
    """The same samples written member by member with the standard library's `tarfile` (USTAR,
    streaming mode): what the writer's template-built headers and end of archive must equal."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w|", format=tarfile.USTAR_FORMAT) as tar:
        for sample in samples:
            for name in sorted(k for k in sample if not k.startswith("_")):
                data = sample[name].encode() if isinstance(sample[name], str) else sample[name]
                info = tarfile.TarInfo(f"{sample['__key__']}.{name}")
                info.size, info.mtime, info.mode = len(data), 0, 0o444
                info.uname = info.gname = "b1k"
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.parametrize("count,payload", [(1, 0), (3, 511), (5, 512), (7, 513), (20, 10_240)])
def test_bytes_equal_tarfile(tmp_path, count, payload):
    samples = _samples(count, payload)
    samples[0]["long_member_name_" + "x" * 60] = b"odd"  # name length 90: still one USTAR field
    info = write_tar(tmp_path / "s.tar", samples)
    assert (tmp_path / "s.tar").read_bytes() == _tarfile_bytes(samples)
    with tarfile.open(tmp_path / "s.tar") as tar:  # and tarfile reads it back member for member
        assert [m.name for m in tar.getmembers()][:2] == [
            "e00000001_f000000.action.npy",
            "e00000001_f000000.action_is_pad.npy",
        ]
    _check(tmp_path, info)


def test_raw_copy_gives_the_same_shards(tmp_path):
    samples = _samples(9, payload=3000)
    write_tar(tmp_path / "work.tar", samples)
    raw = list(iter_raw_samples(tmp_path / "work.tar"))
    assert [r.key for r in raw] == [s["__key__"] for s in samples]
    for kind in ("decoded", "raw"):
        with ShardWriter(tmp_path / kind, max_bytes=10_000, max_samples=4) as writer:
            for sample, copied in zip(samples, raw, strict=True):
                if kind == "decoded":
                    writer.write(sample)
                else:
                    writer.write_raw(copied)
    names = sorted(p.name for p in (tmp_path / "decoded").iterdir())
    assert len(names) > 1 and names == sorted(p.name for p in (tmp_path / "raw").iterdir())
    for name in names:  # same shard boundaries (max_bytes counts the same payload) and same bytes
        assert (tmp_path / "raw" / name).read_bytes() == (tmp_path / "decoded" / name).read_bytes()


def test_raw_reader_rejects_damaged_tars(tmp_path):
    write_tar(tmp_path / "work.tar", _samples(3, payload=700))
    data = (tmp_path / "work.tar").read_bytes()
    (tmp_path / "short.tar").write_bytes(data[:2000])
    with pytest.raises(tarfile.ReadError, match=r"short\.tar: unexpected end of data"):
        list(iter_raw_samples(tmp_path / "short.tar"))
    garbled = bytearray(data)
    garbled[10] ^= 0xFF  # a byte of the first member's name: the header checksum no longer matches
    (tmp_path / "garbled.tar").write_bytes(bytes(garbled))
    with pytest.raises(tarfile.ReadError, match=r"garbled\.tar: bad checksum in the tar header at byte 0"):
        list(iter_raw_samples(tmp_path / "garbled.tar"))


@pytest.mark.parametrize(("max_samples", "max_bytes"), [(4, 1 << 30), (1000, 9_000), (3, 7_000), (1, 1)])
def test_a_shard_plan_cuts_where_the_writer_does(tmp_path, max_samples, max_bytes):
    rng = np.random.default_rng(7)
    samples = [encode_tar_sample(s) for s in _samples(1)] + [
        encode_tar_sample(_samples(1, payload=int(size))[0] | {"__key__": f"e00000002_f{i:06d}"})
        for i, size in enumerate(rng.integers(10, 5000, 23))
    ]
    with ShardWriter(tmp_path / "writer", max_samples=max_samples, max_bytes=max_bytes) as writer:
        for raw in samples:
            writer.write_raw(raw)
    spans = plan_shards([len(r.data) for r in samples], [r.payload for r in samples], max_samples, max_bytes)
    assert [s.start for s in spans[1:]] == [s.stop for s in spans[:-1]] and spans[-1].stop == len(samples)
    (tmp_path / "plan").mkdir()
    planned = [
        write_tar(tmp_path / "plan" / f"train-{i:06d}.tar", [samples[p] for p in span])
        for i, span in reversed(list(enumerate(spans)))  # any order: each shard stands alone
    ][::-1]
    assert planned == writer.shards
    assert len(writer.shards) > 1
    assert plan_shards([], [], max_samples, max_bytes) == []
