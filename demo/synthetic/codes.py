"""Alignment codes of the synthetic datasets: exact ID-coded state/action values and RGB frame codes.

Tests prove with them that pixels, state and actions of one (episode, frame) went together:

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
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from schemas.r1pro import ACTION_DIM, LAYOUT_2025, LAYOUT_2026, STATE_DIM, StateLayout

CAM_REL_POSES_DIM = 21

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
    """float32 [N, 21] ``observation.cam_rel_poses`` (a smooth function of episode and frame, not a code)."""
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
        full = [layout for layout in (LAYOUT_2025, LAYOUT_2026) if layout.dim == values.size]
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


class FramePainter:
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
    return FramePainter(camera, height, width, seed).render(episode_index, frame_index)


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
    """float32 HxW depth in metres, only there to be ignored: a tilted plane whose ramp across x slides
    a pixel per frame. Every frame holds the same values, so lerobot's running stats of the depth
    video keep one range (a range that grows every frame re-bins its histograms: 3.5 vs 0.1 ms a
    64 px frame)."""
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    x = np.roll(np.linspace(0.0, 1.0, width, dtype=np.float32), frame_index + episode_index)[None, :]
    return (0.8 + 1.5 * y + 0.4 * x).astype(np.float32)
