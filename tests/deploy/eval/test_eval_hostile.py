"""Issue 26, for `b1k-eval`: a crafted set whose manifest hashes MATCH its shards ends the evaluation with
one `error:` line naming the shard and sample within seconds: a pax record of length 0 (which never
advanced the tar reader), an image larger than its camera's stored size, a NaN progress, a sample json
nested 200k deep."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from shards.codec import encode_jpeg
from shards.reader import iter_tar_samples
from shards.writer import write_tar
from tests.hostile import one_error_line, pax_member, prepend_to_shard, rehash, run_cli, shard_entry
from tests.shardsets import QUALITY, TASKS, image_of, write_shard_set

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def val_set(tmp_path_factory):
    """checkpoint_2025's features; val = episode 4."""
    root = tmp_path_factory.mktemp("eval-hostile") / "set"
    write_shard_set(root, episodes=5, length=10, val_episodes=(4,), horizon=8, tasks=TASKS)
    return root


@pytest.fixture
def crafted(val_set, tmp_path):
    root = tmp_path / "set"
    shutil.copytree(val_set, root)
    return root


def _rewrite_member(root, member: str, value: bytes, sample: int = 1) -> str:
    """Replace `member` of the val shard's `sample`-th sample; the manifest then matches the shard."""
    name = shard_entry(root, "val").name
    raws = [
        {k: v if k == "__key__" else bytes(v) for k, v in r.items() if k != "__url__"}
        for r in iter_tar_samples(str(root / name))
    ]
    raws[sample][member] = value
    (root / name).unlink()
    write_tar(root / name, iter(raws))
    rehash(root, name)
    return raws[sample]["__key__"]


def _eval(checkpoint, root, out) -> str:
    started = time.monotonic()
    done = run_cli("deploy.eval.cli", "--checkpoint", checkpoint, "--shards", root, "--out", out,
                   "--device", "cpu", "--no-progress", timeout=180)  # fmt: skip
    assert done.returncode == 2, done.stderr[-3000:]
    assert time.monotonic() - started < 120
    return one_error_line(done.stderr)


def test_a_pax_record_of_length_0_ends_the_evaluation_naming_the_shard(checkpoint_2025, crafted, tmp_path):
    name = shard_entry(crafted, "val").name
    prepend_to_shard(crafted, name, pax_member(b"0 path=x\n"))
    line = _eval(checkpoint_2025, crafted, tmp_path / "out")
    assert name in line and "pax record" in line, line


@pytest.mark.parametrize(
    "member, value, message",
    [
        (
            "head.jpg",
            encode_jpeg(image_of(4, 1, "head", (1024, 1024)), QUALITY),
            "head.jpg: image header says 1024x1024, expected 16x16",
        ),
        ("json", None, "json progress nan: expected a number in [0, 1]"),
        ("json", b"[" * 200_000 + b"]" * 200_000, "RecursionError"),
    ],
    ids=["oversized jpeg", "nan progress", "deep json"],
)
def test_a_sample_member_the_evaluation_cannot_use_is_one_error_line(
    checkpoint_2025, crafted, tmp_path, member, value, message
):
    if value is None:  # the sample's own json with a NaN progress
        name = shard_entry(crafted, "val").name
        meta = json.loads(list(iter_tar_samples(str(crafted / name)))[1]["json"])
        value = json.dumps({**meta, "progress": float("nan")}).encode()
    key = _rewrite_member(crafted, member, value)
    line = _eval(checkpoint_2025, crafted, tmp_path / "out")
    assert f"sample {key}" in line and message in line, line
