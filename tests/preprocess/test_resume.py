"""Acceptance 2: `kill -9` during a run, then `--resume`, gives the result of an uninterrupted run."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from preprocess import episodes, final_stage, pipeline
from preprocess.pipeline import PreprocessConfig, PreprocessError, run
from tests.preprocess.helpers import preprocess, read_set

OPTIONS = {"val_episodes": "3", "horizon": 20, "shard_max_samples": 100, "seed": 5}
CLI_OPTIONS = ["--val-episodes", "3", "--horizon", "20", "--shard-max-samples", "100", "--seed", "5"]


@pytest.fixture(scope="module")
def dataset(synthetic_dataset):
    # 8 episodes of 60 frames, several episodes per file (v3.0)
    return synthetic_dataset(
        layout="v3.0",
        lengths=(60, 45, 70, 50),
        episodes=8,
        episodes_per_data_file=3,
        episodes_per_video_file=3,
    )


@pytest.fixture(scope="module")
def reference(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "set"
    preprocess(dataset.root, out, **OPTIONS)
    return out


def assert_same_set(a: Path, b: Path) -> None:
    manifest_a, splits_a = read_set(a)
    manifest_b, splits_b = read_set(b)
    for key in ("stats", "stats_values", "splits", "state", "action", "cameras", "tasks", "skipped_episodes"):
        assert manifest_a[key] == manifest_b[key], key
    for split in ("train", "val"):
        assert splits_a[split].keys() == splits_b[split].keys()
        for key, sample in splits_a[split].items():
            other = splits_b[split][key]
            assert sample.keys() == other.keys()
            for member, value in sample.items():
                if isinstance(value, np.ndarray):
                    np.testing.assert_array_equal(value, other[member], err_msg=f"{key}.{member}")
                elif not member.startswith("__"):
                    assert value == other[member], f"{key}.{member}"
    for name in ("observation.state", "action"):
        path = manifest_a["stats_values"][name]["name"]
        assert (a / path).read_bytes() == (b / path).read_bytes()


@pytest.mark.slow
def test_kill_9_then_resume_equals_an_uninterrupted_run(dataset, reference, tmp_path):
    out = tmp_path / "set"
    command = [
        sys.executable, "-m", "preprocess.cli", "--dataset-path", str(dataset.root), "--output-dir", str(out),
        "--workers", "1", "--no-progress", *CLI_OPTIONS,
    ]  # fmt: skip
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    work = out / ".work"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            done = list(work.glob("episode_*.tar")) if work.is_dir() else []
            if len(done) >= 3 or process.poll() is not None:
                break
            time.sleep(0.02)
        assert process.poll() is None, (
            "the run ended before it could be killed: " + process.stdout.read().decode()
        )
        os.killpg(process.pid, signal.SIGKILL)  # the whole process group, like a machine going down
    finally:
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    done = sorted(p.name for p in work.glob("episode_*.tar"))
    assert 3 <= len(done) < 8, done
    assert not (out / "manifest.json").exists()

    # the interrupted set is not mistaken for a finished one, nor silently overwritten
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "--resume" in result.stderr

    result = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"resume: {len(done)} episodes already done" in result.stderr
    assert not work.exists()
    assert_same_set(reference, out)
    # and the shards themselves are byte-identical (same sha256 in both manifests)
    assert read_set(reference, decode=False)[0]["splits"] == read_set(out, decode=False)[0]["splits"]


def test_interrupted_final_stage_is_redone(dataset, reference, tmp_path, monkeypatch):
    """Killed after some shards were written but before the manifest: the shards wait in the work dir's
    stage (the output holds no half set), and resume rewrites them."""
    out = tmp_path / "set"
    work = _crash_before_stats(dataset, out, monkeypatch)
    stage = work / final_stage.STAGE_DIR
    assert list(stage.glob("train-*.tar")) and not list(out.glob("*.tar"))
    assert not (out / "manifest.json").exists()
    (stage / "train-000009.tar.tmp").write_bytes(b"partial")  # a shard that was being written
    (stage / "train-000000.tar").write_bytes(b"garbage")  # never trust a final-stage file
    (out / "train-000000.tar").write_bytes(b"garbage")  # nor one in the output without a manifest
    preprocess(dataset.root, out, resume=True, **OPTIONS)
    assert not list(out.rglob("*.tmp"))
    assert_same_set(reference, out)


def _crash_before_stats(dataset, out: Path, monkeypatch) -> Path:
    """Run until every episode is done and the shards are written, then 'die': the work dir stays."""

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed while writing stats")

    with monkeypatch.context() as m:
        m.setattr(final_stage, "write_stats_values", crash)
        with pytest.raises(KeyboardInterrupt):
            preprocess(dataset.root, out, **OPTIONS)
    return out / ".work"


@pytest.mark.parametrize("workers", [1, 2])
def test_a_damaged_work_tar_is_named(dataset, tmp_path, monkeypatch, workers):
    """The final stage cuts samples out of the work tars by their recorded sizes: a work tar that does
    not match its record fails the run with a message naming the episode and the file, whether one
    thread writes the shards or several, and leaves no temporary shard behind."""
    out = tmp_path / "set"
    work = _crash_before_stats(dataset, out, monkeypatch)
    tar = work / "episode_00000002.tar"
    data = tar.read_bytes()
    tar.write_bytes(data[:512] + data[1024:])  # one block gone: every later sample is misaligned
    with pytest.raises(
        PreprocessError, match=r"work tar of episode 2 is unreadable: .*episode_00000002\.tar"
    ):
        preprocess(dataset.root, out, resume=True, **{**OPTIONS, "workers": workers})
    tar.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(PreprocessError, match=r"work tar of episode 2 is unreadable: .*ends inside sample"):
        preprocess(dataset.root, out, resume=True, **{**OPTIONS, "workers": workers})
    assert not list(out.glob("*.tmp")) and not (out / "manifest.json").exists()


def test_work_records_without_sample_sizes_are_redone(dataset, reference, tmp_path, monkeypatch):
    """An episode record of an older version (no per-sample sizes) is not trusted: the episode is
    processed again and the set equals an uninterrupted run."""
    import json

    out = tmp_path / "set"
    work = _crash_before_stats(dataset, out, monkeypatch)
    record_path = work / "episode_00000005.json"
    record = json.loads(record_path.read_text())
    del record["sample_bytes"], record["sample_payloads"]
    record_path.write_text(json.dumps(record))
    redone = []
    process_episode = episodes.process_episode

    def counting(index, *args, **kwargs):
        redone.append(index)
        return process_episode(index, *args, **kwargs)

    monkeypatch.setattr(episodes, "process_episode", counting)
    preprocess(dataset.root, out, resume=True, **OPTIONS)
    assert redone == [5]
    assert read_set(reference, decode=False)[0]["splits"] == read_set(out, decode=False)[0]["splits"]


def test_work_records_with_fields_this_version_dropped_are_kept(dataset, reference, tmp_path, monkeypatch):
    """A work dir left by the previous version (its records carry `decode_ahead_from`, since dropped)
    resumes without redoing its episodes, and the set equals an uninterrupted run."""
    import json

    out = tmp_path / "set"
    work = _crash_before_stats(dataset, out, monkeypatch)
    for record_path in work.glob("episode_*[0-9].json"):
        record = json.loads(record_path.read_text())
        record_path.write_text(json.dumps({**record, "decode_ahead_from": 16}))
    redone = []
    monkeypatch.setattr(episodes, "process_episode", lambda index, *a, **k: redone.append(index))
    preprocess(dataset.root, out, resume=True, **OPTIONS)
    assert redone == []
    assert read_set(reference, decode=False)[0]["splits"] == read_set(out, decode=False)[0]["splits"]


def test_resume_refuses_other_options_and_says_which(dataset, tmp_path):
    out = tmp_path / "set"
    config = PreprocessConfig(dataset_path=dataset.root, output_dir=out, workers=1, progress=False, **OPTIONS)
    pipeline.prepare_output(config)
    changed = PreprocessConfig(
        dataset_path=dataset.root,
        output_dir=out,
        workers=1,
        progress=False,
        resume=True,
        **{**OPTIONS, "horizon": 30},
    )
    with pytest.raises(PreprocessError, match=r"options differ .*horizon: was 20, now 30"):
        run(changed)


def test_resume_of_a_finished_set_is_a_no_op(dataset, reference, tmp_path):
    import shutil

    out = tmp_path / "set"
    shutil.copytree(reference, out)
    before = (out / "manifest.json").read_bytes()
    preprocess(dataset.root, out, resume=True, **OPTIONS)
    assert (out / "manifest.json").read_bytes() == before


def _pool_workers(parent: int) -> list[int]:
    """The episode workers of `parent`: the children of its fork server (forked, they keep its cmdline)."""
    processes = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
            cmdline = (status.parent / "cmdline").read_bytes()
        except OSError:
            continue
        processes[int(status.parent.name)] = (int(fields.get("PPid", "0").strip()), cmdline)
    servers = {
        pid for pid, (ppid, cmdline) in processes.items() if ppid == parent and b"forkserver" in cmdline
    }
    return [pid for pid, (ppid, _) in processes.items() if ppid in servers]


def test_a_worker_killed_mid_run_fails_the_run_cleanly(dataset, tmp_path):
    """A pool worker dying (OOM killer, kill -9) ends the run with a clear message, not a hung pool."""
    out = tmp_path / "set"
    command = [
        sys.executable, "-m", "preprocess.cli", "--dataset-path", str(dataset.root), "--output-dir", str(out),
        "--workers", "2", "--no-progress", *CLI_OPTIONS,
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        victims: list[int] = []
        while time.monotonic() < deadline and process.poll() is None:
            victims = _pool_workers(process.pid)
            if victims and (out / ".work").is_dir():
                break
            time.sleep(0.05)
        assert victims, "no pool worker seen"
        os.kill(victims[0], signal.SIGKILL)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    if process.returncode == 0:  # the worker had already finished all its work: nothing to prove
        pytest.skip("the run finished before the worker was killed")
    assert process.returncode == 1, stderr
    assert "a worker process died while processing episode" in stderr and "--resume" in stderr
    assert not (out / "manifest.json").exists()


def _running(pid: int) -> bool:
    """Alive and not a zombie (an exited worker may wait a moment to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _survivors(pids, within_s: float) -> list[int]:
    """The processes of `pids` still running after `within_s` seconds (killed then, not left behind)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline and any(_running(pid) for pid in pids):
        time.sleep(0.05)
    alive = [pid for pid in pids if _running(pid)]
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    return alive


def test_workers_stop_mid_episode_when_the_run_is_killed(synthetic_dataset, tmp_path):
    """Killing b1k-preprocess alone (not its process group) stops its workers mid-episode at once:
    they do not finish their episodes for a run that is gone. Each worker is paused (SIGSTOP) as soon
    as its episode's temporary tar appears, and resumed once the run is dead, so that it is caught
    mid-episode however fast this machine is."""
    long = synthetic_dataset(layout="v3.0", lengths=(1000,), episodes=2, depth=False)
    out = tmp_path / "set"
    command = [
        sys.executable, "-m", "preprocess.cli", "--dataset-path", str(long.root), "--output-dir", str(out),
        "--workers", "2", "--no-progress",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    paused: set[int] = set()  # workers, by the pid in their temporary tar's name
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None and len(paused) < 2:
            for part in out.glob(".work/episode_*.tar.*.part.tmp"):
                pid = int(part.name.split(".")[2])
                if pid not in paused:
                    os.kill(pid, signal.SIGSTOP)
                    paused.add(pid)
            time.sleep(0.002)
        assert len(paused) == 2, "both workers were not caught mid-episode"
        process.kill()
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        for pid in paused:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    assert not _survivors(paused, within_s=30), "workers outlived the run by 30 s"
    assert not list(out.glob(".work/episode_*.tar")), "a worker finished its episode after the run was killed"


def test_idle_workers_exit_when_the_run_is_killed():
    """A worker waiting for its next episode (an empty queue: a run's tail) exits too when the run is
    killed: the queue it waits on is not closed by the run's death."""
    code = "import time\nfrom preprocess.workers import EpisodePool\npool = EpisodePool(2)\ntime.sleep(120)\n"
    process = subprocess.Popen([sys.executable, "-c", code])
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(workers) < 2:
            workers = _pool_workers(process.pid)
            time.sleep(0.05)
        assert len(workers) == 2, "the pool's workers did not start"
    finally:
        process.kill()
        process.wait(timeout=30)
    assert not _survivors(workers, within_s=15), "idle workers outlived the run by 15 s"


@pytest.mark.parametrize("workers,decoder_threads", [(2, 1), (1, 2)])
def test_workers_and_decoder_threads_do_not_change_the_bytes(
    dataset, reference, tmp_path, workers, decoder_threads
):
    """Determinism across --workers / --decoder-threads: the same shard sha256s as the 1-worker run."""
    out = tmp_path / "set"
    preprocess(dataset.root, out, workers=workers, decoder_threads=decoder_threads, **OPTIONS)
    assert read_set(reference, decode=False)[0]["splits"] == read_set(out, decode=False)[0]["splits"]
    for name in ("observation.state", "action"):
        path = read_set(out, decode=False)[0]["stats_values"][name]["name"]
        assert (reference / path).read_bytes() == (out / path).read_bytes()
