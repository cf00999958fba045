"""Reading a manifest's JSON objects field by field, each problem named by its path
(`manifest.splits.train.shards[3].samples: expected 0..N`), and writing them back exactly.

The typed parts of the manifest (`schemas.manifest`, `schemas.features`, `schemas.splits`) read
their fields with these helpers. Keys a part does not know are kept as they are (`extras_of`), and so
are known optional keys written as JSON null, so that a set written by a newer or older tool is
written back byte for byte (`json_of`).
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from schemas.errors import B1kError


class ManifestError(B1kError, ValueError):
    """The manifest is missing, unreadable or does not follow schema v1."""


def require_object(obj: Any, where: str) -> dict:
    if not isinstance(obj, dict):
        raise ManifestError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _check_kind(value: Any, kind: type | tuple[type, ...], at: str) -> Any:
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ManifestError(f"{at}: expected {names}, got {type(value).__name__} {value!r:.60}")
    return value


def require(obj: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """`obj[key]`, which must be present and of `kind` (a bool is not an int here)."""
    require_object(obj, where)
    if key not in obj:
        raise ManifestError(f"{where}: missing key {key!r}")
    return _check_kind(obj[key], kind, f"{where}.{key}")


def optional(obj: dict, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """`obj[key]` if present and not null (then of `kind`), else None."""
    value = obj.get(key)
    return None if value is None else _check_kind(value, kind, f"{where}.{key}")


def require_number(value: Any, at: str) -> int | float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ManifestError(f"{at}: expected a finite number, got {value!r}")
    return value


def require_vector(obj: dict, key: str, dim: int, where: str) -> tuple[float, ...]:
    """`obj[key]`: `dim` finite numbers (kept as written: an int stays an int)."""
    values = require(obj, key, list, where)
    if len(values) != dim:
        raise ManifestError(f"{where}.{key}: expected {dim} values, got {len(values)}")
    return tuple(require_number(v, f"{where}.{key}[{i}]") for i, v in enumerate(values))


def require_count(obj: dict, key: str, where: str, most: int | None = None) -> int:
    value = require(obj, key, int, where)
    check_count(value, f"{where}.{key}", most)
    return value


def check_count(value: Any, at: str, most: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ManifestError(f"{at}: expected int, got {type(value).__name__} {value!r:.60}")
    if value < 0 or (most is not None and value > most):
        bound = f"0..{most}" if most is not None else ">= 0"
        raise ManifestError(f"{at}: expected {bound}, got {value}")
    return value


def require_int(value: Any, at: str, what: str = "an int") -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ManifestError(f"{at}: expected {what}, got {value!r:.60}")
    return value


def require_strings(obj: dict, key: str, where: str) -> tuple[str, ...]:
    values = require(obj, key, list, where)
    return tuple(_check_kind(v, str, f"{where}.{key}[{i}]") for i, v in enumerate(values))


def int_key(key: str, where: str) -> int:
    """A task or episode key: a decimal integer as JSON object keys spell them (`"7"`, `"-1"`; not `"07"`,
    which would not be found again by the integer it means)."""
    if not (key.isdigit() or (key.startswith("-") and key[1:].isdigit())) or str(int(key)) != key:
        raise ManifestError(f"{where}: expected an integer key, got {key!r:.60}")
    return int(key)


# A file name inside a set: plain relative path segments of letters, digits, `.`, `_`, `-` (no scheme,
# no `..`, no leading `-` or `.`, nothing a shell or a URL parser reads specially). Sets travel between
# people, and a name ends up in a path, a URL and possibly a `pipe:` command line.
_NAME_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,199}")
MAX_NAME_SEGMENTS = 8


def require_set_name(name: str, where: str) -> str:
    """`name` if it is a plain relative path inside the set; else a ManifestError naming the field."""
    segments = name.split("/")
    if len(segments) > MAX_NAME_SEGMENTS or not all(_NAME_SEGMENT.fullmatch(seg) for seg in segments):
        raise ManifestError(
            f"{where}: expected a path relative to the set's root: segments of letters, digits, '.', '_' and "
            f"'-', not starting with '.' or '-' (no scheme, '..', spaces or shell characters), got {name!r:.80}"
        )
    return name


def require_sha256(obj: dict, where: str) -> str:
    digest = require(obj, "sha256", str, where)
    if len(digest) != 64 or digest.strip("0123456789abcdef"):
        raise ManifestError(f"{where}.sha256: expected 64 hex characters, got {digest!r:.80}")
    return digest


def extras_of(obj: dict, known: Iterable[str]) -> dict[str, Any]:
    """What a part keeps as it is: the keys it does not model, and modelled keys written as null
    (absent and null read alike, as None, but a null is written back)."""
    known = set(known)
    return {k: copy.deepcopy(v) for k, v in obj.items() if k not in known or v is None}


def json_of(fields: Mapping[str, Any], extras: Mapping[str, Any]) -> dict[str, Any]:
    """A part's JSON object: its extras, then each field that is set (None: not written)."""
    out = copy.deepcopy(dict(extras))
    out.update((k, v) for k, v in fields.items() if v is not None)
    return out


def int_keyed(mapping: Mapping[int, Any] | None) -> dict[str, Any] | None:
    """{7: x} -> {"7": x}: JSON object keys are strings."""
    return None if mapping is None else {str(k): v for k, v in mapping.items()}


def json_depth(value: Any) -> int:
    """How deeply `value` nests lists and dicts (0 for a scalar), found without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is not None:
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in children)
    return deepest
