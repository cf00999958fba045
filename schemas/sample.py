"""Shard sample schema v1: one frame (one observation) with everything a training step needs."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

SCHEMA_VERSION = 1

STATE_MEMBER = "state.npy"
ACTION_MEMBER = "action.npy"
ACTION_IS_PAD_MEMBER = "action_is_pad.npy"
JSON_MEMBER = "json"

JSON_FIELDS: dict[str, type | tuple[type, ...]] = {
    "episode_index": int,
    "frame_index": int,
    "episode_length": int,
    "timestamp": (int, float),
    "progress": (int, float),
    "weight": (int, float),
    "task_index": int,
    "task": str,
}

# Fields a sample's json may carry: absent in sets written before they existed, so a reader takes
# absence as "unknown" (None), never as an error.
OPTIONAL_JSON_FIELDS: dict[str, type | tuple[type, ...]] = {
    "skill": (str, type(None)),  # the annotated skill covering the frame; None where none covers it
}

IMAGE_EXTENSIONS = {"jpeg": "jpg", "png": "png"}

_KEY_RE = re.compile(r"^e(\d{8})_f(\d{6})$")

TEMPORAL_FORMULA = "weight = 1 + alpha * progress**2, progress = frame_index / (episode_length - 1)"


def sample_key(episode_index: int, frame_index: int) -> str:
    return f"e{episode_index:08d}_f{frame_index:06d}"


def parse_sample_key(key: str) -> tuple[int, int]:
    """(episode_index, frame_index) from a `__key__`."""
    match = _KEY_RE.match(key)
    if not match:
        raise ValueError(f"sample key {key!r} does not match e<8 digits>_f<6 digits>")
    return int(match.group(1)), int(match.group(2))


def image_member(camera: str, encoding: str = "jpeg") -> str:
    """Member name of a camera's image: `head.jpg` for JPEG."""
    try:
        return f"{camera}.{IMAGE_EXTENSIONS[encoding]}"
    except KeyError:
        raise ValueError(
            f"unknown image encoding {encoding!r}; expected one of {sorted(IMAGE_EXTENSIONS)}"
        ) from None


def progress(frame_index: int | np.ndarray, episode_length: int) -> float | np.ndarray:
    """Position in the episode, 0 at the first frame and 1 at the last (0 for one-frame episodes)."""
    if episode_length <= 1:
        return np.zeros_like(frame_index, dtype=np.float64) if isinstance(frame_index, np.ndarray) else 0.0
    return frame_index / (episode_length - 1)


def temporal_weight(progress_value: float | np.ndarray, alpha: float) -> float | np.ndarray:
    """1 + alpha * progress^2: emphasises the hard pick/place end of each episode."""
    return 1.0 + alpha * progress_value**2


def member_names(cameras: list[str], encoding: str = "jpeg") -> list[str]:
    """Every member a v1 sample must carry (besides `__key__`)."""
    return [
        *(image_member(c, encoding) for c in cameras),
        STATE_MEMBER,
        ACTION_MEMBER,
        ACTION_IS_PAD_MEMBER,
        JSON_MEMBER,
    ]


def sample_problems(sample: dict[str, Any], state_dim: int, action_dim: int, horizon: int) -> list[str]:
    """What is wrong with a decoded sample (arrays and the json dict); empty when it is valid."""
    problems = []
    expected = {
        STATE_MEMBER: ((state_dim,), np.float32),
        ACTION_MEMBER: ((horizon, action_dim), np.float32),
        ACTION_IS_PAD_MEMBER: ((horizon,), np.bool_),
    }
    for member, (shape, dtype) in expected.items():
        value = sample.get(member)
        if value is None:
            problems.append(f"missing member {member}")
        elif not isinstance(value, np.ndarray) or value.shape != shape or value.dtype != dtype:
            got = f"{getattr(value, 'dtype', type(value).__name__)}{list(getattr(value, 'shape', []))}"
            problems.append(f"{member}: expected {np.dtype(dtype).name}{list(shape)}, got {got}")
    meta = sample.get(JSON_MEMBER)
    if not isinstance(meta, dict):
        problems.append(f"missing or invalid member {JSON_MEMBER}")
    else:
        for name, kind in JSON_FIELDS.items():
            if name not in meta:
                problems.append(f"json: missing field {name!r}")
            elif not isinstance(meta[name], kind) or isinstance(meta[name], bool):
                problems.append(f"json: field {name!r} has type {type(meta[name]).__name__}")
        for name, kind in OPTIONAL_JSON_FIELDS.items():
            if name in meta and not isinstance(meta[name], kind):
                problems.append(f"json: field {name!r} has type {type(meta[name]).__name__}")
    return problems
