"""The tiny offline SmolVLM backbone: deterministic, complete enough for SmolVLA, exposed as a command."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from demo.backbone import ARCHITECTURES, SMOLVLM2_500M, SPECIAL_TOKENS, build_tiny_backbone, main
from train.model import backbone_image_size


def _files(root):
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())}


def test_deterministic_and_readable_by_transformers(tmp_path):
    from transformers import AutoConfig, AutoProcessor

    a, b = build_tiny_backbone(tmp_path / "a"), build_tiny_backbone(tmp_path / "b")
    assert _files(a) == _files(b)
    assert set(_files(a)) >= {
        "config.json",
        "processor_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    }
    config = AutoConfig.from_pretrained(a)
    assert config.model_type == "smolvlm" and config.vision_config.image_size == 64
    tokenizer = AutoProcessor.from_pretrained(a).tokenizer
    for name, token in SPECIAL_TOKENS.items():  # what SmolVLA reads (e.g. tokenizer.fake_image_token_id)
        assert getattr(tokenizer, name) == token
        assert getattr(tokenizer, f"{name}_id") == tokenizer.convert_tokens_to_ids(token)
    assert config.image_token_id == tokenizer.image_token_id
    assert len(tokenizer("pick up the radio")["input_ids"]) > 0


def test_command_and_image_size(tmp_path):
    result = CliRunner().invoke(main, ["--output_dir", str(tmp_path / "bb"), "--image-size", "48"])
    assert result.exit_code == 0, result.output
    assert backbone_image_size(tmp_path / "bb") == 48
    assert json.loads((tmp_path / "bb" / "config.json").read_text())["vision_config"]["image_size"] == 48


def test_the_smolvlm2_500m_architecture_writes_the_published_sizes(tmp_path):
    result = CliRunner().invoke(
        main, ["--output-dir", str(tmp_path / "bb"), "--architecture", "smolvlm2-500m"]
    )
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "bb" / "config.json").read_text())
    text, vision = config["text_config"], config["vision_config"]
    # SmolLM2-360M text model
    assert (text["hidden_size"], text["num_hidden_layers"], text["intermediate_size"]) == (960, 32, 2560)
    assert (text["num_attention_heads"], text["num_key_value_heads"], text["head_dim"]) == (15, 5, 64)
    assert text["vocab_size"] == 49280  # the real embedding rows; the local tokenizer is smaller
    # SigLIP base patch16-512 vision tower, pixel shuffle x4: 64 image tokens per camera
    assert (vision["hidden_size"], vision["num_hidden_layers"], vision["num_attention_heads"]) == (
        768,
        12,
        12,
    )
    assert (vision["intermediate_size"], vision["image_size"], vision["patch_size"]) == (3072, 512, 16)
    assert config["scale_factor"] == 4
    assert json.loads((tmp_path / "bb" / "processor_config.json").read_text())["image_seq_len"] == 64
    assert not list((tmp_path / "bb").glob("*.safetensors"))  # config only: SmolVLA initialises at random


def test_the_default_architecture_stays_tiny(tmp_path):
    assert _files(build_tiny_backbone(tmp_path / "a")) == _files(
        build_tiny_backbone(tmp_path / "b", ARCHITECTURES["tiny"])
    )
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["text_config"]["hidden_size"] == 64 and config["vision_config"]["image_size"] == 64


@pytest.mark.slow
def test_smolvla_builds_on_the_smolvlm2_500m_architecture_with_about_450m_parameters(tmp_path):
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    from tests.benchmarks.model_bench import smolvla_config

    backbone = build_tiny_backbone(tmp_path / "bb", SMOLVLM2_500M)
    policy = SmolVLAPolicy(smolvla_config(backbone, image_size=SMOLVLM2_500M.image_size))
    params = sum(p.numel() for p in policy.parameters())
    assert 400e6 < params < 500e6, params  # SmolVLA is published as ~450 M parameters
