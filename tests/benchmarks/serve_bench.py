"""`b1k-serve` on CPU: its overhead per step, its start-up, many environments at once, fairness.

A checkpoint (stored frames 224 x 224, as for the 2025 default wrapper) of the tiny offline backbone,
and one of SmolVLA at its real size (`b1k-tiny-backbone --architecture smolvlm2-500m`, random
weights, chunk 50), each trained 1 step, are served on 127.0.0.1 and driven by the evaluators' client
code (tests/deploy/evaluator_client.py for 2025, evaluator_client_2026.py for 2026).

- overhead (tiny): per step at 720/480 and 224 inputs, `--action-steps 1` (every step runs the model):
  `server_overhead_ms` is the server's own time minus the model's (msgpack decode, alpha drop + resize
  of three frames, state, lerobot's pre/post-processors, reply encode); `end_to_end_overhead_ms` adds
  the client's packing, the websocket transfer (~4 MB at 720/480) and the thread hand-offs. Goal: < 5 ms.
- start_to_healthy (both): `b1k-serve` started as a process until GET /healthz answers (503 while the
  model loads: `listening_s`) and answers 200 (`healthy_s`).
- concurrent (both): N evaluator-like clients, one connection per environment, each asking again as
  soon as it has its reply (chunk replay: every request runs the model, one environment), against the
  same N served one request at a time (`--max-model-batch 1`): requests/s and the ratio.
- fairness (tiny): an honest client's step time (B = 1, 224) alone and beside a client that sends the
  largest requests the default limits allow (16 environments at 720/480, 15.7 M pixels, 63 MB).

    python -m tests.benchmarks.serve_bench --out bench-output/serve [--full]
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


ARCHITECTURES = ("tiny", "smolvlm2-500m")  # the tiny offline backbone; SmolVLA at its real size


def make_checkpoint(work: Path, architecture: str = "tiny") -> Path:
    """A b1k-train checkpoint (1 step) on a random-weight backbone of `architecture`, built once in `work`."""
    from click.testing import CliRunner

    from demo.backbone import ARCHITECTURES as SPECS
    from demo.backbone import TinyBackboneSpec, build_tiny_backbone
    from tests.shardsets import write_shard_set
    from train import cli

    checkpoint = work / "run" / "checkpoints" / "last" / "pretrained_model"
    if (checkpoint / "model.safetensors").is_file():
        return checkpoint
    spec = TinyBackboneSpec(image_size=32, patch_size=8) if architecture == "tiny" else SPECS[architecture]
    backbone = build_tiny_backbone(work / "backbone", spec)
    chunk = 8 if architecture == "tiny" else 50  # SmolVLA's own chunk at the real size
    cameras = {name: (224, 224) for name in ("head", "left_wrist", "right_wrist")}
    write_shard_set(work / "set", episodes=3, length=10, val_episodes=(2,), horizon=chunk, cameras=cameras)
    args = [
        "--shards", work / "set", "--vlm-model", backbone, "--output-dir", work / "run", "--batch-size", 1,
        "--chunk-size", chunk, "--max-steps", 1, "--num-workers", 0, "--val-every", 0, "--no-progress",
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


def _model(checkpoint: Path, **limits):
    from deploy.adapter import ObservationAdapter
    from deploy.checkpoint import load_checkpoint
    from deploy.policy import ChunkModel

    loaded = load_checkpoint(checkpoint, device="cpu")
    return ChunkModel(loaded, ObservationAdapter(loaded.spec, **limits))


def _server(model, execution=None, **config):
    from deploy.execution import ExecutionConfig
    from deploy.server import PolicyServer, ServeConfig, ServerThread

    server = PolicyServer(execution or ExecutionConfig(), ServeConfig(host="127.0.0.1", ports=(0,), **config))
    return ServerThread(server, lambda: model)


def overhead(model, steps: int = 60, warmup: int = 5) -> dict:
    """The server's time per step minus the model's, at 720/480 and 224 inputs (2025 client)."""
    from deploy.execution import ExecutionConfig
    from tests.deploy.evaluator_client import EvaluatorClient, observation

    results: dict = {"steps": steps, "stored_size": "224x224", "torch_threads": 1}
    with (
        _server(model, ExecutionConfig(action_steps=1)) as thread,
        EvaluatorClient("127.0.0.1", thread.port) as client,
    ):
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


def start_to_healthy(checkpoint: Path, repeats: int = 2) -> dict:
    """`b1k-serve` as a process: seconds until /healthz answers (503 while loading), and until 200."""
    import subprocess
    import sys

    from tests.deploy.helpers import free_port

    listening, healthy = [], []
    for _ in range(repeats):
        port = free_port()
        args = ["--checkpoint", str(checkpoint), "--port", str(port), "--device", "cpu"]
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "deploy.cli", *args], stderr=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL)  # fmt: skip
        try:
            first, ok = _poll_health(port, started)
        finally:
            process.terminate()
            process.wait(60)
        listening.append(first)
        healthy.append(ok)
    return {"listening_s": round(min(listening), 2), "healthy_s": round(min(healthy), 2), "repeats": repeats}


def _poll_health(port: int, started: float, timeout: float = 300) -> tuple[float, float]:
    """(seconds to the first HTTP answer, seconds to a 200) of GET /healthz, polled every 20 ms."""
    import urllib.error
    import urllib.request

    first = None
    while time.perf_counter() - started < timeout:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
                if response.status == 200:
                    now = time.perf_counter() - started
                    return (first or now), now
        except urllib.error.HTTPError:
            first = first or time.perf_counter() - started
        except OSError:
            pass
        time.sleep(0.02)
    raise TimeoutError(f"b1k-serve was not healthy within {timeout} s")


class _Served:
    """`b1k-serve ARGS` as a process (the clients run apart from it, as the evaluator does), until exit."""

    def __init__(self, checkpoint: Path, *args: str) -> None:
        import subprocess
        import sys

        from tests.deploy.helpers import free_port

        self.port = free_port()
        command = [sys.executable, "-m", "deploy.cli", "--checkpoint", str(checkpoint), "--device", "cpu"]
        command += ["--port", str(self.port), "--log-every", "0", *args]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def __enter__(self) -> _Served:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.process.terminate()
        self.process.wait(60)


def _clients_run(port: int, clients: int, rounds: int, chunk: int) -> tuple[float, list[int]]:
    """`clients` evaluator connections (B = 1 each), each asking `rounds` times as soon as it has its
    reply; (seconds from the first request to the last reply, rows of each reply's model call)."""
    import threading

    from tests.deploy.evaluator_client import observation
    from tests.deploy.evaluator_client_2026 import CHUNK_SIZE_KEY, Evaluator2026Client, stack_environments

    connections = [Evaluator2026Client("127.0.0.1", port, health_poll=0.1) for _ in range(clients)]
    requests = [{**stack_environments([observation(i)]), CHUNK_SIZE_KEY: chunk} for i in range(clients)]
    connections[0].infer(requests[0])  # the model warm (the others are connected)
    rows: list[int] = []
    barrier = threading.Barrier(clients + 1)

    def run(i: int) -> None:
        barrier.wait()
        for _ in range(rounds):
            rows.append(connections[i].infer(requests[i])["server_timing"]["batch_rows"])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    for connection in connections:
        connection.close()
    return elapsed, rows


MODES = {"one_at_a_time": ("--max-model-batch", "1", "--max-batch", "1"), "batched": ()}


def concurrent(checkpoint: Path, counts: tuple[int, ...], requests: int, repeats: int = 2) -> dict:
    """Requests/s of N clients with requests batched across connections vs one request at a time
    (`b1k-serve --max-model-batch 1`); the best of `repeats` runs of each, alternated. The N clients
    ask `requests` times together (each at least once)."""
    results: dict = {"requests": requests, "repeats": repeats, "clients": {}}
    from deploy.checkpoint import find_checkpoint
    from schemas.checkpoint import read_smolvla_config

    chunk = int(
        read_smolvla_config(str(find_checkpoint(checkpoint))).chunk_size
    )  # every request runs the model
    for n in counts:
        row: dict = {label: {"requests_per_s": 0.0} for label in MODES}
        for _ in range(repeats):
            for label, args in MODES.items():
                asks = max(1, -(-requests // n))
                with _Served(checkpoint, *args) as served:
                    elapsed, rows = _clients_run(served.port, n, asks, chunk)
                if n * asks / elapsed > row[label]["requests_per_s"]:
                    row[label] = {
                        "requests_per_s": round(n * asks / elapsed, 3),
                        "mean_rows": round(float(np.mean(rows)), 2),
                    }
        row["ratio"] = round(row["batched"]["requests_per_s"] / row["one_at_a_time"]["requests_per_s"], 2)
        results["clients"][str(n)] = row
    return results


def _hostile(port: int) -> None:
    """A client sending the largest request the default limits allow, again and again (a process)."""
    from deploy.adapter import DEFAULT_MAX_BATCH
    from tests.deploy.evaluator_client import observation
    from tests.deploy.evaluator_client_2026 import CHUNK_SIZE_KEY, Evaluator2026Client, stack_environments

    largest = stack_environments([observation(i, sizes=(720, 480)) for i in range(DEFAULT_MAX_BATCH)])
    with Evaluator2026Client("127.0.0.1", port, health_poll=0.1) as attacker:
        while True:
            attacker.infer({**largest, CHUNK_SIZE_KEY: 2})


def fairness(checkpoint: Path, steps: int = 20) -> dict:
    """An honest client's step time alone and beside one (another process) sending the largest
    requests allowed."""
    import subprocess
    import sys

    from deploy.adapter import DEFAULT_MAX_BATCH
    from tests.deploy.evaluator_client import observation
    from tests.deploy.evaluator_client_2026 import CHUNK_SIZE_KEY, Evaluator2026Client, stack_environments

    request = {**stack_environments([observation(0)]), CHUNK_SIZE_KEY: 2}
    with (
        _Served(checkpoint) as served,
        Evaluator2026Client("127.0.0.1", served.port, health_poll=0.1) as honest,
    ):
        honest.infer(request)
        alone = _timed(honest, request, steps)
        command = [sys.executable, "-m", "tests.benchmarks.serve_bench", "--hostile", str(served.port)]
        attacker = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(5.0)  # its first requests are being served
            beside = _timed(honest, request, steps)
        finally:
            attacker.terminate()
            attacker.wait(60)
    alone_ms, beside_ms = 1e3 * float(np.median(alone)), 1e3 * float(np.median(beside))
    return {
        "hostile_request": f"{DEFAULT_MAX_BATCH} environments at 720/480",
        "alone_ms": round(alone_ms, 1),
        "beside_ms": round(beside_ms, 1),
        "factor": round(beside_ms / alone_ms, 2),
        "steps": steps,
    }


def _timed(client, request: dict, steps: int) -> list[float]:
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        client.infer(request)
        times.append(time.perf_counter() - started)
    return times


def run(work: Path, steps: int = 60, full: bool = False) -> dict:
    """Every measurement; the real-size model at N = 32 and 64 only with `full` (a 64-row CPU call of
    SmolVLA at its real size takes minutes)."""
    import torch

    work.mkdir(parents=True, exist_ok=True)
    tiny = make_checkpoint(work / "tiny", "tiny")
    real = make_checkpoint(work / "smolvlm2-500m", "smolvlm2-500m")
    torch.set_num_threads(1)
    results = overhead(_model(tiny), steps=steps)
    results["start_to_healthy"] = {"tiny": start_to_healthy(tiny), "smolvlm2-500m": start_to_healthy(real)}
    results["fairness"] = fairness(tiny)
    results["concurrent"] = {
        "tiny": concurrent(tiny, (1, 8, 32, 64), requests=64),
        "smolvlm2-500m": concurrent(real, (1, 8, 32, 64) if full else (1, 8), requests=1, repeats=1),
    }
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench-output/serve")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--full", action="store_true", help="the real-size model at N = 32 and 64 too")
    parser.add_argument("--hostile", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.hostile:
        _hostile(args.hostile)
        return 0
    results = run(Path(args.out), steps=args.steps, full=args.full)
    (Path(args.out) / "serve.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
