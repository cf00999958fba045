"""Skill annotations of the synthetic datasets, with the real files' quirks, and what readers should get.

Both releases ship ``annotations/task-{T:04d}/episode_{id:08d}.json`` (2026: ``id`` is the
``raw_episode_id``; 2025: the episode index) and ``annotations/skill_summary.csv`` (shared/BEHAVIOR.md,
"Skill annotations"). Each episode gets a few skills ("move to", "pick up from", "place on", "open
door") tiling its frames but the last tenth (no skill there), ``frame_duration`` ``[start, end)`` in
episode-local frames. The real files' quirks go to a deterministic subset, by the episode's position
in the dataset (``ordinal``):

* ``ordinal % 3 == 0``: the second skill's ``frame_duration`` is nested (``[[s, e]]``) and the first
  skill runs 2 frames into the second (where two overlap, the first listed valid one counts);
* ``ordinal % 3 == 1``: an empty segment (end < start) after the first skill; the first of these
  episodes also ends with one skill whose ``frame_duration`` is null (the dataset's only one);
* the last episode of a dataset of two or more has no annotation file.

:attr:`EpisodeAnnotation.per_frame` is the skill a reader should give each frame (None where no
valid segment covers it) and :class:`SkillQuirks` counts what was written, in the reader's terms
(preprocess/skills.py).
"""

from __future__ import annotations

import csv
import itertools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from demo.synthetic.plan import SyntheticEpisode

# (description, skill_type, skill_id) of the skills used; the release has 31
SKILLS: tuple[tuple[str, str, int], ...] = (
    ("move to", "navigation", 0),
    ("pick up from", "manipulation", 1),
    ("place on", "manipulation", 2),
    ("open door", "manipulation", 3),
)
_MAX_SKILLS = 5  # skills per episode (the release: ~27 over thousands of frames)
_FRAMES_PER_SKILL = 6  # at least, where the episode allows
_OVERLAP = 2  # frames the first skill runs into the second, in the overlap quirk


@dataclass
class SkillQuirks:
    """Counts of the real files' quirks written (reader's names: preprocess.skills.QUIRKS)."""

    missing: int = 0  # episodes without an annotation file
    nested: int = 0  # skills whose frame_duration is a nested list [[s, e]]
    empty: int = 0  # segments with end <= start
    null: int = 0  # skills whose frame_duration is null

    def add(self, other: SkillQuirks) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class EpisodeAnnotation:
    """One episode's annotation as written (`entries`, None when the file is missing) and what a
    reader should make of it."""

    episode_index: int  # as written in the dataset
    path: str  # relative to the dataset root (where it is, or would be when missing)
    written: bool
    entries: list[dict]  # the skill_annotation list written (empty when missing)
    per_frame: list[str | None]  # the expected skill description of each frame
    quirks: SkillQuirks = field(default_factory=SkillQuirks)


def annotation_path(ep: SyntheticEpisode) -> str:
    """``annotations/task-{T:04d}/episode_{id:08d}.json``: 2026 ``id`` = raw_episode_id, 2025 the index."""
    file_id = ep.raw_episode_id if ep.raw_episode_id is not None else ep.episode_index
    return f"annotations/task-{ep.task_id:04d}/episode_{file_id:08d}.json"


def plan_annotations(episodes: list[SyntheticEpisode]) -> dict[int, EpisodeAnnotation]:
    """Each episode's annotation (by episode index as written); records its path on the episode."""
    plans = {}
    for ep in episodes:
        missing = len(episodes) >= 2 and ep.ordinal == len(episodes) - 1
        ep.annotation_file = annotation_path(ep)
        plans[ep.episode_index] = _plan_episode(ep, missing)
    return plans


def _boundaries(length: int) -> list[int]:
    """Skill boundaries over the covered frames [0, length - tail): the last tenth has no skill."""
    covered = length - max(1, length // 10)
    count = min(_MAX_SKILLS, max(1, covered // _FRAMES_PER_SKILL))
    return [round(i * covered / count) for i in range(count + 1)]


def _skill(ep: SyntheticEpisode, idx: int, kind: int, duration: object) -> dict:
    description, skill_type, skill_id = SKILLS[kind]
    obj = f"{ep.task.split('_')[-1].lower()}_{(7 * ep.task_id + idx) % 100}"
    return {
        "skill_idx": idx,
        "skill_id": skill_id,
        "skill_description": [description],
        "object_id": [[obj]],
        "manipulating_object_id": [] if skill_type == "navigation" else [obj],
        "memory_prefix": [],
        "spatial_prefix": [],
        "frame_duration": duration,
        "mp_ef": [],
        "skill_type": [skill_type],
    }


def _plan_episode(ep: SyntheticEpisode, missing: bool) -> EpisodeAnnotation:
    bounds = _boundaries(ep.length)
    spans = [[start, end] for start, end in itertools.pairwise(bounds)]
    kinds = [(ep.demo + i) % len(SKILLS) for i in range(len(spans))]  # neighbours always differ
    quirks = SkillQuirks()
    durations: list[object] = [list(span) for span in spans]
    extra: list[tuple[int, object]] = []  # (kind, duration) inserted after the first skill / appended
    if ep.ordinal % 3 == 0 and len(spans) >= 2:
        durations[0][1] = min(spans[0][1] + _OVERLAP, spans[1][1] - 1)
        durations[1] = [durations[1]]
        quirks.nested += 1
    if ep.ordinal % 3 == 1:
        start = spans[0][1]
        extra.append((3, [start, max(start - 2, 0)]))
        quirks.empty += 1
    entries_spec = [(kinds[0], durations[0]), *extra, *zip(kinds[1:], durations[1:], strict=True)]
    if ep.ordinal == 1:
        entries_spec.append((2, None))
        quirks.null += 1
    entries = [_skill(ep, i, kind, d) for i, (kind, d) in enumerate(entries_spec)]
    if missing:
        return EpisodeAnnotation(
            ep.episode_index, annotation_path(ep), False, [], [None] * ep.length, SkillQuirks(missing=1)
        )
    return EpisodeAnnotation(
        ep.episode_index, annotation_path(ep), True, entries, _expected(entries, ep.length), quirks
    )


def _expected(entries: list[dict], length: int) -> list[str | None]:
    """The skill of each frame: the first listed skill whose valid span covers it."""
    per_frame: list[str | None] = [None] * length
    for entry in entries:
        duration = entry["frame_duration"]
        if duration is None:
            continue
        for start, end in duration if isinstance(duration[0], list) else [duration]:
            for frame in range(start, min(end, length)):
                if per_frame[frame] is None:
                    per_frame[frame] = entry["skill_description"][0]
    return per_frame


def write_annotations(
    root: Path, episodes: list[SyntheticEpisode], plans: dict[int, EpisodeAnnotation]
) -> None:
    """The annotation files planned (not the missing ones) and ``annotations/skill_summary.csv``."""
    for ep in episodes:
        plan = plans[ep.episode_index]
        if not plan.written:
            continue
        document = {
            "task_name": ep.task.replace("_", " "),
            "meta_data": {"task_duration": ep.length, "valid_duration": _boundaries(ep.length)[-1]},
            "skill_annotation": plan.entries,
            "primitive_annotation": [],
        }
        path = root / plan.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document, indent=2) + "\n")
    _write_summary(root / "annotations" / "skill_summary.csv", plans)


def _write_summary(path: Path, plans: dict[int, EpisodeAnnotation]) -> None:
    """Per skill: its type, segments written and frames they give it."""
    frames = {description: 0 for description, _, _ in SKILLS}
    segments = dict.fromkeys(frames, 0)
    for plan in plans.values():
        for entry in plan.entries:
            segments[entry["skill_description"][0]] += 1
        for description in plan.per_frame:
            if description is not None:
                frames[description] += 1
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["skill_id", "skill_description", "skill_type", "segments", "frames"])
        for description, skill_type, skill_id in SKILLS:
            writer.writerow([skill_id, description, skill_type, segments[description], frames[description]])
