"""Issue 4, acceptance 3: `b1k-train --shards http://127.0.0.1:PORT/set` trains, and for the same seed
matches training from the local directory (same losses at every step, same final weights)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ENV = {
    **os.environ,
    "OMP_NUM_THREADS": "1",
    "HF_HUB_OFFLINE": "1",
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
}


def _train(shards: str, backbone: Path, out: Path) -> subprocess.CompletedProcess:
    args = [
        "--shards",
        shards,
        "--vlm-model",
        backbone,
        "--output-dir",
        out,
        "--batch-size",
        4,
        "--chunk-size",
        4,
        "--max-steps",
        5,
        "--num-workers",
        2,
        "--shuffle-buffer",
        10,
        "--val-every",
        0,
        "--save-every",
        0,
        "--log-every",
        1,
        "--seed",
        5,
        "--no-progress",
    ]
    return subprocess.run(
        [sys.executable, "-m", "train.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=600,
    )


def _losses(out: Path) -> dict[int, tuple[float, float]]:
    lines = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    return {r["step"]: (r["loss"], r["weighted_loss"]) for r in lines if r["kind"] == "train"}


def test_training_from_http_matches_local(shard_set, http_server, http_log, tiny_backbone, tmp_path):
    from safetensors.torch import load_file

    www, base = http_server
    shutil.copytree(shard_set, www / "set")
    local = _train(str(shard_set), tiny_backbone, tmp_path / "local")
    assert local.returncode == 0, local.stderr[-4000:]
    remote = _train(f"{base}/set", tiny_backbone, tmp_path / "remote")
    assert remote.returncode == 0, remote.stderr[-4000:]
    assert "/set/manifest.json" in http_log
    assert {f"/set/train-{i:06d}.tar" for i in range(4)} <= set(http_log)  # the shards came over http

    assert sorted(_losses(tmp_path / "local")) == [1, 2, 3, 4, 5]
    assert _losses(tmp_path / "remote") == _losses(tmp_path / "local")
    weights = [
        load_file(tmp_path / run / "checkpoints" / "last" / "pretrained_model" / "model.safetensors")
        for run in ("local", "remote")
    ]
    assert weights[0].keys() == weights[1].keys()
    assert all(bool((weights[0][k] == weights[1][k]).all()) for k in weights[0])
