"""Decode one camera of one episode in one sequential pass with PyAV.

No random access, no per-sample seeking: open the file, seek once (v3.0: to the keyframe at or
before the episode's `from_timestamp`), decode forward, and map every decoded frame to its
episode frame index by its presentation time:

    index = round((pts * time_base - from_timestamp) * fps)

Frames before the episode (between the keyframe and `from_timestamp`) and repeated indices are
dropped; frames at index >= length end the pass. A gap (a frame index the video never shows) or
a video that ends early is an error naming the file, episode and frame. Only the streams we are
given are opened: depth and segmentation videos are never touched.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av

from preprocess.source import EpisodeDataError


def iter_episode_frames(
    path: str | Path,
    *,
    episode_index: int,
    length: int,
    fps: float,
    from_timestamp: float = 0.0,
    threads: int = 0,
) -> Iterator[av.VideoFrame]:
    """Yield the episode's `length` frames of this video, in order (frame 0, 1, ..., length-1).

    `threads`: decoder threads, 0 = FFmpeg's choice (one per core), 1 = single-threaded (best when
    every core already runs a worker process: threads would only contend)."""
    path = Path(path)
    if not path.is_file():
        raise EpisodeDataError(f"{path}: missing camera video for episode {episode_index}", episode_index)
    try:
        container = av.open(str(path))
    except av.FFmpegError as exc:
        raise EpisodeDataError(
            f"{path}: cannot open video for episode {episode_index}: {exc}", episode_index
        ) from None
    with container:
        if not container.streams.video:
            raise EpisodeDataError(f"{path}: no video stream (episode {episode_index})", episode_index)
        stream = container.streams.video[0]
        # Set even for 1: PyAV's default is 0 (auto), and libdav1d then starts a thread per core.
        stream.codec_context.thread_count = threads
        if threads != 1:
            stream.thread_type = "AUTO"
        time_base = stream.time_base
        # pts -> seconds as int * int / int (correctly rounded, like float(Fraction)) without
        # Fraction arithmetic per frame
        tb_num, tb_den = time_base.numerator, time_base.denominator
        if from_timestamp > 0:
            # Land on the keyframe at or before the episode's first frame (half a frame of margin
            # against timestamps rounded in the metadata), then decode forward.
            target = max(0.0, from_timestamp - 0.5 / fps)
            container.seek(int(target / time_base), stream=stream, backward=True, any_frame=False)
        expected = 0
        last_time = None
        try:
            for frame in container.decode(stream):
                if frame.pts is None:
                    raise EpisodeDataError(
                        f"{path}: decoded a frame without a timestamp (episode {episode_index}, "
                        f"after frame {expected - 1})",
                        episode_index,
                    )
                last_time = frame.pts * tb_num / tb_den
                index = round((last_time - from_timestamp) * fps)
                if index < expected:
                    continue  # before the episode (decoded from the keyframe) or a repeated timestamp
                if index >= length:
                    break
                if index > expected:
                    raise EpisodeDataError(
                        f"{path}: episode {episode_index} frame {expected} (t={from_timestamp + expected / fps:.4f}s) "
                        f"is missing from the video: the next decoded frame is at t={last_time:.4f}s (frame {index})",
                        episode_index,
                    )
                yield frame
                expected += 1
                if expected == length:
                    break
        except av.FFmpegError as exc:
            raise EpisodeDataError(
                f"{path}: decoding failed at episode {episode_index} frame {expected}: {exc}", episode_index
            ) from None
    if expected < length:
        seen = "no frames" if last_time is None else f"its last frame at t={last_time:.4f}s"
        raise EpisodeDataError(
            f"{path}: video has fewer frames than the parquet for episode {episode_index}: "
            f"expected {length} frames from t={from_timestamp:.4f}s, decoded {expected} ({seen}); "
            f"first missing frame is {expected}",
            episode_index,
        )
