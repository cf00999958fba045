"""b1k-train's options declared once (`train.config.TrainConfig`), `--config FILE` (YAML or JSON, the
command line overriding it) and the run's record of its resolved options."""

from __future__ import annotations

import dataclasses
import json

import pytest
import yaml
from click.testing import CliRunner

from train import cli
from train import loop as loop_mod
from train.config import TRAIN_CONFIG_FILE, TrainConfig


def parse_only(monkeypatch) -> dict:
    """From now on b1k-train puts its parsed `TrainConfig` in the dict returned, instead of running."""
    seen: dict = {}

    def fake_train(cfg):
        seen["cfg"] = cfg
        return loop_mod.TrainResult(step=0, last_checkpoint=None)

    monkeypatch.setattr(loop_mod, "train", fake_train)
    return seen


@pytest.fixture
def seen(monkeypatch) -> dict:
    return parse_only(monkeypatch)


def invoke(*args):
    return CliRunner().invoke(cli.main, [str(a) for a in args])


def test_every_field_is_an_option_in_field_order_with_its_default():
    options = [p for p in cli.main.params if p.name not in ("config", "verbose", "debug")]
    fields = dataclasses.fields(TrainConfig)
    assert [p.name for p in options] == [f.name for f in fields]
    defaults = TrainConfig(shards=["x"])
    for option in options:
        if option.name == "relative_groups":
            assert option.default.split(",") == defaults.relative_groups
        elif option.name != "shards":
            assert option.default == getattr(defaults, option.name), option.name


def test_a_yaml_file_gives_the_options_and_the_command_line_overrides_it(seen, tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        "shards: /data/a@2\n"  # one set, as a string
        "batch-size: 3\n"  # spelled with '-' ...
        "max_steps: 7\n"  # ... or '_'
        "lr: 1e-5\n"
        "save_steps: 4\n"  # the original script's name
        "relative_groups: [torso, left_arm]\n"
        "freeze_vision: false\n"
        "pretrained_model: null\n"
        "vlm_model: /models/tiny\n"
        "output_dir: /runs/a\n"
    )
    result = invoke("--config", path, "--max-steps", 9)
    assert result.exit_code == 0, result.output
    cfg = seen["cfg"]
    assert cfg.shards == ["/data/a@2"] and cfg.batch_size == 3 and cfg.lr == 1e-5 and cfg.save_every == 4
    assert cfg.max_steps == 9  # the command line wins
    assert cfg.relative_groups == ["torso", "left_arm"] and cfg.freeze_vision is False
    assert (
        cfg.pretrained_model is None and cfg.vlm_model == "/models/tiny" and str(cfg.output_dir) == "/runs/a"
    )
    assert cfg.chunk_size == TrainConfig(shards=["x"]).chunk_size  # not in the file: the default


def test_a_json_file_works_the_same_and_shards_on_the_command_line_replace_the_files(seen, tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"shards": ["a", "b@3"], "--num-workers": 2, "task_balance": True}))
    assert invoke("--config", path).exit_code == 0
    assert seen["cfg"].shards == ["a", "b@3"] and seen["cfg"].num_workers == 2 and seen["cfg"].task_balance
    assert invoke("--config", path, "--shards", "c").exit_code == 0
    assert seen["cfg"].shards == ["c"]


def test_vlm_model_alone_in_a_file_means_no_smolvla_weights_unless_the_file_names_them(seen, tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("shards: a\nvlm_model: /models/tiny\n")
    assert invoke("--config", path).exit_code == 0 and seen["cfg"].pretrained_model is None
    path.write_text("shards: a\nvlm_model: /models/tiny\npretrained_model: me/smolvla\n")
    assert invoke("--config", path).exit_code == 0 and seen["cfg"].pretrained_model == "me/smolvla"


def test_unknown_keys_are_refused_naming_each(seen, tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("shards: a\nbatch_size: 4\nlearning_rate: 1e-4\nnum-gpus: 2\n")
    result = invoke("--config", path)
    assert result.exit_code == 2 and "cfg" not in seen
    assert "unknown options learning_rate, num-gpus" in result.output


def test_a_value_of_a_file_is_checked_like_the_command_lines(seen, tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("shards: a\nbatch_size: 0\n")
    result = invoke("--config", path)
    assert result.exit_code == 2 and "--batch-size" in result.output and "x>=1" in result.output
    path.write_text("- shards\n- a\n")
    result = invoke("--config", path)
    assert result.exit_code == 2 and "expected a mapping of options, got list" in result.output
    path.write_text("shards: [a\n")
    assert invoke("--config", path).exit_code == 2 and "cfg" not in seen


def test_the_run_records_its_resolved_options_before_the_first_step_and_they_run_again(
    small_set, tiny_backbone, tmp_path, monkeypatch
):
    out = tmp_path / "run"
    first_step = loop_mod.train_step
    at_first_step = {}

    def train_step(run, step):
        at_first_step.setdefault("record", json.loads((out / TRAIN_CONFIG_FILE).read_text()))
        return first_step(run, step)

    monkeypatch.setattr(loop_mod, "train_step", train_step)
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "shards": str(small_set),
                "vlm_model": str(tiny_backbone),
                "output_dir": str(out),
                "batch_size": 4,
            }
        )
    )
    args = ["--config", config, "--max-steps", 1, "--chunk-size", 8, "--val-every", 0, "--num-workers", 0]
    result = CliRunner().invoke(cli.main, [str(a) for a in [*args, "--no-progress"]], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    record = json.loads((out / TRAIN_CONFIG_FILE).read_text())
    assert at_first_step["record"] == record
    assert record["shards"] == [str(small_set)] and record["pretrained_model"] is None  # resolved
    assert record["max_steps"] == 1 and record["batch_size"] == 4 and record["world_size"] == 1
    saved = json.loads((out / "checkpoints/000001/pretrained_model" / TRAIN_CONFIG_FILE).read_text())
    assert saved == record  # the checkpoint's copy is the same record

    seen = parse_only(monkeypatch)  # the record, read back as a --config file, is the same run
    assert invoke("--config", out / TRAIN_CONFIG_FILE).exit_code == 0
    assert seen["cfg"].to_json() == {k: v for k, v in record.items() if k != "world_size"}
