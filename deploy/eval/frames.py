"""The evaluated frames of a split: what each one is (`Frame`), the set of them with their raw samples
and runs (`EvalFrames`), and which frames `--max-frames` keeps (`select_windows`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from schemas.sample import ACTION_IS_PAD_MEMBER, ACTION_MEMBER
from shards.codec import npy_view


@dataclass(frozen=True)
class Frame:
    """One evaluated frame (its sample's json)."""

    key: str
    episode: int
    frame: int
    progress: float
    task_index: int
    task: str
    skill: str | None = None  # the annotated skill covering the frame; None: none, or a set without skills


@dataclass
class EvalFrames:
    """The evaluated frames of a split in (episode, frame) order, their raw samples, and the runs of
    consecutive frames (`windows`, index ranges into `frames`) the executed replay goes through."""

    frames: list[Frame]
    samples: list[dict[str, bytes]]
    windows: list[range]
    previous_action: np.ndarray  # float32 (N, A): the action recorded at the episode's previous observation
    horizon: int
    action_dim: int

    def __len__(self) -> int:
        return len(self.frames)

    def recorded(self, index: Sequence[int], chunk: int) -> tuple[np.ndarray, np.ndarray]:
        """(actions float32 (B, chunk, A), valid bool (B, chunk)) recorded for frames `index`."""
        actions = np.stack([npy_view(self.samples[i][ACTION_MEMBER])[:chunk] for i in index]).astype(
            np.float32
        )
        pad = np.stack([npy_view(self.samples[i][ACTION_IS_PAD_MEMBER])[:chunk] for i in index])
        return actions, ~pad.astype(bool)


def select_windows(episodes: dict[int, int], max_frames: int | None, window: int) -> dict[int, list[range]]:
    """Per episode (its sample count), the runs of sample positions to evaluate.

    Without `max_frames`: each episode whole. With it: exactly min(max_frames, total) positions; each
    episode gets its share (largest remainder, proportional to its length), cut into runs of at most
    `window` consecutive positions spread evenly over the episode (the unselected positions are
    shared out evenly before the runs)."""
    total = sum(episodes.values())
    if max_frames is None or max_frames >= total:
        return {e: [range(n)] for e, n in sorted(episodes.items())}
    exact = {e: max_frames * n / total for e, n in episodes.items()}
    quota = {e: math.floor(x) for e, x in exact.items()}
    by_remainder = sorted(episodes, key=lambda e: (-(exact[e] - quota[e]), e))
    for e in by_remainder[: max_frames - sum(quota.values())]:
        quota[e] += 1
    out: dict[int, list[range]] = {}
    for e, length in sorted(episodes.items()):
        q = quota[e]
        if q == 0:
            continue
        runs = math.ceil(q / window)
        sizes = [q // runs + (i < q % runs) for i in range(runs)]
        gaps, start, ranges = length - q, 0, []
        for i, size in enumerate(sizes):
            begin = start + (i * gaps) // runs
            ranges.append(range(begin, begin + size))
            start += size
        out[e] = ranges
    return out
