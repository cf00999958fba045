"""Issue 26: no command loses a good set at any moment. `b1k-shards merge --overwrite OUT` builds the
new set beside OUT and swaps it in whole (`shards.swap`): killed (SIGKILL, no clean-up) before each of
its file-system changes in turn, or failing on a corrupt input, it leaves OUT holding the old set or
the new one, whole, never a mix or nothing; a set a killed fallback swap left aside is put back by the
next run."""

from __future__ import annotations

import errno

import pytest

from shards.merge import MergeError, merge_sets
from shards.swap import aside_path, restore_aside
from shards.verify import verify_set
from tests.hostile import killed_at_step
from tests.shardsets import read_manifest


def _quiet(message: str) -> None:
    pass


@pytest.fixture
def old_and_new(make_set, tmp_path):
    """(OUT holding a merged set of episodes 0..4, the input of another set: episodes 10..13)."""
    out = tmp_path / "out"
    merge_sets(out, [str(make_set("old"))], log=_quiet)
    new = make_set("new", episodes={10: 4, 11: 5, 12: 3, 13: 6}, val_episodes=(13,))
    return out, new


def _whole_set(out) -> dict:
    """OUT's manifest, once OUT is checked to hold a whole set (every shard and sidecar as listed)."""
    report = verify_set(str(out), workers=1)
    assert report.ok, report.lines()
    return read_manifest(out)


def _episodes(manifest: dict) -> list[int]:
    return sorted(manifest["splits"]["train"]["episodes"] + manifest["splits"]["val"]["episodes"])


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2-exchange", "rename-aside"])
def test_merge_overwrite_killed_before_any_step_leaves_the_old_or_the_new_set_whole(
    old_and_new, monkeypatch, exchange
):
    out, new = old_and_new
    old_episodes = _episodes(read_manifest(out))
    if not exchange:  # a filesystem without RENAME_EXCHANGE: the old set is moved aside, then back

        def cannot(a, b):
            raise OSError(errno.EINVAL, "not supported")

        monkeypatch.setattr("shards.swap._exchange", cannot)
    seen = set()
    for step in range(1, 200):
        killed = killed_at_step(step, lambda: merge_sets(out, [str(new)], overwrite=True, log=_quiet))
        restore_aside(out)  # what the next run into OUT does first
        episodes = _episodes(_whole_set(out))
        assert episodes in (old_episodes, [10, 11, 12, 13]), (step, episodes)
        seen.add(tuple(episodes))
        if not killed:
            break
        if episodes != old_episodes:  # swapped in already: put the old set back for the next step
            merge_sets(out, [str(out.parent / "old")], overwrite=True, log=_quiet)
    assert not killed and len(seen) == 2 and step > 5
    assert not aside_path(out).exists() and not list(out.parent.glob(".out.*"))


def test_merge_overwrite_with_a_corrupt_input_leaves_the_old_set_whole(old_and_new):
    out, new = old_and_new
    before = read_manifest(out)
    entry = read_manifest(new)["splits"]["train"]["shards"][-1]
    data = bytearray((new / entry["name"]).read_bytes())
    data[-3000] ^= 0xFF
    (new / entry["name"]).write_bytes(bytes(data))
    with pytest.raises(MergeError, match="sha256 mismatch"):
        merge_sets(out, [str(new)], overwrite=True, log=_quiet)
    assert _whole_set(out) == before
