"""`b1k-eval`: open-loop action error of checkpoints on held-out episodes (issue 17).

The checkpoints are `tests/deploy/conftest.py`'s (2 steps on a tiny set, tiny offline backbone): the numbers
are those of an untrained model, which is all these tests need; the alpha experiment trains its own.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from deploy.eval import cli as eval_cli
from deploy.eval.evaluate import frame_seed, select_windows
from schemas.r1pro import ACTION_SEGMENTS
from shards.codec import decode_sample
from shards.reader import iter_tar_samples, open_shard_set
from tests import shardsets
from tests.shardsets import TASKS, write_shard_set

SMOOTH_ACTION = shardsets.action_of  # the shared sets' action (the alpha experiment adds to it)


@pytest.fixture(scope="module")
def two_task_set(tmp_path_factory) -> Path:
    """checkpoint_2025's features; val = episodes 4 (task 0, 10 frames) and 5 (task 1, 12 frames)."""
    root = tmp_path_factory.mktemp("eval-set") / "set"
    write_shard_set(
        root, episodes={0: 10, 1: 10, 2: 10, 3: 10, 4: 10, 5: 12}, val_episodes=(4, 5), horizon=8, tasks=TASKS
    )
    return root


def _eval(checkpoints, shards, out, *extra) -> tuple[int, str, dict | None]:
    args = [a for c in checkpoints for a in ("--checkpoint", c)]
    args += ["--shards", shards, "--out", out, "--device", "cpu", "--no-progress", *extra]
    result = CliRunner().invoke(eval_cli.main, [str(a) for a in args], catch_exceptions=False)
    report = Path(out) / "report.json"
    return result.exit_code, result.output, json.loads(report.read_text()) if report.is_file() else None


def _assert_counts_add_up(entry: dict, frames: int, bins: int) -> None:
    assert entry["frames"] == frames
    assert [b["lo"] for b in entry["by_progress"]] == pytest.approx([i / bins for i in range(bins)])
    assert sum(b["frames"] for b in entry["by_progress"]) == frames
    assert sum(t["frames"] for t in entry["by_task"]) == frames
    assert [g for g in entry["by_group"]] == [s.name for s in ACTION_SEGMENTS]
    assert all(g["frames"] == frames for g in entry["by_group"].values())
    assert entry["by_step"][0]["frames"] == frames  # step 0 is never padded
    assert [s["frames"] for s in entry["by_step"]] == sorted(
        (s["frames"] for s in entry["by_step"]), reverse=True
    )
    assert entry["executed"]["frames"] == frames
    assert entry["overall"]["mae"] > 0 and entry["overall"]["rmse"] >= entry["overall"]["mae"]


def test_frame_counts_add_up_over_bins_tasks_and_groups_and_equal_the_split(
    checkpoint_2025, two_task_set, tmp_path
):
    """Acceptance 1, on a set with two tasks: every breakdown covers the same frames, the split's 22 (and
    exactly --max-frames of them with the option); a table, report.json and the plot are written."""
    code, output, report = _eval([checkpoint_2025], two_task_set, tmp_path / "all", "--bins", 4)
    assert code == 0, output
    assert report["frames"] == 22 and report["episodes"] == 2 and report["split"] == "val"
    for entry in (*report["checkpoints"], report["baseline"]):
        _assert_counts_add_up(entry, 22, 4)
    (entry,) = report["checkpoints"]
    assert [(t["task_index"], t["task"], t["frames"]) for t in entry["by_task"]] == [
        (0, TASKS[0], 10),
        (1, TASKS[1], 12),
    ]
    assert entry["chunk_size"] == 8 and len(entry["by_step"]) == 8
    assert (
        entry["by_step"][-1]["frames"] == 22 - 2 * 7
    )  # the last step is padded in each episode's last 7 frames
    assert entry["executed"]["mode"] == "receding" and entry["executed"]["action_steps"] == 8
    assert "MAE by progress" in output and "baseline: repeat last action" in output
    assert (tmp_path / "all" / "error_by_progress.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    code, output, report = _eval(
        [checkpoint_2025], two_task_set, tmp_path / "some", "--max_frames", 9, "--ensemble"
    )
    assert code == 0, output
    assert report["frames"] == 9 and report["max_frames"] == 9
    for entry in (*report["checkpoints"], report["baseline"]):
        _assert_counts_add_up(entry, 9, 5)
    assert report["checkpoints"][0]["executed"]["mode"] == "ensemble"
    assert {t["task_index"] for t in report["checkpoints"][0]["by_task"]} == {
        0,
        1,
    }  # both episodes have a share


def test_the_baseline_repeats_the_previous_recorded_action(checkpoint_2025, two_task_set, tmp_path):
    """The baseline's error, recomputed by hand: the chunk of frame t vs action[t-1] (action[0] at frame 0)."""
    code, output, report = _eval([checkpoint_2025], two_task_set, tmp_path)
    assert code == 0, output
    errors, executed = [], []
    samples = _val_samples(two_task_set)
    recorded = {(s["json"]["episode_index"], s["json"]["frame_index"]): s["action.npy"][0] for s in samples}
    for s in samples:
        e, f = s["json"]["episode_index"], s["json"]["frame_index"]
        held = recorded[(e, max(f - 1, 0))]
        valid = ~s["action_is_pad.npy"]
        errors.append(np.abs(s["action.npy"][valid] - held).ravel())
        executed.append(np.abs(s["action.npy"][0] - held))
    baseline = report["baseline"]
    assert baseline["overall"]["mae"] == pytest.approx(float(np.concatenate(errors).mean()), rel=1e-6)
    assert baseline["executed"]["mae"] == pytest.approx(float(np.concatenate(executed).mean()), rel=1e-6)
    assert baseline["executed"]["mae"] == pytest.approx(baseline["by_step"][0]["mae"], rel=1e-9)


def _val_samples(root: Path) -> list[dict]:
    shard_set = open_shard_set(root)
    samples = [decode_sample(raw) for url in shard_set.urls("val") for raw in iter_tar_samples(url)]
    return sorted(samples, key=lambda s: (s["json"]["episode_index"], s["json"]["frame_index"]))


def test_overall_mae_equals_lerobots_own_prediction_with_the_same_noise(
    checkpoint_2025, two_task_set, tmp_path
):
    """Acceptance 2: the overall MAE is what SmolVLAPolicy.predict_action_chunk + lerobot's processors give on
    the same frames with the same noise, computed here without deploy/ (only the noise seeds are shared)."""
    from lerobot.policies.factory import make_pre_post_processors
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    code, output, report = _eval([checkpoint_2025], two_task_set, tmp_path, "--seed", 7, "--batch-size", 5)
    assert code == 0, output
    policy = SmolVLAPolicy.from_pretrained(checkpoint_2025).eval()
    pre, post = make_pre_post_processors(policy.config, pretrained_path=str(checkpoint_2025))
    samples = _val_samples(two_task_set)
    batch = {
        key: torch.stack(
            [torch.from_numpy(s[key.split(".")[-1] + ".jpg"].copy()).permute(2, 0, 1) for s in samples]
        ).float()
        / 255
        for key in policy.config.image_features
    }
    batch["observation.state"] = torch.stack([torch.from_numpy(s["state.npy"]) for s in samples])
    batch["task"] = [s["json"]["task"] for s in samples]
    chunk, width = policy.config.chunk_size, policy.config.max_action_dim
    noise = torch.cat(
        [
            torch.randn((1, chunk, width), generator=torch.Generator().manual_seed(
                frame_seed(7, s["json"]["episode_index"], s["json"]["frame_index"])))
            for s in samples
        ]
    )  # fmt: skip
    with torch.no_grad():
        actions = post(policy.predict_action_chunk(pre(batch), noise=noise)).numpy()
    recorded = np.stack([s["action.npy"][:chunk] for s in samples])
    valid = ~np.stack([s["action_is_pad.npy"][:chunk] for s in samples])
    error = np.abs(actions - recorded)[valid]
    assert report["checkpoints"][0]["overall"]["mae"] == pytest.approx(float(error.mean()), rel=1e-5)
    assert report["checkpoints"][0]["overall"]["rmse"] == pytest.approx(
        float(np.sqrt((error**2).mean())), rel=1e-5
    )


def test_the_same_command_twice_writes_the_same_report(checkpoint_2025, two_task_set, tmp_path):
    """Acceptance 4 (with both execution modes' replays and a partial selection of frames)."""
    args = ("--max-frames", 15, "--seed", 3, "--batch-size", 4, "--action-steps", 3)
    first = _eval([checkpoint_2025, checkpoint_2025], two_task_set, tmp_path / "a", *args)
    second = _eval([checkpoint_2025, checkpoint_2025], two_task_set, tmp_path / "b", *args)
    assert first[0] == second[0] == 0, first[1] + second[1]
    assert (tmp_path / "a" / "report.json").read_bytes() == (tmp_path / "b" / "report.json").read_bytes()
    a, b = first[2]["checkpoints"]
    assert a["executed"]["action_steps"] == 3 and a["executed"]["mae"] == b["executed"]["mae"]
    assert a["overall"] == b["overall"]


def test_a_checkpoint_whose_features_do_not_match_the_set_is_refused(
    checkpoint_2025, checkpoint_2026, two_task_set, tmp_path
):
    """The 2026-layout checkpoint on a 2025-layout set, and a set with other frame sizes: one error line each,
    before any frame is evaluated."""
    code, output, _ = _eval([checkpoint_2025, checkpoint_2026], two_task_set, tmp_path / "a")
    assert code == 2 and "error: --checkpoint" in output and "r1pro-2026" in output, output
    wide = tmp_path / "wide"
    write_shard_set(wide, episodes=3, length=6, val_episodes=(2,), horizon=8, cameras=shardsets.WIDE_CAMERAS)
    code, output, _ = _eval([checkpoint_2025], wide, tmp_path / "b")
    assert code == 2 and "camera head was trained on 16x16 frames, the shard set stores 24x32" in output, (
        output
    )
    short = tmp_path / "short"
    write_shard_set(short, episodes=3, length=6, val_episodes=(2,), horizon=4)
    code, output, _ = _eval([checkpoint_2025], short, tmp_path / "c")
    assert code == 2 and "chunk size 8 is above the shard set's stored horizon 4" in output, output


def test_a_split_without_episodes_is_refused(checkpoint_2025, tmp_path):
    root = tmp_path / "noval"
    write_shard_set(root, episodes=3, length=6, horizon=8)
    code, output, _ = _eval([checkpoint_2025], root, tmp_path / "out")
    assert code == 2 and "error:" in output and "'val' split has no episodes" in output, output
    code, output, _ = _eval([tmp_path], root, tmp_path / "out")
    assert code == 2 and "error: --checkpoint" in output and "not a checkpoint" in output, output


@pytest.mark.parametrize(
    ("lengths", "max_frames", "window"),
    [
        ({0: 10, 1: 12}, 9, 3),
        ({0: 11}, 10, 3),
        ({3: 100, 7: 5, 9: 40}, 50, 8),
        ({0: 4, 1: 4}, 100, 2),
        ({0: 7}, 7, 2),
    ],
)
def test_select_windows_takes_exactly_n_frames_in_disjoint_runs_over_each_episode(
    lengths, max_frames, window
):
    chosen = select_windows(lengths, max_frames, window)
    total = sum(len(run) for runs in chosen.values() for run in runs)
    assert total == min(max_frames, sum(lengths.values()))
    for episode, runs in chosen.items():
        positions = [i for run in runs for i in run]
        assert positions == sorted(set(positions)) and positions[0] >= 0 and positions[-1] < lengths[episode]
        if max_frames < sum(lengths.values()):
            assert all(len(run) <= window for run in runs)
    if max_frames >= sum(lengths.values()):
        assert chosen == {e: [range(n)] for e, n in sorted(lengths.items())}


# ---------------------------------------------------------------------------------------------
# The controlled alpha experiment (acceptance 3)

HARD_FROM = 0.6  # the last 40% of each episode: the "pick/place" end of task 6
ALPHA_STEPS = int(os.environ.get("B1K_ALPHA_STEPS", "200"))  # optimizer steps of each model


def hard_tail_action(episode: int, frame: int, dim: int = 23) -> np.ndarray:
    """The synthetic demonstrations of the alpha experiment: the shared sets' smooth action (a slow sine of
    the frame, `shardsets.action_of`), plus, from 60% of an episode on, a fast oscillation of the frame
    (period ~2 frames, amplitude 1.5) that the model must read off the frame to predict: the late part of
    each episode is harder, as the original script says task 6's pick/place end is. Every episode of the
    experiment is 20 frames long, so progress = frame / 19."""
    base = SMOOTH_ACTION(episode, frame, dim)
    if frame / 19 < HARD_FROM:
        return base
    return (base + 1.5 * np.sin(3.1 * frame + np.arange(dim) / 3)).astype(np.float32)


def _train(shards: Path, backbone: Path, out: Path, *extra) -> Path:
    from train import cli

    args = [
        "--shards", shards, "--vlm-model", backbone, "--output-dir", out, "--batch-size", 8, "--chunk-size", 8,
        "--max-steps", ALPHA_STEPS, "--lr", 3e-3, "--warmup-steps", 3, "--num-workers", 0, "--val-every", 0,
        "--no-progress", "--log-every", 10, "--seed", 5, *extra,
    ]  # fmt: skip
    result = CliRunner().invoke(cli.main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output[-3000:]
    return out / "checkpoints" / "last" / "pretrained_model"


@pytest.mark.slow
def test_alpha_experiment_reports_the_per_bin_difference(tiny_backbone, tmp_path, monkeypatch, capsys):
    """Acceptance 3, a measurement: alpha = 4 vs alpha = 0, same data, seed and steps, evaluated on the same
    held-out episodes; the report shows the per-bin MAE of each and the difference is printed (for
    docs/evaluation.md). No assertion on which wins."""
    started = time.perf_counter()
    monkeypatch.setattr(shardsets, "action_of", hard_tail_action)
    root = tmp_path / "set"
    write_shard_set(
        root, episodes=10, length=20, val_episodes=(8, 9), horizon=8, alpha=0.0, samples_per_shard=50
    )
    monkeypatch.undo()
    runs = {}
    for alpha in (4.0, 0.0):
        out = tmp_path / f"alpha{alpha:g}"
        runs[alpha] = _train(root, tiny_backbone, out, "--temporal-alpha", alpha)
    code, output, report = _eval([runs[4.0], runs[0.0]], root, tmp_path / "eval", "--bins", 5)
    assert code == 0, output
    with_alpha, without = report["checkpoints"]
    assert [c["path"] for c in report["checkpoints"]] == [str(runs[a].resolve()) for a in (4.0, 0.0)]
    rows = [
        (f"{b['lo']:.0%}-{b['hi']:.0%}", b["mae"], c["mae"], b["mae"] - c["mae"], base["mae"])
        for b, c, base in zip(
            with_alpha["by_progress"], without["by_progress"], report["baseline"]["by_progress"], strict=True
        )
    ]
    with capsys.disabled():
        print(f"\nalpha experiment ({report['frames']} val frames, {time.perf_counter() - started:.0f} s):")
        print("bin        alpha=4   alpha=0   difference   baseline")
        for name, a, b, diff, base in rows:
            print(f"{name:<9}  {a:.4f}    {b:.4f}    {diff:+.4f}      {base:.4f}")
        print(f"overall    {with_alpha['overall']['mae']:.4f}    {without['overall']['mae']:.4f}")
    assert all(a is not None and b is not None for _, a, b, _, _ in rows)


# ---------------------------------------------------------------------------------------------
# b1k-train --eval-every, --wandb-project, curves.png


@pytest.mark.slow
def test_train_eval_every_logs_action_error_beside_val_loss_to_jsonl_wandb_and_a_png(
    two_task_set, tiny_backbone, tmp_path, monkeypatch
):
    """--eval-every 2 on 4 steps: eval records at steps 2 and 4 (the same frames each time) next to the val
    loss; the run dir gets curves.png; with --wandb-project in wandb's offline mode (no network) the run is
    written under the run dir; the last eval equals b1k-eval on the saved checkpoint with the same settings."""
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "run"
    checkpoint = _train(
        two_task_set, tiny_backbone, out, "--max-steps", 4, "--batch-size", 2, "--val-every", 2,
        "--eval-every", 2, "--eval-frames", 12, "--wandb_project", "b1k-test",
    )  # fmt: skip
    records = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [2, 4] and [r["step"] for r in records if r["kind"] == "val"] == [
        2,
        4,
    ]
    assert all(r["eval_frames"] == 12 and r["action_mae"] > 0 and r["executed_mae"] > 0 for r in evals)
    assert evals[0]["baseline_mae"] == evals[1]["baseline_mae"]  # the same frames each time
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert list((out / "wandb").glob("offline-run-*/run-*.wandb"))
    # b1k-eval ran as a program (train/ imports nothing from deploy/): step 2 on a checkpoint written for it
    # alone (deleted since), step 4 on the checkpoint saved at that step; each step's report stays
    reports = {step: json.loads((out / "eval" / str(step) / "report.json").read_text()) for step in (2, 4)}
    assert not (out / "eval" / "2" / "pretrained_model").exists()
    assert Path(reports[4]["checkpoints"][0]["path"]).resolve() == checkpoint.resolve()
    assert reports[2]["checkpoints"][0]["overall"]["mae"] == evals[0]["action_mae"]

    code, output, report = _eval(
        [checkpoint], two_task_set, tmp_path / "eval", "--max-frames", 12, "--seed", 5
    )
    assert code == 0, output
    assert report["checkpoints"][0]["overall"]["mae"] == pytest.approx(evals[-1]["action_mae"], rel=1e-5)
    assert report["checkpoints"][0]["executed"]["mae"] == pytest.approx(evals[-1]["executed_mae"], rel=1e-5)


def test_train_wandb_disable_and_a_missing_wandb(two_task_set, tiny_backbone, tmp_path, monkeypatch):
    """--wandb-disable wins over --wandb-project; without wandb installed, --wandb-project is a clear error."""
    import builtins

    out = tmp_path / "off"
    _train(two_task_set, tiny_backbone, out, "--max-steps", 1, "--wandb-project", "p", "--wandb-disable")
    assert not (out / "wandb").exists() and (out / "curves.png").is_file()
    real_import = builtins.__import__

    def no_wandb(name, *args, **kwargs):
        if name == "wandb":
            raise ImportError("No module named 'wandb'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_wandb)
    from train import cli

    args = ["--shards", two_task_set, "--vlm-model", tiny_backbone, "--output-dir", tmp_path / "on", "--max-steps", 1,
            "--num-workers", 0, "--no-progress", "--chunk-size", 8, "--wandb-project", "p"]  # fmt: skip
    result = CliRunner().invoke(cli.main, [str(a) for a in args])
    assert result.exit_code == 2 and "error: --wandb-project p: wandb is not installed" in result.output


def test_a_member_off_the_schema_is_named_not_cast(checkpoint_2025, two_task_set, tmp_path):
    """A set whose shard verifies (its manifest lists these very bytes) but whose sample holds a float64
    state: b1k-eval names the shard, the sample and the member instead of casting it."""
    import hashlib
    import shutil

    from shards.codec import encode_npy
    from shards.writer import write_tar
    from tests.shardsets import read_manifest, write_manifest

    root = tmp_path / "set"
    shutil.copytree(two_task_set, root)
    manifest = read_manifest(root)
    entry = manifest["splits"]["val"]["shards"][0]
    shard = root / entry["name"]
    raws = [
        {k: bytes(v) if isinstance(v, memoryview) else v for k, v in r.items()}
        for r in iter_tar_samples(str(shard))
    ]
    bad = raws[1]["__key__"]
    raws[1]["state.npy"] = encode_npy(np.zeros(32, np.float64))
    shard.unlink()
    write_tar(shard, ({k: v for k, v in r.items() if k != "__url__"} for r in raws))
    data = shard.read_bytes()
    entry.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    write_manifest(root, manifest)
    code, output, _ = _eval([checkpoint_2025], root, tmp_path / "out")
    assert code == 2 and "error:" in output and "Traceback" not in output
    assert f"sample {bad}: state.npy: expected float32[32], got float64[32]" in output, output
