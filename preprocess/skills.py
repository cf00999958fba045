"""Skill annotations: which annotated skill ("move to", "pick up from", ...) covers each frame.

Both releases ship `annotations/task-{T:04d}/episode_{id:08d}.json` (2026: `id` is the episode's
`raw_episode_id` and meta/episodes names the file in `annotation_path`; 2025: the episode index).
A skill entry's `frame_duration` is `[start, end)` in episode-local frames (BEHAVIOR.md). The real
files have quirks: nested `frame_duration` lists, empty segments (end <= start), a null entry, and
missing files. Every quirk is counted and logged, never fatal: a frame no valid segment covers has
no skill (null in the sample json).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

MAX_ANNOTATION_BYTES = 16 << 20  # one episode's file is a few KB; a bigger one is not an annotation
QUIRKS = ("missing", "unreadable", "nested", "empty", "null")


@dataclass
class EpisodeSkills:
    """One episode's skill per frame (None where none) and the quirks met reading its annotation."""

    per_frame: list[str | None]
    quirks: dict[str, int] = field(default_factory=dict)

    def count(self, quirk: str, n: int = 1) -> None:
        self.quirks[quirk] = self.quirks.get(quirk, 0) + n


def annotation_file(root: Path, task_id: int, annotation_id: int, recorded: str | None) -> Path:
    """Where an episode's annotation lies: meta's `annotation_path` when it names a file inside the
    dataset, else the release's template."""
    if recorded:
        candidate = (root / recorded).resolve()
        if candidate.is_relative_to(root.resolve()):
            return candidate
    return root / f"annotations/task-{task_id:04d}/episode_{annotation_id:08d}.json"


def read_episode_skills(path: Path, length: int) -> EpisodeSkills:
    """The skill covering each of the episode's `length` frames (the first listed segment wins where
    two overlap)."""
    skills = EpisodeSkills([None] * length)
    entries = _load_entries(path, skills)
    for entry in entries:
        spans = _frame_spans(entry, skills)
        description = _description(entry) if spans else None
        for span_start, span_end in spans:
            for frame in range(max(span_start, 0), min(span_end, length)):
                if skills.per_frame[frame] is None:
                    skills.per_frame[frame] = description
    return skills


def _load_entries(path: Path, skills: EpisodeSkills) -> list:
    try:
        if path.stat().st_size > MAX_ANNOTATION_BYTES:
            skills.count("unreadable")
            return []
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        skills.count("missing")
        return []
    except (OSError, ValueError, RecursionError):
        skills.count("unreadable")
        return []
    entries = data.get("skill_annotation") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        skills.count("unreadable")
        return []
    return entries


def _frame_spans(entry: object, skills: EpisodeSkills) -> list[tuple[int, int]]:
    """The `[start, end)` spans of a skill entry: one, several when `frame_duration` is nested
    (`[[start, end], ...]`), none (counted) when it is null, malformed or empty."""
    duration = entry.get("frame_duration") if isinstance(entry, dict) else None
    if duration is None:
        skills.count("null")
        return []
    pairs = [duration]
    if isinstance(duration, list) and duration and all(isinstance(d, list) for d in duration):
        skills.count("nested")
        pairs = duration
    spans = []
    for pair in pairs:
        if not (isinstance(pair, list) and len(pair) == 2 and all(_is_int(v) for v in pair)):
            skills.count("unreadable")
        elif int(pair[1]) <= int(pair[0]):
            skills.count("empty")
        else:
            spans.append((int(pair[0]), int(pair[1])))
    return spans


def _is_int(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer()


def _description(entry: dict) -> str:
    """`skill_description` is a list of strings (`["move to"]`); joined when it holds several."""
    text = entry.get("skill_description")
    if isinstance(text, list):
        text = ", ".join(str(t) for t in text if t is not None)
    return str(text) if text else "unnamed skill"
