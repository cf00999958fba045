"""shards.tar: headers are the bytes `tarfile` writes; members read back as `tarfile` reads them,
from any stream, hashed and counted exactly; members group into samples as webdataset groups them;
a mapped plain shard is indexed in one pass into exactly the samples read header by header."""

import hashlib
import io
import random
import tarfile

import pytest

from shards.scan import ShardScan
from shards.tar import (
    HashingReader,
    MappedReader,
    Member,
    buffered_reader,
    end_of_archive,
    iter_members,
    iter_sample_members,
    member_header,
    padding,
    split_member_name,
)
from shards.writer import write_tar


def _tarfile_tar(members: dict[str, bytes], tar_format: int = tarfile.USTAR_FORMAT) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tar_format) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class _Trickle(io.RawIOBase):
    """A pipe-like stream: reads return at most `step` bytes and it has no `readinto`."""

    def __init__(self, data: bytes, step: int):
        self.data, self.step, self.position = data, step, 0

    def read(self, size: int = -1) -> bytes:
        size = self.step if size < 0 else min(size, self.step)
        chunk = self.data[self.position : self.position + size]
        self.position += len(chunk)
        return chunk

    readinto = None  # type: ignore[assignment]


def _members(data: bytes, **kwargs) -> list:
    return list(iter_members(buffered_reader(HashingReader(io.BytesIO(data), digest=False), **kwargs)))


@pytest.mark.parametrize("name", ["e1_f2.json", "d/" * 20 + "e1_f2.json", "dir/" * 30 + "e1_f2.json"])
@pytest.mark.parametrize("size", [0, 5, 512, 8**11 - 1])
def test_member_header_is_what_tarfile_writes(name, size):
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, 0, 0o444
    info.uname = info.gname = "b1k"
    assert member_header(name, size) == info.tobuf(tarfile.USTAR_FORMAT)


def test_padding_and_end_of_archive_complete_a_tarfile_archive():
    members = {"a.json": b"x" * 700, "b.json": b"y" * 512}
    reference = _tarfile_tar(members)
    ours = b"".join(member_header(n, len(d)) + d + padding(len(d)) for n, d in members.items())
    written = len(ours)
    ours += end_of_archive(written)
    # tarfile's own headers carry its defaults (mtime, owner): compare the layout, block for block
    assert len(ours) == len(reference) and len(ours) % tarfile.RECORDSIZE == 0
    assert ours[written:] == bytes(len(ours) - written)


@pytest.mark.parametrize("tar_format", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_members_read_as_tarfile_reads_them(tar_format):
    long_dir = "d" * 120 if tar_format != tarfile.USTAR_FORMAT else "nested/dir"
    members = {f"{long_dir}/e1_f0.json": b"{}", f"{long_dir}/e1_f0.npy": b"z" * 1025, "e2_f0.json": b""}
    data = _tarfile_tar(members, tar_format)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        reference = [(m.name, tar.extractfile(m).read()) for m in tar if m.isreg()]
    read = _members(data, size=4096)  # buffer smaller than the archive: members cross refills
    assert [(m.name, m.data) for m in read] == reference == list(members.items())
    assert [m.extended for m in read][:2] == [tar_format != tarfile.USTAR_FORMAT] * 2


def test_hashing_reader_counts_and_hashes_every_byte_of_a_trickling_stream():
    data = _tarfile_tar({f"e1_f{i}.json": bytes([i]) * (300 * i) for i in range(20)})
    raw = HashingReader(_Trickle(data, step=777))
    names = [m.name for m in iter_members(buffered_reader(raw, size=2048))]
    assert names == [f"e1_f{i}.json" for i in range(20)]
    raw.drain()  # the end-of-archive padding after the last member
    assert raw.bytes == len(data)
    assert raw.hexdigest() == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: d[:1700], r"unexpected end of data in the member at byte 1024"),
        (lambda d: d[:1024], r"unexpected end of data at byte 1024 \(no end-of-archive block\)"),
        (lambda d: d[:5] + bytes([d[5] ^ 0x20]) + d[6:], r"bad checksum in the tar header at byte 0"),
        (lambda d: b"", r"empty file"),
    ],
)
@pytest.mark.parametrize("mapped", [False, True], ids=["stream", "mapped"])
def test_damaged_tars_are_errors_saying_where(tmp_path, damage, message, mapped):
    data = damage(_tarfile_tar({"e1_f0.json": b"a" * 100, "e1_f1.json": b"b" * 600}))
    path = tmp_path / "damaged.tar"
    path.write_bytes(data)
    with pytest.raises(tarfile.ReadError, match=message):
        _members(data) if not mapped else list(iter_members(MappedReader(str(path))))


def test_header_checksums_can_be_skipped_for_a_file_already_hashed():
    data = _tarfile_tar({"e1_f0.json": b"a" * 100})
    damaged = data[:3] + bytes([data[3] ^ 0x20]) + data[4:]  # in the name: e1_f0 -> e1_F0
    with pytest.raises(tarfile.ReadError, match="bad checksum"):
        _members(damaged)
    reader = buffered_reader(HashingReader(io.BytesIO(damaged), digest=False))
    assert [m.name for m in iter_members(reader, check_headers=False)] == ["e1_F0.json"]


def test_header_checksums_count_every_byte_as_tarfile_does():
    # names of non-ASCII bytes fill the header with bytes > 127, in both halves of the block
    names = ["é" * 50, "ü" * 30 + "/" + "ß" * 40, "e1_f0.json"]
    data = _tarfile_tar({name: name.encode() for name in names})
    assert [m.name for m in _members(data)] == names
    # old writers summed signed bytes: tarfile accepts that checksum, so do we
    header = bytearray(data[:512])
    signed = sum(b - 256 if b > 127 else b for i, b in enumerate(header) if not 148 <= i < 156) + 256
    header[148:156] = b"%06o\0 " % signed
    assert [m.name for m in _members(bytes(header) + data[512:])] == names
    header[148:156] = b"%06o\0 " % (signed + 1)
    with pytest.raises(tarfile.ReadError, match="bad checksum"):
        _members(bytes(header) + data[512:])


def test_member_names_split_into_key_and_suffix_as_webdataset_splits_them():
    from webdataset.tariterators import base_plus_ext

    rng = random.Random(0)
    names = ["x/.hidden", "a.b/c.d", "e1_f0.head.jpg", "dir/e1_f0.json", "x\ny/z.w", "noext", ".npy", ""]
    names += ["".join(rng.choice("ab./\n") for _ in range(rng.randint(0, 9))) for _ in range(20000)]
    for name in names:
        assert split_member_name(name) == base_plus_ext(name), name


def test_samples_group_consecutive_members_like_webdataset():
    assert split_member_name("dir/e1_f0.action.npy") == ("dir/e1_f0", "action.npy")
    assert split_member_name("README") == (None, None)
    names = ["e1_f0.json", "e1_f0.head.jpg", "README", "e1_f0.state.npy", "e1_f1.json", "e1_f0.json"]
    members = [Member(name, b"", member_header(name, 0)) for name in names]
    groups = [(key, [s for s, _ in group]) for key, group in iter_sample_members(iter(members))]
    assert groups == [
        (None, [""]),  # a member without a key is reported alone and does not split the sample
        ("e1_f0", ["json", "head.jpg", "state.npy"]),
        ("e1_f1", ["json"]),
        ("e1_f0", ["json"]),
    ]


@pytest.mark.parametrize("tar_format", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_a_mapped_file_gives_its_members_as_views_of_the_map(tmp_path, tar_format):
    long_dir = "d" * 120 if tar_format != tarfile.USTAR_FORMAT else "nested/dir"
    members = {f"{long_dir}/e1_f0.json": b"{}", f"{long_dir}/e1_f0.npy": b"z" * 1025, "e2_f0.json": b""}
    data = _tarfile_tar(members, tar_format)
    path = tmp_path / "a.tar"
    path.write_bytes(data)
    reader = MappedReader(str(path))
    read = list(iter_members(reader))
    assert all(isinstance(m.data, memoryview) for m in read)
    assert [(m.name, bytes(m.data)) for m in read] == [(m.name, m.data) for m in _members(data)]
    assert reader.size == len(data) and reader.hexdigest() == hashlib.sha256(data).hexdigest()


def _scanned(path, zero_copy: bool) -> list[dict] | str:
    """ShardScan's samples of `path` as bytes, or the error it raised."""
    try:
        samples = list(ShardScan(str(path), zero_copy=zero_copy))
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return [{k: bytes(v) if isinstance(v, memoryview) else v for k, v in s.items()} for s in samples]


def _tarfile_samples(path) -> list[dict]:
    """The samples of a tar as Python's `tarfile` reads its members, grouped as webdataset groups them
    (key up to the first dot of the file name, suffix lower-cased)."""
    samples: list[dict] = []
    with tarfile.open(path) as archive:
        for info in archive:
            key, suffix = info.name.split("/")[-1].split(".", 1)
            key = info.name.rsplit("/", 1)[0] + "/" + key if "/" in info.name else key
            if not samples or samples[-1]["__key__"] != key:
                samples.append({"__key__": key, "__url__": str(path)})
            samples[-1][suffix.lower()] = archive.extractfile(info).read()
    return samples


def test_a_mapped_shard_gives_views_of_the_samples_tarfile_reads(tmp_path):
    members = {
        f"e1_f{i}.{suffix}": bytes([i]) * size
        for i in range(3)
        for suffix, size in [("json", 7), ("head.jpg", 1500)]
    }
    members["nested/dir/e2_f0.State.NPY"] = b"s" * 512  # suffixes are lower-cased, as webdataset does
    members["e3_f0.json"] = b""
    members["e4_f0.Jsön"] = b"{}"
    path = tmp_path / "plain.tar"
    path.write_bytes(_tarfile_tar(members))

    mapped = list(ShardScan(str(path), zero_copy=True))
    assert all(isinstance(s["head.jpg"], memoryview) for s in mapped[:3])  # zero copy: views of the map
    assert [s["__key__"] for s in mapped] == ["e1_f0", "e1_f1", "e1_f2", "nested/dir/e2_f0", "e3_f0", "e4_f0"]
    assert bytes(mapped[3]["state.npy"]) == b"s" * 512 and bytes(mapped[5]["jsön"]) == b"{}"
    as_bytes = _scanned(path, zero_copy=True)
    assert as_bytes == _tarfile_samples(path) == _scanned(path, zero_copy=False)


def test_a_shard_of_our_writer_reads_as_tarfile_reads_it_and_a_bad_header_checksum_is_named(tmp_path):
    """What the training stream reads: a shard as `write_tar` makes it, mapped or streamed, gives the
    samples `tarfile` reads; a garbled header byte is named with its offset either way."""
    path = tmp_path / "ours.tar"
    samples = [
        {
            "__key__": f"e{e:08d}_f{f:06d}",
            "head.jpg": bytes([f]) * (300 + f),
            "json": b"{}",
            "state.npy": b"s",
        }
        for e in range(2)
        for f in range(4)
    ]
    write_tar(path, samples)
    assert _scanned(path, zero_copy=True) == _scanned(path, zero_copy=False) == _tarfile_samples(path)
    with tarfile.open(path) as archive:
        third = archive.getmembers()[2].offset
    data = bytearray(path.read_bytes())
    data[third + 10] ^= 0x20  # a byte of the third member's name
    path.write_bytes(bytes(data))
    for zero_copy in (True, False):
        assert f"bad checksum in the tar header at byte {third}" in _scanned(path, zero_copy)


def _other_layouts() -> dict[str, tuple[bytes, str | None]]:
    """Tars other than our writer's: (bytes, what the reader says or None)."""
    plain = _tarfile_tar({"e1_f0.json": b"a" * 100, "e1_f1.json": b"b" * 600})
    long_name = "d" * 120 + "/e1_f0.json"
    directory = io.BytesIO()
    with tarfile.open(fileobj=directory, mode="w") as archive:
        info = tarfile.TarInfo("sub")
        info.type = tarfile.DIRTYPE
        archive.addfile(info)
        info = tarfile.TarInfo("sub/e1_f0.json")
        info.size = 2
        archive.addfile(info, io.BytesIO(b"{}"))
    return {
        "gnu long name": (_tarfile_tar({long_name: b"{}"}, tarfile.GNU_FORMAT), None),
        "pax record": (_tarfile_tar({long_name: b"{}"}, tarfile.PAX_FORMAT), None),
        "ustar prefix": (_tarfile_tar({"p" * 90 + "/" + "q" * 20 + "/e1_f0.json": b"{}"}), None),
        "a directory entry": (directory.getvalue(), None),
        "a member without a key": (_tarfile_tar({"README": b"hi", "e1_f0.json": b"{}"}), None),
        "a suffix twice": (_tarfile_tar({"e1_f0.json": b"1", "e1_f0.JSON": b"2"}), "appears twice"),
        "a bad checksum": (plain[:5] + bytes([plain[5] ^ 0x20]) + plain[6:], "bad checksum"),
        "a cut member": (plain[:1700], "unexpected end of data in the member at byte 1024"),
        "no end-of-archive block": (plain[:1024], "no end-of-archive block"),
        "an empty file": (b"", "empty file"),
    }


@pytest.mark.parametrize("layout", list(_other_layouts()))
def test_other_layouts_and_damaged_files_read_the_same_mapped_or_streamed(tmp_path, layout):
    data, error = _other_layouts()[layout]
    path = tmp_path / "other.tar"
    path.write_bytes(data)
    mapped, streamed = _scanned(path, zero_copy=True), _scanned(path, zero_copy=False)
    assert mapped == streamed
    assert (error is None) == isinstance(mapped, list) and (error is None or error in mapped)
