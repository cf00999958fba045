"""Error tallies: sums of |error| and error^2 per cell (overall, action group, progress bin, chunk step,
task, skill; `tally_chunks`, `tally_actions`) and the report's breakdowns built from them (`breakdown`)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from deploy.eval.frames import Frame
from schemas.r1pro import ACTION_SEGMENTS


class Tally:
    """Sums of |error|, error^2, values and frames per named cell, in float64, in a fixed order."""

    def __init__(self) -> None:
        self.cells: dict[object, np.ndarray] = {}

    def add(self, name: object, abs_sum: float, sq_sum: float, values: float, frames: float) -> None:
        cell = self.cells.setdefault(name, np.zeros(4, np.float64))
        cell += (abs_sum, sq_sum, values, frames)

    def row(self, name: object) -> dict:
        abs_sum, sq_sum, values, frames = self.cells.get(name, np.zeros(4))
        return {
            "frames": int(frames),
            "mae": float(abs_sum / values) if values else None,
            "rmse": float(math.sqrt(sq_sum / values)) if values else None,
        }


def tally_chunks(
    tally: Tally, error: np.ndarray, valid: np.ndarray, frames: Sequence[Frame], bins: int, prefix: str = ""
) -> None:
    """Add a batch of chunk errors (B, C, A) with their valid steps (B, C) to every breakdown."""
    error = error.astype(np.float64) * valid[..., None]
    absolute, square = np.abs(error), error**2
    for b, frame in enumerate(frames):
        steps = float(valid[b].sum())
        cell = (absolute[b].sum(), square[b].sum(), steps * error.shape[2], 1)
        bin_ = min(int(frame.progress * bins), bins - 1)
        tally.add((prefix, "overall"), *cell)
        tally.add((prefix, "bin", bin_), *cell)
        tally.add((prefix, "task", frame.task_index, frame.task), *cell)
        tally.add((prefix, "skill", frame.skill), *cell)
        for segment in ACTION_SEGMENTS:
            sl = slice(segment.start, segment.stop)
            group = (absolute[b, :, sl].sum(), square[b, :, sl].sum(), steps * segment.size, 1)
            tally.add((prefix, "group", segment.name), *group)
            tally.add((prefix, "bin-group", bin_, segment.name), *group)
        for s in np.flatnonzero(valid[b]):
            tally.add((prefix, "step", int(s)), absolute[b, s].sum(), square[b, s].sum(), error.shape[2], 1)


def breakdown(tally: Tally, bins: int, chunk: int, prefix: str = "") -> dict:
    """The report's breakdowns from a tally (`tally_chunks`)."""
    groups = [s.name for s in ACTION_SEGMENTS]
    tasks = sorted(k[2:] for k in tally.cells if k[:2] == (prefix, "task"))
    return {
        "frames": tally.row((prefix, "overall"))["frames"],
        "overall": _error(tally.row((prefix, "overall"))),
        "by_group": {g: tally.row((prefix, "group", g)) for g in groups},
        "by_progress": [
            {
                "lo": i / bins,
                "hi": (i + 1) / bins,
                **tally.row((prefix, "bin", i)),
                "by_group": {g: _error(tally.row((prefix, "bin-group", i, g))) for g in groups},
            }
            for i in range(bins)
        ],
        "by_step": [{"step": s, **tally.row((prefix, "step", s))} for s in range(chunk)],
        "by_task": [
            {"task_index": t, "task": name, **tally.row((prefix, "task", t, name))} for t, name in tasks
        ],
        "by_skill": by_skill(tally, prefix),
    }


def by_skill(tally: Tally, prefix: str = "") -> list[dict]:
    """One row per skill (`skill` None: frames no annotation covers, or a set without skills), the most
    frames first, then by name, the unannotated frames last: the same order for every checkpoint of a
    report, since they see the same frames."""
    skills = [k[2] for k in tally.cells if k[:2] == (prefix, "skill")]
    rows = [{"skill": skill, **tally.row((prefix, "skill", skill))} for skill in skills]
    return sorted(rows, key=lambda r: (r["skill"] is None, -r["frames"], r["skill"] or ""))


def _error(row: dict) -> dict:
    return {"mae": row["mae"], "rmse": row["rmse"]}


def executed_row(tally: Tally, prefix: str, **mode) -> dict:
    groups = [s.name for s in ACTION_SEGMENTS]
    return {
        **mode,
        **tally.row((prefix, "overall")),
        "by_group": {g: _error(tally.row((prefix, "group", g))) for g in groups},
    }


def tally_actions(tally: Tally, error: np.ndarray, prefix: str) -> None:
    """Add executed-action errors (B, A), one per frame."""
    error = error.astype(np.float64)
    for row in error:
        tally.add((prefix, "overall"), np.abs(row).sum(), (row**2).sum(), row.size, 1)
        for segment in ACTION_SEGMENTS:
            part = row[segment.start : segment.stop]
            tally.add((prefix, "group", segment.name), np.abs(part).sum(), (part**2).sum(), part.size, 1)
