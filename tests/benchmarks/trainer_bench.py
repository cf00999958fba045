"""Trainer overhead: b1k-train with the tiny offline backbone; the share of step time spent waiting
for data, read from its JSONL log (`train_log.jsonl`, records with `kind == "train"` carry
`data_wait_share` and `samples_per_s` over the window since the previous record).

The first window (DataLoader workers starting, shuffle buffers filling) is reported apart and left
out of the steady-state share.

`paced`: the trainer's data stream at a realistic GPU step time. A consumer takes batches of 32 from
b1k-train's own stream (train.data: TrainStream + make_loader, its default 8 workers) and sleeps
`GPU_STEP_S` per batch instead of running the model, as the training process waits on the GPU. It
reports the data-wait share (time in `next(batches)` / (that + the GPU time, steps x step)) and the CPU cores per GPU the loader
needs: the workers' CPU-seconds per wall second while keeping pace, and, from a free-running phase
after it, samples/s needed (batch / step time) over samples per worker CPU-second.

    python -m tests.benchmarks.trainer_bench paced --shards DIR [--step-s 0.08 --workers 8]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from tests.benchmarks.measure import measure_subprocess


def console_script(name: str, module: str) -> list[str]:
    script = Path(sys.executable).with_name(name)
    return [str(script)] if script.exists() else [sys.executable, "-m", module]


def build_backbone(path: Path, log_dir: Path) -> Path:
    if (path / "config.json").is_file():
        return path
    result = measure_subprocess(
        [*console_script("b1k-tiny-backbone", "demo.backbone"), "--output-dir", str(path)],
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


# The realistic step of SmolVLA (~450 M parameters) at batch 32 on one H100 in bf16, the consumer's
# sleep: ~80 ms (docs/performance.md). Derivation (`python -m tests.benchmarks.model_bench` on
# `b1k-tiny-backbone --architecture smolvlm2-500m`): torch's FlopCounterMode counts 0.72 TFLOP per
# sample for b1k-train's default step (vision encoder frozen, expert trained; forward + backward),
# 23.1 TFLOP at batch 32; at 30% of the H100's 989 TFLOP/s dense bf16 peak that is 78 ms. Cross-check:
# lerobot's own H100 figure (docs "Compute HW Guide": update_s 0.312 s at batch 32 for SmolVLA with
# everything trained, 1.85 TFLOP per sample by the same count, fp32) scales by the FLOPs to 122 ms.
# The shorter figure is kept: the faster the GPU, the more the loader must deliver.
GPU_STEP_S = 0.080
GPU_BATCH = 32
DEFAULT_WORKERS = 8  # b1k-train's --num-workers default


def paced_consumer(
    shard_dir: str,
    *,
    step_s: float = GPU_STEP_S,
    batch_size: int = GPU_BATCH,
    workers: int = DEFAULT_WORKERS,
    steps: int = 150,
    warmup: int = 20,
    capacity_batches: int = 60,
    seed: int = 0,
) -> dict:
    """Take batches from b1k-train's stream, sleeping `step_s` per batch; then free-running."""
    from tests.benchmarks.loader import CHUNK, cpu_seconds
    from train import data as train_data

    spec = train_data.open_data([shard_dir])
    stream = train_data.TrainStream(
        spec, chunk_size=CHUNK, seed=seed, batch_size=batch_size, num_workers=workers
    )
    loader = train_data.make_loader(stream, persistent=True)
    # As b1k-train on CPU: views of the workers' buffers, no copy. A GPU run copies each batch into
    # pinned memory instead (torch reuses those buffers; not measurable without CUDA). A plain
    # copy=True here would allocate ~66 MB per 512 px batch afresh and page-fault it in (40 ms of
    # consumer CPU per batch measured here), a cost the pinned path does not have.
    batches = train_data.batches(loader, pin_memory=False, copy=False)
    started = time.perf_counter()
    for _ in range(warmup):  # workers starting, shuffle buffers filling, prefetch queue filling
        next(batches)
        time.sleep(step_s)
    startup_s = time.perf_counter() - started

    own0, workers0 = cpu_seconds()
    wait = 0.0
    begin = time.perf_counter()
    for _ in range(steps):
        t = time.perf_counter()
        next(batches)
        wait += time.perf_counter() - t
        time.sleep(step_s)
    wall = time.perf_counter() - begin
    own1, workers1 = cpu_seconds()

    # Free-running: what the loader delivers with no model at all (its ceiling on this machine).
    # The batches the workers prefetched while the consumer slept are taken first, untimed.
    for _ in range(workers * train_data.PREFETCH_ITEMS):
        next(batches)
    own2, workers2 = cpu_seconds()
    t = time.perf_counter()
    for _ in range(capacity_batches):
        next(batches)
    capacity_s = time.perf_counter() - t
    own3, workers3 = cpu_seconds()

    needed = batch_size / step_s
    per_worker_cpu_s = capacity_batches * batch_size / (workers3 - workers2)
    return {
        "kind": "paced",
        "loader": "train.data (b1k-train's stream)",
        "step_s": step_s,
        "batch_size": batch_size,
        "num_workers": workers,
        "steps": steps,
        "warmup_steps": warmup,
        "startup_s": startup_s,
        "wall_s": wall,
        "data_wait_s": wait,
        # of the time the GPU would take (steps x step_s) plus the waits: a late wake-up from sleep
        # on a busy machine (`oversleep_s`) is neither GPU time nor data wait
        "data_wait_share": wait / (wait + steps * step_s),
        "oversleep_s": wall - wait - steps * step_s,
        "samples_per_s_needed": needed,
        "samples_per_s_paced": steps * batch_size / wall,
        "worker_cores_paced": (workers1 - workers0) / wall,
        "main_cores_paced": (own1 - own0) / wall,
        "samples_per_s_free": capacity_batches * batch_size / capacity_s,
        "samples_per_worker_cpu_s": per_worker_cpu_s,
        "main_cpu_s_per_sample": (own3 - own2) / (capacity_batches * batch_size),
        "cores_per_gpu": needed / per_worker_cpu_s,
        "cpus": len(os.sched_getaffinity(0)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.trainer_bench")
    parser.add_argument("kind", choices=["paced"])
    parser.add_argument("--shards", required=True, help="a shard set directory")
    parser.add_argument("--step-s", type=float, default=GPU_STEP_S, help="the GPU step the consumer sleeps")
    parser.add_argument("--batch-size", type=int, default=GPU_BATCH)
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    parser.add_argument("--steps", type=int, default=150)
    args = parser.parse_args(argv)
    result = paced_consumer(
        args.shards, step_s=args.step_s, batch_size=args.batch_size, workers=args.workers, steps=args.steps
    )
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()
    os._exit(0)  # do not wait for persistent DataLoader workers to wind down


if __name__ == "__main__":
    raise SystemExit(main())
