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

from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import av

from preprocess.source import EpisodeDataError


@dataclass(frozen=True)
class EpisodeClip:
    """The part of a video that is one episode: `length` frames from `from_timestamp` on."""

    path: Path
    episode_index: int
    length: int
    fps: float
    from_timestamp: float


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
    clip = EpisodeClip(Path(path), episode_index, length, fps, from_timestamp)
    with _open(clip) as container:
        stream = _video_stream(container, clip, threads)
        decoded, last_time = yield from _clip_frames(container, stream, clip)
    if decoded < length:
        seen = "no frames" if last_time is None else f"its last frame at t={last_time:.4f}s"
        raise EpisodeDataError(
            f"{clip.path}: video has fewer frames than the parquet for episode {episode_index}: "
            f"expected {length} frames from t={from_timestamp:.4f}s, decoded {decoded} ({seen}); "
            f"first missing frame is {decoded}",
            episode_index,
        )


def _open(clip: EpisodeClip) -> av.container.InputContainer:
    if not clip.path.is_file():
        raise EpisodeDataError(
            f"{clip.path}: missing camera video for episode {clip.episode_index}", clip.episode_index
        )
    try:
        return av.open(str(clip.path))
    except av.FFmpegError as exc:
        raise EpisodeDataError(
            f"{clip.path}: cannot open video for episode {clip.episode_index}: {exc}", clip.episode_index
        ) from None


def _video_stream(container: av.container.InputContainer, clip: EpisodeClip, threads: int) -> av.VideoStream:
    """The first video stream, its decoder threads set, the container at the episode's start."""
    if not container.streams.video:
        raise EpisodeDataError(
            f"{clip.path}: no video stream (episode {clip.episode_index})", clip.episode_index
        )
    stream = container.streams.video[0]
    # Set even for 1: PyAV's default is 0 (auto), and libdav1d then starts a thread per core.
    stream.codec_context.thread_count = threads
    if threads != 1:
        stream.thread_type = "AUTO"
    if clip.from_timestamp > 0:
        # Land on the keyframe at or before the episode's first frame (half a frame of margin
        # against timestamps rounded in the metadata), then decode forward.
        target = max(0.0, clip.from_timestamp - 0.5 / clip.fps)
        container.seek(int(target / stream.time_base), stream=stream, backward=True, any_frame=False)
    return stream


def _clip_frames(
    container: av.container.InputContainer, stream: av.VideoStream, clip: EpisodeClip
) -> Generator[av.VideoFrame, None, tuple[int, float | None]]:
    """The clip's frames in order, each placed by its presentation time; returns how many it
    yielded and the last decoded frame's time (None: none decoded)."""
    # pts -> seconds as int * int / int (correctly rounded, like float(Fraction)) without
    # Fraction arithmetic per frame
    tb_num, tb_den = stream.time_base.numerator, stream.time_base.denominator
    expected, last_time = 0, None
    try:
        for frame in container.decode(stream):
            if frame.pts is None:
                raise EpisodeDataError(
                    f"{clip.path}: decoded a frame without a timestamp (episode {clip.episode_index}, "
                    f"after frame {expected - 1})",
                    clip.episode_index,
                )
            last_time = frame.pts * tb_num / tb_den
            index = round((last_time - clip.from_timestamp) * clip.fps)
            if index < expected:
                continue  # before the episode (decoded from the keyframe) or a repeated timestamp
            if index >= clip.length:
                break
            if index > expected:
                raise EpisodeDataError(
                    f"{clip.path}: episode {clip.episode_index} frame {expected} "
                    f"(t={clip.from_timestamp + expected / clip.fps:.4f}s) is missing from the video: "
                    f"the next decoded frame is at t={last_time:.4f}s (frame {index})",
                    clip.episode_index,
                )
            yield frame
            expected += 1
            if expected == clip.length:
                break
    except av.FFmpegError as exc:
        raise EpisodeDataError(
            f"{clip.path}: decoding failed at episode {clip.episode_index} frame {expected}: {exc}",
            clip.episode_index,
        ) from None
    return expected, last_time
