"""Hostile input, round 2 (issue 26), for the set readers of `b1k-shards`: a crafted set whose manifest
hashes MATCH its shards ends in an error naming the file within seconds (never a hang, a traceback or
an allocation the claim sizes); the output lock does not follow what is planted in its place; a shard
rewritten after it was hashed is hashed again; text from a set is printed escaped."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler
from typing import ClassVar

import pytest

from schemas.manifest import MAX_MANIFEST_BYTES
from shards.guard import VerifiedShards, iter_checked_shard
from shards.lock import LOCK_NAME, FolderLock, FolderLockedError
from shards.tar import MAX_MEMBER_BYTES
from tests.hostile import (
    edit_manifest,
    one_error_line,
    pax_member,
    prepend_to_shard,
    run_cli,
    shard_entry,
    sized_header,
)
from tests.shards.conftest import serving
from tests.shardsets import read_manifest

# Records of a pax header a naive loop never gets past (length 0, negative), or that run past its data.
BAD_PAX = {
    "length 0": b"0 path=x\n",
    "negative length": b"-3 path=x\n",
    "past the data": b"99 path=x\n",
}


@pytest.mark.parametrize("records", BAD_PAX.values(), ids=BAD_PAX.keys())
def test_a_bad_pax_record_makes_verify_fail_in_seconds_naming_the_shard(shard_set, records):
    name = shard_entry(shard_set).name
    prepend_to_shard(shard_set, name, pax_member(records))
    started = time.monotonic()
    done = run_cli("shards.cli", "verify", shard_set, "--workers", 1, timeout=60)
    assert time.monotonic() - started < 30
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert f"BAD  {name}" in done.stdout and "pax record" in done.stdout, done.stdout


def test_merge_refuses_a_shard_with_a_bad_pax_record_and_writes_no_set(shard_set, tmp_path):
    name = shard_entry(shard_set).name
    prepend_to_shard(shard_set, name, pax_member(BAD_PAX["length 0"]))
    out = tmp_path / "merged"
    done = run_cli("shards.cli", "merge", out, shard_set, timeout=60)
    line = one_error_line(done.stderr)
    assert done.returncode == 1 and name in line and "pax record" in line, line
    assert not (out / "manifest.json").exists()


def test_a_member_claiming_2_to_the_62_bytes_is_a_bad_shard_not_a_traceback(shard_set):
    name = shard_entry(shard_set).name
    prepend_to_shard(shard_set, name, sized_header("e00000000_f000000.bin", 2**62))
    done = run_cli("shards.cli", "verify", shard_set, "--workers", 1)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert f"claims a member of {2**62} bytes" in done.stdout and str(MAX_MEMBER_BYTES) in done.stdout


def test_a_member_with_a_negative_size_is_an_error_in_the_mapped_reader_too(shard_set):
    """The one-pass header walk of a mapped shard would never advance past a negative size."""
    name = shard_entry(shard_set).name
    prepend_to_shard(shard_set, name, sized_header("e00000000_f000000.bin", -BLOCK_SIZE))
    entry = shard_entry(shard_set)
    with pytest.raises(Exception, match="claims a member of -512 bytes"):
        list(iter_checked_shard(str(shard_set / name), entry=entry, zero_copy=True))


BLOCK_SIZE = 512


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m["splits"]["train"]["shards"][0].update(samples=-3), r"samples: expected >= 0, got -3"),
        (lambda m: m["splits"]["train"]["shards"][0].update(bytes=-1), r"bytes: expected 0\.\.\d+, got -1"),
        (lambda m: m["splits"]["train"]["shards"][0].update(samples=10**9), "is not a tar"),
        (lambda m: m["cameras"]["head"].update(height=60000), r"height: expected 1\.\.4096 pixels"),
        (lambda m: m["tasks"].update({"pick": "a task"}), "expected an integer key, got 'pick'"),
        (
            lambda m: m["splits"]["train"]["episodes"].append("x"),
            r"episodes\[\d+\]: expected an episode index",
        ),
    ],
    ids=[
        "negative samples",
        "negative bytes",
        "more samples than blocks",
        "60000 px camera",
        "task key",
        "episode",
    ],
)
def test_impossible_manifest_claims_are_refused_when_it_is_read(shard_set, edit, message):
    edit_manifest(shard_set, edit)
    done = run_cli("shards.cli", "verify", shard_set)
    line = one_error_line(done.stderr)
    assert done.returncode == 1 and "manifest.json" in line
    assert __import__("re").search(message, line), line


def test_a_manifest_nested_200k_deep_is_one_error_line(shard_set):
    (shard_set / "manifest.json").write_text("[" * 200_000 + "]" * 200_000)
    done = run_cli("shards.cli", "verify", shard_set)
    line = one_error_line(done.stderr)
    assert done.returncode == 1 and "nested more than 32 levels" in line, line


# ----------------------------------------------------------------------------- the lock
def test_a_lock_planted_as_a_symlink_leaves_its_target_unchanged(tmp_path):
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_NAME).symlink_to(target)
    with pytest.raises(FolderLockedError, match="is a symbolic link"), FolderLock(out, "test"):
        pass
    assert target.read_text() == "keep me"


def test_a_fifo_in_place_of_the_lock_is_refused_naming_it(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / LOCK_NAME)
    with pytest.raises(FolderLockedError, match=f"lock file {LOCK_NAME} is a FIFO"), FolderLock(out, "test"):
        pass


def test_a_merge_into_a_folder_with_a_symlinked_lock_leaves_the_target_unchanged(shard_set, tmp_path):
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    out = tmp_path / "merged"
    out.mkdir()
    (out / LOCK_NAME).symlink_to(target)
    done = run_cli("shards.cli", "merge", out, shard_set)
    assert done.returncode == 1 and "symbolic link" in one_error_line(done.stderr)
    assert target.read_text() == "keep me"


# ----------------------------------------------------------------------------- rewritten after hashing
def test_a_shard_rewritten_in_place_with_its_mtime_restored_is_hashed_again(shard_set):
    """A worker's second epoch skips hashing an unchanged shard; a rewrite that restores size, inode
    and mtime is still a change (its ctime moved), so the second pass hashes it and refuses it."""
    entry = shard_entry(shard_set)
    path = shard_set / entry.name
    verified = VerifiedShards()
    assert len(list(iter_checked_shard(str(path), entry=entry, verified=verified))) == entry.samples
    before = os.stat(path)
    data = bytearray(path.read_bytes())
    data[-3000] ^= 0xFF
    time.sleep(0.02)  # a later ctime, on filesystems with coarse timestamps too
    with open(path, "r+b") as f:  # in place: same inode, same size
        f.write(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
    assert hashlib.sha256(data).hexdigest() != entry.sha256
    with pytest.raises(Exception, match="sha256 mismatch"):
        list(iter_checked_shard(str(path), entry=entry, verified=verified))


# ----------------------------------------------------------------------------- printouts
OSC52 = "\x1b]52;c;ZWNobyBwd25lZA==\x07"


def test_inspect_escapes_terminal_control_characters_from_task_names(shard_set):
    edit_manifest(shard_set, lambda m: m["tasks"].update({"0": f"pick up {OSC52}the egg\u202e"}))
    done = run_cli("shards.cli", "inspect", shard_set)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "\x1b" not in done.stdout and "\x07" not in done.stdout and "\u202e" not in done.stdout
    assert "pick up \\x1b]52;c;ZWNobyBwd25lZA==\\x07the egg\\u202e" in done.stdout


def test_verify_escapes_control_characters_from_sample_data_in_its_lines(shard_set):
    manifest = read_manifest(shard_set)
    edit_manifest(shard_set, lambda m: m["splits"]["train"]["shards"][0].update(name="a\x1bb.tar"))
    done = run_cli("shards.cli", "verify", shard_set)
    assert "\x1b" not in done.stdout + done.stderr and "a\\x1bb.tar" in done.stderr
    assert manifest  # the name is refused as it is read, and the error line says it escaped


# ----------------------------------------------------------------------------- endless and dripping servers
FAST_LIMITS = {"B1K_MIN_RATE": "2048", "B1K_RATE_WINDOW_S": "1", "B1K_CONNECT_TIMEOUT_S": "5"}


class _Hostile(BaseHTTPRequestHandler):
    """Serves `files` (path -> bytes) as they are, except `endless` paths (a 200 that never ends, 1 MB
    at a time) and `drip` paths (a byte every `drip_s` seconds)."""

    files: ClassVar[dict] = {}
    endless: ClassVar[set] = set()
    drip: ClassVar[set] = set()
    drip_s = 0.3

    def do_GET(self):
        cls = type(self)
        if self.path not in cls.files and self.path not in cls.endless | cls.drip:
            self.send_error(404)
            return
        self.send_response(200)
        self.end_headers()
        with contextlib.suppress(OSError):  # the reader hangs up: what it should do
            if self.path in cls.endless:
                while True:
                    self.wfile.write(b"[" * (1 << 20))
            elif self.path in cls.drip:
                for byte in cls.files.get(self.path, b"{" * 10**6):
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(cls.drip_s)
            else:
                self.wfile.write(cls.files[self.path])

    def log_message(self, format, *args):
        pass


@pytest.fixture
def hostile_server(shard_set, monkeypatch):
    """(handler class, base URL) serving the default set's files at /set/..., each overridable."""
    for name, value in FAST_LIMITS.items():
        monkeypatch.setenv(name, value)
    files = {
        f"/set/{p.relative_to(shard_set).as_posix()}": p.read_bytes()
        for p in shard_set.rglob("*")
        if p.is_file()
    }
    handler = type("Handler", (_Hostile,), {"files": files, "endless": set(), "drip": set()})
    with serving(handler) as url:
        yield handler, f"{url}/set"


def _peak_rss_mb(done_stderr: str) -> float:
    return float(done_stderr.rsplit("PEAK_RSS_MB=", 1)[1].split()[0])


# b1k-shards, then its peak resident memory (VmHWM: of this program alone, unlike ru_maxrss, which an
# exec'd child inherits from the process that forked it)
MEASURED = (
    "import re, sys\n"
    "from shards.cli import main\n"
    "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    code = e.code\n"
    "peak = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)\n"
    "print('PEAK_RSS_MB=%.1f' % (int(peak) / 1024), file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def _verify_measured(url: str, timeout: float = 60) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    env = {**os.environ, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    done = subprocess.run(
        [sys.executable, "-c", MEASURED, "verify", url],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    return done, time.monotonic() - started


def test_an_endless_remote_manifest_is_refused_at_its_size_limit_with_bounded_memory(hostile_server):
    handler, url = hostile_server
    handler.endless.add("/set/manifest.json")
    done, seconds = _verify_measured(url)
    line = one_error_line(done.stderr)
    assert done.returncode == 1 and f"more than {MAX_MANIFEST_BYTES} bytes" in line, line
    assert _peak_rss_mb(done.stderr) < 300 + 2 * MAX_MANIFEST_BYTES / 2**20  # the limit, not the stream
    assert seconds < 60


def test_a_dripping_remote_manifest_ends_in_a_network_error_in_bounded_time(hostile_server):
    handler, url = hostile_server
    handler.drip.add("/set/manifest.json")
    done, seconds = _verify_measured(url)
    line = one_error_line(done.stderr)
    assert done.returncode == 1 and "too slow" in line and "4 attempts" in line, line
    assert seconds < 4 * 1.5 + 7 + 15  # 4 windows of 1 s (+ the poll's rounding), 7 s of backoff, start-up


def test_a_dripping_shard_and_an_endless_sidecar_are_errors_not_waits(hostile_server):
    handler, url = hostile_server
    handler.drip.add("/set/train-000000.tar")
    handler.endless.add("/set/stats/action.npy")
    done, seconds = _verify_measured(url, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "BAD  train-000000.tar" in done.stdout and "too slow" in done.stdout, done.stdout
    assert "stats sidecar stats/action.npy: cannot read" in done.stdout, done.stdout
    assert seconds < 60
