"""The BEHAVIOR evaluator's wire format: msgpack maps with numpy arrays (openpi's msgpack_numpy
convention), decoded strictly.

An array travels as `{b"__ndarray__": True, b"data": bytes, b"dtype": str, b"shape": [...]}` and a
numpy scalar as `{b"__npgeneric__": True, b"data": value, b"dtype": str}`. Decoding never runs code
(no pickle, no object dtypes): only numeric and bool dtypes are accepted, an array's declared size is
checked against the limit before its bytes are looked at, and must equal the bytes sent. Errors
(`WireError`) name the key and what was expected, cut to `MAX_ERROR_CHARS` (`clip`): a client's key
or value is never echoed whole (a 20 MB map key once came back as a 20 MB error frame and log line).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import msgpack
import numpy as np

from schemas.errors import B1kError

ALLOWED_DTYPE_KINDS = frozenset("biuf")  # bool, signed, unsigned, float: what observations hold
MAX_DIMS = 8
MAX_KEY_CHARS = 80  # of a client's map key, in error texts
MAX_ERROR_CHARS = 500  # of an error text or log line about a client's frame


class WireError(B1kError, ValueError):
    """A frame that is not a well-formed message of the protocol."""


def clip(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """`text` cut to `limit` characters, saying how much was cut (for texts that quote a client)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit:,} more characters)"


def _encode_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray | np.generic) and obj.dtype.kind not in ALLOWED_DTYPE_KINDS:
        raise TypeError(f"cannot send dtype {obj.dtype} (only bool, int, uint and float)")
    if isinstance(obj, np.ndarray):
        return {
            b"__ndarray__": True,
            b"data": np.ascontiguousarray(obj).tobytes(),
            b"dtype": obj.dtype.str,
            b"shape": list(obj.shape),
        }
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    raise TypeError(f"cannot send a {type(obj).__name__}")


def pack(message: Mapping[str, Any]) -> bytes:
    """One message as msgpack bytes, numpy arrays and scalars in the msgpack_numpy convention."""
    return msgpack.packb(message, default=_encode_default, use_bin_type=True)


def _dtype(value: Any, where: str) -> np.dtype:
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    if not isinstance(value, str) or len(value) > 16:
        raise WireError(f"{where}: dtype must be a numpy dtype string such as '<f4', got {value!r:.40}")
    try:
        dtype = np.dtype(value)
    except TypeError:
        raise WireError(f"{where}: unknown dtype {value!r}") from None
    if dtype.kind not in ALLOWED_DTYPE_KINDS:
        raise WireError(f"{where}: dtype {value!r} is not allowed (only bool, int, uint and float)")
    return dtype


def _array(obj: dict, where: str, max_bytes: int) -> np.ndarray:
    dtype = _dtype(obj.get(b"dtype"), where)
    shape = obj.get(b"shape")
    if (
        not isinstance(shape, list | tuple)
        or len(shape) > MAX_DIMS
        or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)
    ):
        raise WireError(f"{where}: shape must be a list of at most {MAX_DIMS} sizes >= 0, got {shape!r:.80}")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > max_bytes:
        raise WireError(
            f"{where}: array of shape {tuple(shape)} {dtype} needs {nbytes:,} bytes, above the limit of "
            f"{max_bytes:,} bytes"
        )
    data = obj.get(b"data")
    if not isinstance(data, bytes):
        raise WireError(f"{where}: array data must be bytes")
    if len(data) != nbytes:
        raise WireError(
            f"{where}: array of shape {tuple(shape)} {dtype} needs {nbytes:,} bytes, the message has {len(data):,}"
        )
    # A read-only view of the message's bytes: no copy.
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def _scalar(obj: dict, where: str) -> np.generic:
    dtype = _dtype(obj.get(b"dtype"), where)
    data = obj.get(b"data")
    if not isinstance(data, bool | int | float):
        raise WireError(f"{where}: numpy scalar data must be a number, got {type(data).__name__}")
    try:
        return dtype.type(data)
    except (OverflowError, ValueError) as exc:
        raise WireError(f"{where}: {data!r} does not fit dtype {dtype}: {exc}") from None


def _key(key: Any, where: str) -> str:
    if isinstance(key, bytes):
        return key.decode("utf-8", errors="replace")
    if isinstance(key, str):
        return key
    raise WireError(f"{where or 'the message'}: map keys must be strings, got {type(key).__name__}")


def _path(where: str, key: str) -> str:
    """The key path of an error (`robot_r1::proprio`), the client's key cut to `MAX_KEY_CHARS`."""
    key = clip(key, MAX_KEY_CHARS)
    return f"{where}::{key}" if where else key


def _decode(value: Any, where: str, max_bytes: int) -> Any:
    """Arrays and scalars decoded, maps and lists walked; `where` is the key path for errors."""
    if isinstance(value, dict):
        if value.get(b"__ndarray__") is True:
            return _array(value, where, max_bytes)
        if value.get(b"__npgeneric__") is True:
            return _scalar(value, where)
        decoded = {}
        for k, v in value.items():
            name = _key(k, where)
            decoded[name] = _decode(v, _path(where, name), max_bytes)
        return decoded
    if isinstance(value, list):
        return [_decode(v, f"{where}[{i}]", max_bytes) for i, v in enumerate(value)]
    return value


def unpack(frame: bytes, *, max_array_bytes: int) -> dict[str, Any]:
    """One binary frame as a message: a map with string keys, numpy arrays and scalars decoded.
    Errors name the key (`robot_r1::proprio: ...`)."""
    try:
        raw = msgpack.unpackb(frame, raw=False, strict_map_key=False)
    except (ValueError, msgpack.exceptions.UnpackException) as exc:
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise WireError(f"the frame is not one msgpack message ({detail})") from None
    if not isinstance(raw, dict) or raw.get(b"__ndarray__") is True or raw.get(b"__npgeneric__") is True:
        raise WireError(f"the message must be a msgpack map of keys to values, got {type(raw).__name__}")
    return _decode(raw, "", max_array_bytes)
