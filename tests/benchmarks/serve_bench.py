"""`b1k-serve` overhead per step: everything but the model, on CPU.

A checkpoint of the tiny offline backbone (stored frames 224 x 224, as for the 2025 default wrapper) is
served on 127.0.0.1 and driven by the evaluator's client code (tests/deploy/evaluator_client.py) with
RGBA observations at 720/480 (the full-resolution wrappers) and at 224. `--action-steps 1`, so every
step runs the model. Per step:

- `server_overhead_ms`: the server's own time minus the model's (`server_timing.overhead_ms`: msgpack
  decode, alpha drop + resize of three frames, state, lerobot's pre/post-processors, reply encode);
- `end_to_end_overhead_ms`: the client's round trip minus the model's time (adds the client's packing,
  the websocket transfer of ~4 MB at 720/480, and the event-loop hand-offs).

The model (`SmolVLAPolicy.predict_action_chunk`) is timed apart (`model_ms`): with the tiny backbone it
says nothing about a real SmolVLA; the goal is overhead < 5 ms per step.

    python -m tests.benchmarks.serve_bench --out bench-output/serve
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SIZES = {"720/480": (720, 480), "224": (224, 224)}


def make_checkpoint(work: Path) -> Path:
    from click.testing import CliRunner

    from tests.shardsets import write_shard_set
    from train import cli
    from train.tiny_backbone import TinyBackboneSpec, build_tiny_backbone

    checkpoint = work / "run" / "checkpoints" / "last" / "pretrained_model"
    if (checkpoint / "model.safetensors").is_file():
        return checkpoint
    backbone = build_tiny_backbone(work / "backbone", TinyBackboneSpec(image_size=32, patch_size=8))
    cameras = {name: (224, 224) for name in ("head", "left_wrist", "right_wrist")}
    write_shard_set(work / "set", episodes=3, length=10, val_episodes=(2,), horizon=8, cameras=cameras)
    args = [
        "--shards", work / "set", "--vlm-model", backbone, "--output-dir", work / "run", "--batch-size", 2,
        "--chunk-size", 8, "--max-steps", 1, "--num-workers", 0, "--val-every", 0, "--no-progress",
    ]  # fmt: skip
    result = CliRunner().invoke(cli.main, [str(a) for a in args], catch_exceptions=False)
    if result.exit_code != 0:
        raise RuntimeError(f"b1k-train failed: {result.output[-2000:]}")
    return checkpoint


def _stats(values: list[float]) -> dict:
    array = np.asarray(values)
    return {
        "p50": round(float(np.percentile(array, 50)), 3),
        "p95": round(float(np.percentile(array, 95)), 3),
    }


def measure(checkpoint: Path, steps: int = 60, warmup: int = 5) -> dict:
    import torch

    from deploy.adapter import ObservationAdapter
    from deploy.checkpoint import load_checkpoint
    from deploy.policy import ChunkModel, ExecutionConfig
    from deploy.server import PolicyServer, ServeConfig, ServerThread
    from tests.deploy.evaluator_client import EvaluatorClient, observation

    torch.set_num_threads(1)
    loaded = load_checkpoint(checkpoint, device="cpu")
    model = ChunkModel(loaded, ObservationAdapter(loaded.spec))
    server = PolicyServer(model, ExecutionConfig(action_steps=1), ServeConfig(host="127.0.0.1", port=0))
    results: dict = {"steps": steps, "stored_size": "224x224", "torch_threads": 1}
    with ServerThread(server) as thread, EvaluatorClient("127.0.0.1", thread.port) as client:
        for label, sizes in SIZES.items():
            observations = [observation(i, sizes=sizes) for i in range(8)]
            client.reset()
            for i in range(warmup):
                client.infer(observations[i % len(observations)])
            server_overhead, end_to_end, model_ms, round_trip = [], [], [], []
            for i in range(steps):
                started = time.perf_counter()
                reply = client.infer(observations[i % len(observations)])
                rtt = (time.perf_counter() - started) * 1e3
                timing = reply["server_timing"]
                server_overhead.append(timing["overhead_ms"])
                model_ms.append(timing["model_ms"])
                round_trip.append(rtt)
                end_to_end.append(rtt - timing["model_ms"])
            results[label] = {
                "server_overhead_ms": _stats(server_overhead),
                "end_to_end_overhead_ms": _stats(end_to_end),
                "model_ms": _stats(model_ms),
                "round_trip_ms": _stats(round_trip),
            }
    return results


def run(work: Path, steps: int = 60) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    return measure(make_checkpoint(work), steps=steps)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench-output/serve")
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args(argv)
    results = run(Path(args.out), steps=args.steps)
    (Path(args.out) / "serve.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
