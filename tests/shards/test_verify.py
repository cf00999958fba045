"""`b1k-shards verify` (issue 4, acceptance 1): a clean set passes; a truncated shard, a flipped
byte, a missing shard, a sample missing a member and a shard not in the manifest are each flagged
by name with a non-zero exit; --quick checks sizes and checksums only; remote sets work too."""

import json
import re
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from shards.cli import main
from shards.codec import encode_npy
from shards.reader import iter_tar_samples
from shards.verify import verify_set
from shards.writer import write_tar
from tests.shardsets import read_manifest, write_manifest


def run(*args):
    return CliRunner().invoke(main, ["verify", *map(str, args)], catch_exceptions=False)


def _rewrite(path, edit):
    """Rewrite the shard at `path` with `edit(samples)` applied (a different but well-formed tar)."""
    samples = [{k: v for k, v in s.items() if k != "__url__"} for s in iter_tar_samples(str(path))]
    edit(samples)
    write_tar(path, samples)


def _bad_block(output: str, name: str) -> str:
    """The lines `verify` printed about shard `name`."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("BAD") and f" {name} " in f"{line} ")
    block = [lines[start]]
    for line in lines[start + 1 :]:
        if not line.startswith("       - "):
            break
        block.append(line)
    return "\n".join(block)


def test_clean_set_passes(shard_set):
    result = run(shard_set)
    assert result.exit_code == 0, result.output
    assert "OK: 5 shards, 30 samples match the manifest (full check)" in result.output
    assert "BAD" not in result.output
    assert run(shard_set, "--quick").exit_code == 0
    verbose = run(shard_set, "-v").output
    assert "ok   train-000000.tar  (train, 7 samples" in verbose


@pytest.mark.parametrize("quick", [False, True])
def test_each_defect_is_flagged_by_name(shard_set, quick):
    shards = [s["name"] for s in read_manifest(shard_set)["splits"]["train"]["shards"]]
    truncated, flipped, missing, lacking = shards
    data = (shard_set / truncated).read_bytes()
    (shard_set / truncated).write_bytes(data[: len(data) // 2])
    data = bytearray((shard_set / flipped).read_bytes())
    data[data.index(b"\xff\xd8") + 300] ^= 0x01  # one bit of JPEG data: the tar is still well-formed
    (shard_set / flipped).write_bytes(bytes(data))
    (shard_set / missing).unlink()
    _rewrite(shard_set / lacking, lambda samples: samples[1].pop("state.npy"))
    shutil.copy(shard_set / "val-000000.tar", shard_set / "train-000042.tar")

    result = run(shard_set, *(["--quick"] if quick else []))
    out = result.output
    assert result.exit_code == 1, out
    assert "val-000000.tar" not in out.replace("train-000042", "")  # the good shard is not listed
    assert "truncated" in _bad_block(out, truncated)
    assert "sha256 mismatch" in _bad_block(out, flipped)
    assert "missing (no such file)" in _bad_block(out, missing)
    assert "not in the manifest" in _bad_block(out, "train-000042.tar")
    assert "sha256 mismatch" in _bad_block(out, lacking)  # rewritten: its checksum no longer matches
    if not quick:
        assert "samples, manifest says" not in _bad_block(out, flipped)  # all 7 read; only the checksum tells
        assert "lacks member state.npy" in _bad_block(out, lacking)
        # the scan stops where the data ends and says how far it got (7 samples listed)
        assert re.search(r"unexpected end of data.* after [1-6] samples", _bad_block(out, truncated))
    assert "FAILED: 4 of 5 shards bad, 1 file not in the manifest" in out


def test_sample_missing_a_member_with_a_matching_manifest_entry(shard_set):
    """Even when size, sha256 and count agree with the manifest (a set written wrong from the
    start), the full check finds the sample that lacks a member; --quick does not look."""
    name = "train-000002.tar"
    _rewrite(shard_set / name, lambda samples: samples[4].pop("left_wrist.jpg"))
    manifest = read_manifest(shard_set)
    entry = next(s for s in manifest["splits"]["train"]["shards"] if s["name"] == name)
    from shards.stats import file_sha256

    entry.update(bytes=(shard_set / name).stat().st_size, sha256=file_sha256(shard_set / name))
    write_manifest(shard_set, manifest)
    result = run(shard_set)
    assert result.exit_code == 1
    assert "lacks member left_wrist.jpg" in _bad_block(result.output, name)
    assert run(shard_set, "--quick").exit_code == 0


def test_wrong_shapes_and_inconsistent_json(shard_set):
    def edit(samples):
        samples[0]["state.npy"] = encode_npy(np.zeros(31, np.float32))
        samples[1]["action.npy"] = encode_npy(np.zeros((4, 23), np.float64))
        meta = json.loads(samples[2]["json"])
        samples[2]["json"] = json.dumps({**meta, "frame_index": meta["frame_index"] + 1}).encode()

    _rewrite(shard_set / "train-000000.tar", edit)
    report = verify_set(str(shard_set))
    (bad,) = report.bad_shards
    text = "\n".join(bad.problems)
    assert "state.npy: expected float32[32], got float32[31]" in text
    assert "action.npy: expected float32[4, 23], got float64[4, 23]" in text
    assert "json says episode" in text


def test_stats_sidecar_is_checked(shard_set):
    manifest = read_manifest(shard_set)
    manifest["stats"]["action"]["mean"][3] += 1e-3
    write_manifest(shard_set, manifest)
    result = run(shard_set)
    assert result.exit_code == 1
    assert "stats.action.mean: manifest differs from the sidecar's values (dim 3" in result.output
    (shard_set / "stats" / "observation.state.npy").write_bytes(b"garbage")
    result = run(shard_set, "--quick")
    assert result.exit_code == 1
    assert "stats sidecar stats/observation.state.npy: size 7 bytes" in result.output


def test_leftover_temporary_file_is_a_note(shard_set):
    (shard_set / "train-000009.tar.tmp").write_bytes(b"partial")
    result = run(shard_set)
    assert result.exit_code == 0
    assert "note train-000009.tar.tmp: leftover temporary file" in result.output


def test_remote_set_over_http(shard_set, http_server):
    www, base = http_server
    shutil.copytree(shard_set, www / "set")
    assert run(f"{base}/set").exit_code == 0
    (www / "set" / "train-000001.tar").unlink()
    data = (www / "set" / "val-000000.tar").read_bytes()
    (www / "set" / "val-000000.tar").write_bytes(data[:-20000])
    result = run(f"{base}/set")
    assert result.exit_code == 1
    assert "train-000001.tar" in result.output and "val-000000.tar" in result.output
    assert "download failed: curl exit 22, the server answered with an HTTP error" in result.output
    assert "truncated" in result.output
    assert "files of an http set cannot be listed" in result.output


def test_pipe_set(shard_set):
    assert run(f"pipe:cat {shard_set}/{{name}}").exit_code == 0


def test_unreadable_manifest_exits_1(tmp_path):
    result = run(tmp_path)
    assert result.exit_code == 1
    assert "b1k-shards: error:" in result.output and "no manifest.json here" in result.output


def test_json_report(shard_set, tmp_path):
    (shard_set / "val-000000.tar").unlink()
    result = run(shard_set, "--json", tmp_path / "report.json")
    assert result.exit_code == 1
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["ok"] is False
    assert [s["name"] for s in report["shards"] if s["problems"]] == ["val-000000.tar"]
