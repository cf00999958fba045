"""`b1k-eval` per skill (issue 24): the sample json's `skill` (the annotated skill covering the frame, null
where none does; absent in sets written before skills) breaks the action error down in report.json
(`by_skill`), the printed table and a panel of the plot.

The sets are `tests.shardsets`'s with `skills=skill_of` (frame 0 of an episode unannotated, then three
skills over thirds of it); the checkpoint is `tests/deploy/conftest.py`'s `checkpoint_2025`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from deploy.eval import cli as eval_cli
from deploy.eval.report import NO_SKILL, skill_name
from shards.codec import decode_sample
from shards.reader import iter_tar_samples, open_shard_set
from tests.shardsets import TASKS, skill_of, write_shard_set

EPISODES = {0: 10, 1: 10, 2: 10, 3: 10, 4: 10, 5: 12}  # val: episodes 4 (10 frames) and 5 (12 frames)
# skill_of over the val episodes: frame 0 none; 10 frames: 1-3, 4-6, 7-9; 12 frames: 1-3, 4-7, 8-11
EXPECTED_FRAMES = [("pick up from", 7), ("place on", 7), ("move to", 6), (None, 2)]
PLOT_WITHOUT_SKILLS = (1280, 560)  # 16 x 7 inches at 80 dpi: the progress panels alone


def _write(root: Path, **kwargs) -> Path:
    write_shard_set(root, episodes=EPISODES, val_episodes=(4, 5), horizon=8, tasks=TASKS, **kwargs)
    return root


@pytest.fixture(scope="module")
def skill_set(tmp_path_factory) -> Path:
    return _write(tmp_path_factory.mktemp("eval-skills") / "set", skills=skill_of)


def _eval(checkpoints, shards, out) -> tuple[int, str, dict | None]:
    args = [a for c in checkpoints for a in ("--checkpoint", c)]
    args += ["--shards", shards, "--out", out, "--device", "cpu", "--no-progress"]
    result = CliRunner().invoke(eval_cli.main, [str(a) for a in args], catch_exceptions=False)
    report = Path(out) / "report.json"
    return result.exit_code, result.output, json.loads(report.read_text()) if report.is_file() else None


def _val_samples(root: Path) -> list[dict]:
    shard_set = open_shard_set(root)
    samples = [decode_sample(raw) for url in shard_set.urls("val") for raw in iter_tar_samples(url)]
    return sorted(samples, key=lambda s: (s["json"]["episode_index"], s["json"]["frame_index"]))


def _baseline_by_skill(samples: list[dict]) -> dict[str | None, tuple[float, float]]:
    """(MAE, RMSE) per skill of "repeat the last recorded action", by hand: the valid steps of frame t's
    chunk against the action recorded at frame t-1 (frame 0: its own)."""
    recorded = {(s["json"]["episode_index"], s["json"]["frame_index"]): s["action.npy"][0] for s in samples}
    errors: dict[str | None, list[np.ndarray]] = {}
    for s in samples:
        e, f = s["json"]["episode_index"], s["json"]["frame_index"]
        valid = ~s["action_is_pad.npy"]
        error = (s["action.npy"][valid] - recorded[(e, max(f - 1, 0))]).astype(np.float64).ravel()
        errors.setdefault(s["json"]["skill"], []).append(error)
    joined = {skill: np.concatenate(parts) for skill, parts in errors.items()}
    return {skill: (float(np.abs(e).mean()), float(np.sqrt((e**2).mean()))) for skill, e in joined.items()}


def _values(samples: list[dict], chunk: int) -> dict[str | None, int]:
    """Action values compared per skill: valid steps of the first `chunk` times the action dim."""
    out: dict[str | None, int] = {}
    for s in samples:
        steps = int((~s["action_is_pad.npy"][:chunk]).sum())
        out[s["json"]["skill"]] = out.get(s["json"]["skill"], 0) + steps * s["action.npy"].shape[1]
    return out


def test_error_per_skill_counts_the_frames_written_and_is_the_hand_computed_one(
    checkpoint_2025, skill_set, tmp_path
):
    """Two checkpoints and the baseline each get `by_skill`: frames per skill as written (the unannotated
    frames under null, last), the baseline's MAE/RMSE per skill equal to a by-hand computation, and each
    checkpoint's per-skill errors adding up to its overall error."""
    code, output, report = _eval([checkpoint_2025, checkpoint_2025], skill_set, tmp_path)
    assert code == 0, output
    samples = _val_samples(skill_set)
    assert {s["json"]["skill"] for s in samples} == {skill for skill, _ in EXPECTED_FRAMES}
    for entry in (*report["checkpoints"], report["baseline"]):
        assert [(s["skill"], s["frames"]) for s in entry["by_skill"]] == EXPECTED_FRAMES
    by_hand = _baseline_by_skill(samples)
    for row in report["baseline"]["by_skill"]:
        assert (row["mae"], row["rmse"]) == pytest.approx(by_hand[row["skill"]], rel=1e-6)
    values = _values(samples, report["checkpoints"][0]["chunk_size"])
    for entry in report["checkpoints"]:
        total = sum(values.values())
        summed = sum(row["mae"] * values[row["skill"]] for row in entry["by_skill"])
        assert summed / total == pytest.approx(entry["overall"]["mae"], rel=1e-9)
        squares = sum(row["rmse"] ** 2 * values[row["skill"]] for row in entry["by_skill"])
        assert np.sqrt(squares / total) == pytest.approx(entry["overall"]["rmse"], rel=1e-9)
    assert report["checkpoints"][0]["by_skill"] == report["checkpoints"][1]["by_skill"]


def test_the_table_and_the_plot_show_the_error_per_skill(checkpoint_2025, skill_set, tmp_path):
    """A row per skill in the printed table (frames, then each checkpoint's and the baseline's MAE) and a
    panel under the progress panels of the PNG, which makes it taller."""
    code, output, report = _eval([checkpoint_2025], skill_set, tmp_path)
    assert code == 0, output
    lines = output.splitlines()
    (header,) = [line for line in lines if line.startswith("MAE by skill")]
    assert header.split()[-4:] == ["baseline:", "repeat", "last", "action"]
    for skill, frames in EXPECTED_FRAMES:
        (row,) = [line for line in lines if line.startswith(f"{skill_name(skill)}  ")]
        baseline = next(s for s in report["baseline"]["by_skill"] if s["skill"] == skill)
        assert row.split()[-3:] == [str(frames), row.split()[-2], f"{baseline['mae']:.4f}"]
    with Image.open(tmp_path / "error_by_progress.png") as image:
        assert image.size[0] == PLOT_WITHOUT_SKILLS[0] and image.size[1] > PLOT_WITHOUT_SKILLS[1] + 100


def test_a_set_written_before_skills_still_evaluates_with_every_frame_unannotated(checkpoint_2025, tmp_path):
    """No `skill` in any json: one `by_skill` row (null) holding every frame with the overall error, a line
    instead of the table, and the plot without the skill panel."""
    old = _write(tmp_path / "old")
    assert "skill" not in _val_samples(old)[0]["json"]
    code, output, report = _eval([checkpoint_2025], old, tmp_path / "out")
    assert code == 0, output
    for entry in (*report["checkpoints"], report["baseline"]):
        ((row),) = entry["by_skill"]
        assert row == {"skill": None, "frames": 22, **entry["overall"]}
    assert "MAE by skill: no evaluated frame has a skill annotation" in output
    with Image.open(tmp_path / "out" / "error_by_progress.png") as image:
        assert image.size == PLOT_WITHOUT_SKILLS


def test_a_skill_that_is_not_a_string_or_null_is_named_not_evaluated(checkpoint_2025, tmp_path):
    bad = _write(tmp_path / "bad", skills=lambda episode, frame, length: frame)
    code, output, _ = _eval([checkpoint_2025], bad, tmp_path / "out")
    assert code == 2 and "Traceback" not in output
    assert "json: field 'skill' has type int" in output, output


def test_a_skill_is_printed_with_its_control_characters_escaped():
    """An annotation is data: an escape sequence in it must not reach the terminal as one."""
    assert skill_name("pick \x1b[2Jup\r\x07") == "pick \\x1b[2Jup\\r\\x07"
    assert skill_name("place on") == "place on" and skill_name(None) == NO_SKILL
