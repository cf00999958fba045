"""The CUDA paths nothing else runs: bf16 autocast, pinned memory with non-blocking copies from the
loader's reused buffers, exact resume on the GPU, torchrun (NCCL with two GPUs or more), `b1k-serve
--device cuda`. Marked `gpu` and skipped without CUDA; `make test-gpu` runs them (with the GPU benchmarks).

They train the tiny offline backbone on a small shard set (`tests.shardsets`), as the CPU tests do,
so each takes seconds once the GPU is up.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.deploy.evaluator_client import EvaluatorClient
from tests.deploy.helpers import ServeProcess
from tests.deploy.test_server import drive
from tests.runs import ENV, kill_and_resume, run_train, train_log
from tests.shardsets import write_shard_set

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture(scope="module")
def gpu_set(tmp_path_factory) -> Path:
    """12 episodes of 20 frames (10, 11 in val), 3 cameras 16x16, horizon 8, 30 samples per shard."""
    root = tmp_path_factory.mktemp("gpu-set")
    write_shard_set(root, episodes=12, length=20, val_episodes=(10, 11), horizon=8, samples_per_shard=30)
    return root


def _args(shards: Path, backbone: Path, out: Path, *extra) -> list[str]:
    return [
        "--shards", str(shards), "--vlm-model", str(backbone), "--output-dir", str(out), "--batch-size", "4",
        "--chunk-size", "8", "--log-every", "1", "--no-progress", *map(str, extra),
    ]  # fmt: skip


def _weights(out: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(out / "checkpoints" / f"{step:06d}" / "pretrained_model" / "model.safetensors")


@pytest.fixture(scope="module")
def bf16_run(gpu_set, tiny_backbone, tmp_path_factory) -> Path:
    """b1k-train --device cuda --precision bf16 with 8 DataLoader workers, 6 steps, val every 3."""
    out = tmp_path_factory.mktemp("bf16") / "run"
    extra = ("--device", "cuda", "--precision", "bf16", "--num-workers", 8, "--max-steps", 6)
    done = run_train(_args(gpu_set, tiny_backbone, out, *extra, "--val-every", 3, "--val-batches", 2))
    assert done.returncode == 0, done.stderr[-4000:]
    assert "DataLoader worker" not in done.stderr and "Error" not in done.stderr
    assert "device cuda" in done.stderr  # the policy's line: parameters, device, world size
    return out


def test_a_bf16_run_with_eight_workers_trains_on_the_gpu(bf16_run):
    train_records, val_log = train_log(bf16_run), train_log(bf16_run, "val")
    assert sorted(train_records) == list(range(1, 7)) and sorted(val_log) == [3, 6]
    for record in train_records.values():
        for key in ("loss", "weighted_loss", "grad_norm"):
            assert isinstance(record[key], float) and record[key] == record[key], key  # finite, not NaN
    pretrained = bf16_run / "checkpoints" / "000006" / "pretrained_model"
    options = json.loads((pretrained / "b1k_train_config.json").read_text())
    assert (options["device"], options["precision"], options["num_workers"]) == ("cuda", "bf16", 8)
    weights = _weights(bf16_run, 6)
    assert all(torch.isfinite(w.float()).all() for w in weights.values())


def test_batches_that_reach_the_gpu_equal_the_cpu_paths_bit_for_bit(gpu_set):
    """b1k-train's CUDA path (pinned memory, no copy out of the workers' reused buffers, non-blocking
    copies, nothing synchronised until the end) against its CPU path, batch for batch: a buffer reused
    while its asynchronous copy is still in flight would show as a differing batch. Images are compared
    as the uint8 pixels they were (x * 255 rounds back exactly from either device's x / 255)."""
    from train import data as D
    from train.loss import to_policy_batch

    spec = D.open_data([str(gpu_set)])
    count, cuda, cpu = 200, torch.device("cuda"), torch.device("cpu")  # 200 batches: 4 epochs

    def loader_batches(pin_memory: bool):
        stream = D.TrainStream(spec, chunk_size=8, seed=5, shuffle_buffer=64, batch_size=4, num_workers=4)
        batches = D.batches(D.make_loader(stream), pin_memory=pin_memory, copy=not pin_memory)
        return itertools.islice(batches, count)

    on_gpu = [(raw["key"], to_policy_batch(raw, spec, cuda)) for raw in loader_batches(pin_memory=True)]
    torch.cuda.synchronize()
    on_cpu = [(raw["key"], to_policy_batch(raw, spec, cpu)) for raw in loader_batches(pin_memory=False)]
    assert len(on_gpu) == len(on_cpu) == count
    for index, ((gpu_keys, gpu), (cpu_keys, ref)) in enumerate(zip(on_gpu, on_cpu, strict=True)):
        assert gpu_keys == cpu_keys, index
        for key in spec.image_keys:
            pixels = [(images.cpu() * 255).round().to(torch.uint8) for images in (gpu[key], ref[key])]
            assert torch.equal(*pixels), (index, key)
        for key in ("observation.state", "action", "action_is_pad"):
            assert gpu[key].device.type == "cuda" and torch.equal(gpu[key].cpu(), ref[key]), (index, key)
        assert gpu["task"] == ref["task"], index


def test_kill_9_and_resume_on_cuda_equals_an_uninterrupted_run(gpu_set, tiny_backbone, tmp_path):
    """As tests/train/test_train.py's CPU test, on the GPU in bf16: SIGKILL after a checkpoint, --resume;
    the losses after it, the last val loss and the final weights equal the uninterrupted run's. The
    tolerances are those of CUDA's non-deterministic reductions (atomics in the backward), far below
    what a wrong data position or RNG state changes (the loss of another batch or noise: ~10%)."""
    common = (
        "--device", "cuda", "--precision", "bf16", "--max-steps", 12, "--save-every", 3, "--num-workers", 2,
        "--shuffle-buffer", 40, "--val-every", 4, "--val-batches", 2, "--augment",
    )  # fmt: skip
    run = kill_and_resume(
        lambda out: _args(gpu_set, tiny_backbone, out, *common), tmp_path, checkpoint=3, max_steps=12
    )
    ref, out, killed_at = run.ref, run.out, run.killed_at
    assert f"at step {killed_at}" in run.resumed.stderr
    ref_log, resumed_log = train_log(ref), train_log(out)
    assert sorted(resumed_log) == list(range(1, 13))
    for step in range(killed_at + 1, 13):
        for key in ("loss", "weighted_loss"):
            assert resumed_log[step][key] == pytest.approx(ref_log[step][key], rel=1e-3), (step, key)
    val = (train_log(out, "val")[12]["val_loss"], train_log(ref, "val")[12]["val_loss"])
    assert val[0] == pytest.approx(val[1], rel=1e-3)
    final_ref, final = _weights(ref, 12), _weights(out, 12)
    assert final_ref.keys() == final.keys()
    assert max(float((final_ref[k].float() - final[k].float()).abs().max()) for k in final) <= 1e-4


def test_torchrun_trains_on_cuda(gpu_set, tiny_backbone, tmp_path):
    """`torchrun --nproc_per_node N -m train.cli` with N = 2 where there are two GPUs (NCCL: the ranks'
    samples are disjoint), else 1 (one process on cuda:0; a world of one starts no process group)."""
    ranks = 2 if torch.cuda.device_count() >= 2 else 1
    out = tmp_path / "ddp"
    args = _args(gpu_set, tiny_backbone, out, "--max-steps", 3, "--num-workers", 1, "--device", "cuda")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks)]
    done = subprocess.run(
        [*command, "-m", "train.cli", *args, "--log-sample-keys", "--val-every", "3", "--val-batches", "1"],
        capture_output=True, text=True, env={**ENV, "NCCL_DEBUG": "INFO"}, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    keys = {}
    for rank in range(ranks):
        name = f"sample_keys_rank{rank}.jsonl"
        lines = [json.loads(line) for line in (out / name).read_text().splitlines()]
        assert [line["step"] for line in lines] == [1, 2, 3]
        keys[rank] = {key for line in lines for key in line["keys"]}
    assert sorted(train_log(out)) == [1, 2, 3] and sorted(train_log(out, "val")) == [3]
    config = json.loads(
        (out / "checkpoints" / "000003" / "pretrained_model" / "b1k_train_config.json").read_text()
    )
    assert config["world_size"] == ranks
    if ranks == 2:
        assert not keys[0] & keys[1]
        assert "NCCL INFO" in done.stdout + done.stderr  # the process group is NCCL's


def test_b1k_serve_on_cuda_answers_the_evaluator(bf16_run):
    """The bf16 run's checkpoint served with --device cuda, driven by the evaluator's own client."""
    args = ["--checkpoint", str(bf16_run), "--port", "0", "--device", "cuda"]
    with ServeProcess(args) as server:
        server.wait_for(r"loaded .* on cuda", 300)
        checkpoint = bf16_run / "checkpoints" / "last" / "pretrained_model"
        with EvaluatorClient("127.0.0.1", server.port) as client:
            assert client.metadata["action_dim"] == 23 and client.metadata["proprio_dim"] == 256
            drive(client, 256, checkpoint)
        server.wait_for(r"connection 1 closed: 2 episodes, 8 steps, 0 errors", 30)
        assert server.stop() == 0


def test_the_pinned_host_buffers_are_made_once_and_reused(gpu_set):
    """b1k-train's CUDA path copies each batch into one of two pinned buffers made once (not a fresh
    page-locked allocation per batch); the bit-for-bit test above shows the reuse waits for the copies."""
    from train import data as D

    spec = D.open_data([str(gpu_set)])
    stream = D.TrainStream(spec, chunk_size=8, seed=5, shuffle_buffer=64, batch_size=4, num_workers=2)
    addresses = {
        batch["observation.state"].untyped_storage().data_ptr()
        for batch in itertools.islice(D.batches(D.make_loader(stream), pin_memory=True, copy=False), 20)
    }
    assert len(addresses) == 2
