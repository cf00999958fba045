"""A shard is verified against its manifest before any of its samples is used: local ones hashed in
place, remote ones downloaded with a size bound into the cache and verified; network failures are
retried with backoff and reported as network errors, not as corrupt shards."""

from __future__ import annotations

import hashlib
import logging
from http.server import BaseHTTPRequestHandler

import pytest

from schemas.manifest import ShardEntry
from shards.errors import ShardCorruptError, ShardNetworkError
from shards.fetch import CACHE_ENV, RetryPolicy, fetched
from shards.guard import iter_checked_shard
from shards.reader import open_shard_set
from tests.shards.conftest import serving

FAST = RetryPolicy(attempts=3, first_delay=0.01)


class _Flaky(BaseHTTPRequestHandler):
    """Serves `body`; the first `cut` requests get half of it and a dropped connection."""

    body = b""
    cut = 0
    requests = 0

    def do_GET(self):
        cls = type(self)
        cls.requests += 1
        self.send_response(200)
        self.send_header("Content-Length", str(len(cls.body)))
        self.end_headers()
        if cls.requests <= cls.cut:
            self.wfile.write(cls.body[: len(cls.body) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)  # the transfer is cut short: curl exit 18
            return
        self.wfile.write(cls.body)

    def log_message(self, format, *args):
        pass


@pytest.fixture
def flaky_server(monkeypatch):
    handler = type("Handler", (_Flaky,), {})
    with serving(handler) as url:
        yield handler, f"{url}/shard.tar"


def _entry(data: bytes) -> ShardEntry:
    return ShardEntry("shard.tar", 1, len(data), hashlib.sha256(data).hexdigest())


def test_a_download_cut_short_is_retried_with_backoff_and_then_verified(
    flaky_server, tmp_path, monkeypatch, caplog
):
    handler, url = flaky_server
    handler.body, handler.cut = b"x" * 200_000, 2
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    with (
        caplog.at_level(logging.WARNING, logger="shards.fetch"),
        fetched(url, _entry(handler.body), FAST) as path,
    ):
        assert path.read_bytes() == handler.body and path.parent == tmp_path / "cache"
    assert handler.requests == 3
    assert "retry 1 of 2" in caplog.text and "retry 2 of 2" in caplog.text and "curl exit 18" in caplog.text
    assert not list((tmp_path / "cache").iterdir())  # the verified copy is gone once used


def test_a_network_failure_that_outlasts_the_retries_is_a_network_error(flaky_server, tmp_path, monkeypatch):
    handler, url = flaky_server
    handler.body, handler.cut = b"x" * 200_000, 99
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    with (
        pytest.raises(
            ShardNetworkError, match=r"network error reading .*shard\.tar: curl exit 18.*\(3 attempts\)"
        ),
        fetched(url, _entry(handler.body), FAST),
    ):
        pass
    assert handler.requests == 3 and not list(tmp_path.glob("b1k-shard-*"))


def test_a_server_sending_more_than_the_manifest_says_is_cut_off_at_that_byte(
    flaky_server, tmp_path, monkeypatch
):
    handler, url = flaky_server
    handler.body = b"y" * 3_000_000
    entry = _entry(handler.body[:1000])
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    with (
        pytest.raises(ShardCorruptError, match=r"larger than its manifest entry says \(1000 bytes\)"),
        fetched(url, entry, FAST),
    ):
        pass
    assert handler.requests == 1 and not list(
        tmp_path.glob("b1k-shard-*")
    )  # not retried: not a network error


def test_a_local_shard_with_a_flipped_byte_yields_no_sample(shard_set):
    """Verify, then read: the sha256 is checked before the first sample, not at the shard's end."""
    entry = open_shard_set(shard_set).manifest.splits.train.shards[0]
    path = shard_set / entry.name
    data = bytearray(path.read_bytes())
    data[-2000] ^= 0x01  # in the last sample's bytes: a streaming check would see it last
    path.write_bytes(bytes(data))
    yielded = []
    with pytest.raises(ShardCorruptError, match="sha256 mismatch") as caught:
        for sample in iter_checked_shard(str(path), entry=entry):
            yielded.append(sample)
    assert yielded == [] and caught.value.samples_read == 0


def test_a_remote_shard_is_read_from_its_verified_copy_under_its_own_name(
    shard_set, http_server, tmp_path, monkeypatch
):
    import shutil

    www, base = http_server
    shutil.copytree(shard_set, www / "set")
    entry = open_shard_set(shard_set).manifest.splits.train.shards[0]
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    url = f"{base}/set/{entry.name}"
    samples = list(iter_checked_shard(url, entry=entry))
    assert len(samples) == entry.samples and {s["__url__"] for s in samples} == {url}
    assert not list((tmp_path / "cache").iterdir())
