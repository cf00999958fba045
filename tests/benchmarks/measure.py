"""Run a command and measure it: wall time, CPU time of it and all its descendants, peak RSS.

Run in a fresh helper process (`python -m tests.benchmarks.measure -- CMD ...`) so that
`getrusage(RUSAGE_CHILDREN)` covers exactly this command:
  - `maxrss_kb`: ru_maxrss of RUSAGE_CHILDREN = the peak RSS of the largest single process of the
    tree (the main process or one worker);
  - `peak_tree_rss_kb`: the peak of the sum of RSS over the whole process tree, polled from /proc
    every 20 ms (catches workers running at the same time);
  - `cpu_s`: user + system CPU seconds of the whole tree. The helper is the tree's subreaper
    (Linux), so descendants orphaned by the command's exit are reaped here and counted too: the fork
    server of b1k-preprocess's workers outlives it by a moment, and its reaped workers' CPU time
    with it, which init would otherwise collect.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def _children_map() -> dict[int, list[int]]:
    """Every process's children, from a scan of /proc (~1 ms here: the fallback, see `_children`)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces/parens, split after the last ')'
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def _children(pid: int) -> list[int] | None:
    """The children of `pid` from /proc/PID/task/*/children (None where the kernel lacks it). Reads
    only the measured tree: scanning all of /proc every poll cost ~5% of a core, taken from the
    measured command when it uses every core (it made 2-worker runs look slower than they are)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    children: list[int] = []
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                children.extend(int(child) for child in f.read().split())
        except FileNotFoundError:
            if not os.path.exists(f"/proc/{pid}/task/{tid}"):
                continue  # the thread ended meanwhile
            return None
        except OSError:
            continue
    return children


def tree_rss_kb(pid: int) -> int:
    scanned: dict[int, list[int]] | None = None
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/statm", "rb") as f:
                total += int(f.read().split()[1]) * _PAGE_KB
        except OSError:
            pass
        children = _children(p)
        if children is None:
            scanned = scanned if scanned is not None else _children_map()
            children = scanned.get(p, [])
        todo.extend(children)
    return total


def _adopt_orphans() -> None:
    """Become the reaper of the command's orphaned descendants (prctl PR_SET_CHILD_SUBREAPER)."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux: orphans' CPU time is not counted
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)


def _reap_orphans(timeout_s: float = 10.0) -> None:
    """Wait for the adopted descendants still running (a fork server exits once its clients have)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.01)


def run_and_measure(cmd: list[str], log_path: str | None = None, poll_s: float = 0.02) -> dict:
    """Run cmd (in this process's child) and measure it; only meaningful once per process."""
    out = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
    _adopt_orphans()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    peak = 0
    done = threading.Event()

    def poll() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss_kb(proc.pid))
            done.wait(poll_s)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    rc = proc.wait()
    wall = time.perf_counter() - start
    done.set()
    thread.join()
    _reap_orphans()
    if log_path:
        out.close()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "cmd": cmd,
        "rc": rc,
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "cpu_user_s": usage.ru_utime,
        "cpu_sys_s": usage.ru_stime,
        "maxrss_kb": usage.ru_maxrss,
        "peak_tree_rss_kb": peak,
        "log": log_path,
    }


def measure_subprocess(cmd: list[str], log_path: str | Path | None = None, env: dict | None = None) -> dict:
    """Measure `cmd` in a fresh helper process (clean RUSAGE_CHILDREN); returns the measurement."""
    helper = [sys.executable, "-m", "tests.benchmarks.measure"]
    if log_path:
        helper += ["--log", str(log_path)]
    result = subprocess.run(
        [*helper, "--", *cmd],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        check=False,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        raise RuntimeError(f"measure helper failed for {cmd}: {result.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def run_json(cmd: list[str], timeout: float | None = None, env: dict | None = None) -> dict:
    """Run a bench helper (`python -m tests.benchmarks.X ...`) that prints one `RESULT {json}` line."""
    result = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(cmd)} failed (rc {result.returncode}): {result.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    log = None
    if argv[:1] == ["--log"]:
        log, argv = argv[1], argv[2:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    result = run_and_measure(argv, log)
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
