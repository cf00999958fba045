"""Skill annotations as the releases ship them, quirks included: every frame gets the skill whose
segment covers it, or none; nothing in a file stops a run."""

from __future__ import annotations

import json
from pathlib import Path

from preprocess.skills import annotation_file, read_episode_skills


def skill(description: str | list, duration) -> dict:
    return {"skill_idx": 0, "skill_description": description, "frame_duration": duration}


def write(path: Path, entries: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"task_name": "turning on radio", "skill_annotation": entries}))
    return path


def test_each_frame_gets_the_segment_covering_it_end_exclusive(tmp_path):
    path = write(tmp_path / "a.json", [skill(["move to"], [0, 3]), skill(["pick up from"], [3, 5])])
    skills = read_episode_skills(path, 7)
    assert skills.per_frame == ["move to"] * 3 + ["pick up from"] * 2 + [None, None]
    assert skills.quirks == {}


def test_quirks_are_counted_not_fatal(tmp_path):
    entries = [
        skill(["move to"], [[0, 2]]),  # nested
        skill(["place on"], [4, 4]),  # empty
        None,  # a null entry
        skill(["open door"], None),  # a null duration
        skill(["pick up from"], [2, 4]),
        skill(["move to"], [3, 99]),  # past the end, and overlapping: the first listed wins
    ]
    skills = read_episode_skills(write(tmp_path / "q.json", entries), 6)
    assert skills.per_frame == ["move to", "move to", "pick up from", "pick up from", "move to", "move to"]
    assert skills.quirks == {"nested": 1, "empty": 1, "null": 2}


def test_a_missing_or_broken_file_leaves_every_frame_without_a_skill(tmp_path):
    missing = read_episode_skills(tmp_path / "absent.json", 3)
    assert missing.per_frame == [None] * 3 and missing.quirks == {"missing": 1}
    (tmp_path / "bad.json").write_text("{not json")
    broken = read_episode_skills(tmp_path / "bad.json", 2)
    assert broken.per_frame == [None, None] and broken.quirks == {"unreadable": 1}


def test_the_annotation_path_of_meta_is_used_only_inside_the_dataset(tmp_path):
    root = tmp_path / "ds"
    recorded = annotation_file(root, 6, 60010, "annotations/task-0006/episode_00060010.json")
    assert recorded == (root / "annotations/task-0006/episode_00060010.json").resolve()
    escaping = annotation_file(root, 6, 60010, "../../etc/passwd")
    assert escaping == root / "annotations/task-0006/episode_00060010.json"
