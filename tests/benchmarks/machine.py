"""The machine `make bench` runs on: FFmpeg's shared libraries for torchcodec (installed when missing
and possible) and what the results record about it (CPUs, library versions)."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

from tests.benchmarks.harness import log


def has_ffmpeg_libs() -> bool:
    try:
        out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return False
    return "libavcodec.so" in out


def ensure_ffmpeg(install: bool) -> dict:
    """torchcodec (lerobot's default video backend) needs FFmpeg's shared libraries; Debian's `ffmpeg`
    package provides them. Install it when missing and possible (root + apt-get)."""
    info = {"libavcodec_before": has_ffmpeg_libs(), "install_attempted": False}
    if not info["libavcodec_before"] and install:
        if os.geteuid() == 0 and shutil.which("apt-get"):
            log("FFmpeg shared libraries missing: apt-get install -y ffmpeg (for torchcodec)")
            info["install_attempted"] = True
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            cmd = ["apt-get", "install", "-y", "-q", "ffmpeg"]
            done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            if done.returncode != 0:
                subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env, check=False)
                done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            info["install_rc"] = done.returncode
            if done.returncode != 0:
                info["install_error"] = done.stderr[-500:]
        else:
            info["install_skipped"] = (
                "not root or no apt-get: install FFmpeg (e.g. `apt-get install ffmpeg`) for torchcodec"
            )
    info["libavcodec_after"] = has_ffmpeg_libs()
    return info


def machine_info() -> dict:
    import numpy
    import PIL
    import torch

    info = {
        "cpus": os.cpu_count(),
        "affinity_cpus": len(os.sched_getaffinity(0)),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "pillow": PIL.__version__,
        "load_avg_start": list(os.getloadavg()),
    }
    try:
        import av
        import lerobot

        info["lerobot"] = lerobot.__version__
        info["av"] = av.__version__
    except Exception:
        pass
    try:
        import torchcodec

        info["torchcodec"] = torchcodec.__version__
    except Exception as exc:
        info["torchcodec"] = f"unavailable ({type(exc).__name__})"
    try:
        from PIL import features

        info["libjpeg_turbo"] = bool(features.check_feature("libjpeg_turbo"))
    except Exception:
        pass
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
        info["cpu_model"] = model
    except Exception:
        pass
    return info
