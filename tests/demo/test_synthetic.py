"""The synthetic BEHAVIOR builder writes what shared/BEHAVIOR.md and lerobot 0.6.1 say, in both layouts,
and its alignment codes (pixels, state, action) can be read back."""

from __future__ import annotations

import io
import json
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from PIL import Image

from demo.synthetic import (
    CAMERA_CODES,
    DEPTH_KEY,
    RGB_KEYS,
    SyntheticConfig,
    build_dataset,
    decode_frame_code,
    decode_frame_id,
    decode_state_id,
    expected_action,
    expected_actions,
    expected_state,
    expected_states,
    main,
    render_frame,
)
from demo.synthetic.plan import plan_episodes
from schemas.presets import TOP32_INDICES

V30_EPISODE_COLUMNS = [
    "episode_index",
    "tasks",
    "length",
    "data/chunk_index",
    "data/file_index",
    "dataset_from_index",
    "dataset_to_index",
    "meta/episodes/chunk_index",
    "meta/episodes/file_index",
]


def _decode(
    path: Path, fmt: str = "rgb24"
) -> tuple[list[np.ndarray], list[float], av.video.stream.VideoStream]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames, times = [], []
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format=fmt))
            times.append(float(frame.time))
        codec = stream.codec_context.name
        info = {"codec": codec, "width": stream.width, "height": stream.height, "rate": stream.average_rate}
    return frames, times, info


def _av1(codec_name: str) -> bool:
    return codec_name in ("libdav1d", "libaom-av1", "av1")


# ---------------------------------------------------------------------------------------------
# codes
# ---------------------------------------------------------------------------------------------


def test_state_and_action_are_exact_float32_and_distinct_per_dim():
    for episode_index in (0, 3, 60010, 499990):
        for frame in (0, 1, 49, 8999):
            state = expected_state(episode_index, frame)
            action = expected_action(episode_index, frame)
            assert state.dtype == np.float32 and state.shape == (256,)
            assert action.dtype == np.float32 and action.shape == (23,)
            assert len(np.unique(state)) == 256 and len(np.unique(action)) == 23
            assert np.all(np.isfinite(state)) and np.all(np.isfinite(action))
            # exactly representable: the float64 recomputation equals the stored float32 value
            assert np.array_equal(state.astype(np.float64), state.astype(np.float32).astype(np.float64))
            assert decode_state_id(state) == (episode_index, frame)
            assert decode_state_id(state[list(TOP32_INDICES)]) == (episode_index, frame)
            assert decode_state_id(state[list(TOP32_INDICES)], TOP32_INDICES) == (episode_index, frame)
    states = expected_states(60010, np.arange(50))
    assert np.array_equal(states[7], expected_state(60010, 7))
    assert np.array_equal(expected_actions(60010, [3, 4])[1], expected_action(60010, 4))
    # neighbouring frames and episodes differ in the top32 dims
    assert not np.array_equal(states[0][list(TOP32_INDICES)], states[1][list(TOP32_INDICES)])
    assert not np.array_equal(
        expected_state(60000, 5)[list(TOP32_INDICES)], expected_state(60010, 5)[list(TOP32_INDICES)]
    )
    with pytest.raises(ValueError):
        decode_state_id(states[0][[158, 162, 166]], [158, 162, 166])  # only d % 4 in {2}: no frame dim


@pytest.mark.parametrize("size", [(48, 48), (64, 64), (720, 720), (480, 480)])
def test_frame_code_survives_jpeg_and_resizing(size):
    for episode_index, frame_index, camera in [(0, 0, 0), (60010, 89, 1), (499990, 262143, 2), (3, 1234, 0)]:
        rgb = render_frame(episode_index, frame_index, camera, *size, seed=7)
        assert rgb.shape == (*size, 3) and rgb.dtype == np.uint8
        code = decode_frame_code(rgb)
        assert (code.episode_index, code.frame_index, code.camera) == (episode_index, frame_index, camera)
        for target, quality in [(224, 95), (32, 75), (512, 60)]:
            image = Image.fromarray(rgb).resize((target, target), Image.BILINEAR)
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=quality)
            decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
            assert decode_frame_id(decoded) == (episode_index, frame_index)
        # float [0, 1] CHW (a torch-style image) works too
        assert decode_frame_id(rgb.transpose(2, 0, 1) / 255.0) == (episode_index, frame_index)


def test_frame_code_rejects_images_without_a_code():
    flat = np.full((64, 64, 3), 128, np.uint8)
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    failures = 0
    for image in (flat, noise):
        try:
            decode_frame_code(image)
        except ValueError as err:
            assert "no valid frame code" in str(err)
            failures += 1
    assert failures == 2


# ---------------------------------------------------------------------------------------------
# v2.1: BEHAVIOR's 2025 release layout
# ---------------------------------------------------------------------------------------------


def test_v21_info_json(synthetic_v21):
    info = json.loads((synthetic_v21.root / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v2.1"
    assert info["fps"] == 30
    assert info["robot_type"] == "R1Pro"
    assert info["chunks_size"] == 10000
    assert info["data_path"] == "data/task-{episode_chunk:04d}/episode_{episode_index:08d}.parquet"
    assert info["video_path"] == "videos/task-{episode_chunk:04d}/{video_key}/episode_{episode_index:08d}.mp4"
    assert info["total_episodes"] == 4 and info["total_frames"] == 265 and info["total_tasks"] == 2
    assert info["total_videos"] == 4 * 4
    features = info["features"]
    assert features["observation.state"] == {"dtype": "float32", "shape": [256], "names": None}
    assert features["action"] == {"dtype": "float32", "shape": [23], "names": None}
    for key in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        assert features[key]["shape"] == [1]
    assert features["timestamp"]["dtype"] == "float64"  # as in the release
    for key, size in [(RGB_KEYS[0], 64), (RGB_KEYS[1], 48), (RGB_KEYS[2], 48)]:
        assert features[key]["dtype"] == "video"
        assert features[key]["shape"] == [size, size, 3]
        assert features[key]["info"]["video.height"] == size and features[key]["info"]["video.width"] == size
        assert features[key]["info"]["video.codec"] == "av1"
        assert features[key]["info"]["video.is_depth_map"] is False
    assert (
        features[DEPTH_KEY]["dtype"] == "video" and features[DEPTH_KEY]["info"]["video.is_depth_map"] is True
    )


def test_v21_files_and_meta(synthetic_v21):
    root = synthetic_v21.root
    assert synthetic_v21.episode_indices == [10000, 60000, 60010, 60020]
    assert synthetic_v21.lengths == [40, 75, 90, 60]
    assert min(synthetic_v21.lengths) < 50  # one episode shorter than the default horizon
    assert (root / "data/task-0006/episode_00060010.parquet").is_file()
    assert (root / "data/task-0001/episode_00010000.parquet").is_file()
    info = json.loads((root / "meta" / "info.json").read_text())
    for episode in synthetic_v21.episodes:
        chunk = episode.episode_index // info["chunks_size"]
        assert chunk == episode.task_id
        data = info["data_path"].format(episode_chunk=chunk, episode_index=episode.episode_index)
        assert data == episode.data_file and (root / data).is_file()
        for key in [*RGB_KEYS, DEPTH_KEY]:
            video = info["video_path"].format(
                episode_chunk=chunk, video_key=key, episode_index=episode.episode_index
            )
            assert video == episode.video_files[key] and (root / video).is_file()
    assert (root / "videos/task-0006/observation.images.rgb.head/episode_00060010.mp4").is_file()

    episodes = [json.loads(line) for line in (root / "meta" / "episodes.jsonl").read_text().splitlines()]
    assert [(e["episode_index"], e["length"], e["tasks"]) for e in episodes] == [
        (10000, 40, ["picking_up_trash"]),
        (60000, 75, ["hiding_Easter_eggs"]),
        (60010, 90, ["hiding_Easter_eggs"]),
        (60020, 60, ["hiding_Easter_eggs"]),
    ]
    tasks = [json.loads(line) for line in (root / "meta" / "tasks.jsonl").read_text().splitlines()]
    assert tasks == [
        {"task_index": 1, "task": "picking_up_trash"},
        {"task_index": 6, "task": "hiding_Easter_eggs"},
    ]
    stats = [json.loads(line) for line in (root / "meta" / "episodes_stats.jsonl").read_text().splitlines()]
    assert [s["episode_index"] for s in stats] == [10000, 60000, 60010, 60020]
    state_stats = stats[2]["stats"]["observation.state"]
    states = expected_states(60010, np.arange(90)).astype(np.float64)
    np.testing.assert_allclose(state_stats["mean"], states.mean(axis=0), rtol=1e-5)  # lerobot: float32 sums
    np.testing.assert_array_equal(state_stats["max"], states.max(axis=0))
    assert state_stats["count"] == [90]


def test_v21_parquet_values(synthetic_v21):
    index = 0
    for episode in synthetic_v21.episodes:
        table = pq.read_table(synthetic_v21.root / episode.data_file)
        for column in (
            "observation.state",
            "action",
            "timestamp",
            "frame_index",
            "episode_index",
            "index",
            "task_index",
        ):
            assert column in table.column_names
        n = episode.length
        assert table.num_rows == n
        state = np.array(table.column("observation.state").to_pylist(), dtype=np.float32)
        action = np.array(table.column("action").to_pylist(), dtype=np.float32)
        assert state.shape == (n, 256) and action.shape == (n, 23)
        np.testing.assert_array_equal(state, expected_states(episode.episode_index, np.arange(n)))
        np.testing.assert_array_equal(action, expected_actions(episode.episode_index, np.arange(n)))
        assert table.column("frame_index").to_pylist() == list(range(n))
        assert set(table.column("episode_index").to_pylist()) == {episode.episode_index}
        assert set(table.column("task_index").to_pylist()) == {episode.task_id}
        assert table.column("index").to_pylist() == list(range(index, index + n))
        np.testing.assert_allclose(table.column("timestamp").to_numpy(), np.arange(n) / 30.0)
        index += n


def test_v21_videos_decode_to_the_coded_frames(synthetic_v21):
    for episode in synthetic_v21.episodes:
        for key in RGB_KEYS:
            frames, times, info = _decode(synthetic_v21.root / episode.video_files[key])
            height, width = synthetic_v21.camera_sizes[key]
            assert _av1(info["codec"]) and info["rate"] == 30
            assert len(frames) == episode.length
            assert frames[0].shape == (height, width, 3)
            codes = [decode_frame_code(f) for f in frames]
            assert [(c.episode_index, c.frame_index) for c in codes] == [
                (episode.episode_index, i) for i in range(episode.length)
            ]
            assert {c.camera for c in codes} == {CAMERA_CODES[key]}
            np.testing.assert_allclose(times, np.arange(episode.length) / 30.0, atol=1e-6)
        with av.open(str(synthetic_v21.root / episode.video_files[DEPTH_KEY])) as container:
            assert container.streams.video[0].codec_context.name in ("hevc", "libx265")
            assert container.streams.video[0].frames in (0, episode.length)


@pytest.mark.parametrize("layout", ["v2.1", "v3.0"])
def test_2025_annotations_are_keyed_by_episode_index_with_the_real_files_quirks(layout, request):
    """annotations/task-{T:04d}/episode_{episode_index:08d}.json: the format of shared/BEHAVIOR.md, skills
    tiling most of each episode, nested / empty / null segments, the last episode's file missing."""
    info = request.getfixturevalue(f"synthetic_{layout.replace('.', '')}")
    quirks = dict.fromkeys(("missing", "nested", "empty", "null"), 0)
    for episode in info.episodes:
        path = info.root / f"annotations/task-{episode.task_id:04d}/episode_{episode.episode_index:08d}.json"
        assert episode.annotation_file == path.relative_to(info.root).as_posix()
        skills = info.expected_skills(episode.episode_index)
        assert len(skills) == episode.length
        if episode is info.episodes[-1]:
            assert not path.exists() and set(skills) == {None}
            quirks["missing"] += 1
            continue
        document = json.loads(path.read_text())
        assert document["task_name"] == episode.task.replace("_", " ")
        assert document["meta_data"]["task_duration"] == episode.length
        assert document["primitive_annotation"] == []
        expected: list[str | None] = [None] * episode.length
        for entry in document["skill_annotation"]:
            duration = entry["frame_duration"]
            if duration is None:
                quirks["null"] += 1
                continue
            nested = isinstance(duration[0], list)
            quirks["nested"] += nested
            for start, end in duration if nested else [duration]:
                quirks["empty"] += end <= start
                for frame in range(start, min(end, episode.length)):
                    expected[frame] = expected[frame] or entry["skill_description"][0]
        assert skills == expected and skills[0] is not None and skills[-1] is None
    assert quirks == info.skill_quirks() == {"missing": 1, "nested": 1, "empty": 1, "null": 1}
    assert (info.root / "annotations/skill_summary.csv").is_file()
    if layout == "v2.1":
        assert (info.root / "annotations/task-0006/episode_00060000.json").is_file()


# ---------------------------------------------------------------------------------------------
# v3.0: lerobot's layout
# ---------------------------------------------------------------------------------------------


def test_v30_info_json(synthetic_v30):
    info = json.loads((synthetic_v30.root / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0"
    assert info["fps"] == 30
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    assert info["total_episodes"] == 4 and info["total_frames"] == 265 and info["total_tasks"] == 2
    features = info["features"]
    assert (
        features["observation.state"]["shape"] == [256]
        and features["observation.state"]["dtype"] == "float32"
    )
    assert features["action"]["shape"] == [23] and features["action"]["dtype"] == "float32"
    for key in RGB_KEYS:
        height, width = synthetic_v30.camera_sizes[key]
        assert features[key]["dtype"] == "video" and features[key]["shape"] == [height, width, 3]
        assert features[key]["info"]["video.codec"] == "av1"
        assert features[key]["info"]["video.pix_fmt"] == "yuv420p"
        assert features[key]["info"]["is_depth_map"] is False
    assert features[DEPTH_KEY]["dtype"] == "video" and features[DEPTH_KEY]["info"]["is_depth_map"] is True
    assert features[DEPTH_KEY]["info"]["video.codec"] == "hevc"
    for key in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        assert key in features
    # written by lerobot's writer, whose file-size limits the builder only moves while writing
    assert info["robot_type"] == "R1Pro" and info["chunks_size"] == 1000
    assert (info["data_files_size_in_mb"], info["video_files_size_in_mb"]) == (100, 200)
    assert sorted(p.name for p in synthetic_v30.root.iterdir()) == ["annotations", "data", "meta", "videos"]


def test_v30_meta_files(synthetic_v30):
    root = synthetic_v30.root
    episodes = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    for column in V30_EPISODE_COLUMNS:
        assert column in episodes[0]
    for key in [*RGB_KEYS, DEPTH_KEY]:
        for suffix in ("chunk_index", "file_index", "from_timestamp", "to_timestamp"):
            assert f"videos/{key}/{suffix}" in episodes[0]
    assert "stats/observation.state/mean" in episodes[0]
    assert [e["episode_index"] for e in episodes] == [0, 1, 2, 3]
    assert [e["length"] for e in episodes] == [40, 75, 90, 60]
    assert [e["tasks"] for e in episodes] == [["picking_up_trash"]] + [["hiding_Easter_eggs"]] * 3
    # contiguous global frame ranges
    assert [(e["dataset_from_index"], e["dataset_to_index"]) for e in episodes] == [
        (0, 40),
        (40, 115),
        (115, 205),
        (205, 265),
    ]
    # several episodes per file, and more than one file: 3 per data file, 2 per video file
    assert [e["data/file_index"] for e in episodes] == [0, 0, 0, 1]
    key = RGB_KEYS[0]
    assert [e[f"videos/{key}/file_index"] for e in episodes] == [0, 0, 1, 1]
    assert [e[f"videos/{key}/from_timestamp"] for e in episodes] == pytest.approx(
        [0.0, 40 / 30, 0.0, 90 / 30]
    )
    assert [e[f"videos/{key}/to_timestamp"] for e in episodes] == pytest.approx(
        [40 / 30, 115 / 30, 90 / 30, 150 / 30]
    )

    tasks = pd.read_parquet(root / "meta/tasks.parquet")
    assert tasks.index.name == "task"
    assert tasks["task_index"].to_dict() == {"picking_up_trash": 0, "hiding_Easter_eggs": 1}

    stats = json.loads((root / "meta/stats.json").read_text())
    all_states = np.concatenate([e.states() for e in synthetic_v30.episodes]).astype(np.float64)
    np.testing.assert_allclose(stats["observation.state"]["mean"], all_states.mean(axis=0), rtol=1e-5)
    np.testing.assert_array_equal(stats["observation.state"]["min"], all_states.min(axis=0))
    assert stats["observation.state"]["count"] == [265]
    assert {"action", RGB_KEYS[0], DEPTH_KEY} <= set(stats)


def test_v30_parquet_values(synthetic_v30):
    root = synthetic_v30.root
    files = sorted((root / "data").rglob("*.parquet"))
    assert [f.relative_to(root).as_posix() for f in files] == [
        "data/chunk-000/file-000.parquet",
        "data/chunk-000/file-001.parquet",
    ]
    table = pq.read_table(files[0])
    assert table.schema.field("observation.state").type.list_size == 256
    assert pq.ParquetFile(files[0]).metadata.num_row_groups == 3  # one row group per episode, like lerobot
    for episode in synthetic_v30.episodes:
        table = pq.read_table(root / episode.data_file).to_pandas()
        rows = table[table["episode_index"] == episode.episode_index]
        assert len(rows) == episode.length
        state = np.stack(rows["observation.state"].to_numpy()).astype(np.float32)
        action = np.stack(rows["action"].to_numpy()).astype(np.float32)
        np.testing.assert_array_equal(state, episode.states())
        np.testing.assert_array_equal(action, episode.actions())
        assert rows["index"].tolist() == list(
            range(episode.dataset_from_index, episode.dataset_from_index + episode.length)
        )
        assert rows["frame_index"].tolist() == list(range(episode.length))
        assert set(rows["task_index"]) == {episode.task_index}


def test_v30_videos_concatenate_episodes(synthetic_v30):
    root = synthetic_v30.root
    for key in RGB_KEYS:
        files = sorted((root / "videos" / key).rglob("*.mp4"))
        assert len(files) == 2
        for path in files:
            frames, times, info = _decode(path)
            assert _av1(info["codec"])
            height, width = synthetic_v30.camera_sizes[key]
            assert (info["height"], info["width"]) == (height, width)
            members = [e for e in synthetic_v30.episodes if root / e.video_files[key] == path]
            assert len(members) == 2
            assert len(frames) == sum(e.length for e in members)
            for episode in members:
                start = episode.from_timestamps[key]
                for i in (0, 1, episode.length // 2, episode.length - 1):
                    position = int(np.argmin(np.abs(np.array(times) - (start + i / 30.0))))
                    assert abs(times[position] - (start + i / 30.0)) < 1e-3
                    assert decode_frame_id(frames[position]) == (episode.episode_index, i)
    depth_files = sorted((root / "videos" / DEPTH_KEY).rglob("*.mp4"))
    assert len(depth_files) == 2


def test_lerobot_opens_the_v30_dataset(synthetic_v30):
    """The strongest evidence the layout is real: lerobot's own reader, offline, from the local root."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    dataset = LeRobotDataset("local/synthetic-behavior", root=synthetic_v30.root, video_backend="pyav")
    assert len(dataset) == synthetic_v30.total_frames
    assert dataset.meta.total_episodes == 4
    assert set(RGB_KEYS) <= set(dataset.meta.video_keys)
    # first/last frames of every episode: across data-file and video-file boundaries
    for episode in synthetic_v30.episodes:
        for i in (0, episode.length - 1):
            item = dataset[episode.dataset_from_index + i]
            assert int(item["episode_index"]) == episode.episode_index and int(item["frame_index"]) == i
            np.testing.assert_array_equal(
                item["observation.state"].numpy(), expected_state(episode.episode_index, i)
            )
            np.testing.assert_array_equal(item["action"].numpy(), expected_action(episode.episode_index, i))
            assert item["task"] == episode.task
            for key in RGB_KEYS:
                image = item[key].numpy()  # C, H, W float in [0, 1]
                assert image.shape == (3, *synthetic_v30.camera_sizes[key])
                assert decode_frame_code(image).camera == CAMERA_CODES[key]
                assert decode_frame_id(image) == (episode.episode_index, i)


def test_build_is_deterministic_and_refuses_a_non_empty_dir(tmp_path):
    config = SyntheticConfig(
        layout="v3.0", lengths=(5, 7), tasks=(6, 3), head_size=32, wrist_size=24, depth=False
    )
    first = build_dataset(tmp_path / "a", config)
    second = build_dataset(tmp_path / "b", config)
    for rel in (
        "meta/info.json",
        "meta/stats.json",
        "meta/tasks.parquet",
        "data/chunk-000/file-000.parquet",
        "meta/episodes/chunk-000/file-000.parquet",
    ):
        assert (first.root / rel).read_bytes() == (second.root / rel).read_bytes(), rel
    frames_a, _, _ = _decode(first.root / first.episodes[1].video_files[RGB_KEYS[0]])
    frames_b, _, _ = _decode(second.root / second.episodes[1].video_files[RGB_KEYS[0]])
    assert all(np.array_equal(a, b) for a, b in zip(frames_a, frames_b, strict=True))
    assert not (first.root / "videos" / DEPTH_KEY).exists()
    for rel in ("annotations/task-0006/episode_00000000.json", "annotations/skill_summary.csv"):
        assert (first.root / rel).read_bytes() == (second.root / rel).read_bytes(), rel
    with pytest.raises(FileExistsError):
        build_dataset(tmp_path / "a", config)
    build_dataset(tmp_path / "a", config, overwrite=True)


def test_free_text_task_names_replace_behaviors_per_task_id():
    config = SyntheticConfig(lengths=(3,), episodes=4, tasks=(6, 1), task_names=("hide the eggs", "pick up"))
    assert [(e.task, e.task_index) for e in plan_episodes(config)] == [
        ("hide the eggs", 0),
        ("pick up", 1),
        ("hide the eggs", 0),
        ("pick up", 1),
    ]
    with pytest.raises(ValueError, match="one task name per task id"):
        SyntheticConfig(tasks=(6, 1, 6), task_names=("hide", "pick", "other"))


def test_episode_count_cycles_lengths_and_tasks(synthetic_dataset):
    info = synthetic_dataset(
        layout="v2.1", episodes=5, lengths=(3, 4), tasks=(6,), head_size=32, wrist_size=32, depth=False
    )
    assert info.lengths == [3, 4, 3, 4, 3]
    assert info.episode_indices == [60000, 60010, 60020, 60030, 60040]
    assert info.tasks == {6: "hiding_Easter_eggs"}


def test_cli_help_and_run(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0
    for option in (
        "--output-dir",
        "--layout",
        "--episodes",
        "--lengths",
        "--head-size",
        "--wrist-size",
        "--seed",
        "--episodes-per-data-file",
        "--episodes-per-video-file",
    ):
        assert option in result.output
    assert "px" in result.output and "default" in result.output

    out = tmp_path / "ds"
    args = [
        "--output-dir",
        str(out),
        "--layout",
        "v2.1",
        "--lengths",
        "4,6",
        "--tasks",
        "6",
        "--head-size",
        "32",
        "--wrist-size",
        "24",
        "--no-depth",
    ]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert (out / "data/task-0006/episode_00060010.parquet").is_file()
    assert "2 episodes" in result.output
    result = runner.invoke(main, args)
    assert result.exit_code != 0 and "not empty" in result.output


def test_pixel_code_survives_av1_at_larger_sizes(synthetic_dataset):
    """Above 250 px the code is tiled (and voted on): every frame of every camera still decodes."""
    info = synthetic_dataset(
        layout="v3.0",
        lengths=(30, 20),
        tasks=(6,),
        head_size=360,
        wrist_size=256,
        depth=False,
        episodes_per_video_file=1,
    )
    for episode in info.episodes:
        for key in RGB_KEYS:
            frames, _, meta = _decode(info.root / episode.video_files[key])
            assert (meta["height"], meta["width"]) == info.camera_sizes[key]
            assert [decode_frame_id(f) for f in frames] == [
                (episode.episode_index, i) for i in range(episode.length)
            ]
