"""--task-balance: each sample of a small task streams r times per epoch, the epoch's size stays known
from the manifest, balanced streams resume exactly, validation is never balanced."""

from __future__ import annotations

import collections
import itertools
import shutil

import pytest

from schemas.sample import parse_sample_key
from tests.shardsets import read_manifest, write_manifest
from train import data as D
from train.stream import plan_raw

# --task-balance: 16 episodes of task 0 and 4 of task 1 (10 frames each), so task 1 has 4x fewer
# samples (160 vs 40) and r = 4; episode 20 (task 1) is held out. Shards hold both tasks 4:1.

BALANCED = {
    "episodes": 21,
    "length": 10,
    "val_episodes": (20,),
    "episode_tasks": {e: 0 if e < 16 else 1 for e in range(21)},
    "samples_per_shard": 30,
}


def _task_of(key):
    return 0 if parse_sample_key(key)[0] < 16 else 1


def test_task_repeat_factors_bring_every_task_near_the_largest():
    assert D.task_repeats({"big": 160, "small": 40, "middle": 100, "huge": 160}) == {
        "big": 1,
        "huge": 1,
        "middle": 2,  # round(1.6)
        "small": 4,
    }
    assert D.task_repeats({"only": 7}) == {"only": 1}


@pytest.mark.parametrize(("world", "workers"), [(1, 1), (1, 3), (2, 8)])
def test_a_balanced_epoch_repeats_each_small_task_sample_r_times_and_its_size_is_known(
    make_shards, world, workers
):
    """Over the slots of one epoch every sample of the small task comes r = 4 times, every sample of
    the big one once; each slot yields exactly the size its plan computes from the manifest."""
    spec = D.open_data([str(make_shards("balanced", **BALANCED))], task_balance=True)
    src = spec.sources[0]
    assert src.repeats.of_task == {0: 1, 1: 4} and src.epoch_samples == 160 + 4 * 40
    seen = collections.Counter()
    for rank in range(world):
        for worker in range(workers):
            order = D.epoch_order(len(src.train), 7, 0)
            plan = D.plan_slot(src.train, order, rank, world, worker, workers, src.repeats)
            assert plan.samples == sum(1 for _ in plan_raw(plan))  # (2, 8): sample strides
            slot = D.Slot(7, rank, world, worker, workers, shuffle_buffer=50)
            stream = D.slot_stream(D.SlotSource(tuple(src.train), repeats=src.repeats), slot)
            seen.update(raw["__key__"] for raw in itertools.islice(stream, plan.samples))
    assert sum(seen.values()) == src.epoch_samples == 320
    assert {key: n for key, n in seen.items() if _task_of(key) == 1} == {
        f"e{e:08d}_f{f:06d}": 4 for e in range(16, 20) for f in range(10)
    }
    assert all(n == 1 for key, n in seen.items() if _task_of(key) == 0) and len(seen) == 160 + 40


def test_balanced_batches_mix_the_tasks_evenly_and_resume_exactly(make_shards):
    """The shuffle buffer and the episode-stratified picks spread the copies: with a buffer small
    beside the epoch (as in real runs: 1000 samples per worker), the small task fills half of every
    window of 20 batches, within 0.1 (a buffer filling up or draining favours the tasks of more
    episodes: the picks ask for episodes). A stream started after consumed batches continues the
    balanced stream exactly."""
    spec = D.open_data([str(make_shards("balanced", **BALANCED))], task_balance=True)
    stream = D.TrainStream(spec, chunk_size=4, seed=3, shuffle_buffer=16, batch_size=8)
    keys = [raw["__key__"] for raw in itertools.islice(stream.raw_samples(), 1280)]  # 4 epochs
    for window in range(0, 1280, 160):
        share = sum(_task_of(key) for key in keys[window : window + 160]) / 160
        assert abs(share - 0.5) <= 0.1, (window, share)
    for start in (1, 25, 53):  # 53 batches: into the second epoch
        resumed = D.TrainStream(
            spec, chunk_size=4, seed=3, shuffle_buffer=16, batch_size=8, start_batches=start
        )
        assert [raw["__key__"] for raw in itertools.islice(resumed.raw_samples(), 1280 - 8 * start)] == keys[
            8 * start :
        ]


def test_balanced_loader_workers_resume_exactly(make_shards):
    spec = D.open_data([str(make_shards("balanced", **BALANCED))], task_balance=True)

    def keys(start, count):
        stream = D.TrainStream(
            spec, chunk_size=4, seed=3, shuffle_buffer=64, batch_size=4, start_batches=start, num_workers=3
        )
        return [b["key"] for b in itertools.islice(D.batches(D.make_loader(stream)), count)]

    full = keys(0, 90)  # 360 samples: past the first 320-sample epoch
    assert keys(37, 53) == full[37:]


def test_validation_is_never_balanced(make_shards):
    spec = D.open_data([str(make_shards("balanced", **BALANCED))], task_balance=True)
    batches = list(D.ValStream(spec, chunk_size=4, batch_size=8))
    assert sorted(k for b in batches for k in b["key"]) == [f"e{20:08d}_f{f:06d}" for f in range(10)]


def test_balance_counts_tasks_by_name_over_the_sets_and_weights_follow(make_shards):
    """Two sets each number their one task 0 (as v3.0 datasets do): 160 samples of one task, 40 of
    the other. The small one repeats 4x, and the default mixture is 50/50 (by epoch size)."""
    big = make_shards("task-big", episodes=8, length=20, tasks={0: "tidy the table"})
    small = make_shards("task-small", episodes=2, length=20, first_episode=50, tasks={0: "open the door"})
    spec = D.open_data([str(big), str(small)], task_balance=True)
    assert [src.repeats.of_task for src in spec.sources] == [{0: 1}, {0: 4}]
    assert [src.weight for src in spec.sources] == [160.0, 160.0]
    assert D.task_balance_rows(spec) == [
        {"task": "tidy the table", "samples": 160, "repeats": 1, "effective": 160},
        {"task": "open the door", "samples": 40, "repeats": 4, "effective": 160},
    ]
    assert [src.weight for src in D.open_data([str(big), str(small)]).sources] == [160.0, 40.0]
    assert [src.weight for src in D.open_data([f"{big}@1", f"{small}@3"], task_balance=True).sources] == [
        1,
        3,
    ]


def test_a_set_without_task_counts_cannot_be_balanced(make_shards, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(make_shards("balanced", **BALANCED), old)
    manifest = read_manifest(old)
    for entry in manifest["splits"]["train"]["shards"]:
        del entry["tasks"]
    write_manifest(old, manifest)
    D.open_data([str(old)])  # fine without --task-balance
    with pytest.raises(
        D.DataSpecError, match=rf"{old}: --task-balance .*shards\[\]\.tasks.*re-run b1k-preprocess"
    ):
        D.open_data([str(old)], task_balance=True)
