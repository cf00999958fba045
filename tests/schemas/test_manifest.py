"""Manifest schema v1: a valid manifest passes; each kind of defect is named by its field path."""

import copy
import json

import pytest

from schemas.manifest import ManifestError, dump_manifest, parse_manifest, shards_of, validate_manifest

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
    assert parse_manifest(dump_manifest(VALID)) == VALID
    assert shards_of(VALID, "train")[0]["name"] == "train-000000.tar"


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
