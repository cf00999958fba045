"""A v3.0 dataset as lerobot's own `LeRobotDataset` writer lays it out with its defaults (every episode in
one data file and one mp4 per camera, a free-text task, AV1) preprocesses exactly."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from demo.synthetic import decode_frame_id
from schemas.presets import TOP32_INDICES
from schemas.r1pro import CAMERAS
from schemas.sample import parse_sample_key
from tests.preprocess.helpers import (
    check_stats,
    direct_frame,
    expected_chunk,
    preprocess,
    psnr,
    read_set,
    resized,
)
from tests.preprocess.lerobot_writer import build_lerobot_dataset, lr_action, lr_state

LENGTHS = (12, 20, 7)


@pytest.fixture(scope="module")
def lerobot_dataset(tmp_path_factory):
    return build_lerobot_dataset(tmp_path_factory.mktemp("lerobot") / "ds", lengths=LENGTHS)


def _video_refs(root):
    """Per (episode, video key): file and from_timestamp, read straight from lerobot's episode metadata."""
    refs = {}
    for path in sorted((root / "meta/episodes").glob("**/*.parquet")):
        for row in pq.read_table(path).to_pylist():
            for camera in CAMERAS:
                key = camera.video_key
                file = root / (
                    f"videos/{key}/chunk-{row[f'videos/{key}/chunk_index']:03d}/"
                    f"file-{row[f'videos/{key}/file_index']:03d}.mp4"
                )
                refs[row["episode_index"], key] = (file, row[f"videos/{key}/from_timestamp"])
    return refs


def test_lerobot_written_v30(lerobot_dataset, tmp_path):
    assert [p.name for p in (lerobot_dataset / "data").rglob("*.parquet")] == ["file-000.parquet"]
    for camera in CAMERAS:
        assert len(list((lerobot_dataset / "videos" / camera.video_key).rglob("*.mp4"))) == 1
    out = tmp_path / "set"
    horizon = 10
    manifest = preprocess(
        lerobot_dataset, out, horizon=horizon, jpeg_quality=95, image_size="40", val_episodes="1", workers=2
    )
    assert manifest["source"]["codebase_version"] == "v3.0"
    assert manifest["tasks"] == {"0": "hide the eggs"}
    _, splits = read_set(out)
    assert set(splits["val"]) == {f"e{1:08d}_f{f:06d}" for f in range(LENGTHS[1])}
    refs = _video_refs(lerobot_dataset)
    worst = np.inf
    for samples in splits.values():
        for key, sample in samples.items():
            episode, frame = parse_sample_key(key)
            length = LENGTHS[episode]
            np.testing.assert_array_equal(sample["state.npy"], lr_state(episode, frame)[list(TOP32_INDICES)])
            actions = np.stack([lr_action(episode, f) for f in range(length)])
            chunk, pad = expected_chunk(actions, frame, horizon)
            np.testing.assert_array_equal(sample["action.npy"], chunk)
            np.testing.assert_array_equal(sample["action_is_pad.npy"], pad)
            assert sample["json"]["progress"] == frame / (length - 1)
            assert sample["json"]["task"] == "hide the eggs" and sample["json"]["task_index"] == 0
            for camera in CAMERAS:
                image = sample[f"{camera.name}.jpg"]
                assert image.shape == (40, 40, 3)
                assert decode_frame_id(image) == (episode, frame)
                file, start = refs[episode, camera.video_key]
                source = direct_frame(file, start + frame / 30)
                worst = min(worst, psnr(image, resized(source, 40, 40)))
    assert worst >= 35.0, worst
    train = [e for e in range(len(LENGTHS)) if e != 1]
    state = np.stack([lr_state(e, f)[list(TOP32_INDICES)] for e in train for f in range(LENGTHS[e])])
    action = np.stack([lr_action(e, f) for e in train for f in range(LENGTHS[e])])
    check_stats(manifest["stats"]["observation.state"], state)
    check_stats(manifest["stats"]["action"], action)
