"""The synthetic builder's 2026 release, as published (shared/BEHAVIOR.md, "The 2026 release, as
published"): one v3.0 dataset in task chunks of which a few tasks were downloaded, global episode
indices, the 2026 camera keys as HEVC (GOP 8, no B-frames), tasks.jsonl instructions, raw episode ids,
skill annotations with the real files' quirks; and the older per-task copy. A 61-dim state holds each
quantity's 2025 code by name; every decoded frame carries its (episode, frame)."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from demo.synthetic import (
    SyntheticConfig,
    build_dataset,
    decode_frame_code,
    decode_frame_id,
    decode_state_id,
    expected_actions,
    expected_state,
    expected_states,
    main,
    render_frame,
)
from demo.synthetic.codes import expected_cam_rel_poses
from schemas.presets import TOP32_INDICES, preset_indices
from schemas.r1pro import CAMERAS_2026, LAYOUT_2025, LAYOUT_2026
from schemas.tasks import CHALLENGE_TASKS

TOP32_2026 = preset_indices("top32", LAYOUT_2026)
RGB_2026 = [c.video_key for c in CAMERAS_2026]
SUFFIXES = ["zed_link_camera_0", "left_realsense_link_camera_0", "right_realsense_link_camera_0"]
DEPTH_2026 = "observation.depth_linear.zed_link_camera_0"
TASKS = (6, 0, 51)  # three task chunks of the 100


@pytest.fixture(scope="module")
def published(synthetic_dataset):
    """Seven episodes of tasks 6, 0 and 51 (two or three demos each), two per data and per video file."""
    return synthetic_dataset(
        release="2026",
        layout="published",
        episodes=7,
        lengths=(12, 20, 9, 16),
        tasks=TASKS,
        head_size=96,
        wrist_size=64,
        episodes_per_data_file=2,
        episodes_per_video_file=2,
    )


@pytest.fixture(scope="module")
def per_task(synthetic_dataset):
    """An older per-task copy of task 51: three episodes numbered 0..2, its task numbered 0."""
    return synthetic_dataset(
        release="2026",
        layout="per-task",
        lengths=(10, 14, 8),
        tasks=(51,),
        head_size=64,
        wrist_size=64,
        depth=False,
        episodes_per_video_file=2,
    )


PICTURE_TYPES = {1: "I", 2: "P", 3: "B"}  # FFmpeg's AVPictureType


def _decode(path: Path) -> list[tuple[float, np.ndarray, str]]:
    """(time in s, RGB frame, picture type) of every frame of the file's video stream."""
    with av.open(str(path)) as container:
        return [
            (float(f.time), f.to_ndarray(format="rgb24"), PICTURE_TYPES.get(int(f.pict_type), "?"))
            for f in container.decode(container.streams.video[0])
        ]


def _rows(root: Path, episode) -> pd.DataFrame:
    table = pq.read_table(root / episode.data_file).to_pandas()
    return table[table["episode_index"] == episode.episode_index]


# ---------------------------------------------------------------------------------------------
# codes
# ---------------------------------------------------------------------------------------------


def test_a_2026_state_holds_the_2025_code_of_each_quantity_by_name():
    for episode_index, frame in [(0, 0), (2, 49), (19999, 8999)]:
        state_2025 = expected_state(episode_index, frame)
        state = expected_state(episode_index, frame, LAYOUT_2026)
        assert state.dtype == np.float32 and state.shape == (61,) and len(np.unique(state)) == 61
        for d in range(61):
            name = LAYOUT_2026.names([d])[0]
            assert state[d] == state_2025[LAYOUT_2025.names(range(256)).index(name)], name
        # top32 is the same 32 values on both releases, so every reader's check carries over
        np.testing.assert_array_equal(state[list(TOP32_2026)], state_2025[list(TOP32_INDICES)])
        assert decode_state_id(state) == (episode_index, frame)
        assert decode_state_id(state[list(TOP32_2026)]) == (episode_index, frame)
        assert decode_state_id(state[list(TOP32_2026)], TOP32_2026, LAYOUT_2026) == (episode_index, frame)
    # the 2026 indices read as 2025 indices (a reader that ignores the layout) do not decode
    with pytest.raises(ValueError, match="disagree"):
        decode_state_id(expected_state(7, 3, LAYOUT_2026)[list(TOP32_2026)], TOP32_2026)


def test_the_pixel_code_holds_every_2026_episode_index():
    for episode_index in (0, 199, 10200, 19999):
        for camera in (0, 1, 2):
            code = decode_frame_code(render_frame(episode_index, 9000, camera, 32, 32))
            assert (code.episode_index, code.frame_index, code.camera) == (episode_index, 9000, camera)


# ---------------------------------------------------------------------------------------------
# the published layout: a partial download of one dataset in task chunks
# ---------------------------------------------------------------------------------------------


def test_published_episodes_are_numbered_200_per_task_in_task_chunks(published):
    assert published.layout == "published" and published.config.layout == "published"
    assert published.episode_indices == [0, 1, 1200, 1201, 1202, 10200, 10201]
    for ep in published.episodes:
        assert ep.episode_index == 200 * ep.task_id + ep.demo and ep.task_index == ep.task_id
        assert ep.raw_episode_id == 10000 * ep.task_id + 10 * (ep.demo + 1)
        assert ep.code_index == ep.episode_index
        assert ep.task == CHALLENGE_TASKS[ep.task_id]
        assert ep.data_file.startswith(f"data/chunk-{ep.task_id:03d}/")
        for key in [*RGB_2026, DEPTH_2026]:
            assert ep.video_files[key].startswith(f"videos/{key}/chunk-{ep.task_id:03d}/")
    assert published.instructions[0] == "Turn on the radio receiver that's on the table in the living room."
    root = published.root
    assert sorted(p.relative_to(root).as_posix() for p in (root / "data").rglob("*.parquet")) == [
        "data/chunk-000/file-000.parquet",
        "data/chunk-006/file-000.parquet",
        "data/chunk-006/file-001.parquet",
        "data/chunk-051/file-000.parquet",
    ]
    assert sorted(p.relative_to(root).as_posix() for p in (root / "meta/episodes").rglob("*.parquet")) == [
        f"meta/episodes/chunk-{t:03d}/file-000.parquet" for t in (0, 6, 51)
    ]
    head = sorted(
        p.relative_to(root / "videos").as_posix() for p in (root / "videos" / RGB_2026[0]).rglob("*.mp4")
    )
    assert head == [
        f"{RGB_2026[0]}/chunk-000/file-000.mp4",
        f"{RGB_2026[0]}/chunk-006/file-000.mp4",
        f"{RGB_2026[0]}/chunk-006/file-001.mp4",
        f"{RGB_2026[0]}/chunk-051/file-000.mp4",
    ]
    assert sorted(p.name for p in (root / "videos").iterdir()) == sorted([*RGB_2026, DEPTH_2026])


def test_published_meta_describes_the_whole_release(published):
    root = published.root
    info = json.loads((root / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 30
    assert info["total_episodes"] == 20000 and info["total_tasks"] == 100
    assert info["total_frames"] > 200_000_000  # the release's, not the seven episodes'
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    features = info["features"]
    assert features["observation.state"] == {"dtype": "float32", "shape": [61], "names": None}
    assert features["action"] == {"dtype": "float32", "shape": [23], "names": None}
    for suffix in SUFFIXES:
        assert features[f"observation.robot2cam_pose.{suffix}"] == {
            "dtype": "float32",
            "shape": [7],
            "names": None,
        }
    for key in (
        "next.reward",
        "next.terminated",
        "next.truncated",
        "timestamp",
        "frame_index",
        "episode_index",
    ):
        assert features[key]["shape"] == [1]
    assert "observation.cam_rel_poses" not in features
    assert not any(k.startswith("observation.images.") for k in features)
    for key, size in zip(RGB_2026, (96, 64, 64), strict=True):
        video = features[key]
        assert video["dtype"] == "video" and video["shape"] == [size, size, 3]
        assert video["info"]["video.codec"] == "hevc" and video["info"]["video.pix_fmt"] == "yuv420p"
        assert video["info"]["video.g"] == 8 and video["info"]["video.crf"] == 30
        assert video["info"]["is_depth_map"] is False
    depth = features[DEPTH_2026]["info"]
    assert (
        depth["is_depth_map"] is True
        and depth["video.codec"] == "hevc"
        and depth["video.pix_fmt"] == "gray12le"
    )

    tasks = pd.read_parquet(root / "meta/tasks.parquet")
    assert tasks.index.name == "task" and list(tasks.index) == list(CHALLENGE_TASKS)
    assert tasks["task_index"].tolist() == list(range(100))
    rows = [json.loads(line) for line in (root / "meta/tasks.jsonl").read_text().splitlines()]
    assert [(r["task_index"], r["task_name"]) for r in rows] == list(enumerate(CHALLENGE_TASKS))
    assert rows[0]["task"] == "Turn on the radio receiver that's on the table in the living room."
    assert len({r["task"] for r in rows}) == 100 and all(r["task"].endswith(".") for r in rows)

    stats = json.loads((root / "meta/stats.json").read_text())
    assert len(stats["observation.state"]["mean"]) == 61 and stats["observation.state"]["count"] == [
        published.total_frames
    ]


def test_published_meta_episodes_name_files_ids_and_annotations(published):
    root = published.root
    by_index = {ep.episode_index: ep for ep in published.episodes}
    for task in (0, 6, 51):
        rows = pq.read_table(root / f"meta/episodes/chunk-{task:03d}/file-000.parquet").to_pylist()
        assert {r["episode_index"] // 200 for r in rows} == {task}
        for row in rows:
            ep = by_index[row["episode_index"]]
            assert row["tasks"] == [CHALLENGE_TASKS[task]] and row["length"] == ep.length
            assert (row["data/chunk_index"], row["meta/episodes/chunk_index"]) == (task, task)
            assert (row["dataset_from_index"], row["dataset_to_index"]) == (
                ep.dataset_from_index,
                ep.dataset_from_index + ep.length,
            )
            assert row["raw_episode_id"] == ep.raw_episode_id and row["task_instance_id"] == ep.demo % 10
            assert (
                row["annotation_path"] == f"annotations/task-{task:04d}/episode_{ep.raw_episode_id:08d}.json"
            )
            for key in [*RGB_2026, DEPTH_2026]:
                assert row[f"videos/{key}/chunk_index"] == task
                assert row[f"videos/{key}/from_timestamp"] == pytest.approx(ep.from_timestamps[key])
                assert row[f"videos/{key}/to_timestamp"] == pytest.approx(
                    ep.from_timestamps[key] + ep.length / 30
                )
            assert "stats/observation.state/mean" in row
    # several episodes per file, boundaries inside a chunk: task 6's three demos over two files
    six = [ep for ep in published.episodes if ep.task_id == 6]
    assert [Path(ep.data_file).name for ep in six] == [
        "file-000.parquet",
        "file-000.parquet",
        "file-001.parquet",
    ]
    assert [ep.from_timestamps[RGB_2026[0]] for ep in six] == pytest.approx([0.0, six[0].length / 30, 0.0])
    # `index` numbers the frames of the whole release: a downloaded chunk does not start at 0
    assert published.episodes[0].dataset_from_index == 0
    assert published.episode(1200).dataset_from_index > 1200 * 1000


def test_published_parquet_holds_the_codes_of_the_global_episode(published):
    for ep in published.episodes:
        rows = _rows(published.root, ep)
        n = ep.length
        assert rows["frame_index"].tolist() == list(range(n))
        assert rows["index"].tolist() == list(range(ep.dataset_from_index, ep.dataset_from_index + n))
        assert set(rows["task_index"]) == {ep.task_id}
        state = np.stack(rows["observation.state"].to_numpy())
        assert state.dtype == np.float32 and state.shape == (n, 61)
        np.testing.assert_array_equal(state, expected_states(ep.episode_index, np.arange(n), LAYOUT_2026))
        np.testing.assert_array_equal(
            np.stack(rows["action"].to_numpy()), expected_actions(ep.episode_index, range(n))
        )
        for frame, row in zip(rows["frame_index"], state[:, list(TOP32_2026)], strict=True):
            assert decode_state_id(row) == (ep.episode_index, frame)
        poses = expected_cam_rel_poses(ep.episode_index, np.arange(n))
        for camera, suffix in enumerate(SUFFIXES):
            pose = np.stack(rows[f"observation.robot2cam_pose.{suffix}"].to_numpy())
            np.testing.assert_array_equal(pose, poses[:, 7 * camera : 7 * camera + 7])
        np.testing.assert_allclose(rows["timestamp"], np.arange(n) / 30, atol=1e-6)
        assert rows["next.terminated"].tolist() == [False] * (n - 1) + [True]
        assert not rows["next.truncated"].any() and rows["next.reward"].iloc[-1] == 1.0
        assert "observation.cam_rel_poses" not in rows


def test_rgb_is_hevc_with_a_keyframe_every_8_frames_and_no_b_frames(published):
    ep = published.episode(1200)  # shares its video files with 1201
    for key in RGB_2026:
        path = published.root / ep.video_files[key]
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "hevc" and stream.pix_fmt == "yuv420p"
            assert not stream.codec_context.has_b_frames
            packets = [p for p in container.demux(stream) if p.size]
        # each episode is encoded on its own: keyframes at its start and every 8 frames after
        starts = [0, ep.length]
        expected = sorted(
            {s + k for s, m in zip(starts, (ep.length, 16), strict=True) for k in range(0, m, 8)}
        )
        assert [i for i, p in enumerate(packets) if p.is_keyframe] == expected
        assert all(p.pts == p.dts for p in packets)  # decode order is display order: no B-frames
        assert {kind for _, _, kind in _decode(path)} <= {"I", "P"}
    with av.open(str(published.root / ep.video_files[DEPTH_2026])) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "hevc" and stream.pix_fmt == "gray12le"


def test_every_decoded_frame_carries_its_episode_and_frame(published):
    """Every RGB file, decoded: each frame at an episode's from_timestamp + i / fps is frame i of it."""
    files: dict[str, list] = {}
    for ep in published.episodes:
        for key in RGB_2026:
            files.setdefault(ep.video_files[key], []).append((key, ep))
    for path, members in files.items():
        frames = _decode(published.root / path)
        assert len(frames) == sum(ep.length for _, ep in members)
        times = np.array([t for t, _, _ in frames])
        for key, ep in members:
            height, width = published.camera_sizes[key]
            for i in range(ep.length):
                position = int(np.argmin(np.abs(times - (ep.from_timestamps[key] + i / 30))))
                assert abs(times[position] - ep.from_timestamps[key] - i / 30) < 1e-3
                image = frames[position][1]
                assert image.shape == (height, width, 3)
                code = decode_frame_code(image)
                assert (code.episode_index, code.frame_index, code.camera) == (
                    ep.episode_index,
                    i,
                    RGB_2026.index(key),
                )


# ---------------------------------------------------------------------------------------------
# skill annotations
# ---------------------------------------------------------------------------------------------


def _read_skills(path: Path, length: int) -> tuple[list[str | None], dict[str, int]]:
    """An independent reading of one annotation file: the first listed valid span wins; quirks counted."""
    quirks = dict.fromkeys(("missing", "nested", "empty", "null"), 0)
    per_frame: list[str | None] = [None] * length
    if not path.is_file():
        quirks["missing"] += 1
        return per_frame, quirks
    for entry in json.loads(path.read_text())["skill_annotation"]:
        duration = entry["frame_duration"] if entry else None
        if duration is None:
            quirks["null"] += 1
            continue
        if isinstance(duration[0], list):
            quirks["nested"] += 1
        for start, end in duration if isinstance(duration[0], list) else [duration]:
            if end <= start:
                quirks["empty"] += 1
            for frame in range(start, min(end, length)):
                per_frame[frame] = per_frame[frame] or entry["skill_description"][0]
    return per_frame, quirks


def test_published_annotations_follow_the_release_format_with_its_quirks(published):
    root = published.root
    totals = dict.fromkeys(("missing", "nested", "empty", "null"), 0)
    for ep in published.episodes:
        path = root / f"annotations/task-{ep.task_id:04d}/episode_{ep.raw_episode_id:08d}.json"
        assert ep.annotation_file == path.relative_to(root).as_posix()
        per_frame, quirks = _read_skills(path, ep.length)
        assert per_frame == published.expected_skills(ep.episode_index)
        assert [published.expected_skill(ep.episode_index, i) for i in range(ep.length)] == per_frame
        totals = {k: totals[k] + quirks[k] for k in totals}
        if not path.is_file():
            continue
        document = json.loads(path.read_text())
        assert document["task_name"] == CHALLENGE_TASKS[ep.task_id].replace("_", " ")
        assert document["meta_data"]["task_duration"] == ep.length and document["primitive_annotation"] == []
        for entry in document["skill_annotation"]:
            assert set(entry) == {
                "skill_idx", "skill_id", "skill_description", "object_id", "manipulating_object_id",
                "memory_prefix", "spatial_prefix", "frame_duration", "mp_ef", "skill_type",
            }  # fmt: skip
            assert entry["skill_description"][0] in ("move to", "pick up from", "place on", "open door")
        # most frames have a skill, the last one none
        assert sum(s is not None for s in per_frame) >= ep.length * 0.8 and per_frame[-1] is None
    assert totals == published.skill_quirks() == {"missing": 1, "nested": 2, "empty": 2, "null": 1}
    assert not (root / published.episodes[-1].annotation_file).exists()  # the last one is missing
    summary = pd.read_csv(root / "annotations/skill_summary.csv")
    assert list(summary.columns) == ["skill_id", "skill_description", "skill_type", "segments", "frames"]
    assert summary["frames"].sum() == sum(
        s is not None for ep in published.episodes for s in published.expected_skills(ep.episode_index)
    )


def test_overlapping_skills_give_the_first_listed_one(published):
    ep = published.episodes[0]  # ordinal 0: the first skill runs 2 frames into the second
    entries = published.annotations[ep.episode_index].entries
    first_end, (second_start, _) = entries[0]["frame_duration"][1], entries[1]["frame_duration"][0]
    assert first_end > second_start
    skills = published.expected_skills(ep.episode_index)
    assert skills[second_start:first_end] == [entries[0]["skill_description"][0]] * (first_end - second_start)
    assert skills[first_end] == entries[1]["skill_description"][0] != entries[0]["skill_description"][0]


# ---------------------------------------------------------------------------------------------
# the older per-task copy
# ---------------------------------------------------------------------------------------------


def test_a_per_task_copy_numbers_its_episodes_from_0_and_its_task_0(per_task):
    root = per_task.root
    assert per_task.episode_indices == [0, 1, 2] and {ep.task_index for ep in per_task.episodes} == {0}
    assert [ep.code_index for ep in per_task.episodes] == [10200, 10201, 10202]  # the release's identity
    assert [ep.raw_episode_id for ep in per_task.episodes] == [510010, 510020, 510030]
    info = json.loads((root / "meta/info.json").read_text())
    assert (info["total_episodes"], info["total_tasks"], info["total_frames"]) == (3, 1, 32)
    assert RGB_2026[0] in info["features"] and info["features"][RGB_2026[0]]["info"]["video.codec"] == "hevc"
    assert pd.read_parquet(root / "meta/tasks.parquet")["task_index"].to_dict() == {"cook_a_brisket": 0}
    rows = [json.loads(line) for line in (root / "meta/tasks.jsonl").read_text().splitlines()]
    assert rows == [{"task_index": 0, "task_name": "cook_a_brisket", "task": per_task.instructions[0]}]
    episodes = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [(e["episode_index"], e["raw_episode_id"], e["dataset_from_index"]) for e in episodes] == [
        (0, 510010, 0),
        (1, 510020, 10),
        (2, 510030, 24),
    ]
    assert [e["annotation_path"] for e in episodes] == [
        f"annotations/task-0051/episode_{raw:08d}.json" for raw in (510010, 510020, 510030)
    ]
    assert (root / "annotations/task-0051/episode_00510010.json").is_file()
    for ep in per_task.episodes:
        rows = _rows(root, ep)
        assert set(rows["task_index"]) == {0}
        np.testing.assert_array_equal(np.stack(rows["observation.state"].to_numpy()), ep.states())
        assert decode_state_id(ep.states()[3]) == (ep.code_index, 3)


def test_lerobot_opens_a_per_task_copy(per_task):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    dataset = LeRobotDataset("local/b1k-cook_a_brisket", root=per_task.root, video_backend="pyav")
    assert len(dataset) == per_task.total_frames
    for ep in per_task.episodes:
        for i in (0, ep.length - 1):
            item = dataset[ep.dataset_from_index + i]
            assert int(item["episode_index"]) == ep.episode_index and item["task"] == "cook_a_brisket"
            for key in RGB_2026:
                assert decode_frame_id(item[key].numpy()) == (ep.code_index, i)


# ---------------------------------------------------------------------------------------------
# config and command line
# ---------------------------------------------------------------------------------------------


def test_layouts_by_release(tmp_path):
    assert SyntheticConfig(release="2026").layout == "published"
    assert SyntheticConfig().layout == "v3.0"
    with pytest.raises(ValueError, match=r"2026 release comes in the layouts published, per-task, v3\.0"):
        SyntheticConfig(layout="v2.1", release="2026")
    with pytest.raises(ValueError, match=r"2025 release comes in the layouts v3\.0, v2\.1"):
        SyntheticConfig(layout="published")
    with pytest.raises(ValueError, match="per-task copy holds one task"):
        SyntheticConfig(release="2026", layout="per-task", tasks=(0, 6))
    with pytest.raises(ValueError, match="release must be one of"):
        SyntheticConfig(release="2027")
    result = CliRunner().invoke(
        main, ["--output-dir", str(tmp_path / "ds"), "--layout", "v2.1", "--release", "2026"]
    )
    assert result.exit_code != 0 and "comes in the layouts" in result.output
    assert not (tmp_path / "ds" / "meta").exists()
    help_text = CliRunner().invoke(main, ["--help"]).output
    assert "--release [2025|2026]" in help_text and "published" in help_text and "per-task" in help_text


def test_cli_writes_a_partial_download_by_evaluator_task_ids(tmp_path):
    out = tmp_path / "ds"
    args = ["--output-dir", str(out), "--release", "2026", "--tasks", "0,6", "--lengths", "9,10"]
    args += ["--head-size", "64", "--wrist-size", "64", "--no-depth"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert (out / "data/chunk-006/file-000.parquet").is_file() and (
        out / "data/chunk-000/file-000.parquet"
    ).is_file()
    assert "published" in result.output and "2 episodes (0:9, 1200:10)" in result.output
    assert not (out / "videos" / DEPTH_2026).exists()


def test_the_published_build_is_deterministic(tmp_path):
    config = SyntheticConfig(
        release="2026", lengths=(5, 7), tasks=(6, 3), head_size=64, wrist_size=64, depth=False
    )
    first, second = build_dataset(tmp_path / "a", config), build_dataset(tmp_path / "b", config)
    for rel in (
        "meta/info.json",
        "meta/stats.json",
        "meta/tasks.parquet",
        "meta/tasks.jsonl",
        "data/chunk-006/file-000.parquet",
        "meta/episodes/chunk-003/file-000.parquet",
        "annotations/task-0003/episode_00030010.json",
        "annotations/skill_summary.csv",
    ):
        assert (first.root / rel).read_bytes() == (second.root / rel).read_bytes(), rel
