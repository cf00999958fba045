"""`schemas.provenance`: the checkpoint's `b1k_provenance.json` as a typed, validated record.

`provenance/written_*.json` are files b1k-train wrote before the provenance was typed (a 2026-layout set
with task details and EMA; the relative/per-timestep recipe; `tests/deploy/conftest.py`'s checkpoint_2026),
their paths shortened: what a checkpoint in the field holds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from schemas.provenance import (
    ABSOLUTE_MEAN_STD,
    PROVENANCE_FILE,
    Provenance,
    ProvenanceError,
    parse_provenance,
    read_provenance,
)
from schemas.r1pro import DEFAULT_LAYOUT, LAYOUT_2026

WRITTEN = Path(__file__).parent / "provenance"
WRITTEN_FILES = sorted(WRITTEN.glob("written_*.json"))


@pytest.mark.parametrize("path", WRITTEN_FILES, ids=lambda p: p.stem)
def test_a_provenance_b1k_train_wrote_reads_and_writes_back_byte_for_byte(path):
    text = path.read_text()
    assert parse_provenance(text).dumps() == text


def test_a_written_provenance_reads_as_typed_fields():
    provenance = parse_provenance((WRITTEN / "written_2026_tasks.json").read_text())
    assert provenance.state.state_layout == LAYOUT_2026 and provenance.state.source_dim == 61
    assert len(provenance.state.indices) == 32 and provenance.state.preset == "top32"
    head = provenance.cameras["head"]
    assert (head.height, head.width, head.source_height, head.resize) == (16, 16, 720, "pillow-bilinear")
    assert head.video_key == "observation.images.rgb.head"
    assert provenance.tasks == {6: "hide the eggs", 1000: "my own task"}
    assert provenance.task_details[6].known and provenance.task_details[6].name == "hiding_Easter_eggs"
    assert not provenance.task_details[1000].known
    assert provenance.recipe_label == "absolute/mean_std/ema0.99"
    assert provenance.step == 2 and provenance.trainer.world_size == 1


def _shape(
    *, drop: tuple[str, ...] = (), drop_state: tuple[str, ...] = (), bare_cameras: bool = False
) -> dict:
    """The current file with the fields an older b1k-train did not write taken out."""
    data = json.loads((WRITTEN / "written_relative.json").read_text())
    for key in drop:
        data.pop(key)
    for key in drop_state:
        data["state"].pop(key)
    if bare_cameras:
        data["cameras"] = {
            n: {"height": c["height"], "width": c["width"]} for n, c in data["cameras"].items()
        }
    return data


BEFORE_TASK_DETAILS = ("task_details",)
BEFORE_RECIPES = (*BEFORE_TASK_DETAILS, "action_recipe", "ema")
BEFORE_LAYOUTS = (*BEFORE_RECIPES, "tasks", "fps")  # and cameras with their stored size only
FIRST = (*BEFORE_LAYOUTS, "trainer")

OLDER_SHAPES = {
    "before task details": _shape(drop=BEFORE_TASK_DETAILS),
    "before action recipes": _shape(drop=BEFORE_RECIPES),
    "before layouts and tasks": _shape(
        drop=BEFORE_LAYOUTS, drop_state=("layout", "source_dim"), bare_cameras=True
    ),
    "the first checkpoints": _shape(drop=FIRST, drop_state=("layout", "source_dim"), bare_cameras=True),
}


@pytest.mark.parametrize("data", OLDER_SHAPES.values(), ids=OLDER_SHAPES.keys())
def test_each_older_shape_parses_with_the_documented_defaults(data):
    provenance = Provenance.from_json(data)
    assert provenance.task_details == {}
    assert list(provenance.state.indices) == data["state"]["indices"] and provenance.step == 2
    if "action_recipe" not in data:
        assert provenance.action_recipe == ABSOLUTE_MEAN_STD and provenance.ema_decay is None
        assert provenance.recipe_label == "absolute/mean_std"
    else:
        assert provenance.recipe_label == "relative/per_timestep/ema0.9"
    if "layout" not in data["state"]:
        assert provenance.state.layout is None and provenance.state.state_layout == DEFAULT_LAYOUT
        assert provenance.tasks == {} and provenance.fps is None
        head = provenance.cameras["head"]
        assert (head.height, head.width) == (16, 16)
        assert head.video_key is None and head.resize is None and head.source_height is None
    if "trainer" not in data:
        assert provenance.trainer is None


BAD_FIELDS = [
    (lambda d: d["state"].update(indices=[]), "state.indices: missing or empty"),
    (lambda d: d.pop("state"), "state.indices: missing or empty"),
    (lambda d: d["state"].update(indices=["3"]), "state.indices[0]: expected int, got str"),
    (lambda d: d["state"].update(layout="r1pro-2099"), "state.layout: unknown state layout 'r1pro-2099'"),
    (lambda d: d["state"].update(indices=[256]), "state.indices: [256] are outside the layout r1pro-2025"),
    (lambda d: d["state"].update(source_dim=61), "state.source_dim: 61, the layout is r1pro-2025"),
    (lambda d: d["cameras"]["head"].pop("height"), "cameras.head.height: missing"),
    (lambda d: d["cameras"]["head"].update(resize=3), "cameras.head.resize: expected str, got int"),
    (lambda d: d.update(tasks={"x": "a"}), "tasks: key 'x' is not a task id"),
    (lambda d: d.update(tasks={"1": 2}), "tasks.1: expected str, got int"),
    (
        lambda d: d.update(task_details={"6": {"name": "n", "prompt": "p", "evaluator_id": 7}}),
        "task_details.6.evaluator_id: 7 differs from its id",
    ),
    (lambda d: d.update(task_details={"6": "n"}), "task_details.6: expected dict, got str"),
    (lambda d: d.update(ema={"decay": "0.9"}), "ema.decay: expected int or float, got str"),
    (lambda d: d.update(step=True), "step: expected int, got bool"),
    (lambda d: d["sets"][0].pop("manifest_sha256"), "sets[0].manifest_sha256: missing"),
]


@pytest.mark.parametrize("damage, message", BAD_FIELDS, ids=[m for _, m in BAD_FIELDS])
def test_a_field_off_the_schema_is_an_error_naming_the_file_and_the_field(damage, message, tmp_path):
    data = _shape()
    damage(data)
    (tmp_path / PROVENANCE_FILE).write_text(json.dumps(data))
    with pytest.raises(ProvenanceError) as info:
        read_provenance(tmp_path)
    assert str(info.value).startswith(f"{tmp_path / PROVENANCE_FILE}: {message}")


def test_a_file_that_is_not_a_json_object_is_an_error_naming_it():
    with pytest.raises(ProvenanceError, match=r"^ckpt/b1k_provenance.json: not valid JSON"):
        parse_provenance("{", "ckpt/b1k_provenance.json")
    with pytest.raises(ProvenanceError, match=r"^ckpt/b1k_provenance.json: the provenance: expected dict"):
        parse_provenance("[]", "ckpt/b1k_provenance.json")
