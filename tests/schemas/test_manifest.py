"""Manifest schema v1 (`schemas.manifest.Manifest`): a valid manifest reads into typed parts and writes
back byte for byte (keys it does not know included); each kind of defect is named by its field path; a set
written before a field existed reads with that field's documented default."""

import copy
import json

import pytest

from schemas.manifest import (
    Manifest,
    ManifestError,
    ShardEntry,
    dump_manifest,
    parse_manifest,
    validate_manifest,
)
from schemas.r1pro import DEFAULT_LAYOUT, layout_named
from tests.shardsets import skill_of, write_shard_set

S, A = 2, 3


def _stats(dim: int) -> dict:
    return {name: [0.0] * dim for name in ("mean", "std", "min", "max", "q01", "q99", "sum", "sum_sq")} | {
        "count": 4
    }


VALID = {
    "schema_version": 1,
    "created_by": {
        "tool": "b1k-preprocess",
        "version": "0.1.0",
        "command": "b1k-preprocess ...",
        "time": "now",
    },
    "source": {"path": "/data", "codebase_version": "v3.0", "fingerprint": "abc"},
    "fps": 30,
    "frame_stride": 1,
    "cameras": {
        "head": {"video_key": "observation.images.rgb.head", "height": 8, "width": 8, "encoding": "jpeg"}
    },
    "state": {"preset": "custom", "indices": [158, 159], "names": ["arm_left_qpos_0", "arm_left_qpos_1"]},
    "action": {"dim": A, "names": ["a", "b", "c"]},
    "horizon": 5,
    "temporal": {"alpha": 1.0, "formula": "1 + alpha * progress**2"},
    "stats": {"observation.state": _stats(S), "action": _stats(A)},
    "splits": {
        "train": {
            "episodes": [0],
            "shards": [{"name": "train-000000.tar", "samples": 4, "bytes": 10240, "sha256": "0" * 64}],
        },
        "val": {"episodes": [], "shards": []},
    },
    "tasks": {"0": "pick"},
}


def _broken(path: str, value=None, delete: bool = False) -> dict:
    manifest = copy.deepcopy(VALID)
    *parents, last = path.split("/")
    node = manifest
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if delete:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return manifest


def test_valid_manifest_round_trips():
    manifest = parse_manifest(dump_manifest(VALID))
    assert manifest.to_json() == VALID and dump_manifest(manifest) == dump_manifest(VALID)
    assert manifest.shards("train") == (ShardEntry("train-000000.tar", 4, 10240, "0" * 64),)
    assert manifest.splits.train.shards[0].name == "train-000000.tar"
    assert manifest.tasks == {0: "pick"} and manifest.cameras["head"].height == 8
    assert manifest.stats.action.count == 4 and manifest.stats.state.mean == (0.0, 0.0)


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        (_broken("schema_version", 2), r"manifest\.schema_version: this tool reads schema 1, got 2"),
        (_broken("horizon", delete=True), r"manifest: missing key 'horizon'"),
        (_broken("fps", "30"), r"manifest\.fps: expected int or float, got str"),
        (_broken("stats/action/q99", [0.0]), r"manifest\.stats\.action\.q99: expected 3 values, got 1"),
        (
            _broken("stats/observation.state/mean", [0.0, float("nan")]),
            r"mean\[1\]: expected a finite number",
        ),
        (_broken("splits/val", delete=True), r"manifest\.splits: missing key 'val'"),
        (_broken("state/names", ["x"]), r"manifest\.state: expected as many names as indices"),
    ],
)
def test_defects_are_named_by_field(manifest, message):
    with pytest.raises(ManifestError, match=message):
        validate_manifest(manifest)


def test_shard_entries_are_checked():
    bad = copy.deepcopy(VALID)
    bad["splits"]["train"]["shards"][0]["sha256"] = "abc"
    with pytest.raises(ManifestError, match=r"splits\.train\.shards\[0\]\.sha256: expected 64 hex"):
        validate_manifest(bad)
    bad["splits"]["train"]["shards"][0] |= {"sha256": "0" * 64, "name": "../elsewhere.tar"}
    with pytest.raises(ManifestError, match=r"shards\[0\]\.name: expected a path relative"):
        validate_manifest(bad)


def test_unparseable_text_names_the_file():
    with pytest.raises(ManifestError, match=r"set/manifest\.json: not valid JSON"):
        parse_manifest("{", where="set/manifest.json")
    with pytest.raises(ManifestError, match="expected a JSON object"):
        parse_manifest(json.dumps([1]))


@pytest.mark.parametrize(
    "name",
    ["pipe:touch /tmp/owned", "https://elsewhere/x.tar", "/etc/passwd", "a/../../x.tar", "x.tar; rm -rf ~",
     "$(id).tar", "-rf.tar", ".hidden.tar", "a b.tar", "x`id`.tar", "a//b.tar", ""],
)  # fmt: skip
def test_a_name_that_could_leave_the_set_or_reach_a_shell_is_refused_when_read(name):
    """Shard and sidecar names are checked as the manifest is read, before anything opens them."""
    shard = copy.deepcopy(VALID)
    shard["splits"]["train"]["shards"][0]["name"] = name
    with pytest.raises(ManifestError, match=r"splits\.train\.shards\[0\]\.name: expected a path relative"):
        validate_manifest(shard)
    sidecar = copy.deepcopy(VALID)
    sidecar["stats_values"] = {"action": {"name": name}}
    with pytest.raises(ManifestError, match=r"stats_values\.action\.name: expected a path relative"):
        validate_manifest(sidecar)


def test_plain_relative_names_are_accepted():
    ok = copy.deepcopy(VALID)
    ok["splits"]["train"]["shards"][0]["name"] = "train-p000of004-000001.tar"
    ok["stats_values"] = {"action": {"name": "stats/action.npy", "bytes": 128, "sha256": "0" * 64}}
    assert validate_manifest(ok) is ok
    assert Manifest.from_json(ok).sidecar("action").name == "stats/action.npy"


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("splits/train/shards/0/samples", -1, r"manifest\.splits\.train\.shards\[0\]\.samples: expected >= 0, got -1"),
        ("splits/train/shards/0/samples", 21, r"splits\.train\.shards\[0\]: 21 samples in 10240 bytes is not a tar"),
        ("splits/train/shards/0/bytes", 1 << 40, r"splits\.train\.shards\[0\]\.bytes: expected 0\.\.68719476736"),
        ("splits/train/shards/0/tasks", {"x": 1}, r"splits\.train\.shards\[0\]\.tasks: expected an integer key"),
        ("splits/train/episodes", [0, -3], r"splits\.train\.episodes\[1\]: expected an episode index"),
        ("splits/train/episodes", [True], r"splits\.train\.episodes\[0\]: expected an episode index"),
        ("splits/train/samples", "4", r"manifest\.splits\.train\.samples: expected int, got str"),
        ("splits/train/episode_tasks", {"0": "pick"}, r"splits\.train\.episode_tasks\.0: expected a task index"),
        ("splits/train/tasks", {"0": {"episodes": 1}}, r"splits\.train\.tasks\.0: missing key 'samples'"),
        ("splits/train/skills", {"pick up": -1}, r"splits\.train\.skills\.pick up: expected >= 0"),
        ("cameras/head/height", 5000, r"manifest\.cameras\.head\.height: expected 1\.\.4096 pixels, got 5000"),
        ("cameras", {}, r"manifest\.cameras: expected at least one camera"),
        ("horizon", 0, r"manifest\.horizon: expected 1\.\.10000, got 0"),
        ("state/indices", [158, 999], r"manifest\.state\.indices\[1\]: expected an index into the"),
        ("state/layout", "r2d2", r"manifest\.state\.layout: "),
        ("action/names", ["a"], r"manifest\.action\.names: expected 3 names"),
        ("tasks", {"07": "pick"}, r"manifest\.tasks: expected an integer key, got '07'"),
        ("tasks", {"0": 7}, r"manifest\.tasks\.0: expected a task string, got int"),
        ("task_details", {"0": {"name": "x"}}, r"manifest\.task_details\.0: missing key 'prompt'"),
        (
            "task_details",
            {"0": {"name": "x", "prompt": "p", "evaluator_id": "0"}},
            r"manifest\.task_details\.0\.evaluator_id: expected an int or null",
        ),
        ("stats_values", {"action": {"name": "s.npy", "bytes": -1, "sha256": ""}}, r"stats_values\.action\.bytes"),
        ("partition", {"index": "0", "count": 2}, r"manifest\.partition\.index: expected int, got str"),
        ("totals", {"samples": "many"}, r"manifest\.totals\.samples: expected int, got str"),
        ("source", {"path": 3}, r"manifest\.source\.path: expected str, got int"),
        ("created_by", [], r"manifest\.created_by: expected dict, got list"),
    ],
)  # fmt: skip
def test_every_invalid_field_is_an_error_naming_its_path(path, value, message):
    with pytest.raises(ManifestError, match=message):
        Manifest.from_json(_broken(path, value))
    with pytest.raises(ManifestError, match=message):
        parse_manifest(json.dumps(_broken(path, value)), where="manifest")


def test_text_beyond_the_limits_is_refused_before_it_is_read():
    with pytest.raises(ManifestError, match="nested more than 32 levels deep"):
        parse_manifest("[" * 40 + "]" * 40)
    with pytest.raises(ManifestError, match="more than a manifest may have"):
        parse_manifest(" " * ((64 << 20) + 1))


def test_an_older_set_reads_with_the_documented_defaults():
    """A set written before layouts, task details, task and skill counts, sidecars and the record of the
    run: each reads as None (the 2025 state layout for the state)."""
    older = Manifest.from_json(VALID)
    assert older.state.layout_name is None and older.state_layout == DEFAULT_LAYOUT
    assert older.task_details is None and older.stats_values is None and older.sidecar("action") is None
    assert older.splits.train.tasks is None and older.splits.train.skills is None
    assert older.splits.train.episode_tasks is None and older.splits.train.samples is None
    assert older.prompt is None and older.partition is None and older.totals is None
    assert older.cameras["head"].member is None and older.cameras["head"].quality is None
    assert older.to_json() == VALID


def test_the_2026_layout_is_read_from_the_state():
    data = _broken("state/layout", "r1pro-2026")
    data["state"]["indices"] = [0, 60]
    manifest = Manifest.from_json(data)
    assert manifest.state_layout == layout_named("r1pro-2026") and manifest.state.layout_name == "r1pro-2026"


def test_keys_this_version_does_not_know_and_nulls_are_written_back():
    """A set from a newer (or older) tool keeps every key, at every level, and its nulls."""
    newer = copy.deepcopy(VALID)
    newer["from_the_future"] = {"nested": [1, 2, {"x": None}]}
    newer["prompt"] = None
    newer["partition"] = None
    newer["cameras"]["head"]["depth"] = False
    newer["state"]["units"] = "rad"
    newer["stats"]["action"]["q50"] = [0.0, 0.0, 0.0]
    newer["splits"]["train"]["shards"][0]["codec"] = "zstd"
    newer["splits"]["train"]["note"] = "kept"
    newer["splits"]["test"] = {"episodes": [], "shards": []}
    newer["created_by"]["host"] = "somewhere"
    newer["source"]["robot_type"] = None
    manifest = parse_manifest(dump_manifest(newer))
    assert dump_manifest(manifest) == dump_manifest(newer)
    assert manifest.prompt is None and manifest.partition is None and manifest.source.robot_type is None
    assert manifest.extras["from_the_future"] == {"nested": [1, 2, {"x": None}]}


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"stats_sidecar": True, "sidecar_episodes": True, "skills": skill_of, "val_episodes": [1, 5]},
        {"partition": (1, 2), "stats_sidecar": True},
        {"state_preset": "aligned", "tasks": {3: "one task"}},
        {"cameras": {"head": (24, 32), "left_wrist": (16, 16)}, "interleave": False},
    ],
)
def test_sets_the_tests_write_round_trip_byte_for_byte(tmp_path, options):
    write_shard_set(tmp_path, episodes=8, length=5, samples_per_shard=7, **options)
    text = (tmp_path / "manifest.json").read_text()
    manifest = parse_manifest(text)
    assert dump_manifest(manifest.to_json()) == text
    assert Manifest.from_json(manifest.to_json()) == manifest


def test_a_set_b1k_preprocess_writes_round_trips_byte_for_byte(synthetic_dataset, tmp_path):
    from tests.preprocess.helpers import preprocess

    synthetic = synthetic_dataset(layout="v3.0", lengths=(6, 9), tasks=(1, 6), head_size=32, wrist_size=32)
    val = synthetic.episodes[1].episode_index
    preprocess(synthetic.root, tmp_path / "set", val_episodes=str(val), horizon=4, shard_max_samples=5)
    text = (tmp_path / "set" / "manifest.json").read_text()
    manifest = parse_manifest(text)
    assert dump_manifest(manifest) == text
    assert manifest.task_details is not None and manifest.state.layout_name is not None
    assert manifest.splits.val.episodes == (val,) and manifest.totals is not None
