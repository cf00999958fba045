"""Synthetic BEHAVIOR (R1Pro) datasets in the real LeRobot on-disk layouts, for tests and the demo.

One builder, two on-disk layouts and two releases (see shared/BEHAVIOR.md):

* ``v2.1`` -- the 2025 BEHAVIOR challenge release: one parquet and one mp4 per camera per episode,
  "chunk" folders named per task (``data/task-0006/episode_00060010.parquet``,
  ``videos/task-0006/observation.images.rgb.head/episode_00060010.mp4``), ``chunks_size`` 10000 so
  that ``episode_chunk = episode_index // 10000`` is the task id, episode indices
  ``task_id * 10000 + 10 * n``, ``meta/episodes.jsonl``, ``meta/tasks.jsonl`` (``task_index`` is the
  BEHAVIOR task id), ``meta/episodes_stats.jsonl``; ``timestamp`` is float64 as in the release.
* ``v3.0`` -- lerobot 0.6.1's own layout: several episodes per parquet file and per mp4 file
  (per-episode encodes concatenated with lerobot's ``concatenate_video_files``, exactly as its
  writer does), ``meta/episodes/chunk-000/file-000.parquet`` with the per-episode file indices,
  frame ranges, per-video ``from_timestamp``/``to_timestamp`` and ``stats/*`` columns,
  ``meta/tasks.parquet``, ``meta/stats.json``; episode indices ``0..N-1`` and dense task indices,
  as lerobot requires. ``episodes_per_data_file`` / ``episodes_per_video_file`` split episodes over
  several files (at different boundaries) so that readers are tested on file boundaries.

Every layout carries the three RGB cameras as AV1 mp4 (libsvtav1, yuv420p, 30 fps, lerobot's
default encoder settings), a depth video ``observation.images.depth.head`` (12-bit HEVC as
lerobot's depth encoder writes it) that readers must ignore, ``observation.cam_rel_poses`` (and in
v2.1 ``observation.task_info``), a float32 state and a 23-dim float32 action. The ``release`` picks
the state: ``2025`` the 256-dim R1Pro layout (``schemas.r1pro.LAYOUT_2025``), ``2026`` the 61-dim
one (``LAYOUT_2026``, ``names`` null in info.json, LeRobot v3.0 only, as the 2026 release).

Alignment codes, so tests can prove that pixels, state and actions of one (episode, frame) went
together:

* Pixels: each RGB frame is a 5x5 grid of large grey blocks; each block's level (one of 4) carries 2
  bits of ``camera | frame << 2 | episode << 20 | crc10 << 40``, under a smooth moving texture and a
  per-camera tint that averages out. :func:`decode_frame_code` / :func:`decode_frame_id` read them
  back from a decoded, JPEG-compressed and/or resized frame (any size >= ~20 px).
* State/action: :func:`expected_state` / :func:`expected_action` are exact float32 functions of
  (episode_index, frame_index); every dim has its own fractional part ``(d + 1) / 512`` (so all dims
  differ) and an integer part that, depending on ``d % 4``, is the frame index, the episode index
  (low 15 bits / high bits) or a mix; any selection holding each residue class, such as the top32
  preset, recovers both (:func:`decode_state_id`). The codes are those of the 2025 (256-dim) layout;
  a 2026 (61-dim) state holds, in each dim, the code of the 2025 dim with the same name
  (``arm_left_qpos_0`` is dim 3 of 2026 and dim 158 of 2025), so the same quantity carries the same
  value on both releases and a top32 selection is the same 32 values on either.

Deterministic given the config (the seed picks the texture and tints); parquet/json files are
byte-for-byte reproducible, mp4 files decode to the same frames.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import av
import click
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from schemas.r1pro import ACTION_DIM, CAMERAS, FPS, LAYOUT_2025, LAYOUT_2026, STATE_DIM, StateLayout

log = logging.getLogger(__name__)

LAYOUTS = ("v3.0", "v2.1")
# BEHAVIOR Challenge release -> the state layout it records (and the on-disk layouts it ships in)
RELEASES: dict[str, StateLayout] = {"2025": LAYOUT_2025, "2026": LAYOUT_2026}
RELEASE_LAYOUTS: dict[str, tuple[str, ...]] = {"2025": LAYOUTS, "2026": ("v3.0",)}
RGB_KEYS: tuple[str, ...] = tuple(c.video_key for c in CAMERAS)  # head, left_wrist, right_wrist
HEAD_KEY, LEFT_WRIST_KEY, RIGHT_WRIST_KEY = RGB_KEYS
DEPTH_KEY = "observation.images.depth.head"
CAM_REL_POSES_KEY = "observation.cam_rel_poses"
TASK_INFO_KEY = "observation.task_info"
CAM_REL_POSES_DIM = 21
CAMERA_CODES: dict[str, int] = {HEAD_KEY: 0, LEFT_WRIST_KEY: 1, RIGHT_WRIST_KEY: 2}

# BEHAVIOR challenge task ids -> names (task 6 is the one BEHAVIOR.md pins down; the others are
# illustrative entries of the challenge list). Unknown ids get a generic name.
TASK_NAMES: dict[int, str] = {
    0: "turning_on_radio",
    1: "picking_up_trash",
    2: "putting_away_Halloween_decorations",
    3: "cleaning_up_plates_and_food",
    4: "can_meat",
    5: "setting_mousetraps",
    6: "hiding_Easter_eggs",
}

DEFAULT_LENGTHS: tuple[int, ...] = (40, 75, 90, 60)  # 40 < the default horizon 50
DEFAULT_TASKS: tuple[int, ...] = (1, 6, 6, 6)
V21_CHUNKS_SIZE = 10000  # BEHAVIOR: episode_chunk = episode_index // 10000 = task id
V21_DATA_PATH = "data/task-{episode_chunk:04d}/episode_{episode_index:08d}.parquet"
V21_VIDEO_PATH = "videos/task-{episode_chunk:04d}/{video_key}/episode_{episode_index:08d}.mp4"


def task_name(task_id: int) -> str:
    return TASK_NAMES.get(task_id, f"behavior_task_{task_id:02d}")


# ----------------------------------------------------------------------------------------------
# State / action codes
# ----------------------------------------------------------------------------------------------

_STATE_FRAC = (np.arange(STATE_DIM, dtype=np.float64) + 1.0) / 512.0  # 9 fractional bits, unique per dim
_ACTION_FRAC = (np.arange(ACTION_DIM, dtype=np.float64) + 1.0) / 64.0
_LOW = 32768  # integer parts stay below 2**15: 15 + 9 bits fit float32's 24-bit significand exactly


def code_dims(state_layout: StateLayout = LAYOUT_2025) -> np.ndarray:
    """For each dim of `state_layout`, the 2025-layout dim whose code it carries (same slice name
    and offset): identity on the 2025 layout."""
    if state_layout == LAYOUT_2025:
        return np.arange(STATE_DIM, dtype=np.int64)
    dims = [
        LAYOUT_2025.segment(segment.name).start + offset
        for segment in state_layout.segments
        for offset in range(segment.size)
    ]
    return np.asarray(dims, dtype=np.int64)


def expected_states(
    episode_index: int, frame_indices: Sequence[int] | np.ndarray, state_layout: StateLayout = LAYOUT_2025
) -> np.ndarray:
    """float32 [N, state_layout.dim] state of `episode_index` at `frame_indices` (exact; see the
    module doc).

    2025 dim d: ``(d + 1) / 512`` plus, by ``d % 4``: 0 -> frame, 1 -> episode % 32768,
    2 -> episode // 32768, 3 -> (frame * (d + 1) + episode) % 32768. Another layout's dim holds
    the value of the 2025 dim with its name (:func:`code_dims`).
    """
    if state_layout != LAYOUT_2025:
        return expected_states(episode_index, frame_indices)[:, code_dims(state_layout)]
    e = int(episode_index)
    f = np.asarray(frame_indices, dtype=np.int64).reshape(-1, 1)
    d = np.arange(STATE_DIM, dtype=np.int64).reshape(1, -1)
    kind = d % 4
    integer = np.where(
        kind == 0,
        f,
        np.where(kind == 1, e % _LOW, np.where(kind == 2, e // _LOW, (f * (d + 1) + e) % _LOW)),
    )
    return (integer.astype(np.float64) + _STATE_FRAC).astype(np.float32)


def expected_state(
    episode_index: int, frame_index: int, state_layout: StateLayout = LAYOUT_2025
) -> np.ndarray:
    """float32 [state_layout.dim] state of one frame (256 on the 2025 layout)."""
    return expected_states(episode_index, [frame_index], state_layout)[0]


def expected_actions(episode_index: int, frame_indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """float32 [N, 23] action of `episode_index` at `frame_indices` (exact).

    dim j: ``(j + 1) / 64`` plus, by ``j % 3``: 0 -> frame, 1 -> episode % 32768,
    2 -> (frame * (j + 1) + episode) % 32768.
    """
    e = int(episode_index)
    f = np.asarray(frame_indices, dtype=np.int64).reshape(-1, 1)
    j = np.arange(ACTION_DIM, dtype=np.int64).reshape(1, -1)
    kind = j % 3
    integer = np.where(kind == 0, f, np.where(kind == 1, e % _LOW, (f * (j + 1) + e) % _LOW))
    return (integer.astype(np.float64) + _ACTION_FRAC).astype(np.float32)


def expected_action(episode_index: int, frame_index: int) -> np.ndarray:
    """float32 [23] action of one frame."""
    return expected_actions(episode_index, [frame_index])[0]


def expected_cam_rel_poses(episode_index: int, frame_indices: Sequence[int] | np.ndarray) -> np.ndarray:
    f = np.asarray(frame_indices, dtype=np.float64).reshape(-1, 1)
    j = np.arange(CAM_REL_POSES_DIM, dtype=np.float64).reshape(1, -1)
    return ((j + 1) / 32.0 + f / 1024.0 + (episode_index % 7) / 8.0).astype(np.float32)


def decode_state_id(
    state: np.ndarray, indices: Sequence[int] | None = None, state_layout: StateLayout | None = None
) -> tuple[int, int]:
    """(episode_index, frame_index) from a state vector or a selection of its dims.

    `indices` are the source dims of `state`'s entries on `state_layout` (default: the 2025
    layout). Without `indices`: all dims when `state` has a layout's full size (256: 2025, 61:
    2026), the top32 preset when it has 32 (the same values on both layouts). The selection must
    hold codes with d % 4 in {0, 1, 2} (d: the 2025 dim, see :func:`code_dims`).
    """
    values = np.asarray(state, dtype=np.float64).reshape(-1)
    if state_layout is None:
        full = [layout for layout in RELEASES.values() if layout.dim == values.size]
        state_layout = full[0] if indices is None and full else LAYOUT_2025
    if indices is None:
        if values.size == state_layout.dim:
            indices = range(state_layout.dim)
        elif values.size == 32:
            from schemas.presets import preset_indices

            indices = preset_indices("top32", state_layout)
        else:
            raise ValueError(f"pass the source indices of a {values.size}-dim state selection")
    idx = code_dims(state_layout)[np.asarray(list(indices), dtype=np.int64)]
    integer = np.rint(values - _STATE_FRAC[idx]).astype(np.int64)
    by_kind = {}
    for k in (0, 1, 2):
        sel = integer[idx % 4 == k]
        if sel.size == 0:
            raise ValueError(f"the selection holds no state dim with d % 4 == {k}")
        if np.any(sel != sel[0]):
            raise ValueError(f"state dims with d % 4 == {k} disagree: {sorted(set(sel.tolist()))}")
        by_kind[k] = int(sel[0])
    return by_kind[1] + _LOW * by_kind[2], by_kind[0]


# ----------------------------------------------------------------------------------------------
# Pixel codes
# ----------------------------------------------------------------------------------------------

GRID = 5  # 5 x 5 blocks, 2 bits each = 50 bits
LEVELS = np.array([40.0, 100.0, 160.0, 220.0])
_CAMERA_BITS, _FRAME_BITS, _EPISODE_BITS, _CHECK_BITS = 2, 18, 20, 10
MAX_FRAME_INDEX = (1 << _FRAME_BITS) - 1
MAX_EPISODE_INDEX = (1 << _EPISODE_BITS) - 1
_TEXTURE_AMPLITUDE = 9.0
_TINT_AMPLITUDE = 10.0


@dataclass(frozen=True)
class FrameCode:
    episode_index: int
    frame_index: int
    camera: int  # CAMERA_CODES value: 0 head, 1 left wrist, 2 right wrist


def _check(episode_index: int, frame_index: int, camera: int) -> int:
    payload = f"{episode_index}:{frame_index}:{camera}".encode()
    return zlib.crc32(payload) & ((1 << _CHECK_BITS) - 1)


def _code_symbols(episode_index: int, frame_index: int, camera: int) -> np.ndarray:
    if not 0 <= frame_index <= MAX_FRAME_INDEX:
        raise ValueError(f"frame index {frame_index} does not fit the pixel code (max {MAX_FRAME_INDEX})")
    if not 0 <= episode_index <= MAX_EPISODE_INDEX:
        raise ValueError(
            f"episode index {episode_index} does not fit the pixel code (max {MAX_EPISODE_INDEX})"
        )
    value = (
        camera
        | frame_index << _CAMERA_BITS
        | episode_index << (_CAMERA_BITS + _FRAME_BITS)
        | _check(episode_index, frame_index, camera) << (_CAMERA_BITS + _FRAME_BITS + _EPISODE_BITS)
    )
    return np.array([(value >> (2 * k)) & 3 for k in range(GRID * GRID)], dtype=np.int64).reshape(GRID, GRID)


def code_tiles(height: int, width: int) -> int:
    """How many times the 5x5 code is tiled along each axis at this size: cells stay <= ~50 px.

    (Fast AV1 presets may leave a large flat cell at its previous level on an inter frame; smaller
    cells and a vote across tiles make the code robust at the real 720/480 sizes.)"""
    return max(1, math.ceil(min(height, width) / 250))


class _Painter:
    """Renders coded frames of one camera at one size (precomputes the per-pixel grids)."""

    def __init__(self, camera: int, height: int, width: int, seed: int):
        self.camera, self.height, self.width = camera, height, width
        rng = np.random.default_rng([seed, camera])
        cells = GRID * code_tiles(height, width)
        self.row_block = ((np.arange(height) * cells) // height) % GRID
        self.col_block = ((np.arange(width) * cells) // width) % GRID
        y = (np.arange(height, dtype=np.float64)[:, None] + 0.5) / height
        x = (np.arange(width, dtype=np.float64)[None, :] + 0.5) / width
        fx, fy = rng.uniform(0.8, 1.6, size=2)
        self.phase0 = rng.uniform(0, 2 * math.pi)
        self.wave_arg = 2 * math.pi * (fx * x + fy * y)  # smooth, < 2 cycles across the image
        self.wave_mod = np.cos(2 * math.pi * 0.7 * y) * np.cos(2 * math.pi * 0.5 * x)
        tint = rng.normal(size=3)
        tint -= tint.mean()  # averages out over channels: decoding uses the channel mean
        self.tint = _TINT_AMPLITUDE * tint / max(np.abs(tint).max(), 1e-9)

    def render(self, episode_index: int, frame_index: int) -> np.ndarray:
        symbols = _code_symbols(episode_index, frame_index, self.camera)
        base = LEVELS[symbols][self.row_block[:, None], self.col_block[None, :]]
        phase = self.phase0 + 2 * math.pi * frame_index / 45.0
        texture = _TEXTURE_AMPLITUDE * np.sin(self.wave_arg + phase) * (0.6 + 0.4 * self.wave_mod)
        image = base[:, :, None] + texture[:, :, None] + self.tint[None, None, :]
        return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def render_frame(
    episode_index: int, frame_index: int, camera: int, height: int, width: int, seed: int = 0
) -> np.ndarray:
    """The uint8 HxWx3 RGB frame the builder writes for (episode, frame, camera) before encoding."""
    return _Painter(camera, height, width, seed).render(episode_index, frame_index)


def _cell_levels(integral: np.ndarray, height: int, width: int, cells: int) -> np.ndarray:
    """Mean grey level of the central 40% x 40% of each cell of a cells x cells grid."""
    edges_y = np.arange(cells) * height / cells
    edges_x = np.arange(cells) * width / cells
    y0 = np.rint(edges_y + 0.3 * height / cells).astype(np.int64)
    y1 = np.maximum(np.rint(edges_y + 0.7 * height / cells).astype(np.int64), y0 + 1)
    x0 = np.rint(edges_x + 0.3 * width / cells).astype(np.int64)
    x1 = np.maximum(np.rint(edges_x + 0.7 * width / cells).astype(np.int64), x0 + 1)
    total = (
        integral[y1[:, None], x1[None, :]]
        - integral[y0[:, None], x1[None, :]]
        - integral[y1[:, None], x0[None, :]]
        + integral[y0[:, None], x0[None, :]]
    )
    return total / ((y1 - y0)[:, None] * (x1 - x0)[None, :])


def _unpack(symbols: np.ndarray) -> tuple[int, int, int, bool]:
    value = 0
    for k, s in enumerate(symbols.reshape(-1)):
        value |= int(s) << (2 * k)
    camera = value & ((1 << _CAMERA_BITS) - 1)
    frame_index = (value >> _CAMERA_BITS) & MAX_FRAME_INDEX
    episode_index = (value >> (_CAMERA_BITS + _FRAME_BITS)) & MAX_EPISODE_INDEX
    check = value >> (_CAMERA_BITS + _FRAME_BITS + _EPISODE_BITS)
    return episode_index, frame_index, camera, check == _check(episode_index, frame_index, camera)


def decode_frame_code(rgb: np.ndarray) -> FrameCode:
    """Read the (episode, frame, camera) code from a decoded RGB frame (HxWx3, uint8 or float in
    [0, 255]; float in [0, 1] and CHW layouts are accepted too). Survives AV1, JPEG and resizing
    while a code cell stays >= ~3 px (any size >= 20 px for sources up to 250 px; >= ~64 px for the
    720/480 ones). Raises ValueError when no tiling yields a code whose checksum matches."""
    image = np.asarray(rgb)
    if image.ndim == 3 and image.shape[0] in (1, 3) and image.shape[-1] not in (1, 3):
        image = np.moveaxis(image, 0, -1)  # CHW -> HWC
    image = image.astype(np.float64)
    if image.size and image.max() <= 1.0 + 1e-6:
        image = image * 255.0
    grey = image.mean(axis=2) if image.ndim == 3 else image
    height, width = grey.shape
    integral = np.zeros((height + 1, width + 1))
    integral[1:, 1:] = grey.cumsum(axis=0).cumsum(axis=1)
    best: tuple[float, FrameCode] | None = None
    read = None
    for tiles in range(1, 7):
        cells = GRID * tiles
        if min(height, width) < 2 * cells:
            break
        levels = _cell_levels(integral, height, width, cells)
        # (tiles, GRID, tiles, GRID) -> one 5x5 code per tile; vote with the median level per cell
        per_tile = levels.reshape(tiles, GRID, tiles, GRID).transpose(0, 2, 1, 3).reshape(-1, GRID, GRID)
        symbols = np.abs(np.median(per_tile, axis=0)[..., None] - LEVELS).argmin(axis=-1)
        # share of cell reads close to the voted level: ~1 for the right tiling, low for a wrong
        # one (its cells straddle the real cells), so a checksum passing by chance is not taken
        score = float((np.abs(per_tile - LEVELS[symbols][None]) < 30).mean())
        episode_index, frame_index, camera, ok = _unpack(symbols)
        read = read or (episode_index, frame_index, camera)
        if ok and score >= 0.6 and (best is None or score > best[0]):
            best = (score, FrameCode(episode_index, frame_index, camera))
    if best is None:
        raise ValueError(
            f"no valid frame code in this {height}x{width} image (untiled read: episode, frame, camera "
            f"= {read}; checksum mismatch)"
        )
    return best[1]


def decode_frame_id(rgb: np.ndarray) -> tuple[int, int]:
    """(episode_index, frame_index) encoded in a decoded RGB frame; see :func:`decode_frame_code`."""
    code = decode_frame_code(rgb)
    return code.episode_index, code.frame_index


def expected_depth(episode_index: int, frame_index: int, height: int, width: int) -> np.ndarray:
    """float32 HxW depth in metres (a tilted plane that moves): only there to be ignored."""
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    return (0.8 + 1.5 * y + 0.4 * x + 0.01 * ((frame_index + episode_index) % 30)).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Config and result
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticConfig:
    """What to build. Lengths and task ids are per episode (cycled when shorter than `episodes`)."""

    layout: str = "v3.0"  # "v3.0" or "v2.1"
    release: str = "2025"  # BEHAVIOR release whose state layout to write: "2025" (256 dims) or "2026" (61)
    episodes: int | None = None  # default: len(lengths)
    lengths: tuple[int, ...] = DEFAULT_LENGTHS  # frames per episode
    tasks: tuple[int, ...] = DEFAULT_TASKS  # BEHAVIOR task id per episode
    head_size: int = 64  # head camera height = width, px (real data: 720)
    wrist_size: int = 48  # wrist cameras height = width, px (real data: 480)
    depth: bool = True  # write the depth video (observation.images.depth.head) readers must ignore
    seed: int = 0
    fps: int = FPS
    # v3.0 only: episodes per data parquet / per mp4 file (0 = all in one file, like lerobot's
    # size-based rotation on a small dataset). Different values put boundaries at different episodes.
    episodes_per_data_file: int = 0
    episodes_per_video_file: int = 0
    chunks_size: int = 1000  # v3.0: files per chunk folder (lerobot's default 1000)
    crf: int = 30  # AV1 quality (lerobot default 30)
    gop: int = 2  # AV1 keyframe interval (lerobot default 2)
    # SVT-AV1 preset; None = lerobot's default 12 up to 256 px, 8 above: at preset 12 the inter frames
    # may leave a large flat region of these synthetic images at its previous level (seen at
    # 360-720 px), which would break the pixel code; preset 8 encodes them faithfully.
    preset: int | None = None

    def svt_preset(self) -> int:
        if self.preset is not None:
            return self.preset
        return 12 if max(self.head_size, self.wrist_size) <= 256 else 8

    workers: int = 0  # encoding threads over (episode, camera); 0 = min(4, cores)

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.release not in RELEASES:
            raise ValueError(f"release must be one of {tuple(RELEASES)}, got {self.release!r}")
        if self.layout not in RELEASE_LAYOUTS[self.release]:
            raise ValueError(
                f"the {self.release} release is LeRobot {' / '.join(RELEASE_LAYOUTS[self.release])} only, "
                f"not {self.layout} (use layout v3.0)"
            )
        if not self.lengths or any(int(n) < 1 for n in self.lengths):
            raise ValueError(f"episode lengths must be >= 1, got {self.lengths}")
        if not self.tasks or any(not 0 <= int(t) < 100 for t in self.tasks):
            raise ValueError(f"task ids must be in 0..99, got {self.tasks}")
        if self.episodes is not None and self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes}")
        if min(self.head_size, self.wrist_size) < 16:
            raise ValueError("camera sizes must be >= 16 px (the pixel code needs room)")
        if self.head_size % 2 or self.wrist_size % 2:
            raise ValueError("camera sizes must be even (yuv420p)")
        if self.episodes_per_data_file < 0 or self.episodes_per_video_file < 0:
            raise ValueError("episodes per file must be >= 0")

    @property
    def num_episodes(self) -> int:
        return self.episodes if self.episodes is not None else len(self.lengths)

    @property
    def state_layout(self) -> StateLayout:
        return RELEASES[self.release]

    def camera_sizes(self) -> dict[str, tuple[int, int]]:
        return {
            HEAD_KEY: (self.head_size, self.head_size),
            LEFT_WRIST_KEY: (self.wrist_size, self.wrist_size),
            RIGHT_WRIST_KEY: (self.wrist_size, self.wrist_size),
        }


@dataclass
class SyntheticEpisode:
    ordinal: int  # position in the dataset (0..N-1)
    episode_index: int  # as written in this dataset (v2.1: task*10000 + 10n; v3.0: ordinal)
    length: int
    task_id: int  # BEHAVIOR task id
    task_index: int  # as written in this dataset (v2.1: task id; v3.0: dense index)
    task: str
    dataset_from_index: int  # global `index` of the first frame
    data_file: str  # path relative to the root
    video_files: dict[str, str] = field(default_factory=dict)  # video key -> path relative to root
    from_timestamps: dict[str, float] = field(default_factory=dict)  # video key -> start in its file, s
    release: str = "2025"  # whose state layout `states()` is on

    @property
    def state_layout(self) -> StateLayout:
        return RELEASES[self.release]

    def states(self) -> np.ndarray:
        return expected_states(self.episode_index, np.arange(self.length), self.state_layout)

    def actions(self) -> np.ndarray:
        return expected_actions(self.episode_index, np.arange(self.length))


@dataclass
class SyntheticDatasetInfo:
    root: Path
    layout: str
    fps: int
    episodes: list[SyntheticEpisode]
    camera_sizes: dict[str, tuple[int, int]]  # rgb video key -> (height, width)
    depth_keys: list[str]
    tasks: dict[int, str]  # task_index (as written) -> task string
    config: SyntheticConfig

    @property
    def release(self) -> str:
        return self.config.release

    @property
    def state_layout(self) -> StateLayout:
        return self.config.state_layout

    @property
    def episode_indices(self) -> list[int]:
        return [e.episode_index for e in self.episodes]

    @property
    def lengths(self) -> list[int]:
        return [e.length for e in self.episodes]

    @property
    def total_frames(self) -> int:
        return sum(self.lengths)

    @property
    def rgb_keys(self) -> list[str]:
        return list(self.camera_sizes)

    def episode(self, episode_index: int) -> SyntheticEpisode:
        for e in self.episodes:
            if e.episode_index == episode_index:
                return e
        raise KeyError(f"no episode {episode_index} in {self.root}")

    def to_json(self) -> dict:
        return {
            "root": str(self.root),
            "layout": self.layout,
            "release": self.release,
            "state_dim": self.state_layout.dim,
            "fps": self.fps,
            "episodes": [asdict(e) for e in self.episodes],
            "camera_sizes": {k: list(v) for k, v in self.camera_sizes.items()},
            "depth_keys": self.depth_keys,
            "tasks": {str(k): v for k, v in self.tasks.items()},
            "total_frames": self.total_frames,
        }


# ----------------------------------------------------------------------------------------------
# Building
# ----------------------------------------------------------------------------------------------


def _plan(config: SyntheticConfig) -> list[SyntheticEpisode]:
    n = config.num_episodes
    lengths = [int(config.lengths[i % len(config.lengths)]) for i in range(n)]
    task_ids = [int(config.tasks[i % len(config.tasks)]) for i in range(n)]
    if config.layout == "v2.1":
        counters: dict[int, int] = {}
        indices = []
        for t in task_ids:
            k = counters.get(t, 0)
            counters[t] = k + 1
            if 10 * k >= V21_CHUNKS_SIZE:
                raise ValueError(f"too many episodes for task {t} (BEHAVIOR numbering allows 1000)")
            indices.append(t * V21_CHUNKS_SIZE + 10 * k)
        # the release lists episodes by episode index
        order = sorted(range(n), key=lambda i: indices[i])
        task_index = {t: t for t in task_ids}
    else:
        indices = list(range(n))
        order = list(range(n))
        task_index = {}
        for t in task_ids:
            task_index.setdefault(t, len(task_index))  # lerobot: dense, by first appearance
    episodes, start = [], 0
    for ordinal, i in enumerate(order):
        index = indices[i] if config.layout == "v2.1" else ordinal
        t = task_ids[i]
        episodes.append(
            SyntheticEpisode(
                ordinal=ordinal,
                episode_index=index,
                length=lengths[i],
                task_id=t,
                task_index=task_index[t],
                task=task_name(t),
                dataset_from_index=start,
                data_file="",
                release=config.release,
            )
        )
        start += lengths[i]
    return episodes


def _rgb_encoder(config: SyntheticConfig):
    from lerobot.configs.video import RGBEncoderConfig

    return RGBEncoderConfig(
        vcodec="libsvtav1", pix_fmt="yuv420p", g=config.gop, crf=config.crf, preset=config.svt_preset()
    )


def _depth_encoder():
    from lerobot.configs.video import DepthEncoderConfig

    # lerobot's depth defaults (HEVC Main 12, gray12le, lossless), with x265's console chatter off
    return DepthEncoderConfig(extra_options={"x265-params": "lossless=1:log-level=error"})


@contextlib.contextmanager
def _quiet_libav() -> Iterator[None]:
    """FFmpeg's own console messages (mp4 muxer notes) off while building; restored afterwards."""
    previous = av.logging.get_level()
    logger = logging.getLogger("libav")
    previous_py = logger.level
    av.logging.set_level(av.logging.ERROR)
    # lerobot's get_video_info re-installs FFmpeg's own printing callback: gate it at libav's level too
    av.logging.set_libav_level(av.logging.ERROR)
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        av.logging.set_libav_level(av.logging.INFO)  # FFmpeg's default
        av.logging.set_level(previous)
        logger.setLevel(previous_py)


def _encode_rgb(
    path: Path, painter: _Painter, episode_index: int, length: int, fps: int, encoder
) -> np.ndarray:
    """Write one episode of one camera; return lerobot-style sampled frames (N, 3, h, w) for stats."""
    from lerobot.datasets.compute_stats import auto_downsample_height_width, sample_indices

    sampled = set(sample_indices(length))
    samples = []
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(
            encoder.vcodec, fps, options=encoder.get_codec_options(1, as_strings=True)
        )
        stream.pix_fmt = encoder.pix_fmt
        stream.width, stream.height = painter.width, painter.height
        for i in range(length):
            rgb = painter.render(episode_index, i)
            if i in sampled:
                samples.append(auto_downsample_height_width(np.ascontiguousarray(rgb.transpose(2, 0, 1))))
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return np.stack(samples)


def _encode_depth(
    path: Path, episode_index: int, length: int, size: tuple[int, int], fps: int, encoder
) -> np.ndarray:
    from lerobot.datasets.compute_stats import sample_indices
    from lerobot.datasets.depth_utils import quantize_depth

    sampled = set(sample_indices(length))
    samples = []
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream(
            encoder.vcodec, fps, options=encoder.get_codec_options(1, as_strings=True)
        )
        stream.pix_fmt = encoder.pix_fmt
        stream.width, stream.height = width, height
        for i in range(length):
            depth = expected_depth(episode_index, i, height, width)
            if i in sampled:
                samples.append(depth[None])
            frame = quantize_depth(
                depth,
                depth_min=encoder.depth_min,
                depth_max=encoder.depth_max,
                shift=encoder.shift,
                use_log=encoder.use_log,
                pix_fmt=encoder.pix_fmt,
                video_backend="pyav",
            )
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return np.stack(samples)


def _basic_stats(values: np.ndarray, axis, keepdims: bool) -> dict:
    """min/max/mean/std/count as lerobot v2.1 stored them (no quantiles)."""
    values = np.asarray(values, dtype=np.float64)
    return {
        "min": values.min(axis=axis, keepdims=keepdims),
        "max": values.max(axis=axis, keepdims=keepdims),
        "mean": values.mean(axis=axis, keepdims=keepdims),
        "std": values.std(axis=axis, keepdims=keepdims),
        "count": np.array([values.shape[0]]),
    }


def _vector_stats(values: np.ndarray, quantiles: bool = True) -> dict:
    if not quantiles:
        return _basic_stats(values, 0, values.ndim == 1)
    from lerobot.datasets.compute_stats import get_feature_stats

    return get_feature_stats(values, axis=0, keepdims=values.ndim == 1)


def _image_stats(samples: np.ndarray, is_depth: bool, quantiles: bool = True) -> dict:
    if quantiles:
        from lerobot.datasets.compute_stats import get_feature_stats

        stats = get_feature_stats(samples, axis=(0, 2, 3), keepdims=True)
    else:
        stats = _basic_stats(samples, (0, 2, 3), True)
    factor = 1.0 if is_depth else 255.0
    return {k: v if k == "count" else np.squeeze(v / factor, axis=0) for k, v in stats.items()}


def _episode_columns(ep: SyntheticEpisode, fps: int, layout: str) -> dict[str, np.ndarray]:
    frames = np.arange(ep.length, dtype=np.int64)
    return {
        "observation.state": ep.states(),
        "action": ep.actions(),
        CAM_REL_POSES_KEY: expected_cam_rel_poses(ep.episode_index, frames),
        "timestamp": (frames / fps).astype(np.float64 if layout == "v2.1" else np.float32),
        "frame_index": frames,
        "episode_index": np.full(ep.length, ep.episode_index, dtype=np.int64),
        "index": ep.dataset_from_index + frames,
        "task_index": np.full(ep.length, ep.task_index, dtype=np.int64),
    }


def _numeric_stats(cols: dict[str, np.ndarray], quantiles: bool = True) -> dict[str, dict]:
    out = {}
    for key in (
        "observation.state",
        "action",
        CAM_REL_POSES_KEY,
        "timestamp",
        "frame_index",
        "episode_index",
        "index",
        "task_index",
    ):
        out[key] = _vector_stats(np.asarray(cols[key]), quantiles)
    return out


def _video_jobs(config: SyntheticConfig, episodes: list[SyntheticEpisode], workdir: Path):
    """(episode ordinal, key, temp path) for every video of every episode."""
    keys = [*RGB_KEYS, *([DEPTH_KEY] if config.depth else [])]
    return [
        (ep.ordinal, key, workdir / f"{ep.ordinal:05d}" / key / "episode.mp4")
        for ep in episodes
        for key in keys
    ]


def _encode_all(
    config: SyntheticConfig, episodes: list[SyntheticEpisode], jobs
) -> dict[tuple[int, str], np.ndarray]:
    """Encode every (episode, video key) to its path in parallel; return image stats samples."""
    sizes = config.camera_sizes()
    rgb_encoder, depth_encoder = _rgb_encoder(config), (_depth_encoder() if config.depth else None)
    painters = {key: _Painter(CAMERA_CODES[key], *sizes[key], seed=config.seed) for key in RGB_KEYS}

    def run(job):
        ordinal, key, path = job
        ep = episodes[ordinal]
        if key == DEPTH_KEY:
            return job[:2], _encode_depth(
                path, ep.episode_index, ep.length, sizes[HEAD_KEY], config.fps, depth_encoder
            )
        return job[:2], _encode_rgb(path, painters[key], ep.episode_index, ep.length, config.fps, rgb_encoder)

    workers = config.workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(pool.map(run, jobs))


def build_dataset(
    root: Path | str, config: SyntheticConfig | None = None, *, overwrite: bool = False
) -> SyntheticDatasetInfo:
    """Write a synthetic BEHAVIOR dataset under `root` (created; must be empty unless `overwrite`)."""
    config = config or SyntheticConfig()
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{root} is not empty (pass overwrite=True / --overwrite)")
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    episodes = _plan(config)
    with tempfile.TemporaryDirectory(prefix=".synthetic-", dir=root) as tmp:
        workdir = Path(tmp)
        jobs = _video_jobs(config, episodes, workdir)
        with _quiet_libav():
            samples = _encode_all(config, episodes, jobs)
        with _quiet_libav():
            if config.layout == "v2.1":
                _write_v21(root, config, episodes, jobs, samples)
            else:
                _write_v30(root, config, episodes, jobs, samples)
    tasks = {}
    for ep in episodes:
        tasks.setdefault(ep.task_index, ep.task)
    return SyntheticDatasetInfo(
        root=root,
        layout=config.layout,
        fps=config.fps,
        episodes=episodes,
        camera_sizes=config.camera_sizes(),
        depth_keys=[DEPTH_KEY] if config.depth else [],
        tasks=dict(sorted(tasks.items())),
        config=config,
    )


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=4, ensure_ascii=False) + "\n")


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


# -- v2.1 (BEHAVIOR 2025 release) ---------------------------------------------------------------


def _v21_video_feature(height: int, width: int, codec: str, pix_fmt: str, is_depth: bool) -> dict:
    return {
        "dtype": "video",
        "shape": [height, width, 3],
        "names": ["height", "width", "depth" if is_depth else "rgb"],
        "info": {
            "video.fps": float(FPS),
            "video.height": height,
            "video.width": width,
            "video.channels": 3,
            "video.codec": codec,
            "video.pix_fmt": pix_fmt,
            "video.is_depth_map": is_depth,
            "has_audio": False,
        },
    }


def _task_info_values(ep: SyntheticEpisode) -> list[list[float]]:
    width = 3 + ep.task_id % 4  # variable length, as the release's shape [null]
    return [[float(ep.episode_index % 97) + i / 4.0 + j for j in range(width)] for i in range(ep.length)]


def _write_v21(root, config, episodes, jobs, samples) -> None:
    sizes = config.camera_sizes()
    for ep in episodes:
        chunk = ep.episode_index // V21_CHUNKS_SIZE
        ep.data_file = V21_DATA_PATH.format(episode_chunk=chunk, episode_index=ep.episode_index)
        cols = _episode_columns(ep, config.fps, "v2.1")
        f32 = pa.float32()
        table = pa.table(
            {
                "observation.state": pa.array(list(cols["observation.state"]), type=pa.list_(f32)),
                CAM_REL_POSES_KEY: pa.array(list(cols[CAM_REL_POSES_KEY]), type=pa.list_(f32)),
                TASK_INFO_KEY: pa.array(_task_info_values(ep), type=pa.list_(f32)),
                "action": pa.array(list(cols["action"]), type=pa.list_(f32)),
                "timestamp": pa.array(cols["timestamp"], type=pa.float64()),
                "frame_index": pa.array(cols["frame_index"]),
                "episode_index": pa.array(cols["episode_index"]),
                "index": pa.array(cols["index"]),
                "task_index": pa.array(cols["task_index"]),
            }
        )
        path = root / ep.data_file
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
    for ordinal, key, tmp_path in jobs:
        ep = episodes[ordinal]
        rel = V21_VIDEO_PATH.format(
            episode_chunk=ep.episode_index // V21_CHUNKS_SIZE, video_key=key, episode_index=ep.episode_index
        )
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(tmp_path), str(root / rel))
        ep.video_files[key] = rel
        ep.from_timestamps[key] = 0.0

    features: dict[str, dict] = {}
    for key in RGB_KEYS:
        features[key] = _v21_video_feature(*sizes[key], codec="av1", pix_fmt="yuv420p", is_depth=False)
    if config.depth:
        enc = _depth_encoder()
        features[DEPTH_KEY] = _v21_video_feature(
            *sizes[HEAD_KEY], codec="hevc", pix_fmt=enc.pix_fmt, is_depth=True
        )
    features.update(
        {
            "action": {"dtype": "float32", "shape": [ACTION_DIM], "names": None},
            "timestamp": {"dtype": "float64", "shape": [1], "names": None},
            "frame_index": {"dtype": "int64", "shape": [1], "names": None},
            "episode_index": {"dtype": "int64", "shape": [1], "names": None},
            "index": {"dtype": "int64", "shape": [1], "names": None},
            "task_index": {"dtype": "int64", "shape": [1], "names": None},
            CAM_REL_POSES_KEY: {"dtype": "float32", "shape": [CAM_REL_POSES_DIM], "names": None},
            "observation.state": {"dtype": "float32", "shape": [config.state_layout.dim], "names": None},
            TASK_INFO_KEY: {"dtype": "float32", "shape": [None], "names": None},
        }
    )
    n_videos = len(RGB_KEYS) + (1 if config.depth else 0)
    info = {
        "codebase_version": "v2.1",
        "robot_type": "R1Pro",
        "total_episodes": len(episodes),
        "total_frames": sum(e.length for e in episodes),
        "total_tasks": len({e.task_index for e in episodes}),
        "total_videos": len(episodes) * n_videos,
        "chunks_size": V21_CHUNKS_SIZE,
        "fps": config.fps,
        "splits": {"train": f"0:{len(episodes)}"},
        "data_path": V21_DATA_PATH,
        "video_path": V21_VIDEO_PATH,
        "features": features,
    }
    _write_json(root / "meta" / "info.json", info)
    _write_jsonl(
        root / "meta" / "episodes.jsonl",
        [{"episode_index": e.episode_index, "tasks": [e.task], "length": e.length} for e in episodes],
    )
    tasks = sorted({(e.task_index, e.task) for e in episodes})
    _write_jsonl(root / "meta" / "tasks.jsonl", [{"task_index": i, "task": t} for i, t in tasks])
    rows = []
    for ep in episodes:
        stats = _numeric_stats(_episode_columns(ep, config.fps, "v2.1"), quantiles=False)
        for key in features:
            if (ep.ordinal, key) in samples:
                stats[key] = _image_stats(samples[(ep.ordinal, key)], key == DEPTH_KEY, quantiles=False)
        rows.append(
            {
                "episode_index": ep.episode_index,
                "stats": {
                    key: {
                        s: np.asarray(v).tolist()
                        for s, v in st.items()
                        if s in ("min", "max", "mean", "std", "count")
                    }
                    for key, st in stats.items()
                },
            }
        )
    _write_jsonl(root / "meta" / "episodes_stats.jsonl", rows)


# -- v3.0 (lerobot 0.6.1) -----------------------------------------------------------------------


def _file_groups(n: int, per_file: int) -> list[list[int]]:
    per_file = per_file or n
    return [list(range(i, min(i + per_file, n))) for i in range(0, n, per_file)]


def _chunk_file(file_number: int, chunks_size: int) -> tuple[int, int]:
    return file_number // chunks_size, file_number % chunks_size


def _write_v30(root, config, episodes, jobs, samples) -> None:
    import datasets
    import pandas as pd
    from lerobot.datasets.compute_stats import aggregate_stats
    from lerobot.datasets.feature_utils import get_hf_features_from_features
    from lerobot.datasets.io_utils import write_info, write_stats
    from lerobot.datasets.utils import (
        DEFAULT_DATA_PATH,
        DEFAULT_EPISODES_PATH,
        DEFAULT_TASKS_PATH,
        DEFAULT_VIDEO_PATH,
        DatasetInfo,
        flatten_dict,
    )
    from lerobot.datasets.video_utils import concatenate_video_files, get_video_duration_in_s, get_video_info

    sizes = config.camera_sizes()
    video_keys = [*RGB_KEYS, *([DEPTH_KEY] if config.depth else [])]
    features: dict[str, dict] = {
        "observation.state": {"dtype": "float32", "shape": (config.state_layout.dim,), "names": None},
        "action": {"dtype": "float32", "shape": (ACTION_DIM,), "names": None},
        CAM_REL_POSES_KEY: {"dtype": "float32", "shape": (CAM_REL_POSES_DIM,), "names": None},
    }
    for key in RGB_KEYS:
        h, w = sizes[key]
        features[key] = {"dtype": "video", "shape": (h, w, 3), "names": ["height", "width", "channels"]}
    if config.depth:
        h, w = sizes[HEAD_KEY]
        features[DEPTH_KEY] = {"dtype": "video", "shape": (h, w, 1), "names": ["height", "width", "channels"]}
    features.update(
        {
            "timestamp": {"dtype": "float32", "shape": (1,), "names": None},
            "frame_index": {"dtype": "int64", "shape": (1,), "names": None},
            "episode_index": {"dtype": "int64", "shape": (1,), "names": None},
            "index": {"dtype": "int64", "shape": (1,), "names": None},
            "task_index": {"dtype": "int64", "shape": (1,), "names": None},
        }
    )
    n = len(episodes)
    meta_rows: list[dict] = [
        {"episode_index": ep.episode_index, "tasks": [ep.task], "length": ep.length} for ep in episodes
    ]

    # data: several episodes per parquet file, one row group per episode (as lerobot's writer)
    hf_features = get_hf_features_from_features(features)
    for file_number, group in enumerate(_file_groups(n, config.episodes_per_data_file)):
        chunk_idx, file_idx = _chunk_file(file_number, config.chunks_size)
        rel = DEFAULT_DATA_PATH.format(chunk_index=chunk_idx, file_index=file_idx)
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = None
        try:
            for i in group:
                ep = episodes[i]
                cols = _episode_columns(ep, config.fps, "v3.0")
                ds = datasets.Dataset.from_dict(
                    {k: list(cols[k]) if cols[k].ndim > 1 else cols[k] for k in hf_features},
                    features=hf_features,
                    split="train",
                )
                table = ds.with_format("arrow")[:]
                if writer is None:
                    writer = pq.ParquetWriter(
                        path, schema=table.schema, compression="snappy", use_dictionary=True
                    )
                writer.write_table(table)
                ep.data_file = rel
                meta_rows[i].update(
                    {
                        "data/chunk_index": chunk_idx,
                        "data/file_index": file_idx,
                        "dataset_from_index": ep.dataset_from_index,
                        "dataset_to_index": ep.dataset_from_index + ep.length,
                    }
                )
        finally:
            if writer is not None:
                writer.close()

    # videos: per-episode encodes concatenated (stream copy) into files, as lerobot's writer does
    tmp_paths = {(o, k): p for o, k, p in jobs}
    rgb_encoder, depth_encoder = _rgb_encoder(config), (_depth_encoder() if config.depth else None)
    for key in video_keys:
        for file_number, group in enumerate(_file_groups(n, config.episodes_per_video_file)):
            chunk_idx, file_idx = _chunk_file(file_number, config.chunks_size)
            rel = DEFAULT_VIDEO_PATH.format(video_key=key, chunk_index=chunk_idx, file_index=file_idx)
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            start = 0.0
            for i in group:
                duration = get_video_duration_in_s(tmp_paths[(i, key)])
                ep = episodes[i]
                ep.video_files[key] = rel
                ep.from_timestamps[key] = start
                meta_rows[i].update(
                    {
                        f"videos/{key}/chunk_index": chunk_idx,
                        f"videos/{key}/file_index": file_idx,
                        f"videos/{key}/from_timestamp": start,
                        f"videos/{key}/to_timestamp": start + duration,
                    }
                )
                start += duration
            sources = [tmp_paths[(i, key)] for i in group]
            if len(sources) == 1:
                shutil.move(str(sources[0]), str(path))
            else:
                concatenate_video_files(sources, path)
        encoder = depth_encoder if key == DEPTH_KEY else rgb_encoder
        first = root / DEFAULT_VIDEO_PATH.format(video_key=key, chunk_index=0, file_index=0)
        info = get_video_info(first, video_encoder=encoder)
        # lerobot's writer records the unit of depth frames it was given (float metres here)
        features[key]["info"] = {"depth_unit": "m", **info} if key == DEPTH_KEY else info

    # per-episode stats (lerobot's functions), episodes meta, aggregated stats
    episode_stats = []
    for i, ep in enumerate(episodes):
        stats = _numeric_stats(_episode_columns(ep, config.fps, "v3.0"))
        for key in video_keys:
            stats[key] = _image_stats(samples[(ep.ordinal, key)], is_depth=key == DEPTH_KEY)
        stats = {k: stats[k] for k in features if k in stats}
        episode_stats.append(stats)
        meta_rows[i].update(
            {
                k: (v.tolist() if isinstance(v, np.ndarray) else v)
                for k, v in flatten_dict({"stats": stats}).items()
            }
        )
        meta_rows[i].update({"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0})
    episodes_path = root / DEFAULT_EPISODES_PATH.format(chunk_index=0, file_index=0)
    episodes_path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(meta_rows)
    pq.write_table(table, episodes_path, compression="snappy")

    tasks: dict[str, int] = {}
    for ep in episodes:
        tasks.setdefault(ep.task, ep.task_index)
    tasks_df = pd.DataFrame({"task_index": list(tasks.values())}, index=pd.Index(list(tasks), name="task"))
    (root / DEFAULT_TASKS_PATH).parent.mkdir(parents=True, exist_ok=True)
    tasks_df.to_parquet(root / DEFAULT_TASKS_PATH)

    write_stats(aggregate_stats(episode_stats), root)
    info = DatasetInfo(
        codebase_version="v3.0",
        fps=config.fps,
        features=features,
        total_episodes=n,
        total_frames=sum(e.length for e in episodes),
        total_tasks=len(tasks),
        chunks_size=config.chunks_size,
        robot_type="R1Pro",
        splits={"train": f"0:{n}"},
    )
    write_info(info, root)


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def _int_list(ctx, param, value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        items = tuple(int(v) for v in value.replace(" ", "").split(",") if v)
    except ValueError as err:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from err
    if not items:
        raise click.BadParameter("expected at least one integer")
    return items


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option(
    "--output-dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Dataset root to create (must be empty unless --overwrite).",
)
@click.option(
    "--layout",
    type=click.Choice(LAYOUTS),
    default="v3.0",
    help="On-disk layout: lerobot v3.0 (several episodes per file) or BEHAVIOR's v2.1 release (task-NNNN folders).",
)
@click.option(
    "--release",
    type=click.Choice(tuple(RELEASES)),
    default="2025",
    help="BEHAVIOR release whose R1Pro state to write: 2025 (256 dims) or 2026 (61 dims, names null; v3.0 only).",
)
@click.option(
    "--episodes",
    type=click.IntRange(min=1),
    default=None,
    help="Number of episodes [default: one per --lengths entry]; lengths and tasks are cycled.",
)
@click.option(
    "--lengths",
    callback=_int_list,
    default=",".join(map(str, DEFAULT_LENGTHS)),
    help="Episode lengths in frames (at --fps), comma-separated.",
)
@click.option(
    "--tasks",
    callback=_int_list,
    default=",".join(map(str, DEFAULT_TASKS)),
    help="BEHAVIOR task id of each episode, comma-separated (6 = hiding_Easter_eggs).",
)
@click.option(
    "--head-size",
    type=click.IntRange(min=16),
    default=64,
    help="Head camera height and width in px (real data: 720).",
)
@click.option(
    "--wrist-size",
    type=click.IntRange(min=16),
    default=48,
    help="Wrist cameras height and width in px (real data: 480).",
)
@click.option(
    "--full-size",
    is_flag=True,
    help="Real BEHAVIOR camera sizes (head 720, wrists 480); overrides --head-size/--wrist-size.",
)
@click.option(
    "--depth/--no-depth",
    default=True,
    help="Also write the depth video observation.images.depth.head (readers must ignore it).",
)
@click.option(
    "--episodes-per-data-file",
    type=click.IntRange(min=0),
    default=0,
    help="v3.0: episodes per data parquet file (0 = all in one).",
)
@click.option(
    "--episodes-per-video-file",
    type=click.IntRange(min=0),
    default=0,
    help="v3.0: episodes per mp4 file per camera (0 = all in one).",
)
@click.option("--fps", type=click.IntRange(min=1), default=FPS, help="Frames per second.")
@click.option(
    "--crf", type=click.IntRange(min=0, max=63), default=30, help="AV1 CRF quality (lower = better, bigger)."
)
@click.option("--seed", type=int, default=0, help="Seed of the image texture and tints.")
@click.option(
    "--workers", type=click.IntRange(min=0), default=0, help="Encoding threads (0 = min(4, cores))."
)
@click.option("--overwrite", is_flag=True, help="Replace a non-empty --output-dir.")
def main(
    output_dir,
    layout,
    release,
    episodes,
    lengths,
    tasks,
    head_size,
    wrist_size,
    full_size,
    depth,
    episodes_per_data_file,
    episodes_per_video_file,
    fps,
    crf,
    seed,
    workers,
    overwrite,
):
    """Write a small but faithful synthetic BEHAVIOR (R1Pro) LeRobot dataset.

    R1Pro state of the 2025 (256 dims) or 2026 (61 dims) release, 23-dim action, three RGB cameras as
    AV1 mp4, a depth video, several tasks and episode lengths; pixels and state/action values encode (episode, frame) so that readers can be
    checked for alignment (see preprocess/synthetic.py).
    """
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1: errors only on the console
    if full_size:
        head_size, wrist_size = 720, 480
    try:
        config = SyntheticConfig(
            layout=layout,
            release=release,
            episodes=episodes,
            lengths=lengths,
            tasks=tasks,
            head_size=head_size,
            wrist_size=wrist_size,
            depth=depth,
            seed=seed,
            fps=fps,
            episodes_per_data_file=episodes_per_data_file,
            episodes_per_video_file=episodes_per_video_file,
            crf=crf,
            workers=workers,
        )
        info = build_dataset(output_dir, config, overwrite=overwrite)
    except (ValueError, FileExistsError) as err:
        raise click.ClickException(str(err)) from err
    click.echo(
        f"wrote {info.layout} dataset ({info.release} release, {info.state_layout.dim}-dim state) to {info.root}: "
        f"{len(info.episodes)} episodes "
        f"({', '.join(f'{e.episode_index}:{e.length}' for e in info.episodes)}), {info.total_frames} frames, "
        f"tasks {info.tasks}, cameras {', '.join(f'{k} {h}x{w}' for k, (h, w) in info.camera_sizes.items())}"
        + (f", depth {DEPTH_KEY}" if info.depth_keys else "")
    )


__all__ = [
    "CAMERA_CODES",
    "DEPTH_KEY",
    "RELEASES",
    "RGB_KEYS",
    "FrameCode",
    "SyntheticConfig",
    "SyntheticDatasetInfo",
    "SyntheticEpisode",
    "build_dataset",
    "code_dims",
    "decode_frame_code",
    "decode_frame_id",
    "decode_state_id",
    "expected_action",
    "expected_actions",
    "expected_state",
    "expected_states",
    "render_frame",
]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
