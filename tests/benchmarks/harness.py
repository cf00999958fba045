"""What every part of `make bench` shares: its profiles (sizes and timing windows: quick, smoke, full)
and its progress line (`log`)."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    episode_length: int  # L: the short episodes; the last episode is 4L (memory check only)
    short_episodes: int  # rounded up to a multiple of N so that N preprocess workers get equal work
    loader_seconds: float
    floor_seconds: float
    train_steps: int
    paced_steps: int  # batches of 32 the GPU-paced consumer takes (trainer section)
    loader_rounds: int  # loader configurations are measured round-robin this many times; best kept
    preprocess_rounds: int


QUICK = Profile(
    "quick",
    episode_length=150,
    short_episodes=4,
    loader_seconds=8,
    floor_seconds=4,
    train_steps=60,
    paced_steps=150,
    loader_rounds=2,
    preprocess_rounds=2,  # the scaling ratio is wall-clock: best of 2 on a shared machine
)
SMOKE = Profile(
    "smoke",
    episode_length=30,
    short_episodes=2,
    loader_seconds=3,
    floor_seconds=2,
    train_steps=20,
    paced_steps=20,
    loader_rounds=1,
    preprocess_rounds=1,
)
FULL = Profile(
    "full",
    episode_length=300,
    short_episodes=8,
    loader_seconds=15,
    floor_seconds=8,
    train_steps=200,
    paced_steps=300,
    loader_rounds=3,
    preprocess_rounds=3,  # the scaling ratio is wall-clock: best of 3 on a shared machine
)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)
