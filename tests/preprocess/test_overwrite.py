"""Issue 26: `b1k-preprocess --overwrite` never loses the set already in the output folder. The new set
is built in the work dir and swapped in whole (`final_stage.replace_set`, `shards.swap`): a run that
fails before the swap leaves the old set as it was, and a swap killed (SIGKILL) before any of its
file-system changes leaves the old set or the new one, whole."""

from __future__ import annotations

import errno
import json
import shutil

import pytest

from preprocess import final_stage
from shards.swap import restore_aside
from shards.verify import verify_set
from tests.hostile import killed_at_step
from tests.preprocess.helpers import preprocess
from tests.shardsets import read_manifest

OLD = {"val_episodes": "1", "horizon": 10, "shard_max_samples": 40, "seed": 1}
NEW = {"val_episodes": "0", "horizon": 12, "shard_max_samples": 30, "seed": 2}


@pytest.fixture(scope="module")
def dataset(synthetic_dataset):
    return synthetic_dataset(layout="v3.0", lengths=(20, 25, 30), episodes=3, head_size=32, wrist_size=32)


@pytest.fixture(scope="module")
def built(dataset, tmp_path_factory) -> dict:
    """The old set and the new one, each as b1k-preprocess writes it."""
    root = tmp_path_factory.mktemp("overwrite")
    preprocess(dataset.root, root / "old", **OLD)
    preprocess(dataset.root, root / "new", **NEW)
    return {"old": root / "old", "new": root / "new"}


def _whole_set(out) -> dict:
    report = verify_set(str(out), workers=1)
    assert report.ok, report.lines()
    return read_manifest(out)


def test_an_overwrite_whose_manifest_cannot_be_written_leaves_the_old_set_whole(
    dataset, built, tmp_path, monkeypatch
):
    out = tmp_path / "set"
    shutil.copytree(built["old"], out)
    before = read_manifest(out)

    def crash(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    # the disk fills as the new manifest is written, the shards and sidecars being complete
    monkeypatch.setattr(final_stage, "atomic_write_text", crash, raising=False)
    monkeypatch.setattr("shards.swap.atomic_write_text", crash)
    with pytest.raises(OSError, match="No space left"):
        preprocess(dataset.root, out, overwrite=True, **NEW)
    assert _whole_set(out) == before


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2-exchange", "rename-aside"])
def test_the_swap_killed_before_any_step_leaves_the_old_or_the_new_set_whole(
    built, tmp_path, monkeypatch, exchange
):
    old, new = read_manifest(built["old"]), read_manifest(built["new"])
    if not exchange:

        def cannot(a, b):
            raise OSError(errno.EINVAL, "not supported")

        monkeypatch.setattr("shards.swap._exchange", cannot)
    seen = set()
    for step in range(1, 100):
        out = tmp_path / f"step{step}" / "set"
        shutil.copytree(built["old"], out)
        stage = out / ".work" / final_stage.STAGE_DIR  # where the final stage leaves the new set's files
        shutil.copytree(built["new"], stage, ignore=shutil.ignore_patterns("manifest.json"))
        text = json.dumps(new)
        killed = killed_at_step(
            step, lambda out=out, stage=stage, text=text: final_stage.replace_set(out, stage, text)
        )
        restore_aside(out)  # what the next run into the folder does first
        manifest = _whole_set(out)
        assert manifest in (old, new), step
        seen.add(manifest["horizon"])
        if not killed:
            break
    assert not killed and seen == {old["horizon"], new["horizon"]} and step > 3
