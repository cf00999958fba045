"""Encode a v1 sample to tar members and decode it back (images, npy arrays, json)."""

from __future__ import annotations

import ctypes
import functools
import io
import json
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import simplejpeg
from PIL import Image

if TYPE_CHECKING:  # torch is imported where tensors are made: preprocess workers never need it
    import torch

from schemas.sample import (
    ACTION_IS_PAD_MEMBER,
    ACTION_MEMBER,
    IMAGE_EXTENSIONS,
    JSON_MEMBER,
    STATE_MEMBER,
    image_member,
)

_IMAGE_SUFFIXES = tuple(f".{ext}" for ext in IMAGE_EXTENSIONS.values())


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    """JPEG bytes of an HxWx3 uint8 image (4:2:0 chroma, like the source AV1 video)."""
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="JPEG", quality=quality)
    return out.getvalue()


def encode_png(rgb: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="PNG", compress_level=1)
    return out.getvalue()


def decode_image(data: bytes, expected: tuple[int, int] | None = None) -> np.ndarray:
    """HxWx3 uint8 RGB from JPEG or PNG bytes; with `expected` (H, W), the header's size is checked
    first (`check_image_size`), before anything is allocated for the pixels."""
    if expected is not None:
        check_image_size(data, *expected)
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xDA)}
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8"


def image_size(data: bytes | memoryview) -> tuple[int, int] | None:
    """(height, width) read from a JPEG's frame header or a PNG's IHDR, without decoding; None when
    the bytes are neither (or the header cannot be found in them)."""
    # Headers come first and a shard's images carry no large metadata: read in place, not copied
    # (a 64 KB copy per image had cost ~3 us of the trainer's per-sample decode).
    head = memoryview(data).cast("B")[:65536]
    if head[:8] == _PNG_MAGIC and head[12:16] == b"IHDR":
        return int.from_bytes(head[20:24], "big"), int.from_bytes(head[16:20], "big")
    if head[:2] != _JPEG_MAGIC:
        return None
    i = 2
    while i + 4 <= len(head):
        if head[i] != 0xFF:
            return None
        marker = head[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _JPEG_STANDALONE:
            i += 2
            continue
        if marker in _JPEG_SOF:
            if i + 9 > len(head):
                return None
            return int.from_bytes(head[i + 5 : i + 7], "big"), int.from_bytes(head[i + 7 : i + 9], "big")
        i += 2 + int.from_bytes(head[i + 2 : i + 4], "big")
    return None


def check_image_size(data: bytes | memoryview, height: int, width: int) -> None:
    """ValueError unless the image's header says height x width: checked before decoding, so an image
    claiming 60000 x 60000 pixels costs nothing."""
    size = image_size(data)
    if size is None:
        raise ValueError("not a JPEG or PNG image (no size in its header)")
    if size != (height, width):
        raise ValueError(f"image header says {size[0]}x{size[1]}, expected {height}x{width}")


def decode_image_tensor(data: bytes) -> torch.Tensor:
    """3xHxW uint8 RGB tensor from JPEG or PNG bytes: what a trainer feeds its model.

    torchvision's libjpeg-turbo decode writes the tensor directly: ~1.8x faster than Pillow + numpy
    here, and already channel-first.
    """
    import torch
    from torchvision.io import ImageReadMode, decode_image

    return decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)


def decode_image_into(data: bytes | memoryview, out: np.ndarray) -> None:
    """Decode JPEG or PNG bytes into `out`, an (H, W, 3) uint8 C-contiguous array such as a row of
    a batch buffer; raises ValueError if the image is not H x W.

    JPEGs are decoded straight into `out` by simplejpeg (libjpeg-turbo, the same islow DCT and fancy
    upsampling as torchvision, so the same pixels): a second pass that copies a decoded image in had
    cost ~20% of decoding it. Whatever it declines (a PNG, a corrupt or truncated stream, a colour
    space it cannot turn into RGB) goes through torchvision (`decode_image_tensor`) and is copied in,
    so an error reads the same either way."""
    height, width = out.shape[0], out.shape[1]
    check_image_size(data, height, width)
    if data[:2] == _JPEG_MAGIC:
        try:
            simplejpeg.decode_jpeg(data, colorspace="RGB", buffer=out, strict=True)
            return
        except ValueError:  # strict: a stream libjpeg would pad with grey is declined, not decoded
            pass
    image = decode_image_tensor(data)
    if image.shape != (3, height, width):
        raise ValueError(f"image {tuple(image.shape)} != expected (3, {height}, {width})")
    np.copyto(out, image.permute(1, 2, 0).numpy())


def encode_npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array, allow_pickle=False)
    return out.getvalue()


def decode_npy(data: bytes) -> np.ndarray:
    """The array of .npy bytes (a writable copy, as `np.load` gives)."""
    return npy_view(data).copy()


def npy_view(data: bytes | memoryview) -> np.ndarray:
    """The array of .npy bytes as a read-only view of them (no copy: for copying straight into a
    batch)."""
    header = _npy_header(data)
    if header is None:
        return np.load(io.BytesIO(data), allow_pickle=False)  # let numpy say what is wrong
    end, dtype, shape, fortran = header
    array = np.frombuffer(data, dtype=dtype, count=math.prod(shape), offset=end)
    return array.reshape(shape, order="F" if fortran else "C")


def npy_into(data: bytes | memoryview, out: np.ndarray, *, rows: int | tuple[int, ...] | None = None) -> None:
    """Copy the array of .npy bytes into `out` (C-contiguous, e.g. a row of a batch buffer). The array
    must be exactly what the schema says: `out`'s dtype and shape, or with `rows`, `rows` rows of
    `out`'s row shape (or any of several `rows`: shard sets of several horizons) of which the first
    `len(out)` are copied (an action chunk out of the stored horizon). Anything else is a ValueError saying what was expected: no casts, no broadcasting (a
    misshapen member must never be spread over a batch row). One memcpy: half the cost of
    `np.copyto(out, npy_view(data))`, which a batch pays per member."""
    header = _npy_header(data)
    if header is None:
        raise ValueError("not an .npy array (format 1 or 2)")
    end, dtype, shape, fortran = header
    allowed = [out.shape] if rows is None else [(n, *out.shape[1:]) for n in np.atleast_1d(rows).tolist()]
    if shape not in allowed or dtype != out.dtype:
        got = dtype.name if dtype.isnative else f"{dtype.name} ({dtype.str})"
        wanted = " or ".join(f"{out.dtype.name}{list(a)}" for a in allowed)
        raise ValueError(f"expected {wanted}, got {got}{list(shape)}")
    if fortran and len(shape) > 1:
        raise ValueError("Fortran-ordered arrays are not written by this schema's tools")
    if len(data) < end + math.prod(shape) * dtype.itemsize:
        raise ValueError(f"{dtype.name}{list(shape)} needs more bytes than the member has ({len(data)})")
    memoryview(out).cast("B")[:] = data[end : end + out.nbytes]


def _npy_header(data: bytes | memoryview) -> tuple[int, np.dtype, tuple[int, ...], bool] | None:
    """(where the array starts, dtype, shape, Fortran order) of .npy bytes of format 1 or 2; None
    for anything else (numpy's own reader then says what is wrong)."""
    if data[:6] != b"\x93NUMPY" or data[6] not in (1, 2):
        return None
    if data[6] == 1:
        end = 10 + int.from_bytes(data[8:10], "little")
    else:
        end = 12 + int.from_bytes(data[8:12], "little")
    return (end, *_npy_layout(bytes(data[:end])))


@functools.lru_cache(maxsize=256)
def _npy_layout(header: bytes) -> tuple[np.dtype, tuple[int, ...], bool]:
    """(dtype, shape, fortran order) of an .npy header: parsed once per distinct header, since
    numpy's parser (`ast.literal_eval`) cost more than reading the array of a small member."""
    stream = io.BytesIO(header)
    major, _ = np.lib.format.read_magic(stream)
    read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read_header(stream)
    if dtype.hasobject:
        raise ValueError("object arrays are not allowed in shards (allow_pickle=False)")
    return dtype, shape, fortran


def encode_sample(
    key: str,
    images: dict[str, bytes],
    state: np.ndarray,
    action: np.ndarray,
    action_is_pad: np.ndarray,
    meta: dict[str, Any],
    encoding: str = "jpeg",
) -> dict[str, bytes | str]:
    """The tar members of one v1 sample; `images` maps camera name to already-encoded bytes."""
    sample: dict[str, bytes | str] = {"__key__": key}
    for camera, data in images.items():
        sample[image_member(camera, encoding)] = data
    sample[STATE_MEMBER] = encode_npy(np.asarray(state, dtype=np.float32))
    sample[ACTION_MEMBER] = encode_npy(np.asarray(action, dtype=np.float32))
    sample[ACTION_IS_PAD_MEMBER] = encode_npy(np.asarray(action_is_pad, dtype=np.bool_))
    sample[JSON_MEMBER] = json.dumps(meta, sort_keys=True).encode("utf-8")
    return sample


def decode_member(
    name: str,
    data: bytes,
    image_decoder: Callable[[bytes], Any] = decode_image,
    image_size: tuple[int, int] | None = None,
) -> Any:
    """One member decoded by its suffix; an image with an `image_size` (H, W) is checked against its
    header first, before it is decoded."""
    if name.endswith(_IMAGE_SUFFIXES):
        if image_size is not None:
            check_image_size(data, *image_size)
        return image_decoder(data)
    if name.endswith(".npy"):
        return decode_npy(data)
    if name == JSON_MEMBER or name.endswith(".json"):
        return json.loads(bytes(data) if isinstance(data, memoryview) else data)
    return data


def decode_sample(
    raw: dict[str, Any],
    skip_images: bool = False,
    image_decoder: Callable[[bytes], Any] = decode_image,
    image_sizes: dict[str, tuple[int, int]] | None = None,
) -> dict[str, Any]:
    """Decode every member of a raw sample (bytes, or memoryviews of a mapped shard); `__key__`/`__url__`
    and other metadata pass through. Images become HxWx3 uint8 arrays (`decode_image`) unless another
    `image_decoder` is given; `image_sizes` (member -> (H, W), e.g. from the manifest) are checked
    against each image's header before it is decoded."""
    sizes = image_sizes or {}
    decoded: dict[str, Any] = {}
    for name, value in raw.items():
        passthrough = name.startswith("__") or not isinstance(value, (bytes, bytearray, memoryview))
        if passthrough or (skip_images and name.endswith(_IMAGE_SUFFIXES)):
            decoded[name] = value
        else:
            decoded[name] = decode_member(name, value, image_decoder, sizes.get(name))
    return decoded


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters (malloc.h)


def retain_freed_memory(trim_threshold: int = 256 << 20, mmap_threshold: int = 32 << 20) -> bool:
    """Ask glibc's malloc to keep freed memory for reuse instead of returning it to the OS.

    Image coding allocates and frees MB-sized buffers per frame (decoded frames, resized copies, a
    batch of decoded JPEGs); by default glibc maps each buffer over 128 KB afresh, or trims the
    heap, and every page is faulted in again for the next one: ~15% of preprocess's decode +
    resize + JPEG work and ~25% of a training worker's time measured here. Memory stays bounded by
    the working set. Returns False where there is no glibc `mallopt`. Called by preprocess's
    episode workers and by train's decoding processes."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_TRIM_THRESHOLD, trim_threshold)) and bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold))
