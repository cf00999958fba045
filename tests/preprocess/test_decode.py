"""The sequential decoder: v3.0 seek into a concatenated file, frame mapping by timestamp, errors, depth
never opened, memory that does not grow with the episode's length."""

from __future__ import annotations

import json
import subprocess
import sys

import av
import pytest

from demo.synthetic import decode_frame_code
from preprocess import episode as episode_module
from preprocess.source import EpisodeDataError, SourceDataset
from preprocess.video import iter_episode_frames
from tests.preprocess.helpers import preprocess


@pytest.fixture(scope="module")
def long_gop(synthetic_dataset):
    # one mp4 per camera holding all episodes, keyframes every 16 frames: every episode after the
    # first starts between keyframes, so the seek lands before it and frames must be dropped
    return synthetic_dataset(layout="v3.0", lengths=(23, 37, 18, 29), tasks=(6,), gop=16, depth=False)


def test_v30_seek_then_decode_forward_yields_exactly_the_episode(long_gop):
    source = SourceDataset(long_gop.root)
    for ep in long_gop.episodes:
        ref = source.episode(ep.episode_index)
        for camera, key in enumerate(long_gop.rgb_keys):
            video = ref.videos[key]
            assert video.from_timestamp == pytest.approx(ep.from_timestamps[key])
            codes = [
                decode_frame_code(frame.to_ndarray(format="rgb24"))
                for frame in iter_episode_frames(
                    video.path,
                    episode_index=ep.episode_index,
                    length=ep.length,
                    fps=30,
                    from_timestamp=video.from_timestamp,
                )
            ]
            assert [(c.episode_index, c.frame_index) for c in codes] == [
                (ep.episode_index, f) for f in range(ep.length)
            ]
            assert {c.camera for c in codes} == {camera}


def test_decoder_errors_name_file_episode_and_frame(long_gop, tmp_path):
    ep = long_gop.episodes[-1]
    key = long_gop.rgb_keys[0]
    path = long_gop.root / ep.video_files[key]
    start = ep.from_timestamps[key]
    with pytest.raises(
        EpisodeDataError, match=rf"{path}: video has fewer frames .*episode 3.*expected 40 frames"
    ):
        list(iter_episode_frames(path, episode_index=3, length=40, fps=30, from_timestamp=start))
    with pytest.raises(EpisodeDataError, match=r"missing camera video for episode 3"):
        list(iter_episode_frames(tmp_path / "nope.mp4", episode_index=3, length=4, fps=30))
    # a gap: ask for a 15 fps mapping of a 30 fps video from 1 s on -> fine; ask for 60 fps -> frame 1 is missing
    with pytest.raises(EpisodeDataError, match=r"episode 3 frame 1 .* is missing from the video"):
        list(iter_episode_frames(path, episode_index=3, length=5, fps=60, from_timestamp=start))


def test_depth_and_segmentation_are_never_opened(synthetic_v21, tmp_path, monkeypatch):
    opened = []
    real_open = av.open

    def spy(path, *args, **kwargs):
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(av, "open", spy)
    preprocess(synthetic_v21.root, tmp_path / "set", horizon=5)
    assert opened and all("observation.images.rgb." in p for p in opened), opened
    assert not [p for p in opened if "depth" in p or "seg" in p]


def test_episode_streaming_memory_does_not_grow_with_length(synthetic_dataset, tmp_path):
    """Peak memory of processing a 360-frame episode is close to that of a 30-frame one (frames stream to
    the tar; holding them would add ~3 cameras x 360 x 192 KB = 200 MB)."""
    ds = synthetic_dataset(
        layout="v2.1", lengths=(30, 360), tasks=(6,), head_size=256, wrist_size=256, depth=False
    )
    script = (
        "import json, sys\n"
        "from preprocess.plan import PreprocessConfig, make_plan\n"
        "from preprocess.episode import process_episode\n"
        "plan = make_plan(PreprocessConfig(dataset_path=sys.argv[1], output_dir=sys.argv[2], image_size='native'))\n"
        "process_episode(int(sys.argv[3]), plan.options, sys.argv[2])\n"
        # VmHWM: this process's peak RSS (ru_maxrss would carry the forking parent's peak across exec)
        "print(json.dumps(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM'))))\n"
    )
    peaks = {}
    for ep in ds.episodes:
        work = tmp_path / f"w{ep.episode_index}"
        work.mkdir()
        result = subprocess.run(
            [sys.executable, "-c", script, str(ds.root), str(work), str(ep.episode_index)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        peaks[ep.length] = json.loads(result.stdout.strip().splitlines()[-1]) / 1024  # MB
    assert peaks[360] - peaks[30] < 40, peaks


def test_action_chunk_padding_unit():
    import numpy as np

    actions = np.arange(12, dtype=np.float32).reshape(4, 3)
    chunk, pad = episode_module.action_chunk(actions, 2, 5)
    np.testing.assert_array_equal(chunk, actions[[2, 3, 3, 3, 3]])
    np.testing.assert_array_equal(pad, [False, False, True, True, True])
