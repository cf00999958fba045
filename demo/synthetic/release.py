"""The 2026 release's numbering and task strings, as the synthetic builder reproduces them.

Facts from shared/BEHAVIOR.md ("The 2026 release, as published"): one dataset of 200 demos for each
of the 100 challenge tasks, ``episode_index = 200 * task + demo``, ``raw_episode_id = 10000 * task +
10 * (demo + 1)``, ``meta/tasks.jsonl`` rows ``{"task_index", "task_name", "task"}`` whose ``task`` is
a natural-language instruction. The instructions here are synthetic (task 0's is the release's own).
"""

from __future__ import annotations

from schemas.tasks import CHALLENGE_TASKS, EPISODES_PER_TASK_ID

PUBLISHED_LAYOUTS = ("published", "per-task")  # the 2026 release's layouts (synthetic_v30_2026)
DEMOS_PER_TASK = EPISODES_PER_TASK_ID["2026"]  # 200
RELEASE_EPISODES = DEMOS_PER_TASK * len(CHALLENGE_TASKS)  # 20,000
# The frames of an episode that the synthetic release lists but does not build: the real release's
# mean (210,916,774 frames / 20,000 episodes), so that meta/info.json's totals and a partial
# download's global `index` look like the release's.
UNBUILT_EPISODE_FRAMES = 10_546
TASK_INSTANCES = 10  # synthetic: demo d records task instance d % 10

# Task 0's instruction is the release's; the others are made from the task's name and one of these
# rooms (by task id), so that every task has its own deterministic sentence.
_INSTRUCTIONS = {0: "Turn on the radio receiver that's on the table in the living room."}
_ROOMS = ("kitchen", "living room", "bedroom", "garage", "bathroom", "garden", "office")


def global_episode_index(task_id: int, demo: int) -> int:
    """The release's episode index of demo `demo` of task `task_id`: ``200 * task + demo``."""
    _check_demo(demo)
    return DEMOS_PER_TASK * task_id + demo


def raw_episode_id(task_id: int, demo: int) -> int:
    """The id of the raw HDF5 demo (meta/episodes ``raw_episode_id``; 2026 annotation file names)."""
    _check_demo(demo)
    return 10_000 * task_id + 10 * (demo + 1)


def task_instance_id(demo: int) -> int:
    return demo % TASK_INSTANCES


def instruction(task_id: int) -> str:
    """The natural-language instruction ``meta/tasks.jsonl`` gives task `task_id` (distinct per task)."""
    if task_id in _INSTRUCTIONS:
        return _INSTRUCTIONS[task_id]
    words = CHALLENGE_TASKS[task_id].replace("_", " ")
    return f"In the {_ROOMS[task_id % len(_ROOMS)]}, carry out this task: {words}."


def _check_demo(demo: int) -> None:
    if not 0 <= demo < DEMOS_PER_TASK:
        raise ValueError(f"the 2026 release has {DEMOS_PER_TASK} demos per task, not demo {demo}")
