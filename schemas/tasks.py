"""The BEHAVIOR Challenge's task list: a task's name -> the evaluator's integer `task_id`.

The evaluator identifies a task by its position in the challenge's task list (2025: the first 50;
2026: all 100, same order). Source: shared/BEHAVIOR.md, "Tasks: the evaluator's task ids" (the 2026
evaluator's `B100_task_misc.csv`; the public `docs/challenge/task_data.json` has the same order).

A dataset's own `task_index` is not always this id (single-task datasets and the older per-task 2026
copies number their only task 0): the task's *name* identifies it across datasets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CHALLENGE_TASKS: tuple[str, ...] = (
    "turning_on_radio", "picking_up_trash", "putting_away_Halloween_decorations",
    "cleaning_up_plates_and_food", "can_meat", "setting_mousetraps", "hiding_Easter_eggs",
    "picking_up_toys", "rearranging_kitchen_furniture", "putting_up_Christmas_decorations_inside",
    "set_up_a_coffee_station_in_your_kitchen", "putting_dishes_away_after_cleaning", "preparing_lunch_box",
    "loading_the_car", "carrying_in_groceries", "bringing_in_wood", "moving_boxes_to_storage",
    "bringing_water", "tidying_bedroom", "outfit_a_basic_toolbox", "sorting_vegetables",
    "collecting_childrens_toys", "putting_shoes_on_rack", "boxing_books_up_for_storage", "storing_food",
    "clearing_food_from_table_into_fridge", "assembling_gift_baskets", "sorting_household_items",
    "getting_organized_for_work", "clean_up_your_desk", "setting_the_fire", "clean_boxing_gloves",
    "wash_a_baseball_cap", "wash_dog_toys", "hanging_pictures", "attach_a_camera_to_a_tripod",
    "clean_a_patio", "clean_a_trumpet", "spraying_for_bugs", "spraying_fruit_trees",
    "make_microwave_popcorn", "cook_cabbage", "chop_an_onion", "slicing_vegetables", "chopping_wood",
    "cook_hot_dogs", "cook_bacon", "freeze_pies", "canning_food", "make_pizza",
    "freeze_fruit", "cook_a_brisket", "sorting_bottles_cans_and_paper", "tidying_living_room",
    "putting_away_toys", "re_shelving_library_books", "make_rose_centerpieces", "sweeping_garage",
    "stacking_wood", "organizing_art_supplies", "scrubbing_bathroom_floor", "bringing_paper_to_recycling",
    "halve_an_egg", "installing_smoke_detectors", "setting_the_table", "unloading_the_car",
    "turning_out_all_lights_before_sleep", "boxing_food_after_dinner", "cleaning_up_branches_and_twigs",
    "vacuuming_floors", "thawing_frozen_food", "clean_your_rusty_garden_tools", "cook_a_frozen_pie",
    "organizing_school_stuff", "carrying_out_garden_furniture", "put_together_a_basic_pruning_kit",
    "dispose_of_glass", "installing_a_modem", "make_cabinet_doors", "polishing_shoes",
    "clean_up_broken_glass", "packing_meal_for_delivery", "store_batteries", "store_honey",
    "tidying_bathroom", "putting_dirty_dishes_in_sink", "make_gift_bags_for_baby_showers",
    "collecting_aluminum_cans", "rearrange_your_room", "installing_a_fax_machine", "composting_waste",
    "store_produce", "installing_a_scanner", "clean_a_keyboard", "dispose_of_batteries",
    "cook_brussels_sprouts", "cook_broccolini", "setup_a_bar_for_a_cocktail_party", "laying_tile_floors",
    "sorting_books_on_shelf",
)  # fmt: skip
TASKS_2025 = 50  # the 2025 challenge used the first 50 tasks of the list

# Episode numbering of the published releases (BEHAVIOR.md): 2025 `task_id * 10000 + n`, 2026
# `200 * task_id + demo`.
EPISODES_PER_TASK_ID = {"2025": 10_000, "2026": 200}


def _normal(name: str) -> str:
    """`Turning on radio` and `turning_on_radio` alike (annotation files spell names with spaces)."""
    return re.sub(r"[\s_]+", "_", name.strip()).lower()


_BY_NAME = {name: task_id for task_id, name in enumerate(CHALLENGE_TASKS)}
_BY_NORMAL_NAME = {_normal(name): task_id for task_id, name in enumerate(CHALLENGE_TASKS)}


def evaluator_task_id(name: str) -> int | None:
    """The evaluator's id of a task named `name` (exact, else ignoring case and `_`/space); None if the
    name is not in the challenge's list."""
    if name in _BY_NAME:
        return _BY_NAME[name]
    return _BY_NORMAL_NAME.get(_normal(name))


def task_name(task_id: int) -> str | None:
    """The challenge's name of evaluator id `task_id`, or None outside the list."""
    return CHALLENGE_TASKS[task_id] if 0 <= task_id < len(CHALLENGE_TASKS) else None


@dataclass(frozen=True)
class TaskInfo:
    """One task of a shard set or checkpoint.

    `task_id` is the evaluator's id when `known` (the name is in the challenge's list), else the
    dataset's own index; `prompt` is what the policy was trained with (the instruction or the name)."""

    task_id: int
    name: str
    instruction: str | None
    prompt: str
    known: bool
    source_index: int | None = None  # the dataset's own task_index

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "instruction": self.instruction,
            "prompt": self.prompt,
            "evaluator_id": self.task_id if self.known else None,
            "source_index": self.source_index,
        }

    @classmethod
    def from_json(cls, task_id: int, data: dict) -> TaskInfo:
        """From a manifest's or provenance's `task_details` entry (validated by the reader)."""
        evaluator_id = data.get("evaluator_id")
        return cls(
            task_id=task_id,
            name=str(data.get("name") or ""),
            instruction=data.get("instruction"),
            prompt=str(data.get("prompt") or ""),
            known=evaluator_id is not None and int(evaluator_id) == task_id,
            source_index=data.get("source_index"),
        )


def parse_task_selection(text: str) -> list[int | str]:
    """`hiding_Easter_eggs,51` -> ["hiding_Easter_eggs", 51]: task names and evaluator ids, in order."""
    chosen: list[int | str] = []
    for part in (p.strip() for p in text.split(",")):
        if part:
            chosen.append(int(part) if part.isdigit() else part)
    return chosen
