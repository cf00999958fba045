"""Acceptance 3: every error exits non-zero with a message naming the file/episode/frame/field and what
was expected, and leaves nothing half-written that looks complete."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from preprocess.cli import main
from tests.preprocess.helpers import read_set

BAD = 60010  # the episode the tests break (v2.1 numbering: task 6, second episode)


@pytest.fixture(scope="module")
def small(synthetic_dataset):
    # v2.1: episodes 10000 (12 frames), 60000 (20), 60010 (16), 60020 (9)
    return synthetic_dataset(layout="v2.1", lengths=(12, 20, 16, 9), tasks=(1, 6, 6, 6), depth=False)


@pytest.fixture
def dataset(small, tmp_path) -> Path:
    root = tmp_path / "ds"
    shutil.copytree(small.root, root)
    return root


def cli(dataset: Path, out: Path, *args: str):
    runner = CliRunner()
    return runner.invoke(
        main,
        [
            "--dataset-path",
            str(dataset),
            "--output-dir",
            str(out),
            "--workers",
            "1",
            "--no-progress",
            "--horizon",
            "5",
            *args,
        ],
        catch_exceptions=False,
    )


def assert_fails(result, *fragments: str) -> str:
    assert result.exit_code != 0, result.output
    text = result.output
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} not in:\n{text}"
    return text


def assert_nothing_complete(out: Path) -> None:
    assert not (out / "manifest.json").exists()
    assert not list(out.glob("*.tar")), "a final shard was left behind"


def rewrite_parquet(path: Path, column: str, change) -> None:
    table = pq.read_table(path)
    values = np.array(table.column(column).to_pylist(), dtype=np.float32)
    values = change(values)
    array = pa.array(list(values), type=pa.list_(pa.float32()))
    table = table.set_column(table.column_names.index(column), column, array)
    pq.write_table(table, path)


def episode_parquet(root: Path, episode: int) -> Path:
    return root / f"data/task-{episode // 10000:04d}/episode_{episode:08d}.parquet"


def episode_video(root: Path, episode: int, camera: str = "head") -> Path:
    return (
        root / f"videos/task-{episode // 10000:04d}/observation.images.rgb.{camera}/episode_{episode:08d}.mp4"
    )


def test_missing_info_json(dataset, tmp_path):
    (dataset / "meta/info.json").unlink()
    result = cli(dataset, tmp_path / "out")
    assert_fails(result, "meta/info.json", "missing")


def test_unknown_codebase_version(dataset, tmp_path):
    info = json.loads((dataset / "meta/info.json").read_text())
    info["codebase_version"] = "v1.6"
    (dataset / "meta/info.json").write_text(json.dumps(info))
    assert_fails(
        cli(dataset, tmp_path / "out"), "meta/info.json", "unknown codebase_version 'v1.6'", "v2.1", "v3.0"
    )
    del info["codebase_version"]
    (dataset / "meta/info.json").write_text(json.dumps(info))
    assert_fails(cli(dataset, tmp_path / "out"), "meta/info.json", "missing 'codebase_version'")


def test_missing_camera_video(dataset, tmp_path):
    path = episode_video(dataset, BAD, "left_wrist")
    path.unlink()
    out = tmp_path / "out"
    assert_fails(
        cli(dataset, out),
        str(path),
        "missing camera video",
        "observation.images.rgb.left_wrist",
        f"episode {BAD}",
    )
    assert_nothing_complete(out)


def test_video_with_fewer_frames_than_the_parquet(dataset, tmp_path):
    path = episode_video(dataset, BAD, "right_wrist")
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    keep = 11  # of 16
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libsvtav1", 30)
        stream.pix_fmt = "yuv420p"
        stream.height, stream.width = frames[0].shape[:2]
        for rgb in frames[:keep]:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())
    out = tmp_path / "out"
    text = assert_fails(
        cli(dataset, out),
        str(path),
        "fewer frames than the parquet",
        f"episode {BAD}",
        "expected 16 frames",
        f"first missing frame is {keep}",
    )
    assert "decoded 11" in text
    assert_nothing_complete(out)


def test_state_not_256_dims_in_info(dataset, tmp_path):
    info = json.loads((dataset / "meta/info.json").read_text())
    info["features"]["observation.state"]["shape"] = [200]
    (dataset / "meta/info.json").write_text(json.dumps(info))
    assert_fails(
        cli(dataset, tmp_path / "out"),
        "meta/info.json",
        "'observation.state'",
        "[200]",
        "expected [256]",
        "top32",
    )


def test_state_not_256_dims_in_an_episode(dataset, tmp_path):
    path = episode_parquet(dataset, BAD)
    rewrite_parquet(path, "observation.state", lambda v: v[:, :200])
    out = tmp_path / "out"
    assert_fails(
        cli(dataset, out), str(path), f"episode {BAD}", "'observation.state'", "has 200 dims", "expected 256"
    )
    assert_nothing_complete(out)


@pytest.mark.parametrize(
    ("column", "frame", "dim", "value"),
    [("observation.state", 7, 160, np.nan), ("action", 3, 22, np.inf)],
)
def test_non_finite_values(dataset, tmp_path, column, frame, dim, value):
    path = episode_parquet(dataset, BAD)

    def poison(v):
        v[frame, dim] = value
        return v

    rewrite_parquet(path, column, poison)
    out = tmp_path / "out"
    assert_fails(
        cli(dataset, out),
        str(path),
        f"episode {BAD} frame {frame}",
        f"field {column!r} dim {dim}",
        str(value),
        "finite",
    )
    assert_nothing_complete(out)


def test_skip_bad_episodes_records_them(dataset, tmp_path):
    path = episode_parquet(dataset, BAD)

    def poison(v):
        v[7, 160] = np.nan
        return v

    rewrite_parquet(path, "observation.state", poison)
    out = tmp_path / "out"
    result = cli(dataset, out, "--skip-bad-episodes")
    assert result.exit_code == 0, result.output
    assert f"skipping episode {BAD}" in result.output
    manifest, splits = read_set(out)
    assert [s["episode_index"] for s in manifest["skipped_episodes"]] == [BAD]
    assert "frame 7" in manifest["skipped_episodes"][0]["reason"]
    assert BAD not in manifest["splits"]["train"]["episodes"]
    assert not [k for k in splits["train"] if k.startswith(f"e{BAD:08d}")]
    assert manifest["stats"]["action"]["count"] == 12 + 20 + 9


def test_nan_in_an_unselected_state_dim_is_fine(dataset, tmp_path):
    def poison(v):
        v[2, 120] = np.nan  # joint_qeffort, not in top32
        return v

    rewrite_parquet(episode_parquet(dataset, BAD), "observation.state", poison)
    result = cli(dataset, tmp_path / "out")
    assert result.exit_code == 0, result.output


def test_non_empty_output_dir(dataset, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert_fails(cli(dataset, out), str(out), "not empty", "--overwrite", "--resume")
    # --overwrite never deletes what this tool did not write
    assert_fails(cli(dataset, out, "--overwrite"), "notes.txt", "did not write")
    assert (out / "notes.txt").read_text() == "mine"
    (out / "notes.txt").unlink()
    assert cli(dataset, out).exit_code == 0
    assert_fails(cli(dataset, out), "not empty")
    result = cli(dataset, out, "--overwrite", "--jpeg-quality", "80")
    assert result.exit_code == 0, result.output
    assert read_set(out)[0]["cameras"]["head"]["quality"] == 80


def test_overwrite_that_fails_leaves_the_previous_set_good(dataset, tmp_path):
    """--overwrite builds the new set beside the old one: a run that fails (here a NaN in a used state
    dim) leaves the previous set exactly as it was; one that succeeds replaces it whole."""
    out = tmp_path / "out"
    assert cli(dataset, out).exit_code == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def poison(v):
        v[2, 160] = np.nan  # arm_left_qpos_2: in top32
        return v

    broken = tmp_path / "broken"
    shutil.copytree(dataset, broken)
    rewrite_parquet(episode_parquet(broken, BAD), "observation.state", poison)
    assert_fails(cli(broken, out, "--overwrite", "--jpeg-quality", "80"), f"episode {BAD}", "is nan")
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert {k: v for k, v in after.items() if k.parts[0] != ".work"} == before
    assert read_set(out)[0]["cameras"]["head"]["quality"] == 90  # verifies: sizes, sha256, samples
    result = cli(dataset, out, "--overwrite", "--jpeg-quality", "80")
    assert result.exit_code == 0, result.output
    manifest, _ = read_set(out)
    assert manifest["cameras"]["head"]["quality"] == 80
    names = {s["name"] for split in manifest["splits"].values() for s in split["shards"]}
    assert {p.name for p in out.glob("*.tar")} == names and not (out / ".work").exists()


def test_resume_with_other_options(dataset, tmp_path):
    out = tmp_path / "out"
    assert cli(dataset, out).exit_code == 0
    assert_fails(
        cli(dataset, out, "--resume", "--jpeg-quality", "70"), "--resume", "jpeg_quality: was 90, now 70"
    )


def test_bad_option_values(dataset, tmp_path):
    assert_fails(cli(dataset, tmp_path / "o1", "--episodes", "5"), "--episodes [5] are not in")
    assert_fails(cli(dataset, tmp_path / "o2", "--val-episodes", "99"), "--val-episodes [99]")
    assert_fails(cli(dataset, tmp_path / "o3", "--partition", "2/2"), "--partition '2/2'", "0 <= K < N")
    assert_fails(cli(dataset, tmp_path / "o4", "--image-size", "big"), "--image-size 'big'")
    assert_fails(cli(dataset, tmp_path / "o5", "--state-indices", "300"), "300", "outside")
    assert_fails(
        cli(dataset, tmp_path / "o6", "--val-fraction", "0.5", "--val-episodes", "60000"), "exclusive"
    )


def test_worker_errors_reach_the_parent(dataset, tmp_path):
    """With a process pool, a failing episode stops the run with its message (no hung pool)."""

    def poison(v):
        v[3, 22] = np.nan
        return v

    path = episode_parquet(dataset, BAD)
    rewrite_parquet(path, "action", poison)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "preprocess.cli", "--dataset-path", str(dataset), "--output-dir", str(out),
               "--workers", "2", "--no-progress", "--horizon", "5"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert f"{path}: episode {BAD} frame 3 field 'action' dim 22 is nan" in result.stderr
    assert_nothing_complete(out)


def test_help_lists_every_option_with_both_spellings():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for option in (
        "--dataset-path", "--dataset_path", "--output-dir", "--state-preset", "--state-indices", "--filter-state",
        "--horizon", "--temporal-alpha", "--image-size", "--jpeg-quality", "--frame-stride", "--episodes",
        "--val-episodes", "--val-fraction", "--seed", "--workers", "--shard-max-bytes", "--shard-max-samples",
        "--partition", "--overwrite", "--resume", "--skip-bad-episodes",
    ):  # fmt: skip
        assert option in result.output, option
    assert "default: 50" in result.output and "max512" in result.output


def test_progress_and_summary_lines(dataset, tmp_path):
    result = cli(dataset, tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "episodes 4/4, frames 57/57" in result.output and "frames/s, ETA" in result.output
    assert "done: 4 episodes, 57 frames -> 57 samples in 1 shards" in result.output
    assert "B/frame of source RGB video" in result.output
    totals = read_set(tmp_path / "out")[0]["totals"]
    assert totals["frames"] == 57 and totals["source_video_bytes_per_frame"] > 0


HOLD_LOCK = """
import sys, time
from shards.lock import FolderLock
FolderLock(sys.argv[1], "b1k-preprocess").acquire()
print("locked", flush=True)
time.sleep(600)
"""


def test_a_second_run_on_a_locked_folder_names_the_holder_and_a_killed_holders_lock_is_taken_over(
    dataset, tmp_path, caplog
):
    """Two runs on one folder (a requeued cluster job): the second stops at once, naming the first, and
    touches nothing; once the first is killed (-9: no clean-up), its lock is stale and a run takes it over."""
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        text = assert_fails(
            cli(dataset, out, "--resume"), f"{out} is in use by b1k-preprocess (pid {holder.pid} on"
        )
        assert "error:" in text and "Traceback" not in text
        assert sorted(p.name for p in out.iterdir()) == [".b1k-lock"]  # nothing written or removed
    finally:
        holder.kill()
        holder.wait()
    with caplog.at_level("WARNING", logger="shards.lock"):
        result = cli(dataset, out)
    assert result.exit_code == 0, result.output
    assert f"taking over the lock of b1k-preprocess (pid {holder.pid}" in caplog.text
    assert (out / "manifest.json").is_file() and not (out / ".b1k-lock").exists()


def test_a_full_disk_in_the_final_stage_is_one_error_line_and_the_previous_set_stays(
    dataset, tmp_path, monkeypatch
):
    """ENOSPC while the shards are written (injected: a real full disk cannot be had in a test) ends in
    one `error:` line naming the file and what to do; --overwrite's previous set is untouched; --debug
    shows the traceback instead."""
    import errno

    from preprocess import final_stage

    out = tmp_path / "out"
    assert cli(dataset, out).exit_code == 0
    before = read_set(out)[0]

    def full(path, samples):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(final_stage, "write_tar", full)
    result = CliRunner().invoke(
        main, ["--dataset-path", str(dataset), "--output-dir", str(out), "--workers", "1", "--no-progress",
               "--horizon", "5", "--overwrite", "--jpeg-quality", "70"],
    )  # fmt: skip
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    lines = [line for line in result.output.splitlines() if "error:" in line]
    assert len(lines) == 1 and "No space left on device; the disk is full" in lines[0] and ".tar" in lines[0]
    assert "Traceback" not in result.output
    assert read_set(out)[0] == before
    debug = CliRunner().invoke(
        main, ["--dataset-path", str(dataset), "--output-dir", str(out), "--workers", "1", "--no-progress",
               "--horizon", "5", "--overwrite", "--debug"],
    )  # fmt: skip
    assert isinstance(debug.exception, OSError)


def test_v30_metadata_without_a_task_list_or_an_episode_column_is_named(synthetic_v30, tmp_path):
    """A v3.0 dataset whose meta/tasks.parquet is missing, or whose episode metadata lacks a column an
    episode needs, is refused naming the file (and the columns)."""
    from preprocess.source import SourceDataset, SourceError

    root = tmp_path / "ds"
    shutil.copytree(synthetic_v30.root, root)
    meta = sorted((root / "meta" / "episodes").glob("**/*.parquet"))[0]
    table = pq.read_table(meta)
    pq.write_table(table.drop(["length"]), meta)
    with pytest.raises(SourceError, match=r"episode metadata lacks columns \['length'\]") as info:
        SourceDataset(root)
    assert str(meta) in str(info.value)
    (root / "meta" / "tasks.parquet").unlink()
    with pytest.raises(SourceError, match=r"tasks\.parquet: missing \(v3\.0 task list\)"):
        SourceDataset(root)
