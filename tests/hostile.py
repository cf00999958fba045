"""Crafted shard sets, as a malicious or buggy publisher would write them: the damage is in the bytes,
and the manifest's sizes and sha256 are rewritten to match, so "verify, then read" lets them through
and the readers themselves must end each one with an error.

- `pax_member(records)`: a pax extended header ('x') member holding `records` (e.g. a record of
  length 0, which never advances a naive record loop);
- `sized_header(name, size)`: a member header claiming `size` bytes (GNU base-256 for huge ones);
- `prepend_to_shard(root, entry, raw)`: put raw tar bytes before a shard's first member;
- `rehash(root, entry)`: make the manifest entry describe the shard's bytes as they now are.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from schemas.manifest import ShardEntry
from shards.tar import BLOCK, member_header, padding
from tests.shardsets import read_manifest, write_manifest


def _with_checksum(header: bytearray) -> bytes:
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header)


def pax_member(records: bytes, name: str = "e00000000_f000000.pax") -> bytes:
    """A pax extended header member whose data is `records`, padded to whole blocks."""
    header = bytearray(member_header(name, len(records)))
    header[156:157] = b"x"
    return _with_checksum(header) + records + padding(len(records))


def sized_header(name: str, size: int) -> bytes:
    """A regular member's header that claims `size` bytes (base-256 when it needs more than 11 digits)."""
    header = bytearray(member_header(name, 0))
    if size >= 8**11 or size < 0:
        header[124:136] = (b"\xff" if size < 0 else b"\x80") + abs(size).to_bytes(11, "big")
    else:
        header[124:136] = b"%011o\0" % size
    return _with_checksum(header)


def shard_entry(root: Path, split: str = "train", index: int = 0) -> ShardEntry:
    return ShardEntry.from_json(read_manifest(root)["splits"][split]["shards"][index], "shard")


def rehash(root: Path, name: str) -> None:
    """Rewrite the manifest entry of shard `name` with the shard's present size and sha256."""
    manifest = read_manifest(root)
    data = (Path(root) / name).read_bytes()
    for split in ("train", "val"):
        for entry in manifest["splits"][split]["shards"]:
            if entry["name"] == name:
                entry["bytes"], entry["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    write_manifest(root, manifest)


def prepend_to_shard(root: Path, name: str, raw: bytes) -> None:
    """`raw` (whole tar blocks) before the first member of shard `name`; the manifest then matches it."""
    assert len(raw) % BLOCK == 0
    path = Path(root) / name
    path.write_bytes(raw + path.read_bytes())
    rehash(root, name)


def edit_manifest(root: Path, edit) -> None:
    """Apply `edit(manifest)` to the set's manifest (written as JSON, whatever it holds)."""
    manifest = read_manifest(root)
    edit(manifest)
    (Path(root) / "manifest.json").write_text(json.dumps(manifest))


def run_cli(module: str, *args, timeout: float = 60, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m module args` in a subprocess (a hang is a `TimeoutExpired`, not a stuck test run)."""
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def one_error_line(stderr: str) -> str:
    """The `error:` line a command printed, checked to be its only output of the kind (no traceback)."""
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if "error:" in line]
    assert lines, stderr[-3000:]
    return lines[-1]


# The file-system changes a command makes, each a point at which `killed_at_step` can kill it.
MUTATIONS = (
    ("os", "rename"), ("os", "replace"), ("os", "link"), ("os", "unlink"), ("os", "rmdir"), ("os", "mkdir"),
    ("shards.swap", "_exchange"),
)  # fmt: skip


def killed_at_step(step: int, action, armed=None) -> bool:
    """Run `action()` in a forked child that SIGKILLs itself (no clean-up of any kind, like a kill -9)
    just before its `step`-th file-system change (`MUTATIONS`; counted from the first, or from the
    moment `armed` = (module, name) is first called). True if it was killed, False if it finished first."""
    import importlib
    import os
    import signal

    pid = os.fork()
    if pid == 0:  # the child: never returns into the test run
        try:
            count, live = [0], [armed is None]

            def counting(fn):
                def change(*args, **kwargs):
                    if live[0]:
                        count[0] += 1
                        if count[0] == step:
                            os.kill(os.getpid(), signal.SIGKILL)
                    return fn(*args, **kwargs)

                return change

            def arming(fn):
                def start(*args, **kwargs):
                    live[0] = True
                    return fn(*args, **kwargs)

                return start

            for module, name in MUTATIONS:
                target = importlib.import_module(module)
                setattr(target, name, counting(getattr(target, name)))
            if armed is not None:
                target = importlib.import_module(armed[0])
                setattr(target, armed[1], arming(getattr(target, armed[1])))
            action()
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return True
    assert os.WEXITSTATUS(status) == 0, "the command failed before it could be killed"
    return False
