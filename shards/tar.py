"""The tar layout of a shard, standard library only: member headers written from a template, members
read back from any byte stream (hashed and counted on the way), and webdataset's grouping of
members into samples. Shared by the writer (preprocess's processes import neither torch nor
webdataset) and by every reader (`shards.scan`): one parser (`iter_members`) for a stream and for a
memory-mapped local file (`MappedReader`, whose members are zero-copy views of the map).

Python's `tarfile` costs ~70 us per member on reading (TarInfo objects, many small reads) and
~0.3 ms on writing (`TarInfo.tobuf`); a sample has seven members. Shards are plain USTAR, so a
header is built or parsed with a few slices here; on reading, GNU long names and pax records
(tars from other writers, e.g. webdataset's) are understood and anything else is skipped by its size.
"""

from __future__ import annotations

import hashlib
import io
import mmap
import os
import re
import tarfile
import zlib
from collections.abc import Iterator
from typing import BinaryIO, NamedTuple

BLOCK = tarfile.BLOCKSIZE  # 512: headers and padded payloads
RECORD = tarfile.RECORDSIZE  # 20 blocks: tarfile pads an archive to whole records
READ_BUFFER = 1 << 20
# The largest member a reader accepts (SECURITY.md): a sample's member is one frame's image, array or
# json (tens of kB at 224 px, ~50 MB for an uncompressed 4096 px PNG); a header claiming more (up to
# 2^95 bytes in GNU base-256) is an error before anything is read or allocated for it.
MAX_MEMBER_BYTES = 256 << 20

# ----------------------------------------------------------------------------- writing
#
# Only the name, size and checksum differ between our members. The bytes are exactly what `tarfile`
# writes for the same member (USTAR, mode 0444, uid/gid 0, mtime 0, owner "b1k"); names that do not
# fit USTAR's 100-byte name field go through `tarfile` itself.

_TEMPLATE = tarfile.TarInfo("")
_TEMPLATE.mtime, _TEMPLATE.mode = 0, 0o444
_TEMPLATE.uname = _TEMPLATE.gname = "b1k"
_HEADER = bytearray(_TEMPLATE.tobuf(tarfile.USTAR_FORMAT))
_HEADER[124:136] = bytes(12)  # size: filled per member
_HEADER[148:156] = b" " * 8  # the checksum is summed with its own field as spaces
_HEADER_SUM = sum(_HEADER)
_MAX_NAME = 100
_MAX_SIZE = 8**11 - 1  # 11 octal digits; larger members use tarfile's base-256 sizes
_PADDING = [bytes(-n % BLOCK) for n in range(BLOCK)]
_EMPTY_BLOCK = bytes(BLOCK)


def member_header(name: str, size: int) -> bytes:
    """The USTAR header `tarfile` writes for a member `name` of `size` bytes with our fixed metadata."""
    encoded = name.encode("utf-8")
    if len(encoded) > _MAX_NAME or size > _MAX_SIZE:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = size, 0, 0o444
        info.uname = info.gname = "b1k"
        return info.tobuf(tarfile.USTAR_FORMAT)
    size_field = b"%011o\0" % size
    header = _HEADER.copy()
    header[: len(encoded)] = encoded
    header[124:136] = size_field
    header[148:156] = b"%06o\0 " % (_HEADER_SUM + sum(encoded) + sum(size_field))
    return bytes(header)


def padding(size: int) -> bytes:
    """The zeros that pad a member of `size` bytes to whole blocks."""
    return _PADDING[size % BLOCK]


def end_of_archive(written: int) -> bytes:
    """What `tarfile` appends to `written` bytes of members: two zero blocks, then zeros up to a
    whole record."""
    end = 2 * BLOCK
    return bytes(end + -(written + end) % RECORD)


# ----------------------------------------------------------------------------- reading


class HashingReader(io.RawIOBase):
    """A raw stream that counts, and hashes with sha256 unless `digest=False`, what is read from
    `stream`. Wrapped in a large `io.BufferedReader` (`buffered_reader`), it is called once per
    buffer refill: the hash sees megabytes at a time, and the members' reads stay in C."""

    def __init__(self, stream: BinaryIO, digest: bool = True):
        super().__init__()
        self.stream = stream
        self.hash = hashlib.sha256() if digest else None
        self.bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        readinto = getattr(self.stream, "readinto", None)
        if readinto is not None:
            n = readinto(view) or 0
        else:  # e.g. a download or command's output wrapped by webdataset's gopen
            data = self.stream.read(len(view))
            n = len(data)
            view[:n] = data
        if n:
            self.bytes += n
            if self.hash is not None:
                self.hash.update(view[:n])
        return n

    def hexdigest(self) -> str | None:
        return self.hash.hexdigest() if self.hash is not None else None

    def drain(self, block: int = READ_BUFFER) -> None:
        """Read (and hash) the rest of the stream."""
        buffer = bytearray(block)
        while self.readinto(buffer):
            pass


def buffered_reader(raw: HashingReader, size: int = READ_BUFFER) -> io.BufferedReader:
    return io.BufferedReader(raw, buffer_size=size)


class MappedReader:
    """A local file read through a read-only memory map: `read(n)` gives bytes, as a file does, and
    `read_view(n)` a zero-copy memoryview of the map (what `iter_members` gives as member data).

    A member copied out of a read buffer lands in memory that is cold in the cache, and the copies
    of a shuffle buffer's worth of samples fragment the heap: ~13 us per 224 px sample measured
    here, a third of reading it. A view of the map needs neither; the map stays until the last
    view of it is dropped. Replacing the file (a rename) leaves a map of the old one intact."""

    def __init__(self, path: str):
        with open(path, "rb") as file:
            self.size = os.fstat(file.fileno()).st_size
            self.map = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) if self.size else io.BytesIO()
        self.view = memoryview(self.map) if self.size else memoryview(b"")
        self.read = self.map.read  # the map's own: bytes, short at the end, no Python frame per header

    def read_view(self, n: int) -> memoryview:
        start = self.map.tell()
        view = self.view[start : start + n]
        self.map.seek(start + len(view))
        return view

    def hexdigest(self) -> str:
        """The sha256 of the whole file."""
        return hashlib.sha256(self.view).hexdigest()


class Member(NamedTuple):  # a named tuple: made ~3x faster than a frozen dataclass, seven per sample
    """A regular file of a tar: its name, payload and own header block; `extended` when a GNU long
    name or pax record came before it (its bytes are then more than `header` + `data` + padding)."""

    name: str
    data: bytes | memoryview  # a view from a `MappedReader`
    header: bytes
    extended: bool = False


def _octal(field: bytes, what: str) -> int:
    try:  # the common case: octal digits ended by NULs or spaces
        return int(field.rstrip(b"\0 "), 8)
    except ValueError:
        pass
    if field[:1] in (b"\x80", b"\xff"):  # GNU base-256 (files over 8 GiB)
        value = int.from_bytes(field[1:], "big")
        return -value if field[:1] == b"\xff" else value
    text = field.split(b"\0", 1)[0].strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise tarfile.ReadError(f"bad {what} field {text[:20]!r} in a tar header") from None


def _block_sum(block: bytes) -> int:
    """sum(block) of a 512-byte block, ~6x faster than `sum` (which makes an int per byte): the low
    half of zlib's Adler-32 is 1 + the byte sum mod 65521, exact for 256 bytes (at most 65280)."""
    return (zlib.adler32(block[:256]) & 0xFFFF) + (zlib.adler32(block[256:]) & 0xFFFF) - 2


def _checksum_ok(header: bytes) -> bool:
    stored = _octal(header[148:156], "checksum")
    unsigned = _block_sum(header) - sum(header[148:156]) + 256  # the checksum field counts as 8 spaces
    if stored == unsigned:
        return True
    high = sum(1 for i, b in enumerate(header) if b > 127 and not 148 <= i < 156)
    return stored == unsigned - 256 * high  # some old writers summed signed bytes


_PAX_RECORD = re.compile(rb"(\d{1,20}) ")


def _pax_path(records: bytes, offset: int) -> str | None:
    """The `path` record of a pax extended header ("<len> <keyword>=<value>\n" records, <len> counting
    the whole record). Reading stops at NUL padding; a record without a decimal length, or whose length
    is too short to hold itself or runs past the header's data, is an error (a length of 0 or below
    would never advance)."""
    position = 0
    path = None
    while position < len(records):
        match = _PAX_RECORD.match(records, position)
        if match is None:
            if records[position:].strip(b"\0"):  # NUL padding ends the records; anything else is damage
                raise tarfile.ReadError(
                    f"bad pax record at byte {position} of the extended header at byte {offset}: "
                    "no decimal length"
                )
            break
        length = int(match.group(1))
        end = position + length
        if length < len(match.group(0)) + 2 or end > len(records) or records[end - 1] != 0x0A:
            raise tarfile.ReadError(
                f"bad pax record at byte {position} of the extended header at byte {offset}: length "
                f"{length} does not fit its {len(records) - position} remaining bytes"
            )
        keyword, _, value = records[match.end() : end - 1].partition(b"=")
        if keyword == b"path":
            path = value.decode("utf-8")
        position = end
    return path


_REGULAR = (b"0", b"\0", b"7")
_GNU_LONGNAME, _PAX_HEADER = b"L", b"x"


def iter_members(reader: BinaryIO, check_headers: bool = True) -> Iterator[Member]:
    """Every regular file of a tar stream, in order; the stream is read up to the end-of-archive block.
    Raises `tarfile.ReadError` (saying at which byte) for a bad header or a stream that ends early.
    `reader` should be buffered (`buffered_reader`): a member costs three reads; a `MappedReader`
    gives each member's data as a view of its map. `check_headers=False` skips the header checksums
    (a quarter of the parsing): for a file whose sha256 was checked."""
    read_data = getattr(reader, "read_view", reader.read)
    long_name: str | None = None
    offset = 0
    while True:
        header = reader.read(BLOCK)
        if len(header) < BLOCK:
            if offset == 0 and not header:
                raise tarfile.ReadError("empty file")
            raise tarfile.ReadError(f"unexpected end of data at byte {offset} (no end-of-archive block)")
        if header == _EMPTY_BLOCK:
            return
        if check_headers and not _checksum_ok(header):
            raise tarfile.ReadError(f"bad checksum in the tar header at byte {offset}")
        try:  # the common case inline: a call per member costs more than parsing it
            size = int(header[124:136].rstrip(b"\0 "), 8)
        except ValueError:
            size = _octal(header[124:136], "size")
        if not 0 <= size <= MAX_MEMBER_BYTES:  # before a read of that size is tried (or goes backwards)
            raise tarfile.ReadError(
                f"the tar header at byte {offset} claims a member of {size} bytes "
                f"(a member may have 0 to {MAX_MEMBER_BYTES} bytes)"
            )
        data = read_data(size)
        pad = -size % BLOCK
        if len(data) < size or len(reader.read(pad)) < pad:
            raise tarfile.ReadError(f"unexpected end of data in the member at byte {offset}")
        offset += BLOCK + size + pad
        kind = header[156:157]
        if kind in _REGULAR and long_name is None:  # the common case first
            name = header[:100].split(b"\0", 1)[0].decode("utf-8")
            if header[345] != 0 and header[257:262] == b"ustar":
                name = header[345:500].split(b"\0", 1)[0].decode("utf-8") + "/" + name
            yield Member(name, data, header)
            continue
        if kind == _GNU_LONGNAME:
            long_name = bytes(data).split(b"\0", 1)[0].decode("utf-8")
            continue
        if kind == _PAX_HEADER:
            long_name = _pax_path(bytes(data), offset - BLOCK - size - pad) or long_name
            continue
        if kind not in _REGULAR:  # directories, links, global pax headers: no sample data
            long_name = None
            continue
        yield Member(long_name, data, header, extended=True)
        long_name = None


# webdataset's grouping (`tariterators.base_plus_ext`): the key is the path up to the first dot of the
# file name, the member suffix is the rest.
_KEY = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")


def split_member_name(name: str) -> tuple[str, str] | tuple[None, None]:
    """(sample key, member suffix) of a member name, as webdataset splits it; (None, None) without a dot."""
    slash = name.rfind("/")
    dot = name.find(".", slash + 1)
    if dot > slash + 1 and "\n" not in name:  # the common case, 3x faster than the pattern
        return name[:dot], name[dot + 1 :]
    match = _KEY.match(name)
    return match.groups() if match else (None, None)  # type: ignore[return-value]


def iter_sample_members(members: Iterator[Member]) -> Iterator[tuple[str | None, list[tuple[str, Member]]]]:
    """Consecutive members grouped by sample key, as webdataset groups them: (key, [(suffix, member)]);
    a member whose name has no key comes alone, with key None and suffix ""."""
    key: str | None = None
    group: list[tuple[str, Member]] = []
    for member in members:
        member_key, suffix = split_member_name(member.name)
        if member_key is None:  # reported on its own; like webdataset, it does not end the sample around it
            yield None, [("", member)]
            continue
        if member_key != key and group:
            yield key, group
            group = []
        key = member_key
        group.append((suffix, member))
    if group:
        yield key, group
