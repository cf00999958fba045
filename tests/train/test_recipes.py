"""Training recipes (train.recipes): relative actions, mean_std / quantile / per_timestep normalisation and
the EMA of the weights, checked exactly against numpy on a synthetic aligned-preset set, through lerobot's
own loaders, and across kill -9 + --resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from schemas.presets import ALIGNED_PARTS, ordered_indices, preset_indices
from schemas.r1pro import LAYOUT_2025, LAYOUT_2026, action_group_dims
from tests.runs import kill_and_resume, train_log
from tests.shardsets import action_of, state_of
from tests.train.test_train import _args, _invoke
from train.data import open_data
from train.recipes import ActionRecipe, load_sidecars, normalizer_stats

LENGTHS = {0: 9, 1: 12, 2: 7, 3: 10, 4: 11}  # episode 4 is held out
CHUNK = 6
RELATIVE = action_group_dims(("torso", "left_arm", "right_arm"))


@pytest.fixture(scope="module")
def aligned_set(make_shards) -> Path:
    return make_shards(
        "aligned",
        episodes=LENGTHS,
        val_episodes=(4,),
        horizon=8,
        samples_per_shard=12,
        stats_sidecar=True,
        sidecar_episodes=True,
        state_preset="aligned",
    )


def reference_targets(relative: bool, chunk: int = CHUNK) -> list[list[np.ndarray]]:
    """Per chunk step k, the (23,) targets of every train frame t with t + k inside its episode, from the
    set's generating functions (not from its sidecars): action[t+k] - state[t] on the relative dims."""
    dim = len(preset_indices("aligned"))
    steps: list[list[np.ndarray]] = [[] for _ in range(chunk)]
    for episode, length in LENGTHS.items():
        if episode == 4:
            continue
        for t in range(length):
            state = state_of(episode, t, dim).astype(np.float64)
            for k in range(min(chunk, length - t)):
                target = action_of(episode, t + k).astype(np.float64)
                if relative:
                    target[list(RELATIVE)] -= state[list(RELATIVE)]
                steps[k].append(target)
    return steps


def test_the_aligned_preset_starts_with_the_actions_quantities_in_the_actions_order():
    for layout in (LAYOUT_2025, LAYOUT_2026):
        indices = preset_indices("aligned", layout)
        names = layout.names(indices)
        assert len(indices) == 31 == len(set(indices))
        assert names[:3] == [f"base_qvel_{i}" for i in range(3)]
        assert names[3:7] == [f"trunk_qpos_{i}" for i in range(4)]
        assert names[7:14] == [f"arm_left_qpos_{i}" for i in range(7)] and names[14] == "gripper_left_qpos_0"
        assert (
            names[15:22] == [f"arm_right_qpos_{i}" for i in range(7)] and names[22] == "gripper_right_qpos_0"
        )
        assert all(layout.allowed(i) for i in indices)  # standard track (2025: base_qvel is 253:256)
    assert preset_indices("aligned", LAYOUT_2025)[:3] == (253, 254, 255)
    assert ordered_indices(LAYOUT_2025, ALIGNED_PARTS) == preset_indices("aligned")


@pytest.mark.parametrize("relative", [True, False])
def test_chunk_target_stats_equal_numpy_over_every_valid_step(aligned_set, relative):
    recipe = ActionRecipe("relative" if relative else "absolute", "per_timestep")
    spec = open_data([str(aligned_set)])
    stats, chunk = normalizer_stats(spec, recipe, CHUNK)
    steps = reference_targets(relative)
    everything = np.stack([t for step in steps for t in step])
    assert chunk.overall["count"] == len(everything) == sum(len(s) for s in steps)
    for name, fn in (("mean", np.mean), ("std", np.std), ("min", np.min), ("max", np.max)):
        np.testing.assert_allclose(chunk.overall[name], fn(everything, axis=0), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(stats["action"][name], fn(everything, axis=0), rtol=1e-12, atol=1e-12)
    for name, q in (("q01", 0.01), ("q99", 0.99)):
        np.testing.assert_allclose(
            chunk.overall[name], np.quantile(everything, q, axis=0), rtol=1e-12, atol=1e-12
        )
    for k, step in enumerate(steps):
        np.testing.assert_allclose(chunk.step_mean[k], np.mean(step, axis=0), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(chunk.step_std[k], np.std(step, axis=0), rtol=1e-12, atol=1e-12)
        assert chunk.step_count[k] == len(step)
    # the state stats stay the manifest's; the sidecars are the set's train frames in (episode, frame) order
    assert stats["observation.state"]["mean"] == spec.stats["observation.state"]["mean"]
    assert load_sidecars(spec.sources[0]).episodes == [(e, n) for e, n in LENGTHS.items() if e != 4]


def test_absolute_mean_std_and_quantile_keep_the_manifests_stats(aligned_set):
    spec = open_data([str(aligned_set)])
    for norm in ("mean_std", "quantile"):
        stats, chunk = normalizer_stats(spec, ActionRecipe("absolute", norm), CHUNK)
        assert chunk is None and stats["action"]["q99"] == spec.stats["action"]["q99"]


def _pipelines(shards: Path, backbone: Path, recipe: ActionRecipe):
    from train.model import build_policy, make_processors

    spec = open_data([str(shards)])
    policy, _ = build_policy(spec, pretrained=None, vlm_model=str(backbone), chunk_size=CHUNK)
    stats, chunk = normalizer_stats(spec, recipe, CHUNK)
    pre, post = make_processors(policy.config, spec, recipe, stats, chunk)
    return spec, policy, pre, post, chunk


def _batch(spec, frames: list[tuple[int, int]]) -> tuple[dict, np.ndarray, np.ndarray]:
    """A trainer batch of train frames (images, raw state, raw action chunk), and the numpy state/chunk."""
    dim = spec.state_dim
    state = np.stack([state_of(e, t, dim) for e, t in frames])
    chunk = np.stack([[action_of(e, min(t + k, LENGTHS[e] - 1)) for k in range(CHUNK)] for e, t in frames])
    generator = torch.Generator().manual_seed(0)
    batch = {key: torch.rand((len(frames), 3, 16, 16), generator=generator) for key in spec.image_keys}
    batch["observation.state"] = torch.from_numpy(state)
    batch["action"] = torch.from_numpy(chunk.astype(np.float32))
    batch["action_is_pad"] = torch.zeros((len(frames), CHUNK), dtype=torch.bool)
    batch["task"] = ["pick up the radio"] * len(frames)
    return batch, state.astype(np.float64), chunk.astype(np.float64)


@pytest.mark.parametrize(
    "repr_, norm",
    [("relative", "mean_std"), ("relative", "quantile"), ("relative", "per_timestep"), ("absolute", "quantile"),
     ("absolute", "per_timestep")],
)  # fmt: skip
def test_the_saved_preprocessor_makes_exactly_the_recipes_targets(aligned_set, tiny_backbone, repr_, norm):
    """What the model is trained on = numpy's (action - state on the relative dims), normalised with
    the stats of those targets: never the absolute actions' stats (lerobot's bug)."""
    recipe = ActionRecipe(repr_, norm)
    spec, _, pre, _, chunk = _pipelines(aligned_set, tiny_backbone, recipe)
    batch, state, action = _batch(spec, [(0, 0), (1, 5), (2, 3), (3, 9)])
    got = pre(batch)["action"].double().numpy()
    target = action.copy()
    if recipe.relative:
        target[..., list(RELATIVE)] -= state[:, None, list(RELATIVE)]
    stats = {
        k: np.asarray(v, dtype=np.float32).astype(np.float64)
        for k, v in normalizer_stats(spec, recipe, CHUNK)[0]["action"].items()
    }
    if norm == "mean_std":
        expected = (target - stats["mean"]) / (stats["std"] + 1e-8)
    elif norm == "quantile":
        expected = 2 * (target - stats["q01"]) / (stats["q99"] - stats["q01"]) - 1
    else:
        mean, std = chunk.step_mean.astype(np.float32), chunk.step_std.astype(np.float32)
        expected = (target - mean) / (std + 1e-8)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    if recipe.relative:  # the normaliser holds the relative targets' stats, not the manifest's actions'
        assert not np.allclose(
            stats["mean"][list(RELATIVE)], np.asarray(spec.stats["action"]["mean"])[list(RELATIVE)]
        )


def _save(directory: Path, policy, pre, post) -> None:
    policy.save_pretrained(directory)
    pre.save_pretrained(directory)
    post.save_pretrained(directory)


def _lerobot_load(directory: Path):
    from lerobot.policies.factory import make_pre_post_processors
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    policy = SmolVLAPolicy.from_pretrained(directory).eval()
    pre, post = make_pre_post_processors(policy.config, pretrained_path=str(directory))
    return policy, pre, post


@pytest.mark.parametrize("repr_, norm", [("relative", "mean_std"), ("relative", "quantile")])
def test_lerobots_loaders_return_the_actions_of_the_in_process_policy(
    aligned_set, tiny_backbone, tmp_path, repr_, norm
):
    """SmolVLAPolicy.from_pretrained + make_pre_post_processors(pretrained_path) + select_action: absolute
    actions equal to those of the policy and pipelines as trained, with no code of ours."""
    spec, policy, pre, post, _ = _pipelines(aligned_set, tiny_backbone, ActionRecipe(repr_, norm))
    policy.eval()
    _save(tmp_path, policy, pre, post)
    batch, state, _ = _batch(spec, [(1, 4), (3, 2)])
    del batch["action"], batch["action_is_pad"]
    noise = torch.randn((2, CHUNK, policy.config.max_action_dim), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ours = post(policy.predict_action_chunk(pre(dict(batch)), noise=noise.clone())).numpy()
    loaded, lpre, lpost = _lerobot_load(tmp_path)
    with torch.no_grad():
        first = lpost(loaded.select_action(lpre(dict(batch)), noise=noise.clone())).numpy()
        chunk = lpost(loaded.predict_action_chunk(lpre(dict(batch)), noise=noise.clone())).numpy()
    np.testing.assert_allclose(first, ours[:, 0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(chunk, ours, rtol=1e-5, atol=1e-5)
    # absolute: the relative dims carry the state back (a model output of 0 would be the state itself)
    assert np.isfinite(ours).all() and not np.allclose(ours[:, 0, list(RELATIVE)], 0)
    assert np.abs(ours[:, 0, list(RELATIVE)] - state[:, list(RELATIVE)]).max() < 20


def test_lerobots_select_action_refuses_a_per_timestep_checkpoint(aligned_set, tiny_backbone, tmp_path):
    """One action at a time cannot be unnormalised per chunk step: an error that says what to do, never a
    mis-scaled action; whole chunks are unnormalised step by step."""
    from schemas.processor_steps import PerTimestepActionError

    spec, policy, pre, post, chunk = _pipelines(
        aligned_set, tiny_backbone, ActionRecipe("relative", "per_timestep")
    )
    _save(tmp_path, policy.eval(), pre, post)
    batch, state, _ = _batch(spec, [(1, 4)])
    del batch["action"], batch["action_is_pad"]
    loaded, lpre, lpost = _lerobot_load(tmp_path)
    noise = torch.randn((1, CHUNK, policy.config.max_action_dim), generator=torch.Generator().manual_seed(3))
    with torch.no_grad(), pytest.raises(PerTimestepActionError, match="select_action"):
        lpost(loaded.select_action(lpre(dict(batch)), noise=noise.clone()))
    with torch.no_grad():
        raw = loaded.predict_action_chunk(lpre(dict(batch)), noise=noise.clone())
        whole = lpost(raw).double().numpy()
    expected = raw.double().numpy() * chunk.step_std.astype(np.float32) + chunk.step_mean.astype(np.float32)
    expected[..., list(RELATIVE)] += state[:, None, list(RELATIVE)]
    np.testing.assert_allclose(whole, expected, rtol=1e-4, atol=1e-4)


def test_relative_actions_need_an_aligned_state(small_set, tiny_backbone, tmp_path):
    result = _invoke(
        [
            *_args(small_set, tiny_backbone, tmp_path / "out", "--max-steps", 1, "--num-workers", 0),
            "--action-repr",
            "relative",
        ]
    )
    assert result.exit_code == 2
    assert "--state-preset aligned" in result.output and "'top32'" in result.output


RECIPES = [
    ("relative", "per_timestep", "0.9"),
    ("relative", "quantile", "0.8"),
    ("absolute", "mean_std", "0.95"),
]


@pytest.mark.slow
@pytest.mark.parametrize("repr_, norm, decay", RECIPES)
def test_kill_and_resume_with_a_recipe_and_ema_equals_an_uninterrupted_run(
    aligned_set, tiny_backbone, tmp_path, repr_, norm, decay
):
    """kill -9 after a checkpoint, --resume: the same losses and the same final EMA and raw weights; the
    checkpoint's model.safetensors is the EMA (not the raw weights, kept in training_state/)."""
    common = (
        "--max-steps", 8, "--save-every", 2, "--num-workers", 1, "--shuffle-buffer", 20, "--val-every", 0,
        "--chunk-size", CHUNK, "--action-repr", repr_, "--action-norm", norm, "--ema-decay", decay,
    )  # fmt: skip
    run = kill_and_resume(
        lambda out: _args(aligned_set, tiny_backbone, out, *common), tmp_path, checkpoint=2, max_steps=8
    )
    ref, out, killed_at = run.ref, run.out, run.killed_at

    ref_log, resumed_log = train_log(ref), train_log(out)
    for step in range(killed_at + 1, 9):
        assert resumed_log[step]["weighted_loss"] == pytest.approx(ref_log[step]["weighted_loss"], abs=1e-6)
    final = {}
    for run in (ref, out):
        last = run / "checkpoints" / "000008"
        final[run] = (
            load_file(last / "pretrained_model" / "model.safetensors"),
            load_file(last / "training_state" / "b1k_raw_model.safetensors"),
        )
        provenance = json.loads((last / "pretrained_model" / "b1k_provenance.json").read_text())
        assert provenance["action_recipe"]["repr"] == repr_ and provenance["action_recipe"]["norm"] == norm
        assert provenance["ema"] == {"decay": float(decay)}
    (ema_ref, raw_ref), (ema_out, raw_out) = final[ref], final[out]
    assert max(float((ema_ref[k] - ema_out[k]).abs().max()) for k in ema_ref) <= 1e-6
    assert max(float((raw_ref[k] - raw_out[k]).abs().max()) for k in raw_ref) <= 1e-6
    assert max(float((ema_ref[k] - raw_ref[k]).abs().max()) for k in raw_ref) > 1e-6  # the EMA is saved
