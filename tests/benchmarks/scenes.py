"""Procedural camera content for the benchmark dataset: textured rooms, a panning camera and moving
textured objects, generated fast with numpy + PIL (no flat colours: video and JPEG sizes should be
in the range of real rendered frames, so the codecs do realistic work).

Each episode gets its own room per camera. A frame is a moving crop of a large textured background
(the camera pans and bobs), with textured objects moving across it, a fixed gripper in the wrist
views, a slow lighting change and a little per-frame noise (renderer noise).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image


def smooth_noise(
    rng: np.random.Generator, height: int, width: int, cell: int, channels: int = 3
) -> np.ndarray:
    """Value noise: a random grid of (height/cell x width/cell) upsampled bicubically; float32 in ~[0, 1]."""
    gh, gw = max(2, height // cell + 2), max(2, width // cell + 2)
    grid = rng.integers(0, 256, size=(gh, gw, channels), dtype=np.uint8)
    up = Image.fromarray(grid.squeeze(-1) if channels == 1 else grid).resize((width, height), Image.BICUBIC)
    out = np.asarray(up, dtype=np.float32) / 255.0
    return out.reshape(height, width, channels)


def texture(rng: np.random.Generator, height: int, width: int, palette: np.ndarray) -> np.ndarray:
    """A float32 HxWx3 texture in [0, 255]: multi-octave colour noise over a 2-colour palette, plus
    a wood-grain / tile pattern and fine grain."""
    t = (
        0.35 * smooth_noise(rng, height, width, max(8, min(height, width) // 3), 1)
        + 0.25 * smooth_noise(rng, height, width, 24, 1)
        + 0.2 * smooth_noise(rng, height, width, 6, 1)
        + 0.2 * smooth_noise(rng, height, width, 2, 1)
    )
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    kind = rng.integers(0, 3)
    if kind == 0:  # wood grain
        freq = rng.uniform(0.08, 0.25)
        pattern = 0.5 + 0.5 * np.sin(freq * (yy + 40.0 * t[..., 0]))
    elif kind == 1:  # tiles with grout lines
        size = int(rng.integers(16, 64))
        pattern = (((yy % size) < 2) | ((xx % size) < 2)).astype(np.float32) * -0.8 + 0.8
        pattern += 0.4 * (((yy // size + xx // size) % 2) - 0.5)
    else:  # fabric / plaster
        pattern = smooth_noise(rng, height, width, 3, 1)[..., 0]
    mix = np.clip(0.5 * t[..., 0] + 0.5 * pattern, 0.0, 1.0)[..., None]
    colour = palette[0] * (1.0 - mix) + palette[1] * mix
    colour += (smooth_noise(rng, height, width, 48, 3) - 0.5) * 40.0  # colour variation
    return colour


def random_palette(rng: np.random.Generator) -> np.ndarray:
    base = rng.uniform(40, 215, size=3)
    other = np.clip(base + rng.uniform(-90, 90, size=3), 0, 255)
    return np.stack([base, other]).astype(np.float32)


@dataclass
class Sprite:
    rgb: np.ndarray  # float32 hxwx3
    alpha: np.ndarray  # float32 hxwx1 in [0, 1]
    centre: np.ndarray  # (y, x) as a fraction of the frame
    amplitude: np.ndarray  # (y, x) fraction
    omega: np.ndarray  # (y, x) rad/frame
    phase: np.ndarray
    fixed: bool = False


def make_sprite(
    rng: np.random.Generator, size_h: int, size_w: int, ellipse: bool
) -> tuple[np.ndarray, np.ndarray]:
    rgb = texture(rng, size_h, size_w, random_palette(rng))
    yy, xx = np.mgrid[0:size_h, 0:size_w].astype(np.float32)
    if ellipse:
        d = ((yy - size_h / 2) / (size_h / 2)) ** 2 + ((xx - size_w / 2) / (size_w / 2)) ** 2
        alpha = np.clip((1.0 - d) * 8.0, 0.0, 1.0)  # anti-aliased edge
    else:
        alpha = np.ones((size_h, size_w), np.float32)
    # shading: lit from the top left
    shade = 1.15 - 0.35 * (yy / size_h + xx / size_w) / 2
    return rgb * shade[..., None], alpha[..., None]


class CameraScene:
    """Frames of one camera for one episode: `frame(i)` is deterministic in (seed, i)."""

    def __init__(self, seed: int, height: int, width: int, *, wrist: bool, noise_sigma: float = 2.0) -> None:
        rng = np.random.default_rng(seed)
        self.height, self.width = height, width
        self.margin = margin = max(height, width) // 4
        bh, bw = height + 2 * margin, width + 2 * margin
        bg = texture(rng, bh, bw, random_palette(rng))
        # furniture: textured blocks with hard edges
        for n in range(int(rng.integers(20, 30))):
            big = n < 6  # a few pieces of furniture, then clutter
            h = int(rng.integers(bh // 10, bh // 3)) if big else int(rng.integers(bh // 40, bh // 10))
            w = int(rng.integers(bw // 10, bw // 3)) if big else int(rng.integers(bw // 40, bw // 10))
            y, x = int(rng.integers(0, bh - h)), int(rng.integers(0, bw - w))
            bg[y : y + h, x : x + w] = texture(rng, h, w, random_palette(rng))
            bg[y : y + h, x : x + 3] *= 0.5  # a shadowed edge
        self.background = np.clip(bg, 0, 255).astype(np.float32)
        # camera motion: wrists move faster and further than the head
        speed = 0.06 if wrist else 0.02
        self.pan_omega = rng.uniform(0.5, 1.0, size=2) * speed
        self.pan_phase = rng.uniform(0, 2 * np.pi, size=2)
        self.sprites: list[Sprite] = []
        for _ in range(int(rng.integers(3, 6))):
            sh = int(rng.integers(height // 10, height // 4))
            sw = int(rng.integers(width // 10, width // 4))
            rgb, alpha = make_sprite(rng, sh, sw, ellipse=bool(rng.integers(0, 2)))
            self.sprites.append(
                Sprite(
                    rgb,
                    alpha,
                    centre=rng.uniform(0.3, 0.7, size=2),
                    amplitude=rng.uniform(0.1, 0.3, size=2),
                    omega=rng.uniform(0.01, 0.05, size=2),
                    phase=rng.uniform(0, 2 * np.pi, size=2),
                )
            )
        if wrist:  # the gripper fingers, fixed at the bottom of the view
            for side in (0.3, 0.7):
                rgb, alpha = make_sprite(rng, height // 3, width // 8, ellipse=False)
                rgb = rgb * 0.35 + 20
                self.sprites.append(
                    Sprite(
                        rgb, alpha, np.array([0.85, side]), np.zeros(2), np.zeros(2), np.zeros(2), fixed=True
                    )
                )
        self.light_omega = rng.uniform(0.005, 0.02)
        self.noise = rng.normal(0.0, noise_sigma, size=(5, height, width, 3)).astype(np.float32)

    def frame(self, i: int) -> np.ndarray:
        """HxWx3 uint8 RGB frame number i."""
        h, w, m = self.height, self.width, self.margin
        oy, ox = (m + 0.9 * m * np.sin(self.pan_omega * i + self.pan_phase)).astype(int)
        out = self.background[oy : oy + h, ox : ox + w].copy()
        for s in self.sprites:
            cy, cx = s.centre + s.amplitude * np.sin(s.omega * i + s.phase)
            sh, sw = s.alpha.shape[:2]
            y0, x0 = int(cy * h - sh / 2), int(cx * w - sw / 2)
            ys, xs = max(0, y0), max(0, x0)
            ye, xe = min(h, y0 + sh), min(w, x0 + sw)
            if ye <= ys or xe <= xs:
                continue
            a = s.alpha[ys - y0 : ye - y0, xs - x0 : xe - x0]
            region = out[ys:ye, xs:xe]
            region += a * (s.rgb[ys - y0 : ye - y0, xs - x0 : xe - x0] - region)
        out *= 0.9 + 0.1 * np.sin(self.light_omega * i)
        out += self.noise[i % len(self.noise)]
        return np.clip(out, 0, 255).astype(np.uint8)
