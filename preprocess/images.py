"""Frame images: choose the stored size, resize, JPEG-encode.

Resize: `shards.frames.resize_rgb` (Pillow bilinear on the decoded RGB24 frame, only when the size
changes; recorded in the manifest as `resize: "pillow-bilinear"`, or `"none"`), the one implementation
that the deployed policy repeats on the evaluator's frames. JPEG: `shards.codec.encode_jpeg` (Pillow,
libjpeg-turbo), 4:2:0 chroma subsampling (Pillow's default), quality `--jpeg-quality` (default 90).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from preprocess.defaults import DEFAULT_JPEG_QUALITY, DEFAULT_MAX_SIDE  # noqa: F401 (the quality: re-exported)
from schemas.errors import B1kError
from shards.codec import encode_jpeg
from shards.frames import RESIZE_METHOD, resize_rgb  # noqa: F401 (RESIZE_METHOD: re-exported)


class ImageSizeError(B1kError, ValueError):
    pass


@dataclass(frozen=True)
class ImageSize:
    """`--image-size`: cap the longest side (`max_side`), or an exact `height` x `width`, or `native`."""

    max_side: int | None = DEFAULT_MAX_SIDE
    height: int | None = None
    width: int | None = None

    @classmethod
    def parse(cls, text: str | int | None) -> ImageSize:
        """None/'' -> cap longest side at 512; 'N' -> NxN; 'HxW' -> HxW; 'maxN' -> cap at N; 'native'."""
        if text is None or text == "":
            return cls()
        if isinstance(text, int):
            text = str(text)
        spec = text.strip().lower()
        if spec == "native":
            return cls(max_side=None)
        if m := re.fullmatch(r"max(\d+)", spec):
            side = int(m.group(1))
            if side <= 0:
                raise ImageSizeError(f"--image-size {text!r}: the cap must be > 0")
            return cls(max_side=side)
        if m := re.fullmatch(r"(\d+)", spec):
            n = int(m.group(1))
            if n <= 0:
                raise ImageSizeError(f"--image-size {text!r}: must be > 0")
            return cls(max_side=None, height=n, width=n)
        if m := re.fullmatch(r"(\d+)x(\d+)", spec):
            h, w = int(m.group(1)), int(m.group(2))
            if h <= 0 or w <= 0:
                raise ImageSizeError(f"--image-size {text!r}: sides must be > 0")
            return cls(max_side=None, height=h, width=w)
        raise ImageSizeError(
            f"--image-size {text!r}: expected N (NxN), HxW, maxN (cap the longest side at N) or native"
        )

    def target(self, height: int, width: int) -> tuple[int, int]:
        """Stored (height, width) for a camera whose native size is (height, width)."""
        if self.height is not None and self.width is not None:
            return self.height, self.width
        if self.max_side is None or max(height, width) <= self.max_side:
            return height, width
        scale = self.max_side / max(height, width)
        return max(1, round(height * scale)), max(1, round(width * scale))

    def describe(self) -> str:
        if self.height is not None:
            return f"{self.height}x{self.width}"
        return "native" if self.max_side is None else f"max{self.max_side}"


def encode_rgb_jpeg(rgb: np.ndarray, height: int, width: int, quality: int) -> bytes:
    """Resize (if needed) and JPEG-encode one RGB frame: `resize_rgb`, then the shard codec's JPEG."""
    return encode_jpeg(resize_rgb(rgb, height, width), quality)
