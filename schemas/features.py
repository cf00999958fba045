"""What a shard set's samples hold, as its manifest describes it: cameras, state, action, the
temporal weight, and the normaliser stats (with their values sidecars). Parts of `schemas.manifest.Manifest`.

Each part reads itself from the manifest's JSON with `from_json` (checking what `validate_manifest`
always checked, each problem named by its field path) and writes that JSON back with `to_json`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from schemas.fields import (
    ManifestError,
    extras_of,
    json_of,
    optional,
    require,
    require_count,
    require_int,
    require_object,
    require_set_name,
    require_strings,
    require_vector,
)
from schemas.r1pro import ACTION_KEY, DEFAULT_LAYOUT, STATE_KEY, LayoutError, StateLayout, layout_named
from schemas.splits import MAX_SHARD_BYTES

MAX_CAMERA_SIDE = 4096  # pixels: BEHAVIOR's cameras are at most 1280 px wide
STAT_KEYS = (STATE_KEY, ACTION_KEY)
NORMALISER_VECTORS = ("mean", "std", "min", "max", "q01", "q99")
STAT_VECTORS = (*NORMALISER_VECTORS, "sum", "sum_sq")  # sums: what merging sets exactly needs


@dataclass(frozen=True)
class CameraEntry:
    """A camera as stored: the source's video key and the stored image's size and encoding. The
    optional fields are absent (None) in sets written before they were recorded."""

    video_key: str
    height: int
    width: int
    encoding: str
    member: str | None = None  # e.g. "head.jpg"; `schemas.sample.image_member` derives it
    source_height: int | None = None
    source_width: int | None = None
    quality: int | None = None
    chroma_subsampling: str | None = None
    resize: str | None = None  # "none" or the resize method
    extras: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any, where: str) -> CameraEntry:
        require_object(data, where)
        video_key = require(data, "video_key", str, where)
        sides = {}
        for key in ("height", "width"):
            side = require(data, key, int, where)
            if not 0 < side <= MAX_CAMERA_SIDE:
                raise ManifestError(f"{where}.{key}: expected 1..{MAX_CAMERA_SIDE} pixels, got {side}")
            sides[key] = side
        return cls(
            video_key=video_key,
            encoding=require(data, "encoding", str, where),
            member=optional(data, "member", str, where),
            source_height=optional(data, "source_height", int, where),
            source_width=optional(data, "source_width", int, where),
            quality=optional(data, "quality", int, where),
            chroma_subsampling=optional(data, "chroma_subsampling", str, where),
            resize=optional(data, "resize", str, where),
            extras=extras_of(data, _fields_of(cls)),
            **sides,
        )

    def to_json(self) -> dict[str, Any]:
        return json_of({k: getattr(self, k) for k in _fields_of(type(self))}, self.extras)


@dataclass(frozen=True)
class StateEntry:
    """The stored state: a selection (`indices`, `names`) of the R1Pro state `layout` (sets written
    before layouts were recorded hold the 2025 one: `layout_name` None)."""

    preset: str
    indices: tuple[int, ...]
    names: tuple[str, ...]
    layout_name: str | None = None  # JSON `layout`
    source_dim: int | None = None
    not_standard_track: tuple[Any, ...] | None = None
    extras: Mapping[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return len(self.indices)

    @property
    def layout(self) -> StateLayout:
        """The R1Pro layout the indices refer to (the 2025 one when the set does not say)."""
        return layout_named(self.layout_name or DEFAULT_LAYOUT.name)

    @classmethod
    def from_json(cls, data: Any, where: str) -> StateEntry:
        preset = require(data, "preset", str, where)
        indices = require(data, "indices", list, where)
        names = require(data, "names", list, where)
        if len(names) != len(indices) or not indices:
            raise ManifestError(
                f"{where}: expected as many names as indices (>0), got {len(names)} and {len(indices)}"
            )
        layout_name = optional(data, "layout", str, where)
        try:
            layout = layout_named(layout_name or DEFAULT_LAYOUT.name)
        except LayoutError as exc:
            raise ManifestError(f"{where}.layout: {exc}") from None
        for i, index in enumerate(indices):
            if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < layout.dim:
                raise ManifestError(
                    f"{where}.indices[{i}]: expected an index into the {layout.describe()} state, got {index!r}"
                )
        track = optional(data, "not_standard_track", list, where)
        return cls(
            preset=preset,
            indices=tuple(indices),
            names=require_strings(data, "names", where),
            layout_name=layout_name,
            source_dim=optional(data, "source_dim", int, where),
            not_standard_track=None if track is None else tuple(track),
            extras=extras_of(data, (*_fields_of(cls), "layout")),
        )

    def to_json(self) -> dict[str, Any]:
        return json_of(
            {
                "preset": self.preset,
                "indices": list(self.indices),
                "names": list(self.names),
                "layout": self.layout_name,
                "source_dim": self.source_dim,
                "not_standard_track": None
                if self.not_standard_track is None
                else list(self.not_standard_track),
            },
            self.extras,
        )


@dataclass(frozen=True)
class ActionEntry:
    """The stored action: its dimension and one name per dimension."""

    dim: int
    names: tuple[str, ...]
    extras: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any, where: str) -> ActionEntry:
        dim = require(data, "dim", int, where)
        names = require(data, "names", list, where)
        if len(names) != dim:
            raise ManifestError(f"{where}.names: expected {dim} names")
        return cls(dim, tuple(names), extras_of(data, ("dim", "names")))

    def to_json(self) -> dict[str, Any]:
        return json_of({"dim": self.dim, "names": list(self.names)}, self.extras)


@dataclass(frozen=True)
class Temporal:
    """The temporal weight of each sample: `weight = 1 + alpha * progress**2`."""

    alpha: float
    formula: str | None = None
    extras: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any, where: str) -> Temporal:
        alpha = require(data, "alpha", (int, float), where)
        return cls(alpha, optional(data, "formula", str, where), extras_of(data, ("alpha", "formula")))

    def to_json(self) -> dict[str, Any]:
        return json_of({"alpha": self.alpha, "formula": self.formula}, self.extras)


@dataclass(frozen=True)
class Stats:
    """The normaliser stats of one feature over the train split: one value per dimension of each
    vector, and the frame `count` (the sums make merging sets exact)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    min: tuple[float, ...]
    max: tuple[float, ...]
    q01: tuple[float, ...]
    q99: tuple[float, ...]
    sum: tuple[float, ...]
    sum_sq: tuple[float, ...]
    count: int
    extras: Mapping[str, Any] = field(default_factory=dict)

    @property
    def vectors(self) -> dict[str, tuple[float, ...]]:
        """Every vector by its name (`STAT_VECTORS`)."""
        return {name: getattr(self, name) for name in STAT_VECTORS}

    def normaliser(self) -> dict[str, list[float]]:
        """mean, std, min, max, q01, q99: what lerobot's normaliser reads (`dataset_stats[key]`)."""
        return {name: list(getattr(self, name)) for name in NORMALISER_VECTORS}

    @classmethod
    def from_json(cls, data: Any, dim: int, where: str) -> Stats:
        require_object(data, where)
        vectors = {name: require_vector(data, name, dim, where) for name in STAT_VECTORS}
        count = require(data, "count", int, where)
        if count < 0:
            raise ManifestError(f"{where}.count: expected >= 0, got {count}")
        return cls(**vectors, count=count, extras=extras_of(data, (*STAT_VECTORS, "count")))

    def to_json(self) -> dict[str, Any]:
        vectors = {name: list(values) for name, values in self.vectors.items()}
        return json_of({**vectors, "count": self.count}, self.extras)


@dataclass(frozen=True)
class ManifestStats:
    """The stats of the state and of the action (JSON: keyed by feature key)."""

    state: Stats
    action: Stats
    extras: Mapping[str, Any] = field(default_factory=dict)

    def items(self) -> Iterator[tuple[str, Stats]]:
        """(feature key, its stats), state first."""
        yield STATE_KEY, self.state
        yield ACTION_KEY, self.action

    def of(self, key: str) -> Stats:
        """The stats of feature `key` (`STATE_KEY` or `ACTION_KEY`)."""
        return dict(self.items())[key]

    @classmethod
    def from_json(cls, data: Any, dims: Mapping[str, int], where: str) -> ManifestStats:
        state, action = (
            Stats.from_json(require(data, key, dict, where), dims[key], f"{where}.{key}") for key in STAT_KEYS
        )
        return cls(state, action, extras_of(data, STAT_KEYS))

    def to_json(self) -> dict[str, Any]:
        return json_of({key: stats.to_json() for key, stats in self.items()}, self.extras)


@dataclass(frozen=True)
class SidecarEntry:
    """A stats values sidecar (`stats/<key>.npy`, float64 [dims, count]): its file and, when recorded,
    the (episode, columns) of each episode in column order (what merging sets exactly needs)."""

    name: str
    bytes: int
    sha256: str
    shape: tuple[int, ...] | None = None
    dtype: str | None = None
    episodes: tuple[tuple[int, int], ...] | None = None
    extras: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any, where: str) -> SidecarEntry:
        name = require_set_name(require(data, "name", str, where), f"{where}.name")
        size = require_count(data, "bytes", where, most=MAX_SHARD_BYTES)  # what a reader of it reads at most
        shape = optional(data, "shape", list, where)
        episodes = optional(data, "episodes", list, where)
        return cls(
            name=name,
            bytes=size,
            sha256=require(data, "sha256", str, where),
            shape=None if shape is None else tuple(shape),
            dtype=optional(data, "dtype", str, where),
            episodes=None if episodes is None else _episode_columns(episodes, f"{where}.episodes"),
            extras=extras_of(data, _fields_of(cls)),
        )

    def to_json(self) -> dict[str, Any]:
        return json_of(
            {
                "name": self.name,
                "shape": None if self.shape is None else list(self.shape),
                "dtype": self.dtype,
                "bytes": self.bytes,
                "sha256": self.sha256,
                "episodes": None if self.episodes is None else [list(pair) for pair in self.episodes],
            },
            self.extras,
        )


def _episode_columns(pairs: list, where: str) -> tuple[tuple[int, int], ...]:
    out = []
    for i, pair in enumerate(pairs):
        if not isinstance(pair, list) or len(pair) != 2:
            raise ManifestError(f"{where}[{i}]: expected [episode, columns], got {pair!r:.60}")
        out.append((require_int(pair[0], f"{where}[{i}]"), require_int(pair[1], f"{where}[{i}]")))
    return tuple(out)


def _fields_of(cls: type) -> tuple[str, ...]:
    """The JSON keys a part models (its dataclass fields but `extras`)."""
    return tuple(name for name in cls.__dataclass_fields__ if name != "extras")
