"""The synthetic datasets' videos: lerobot's encoder settings, each key's frames, a PyAV encode for v2.1."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import numpy as np

from demo.synthetic.codes import FramePainter, expected_depth
from demo.synthetic.plan import CAMERA_CODES, DEPTH_KEY, SyntheticConfig

# (episode_index, frame_index) -> the HxWxC frame a video key shows: uint8 RGB, or float32 depth in metres
FrameFunction = Callable[[int, int], np.ndarray]


def rgb_encoder(config: SyntheticConfig):
    """lerobot's AV1 encoder settings (libsvtav1, yuv420p) at the config's GOP, CRF and preset; the
    2026 release's HEVC in the published layouts (:func:`hevc_encoder`)."""
    from lerobot.configs.video import RGBEncoderConfig

    if config.published:
        return hevc_encoder(config)
    return RGBEncoderConfig(
        vcodec="libsvtav1",
        pix_fmt="yuv420p",
        g=config.keyframe_interval(),
        crf=config.crf,
        preset=config.svt_preset(),
    )


def hevc_encoder(config: SyntheticConfig):
    """The 2026 release's RGB video: HEVC (libx265) yuv420p, GOP 8, CRF 30, no B-frames, as a lerobot
    encoder config (so info.json records it as lerobot would); x265's console chatter off."""
    from lerobot.configs.video import RGBEncoderConfig

    return RGBEncoderConfig(
        vcodec="hevc",
        pix_fmt="yuv420p",
        g=config.keyframe_interval(),
        crf=config.crf,
        preset=None,
        extra_options={"x265-params": "bframes=0:log-level=error"},
    )


def depth_encoder():
    """lerobot's depth defaults (HEVC Main 12, gray12le, lossless), with x265's console chatter off."""
    from lerobot.configs.video import DepthEncoderConfig

    return DepthEncoderConfig(extra_options={"x265-params": "lossless=1:log-level=error"})


def depth_keys(config: SyntheticConfig) -> list[str]:
    """The depth videos written: the 2026 release's ``observation.depth_linear.<camera suffix>`` of the
    head camera in the published layouts (one is enough to catch a reader that opens depth; the release
    has three), else ``observation.images.depth.head``."""
    if not config.depth:
        return []
    if config.published:
        return [depth_key_2026(config.rgb_keys[0])]
    return [DEPTH_KEY]


def camera_suffix(rgb_key: str) -> str:
    """``zed_link_camera_0`` of ``observation.rgb.zed_link_camera_0``."""
    return rgb_key.rsplit(".", 1)[-1]


def depth_key_2026(rgb_key: str) -> str:
    return f"observation.depth_linear.{camera_suffix(rgb_key)}"


def video_keys(config: SyntheticConfig) -> list[str]:
    return [*config.rgb_keys, *depth_keys(config)]


def frame_functions(config: SyntheticConfig) -> dict[str, FrameFunction]:
    """Per video key, the frame it shows at (episode, frame): coded RGB, and a moving depth plane."""
    sizes = config.camera_sizes()
    frames: dict[str, FrameFunction] = {
        key: FramePainter(CAMERA_CODES[key], *sizes[key], seed=config.seed).render for key in config.rgb_keys
    }
    height, width = sizes[config.rgb_keys[0]]
    for key in depth_keys(config):
        frames[key] = lambda e, f: expected_depth(e, f, height, width)[..., None]
    return frames


@contextlib.contextmanager
def quiet_libav() -> Iterator[None]:
    """FFmpeg's own console messages (mp4 muxer notes) off while building; restored afterwards."""
    previous = av.logging.get_level()
    logger = logging.getLogger("libav")
    previous_py = logger.level
    av.logging.set_level(av.logging.ERROR)
    # lerobot's encoders and get_video_info re-install FFmpeg's own printing callback: gate it at
    # libav's level too
    av.logging.set_libav_level(av.logging.ERROR)
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        av.logging.set_libav_level(av.logging.INFO)  # FFmpeg's default
        av.logging.set_level(previous)
        logger.setLevel(previous_py)


def encode_video(
    path: Path, frame: Callable[[int], np.ndarray], length: int, fps: int, encoder
) -> np.ndarray:
    """Encode frames ``frame(0..length-1)`` into an mp4 at `path` as lerobot's encoder does (RGB as is,
    depth quantized to 12 bits); return the frames lerobot's stats sample, (N, C, h, w)."""
    from lerobot.configs.video import DepthEncoderConfig
    from lerobot.datasets.compute_stats import auto_downsample_height_width, sample_indices
    from lerobot.datasets.depth_utils import quantize_depth

    is_depth = isinstance(encoder, DepthEncoderConfig)
    sampled = set(sample_indices(length))
    samples = []
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(
            encoder.vcodec, fps, options=encoder.get_codec_options(1, as_strings=True)
        )
        stream.pix_fmt = encoder.pix_fmt
        for i in range(length):
            image = frame(i)
            if i == 0:
                stream.height, stream.width = image.shape[:2]
            if i in sampled:
                chw = np.ascontiguousarray(image.transpose(2, 0, 1))
                samples.append(chw if is_depth else auto_downsample_height_width(chw))
            if is_depth:
                video_frame = quantize_depth(
                    image[..., 0],
                    depth_min=encoder.depth_min,
                    depth_max=encoder.depth_max,
                    shift=encoder.shift,
                    use_log=encoder.use_log,
                    pix_fmt=encoder.pix_fmt,
                    video_backend="pyav",
                )
            else:
                video_frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            for packet in stream.encode(video_frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return np.stack(samples)
