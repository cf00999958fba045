"""Issue 4, acceptance 2: preprocessing a dataset as 3 partitions (`b1k-preprocess --partition K/3`)
and merging them (`b1k-shards merge`) gives the same samples and the same stats (rtol 1e-9; in fact
identical) as one run over the whole dataset. Real CLIs, synthetic BEHAVIOR dataset."""

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.shardsets import samples_of

pytestmark = pytest.mark.slow


def _cli(module: str, *args) -> subprocess.CompletedProcess:
    return _wait(_start(module, *args))


def _start(module: str, *args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", module, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait(process: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, f"{process.args}:\n{stdout}\n{stderr}"
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.mark.parametrize("stride", [1, 2])
def test_three_partitions_merged_equal_one_run(synthetic_dataset, tmp_path, stride):
    dataset = synthetic_dataset(
        layout="v3.0",
        lengths=(12, 20, 7, 15, 9),
        tasks=(1, 6, 6, 6, 6),
        episodes_per_data_file=2,
        episodes_per_video_file=2,
    )
    common = [
        "--dataset-path",
        dataset.root,
        "--horizon",
        6,
        "--val-fraction",
        0.2,
        "--seed",
        3,
        "--frame-stride",
        stride,
        "--shard-max-samples",
        8,
        "--workers",
        1,
        "--temporal-alpha",
        0.7,
    ]
    runs = [_start("preprocess.cli", *common, "--output-dir", tmp_path / "whole")]
    runs += [
        _start("preprocess.cli", *common, "--output-dir", tmp_path / f"part{k}", "--partition", f"{k}/3")
        for k in range(3)
    ]
    for run in runs:  # the four runs go at once: most of their time is start-up
        _wait(run)
    merged = _cli("shards.cli", "merge", tmp_path / "merged", *(tmp_path / f"part{k}" for k in (1, 2, 0)))
    assert "partitions 0..2 of one run" in merged.stderr

    whole = json.loads((tmp_path / "whole" / "manifest.json").read_text())
    result = json.loads((tmp_path / "merged" / "manifest.json").read_text())
    assert result["partition"] is None
    for split in ("train", "val"):
        assert result["splits"][split]["episodes"] == whole["splits"][split]["episodes"]
        assert result["splits"][split]["samples"] == whole["splits"][split]["samples"]
    assert whole["splits"]["val"]["episodes"]  # the val split is exercised too
    # same samples: every member of every sample, byte for byte
    assert samples_of(tmp_path / "merged") == samples_of(tmp_path / "whole")
    # same stats
    for key, stats in whole["stats"].items():
        for name, value in stats.items():
            np.testing.assert_allclose(
                result["stats"][key][name], value, rtol=1e-9, atol=0, err_msg=f"{key}.{name}"
            )
        assert result["stats"][key] == stats
        assert result["stats_values"][key]["sha256"] == whole["stats_values"][key]["sha256"]
    # the layout differs only in shard names; everything else of the manifest is the single run's
    skip = {"created_by", "splits", "stats_values", "merged_from", "totals"}
    assert {k: v for k, v in result.items() if k not in skip} == {
        k: v for k, v in whole.items() if k not in skip
    }
    if (
        "totals" in whole
    ):  # b1k-preprocess's summary: the counts add up; shards and bytes are the merged layout's
        for key in ("episodes", "frames", "samples", "source_video_bytes"):
            assert result["totals"][key] == whole["totals"][key], key
        assert result["totals"]["shards"] == sum(len(result["splits"][s]["shards"]) for s in ("train", "val"))
    verify = _cli("shards.cli", "verify", tmp_path / "merged")
    assert "OK:" in verify.stdout
