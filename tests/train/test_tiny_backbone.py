"""The tiny offline SmolVLM backbone: deterministic, complete enough for SmolVLA, exposed as a command."""

from __future__ import annotations

import json

from click.testing import CliRunner

from train.tiny_backbone import SPECIAL_TOKENS, backbone_image_size, build_tiny_backbone, main


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
