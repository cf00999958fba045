"""Acceptance 1: a preprocessed shard set holds exactly what the source dataset says, in both layouts.

Every sample: state at the preset indices (exact), action chunk [i, i+H) with last-action padding,
progress/weight (exact), each camera image vs a direct whole-file PyAV decode of the source frame
resized the same way (PSNR >= 35 dB at quality 95) and carrying the frame's own pixel code; stats vs
numpy over the filtered train split; held-out episodes only in val; shards mix episodes.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from demo.synthetic import decode_frame_id, expected_actions, expected_states
from schemas.manifest import validate_manifest
from schemas.presets import TOP32_INDICES
from schemas.r1pro import CAMERAS
from schemas.sample import parse_sample_key, sample_problems
from tests.preprocess.helpers import (
    check_stats,
    direct_frame,
    expected_chunk,
    preprocess,
    psnr,
    read_set,
    resized,
    sample_order,
)

ALPHA = 0.75
HORIZON = 50


def _run_layout(synthetic, tmp_path_factory, image_size: str | None) -> tuple:
    val = synthetic.episodes[2].episode_index  # the 90-frame episode
    out = tmp_path_factory.mktemp(f"out-{synthetic.layout}") / "set"
    preprocess(
        synthetic.root,
        out,
        val_episodes=str(val),
        jpeg_quality=95,
        temporal_alpha=ALPHA,
        horizon=HORIZON,
        image_size=image_size,
        shard_max_samples=120,
        workers=2,
    )
    manifest, splits = read_set(out)
    return synthetic, out, manifest, splits, {val}


@pytest.fixture(scope="module")
def v21_set(synthetic_v21, tmp_path_factory):
    # default --image-size (cap 512): the 64/48 px cameras stay native
    return _run_layout(synthetic_v21, tmp_path_factory, None)


@pytest.fixture(scope="module")
def v30_set(synthetic_v30, tmp_path_factory):
    # cap the longest side at 56: head 64 -> 56 (resized), wrists stay 48, as 720 -> 512 / 480 in real data
    return _run_layout(synthetic_v30, tmp_path_factory, "max56")


@pytest.fixture(params=["v2.1", "v3.0"])
def layout_set(request):
    return request.getfixturevalue("v21_set" if request.param == "v2.1" else "v30_set")


def test_manifest_describes_the_set(layout_set):
    synthetic, out, manifest, _, val = layout_set
    validate_manifest(manifest)
    assert manifest["source"]["codebase_version"] == synthetic.layout
    assert len(manifest["source"]["fingerprint"]) == 64
    assert manifest["fps"] == 30 and manifest["frame_stride"] == 1 and manifest["horizon"] == HORIZON
    assert manifest["state"]["preset"] == "top32"
    assert manifest["state"]["indices"] == list(TOP32_INDICES)
    assert manifest["action"]["dim"] == 23
    assert manifest["temporal"]["alpha"] == ALPHA
    assert manifest["created_by"]["tool"] == "b1k-preprocess"
    for camera in CAMERAS:
        entry = manifest["cameras"][camera.name]
        assert entry["video_key"] == camera.video_key
        assert entry["encoding"] == "jpeg" and entry["quality"] == 95
    # keyed by the evaluator's task id (from the task's name), whatever the dataset numbers it
    assert {int(k): v for k, v in manifest["tasks"].items()} == {
        e.task_id: e.task for e in synthetic.episodes
    }
    assert manifest["prompt"] == "instruction"  # these datasets have no instruction: the name is the prompt
    assert {int(k): d["name"] for k, d in manifest["task_details"].items()} == manifest_task_names(synthetic)
    assert sorted(manifest["splits"]["val"]["episodes"]) == sorted(val)
    assert sorted(manifest["splits"]["train"]["episodes"] + manifest["splits"]["val"]["episodes"]) == sorted(
        synthetic.episode_indices
    )
    # work dir removed, nothing temporary left
    assert not (out / ".work").exists()
    assert not [p for p in out.rglob("*") if p.name.endswith((".tmp", ".part"))]
    assert len(manifest["splits"]["train"]["shards"]) >= 2  # --shard-max-samples 120 rotated
    assert all(s["samples"] <= 120 for s in manifest["splits"]["train"]["shards"])


def manifest_task_names(synthetic) -> dict[int, str]:
    return {e.task_id: e.task for e in synthetic.episodes}


def test_every_frame_once_held_out_only_in_val(layout_set):
    synthetic, _, _, splits, val = layout_set
    for split, samples in splits.items():
        episodes = {parse_sample_key(k)[0] for k in samples}
        assert episodes == (val if split == "val" else set(synthetic.episode_indices) - val)
    keys = set(splits["train"]) | set(splits["val"])
    expected = {f"e{e.episode_index:08d}_f{f:06d}" for e in synthetic.episodes for f in range(e.length)}
    assert keys == expected


def test_state_action_json_exact(layout_set):
    synthetic, _, _, splits, _ = layout_set
    for samples in splits.values():
        for key, sample in samples.items():
            episode, frame = parse_sample_key(key)
            ep = synthetic.episode(episode)
            assert sample_problems(sample, 32, 23, HORIZON) == []
            states = expected_states(episode, np.arange(ep.length))
            actions = expected_actions(episode, np.arange(ep.length))
            np.testing.assert_array_equal(sample["state.npy"], states[frame, list(TOP32_INDICES)])
            chunk, pad = expected_chunk(actions, frame, HORIZON)
            np.testing.assert_array_equal(sample["action.npy"], chunk)
            np.testing.assert_array_equal(sample["action_is_pad.npy"], pad)
            meta = sample["json"]
            progress = frame / (ep.length - 1)
            assert meta["episode_index"] == episode and meta["frame_index"] == frame
            assert meta["episode_length"] == ep.length
            assert meta["progress"] == progress
            assert meta["weight"] == 1 + ALPHA * progress**2
            assert meta["task"] == ep.task and meta["task_index"] == ep.task_id
            assert meta["skill"] == synthetic.annotations[episode].per_frame[frame]  # 2025 annotations too
            assert meta["timestamp"] == pytest.approx(frame / 30, abs=1e-6)


def test_short_episode_is_padded_with_its_last_action(layout_set):
    synthetic, _, _, splits, _ = layout_set
    short = next(e for e in synthetic.episodes if e.length < HORIZON)
    sample = splits["train"][f"e{short.episode_index:08d}_f{0:06d}"]
    assert sample["action_is_pad.npy"].sum() == HORIZON - short.length
    last = expected_actions(short.episode_index, [short.length - 1])[0]
    np.testing.assert_array_equal(
        sample["action.npy"][short.length :], np.tile(last, (HORIZON - short.length, 1))
    )


def test_images_match_a_direct_decode(layout_set):
    synthetic, _, manifest, splits, _ = layout_set
    worst = np.inf
    for samples in splits.values():
        for key, sample in samples.items():
            episode, frame = parse_sample_key(key)
            ep = synthetic.episode(episode)
            for camera in CAMERAS:
                image = sample[f"{camera.name}.jpg"]
                entry = manifest["cameras"][camera.name]
                assert image.shape == (entry["height"], entry["width"], 3)
                assert decode_frame_id(image) == (episode, frame), (key, camera.name)
                source = direct_frame(
                    synthetic.root / ep.video_files[camera.video_key],
                    ep.from_timestamps[camera.video_key] + frame / synthetic.fps,
                )
                worst = min(worst, psnr(image, resized(source, entry["height"], entry["width"])))
    assert worst >= 35.0, worst


def test_resize_is_recorded(v21_set, v30_set):
    _, _, m21, _, _ = v21_set
    _, _, m30, _, _ = v30_set
    assert m21["cameras"]["head"]["height"] == 64 and m21["cameras"]["head"]["resize"] == "none"
    assert (m30["cameras"]["head"]["height"], m30["cameras"]["head"]["width"]) == (56, 56)
    assert m30["cameras"]["head"]["resize"] == "pillow-bilinear"
    assert m30["cameras"]["left_wrist"]["height"] == 48 and m30["cameras"]["left_wrist"]["resize"] == "none"


def test_stats_equal_numpy_over_the_train_split(layout_set):
    synthetic, out, manifest, _, val = layout_set
    train = [e for e in synthetic.episodes if e.episode_index not in val]
    state = np.concatenate(
        [expected_states(e.episode_index, np.arange(e.length))[:, list(TOP32_INDICES)] for e in train]
    )
    action = np.concatenate([expected_actions(e.episode_index, np.arange(e.length)) for e in train])
    check_stats(manifest["stats"]["observation.state"], state)
    check_stats(manifest["stats"]["action"], action)
    # the sidecar holds exactly those values, columns ordered by (episode, frame)
    sidecar = np.load(out / manifest["stats_values"]["observation.state"]["name"])
    np.testing.assert_array_equal(sidecar, state.astype(np.float64).T)
    sidecar = np.load(out / manifest["stats_values"]["action"]["name"])
    np.testing.assert_array_equal(sidecar, action.astype(np.float64).T)
    # and say which episode each column block belongs to (merging partitions keeps (episode, frame) order)
    for key in ("observation.state", "action"):
        assert manifest["stats_values"][key]["episodes"] == [[e.episode_index, e.length] for e in train]


def test_shards_interleave_episodes(layout_set):
    _, out, manifest, _, _ = layout_set
    keys = sample_order(out, "train")
    first = manifest["splits"]["train"]["shards"][0]["samples"]
    episodes = Counter(parse_sample_key(k)[0] for k in keys[:first])
    assert len(episodes) == len(manifest["splits"]["train"]["episodes"])  # every train episode in shard 0
    window = [parse_sample_key(k)[0] for k in keys[:20]]
    assert len(set(window)) >= 2
    # within an episode, frames keep their order
    last: dict[int, int] = {}
    for key in keys:
        episode, frame = parse_sample_key(key)
        assert frame > last.get(episode, -1)
        last[episode] = frame


def test_frame_stride_keeps_full_rate_actions(synthetic_v30, tmp_path):
    out = tmp_path / "set"
    manifest = preprocess(synthetic_v30.root, out, frame_stride=4, horizon=10)
    _, splits = read_set(out)
    assert manifest["frame_stride"] == 4
    expected = {
        f"e{e.episode_index:08d}_f{f:06d}" for e in synthetic_v30.episodes for f in range(0, e.length, 4)
    }
    assert set(splits["train"]) == expected
    for key, sample in splits["train"].items():
        episode, frame = parse_sample_key(key)
        ep = synthetic_v30.episode(episode)
        chunk, pad = expected_chunk(expected_actions(episode, np.arange(ep.length)), frame, 10)
        np.testing.assert_array_equal(sample["action.npy"], chunk)
        np.testing.assert_array_equal(sample["action_is_pad.npy"], pad)
        assert decode_frame_id(sample["head.jpg"]) == (episode, frame)
    # stats stay over every frame (full rate)
    assert manifest["stats"]["action"]["count"] == synthetic_v30.total_frames


def test_custom_state_indices_and_standard_track_warning(synthetic_v21, tmp_path, caplog):
    out = tmp_path / "set"
    text = "140:143,158,0,236:240"
    with caplog.at_level("WARNING", logger="b1k.preprocess"):
        manifest = preprocess(synthetic_v21.root, out, state_indices=text, horizon=5)
    indices = [140, 141, 142, 158, 0, 236, 237, 238, 239]
    assert manifest["state"]["preset"] == "custom"
    assert manifest["state"]["indices"] == indices
    assert manifest["state"]["names"][:4] == ["robot_pos_0", "robot_pos_1", "robot_pos_2", "arm_left_qpos_0"]
    assert manifest["state"]["not_standard_track"] == [140, 141, 142, 0]
    assert "not allowed in the BEHAVIOR standard track" in caplog.text and "robot_pos_0" in caplog.text
    _, splits = read_set(out)
    for key, sample in splits["train"].items():
        episode, frame = parse_sample_key(key)
        np.testing.assert_array_equal(sample["state.npy"], expected_states(episode, [frame])[0, indices])
    state = np.concatenate(
        [expected_states(e.episode_index, np.arange(e.length))[:, indices] for e in synthetic_v21.episodes]
    )
    check_stats(manifest["stats"]["observation.state"], state)


def test_standard_preset(synthetic_v21, tmp_path):
    from schemas.presets import STANDARD_INDICES

    manifest = preprocess(
        synthetic_v21.root, tmp_path / "set", state_preset="standard", episodes="10000", horizon=5
    )
    _, splits = read_set(tmp_path / "set")
    assert manifest["state"]["indices"] == list(STANDARD_INDICES)
    sample = splits["train"]["e00010000_f000003"]
    np.testing.assert_array_equal(sample["state.npy"], expected_states(10000, [3])[0, list(STANDARD_INDICES)])


def test_partitions_split_the_episodes_and_agree_on_val(synthetic_v21, tmp_path):
    manifests = [
        preprocess(
            synthetic_v21.root, tmp_path / f"p{k}", partition=f"{k}/2", val_fraction=0.25, seed=3, horizon=5
        )
        for k in range(2)
    ]
    episodes = [
        set(m["splits"]["train"]["episodes"]) | set(m["splits"]["val"]["episodes"]) for m in manifests
    ]
    assert episodes[0].isdisjoint(episodes[1])
    assert episodes[0] | episodes[1] == set(synthetic_v21.episode_indices)
    assert sum(len(m["splits"]["val"]["episodes"]) for m in manifests) == 1
    names = [s["name"] for m in manifests for s in m["splits"]["train"]["shards"]]
    assert len(names) == len(set(names))  # partitions never collide on shard names
    assert names[0].startswith("train-p000of002-")
    for k, m in enumerate(manifests):
        assert m["partition"]["index"] == k and m["partition"]["count"] == 2
        assert m["stats"]["action"]["count"] == sum(
            synthetic_v21.episode(e).length for e in m["splits"]["train"]["episodes"]
        )


def test_val_fraction_is_deterministic_by_seed(synthetic_v21, tmp_path):
    from preprocess.plan import choose_val

    eps = synthetic_v21.episode_indices
    assert choose_val(eps, None, 0.5, 1) == choose_val(eps, None, 0.5, 1)
    assert len(choose_val(eps, None, 0.5, 1)) == 2
    assert len({frozenset(choose_val(eps, None, 0.5, s)) for s in range(10)}) > 1


def test_manifest_is_canonical_json(v21_set):
    _, out, manifest, _, _ = v21_set
    text = (Path(out) / "manifest.json").read_text()
    assert json.loads(text) == manifest


def test_default_image_size_at_native_resolution(synthetic_dataset, tmp_path):
    """Real sizes: head 720 -> 512 (Pillow bilinear), wrists stay 480; images still match the source."""
    ds = synthetic_dataset(
        layout="v2.1", lengths=(3,), tasks=(6,), head_size=720, wrist_size=480, depth=False
    )
    manifest = preprocess(ds.root, tmp_path / "set", horizon=4, jpeg_quality=95)
    _, splits = read_set(tmp_path / "set")
    sizes = {name: (c["height"], c["width"], c["resize"]) for name, c in manifest["cameras"].items()}
    assert sizes == {
        "head": (512, 512, "pillow-bilinear"),
        "left_wrist": (480, 480, "none"),
        "right_wrist": (480, 480, "none"),
    }
    ep = ds.episodes[0]
    for key, sample in splits["train"].items():
        _, frame = parse_sample_key(key)
        for camera in CAMERAS:
            height, width, _ = sizes[camera.name]
            image = sample[f"{camera.name}.jpg"]
            assert decode_frame_id(image) == (ep.episode_index, frame)
            source = direct_frame(ds.root / ep.video_files[camera.video_key], frame / 30)
            assert psnr(image, resized(source, height, width)) >= 35.0
