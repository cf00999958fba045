"""The observation adapter: the preprocessor's own resize, the recorded state indices per layout, the
prompt from the task table, and errors that name the key and what was expected."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import tracemalloc

import numpy as np
import pytest

from deploy.adapter import CAMERA_KEYS, PROPRIO_KEY, TASK_KEY, ObservationAdapter, ObservationError
from deploy.checkpoint import load_checkpoint
from preprocess import images as preprocess_images
from shards import frames
from tests.deploy.evaluator_client import observation


@pytest.fixture(scope="module")
def spec_2025(checkpoint_2025):
    return load_checkpoint(checkpoint_2025, device="cpu").spec


@pytest.fixture(scope="module")
def spec_2026(checkpoint_2026):
    return load_checkpoint(checkpoint_2026, device="cpu").spec


def test_the_preprocessor_and_the_adapter_resize_with_one_function():
    assert preprocess_images.resize_rgb is frames.resize_rgb


def test_frames_lose_alpha_and_are_resized_as_the_preprocessor_resized_them(spec_2025):
    obs = observation(0, sizes=(720, 480))
    inputs, batched = ObservationAdapter(spec_2025)(obs)
    assert not batched and inputs.batch_size == 1
    for camera in spec_2025.cameras:
        rgba = obs[CAMERA_KEYS[camera.name]]
        expected = frames.resize_rgb(np.ascontiguousarray(rgba[..., :3]), camera.height, camera.width)
        assert inputs.images[camera.key].shape == (1, camera.height, camera.width, 3)
        np.testing.assert_array_equal(inputs.images[camera.key][0], expected)


@pytest.mark.parametrize(("layout", "dim"), [("2025", 256), ("2026", 61)])
def test_the_state_is_the_proprio_at_the_recorded_indices_of_the_layout(layout, dim, request):
    spec = request.getfixturevalue(f"spec_{layout}")
    assert spec.layout.dim == dim and spec.state_dim == 32
    obs = observation(1, proprio_dim=dim)
    inputs, _ = ObservationAdapter(spec)(obs)
    np.testing.assert_array_equal(
        inputs.state[0], obs[PROPRIO_KEY][list(spec.state_indices)].astype(np.float32)
    )
    # the same 32 quantities on both layouts: arm_left_qpos first, trunk_qpos last
    assert spec.layout.names(spec.state_indices)[0] == "arm_left_qpos_0"
    assert spec.layout.names(spec.state_indices)[-1] == "trunk_qpos_3"


def test_the_prompt_comes_from_the_task_table_and_prompt_overrides_it(spec_2025):
    assert ObservationAdapter(spec_2025)(observation(2, task_id=1))[0].tasks == ["put the dishes away"]
    batch = observation(2, task_id=0, batch=2)
    batch[TASK_KEY] = np.array([1, 0])
    assert ObservationAdapter(spec_2025)(batch)[0].tasks == ["put the dishes away", "pick up the radio"]
    assert ObservationAdapter(spec_2025, prompt="wave")(observation(2, task_id=9))[0].tasks == ["wave"]


def test_a_single_task_checkpoint_warns_once_for_another_task_id(spec_2025, caplog):
    spec = dataclasses.replace(spec_2025, tasks={6: "hide the Easter eggs"})
    adapter = ObservationAdapter(spec)
    with caplog.at_level(logging.WARNING, logger="deploy.adapter"):
        tasks = [adapter(observation(3, task_id=7))[0].tasks[0] for _ in range(3)]
    assert tasks == ["hide the Easter eggs"] * 3
    assert [r.getMessage() for r in caplog.records].count(
        "task_id 7: the checkpoint was trained on task 6 only ('hide the Easter eggs'), whose evaluator id is "
        "not recorded; acting with its prompt"
    ) == 1


def test_a_checkpoint_without_a_task_table_needs_a_prompt(spec_2025):
    with pytest.raises(ObservationError, match="pass --prompt"):
        ObservationAdapter(dataclasses.replace(spec_2025, tasks={}))


def _without(key: str) -> dict:
    obs = observation(4)
    del obs[key]
    return obs


def _with(key: str, value) -> dict:
    return {**observation(4), key: value}


HEAD = CAMERA_KEYS["head"]


@pytest.mark.parametrize(
    ("obs", "message"),
    [
        (_without(CAMERA_KEYS["left_wrist"]), f"{CAMERA_KEYS['left_wrist']}: missing"),
        (_without(PROPRIO_KEY), f"{PROPRIO_KEY}: missing (the 256-dim proprio"),
        (
            _with(PROPRIO_KEY, np.zeros(61)),
            f"{PROPRIO_KEY}: expected shape [256] (the checkpoint's state layout is r1pro-2025",
        ),
        (
            _with(TASK_KEY, np.int64(5)),
            "task_id: 5 is none of the checkpoint's tasks (0 'pick up the radio', 1 'put the dishes away')",
        ),
        (_with(TASK_KEY, np.zeros((1, 2), np.int64)), "task_id: expected an int, [1], [1] or [1, 1] ints"),
        (_with(TASK_KEY, np.float64(1)), "task_id: expected an int, [1], [1] or [1, 1] ints"),
        (_without(TASK_KEY), "task_id: missing"),
        (
            _with(HEAD, np.zeros((5000, 2, 4), np.uint8)),
            f"{HEAD}: image 5000x2 refused: sides must be 1..4096 px",
        ),
        (_with(HEAD, np.zeros((8, 8, 4), np.float32)), f"{HEAD}: expected a uint8 array"),
        (_with(HEAD, np.zeros((8, 8), np.uint8)), f"{HEAD}: expected H x W x 4 (RGBA)"),
        (
            _with(HEAD, np.zeros((2, 8, 8, 4), np.uint8)),
            f"{CAMERA_KEYS['left_wrist']}: expected B=2 x H x W x 4",
        ),
        (_with(PROPRIO_KEY, np.full(256, np.nan)), f"{PROPRIO_KEY}: the dims the policy uses hold NaN"),
    ],
)
def test_bad_observations_are_errors_naming_the_key_and_what_was_expected(spec_2025, obs, message):
    with pytest.raises(ObservationError) as info:
        ObservationAdapter(spec_2025)(obs)
    assert message in str(info.value)


def test_a_2026_checkpoint_refuses_the_2025_proprio(spec_2026):
    with pytest.raises(
        ObservationError, match=r"expected shape \[61\] \(the checkpoint's state layout is r1pro-2026"
    ):
        ObservationAdapter(spec_2026)(observation(5, proprio_dim=256))


@pytest.mark.parametrize(
    "task_ids",
    [np.int64(1), np.array([1]), np.array([1, 0, 1]), np.array([[1], [0], [1]]), [1, 0, 1]],
    ids=["scalar", "[1]", "[B]", "[B,1] (2026)", "list"],
)
def test_task_ids_come_as_the_evaluators_send_them(spec_2025, task_ids):
    obs = {**observation(6, batch=3), TASK_KEY: task_ids}
    inputs, batched = ObservationAdapter(spec_2025)(obs)
    expected = ["put the dishes away"] * 3 if np.size(task_ids) == 1 else [
        "put the dishes away", "pick up the radio", "put the dishes away"
    ]  # fmt: skip
    assert batched and inputs.tasks == expected


def test_one_environment_of_the_2026_evaluator_is_a_batch_of_one(spec_2026):
    obs = {**observation(7, proprio_dim=61, sizes=(720, 480), batch=1), TASK_KEY: np.array([[0]])}
    inputs, batched = ObservationAdapter(spec_2026)(obs)
    assert batched and inputs.batch_size == 1 and inputs.state.shape == (1, 32)
    assert inputs.tasks == ["pick up the radio"]


def _tiny_batch(batch: int) -> dict:
    """`batch` environments of 1 x 1 images: a small frame asking for a large model batch."""
    obs = {key: np.zeros((batch, 1, 1, 4), np.uint8) for key in CAMERA_KEYS.values()}
    return {**obs, PROPRIO_KEY: np.zeros((batch, 256), np.uint8), TASK_KEY: np.zeros((batch, 1), np.int64)}


@pytest.mark.parametrize(
    ("obs", "message"),
    [
        (
            _tiny_batch(4000),
            f"{HEAD}: a batch of 4000 environments, expected 1..16 per request (--max-batch)",
        ),
        (_tiny_batch(0), f"{HEAD}: a batch of 0 environments, expected 1..16"),
        (
            observation(8, sizes=(720, 480), batch=3),
            "the request's 3 cameras hold 2,937,600 pixels, above the limit of 2,000,000 per request",
        ),
    ],
    ids=["4000 environments", "none", "3 full-resolution environments over a 2 M pixel budget"],
)
def test_a_request_over_its_budget_is_refused_from_its_shapes_before_any_allocation(spec_2025, obs, message):
    adapter = ObservationAdapter(spec_2025, max_batch=16, max_pixels=2_000_000)
    tracemalloc.start()
    try:
        with pytest.raises(ObservationError) as info:
            adapter(obs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert message in str(info.value)
    assert peak < 64 * 1024  # bytes: no frame was resized, copied or batched


def _with_provenance(checkpoint, target, **fields):
    """A copy of `checkpoint` whose b1k_provenance.json has `fields` replaced."""
    shutil.copytree(checkpoint, target)
    provenance = json.loads((target / "b1k_provenance.json").read_text())
    provenance.update(fields)
    (target / "b1k_provenance.json").write_text(json.dumps(provenance, indent=2))
    return target


def _details(evaluator_id):
    return {
        "6": {"name": "hiding_Easter_eggs", "instruction": "Hide the Easter eggs.", "prompt": "hide the eggs",
              "evaluator_id": evaluator_id, "source_index": 0}
    }  # fmt: skip


def test_a_task_id_a_single_task_checkpoint_does_not_know_is_an_error_naming_its_tasks(
    checkpoint_2025, tmp_path
):
    directory = _with_provenance(
        checkpoint_2025, tmp_path / "ckpt", tasks={"6": "hide the eggs"}, task_details=_details(6)
    )
    spec = load_checkpoint(directory, device="cpu").spec
    assert spec.task_details[6].name == "hiding_Easter_eggs" and spec.task_details[6].known
    adapter = ObservationAdapter(spec)
    assert adapter(observation(9, task_id=6))[0].tasks == ["hide the eggs"]
    with pytest.raises(ObservationError) as info:
        adapter(observation(9, task_id=17))
    assert str(info.value) == (
        "task_id: 17 is none of the checkpoint's tasks (6 hiding_Easter_eggs); pass --prompt to act on it anyway"
    )
    assert ObservationAdapter(spec, prompt="bring water")(observation(9, task_id=17))[0].tasks == [
        "bring water"
    ]


def test_a_single_task_without_an_evaluator_id_acts_on_any_task_id(checkpoint_2025, tmp_path, caplog):
    directory = _with_provenance(
        checkpoint_2025, tmp_path / "ckpt", tasks={"6": "hide the eggs"}, task_details=_details(None)
    )
    adapter = ObservationAdapter(load_checkpoint(directory, device="cpu").spec)
    with caplog.at_level(logging.WARNING, logger="deploy.adapter"):
        tasks = [adapter(observation(9, task_id=17))[0].tasks[0] for _ in range(2)]
    assert tasks == ["hide the eggs"] * 2
    assert (
        sum("task_id 17: the checkpoint was trained on task 6 only" in r.getMessage() for r in caplog.records)
        == 1
    )
