"""Trainer overhead: b1k-train with the tiny offline backbone; the share of step time spent waiting
for data, read from its JSONL log (`train_log.jsonl`, records with `kind == "train"` carry
`data_wait_share` and `samples_per_s` over the window since the previous record).

The first window (DataLoader workers starting, shuffle buffers filling) is reported apart and left
out of the steady-state share.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from tests.benchmarks.measure import measure_subprocess


def console_script(name: str, module: str) -> list[str]:
    script = Path(sys.executable).with_name(name)
    return [str(script)] if script.exists() else [sys.executable, "-m", module]


def build_backbone(path: Path, log_dir: Path) -> Path:
    if (path / "config.json").is_file():
        return path
    result = measure_subprocess(
        [*console_script("b1k-tiny-backbone", "train.tiny_backbone"), "--output-dir", str(path)],
        log_path=log_dir / "tiny-backbone.log",
    )
    if result["rc"] != 0:
        raise RuntimeError(f"b1k-tiny-backbone failed: {Path(result['log']).read_text()[-2000:]}")
    return path


def read_train_log(path: Path) -> list[dict]:
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("kind") == "train":
            records.append(record)
    return records


def run_trainer(
    shards: str,
    run_dir: Path,
    *,
    steps: int,
    workers: int,
    log_dir: Path,
    name: str,
    log_every: int = 10,
    batch_size: int = 8,
    chunk_size: int = 50,
) -> dict:
    backbone = build_backbone(run_dir.parent / "tiny-backbone", log_dir)
    if run_dir.exists():
        shutil.rmtree(run_dir)
    cmd = [
        *console_script("b1k-train", "train.cli"),
        "--shards",
        shards,
        "--vlm-model",
        str(backbone),
        "--batch-size",
        str(batch_size),
        "--chunk-size",
        str(chunk_size),
        "--max-steps",
        str(steps),
        "--num-workers",
        str(workers),
        "--device",
        "cpu",
        "--output-dir",
        str(run_dir),
        "--log-every",
        str(log_every),
        "--save-every",
        "0",
        "--val-every",
        "0",
        "--no-progress",
    ]
    result = measure_subprocess(cmd, log_path=log_dir / f"{name}.log")
    if result["rc"] != 0:
        raise RuntimeError(f"b1k-train failed (rc {result['rc']}): {Path(result['log']).read_text()[-3000:]}")
    logs = list(run_dir.rglob("train_log.jsonl"))
    if not logs:
        raise RuntimeError(f"b1k-train wrote no train_log.jsonl under {run_dir}")
    records = read_train_log(logs[0])
    if not records or "data_wait_share" not in records[-1]:
        raise RuntimeError(f"{logs[0]}: no train records with data_wait_share")
    steady = records[1:] or records
    # windows are log_every steps each: the mean of window shares weights them equally
    share = sum(r["data_wait_share"] for r in steady) / len(steady)
    sps = sum(r["samples_per_s"] for r in steady) / len(steady) if "samples_per_s" in steady[0] else None
    result.update(
        workers=workers,
        steps=steps,
        batch_size=batch_size,
        data_wait_share=share,
        first_window_data_wait_share=records[0]["data_wait_share"],
        samples_per_s=sps,
        windows=len(steady),
        log_file=str(logs[0]),
    )
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return result
