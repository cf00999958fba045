"""The in-process policy: what SmolVLA + lerobot's processors give by hand, only the used proprio dims
matter, seeded resets, and the two ways of executing chunks."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from lerobot.policies.factory import make_pre_post_processors
from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy
from PIL import Image

from deploy.adapter import CAMERA_KEYS, PROPRIO_KEY
from deploy.policy import ExecutionConfig, Policy
from schemas.r1pro import camera_for_key
from tests.deploy.evaluator_client import observation
from tests.deploy.helpers import chunk_model, provenance


@pytest.fixture(scope="module")
def model_2025(checkpoint_2025):
    return chunk_model(checkpoint_2025)


@pytest.fixture(scope="module")
def model_2026(checkpoint_2026):
    return chunk_model(checkpoint_2026)


def by_hand(checkpoint, obs: dict, task: str, seed: int) -> np.ndarray:
    """SmolVLA and lerobot's processors, fed by hand: Pillow-bilinear frames without alpha at the stored
    size, float [0, 1]; state = proprio at the provenance's indices; noise from a generator seeded `seed`."""
    policy = SmolVLAPolicy.from_pretrained(checkpoint).eval()
    pre, post = make_pre_post_processors(policy.config, pretrained_path=str(checkpoint))
    batch = {}
    for key, feature in policy.config.image_features.items():
        rgba = obs[CAMERA_KEYS[camera_for_key(key).name]]
        height, width = feature.shape[1:]
        rgb = Image.fromarray(np.ascontiguousarray(rgba[..., :3])).resize(
            (width, height), Image.Resampling.BILINEAR
        )
        batch[key] = torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].float() / 255.0
    indices = provenance(checkpoint)["state"]["indices"]
    batch["observation.state"] = torch.from_numpy(obs[PROPRIO_KEY][indices].astype(np.float32))[None]
    batch["task"] = [task]
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn((1, policy.config.chunk_size, policy.config.max_action_dim), generator=generator)
    with torch.no_grad():
        return post(policy.predict_action_chunk(pre(batch), noise=noise)).numpy()[0]


@pytest.mark.parametrize("layout", ["2025", "2026"])
def test_the_policy_equals_smolvla_and_lerobots_processors_fed_by_hand(layout, request):
    checkpoint = request.getfixturevalue(f"checkpoint_{layout}")
    model = request.getfixturevalue(f"model_{layout}")
    obs = observation(1, proprio_dim=model.spec.layout.dim, sizes=(720, 480), task_id=1)
    policy = Policy(model, ExecutionConfig(seed=7))
    actions = [policy.act(obs) for _ in range(model.spec.n_action_steps)]
    expected = by_hand(checkpoint, obs, provenance(checkpoint)["tasks"]["1"], seed=7)
    assert actions[0].shape == (23,) and actions[0].dtype == np.float32
    np.testing.assert_array_equal(np.stack(actions), expected[: len(actions)])


@pytest.mark.parametrize("layout", ["2025", "2026"])
def test_unused_proprio_dims_and_alpha_leave_the_action_alone_and_a_used_dim_changes_it(layout, request):
    model = request.getfixturevalue(f"model_{layout}")
    obs = observation(2, proprio_dim=model.spec.layout.dim, task_id=0)
    used = list(model.spec.state_indices)
    unused = [i for i in range(model.spec.layout.dim) if i not in used]

    def act(o: dict) -> np.ndarray:
        return Policy(model).act(o)

    base = act(obs)
    other_unused = copy.deepcopy(obs)
    other_unused[PROPRIO_KEY][unused] += 100.0
    other_alpha = copy.deepcopy(obs)
    for key in CAMERA_KEYS.values():
        other_alpha[key][..., 3] = 255 - other_alpha[key][..., 3]
    other_used = copy.deepcopy(obs)
    other_used[PROPRIO_KEY][used[0]] += 5.0
    np.testing.assert_array_equal(act(other_unused), base)
    np.testing.assert_array_equal(act(other_alpha), base)
    assert np.abs(act(other_used) - base).max() > 1e-4


def test_the_same_observations_after_a_reset_give_the_same_actions(model_2025):
    policy = Policy(model_2025, ExecutionConfig(seed=3))
    episode = [observation(10 + t) for t in range(10)]  # 10 steps: two chunks of 8
    first = [policy.act(o) for o in episode]
    continued = [policy.act(o) for o in episode]
    policy.reset()
    again = [policy.act(o) for o in episode]
    np.testing.assert_array_equal(np.stack(again), np.stack(first))
    assert not np.array_equal(np.stack(continued), np.stack(first))  # the noise moved on without a reset
    other_seed = Policy(model_2025, ExecutionConfig(seed=4))
    assert not np.array_equal(other_seed.act(episode[0]), first[0])


def test_receding_horizon_predicts_every_action_steps_and_sends_the_chunk_in_order(model_2025):
    policy = Policy(model_2025, ExecutionConfig(action_steps=3))
    steps = [policy.step(observation(20 + t)) for t in range(7)]
    assert [s.prediction is not None for s in steps] == [True, False, False, True, False, False, True]
    first_chunk = steps[0].prediction.actions[0]
    np.testing.assert_array_equal(np.stack([s.action[0] for s in steps[:3]]), first_chunk[:3])
    np.testing.assert_array_equal(steps[3].action[0], steps[3].prediction.actions[0, 0])


def test_ensembling_sends_the_exponentially_weighted_mean_of_every_chunks_prediction(model_2025):
    coeff = 0.5
    policy = Policy(model_2025, ExecutionConfig(ensemble=True, ensemble_coeff=coeff))
    steps = [policy.step(observation(30 + t)) for t in range(3)]
    assert all(s.prediction is not None for s in steps)  # a chunk every step
    chunks = [s.prediction.actions[0] for s in steps]
    w = np.exp(-coeff * np.arange(3))  # w_0: the oldest prediction
    np.testing.assert_array_equal(steps[0].action[0], chunks[0][0])
    np.testing.assert_allclose(
        steps[1].action[0], (w[0] * chunks[0][1] + w[1] * chunks[1][0]) / w[:2].sum(), rtol=1e-5, atol=1e-6
    )
    expected = (w[0] * chunks[0][2] + w[1] * chunks[1][1] + w[2] * chunks[2][0]) / w.sum()
    np.testing.assert_allclose(steps[2].action[0], expected, rtol=1e-5, atol=1e-6)


def test_a_requested_chunk_starts_with_the_action_and_restarts_execution(model_2025):
    policy = Policy(model_2025)
    policy.act(observation(40))  # a chunk of 8 queued
    action, chunk = policy.act_chunk(observation(41), 5)
    assert chunk.shape == (5, 23) and action.shape == (23,)
    np.testing.assert_array_equal(chunk[0], action)
    assert policy.step(observation(42)).prediction is not None  # the queue was dropped: a fresh chunk


def test_a_batched_observation_gets_one_action_per_environment(model_2025):
    policy = Policy(model_2025)
    batch = observation(50, batch=3, task_id=1)
    actions = policy.act(batch)
    assert actions.shape == (3, 23)
    single = Policy(model_2025).act({k: v[0] for k, v in batch.items()})
    assert np.isfinite(actions).all() and single.shape == (23,)


def test_ensembling_with_action_steps_is_refused(model_2025):
    with pytest.raises(ValueError, match="--ensemble predicts a chunk every step"):
        Policy(model_2025, ExecutionConfig(ensemble=True, action_steps=4))
