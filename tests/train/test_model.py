"""SmolVLA for our features: from a backbone, from a SmolVLA checkpoint with other features, clear errors."""

from __future__ import annotations

import pytest
import torch

from train import data as D
from train.model import (
    ModelLoadError,
    build_policy,
    load_fitting_weights,
    make_processors,
    resolve_model_location,
)


def _tiny_smolvla_checkpoint(tmp_path, backbone, *, max_dim: int = 32):
    """A locally saved tiny SmolVLA with other features: 2 cameras, 6-dim state, 6-dim action."""
    from lerobot.configs import FeatureType, PolicyFeature
    from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    config = SmolVLAConfig(
        vlm_model_name=str(backbone),
        load_vlm_weights=False,
        resize_imgs_with_padding=(32, 32),
        max_state_dim=max_dim,
        max_action_dim=max_dim,
        chunk_size=10,
        n_action_steps=10,
        device="cpu",
        input_features={
            "observation.images.top": PolicyFeature(type=FeatureType.VISUAL, shape=(3, 24, 24)),
            "observation.images.wrist": PolicyFeature(type=FeatureType.VISUAL, shape=(3, 24, 24)),
            "observation.state": PolicyFeature(type=FeatureType.STATE, shape=(6,)),
        },
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(6,))},
    )
    torch.manual_seed(123)
    policy = SmolVLAPolicy(config)
    with torch.no_grad():  # recognisable trained-looking weights
        for p in policy.parameters():
            p.add_(0.01)
    out = tmp_path / f"smolvla-2cam-6d-max{max_dim}"
    policy.save_pretrained(out)
    return out, {k: v.clone() for k, v in policy.state_dict().items()}


def test_from_backbone_follows_the_vision_image_size(small_set, tiny_backbone):
    spec = D.open_data([str(small_set)])
    policy, report = build_policy(spec, pretrained=None, vlm_model=str(tiny_backbone), chunk_size=8)
    config = policy.config
    assert config.resize_imgs_with_padding == (32, 32)
    assert config.load_vlm_weights is False  # the tiny backbone has no weights
    assert set(config.image_features) == {
        f"observation.images.rgb.{c}" for c in ("head", "left_wrist", "right_wrist")
    }
    assert config.input_features["observation.state"].shape == (32,)
    assert config.output_features["action"].shape == (23,)
    assert config.chunk_size == 8 and config.n_action_steps == 8
    assert not report.loaded and "no SmolVLA weights" in report.source


def test_processors_normalise_with_the_manifest_stats(small_set, tiny_backbone):
    spec = D.open_data([str(small_set)])
    policy, _ = build_policy(spec, pretrained=None, vlm_model=str(tiny_backbone), chunk_size=8)
    pre, post = make_processors(policy.config, spec)
    mean = torch.tensor(spec.stats["observation.state"]["mean"])
    std = torch.tensor(spec.stats["observation.state"]["std"])
    state = mean + 2 * std
    batch = {k: torch.rand(1, 3, 16, 16) for k in spec.image_keys}
    out = pre({**batch, "observation.state": state[None], "task": ["pick up the radio"]})
    assert torch.allclose(out["observation.state"], torch.full((1, 32), 2.0), atol=1e-4)
    assert out["observation.language.tokens"].shape[0] == 1
    a_mean = torch.tensor(spec.stats["action"]["mean"])
    a_std = torch.tensor(spec.stats["action"]["std"])
    assert torch.allclose(post(torch.ones(1, 23)), a_mean + a_std, atol=1e-5)


def test_finetune_from_a_checkpoint_with_other_features(small_set, tiny_backbone, tmp_path):
    """Acceptance 6 (model part): 2 cameras / 6-dim state / 6-dim action -> ours; every fitting weight loads."""
    checkpoint, saved = _tiny_smolvla_checkpoint(tmp_path, tiny_backbone)
    spec = D.open_data([str(small_set)])
    policy, report = build_policy(spec, pretrained=str(checkpoint), vlm_model=None, chunk_size=8)
    assert set(policy.config.image_features) == set(spec.image_keys)
    assert policy.config.input_features["observation.state"].shape == (32,)
    assert policy.config.output_features["action"].shape == (23,)
    # SmolVLA pads state/action to 32 dims, so every tensor of the 6-dim checkpoint fits.
    assert len(report.loaded) == len(saved) and not report.shape_mismatch and not report.missing
    state = policy.state_dict()
    assert all(torch.equal(state[k], saved[k]) for k in saved)
    assert "input_features" in report.adapted and "output_features" in report.adapted
    summary = report.summary()
    assert f"loaded {len(saved)} tensors" in summary and "observation.images.top" in summary


def test_weights_that_do_not_fit_are_skipped_and_named(small_set, tiny_backbone, tmp_path):
    checkpoint, saved = _tiny_smolvla_checkpoint(tmp_path, tiny_backbone, max_dim=8)
    spec = D.open_data([str(small_set)])
    policy, report = build_policy(spec, pretrained=str(checkpoint), vlm_model=None, chunk_size=8)
    skipped = {name for name, _, _ in report.shape_mismatch}
    assert skipped == {
        "model.state_proj.weight",
        "model.action_in_proj.weight",
        "model.action_out_proj.weight",
        "model.action_out_proj.bias",
    }
    assert len(report.loaded) == len(saved) - len(skipped)
    assert (
        "skipped model.state_proj.weight: checkpoint shape [64, 8] != policy shape [64, 32]"
        in report.summary()
    )
    assert (
        policy.config.max_state_dim == 32
    )  # ours: max(checkpoint's, state dim)... and the fitting rest loaded
    assert torch.equal(
        policy.state_dict()["model.action_time_mlp_in.weight"], saved["model.action_time_mlp_in.weight"]
    )


def test_load_report_counts(small_set, tiny_backbone, tmp_path):
    checkpoint, saved = _tiny_smolvla_checkpoint(tmp_path, tiny_backbone)
    spec = D.open_data([str(small_set)])
    policy, _ = build_policy(spec, pretrained=None, vlm_model=str(tiny_backbone), chunk_size=8)
    from train.model import LoadReport

    report = load_fitting_weights(policy, str(checkpoint / "model.safetensors"), LoadReport(source="x"))
    assert report.loaded_params == sum(t.numel() for t in saved.values())


def test_offline_hub_id_says_to_pass_a_local_path(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match=r"cannot be reached.*pass --pretrained-model DIR"):
        resolve_model_location("lerobot/smolvla_base", "pretrained model", "--pretrained-model")
    with pytest.raises(ModelLoadError, match=r"pass --vlm-model DIR"):
        resolve_model_location("HuggingFaceTB/SmolVLM2-500M-Video-Instruct", "VLM backbone", "--vlm-model")


def test_missing_local_dirs_are_named(tmp_path):
    with pytest.raises(ModelLoadError, match="no such directory"):
        resolve_model_location(str(tmp_path / "nope"), "pretrained model", "--pretrained-model")
    with pytest.raises(ModelLoadError, match=r"config\.json not found"):
        resolve_model_location(str(tmp_path), "pretrained model", "--pretrained-model")


def test_chunk_size_above_horizon(small_set, tiny_backbone):
    spec = D.open_data([str(small_set)])
    with pytest.raises(ValueError, match="horizon 8"):
        build_policy(spec, pretrained=None, vlm_model=str(tiny_backbone), chunk_size=9)
