"""The provenance b1k-train writes into a checkpoint and b1k-serve / b1k-eval read (`schemas.provenance`):
written as before it was typed, and read from checkpoints written before its newer fields."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from deploy.eval import cli as eval_cli
from schemas.provenance import PROVENANCE_FILE
from tests.shardsets import TASKS, write_shard_set

WRITTEN_2026 = Path(__file__).parents[1] / "schemas" / "provenance" / "written_2026.json"


def _run_free(data: dict) -> dict:
    """The fields that differ between two runs of the same training: where it ran, and when."""
    for shard_set in data["sets"]:
        shard_set["location"] = "SET"
    data["load_report"]["source"] = "BACKBONE"
    data["trainer"].update(command=["b1k-train"], started="TIME")
    return data


def test_b1k_train_writes_the_provenance_it_wrote_before_it_was_typed(checkpoint_2026):
    """`written_2026.json` is what b1k-train wrote for checkpoint_2026's set and options before
    `schemas.provenance`: the same fields and values, in the same text format."""
    written = (checkpoint_2026 / PROVENANCE_FILE).read_text()
    data = json.loads(written)
    assert written == json.dumps(data, indent=2, sort_keys=True) + "\n"
    assert _run_free(data) == _run_free(json.loads(WRITTEN_2026.read_text()))


def test_a_checkpoint_written_before_tasks_and_layouts_is_evaluated_by_b1k_eval(legacy_checkpoint, tmp_path):
    write_shard_set(tmp_path / "set", episodes=4, length=10, val_episodes=(3,), horizon=8, tasks=TASKS)
    args = ["--checkpoint", legacy_checkpoint, "--shards", tmp_path / "set", "--out", tmp_path / "out"]
    args += ["--device", "cpu", "--no-progress"]
    result = CliRunner().invoke(eval_cli.main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output[-2000:]
    (entry,) = json.loads((tmp_path / "out" / "report.json").read_text())["checkpoints"]
    assert entry["frames"] == 10 and entry["action_recipe"] == "absolute/mean_std"
