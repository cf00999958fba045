"""`b1k-shards merge`: partitions of one run merge into the single run's samples and stats (exactly);
missing/duplicate partitions and mismatched configurations are refused by name; sets of different
tasks merge into a multi-task set; OUT is protected; local, copied and http inputs all work."""

import json
import os
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from shards.cli import main
from shards.merge import MergeError, merge_sets
from shards.verify import verify_set
from tests.shardsets import read_manifest, samples_of, write_manifest

EPISODES = {0: 9, 1: 6, 2: 3, 3: 5, 4: 7, 5: 4, 6: 8}


def merge(*args):
    return CliRunner().invoke(main, ["merge", *map(str, args)], catch_exceptions=False)


@pytest.fixture
def partitions(make_set):
    full = make_set("full", episodes=EPISODES, val_episodes=(3, 5))
    parts = [make_set(f"p{k}", episodes=EPISODES, val_episodes=(3, 5), partition=(k, 3)) for k in range(3)]
    return full, parts


def test_partitions_merge_into_the_single_run(partitions, tmp_path):
    full, parts = partitions
    result = merge(tmp_path / "out", parts[2], parts[0], parts[1])  # any order
    assert result.exit_code == 0, result.output
    assert "partitions 0..2 of one run" in result.output
    merged, single = read_manifest(tmp_path / "out"), read_manifest(full)
    assert samples_of(tmp_path / "out") == samples_of(full)
    for split in ("train", "val"):
        assert merged["splits"][split]["episodes"] == single["splits"][split]["episodes"]
        assert merged["splits"][split]["samples"] == single["splits"][split]["samples"]
    for key, stats in single["stats"].items():
        for name, value in stats.items():
            np.testing.assert_allclose(merged["stats"][key][name], value, rtol=1e-9, atol=0)
            assert merged["stats"][key][name] == value  # in fact identical: same sidecar, same order
        assert merged["stats_values"][key]["sha256"] == single["stats_values"][key]["sha256"]
        assert merged["stats_values"][key]["episodes"] == [
            [e, EPISODES[e]] for e in single["splits"]["train"]["episodes"]
        ]
    assert merged["partition"] is None and merged["source"] == single["source"]
    assert merged["options"]["partition"] is None
    assert [m["partition"]["index"] for m in merged["merged_from"]] == [0, 1, 2]
    names = [s["name"] for s in merged["splits"]["train"]["shards"]]
    assert names == [f"train-{i:06d}.tar" for i in range(len(names))]
    assert verify_set(str(tmp_path / "out")).ok


def test_merged_set_merges_again_with_its_episode_index(partitions, tmp_path, make_set):
    """The merged sidecar records its (episode, columns) index, so it can be merged with another
    task's set without reading shards."""
    _, parts = partitions
    merge_sets(tmp_path / "a", [str(p) for p in parts], log=lambda m: None)
    other = make_set("other", episodes={10: 4, 11: 6}, val_episodes=(), tasks={3: "open the door"})
    manifest = merge_sets(tmp_path / "b", [str(tmp_path / "a"), str(other)], log=lambda m: None).to_json()
    assert manifest["splits"]["train"]["episodes"] == [0, 1, 2, 4, 6, 10, 11]
    assert manifest["tasks"] == {"0": "pick up the egg", "3": "open the door"}
    assert manifest["stats"]["action"]["count"] == sum(EPISODES[e] for e in (0, 1, 2, 4, 6)) + 10
    assert verify_set(str(tmp_path / "b")).ok


def test_missing_partition_is_named(partitions, tmp_path):
    _, parts = partitions
    result = merge(tmp_path / "out", parts[0], parts[2])
    assert result.exit_code == 1
    assert "partitions of one preprocess run are missing: 1/3" in result.output
    assert f"0/3 ({parts[0]})" in result.output and f"2/3 ({parts[2]})" in result.output
    assert not (tmp_path / "out").exists()


def test_duplicate_partition_is_refused(partitions, tmp_path):
    _, parts = partitions
    shutil.copytree(parts[1], tmp_path / "copy")
    result = merge(tmp_path / "out", parts[0], parts[1], tmp_path / "copy", parts[2])
    assert result.exit_code == 1 and "partition 1/3 given twice" in result.output


def test_partitions_of_different_runs_are_not_mixed(partitions, tmp_path):
    _, parts = partitions
    manifest = read_manifest(parts[1])
    manifest["options"]["seed"] = 7
    write_manifest(parts[1], manifest)
    result = merge(tmp_path / "out", *parts)
    assert result.exit_code == 1
    assert "missing" in result.output and "options.seed" in result.output


@pytest.mark.parametrize(
    ("field", "edit", "message"),
    [
        ("horizon", lambda m: m.update(horizon=8), "horizon differs: 4 in"),
        ("state", lambda m: m["state"].update(preset="standard"), 'state.preset differs: "top32" in'),
        ("indices", lambda m: m["state"].update(indices=list(range(32))), "state.indices differs"),
        (
            "camera size",
            lambda m: m["cameras"]["head"].update(height=48),
            "cameras.head.height differs: 24 in",
        ),
        ("cameras", lambda m: m["cameras"].pop("right_wrist"), "cameras differs"),
        ("alpha", lambda m: m["temporal"].update(alpha=2.0), "temporal.alpha differs: 0.5 in"),
    ],
)
def test_incompatible_sets_are_refused_naming_the_field(make_set, tmp_path, field, edit, message):
    a = make_set("a")
    b = make_set("b", episodes={20: 5, 21: 6}, val_episodes=())
    manifest = read_manifest(b)
    edit(manifest)
    write_manifest(b, manifest)
    result = merge(tmp_path / "out", a, b)
    assert result.exit_code == 1
    assert message in result.output and str(a) in result.output and str(b) in result.output


def test_schema_version_is_checked_on_open(make_set, tmp_path):
    b = make_set("b", episodes={20: 5}, val_episodes=())
    manifest = read_manifest(b)
    manifest["schema_version"] = 2
    write_manifest(b, manifest)
    result = merge(tmp_path / "out", make_set("a"), b)
    assert result.exit_code == 1 and "schema_version: this tool reads schema 1, got 2" in result.output


def test_multi_task_merge(make_set, tmp_path):
    eggs = make_set(
        "eggs",
        episodes={60000: 9, 60010: 5, 60020: 7},
        val_episodes=(60010,),
        tasks={6: "hiding Easter eggs"},
        fingerprint="eggs",
    )
    trash = make_set(
        "trash",
        episodes={10000: 6, 10010: 4},
        val_episodes=(),
        tasks={1: "picking up trash"},
        fingerprint="trash",
    )
    result = merge(tmp_path / "out", eggs, trash)
    assert result.exit_code == 0, result.output
    merged = read_manifest(tmp_path / "out")
    assert merged["tasks"] == {"1": "picking up trash", "6": "hiding Easter eggs"}
    assert merged["splits"]["train"]["episodes"] == [10000, 10010, 60000, 60020]
    assert merged["source"]["kind"] == "merged"
    assert [s["fingerprint"] for s in merged["source"]["sets"]] == ["eggs", "trash"]
    assert "options" not in merged and "options" in merged["merged_from"][0]
    # stats recomputed from the sidecars: numpy over all train values, in (episode, frame) order
    from tests.shardsets import action_of, state_of

    train = {10000: 6, 10010: 4, 60000: 9, 60020: 7}
    for key, fn in (("observation.state", state_of), ("action", action_of)):
        values = np.stack([fn(e, f) for e in sorted(train) for f in range(train[e])]).astype(np.float64).T
        np.testing.assert_array_equal(np.load(tmp_path / "out" / "stats" / f"{key}.npy"), values)
        np.testing.assert_allclose(merged["stats"][key]["mean"], values.mean(axis=1), rtol=1e-12)
        np.testing.assert_array_equal(merged["stats"][key]["q99"], np.quantile(values, 0.99, axis=1))
        assert merged["stats"][key]["count"] == 26
    assert samples_of(tmp_path / "out") == {**samples_of(eggs), **samples_of(trash)}
    assert verify_set(str(tmp_path / "out")).ok


def test_overlapping_episodes_and_conflicting_tasks_are_refused(make_set, tmp_path):
    a = make_set("a")
    b = make_set("b", episodes={4: 3, 9: 3}, val_episodes=(), fingerprint="other")
    result = merge(tmp_path / "out", a, b)
    assert result.exit_code == 1 and f"episode 4 is in both {a} and {b}" in result.output
    c = make_set("c", episodes={30: 3}, val_episodes=(), tasks={0: "something else"}, fingerprint="c")
    result = merge(tmp_path / "out", a, c)
    assert result.exit_code == 1 and "task 0 is 'pick up the egg'" in result.output


def test_out_must_be_empty_unless_overwrite(partitions, tmp_path):
    _, parts = partitions
    out = tmp_path / "out"
    out.mkdir()
    (out / "train-000000.tar").write_bytes(b"old")
    result = merge(out, *parts)
    assert result.exit_code == 1 and "is not empty; pass --overwrite" in result.output
    assert merge(out, *parts, "--overwrite").exit_code == 0
    assert verify_set(str(out)).ok
    (out / "notes.txt").write_text("mine")
    result = merge(out, *parts, "--overwrite")
    assert result.exit_code == 1 and "not part of a shard set (notes.txt)" in result.output
    assert (out / "notes.txt").read_text() == "mine"
    result = merge(parts[0] / "sub", *parts)
    assert result.exit_code == 1 and "overlaps input" in result.output
    result = merge(tmp_path / "x", parts[0], parts[0])
    assert result.exit_code == 1 and "given twice" in result.output


def test_link_or_copy(partitions, tmp_path):
    _, parts = partitions
    assert merge(tmp_path / "linked", *parts).exit_code == 0
    assert merge(tmp_path / "copied", *parts, "--copy").exit_code == 0
    src = parts[0] / read_manifest(parts[0])["splits"]["train"]["shards"][0]["name"]
    linked = tmp_path / "linked" / "train-000000.tar"
    copied = tmp_path / "copied" / "train-000000.tar"
    assert os.path.samefile(src, linked)
    assert not os.path.samefile(src, copied) and copied.read_bytes() == src.read_bytes()
    assert read_manifest(tmp_path / "linked")["stats"] == read_manifest(tmp_path / "copied")["stats"]
    assert not list((tmp_path / "copied").rglob("*.tmp"))


def test_corrupt_input_is_refused(partitions, tmp_path):
    _, parts = partitions
    shard = parts[1] / read_manifest(parts[1])["splits"]["train"]["shards"][0]["name"]
    data = bytearray(shard.read_bytes())
    data[data.index(b"\xff\xd8") + 100] ^= 1
    shard.write_bytes(bytes(data))
    result = merge(tmp_path / "out", *parts, "--copy")
    assert result.exit_code == 1
    assert f"input shard {shard} is corrupt (sha256 mismatch)" in result.output
    assert f"b1k-shards verify {parts[1]}" in result.output
    assert not (tmp_path / "out" / "manifest.json").exists()
    shard.write_bytes(bytes(data[:-5000]))
    result = merge(tmp_path / "out2", *parts)
    assert result.exit_code == 1 and "its manifest says" in result.output


def test_http_and_pipe_inputs(partitions, tmp_path, http_server):
    full, parts = partitions
    www, base = http_server
    shutil.copytree(parts[0], www / "p0")
    shutil.copytree(parts[1], www / "p1")
    result = merge(
        tmp_path / "out", f"{base}/p0", f"{base}/p1/manifest.json", f"pipe:cat {parts[2]}/{{name}}"
    )
    assert result.exit_code == 0, result.output
    assert samples_of(tmp_path / "out") == samples_of(full)
    assert read_manifest(tmp_path / "out")["stats"] == read_manifest(full)["stats"]
    assert not (tmp_path / "out" / "stats" / ".inputs").exists()


def test_merged_manifest_is_written_last(partitions, tmp_path, monkeypatch):
    """If the merge fails after copying shards, OUT holds nothing of it (the shards were placed beside
    OUT, and are gone with the failed merge): it is not a shard set."""
    _, parts = partitions
    import shards.merge as merge_module

    def boom(*args, **kwargs):
        raise MergeError("stats failed")

    monkeypatch.setattr(merge_module, "merge_stats", boom)
    with pytest.raises(MergeError):
        merge_sets(tmp_path / "out", [str(p) for p in parts], log=lambda m: None)
    assert not any((tmp_path / "out").glob("*.tar"))
    assert not (tmp_path / "out" / "manifest.json").exists()
    assert not list(tmp_path.glob(".out.*"))  # no stage left beside it


def test_merge_single_set_is_a_copy(make_set, tmp_path):
    a = make_set("a")
    manifest = merge_sets(tmp_path / "out", [str(a)], log=lambda m: None).to_json()
    assert manifest["stats"] == read_manifest(a)["stats"]
    assert samples_of(tmp_path / "out") == samples_of(a)
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["merged_from"][0]["location"] == str(
        a
    )


def test_merge_keeps_the_samples_per_task(make_set, tmp_path):
    """Shard entries keep their per-task counts; the splits' tasks add up and their episode_tasks join;
    an input that does not record them leaves them out of the merged split (never a partial count)."""
    eggs = make_set("eggs", episodes={0: 9, 1: 6, 2: 3}, val_episodes=(2,), tasks={6: "hiding Easter eggs"})
    trash = make_set(
        "trash", episodes={10: 6, 11: 4}, val_episodes=(), tasks={1: "picking up trash"}, fingerprint="trash"
    )
    merged = merge_sets(tmp_path / "out", [str(eggs), str(trash)], log=lambda m: None).to_json()
    train = merged["splits"]["train"]
    assert train["tasks"] == {"1": {"episodes": 2, "samples": 10}, "6": {"episodes": 2, "samples": 15}}
    assert train["episode_tasks"] == {"0": 6, "1": 6, "10": 1, "11": 1}
    assert merged["splits"]["val"]["tasks"] == {"6": {"episodes": 1, "samples": 3}}
    inputs = [
        s["tasks"]
        for m in (read_manifest(eggs), read_manifest(trash))
        for s in m["splits"]["train"]["shards"]
    ]
    assert [s["tasks"] for s in train["shards"]] == inputs
    assert verify_set(str(tmp_path / "out")).ok

    old = read_manifest(trash)
    del old["splits"]["train"]["tasks"], old["splits"]["train"]["episode_tasks"]
    write_manifest(trash, old)
    merged = merge_sets(tmp_path / "out2", [str(eggs), str(trash)], log=lambda m: None).to_json()
    assert "tasks" not in merged["splits"]["train"] and "episode_tasks" not in merged["splits"]["train"]
    assert merged["splits"]["val"]["tasks"] == {"6": {"episodes": 1, "samples": 3}}


def test_merged_partitions_count_tasks_like_the_single_run(partitions, tmp_path):
    full, parts = partitions
    merged, single = (
        merge_sets(tmp_path / "out", [str(p) for p in parts], log=lambda m: None).to_json(),
        read_manifest(full),
    )
    for split in ("train", "val"):
        for key in ("tasks", "episode_tasks"):
            assert merged["splits"][split][key] == single["splits"][split][key], (split, key)


def test_a_merge_into_a_locked_folder_names_the_holder_and_writes_nothing(partitions, tmp_path):
    """Two merges into one OUT at once: the second stops, naming the first; OUT keeps only the lock."""
    from shards.lock import FolderLock

    out = tmp_path / "merged"
    with FolderLock(out, "b1k-shards merge"):
        result = merge(out, *partitions[1])
        assert result.exit_code != 0
        assert f"{out} is in use by b1k-shards merge (pid {os.getpid()} on" in result.output
        assert [p.name for p in out.iterdir()] == [".b1k-lock"]
    assert merge(out, *partitions[1]).exit_code == 0
    assert (out / "manifest.json").is_file() and not (out / ".b1k-lock").exists()


def _flip_last_byte(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("mode", ["--link", "--copy"])
def test_a_shard_with_a_flipped_byte_never_reaches_a_merged_set(partitions, tmp_path, mode):
    """Same size, other bytes: linked or copied, the input is verified against its manifest first."""
    _, parts = partitions
    tampered = tmp_path / "tampered"
    shutil.copytree(parts[0], tampered)
    shard = tampered / read_manifest(tampered)["splits"]["train"]["shards"][0]["name"]
    data = bytearray(shard.read_bytes())
    data[600] ^= 0x01  # inside the first member's bytes: the size and tar structure stay valid
    shard.write_bytes(bytes(data))
    out = tmp_path / "merged"
    result = merge(out, mode, tampered, parts[1], parts[2])
    assert result.exit_code != 0
    assert f"input shard {shard} is corrupt (sha256 mismatch" in result.output
    assert not (out / "manifest.json").exists()


def test_a_tampered_stats_sidecar_never_reaches_a_merged_set(partitions, tmp_path):
    _, parts = partitions
    tampered = tmp_path / "tampered"
    shutil.copytree(parts[1], tampered)
    _flip_last_byte(tampered / "stats" / "action.npy")
    out = tmp_path / "merged"
    result = merge(out, parts[0], tampered, parts[2])
    assert result.exit_code != 0
    assert (
        f"stats sidecar {tampered / 'stats' / 'action.npy'} of {tampered} is corrupt (sha256 mismatch"
        in result.output
    )
    assert not (out / "manifest.json").exists()
