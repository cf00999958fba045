"""Issue 26, for `b1k-train`: a crafted set whose manifest hashes MATCH its shards ends the run with one
`error:` line within seconds (0 and 2 workers), or with `--skip-corrupt` is skipped and counted; what
`b1k-shards verify` calls broken is refused, naming it; a camera claim no image has is refused before
a buffer is sized by it; a checkpoint's unreadable training state is an error, not a traceback or a
run from a negative step."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time

import pytest

from tests.hostile import edit_manifest, one_error_line, pax_member, prepend_to_shard, shard_entry
from tests.runs import ENV, run_train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base_set(make_shards):
    return make_shards("refuse", episodes=6, length=10, val_episodes=(5,), horizon=8, samples_per_shard=12)


@pytest.fixture
def crafted(base_set, tmp_path):
    """A fresh copy of the base set to damage."""
    root = tmp_path / "set"
    shutil.copytree(base_set, root)
    return root


def _args(shards, backbone, out, *extra) -> list:
    return [
        "--shards", shards, "--vlm-model", backbone, "--output-dir", out, "--batch-size", 4,
        "--chunk-size", 4, "--max-steps", 3, "--val-every", 0, "--save-every", 0, "--shuffle-buffer", 4,
        "--log-every", 1, "--no-progress", *extra,
    ]  # fmt: skip


def _failed(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done.stderr[-3000:]
    return one_error_line(done.stderr)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_pax_record_of_length_0_ends_training_in_seconds_naming_the_shard(
    crafted, tiny_backbone, tmp_path, workers
):
    name = shard_entry(crafted, index=1).name
    prepend_to_shard(crafted, name, pax_member(b"0 path=x\n"))
    started = time.monotonic()
    done = run_train(_args(crafted, tiny_backbone, tmp_path / "out", "--num-workers", workers), timeout=300)
    line = _failed(done)
    assert name in line and "pax record" in line, line
    assert time.monotonic() - started < 120


def test_with_skip_corrupt_a_pax_record_of_length_0_is_skipped_and_counted(crafted, tiny_backbone, tmp_path):
    name = shard_entry(crafted, index=1).name
    prepend_to_shard(crafted, name, pax_member(b"0 path=x\n"))
    out = tmp_path / "out"
    done = run_train(_args(crafted, tiny_backbone, out, "--num-workers", 2, "--skip-corrupt"), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    skipped = [json.loads(line) for path in out.glob("corrupt_shards_rank*.jsonl") for line in path.open()]
    assert any(name in event["url"] and "pax record" in event["reason"] for event in skipped), skipped


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m["splits"]["train"]["shards"][0].update(samples=-3), "samples: expected >= 0, got -3"),
        (lambda m: m["tasks"].update({"pick": "x"}), "expected an integer key, got 'pick'"),
        (
            lambda m: m["stats"]["action"]["std"].__setitem__(3, 0.0),
            "stats.action dim 3: std 0 is impossible",
        ),
        (
            lambda m: m["stats"]["action"]["std"].__setitem__(4, 1e-300),
            "stats.action dim 4: std 1e-300 is impossible",
        ),
        (
            lambda m: m["splits"]["train"]["shards"].append(m["splits"]["train"]["shards"][0]),
            "shards listed more than once: ['train-000000.tar']",
        ),
        (lambda m: m["splits"]["val"]["episodes"].append(0), "episodes [0] are in both train and val"),
    ],
    ids=["negative samples", "task key", "std 0", "std 1e-300", "shard twice", "val episode in train"],
)
def test_a_broken_manifest_is_refused_in_seconds_naming_the_problem(
    crafted, tiny_backbone, tmp_path, edit, message
):
    edit_manifest(crafted, edit)
    started = time.monotonic()
    line = _failed(
        run_train(_args(crafted, tiny_backbone, tmp_path / "out", "--num-workers", 2), timeout=120)
    )
    assert message in line, line
    assert time.monotonic() - started < 60


def test_allow_split_overlap_trains_a_set_whose_val_episodes_are_in_train(crafted, tiny_backbone, tmp_path):
    edit_manifest(crafted, lambda m: m["splits"]["val"]["episodes"].append(0))
    extra = ("--num-workers", 0, "--allow-split-overlap")
    done = run_train(_args(crafted, tiny_backbone, tmp_path / "out", *extra), timeout=300)
    assert done.returncode == 0 and "--allow-split-overlap" in done.stderr, done.stderr[-3000:]


# Runs b1k-train, then prints its peak virtual memory (VmPeak: what it mapped, shared memory included,
# whether or not it was touched).
MEASURED = (
    "import re, sys\n"
    "from train.cli import main\n"
    "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    code = e.code\n"
    "peak = re.search(r'VmPeak:\\s+(\\d+)', open('/proc/self/status').read()).group(1)\n"
    "print('PEAK_VM_GB=%.2f' % (int(peak) / 2**20), file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def test_a_2048_px_camera_claim_on_16_px_shards_is_refused_before_a_buffer_is_sized(
    crafted, tiny_backbone, tmp_path
):
    """32 samples x 3 cameras x 2048^2 x 3 bytes = 1.1 GiB a batch buffer, 16 of them with 2 workers."""
    edit_manifest(crafted, lambda m: [c.update(height=2048, width=2048) for c in m["cameras"].values()])
    args = _args(crafted, tiny_backbone, tmp_path / "out", "--num-workers", 2, "--batch-size", 32)
    done = subprocess.run(
        [sys.executable, "-c", MEASURED, *map(str, args)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=120,
    )
    line = _failed(done)
    assert "camera head is 2048x2048, but sample" in line and "has 16x16 in head.jpg" in line, line
    peak = float(re.search(r"PEAK_VM_GB=([\d.]+)", done.stderr).group(1))
    assert peak < 12, peak  # the start-up's own mappings; the buffers alone would have been 18 GiB


# ----------------------------------------------------------------------------- --resume
@pytest.fixture(scope="module")
def checkpointed(base_set, tiny_backbone, tmp_path_factory):
    out = tmp_path_factory.mktemp("resume") / "run"
    done = run_train(
        [*_args(base_set, tiny_backbone, out, "--num-workers", 0)[:-2], "--save-every", 2, "--no-progress"]
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda s: _truncate(s / "optimizer_state.safetensors"), "cannot load its training state"),
        (
            lambda s: (s / "rng_state.safetensors").write_bytes(b"\x00garbage" * 64),
            "cannot load its training state",
        ),
        (lambda s: (s / "training_step.json").write_text('{"step": -5}'), "its training state says step -5"),
    ],
    ids=["truncated optimizer state", "garbage rng state", "negative step"],
)
def test_resume_from_a_damaged_training_state_is_one_error_line(
    checkpointed, base_set, tiny_backbone, tmp_path, damage, message
):
    out = tmp_path / "run"
    shutil.copytree(checkpointed, out, symlinks=True)
    state = out / "checkpoints" / "last" / "training_state"
    damage(state)
    extra = ("--num-workers", 0, "--resume", "--max-steps", 4)
    line = _failed(run_train(_args(base_set, tiny_backbone, out, *extra), timeout=300))
    assert message in line and "--resume" in line, line
