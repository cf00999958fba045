"""The training stream: splits partition the data, resume skips exactly, batches are diverse, errors name
shards, workers hand batches over in shared buffers (--task-balance: test_balance.py)."""

from __future__ import annotations

import collections
import itertools
import json
import logging
import random
import shutil

import numpy as np
import pytest
import torch

from schemas.manifest import ManifestError
from schemas.sample import parse_sample_key
from shards.codec import decode_image_tensor, encode_npy, npy_view
from shards.errors import ShardCorruptError
from shards.guard import CorruptShardLog
from tests.shardsets import write_shard_set
from train import data as D
from train.config import TrainConfig
from train.stream import picks_wanted, read_shard


def _epoch_keys(spec, epoch_seed, rank, world, worker, workers):
    shards = spec.sources[0].train
    plan = D.plan_slot(shards, D.epoch_order(len(shards), epoch_seed, 0), rank, world, worker, workers)
    slot = D.Slot(epoch_seed, rank, world, worker, workers, shuffle_buffer=50)
    stream = D.slot_stream(D.SlotSource(tuple(shards)), slot)
    return [raw["__key__"] for raw in itertools.islice(stream, plan.samples)]


@pytest.mark.parametrize(("world", "workers"), [(1, 1), (1, 3), (2, 2), (2, 8), (3, 1)])
def test_slots_of_an_epoch_partition_the_train_split(small_set, world, workers):
    spec = D.open_data([str(small_set)])
    total = spec.sources[0].train_samples
    seen = []
    for rank in range(world):
        for worker in range(workers):
            seen.extend(_epoch_keys(spec, 7, rank, world, worker, workers))
    assert len(seen) == total
    assert len(set(seen)) == total


def test_shard_order_and_shuffle_change_with_the_epoch_and_seed(small_set):
    spec = D.open_data([str(small_set)])
    shards = spec.sources[0].train
    assert D.epoch_order(len(shards), 1, 0) == D.epoch_order(len(shards), 1, 0)
    assert D.epoch_order(len(shards), 1, 0) != D.epoch_order(len(shards), 1, 1)
    stream = D.slot_stream(D.SlotSource(tuple(shards)), D.Slot(seed=1, shuffle_buffer=100))
    epoch0 = [r["__key__"] for r in itertools.islice(stream, spec.sources[0].train_samples)]
    epoch1 = [r["__key__"] for r in itertools.islice(stream, spec.sources[0].train_samples)]
    assert sorted(epoch0) == sorted(epoch1) and epoch0 != epoch1


def test_the_stratified_buffer_gives_each_sample_once_and_the_first_buffered_candidate():
    rng = random.Random(0)
    buffer = D.StratifiedBuffer()
    keys = [f"e{rng.randrange(6):08d}_f{frame:06d}" for frame in range(400)]
    taken = []
    for key in keys:
        buffer.add({"__key__": key})
        if len(buffer) >= 50 or rng.random() < 0.3:
            candidates = tuple(rng.sample(range(8), 3))  # episodes 6 and 7 are never buffered
            buffered = {int(k[1:9]) for k in (item["__key__"] for item in buffer.items)}
            raw = buffer.pick(rng, candidates)
            first = next((c for c in candidates if c in buffered), None)
            assert first is None or int(raw["__key__"][1:9]) == first
            taken.append(raw["__key__"])
    while len(buffer):
        taken.append(buffer.pick(rng)["__key__"])
    assert sorted(taken) == sorted(keys) and taken != keys


def test_the_episode_schedule_depends_on_the_item_alone():
    """What a batch position asks for is a function of (seed, rank, item), however items are
    visited (resume jumps): positions of one batch ask for disjoint episodes."""
    episodes, b = list(range(30)), 4
    sequential = D.EpisodeSchedule.of(episodes, b, seed=5, rank=1)
    expected = [sequential.wanted(i) for i in range(b * 150)]  # 150 batches: several generator blocks
    jumping = D.EpisodeSchedule.of(episodes, b, seed=5, rank=1)
    order = random.Random(0).sample(range(len(expected)), len(expected))
    assert [jumping.wanted(i) for i in order] == [expected[i] for i in order]
    for batch in range(150):
        asked = [set(expected[batch * b + p]) for p in range(b)]
        assert sum(len(a) for a in asked) == len(set().union(*asked)) == 30  # disjoint, all asked for
    other_rank = D.EpisodeSchedule.of(episodes, b, seed=5, rank=2)
    assert [other_rank.wanted(i) for i in range(b * 150)] != expected


def test_the_episode_schedule_keeps_the_order_of_runs_started_before():
    """Pinned values (drawn by the schedule as it was before it became a pure function): a run
    started before resumes with the same picks asked for, in the first block of batches and later."""
    schedule = D.EpisodeSchedule.of(list(range(10, 40)), 4, seed=5, rank=1)
    assert [schedule.wanted(i) for i in (0, 1, 3, 4 * 70 + 2)] == [
        (27, 23, 31, 34, 36, 12, 21, 17),
        (11, 33, 10, 26, 20, 37, 22, 19),
        (15, 38, 16, 18, 39, 30, 24),
        (20, 23, 26, 30, 29, 35, 18),
    ]
    two = D.EpisodeSchedule.of([7, 3], 4, seed=5, rank=0)  # fewer episodes than positions
    assert [two.wanted(i) for i in range(4)] == [(7,), (3,), (7,), (3,)]


def test_a_workers_picks_ask_for_the_schedule_of_the_rank_sample_they_become():
    schedule = D.EpisodeSchedule.of(list(range(40)), 3, seed=2, rank=0)
    for worker, workers, first in ((0, 1, 0), (1, 2, 4), (2, 3, 200)):
        slot = D.Slot(2, worker=worker, workers=workers, batch_size=3)
        picks = itertools.islice(picks_wanted(schedule, slot, first), 20)
        assert list(picks) == [
            schedule.wanted(D.rank_item(n, worker, workers, 3)) for n in range(first, first + 20)
        ]


def _batch_keys(spec, start, count, workers, seed=3):
    stream = D.TrainStream(
        spec,
        chunk_size=4,
        seed=seed,
        shuffle_buffer=64,
        batch_size=4,
        start_batches=start,
        num_workers=workers,
    )
    return [batch["key"] for batch in itertools.islice(D.batches(D.make_loader(stream)), count)]


@pytest.mark.parametrize("workers", [0, 3])
def test_resume_position_continues_the_stream_exactly(small_set, workers):
    spec = D.open_data([str(small_set)])
    # 62 batches of 4: more than one epoch of the 200-sample train split, so epochs are skipped too.
    full = _batch_keys(spec, 0, 62, workers)
    assert len({key for keys in full for key in keys}) == 200
    for start in (1, 25, 53):
        assert _batch_keys(spec, start, 62 - start, workers) == full[start:]


def _expected_batch(stream, index, workers):
    """Batch `index` of a loader, computed in this process: the loader hands out the workers'
    batches round-robin, so it is batch `index // workers` of worker `index % workers`."""
    return next(itertools.islice(stream.worker_batches(index % workers, workers), index // workers, None))


def _assert_same_batch(batch, expected, spec):
    assert batch["key"] == expected["key"]
    for key in (*spec.image_keys, "observation.state", "action", "action_is_pad"):
        assert batch[key].shape == expected[key].shape and torch.equal(batch[key], expected[key]), key


def test_batches_kept_by_the_consumer_are_its_own_copies(small_set):
    """Batches the consumer keeps stay equal to a single-process run of the same slots, however the
    workers hand them over: 200 batches (4 epochs) are far more than 2 workers keep in flight, so
    whatever buffers they reuse have been refilled many times while the first batches are still held."""
    spec = D.open_data([str(small_set)])
    stream = D.TrainStream(spec, chunk_size=4, seed=2, shuffle_buffer=64, batch_size=4, num_workers=2)
    kept = list(itertools.islice(D.batches(D.make_loader(stream)), 200))
    for index, batch in enumerate(kept):
        _assert_same_batch(batch, _expected_batch(stream, index, 2), spec)


def test_zero_copy_batches_are_right_while_in_use(small_set):
    """copy=False (b1k-train on CPU): a batch used before the next one is taken is never overwritten,
    and the ring's buffers really are reused (a kept batch changes later: copy to keep)."""
    spec = D.open_data([str(small_set)])
    stream = D.TrainStream(spec, chunk_size=4, seed=2, shuffle_buffer=64, batch_size=4, num_workers=2)
    loader = D.make_loader(stream)
    views = []
    # 200 batches (4 epochs): far past what 2 workers keep in flight, so every buffer is refilled
    for index, batch in enumerate(itertools.islice(D.batches(loader, copy=False), 200)):
        _assert_same_batch(batch, _expected_batch(stream, index, 2), spec)
        views.append(batch["observation.state"])
    assert not torch.equal(views[0], _expected_batch(stream, 0, 2)["observation.state"])


def test_workers_hand_over_small_references_to_their_shared_buffers(small_set):
    """A loader item is a `BatchRef`: which of the worker's shared buffers holds the batch, its rows
    and its per-sample lists, never the tensors themselves. Each worker fills its own buffers in
    turn, and the stream's buffers give the batch a single-process run of the same slot makes."""
    spec = D.open_data([str(small_set)])
    stream = D.TrainStream(spec, chunk_size=4, seed=2, shuffle_buffer=64, batch_size=4, num_workers=2)
    slots = []
    for index, item in enumerate(itertools.islice(iter(D.make_loader(stream)), 20)):
        assert isinstance(item, D.BatchRef) and item.rows == 4
        assert not any(isinstance(v, torch.Tensor) for v in item.lists.values())
        slots.append(item.slot)
        _assert_same_batch(stream.buffers.batch(item), _expected_batch(stream, index, 2), spec)
    first, second = slots[0::2], slots[1::2]  # the round-robin: worker 0's batches, worker 1's
    assert not set(first) & set(second)  # each worker fills buffers of its own
    assert len(set(first)) < len(first) and len(set(second)) < len(second)  # and reuses them


def test_a_stream_refuses_a_loader_with_another_worker_count(small_set):
    spec = D.open_data([str(small_set)])
    stream = D.TrainStream(spec, chunk_size=4, seed=2, shuffle_buffer=64, batch_size=4, num_workers=2)
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=1)
    with pytest.raises(ValueError, match="made for 2 DataLoader workers, the loader has 1"):
        next(iter(loader))


@pytest.mark.parametrize("consumed", [0, 5, 9, 17])
def test_resume_points_skip_exactly_the_consumed_batches(consumed):
    """After `consumed` batches from 3 workers, the workers together skip exactly them, and loader
    worker 0 (asked first) plays the worker whose batch comes next."""
    workers = 3
    points = [D.resume_point(consumed, w, workers) for w in range(workers)]
    assert sorted(w for w, _ in points) == [0, 1, 2] and sum(c for _, c in points) == consumed
    assert points[0][0] == consumed % workers
    # a worker's n-th sample lands where the round-robin of its batches puts it
    assert [D.rank_item(n, 1, 2, 3) // 3 for n in range(0, 12, 3)] == [1, 3, 5, 7]


def test_samples_are_decoded_into_batches_and_chunk_sliced(small_set):
    spec = D.open_data([str(small_set)])
    stream = D.TrainStream(spec, chunk_size=5, seed=0, shuffle_buffer=0, batch_size=2)
    raws = list(itertools.islice(stream.raw_samples(), 2))
    batch = next(iter(stream))
    assert batch["key"] == [raw["__key__"] for raw in raws]
    images = batch["observation.images.rgb.head"]
    assert images.dtype == torch.uint8 and images.shape == (
        2,
        3,
        16,
        16,
    )  # channel-first, as SmolVLA takes it
    assert images.is_contiguous(memory_format=torch.channels_last)  # as decoded: copied by memcpy
    for row, raw in enumerate(raws):
        assert torch.equal(images[row], decode_image_tensor(raw["head.jpg"]))
        assert torch.equal(batch["action"][row], torch.from_numpy(npy_view(raw["action.npy"])[:5]))
        assert torch.equal(
            batch["action_is_pad"][row], torch.from_numpy(npy_view(raw["action_is_pad.npy"])[:5])
        )
        assert torch.equal(batch["observation.state"][row], torch.from_numpy(npy_view(raw["state.npy"])))
        assert isinstance(raw["head.jpg"], memoryview)  # members are views of the mapped shard file
        meta = json.loads(bytes(raw["json"]))
        assert batch["task"][row] == meta["task"] and batch["progress"][row] == meta["progress"]
        assert (batch["episode_index"][row], batch["frame_index"][row]) == (
            meta["episode_index"],
            meta["frame_index"],
        )
    assert batch["action"].shape == (2, 5, 23) and batch["observation.state"].shape == (2, 32)
    assert set(batch["task"]) <= {"pick up the radio", "put the dishes away"}


def test_a_sample_that_does_not_decode_is_named_or_skipped(small_set, caplog):
    spec = D.open_data([str(small_set)])
    fmt = D.SampleFormat.of(spec, 4)
    raws = list(itertools.islice(read_shard(spec.sources[0].train[0].url), 5))
    raws[1] = {**raws[1], "head.jpg": raws[1]["head.jpg"][:200]}  # a truncated JPEG
    raws[3] = {**raws[3], "action.npy": encode_npy(np.zeros((2, 23), np.float32))}  # shorter than the chunk
    with pytest.raises(ShardCorruptError, match=rf"train-000000\.tar.*{raws[1]['__key__']} does not decode"):
        list(D.batched(iter(raws), fmt, 2))
    log = CorruptShardLog()
    with caplog.at_level("WARNING", logger="shards"):
        batches = list(D.batched(iter(raws), fmt, 2, corrupt=log))
    assert [b["key"] for b in batches] == [[raws[0]["__key__"], raws[2]["__key__"]], [raws[4]["__key__"]]]
    reasons = [event["reason"] for event in log.events()]
    assert len(reasons) == 2 and raws[1]["__key__"] in reasons[0]
    assert (
        raws[3]["__key__"] in reasons[1]
        and "action.npy: ValueError: expected float32[8, 23], got float32[2, 23]" in reasons[1]
    )
    # only those samples were skipped, and the log says so
    assert [event["skipped"] for event in log.events()] == ["sample", "sample"]
    assert sum("skipping a sample of corrupt shard" in r.getMessage() for r in caplog.records) == 2
    assert log.count == 1 and log.summary().startswith(
        "skipped 2 samples that did not decode (--skip-corrupt)"
    )


@pytest.mark.parametrize("interleave", [True, False])
def test_batch_diversity_with_default_settings(make_shards, interleave):
    """Acceptance 2: >= 12 distinct episodes on average in 16-sample batches of a 20-episode set, defaults.

    I.i.d. picks would give only ~11.2 of 20 episodes; the episode-stratified buffer (default) gets ~15.
    Episode-pure shards are the worst case (each of the 8 workers holds ~3 episodes): there stratified
    batches are still never less diverse than plain ones.
    """
    root = make_shards(
        f"diverse-{interleave}",
        episodes=20,
        length=40,
        horizon=4,
        samples_per_shard=24,
        interleave=interleave,
    )
    spec = D.open_data([str(root)])
    defaults = TrainConfig(shards=[str(root)])
    averages = {}
    for stratify in (True, False):
        stream = D.TrainStream(
            spec,
            chunk_size=4,
            seed=defaults.seed,
            shuffle_buffer=defaults.shuffle_buffer,
            batch_size=16,
            stratify=stratify,
            num_workers=defaults.num_workers,
        )
        distinct = [
            len(set(b["episode_index"])) for b in itertools.islice(D.batches(D.make_loader(stream)), 40)
        ]
        averages[stratify] = sum(distinct) / len(distinct)
    iid = 20 * (1 - (19 / 20) ** 16)  # expected distinct episodes of 16 i.i.d. uniform picks among 20
    print(
        f"interleave={interleave}: distinct per batch: stratified {averages[True]:.2f}, plain {averages[False]:.2f}, i.i.d. {iid:.2f}"
    )
    assert defaults.stratify
    assert averages[True] >= averages[False]
    if interleave:  # shards mix episodes, as b1k-preprocess writes them
        assert averages[True] >= 12


@pytest.mark.parametrize(("seed", "workers"), [(1000, 0), (7, 1)])
def test_a_stratified_batch_takes_every_buffered_episode_equally_often(make_shards, seed, workers):
    """8 episodes of 40 frames in episode-pure shards, batches of 16, one slot whose buffer holds the
    whole 320-sample epoch: every stratified batch of the first two epochs holds each of the 8
    episodes exactly twice (the most diverse batch there is), whatever the seed. Plain picks from the
    same buffer do not: some of their batches repeat an episode more often and miss another."""
    root = make_shards("eight-pure", episodes=8, length=40, horizon=4, samples_per_shard=24, interleave=False)
    spec = D.open_data([str(root)])
    assert spec.sources[0].train_samples == 320
    counts = {}
    for stratify in (True, False):
        stream = D.TrainStream(
            spec,
            chunk_size=4,
            seed=seed,
            shuffle_buffer=1000,
            batch_size=16,
            stratify=stratify,
            num_workers=workers,
        )
        counts[stratify] = [
            collections.Counter(b["episode_index"])
            for b in itertools.islice(D.batches(D.make_loader(stream)), 40)
        ]
    even = {episode: 2 for episode in range(8)}
    assert all(count == even for count in counts[True]), counts[True]
    assert sum(count == even for count in counts[False]) < 40
    assert sum(len(count) for count in counts[False]) < 8 * 40  # plain batches miss episodes


def test_mixture_follows_the_weights(make_shards):
    a = make_shards("mix-a", episodes=4, length=20)
    b = make_shards("mix-b", episodes=4, length=20, first_episode=100)
    spec = D.open_data([f"{a}@3", f"{b}@1"])
    stream = D.TrainStream(spec, chunk_size=4, seed=0, shuffle_buffer=0, batch_size=8)
    from_a = sum(
        parse_sample_key(raw["__key__"])[0] < 100 for raw in itertools.islice(stream.raw_samples(), 400)
    )
    assert 0.65 < from_a / 400 < 0.85
    keys = [raw["__key__"] for raw in itertools.islice(stream.raw_samples(), 400)]
    resumed = D.TrainStream(spec, chunk_size=4, seed=0, shuffle_buffer=0, batch_size=8, start_batches=13)
    assert [raw["__key__"] for raw in itertools.islice(resumed.raw_samples(), 400 - 13 * 8)] == keys[13 * 8 :]
    with pytest.raises(D.DataSpecError, match="weight"):
        D.open_data([f"{a}@3", str(b)])


def test_sets_with_other_features_cannot_be_mixed(make_shards):
    a = make_shards("feat-a", episodes=3, length=10)
    b = make_shards("feat-b", episodes=3, length=10, cameras={"head": (16, 16)})
    with pytest.raises(D.DataSpecError, match="cameras"):
        D.open_data([str(a), str(b)])


def test_mixed_sets_keep_the_first_sets_name_of_a_task_and_say_so(make_shards, caplog):
    a = make_shards("names-a", episodes=2, length=10, tasks={0: "pick up the radio", 1: "open the door"})
    b = make_shards(
        "names-b", episodes=2, length=10, first_episode=50, tasks={0: "pick up the radio", 1: "shut it"}
    )
    with caplog.at_level(logging.WARNING):
        spec = D.open_data([str(a), str(b)])
    assert spec.tasks == {0: "pick up the radio", 1: "open the door"}
    assert "task 1 is 'shut it', an earlier set calls it 'open the door'" in caplog.text
    assert [src.weight for src in spec.sources] == [20.0, 20.0]  # no weights: each set's epoch size


def test_stats_of_a_mixture_are_exact_for_mean_and_std(make_shards):
    import numpy as np

    a = make_shards("mix-a", episodes=4, length=20)
    c = make_shards("stats-c", episodes=6, length=10)
    spec = D.open_data([str(a), str(c)])
    values = np.concatenate(
        [np.stack([item["observation.state"].numpy() for item in _all_items(root)]) for root in (a, c)]
    )
    assert np.allclose(spec.stats["observation.state"]["mean"], values.mean(0), atol=1e-5)
    assert np.allclose(spec.stats["observation.state"]["std"], values.std(0), atol=1e-5)


def _all_items(root):
    spec = D.open_data([str(root)])
    raws = [raw for ref in spec.sources[0].train for raw in read_shard(ref.url)]
    batch = D.decode_batch(raws, D.SampleFormat.of(spec, 2))
    return [{"observation.state": state} for state in batch["observation.state"]]


def test_missing_and_unreadable_shards_are_named(small_set, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(small_set, broken)
    (broken / "train-000002.tar").unlink()
    with pytest.raises(D.ShardReadError, match=r"train-000002\.tar"):
        D.open_data([str(broken)])
    shutil.copy(small_set / "train-000002.tar", broken / "train-000002.tar")
    with open(broken / "train-000003.tar", "r+b") as f:
        f.seek(700)
        f.write(b"\xff" * 3000)
    spec = D.open_data([str(broken)])
    stream = D.TrainStream(spec, chunk_size=4, seed=0, shuffle_buffer=0, batch_size=8)
    with pytest.raises(
        ShardCorruptError, match=r"corrupt shard .*/broken/train-000003\.tar.*b1k-shards verify"
    ):
        for _ in itertools.islice(iter(stream), 50):
            pass


def test_missing_or_invalid_manifest(tmp_path):
    with pytest.raises(ManifestError, match=r"no manifest\.json"):
        D.open_data([str(tmp_path)])
    (tmp_path / "manifest.json").write_text('{"schema_version": 1}')
    with pytest.raises(ManifestError, match="missing key 'created_by'"):
        D.open_data([str(tmp_path)])


def test_too_many_slots_for_a_tiny_split(tmp_path):
    write_shard_set(tmp_path, episodes=1, length=3, horizon=2)
    spec = D.open_data([str(tmp_path)])
    with pytest.raises(D.DataSpecError, match="fewer workers"):
        next(D.slot_stream(D.SlotSource(tuple(spec.sources[0].train)), D.Slot(0, worker=3, workers=4)))


def test_shards_weight_syntax():
    assert D.parse_shards_arg("/data/set") == ("/data/set", None)
    assert D.parse_shards_arg("/data/set@0.5") == ("/data/set", 0.5)
    assert D.parse_shards_arg("https://user@host/set") == ("https://user@host/set", None)
    with pytest.raises(D.DataSpecError):
        D.parse_shards_arg("/data/set@-1")


def test_batch_diversity_on_preprocessed_shards(synthetic_shards):
    """Acceptance 2 on `b1k-preprocess` output (20 train episodes, shards as preprocess interleaves them)."""
    spec = D.open_data([str(synthetic_shards)])
    assert len(spec.sources[0].episodes) >= 20
    defaults = TrainConfig(shards=[str(synthetic_shards)])
    stream = D.TrainStream(
        spec,
        chunk_size=8,
        seed=defaults.seed,
        shuffle_buffer=defaults.shuffle_buffer,
        batch_size=16,
        num_workers=defaults.num_workers,
    )
    distinct = [len(set(b["episode_index"])) for b in itertools.islice(D.batches(D.make_loader(stream)), 40)]
    average = sum(distinct) / len(distinct)
    print(
        f"preprocessed shards: distinct episodes per 16-sample batch: avg {average:.2f}, min {min(distinct)}"
    )
    assert average >= 12


def test_a_batch_copied_out_of_a_shared_buffer_is_the_consumers_own(small_set):
    """`BatchBuffers.batch(copy=True)` gives tensors equal to a batch decoded in this process, with
    the same strides, that stay so when the worker refills its buffer."""
    spec = D.open_data([str(small_set)])
    stream = D.TrainStream(spec, chunk_size=5, seed=0, batch_size=3)
    raws = list(itertools.islice(stream.raw_samples(), 3))
    fmt = D.SampleFormat.of(spec, 5)
    plain = D.decode_batch(raws, fmt)
    buffers = D.BatchBuffers(fmt, 3, workers=1)
    writer = buffers.writer(0)
    for raw in raws:
        writer.add(raw)
    copied = buffers.batch(D.BatchRef(0, writer.count, writer.lists), copy=True)
    assert copied.keys() == plain.keys()
    buffers.buffers[0].fill_(0)  # the worker refills its buffer: the consumer's copy is unaffected
    for key, value in plain.items():
        if isinstance(value, torch.Tensor):
            assert copied[key].dtype == value.dtype and torch.equal(copied[key], value), key
            assert copied[key].stride() == value.stride(), key
        else:
            assert copied[key] == value, key
