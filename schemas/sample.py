"""Shard sample schema v1: one frame (one observation) with everything a training step needs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from schemas.errors import B1kError

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
    return problems + json_problems(sample.get(JSON_MEMBER))


def json_problems(meta: Any) -> list[str]:
    """What is wrong with a sample's decoded `json` member; empty when it is valid."""
    if not isinstance(meta, dict):
        return [f"missing or invalid member {JSON_MEMBER}"]
    problems = []
    for name, kind in JSON_FIELDS.items():
        if name not in meta:
            problems.append(f"json: missing field {name!r}")
        elif not isinstance(meta[name], kind) or isinstance(meta[name], bool):
            problems.append(f"json: field {name!r} has type {type(meta[name]).__name__}")
    for name, kind in OPTIONAL_JSON_FIELDS.items():
        if name in meta and not isinstance(meta[name], kind):
            problems.append(f"json: field {name!r} has type {type(meta[name]).__name__}")
    return problems


class SampleJsonError(B1kError, ValueError):
    """A sample's `json` member is not what schema v1 says (the message lists each problem)."""


@dataclass(frozen=True)
class SampleMeta:
    """A sample's `json` member: which frame of which episode it is, its temporal weight and its task.

    Written by b1k-preprocess (`to_json`, encoded by `shards.codec.encode_sample`); read with `from_json`,
    which checks what `json_problems` checks. Hot loops that need one field of many samples (the trainer's
    stream) may read that field alone, after the shard was verified."""

    episode_index: int
    frame_index: int
    episode_length: int
    timestamp: float  # seconds, the source's
    progress: float  # frame_index / (episode_length - 1), 0 for one-frame episodes
    weight: float  # 1 + alpha * progress**2 (`TEMPORAL_FORMULA`)
    task_index: int  # the evaluator's task id (-1: the frame's task is unknown)
    task: str  # the prompt trained on
    skill: str | None = None  # the annotated skill covering the frame; None where none covers it
    skill_recorded: bool = True  # False: a set written before skills, whose json has no `skill` field

    @classmethod
    def from_json(cls, meta: Any) -> SampleMeta:
        problems = json_problems(meta)
        if problems:
            raise SampleJsonError("; ".join(problems))
        fields = {name: meta[name] for name in JSON_FIELDS}
        return cls(**fields, skill=meta.get("skill"), skill_recorded="skill" in meta)

    def to_json(self) -> dict[str, Any]:
        """The member's fields (`encode_sample` writes them with sorted keys)."""
        return {
            "episode_index": self.episode_index,
            "frame_index": self.frame_index,
            "episode_length": self.episode_length,
            "timestamp": self.timestamp,
            "progress": self.progress,
            "weight": self.weight,
            "task_index": self.task_index,
            "task": self.task,
            **({"skill": self.skill} if self.skill_recorded else {}),
        }
