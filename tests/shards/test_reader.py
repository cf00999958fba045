"""shards.reader: one shard set, four ways to address it (directory, manifest path, http(s) URL
prefix on a local server, `pipe:` command), the same samples every way; and corrupt shards read
through `shards.guard` (`ShardSet.checked_samples`, `iter_checked_shard`): a clear error naming the
shard before any of its samples is used, or (a `CorruptShardLog`) skipped and counted."""

import io
import json
import os
import shutil
import tarfile
from dataclasses import replace

import numpy as np
import pytest
import webdataset as wds

from schemas.manifest import ManifestError
from shards.codec import decode_sample
from shards.guard import VerifiedShards
from shards.reader import (
    CorruptShardLog,
    ShardCorruptError,
    ShardSetError,
    iter_checked_shard,
    iter_tar_samples,
    open_shard_set,
)
from shards.scan import local_file_problem
from shards.writer import write_tar
from tests.shardsets import WIDE_CAMERAS, image_of, read_manifest, state_of


def _keys(shard_set, split="train"):
    return [s["__key__"] for url in shard_set.urls(split) for s in iter_tar_samples(url)]


def _checked(shard_set, split="train", skip=None):
    """Every sample of a split, each shard checked by `iter_checked_shard` (what the trainer reads)."""
    expected = shard_set.expected(split)
    for url in shard_set.urls(split):
        yield from iter_checked_shard(
            url, entry=expected[url], members=shard_set.members, location=shard_set.location, skip=skip
        )


def _raw(shard_set, split="train"):
    return {
        s["__key__"]: {k: v for k, v in s.items() if not k.startswith("__")}
        for url in shard_set.urls(split)
        for s in iter_tar_samples(url)
    }


def test_local_dir_and_manifest_path(shard_set):
    by_dir = open_shard_set(shard_set)
    by_manifest = open_shard_set(shard_set / "manifest.json")
    assert by_dir.kind == by_manifest.kind == "local"
    assert by_dir.manifest == by_manifest.manifest
    assert by_dir.manifest.to_json() == read_manifest(shard_set)
    assert (
        by_dir.urls("train")
        == by_manifest.urls("train")
        == [str(shard_set / s["name"]) for s in read_manifest(shard_set)["splits"]["train"]["shards"]]
    )
    assert len(_keys(by_dir)) == 25 and len(_keys(by_dir, "val")) == 5


def test_http_prefix_reads_the_same_samples(shard_set, http_server, http_log):
    www, base = http_server
    shutil.copytree(shard_set, www / "sets" / "a")
    local = open_shard_set(shard_set)
    for location in (f"{base}/sets/a", f"{base}/sets/a/", f"{base}/sets/a/manifest.json"):
        remote = open_shard_set(location)
        assert remote.kind == "http"
        assert remote.manifest == local.manifest
        assert remote.url("train-000000.tar") == f"{base}/sets/a/train-000000.tar"
        assert _raw(remote) == _raw(local)
        assert remote.read_bytes("stats/action.npy", 10**6) == (shard_set / "stats/action.npy").read_bytes()
    assert "/sets/a/train-000000.tar" in http_log


def test_pipe_template_reads_the_same_samples(shard_set):
    local = open_shard_set(shard_set)
    piped = open_shard_set(f"pipe:cat {shard_set}/{{name}}")
    assert piped.kind == "pipe"
    assert piped.url("train-000001.tar") == f"pipe:cat {shard_set}/train-000001.tar"
    assert piped.manifest == local.manifest
    assert _raw(piped) == _raw(local)


def test_a_pipe_template_that_quotes_its_name_keeps_every_name_one_word(shard_set, tmp_path):
    """A template may quote {name}; names are plain, so none can close the quote and run code."""
    quoted = open_shard_set(f"pipe:cat '{shard_set}/{{name}}'")
    assert _raw(quoted) == _raw(open_shard_set(shard_set))
    hostile = tmp_path / "hostile"
    shutil.copytree(shard_set, hostile)
    owned = tmp_path / "OWNED"
    manifest = read_manifest(hostile)
    manifest["splits"]["train"]["shards"][0]["name"] = f"x.tar'; touch {owned}; '"
    (hostile / "manifest.json").write_text(json.dumps(manifest))
    for location in (f"pipe:cat '{hostile}/{{name}}'", str(hostile)):
        with pytest.raises(
            ManifestError, match=r"shards\[0\]\.name: expected a path relative to the set's root"
        ):
            open_shard_set(location)
    assert not owned.exists()


def test_bad_locations_are_named(tmp_path, http_server):
    with pytest.raises(ManifestError, match=r"no manifest\.json here"):
        open_shard_set(tmp_path)
    with pytest.raises(ShardSetError, match=r"needs a \{name\} placeholder"):
        open_shard_set("pipe:cat /nowhere/manifest.json")
    _, base = http_server
    with pytest.raises(ManifestError, match=r"/missing/manifest.json: cannot read the manifest"):
        open_shard_set(f"{base}/missing")
    (tmp_path / "manifest.json").write_text('{"schema_version": 1}')
    with pytest.raises(ManifestError, match="missing key 'created_by'"):
        open_shard_set(tmp_path)


def test_members_and_expected(shard_set):
    s = open_shard_set(shard_set)
    assert s.members == [
        "head.jpg",
        "left_wrist.jpg",
        "right_wrist.jpg",
        "state.npy",
        "action.npy",
        "action_is_pad.npy",
        "json",
    ]
    expected = s.expected("val")
    assert list(expected) == [str(shard_set / "val-000000.tar")]
    assert expected[str(shard_set / "val-000000.tar")].samples == 5


def test_checked_samples_read_a_split_in_manifest_order_and_decode(shard_set):
    s = open_shard_set(shard_set)
    for split, count in (("train", 25), ("val", 5)):
        raws = list(s.checked_samples(split))
        assert [x["__key__"] for x in raws] == _keys(s, split) and len(raws) == count
        assert raws == list(_checked(s, split))
    sample = decode_sample(next(s.checked_samples("train")))
    episode, frame = sample["json"]["episode_index"], sample["json"]["frame_index"]
    np.testing.assert_array_equal(sample["state.npy"], state_of(episode, frame))
    expected = image_of(episode, frame, "head", WIDE_CAMERAS["head"]).astype(int)
    assert np.abs(sample["head.jpg"].astype(int) - expected).mean() < 3


# ------------------------------------------------------------------ corrupt shards while streaming
def _flip_image_byte(path):
    data = bytearray(path.read_bytes())
    at = data.index(b"\xff\xd8") + 300  # inside the first JPEG's entropy-coded data
    data[at] ^= 0x5A
    path.write_bytes(bytes(data))


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_corrupt_shard_error_names_it_and_suggests_verify(shard_set, damage):
    bad = shard_set / "train-000001.tar"
    {"truncate": _truncate, "flip": _flip_image_byte, "delete": lambda p: p.unlink()}[damage](bad)
    s = open_shard_set(shard_set)
    read = []
    with pytest.raises(ShardCorruptError) as caught:
        for sample in s.checked_samples("train"):
            read.append(sample["__url__"])
    assert str(bad) not in read  # verified before its first sample is read
    message = str(caught.value)
    assert str(bad) in message
    assert f"b1k-shards verify {shard_set}" in message
    assert "--skip-corrupt" in message
    assert caught.value.url == str(bad)


def test_shard_silently_shorter_than_manifest_is_caught(shard_set):
    """A tar cut at a member boundary reads as a valid, shorter tar: the manifest's count catches it
    (here size and sha256 are made to match, so only the count can)."""
    s = open_shard_set(shard_set)
    path = shard_set / "train-000000.tar"
    samples = [{k: v for k, v in x.items() if k != "__url__"} for x in iter_tar_samples(str(path))]
    info = write_tar(path, samples[:-1])
    entry = replace(s.expected("train")[str(path)], bytes=info.bytes, sha256=info.sha256)
    with pytest.raises(
        ShardCorruptError, match=r"train-000000.tar: 6 samples, manifest says 7 \(after 6 samples\)"
    ):
        list(iter_checked_shard(str(path), entry=entry))


def test_sample_missing_a_member_is_an_error(shard_set):
    path = shard_set / "train-000002.tar"
    samples = [{k: v for k, v in x.items() if k != "__url__"} for x in iter_tar_samples(str(path))]
    del samples[3]["action.npy"]
    info = write_tar(path, samples)
    s = open_shard_set(shard_set)
    entry = replace(s.expected("train")[str(path)], bytes=info.bytes, sha256=info.sha256)
    with pytest.raises(ShardCorruptError, match=r"train-000002.tar: sample \S+ lacks member action.npy"):
        list(iter_checked_shard(str(path), entry=entry, members=s.members, location=str(shard_set)))


def test_skip_corrupt_skips_counts_and_says_so(shard_set, tmp_path, caplog):
    _flip_image_byte(shard_set / "train-000001.tar")
    _truncate(shard_set / "train-000003.tar")
    s = open_shard_set(shard_set)
    log = CorruptShardLog(tmp_path / "skipped.jsonl")
    with caplog.at_level("WARNING", logger="shards"):
        keys = [x["__key__"] for x in _checked(s, skip=log)]
    assert log.count == 2
    assert set(log.shards()) == {str(shard_set / "train-000001.tar"), str(shard_set / "train-000003.tar")}
    assert "skipped the rest of 2 corrupt shards" in log.summary() and "fewer samples" in log.summary()
    assert any(
        "skipping corrupt shard" in r.getMessage() and "train-000003.tar" in r.getMessage()
        for r in caplog.records
    )
    good = {
        k
        for url in s.urls("train")[:1] + s.urls("train")[2:3]
        for k in (x["__key__"] for x in iter_tar_samples(url))
    }
    assert good <= set(keys) and len(keys) < 25


def _worker_stream(shard_set, skip=None):
    """An iterable of the train split's checked samples, its shards dealt out over DataLoader workers."""
    torch = pytest.importorskip("torch")

    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            info = torch.utils.data.get_worker_info()
            part, parts = (info.id, info.num_workers) if info else (0, 1)
            expected = shard_set.expected("train")
            for url in shard_set.urls("train")[part::parts]:
                yield from iter_checked_shard(
                    url, entry=expected[url], location=shard_set.location, skip=skip
                )

    return torch.utils.data.DataLoader(Stream(), batch_size=None, num_workers=2)


def test_corrupt_shard_in_dataloader_workers(shard_set, tmp_path):
    """The error crosses the worker boundary; a `CorruptShardLog` made before the workers start
    collects what each worker skipped."""
    s = open_shard_set(shard_set)
    good = sorted(
        k
        for url in s.urls("train")
        if "000002" not in url
        for k in (x["__key__"] for x in iter_tar_samples(url))
    )
    _truncate(shard_set / "train-000002.tar")
    with pytest.raises(Exception, match=r"corrupt shard .*train-000002\.tar") as caught:
        list(_worker_stream(s))
    assert "b1k-shards verify" in str(caught.value)

    log = CorruptShardLog(tmp_path / "skipped.jsonl")
    keys = [x["__key__"] for x in _worker_stream(s, skip=log)]
    assert log.count == 1 and list(log.shards()) == [str(shard_set / "train-000002.tar")]
    assert sorted(keys) == good  # verified before it is read: none of the truncated shard's samples


def test_http_reads_the_same_checked_samples_as_local(shard_set, http_server):
    """What b1k-train --shards http://... builds on: checked over http (each shard downloaded and
    verified first), a split reads as the same samples in the same order as from the directory."""
    www, base = http_server
    shutil.copytree(shard_set, www / "set")
    local, remote = open_shard_set(shard_set), open_shard_set(f"{base}/set")
    assert list(remote.checked_samples("train")) == [
        {**x, "__url__": x["__url__"].replace(str(shard_set), f"{base}/set")}
        for x in local.checked_samples("train")
    ]
    (www / "set" / "train-000003.tar").write_bytes(b"not a tar")
    with pytest.raises(
        ShardCorruptError, match=rf"{base}/set/train-000003\.tar.*b1k-shards verify {base}/set"
    ):
        list(remote.checked_samples("train"))


@pytest.mark.parametrize("zero_copy", [False, True])
def test_iter_checked_shard(shard_set, tmp_path, zero_copy):
    """What a trainer with its own stream reads each shard with (train/ reads shard by shard, zero-copy:
    members are views of a map of the file, equal to the bytes a stream reads)."""
    s = open_shard_set(shard_set)
    expected = s.expected("train")
    url = s.urls("train")[1]
    raws = list(
        iter_checked_shard(
            url, entry=expected[url], members=s.members, location=str(shard_set), zero_copy=zero_copy
        )
    )
    streamed = list(iter_tar_samples(url))
    assert all(isinstance(r["head.jpg"], memoryview if zero_copy else bytes) for r in raws)
    assert [{k: bytes(v) if isinstance(v, memoryview) else v for k, v in r.items()} for r in raws] == streamed

    _truncate(shard_set / "train-000001.tar", keep=0.7)
    with pytest.raises(
        ShardCorruptError, match=rf"corrupt shard {url}: size .* \(truncated\).*b1k-shards verify"
    ):
        next(iter_checked_shard(url, entry=expected[url], location=str(shard_set), zero_copy=zero_copy))
    log = CorruptShardLog(tmp_path / "log.jsonl")
    assert list(iter_checked_shard(url, entry=expected[url], skip=log, zero_copy=zero_copy)) == []
    assert log.count == 1 and "truncated" in log.shards()[url]
    # without the entry, the tar error itself is caught (after the samples before the cut)
    with pytest.raises(ShardCorruptError, match="truncated or not a tar file") as caught:
        list(iter_checked_shard(url, zero_copy=zero_copy))
    assert caught.value.samples_read >= 1


@pytest.mark.parametrize("tar_format", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_tars_of_other_writers_read_like_tarfile_reads_them(tmp_path, tar_format):
    """Shards need not come from our writer: long names (GNU and pax records), ustar name prefixes
    and directory entries read as Python's tarfile reads them."""
    long_dir = "d" * 120 if tar_format != tarfile.USTAR_FORMAT else "nested/dir"
    members = {
        f"{long_dir}/e00000001_f000000.state.npy": b"\x93NUMPY fake",
        f"{long_dir}/e00000001_f000000.json": b'{"a": 1}',
        f"{long_dir}/e00000001_f000001.json": b"x" * 1000,
    }
    path = tmp_path / "other.tar"
    with tarfile.open(path, "w", format=tar_format) as tar:
        info = tarfile.TarInfo(long_dir + "/sub")
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    ours = list(iter_tar_samples(str(path)))
    reference = list(wds.tarfile_to_samples()(iter([{"url": str(path)}])))
    assert [s["__key__"] for s in ours] == [f"{long_dir}/e00000001_f000000", f"{long_dir}/e00000001_f000001"]
    assert [{k: v for k, v in s.items() if k != "__local_path__"} for s in reference] == ours


def test_a_garbled_tar_header_is_an_error_naming_the_shard(tmp_path):
    path = tmp_path / "garbled.tar"
    write_tar(path, [{"__key__": "e00000000_f000000", "json": b"{}"}])
    data = bytearray(path.read_bytes())
    data[10] ^= 0x20  # a byte of the first member's name: the header checksum no longer matches
    path.write_bytes(bytes(data))
    with pytest.raises(ShardCorruptError, match=r"garbled.tar.*bad checksum"):
        list(iter_tar_samples(str(path)))


def test_a_shard_hashed_once_is_not_hashed_again_while_unchanged(shard_set, monkeypatch):
    """`VerifiedShards`: a worker's second pass over an unchanged shard skips the sha256 (the hashing
    function is not called again); a shard whose file changed, even in place with its size and mtime
    put back, is hashed again, and a shard that failed is never trusted."""
    import shards.guard as guard

    s = open_shard_set(shard_set)
    url = s.urls("train")[1]
    entry = s.expected("train")[url]
    verified = VerifiedShards()
    hashed = []
    monkeypatch.setattr(guard, "local_file_problem", lambda *a: hashed.append(a) or local_file_problem(*a))
    before = len(list(iter_checked_shard(url, entry=entry, verified=verified)))
    assert len(list(iter_checked_shard(url, entry=entry, verified=verified))) == before and len(hashed) == 1
    stat = (shard_set / "train-000001.tar").stat()
    _flip_image_byte(shard_set / "train-000001.tar")  # in place: same inode and size
    os.utime(url, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(ShardCorruptError, match="sha256 mismatch"):  # its ctime moved: hashed again
        list(iter_checked_shard(url, entry=entry, verified=verified))
    for zero_copy in (False, True):  # a fresh process hashes it, streamed or mapped
        with pytest.raises(ShardCorruptError, match="sha256 mismatch"):
            list(iter_checked_shard(url, entry=entry, verified=VerifiedShards(), zero_copy=zero_copy))

    os.utime(url, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the file changed: hashed again
    for _ in range(2):  # and, having failed, it stays untrusted
        with pytest.raises(ShardCorruptError, match="sha256 mismatch"):
            list(iter_checked_shard(url, entry=entry, verified=verified))
