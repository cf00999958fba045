"""The challenge's task list: a name gives the evaluator's id, in both releases' numbering."""

from schemas.tasks import CHALLENGE_TASKS, TASKS_2025, evaluator_task_id, parse_task_selection, task_name


def test_the_list_matches_behavior_md_anchors():
    assert len(CHALLENGE_TASKS) == 100 and len(set(CHALLENGE_TASKS)) == 100 and TASKS_2025 == 50
    assert evaluator_task_id("turning_on_radio") == 0
    assert evaluator_task_id("hiding_Easter_eggs") == 6
    assert evaluator_task_id("putting_shoes_on_rack") == 22  # 2026 episode 4400 = 200 * 22
    assert evaluator_task_id("freeze_fruit") == 50  # 2026 episode 10000 = 200 * 50
    assert task_name(99) == "sorting_books_on_shelf" and task_name(100) is None


def test_annotation_spellings_find_the_same_task_and_strangers_none():
    assert evaluator_task_id("turning on radio") == 0
    assert evaluator_task_id("Hiding Easter eggs") == 6
    assert evaluator_task_id("hide the eggs") is None


def test_task_selection_mixes_names_and_ids():
    assert parse_task_selection("hiding_Easter_eggs, 51,") == ["hiding_Easter_eggs", 51]
