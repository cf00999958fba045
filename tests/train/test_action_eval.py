"""`b1k-train --eval-every`'s evaluator (`train.action_eval`): b1k-eval run as a program on a checkpoint, its
report read back into the eval log record. The end-to-end run (records at each eval step equal to b1k-eval
on the saved checkpoint) is tests/deploy/eval/test_eval.py's."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from train.action_eval import ActionEval, eval_record
from train.config import TrainError


def _evaluator(tmp_path: Path, **extra) -> ActionEval:
    return ActionEval("/sets/a", tmp_path / "run", frames=12, batch_size=4, seed=5, **extra)


def test_the_command_is_b1k_eval_on_the_val_split_with_the_runs_seed_and_frames(tmp_path):
    command = _evaluator(tmp_path, vlm_model="/models/tiny").command(Path("/ck/pretrained_model"), 40, "cpu")
    assert command[:3] == [sys.executable, "-m", "deploy.eval.cli"]
    options = dict(zip(command[3:-3:2], command[4:-3:2], strict=True))
    assert options == {
        "--checkpoint": "/ck/pretrained_model",
        "--shards": "/sets/a",
        "--split": "val",
        "--out": str(tmp_path / "run" / "eval" / "40"),
        "--seed": "5",
        "--max-frames": "12",
        "--batch-size": "4",
        "--device": "cpu",
    }
    assert command[-3:] == ["--no-progress", "--vlm-model", "/models/tiny"]


def test_the_record_holds_the_fields_the_in_memory_evaluator_logged():
    group = {"frames": 3, "mae": 0.5, "rmse": 0.6}
    entry = {
        "frames": 3,
        "overall": {"mae": 1.0, "rmse": 2.0},
        "executed": {"mae": 1.5, "rmse": 2.5},
        "by_group": {"base": group, "torso": {**group, "mae": 0.25}},
        "by_progress": [{"mae": 0.1}, {"mae": None}],
    }
    report = {"checkpoints": [entry], "baseline": {"overall": {"mae": 3.0, "rmse": 4.0}}}
    assert eval_record(report, 7) == {
        "kind": "eval",
        "step": 7,
        "eval_frames": 3,
        "action_mae": 1.0,
        "action_rmse": 2.0,
        "executed_mae": 1.5,
        "baseline_mae": 3.0,
        "action_mae_base": 0.5,
        "action_mae_torso": 0.25,
        "action_mae_bin0": 0.1,
        "action_mae_bin1": None,
    }


def test_a_failing_b1k_eval_stops_the_run_with_its_output(tmp_path):
    """Not a checkpoint: b1k-eval's own error line comes back in the TrainError, its whole output in the
    step's b1k-eval.log."""
    evaluator = _evaluator(tmp_path)
    (tmp_path / "run" / "eval" / "3").mkdir(parents=True)
    (tmp_path / "run" / "eval" / "3" / "report.json").write_text("{}")  # an interrupted run's: not this one
    with pytest.raises(TrainError, match=r"b1k-eval of step 3 failed \(exit 2\)") as caught:
        evaluator(tmp_path / "nowhere", 3, "cpu")
    log = tmp_path / "run" / "eval" / "3" / "b1k-eval.log"
    assert "error:" in log.read_text() and "error:" in str(caught.value) and str(log) in str(caught.value)
    assert not (tmp_path / "run" / "eval" / "3" / "report.json").exists()
