"""`make bench`: build a realistic dataset, then measure loader, preprocess, memory and trainer
overhead side by side in one run, and print/write a table with ratios and the issue's targets.

    python -m tests.benchmarks.run --out bench-output            # quick (~10-15 min on 2 cores)
    python -m tests.benchmarks.run --out bench-output --full     # longer episodes and timing windows

Outputs: <out>/results.md (the table, with the exact command), <out>/results.json (every number),
<out>/logs/ (each b1k-preprocess / b1k-train run), <out>/data/ (the built dataset, reused by the
next run when its spec is unchanged; shard sets are rebuilt every run since they are measured).
Absolute numbers drift on shared machines: compare the ratios, which are measured side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("SVT_LOG", "1")  # quiet libsvtav1 while lerobot's writer encodes
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from tests.benchmarks import report
from tests.benchmarks.measure import run_json


@dataclass(frozen=True)
class Profile:
    name: str
    episode_length: int  # L: the short episodes; the last episode is 4L (memory check only)
    short_episodes: int  # rounded up to a multiple of N so that N preprocess workers get equal work
    loader_seconds: float
    floor_seconds: float
    train_steps: int
    paced_steps: int  # batches of 32 the GPU-paced consumer takes (trainer section)
    loader_rounds: int  # loader configurations are measured round-robin this many times; best kept
    preprocess_rounds: int


QUICK = Profile(
    "quick",
    episode_length=150,
    short_episodes=4,
    loader_seconds=8,
    floor_seconds=4,
    train_steps=60,
    paced_steps=150,
    loader_rounds=2,
    preprocess_rounds=2,  # the scaling ratio is wall-clock: best of 2 on a shared machine
)
SMOKE = Profile(
    "smoke",
    episode_length=30,
    short_episodes=2,
    loader_seconds=3,
    floor_seconds=2,
    train_steps=20,
    paced_steps=20,
    loader_rounds=1,
    preprocess_rounds=1,
)
FULL = Profile(
    "full",
    episode_length=300,
    short_episodes=8,
    loader_seconds=15,
    floor_seconds=8,
    train_steps=200,
    paced_steps=300,
    loader_rounds=3,
    preprocess_rounds=3,  # the scaling ratio is wall-clock: best of 3 on a shared machine
)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# ----------------------------------------------------------------------------- environment


def has_ffmpeg_libs() -> bool:
    try:
        out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return False
    return "libavcodec.so" in out


def ensure_ffmpeg(install: bool) -> dict:
    """torchcodec (lerobot's default video backend) needs FFmpeg's shared libraries; Debian's `ffmpeg`
    package provides them. Install it when missing and possible (root + apt-get)."""
    info = {"libavcodec_before": has_ffmpeg_libs(), "install_attempted": False}
    if not info["libavcodec_before"] and install:
        if os.geteuid() == 0 and shutil.which("apt-get"):
            log("FFmpeg shared libraries missing: apt-get install -y ffmpeg (for torchcodec)")
            info["install_attempted"] = True
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            cmd = ["apt-get", "install", "-y", "-q", "ffmpeg"]
            done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            if done.returncode != 0:
                subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env, check=False)
                done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            info["install_rc"] = done.returncode
            if done.returncode != 0:
                info["install_error"] = done.stderr[-500:]
        else:
            info["install_skipped"] = (
                "not root or no apt-get: install FFmpeg (e.g. `apt-get install ffmpeg`) for torchcodec"
            )
    info["libavcodec_after"] = has_ffmpeg_libs()
    return info


def machine_info() -> dict:
    import numpy
    import PIL
    import torch

    info = {
        "cpus": os.cpu_count(),
        "affinity_cpus": len(os.sched_getaffinity(0)),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "pillow": PIL.__version__,
        "load_avg_start": list(os.getloadavg()),
    }
    try:
        import av
        import lerobot

        info["lerobot"] = lerobot.__version__
        info["av"] = av.__version__
    except Exception:
        pass
    try:
        import torchcodec

        info["torchcodec"] = torchcodec.__version__
    except Exception as exc:
        info["torchcodec"] = f"unavailable ({type(exc).__name__})"
    try:
        from PIL import features

        info["libjpeg_turbo"] = bool(features.check_feature("libjpeg_turbo"))
    except Exception:
        pass
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
        info["cpu_model"] = model
    except Exception:
        pass
    return info


# ----------------------------------------------------------------------------- sections


class Bench:
    def __init__(self, out: Path, profile: Profile, workers: int, args: argparse.Namespace):
        self.out = out
        self.profile = profile
        self.workers = workers
        self.args = args
        self.results: dict = {"errors": []}
        self.logs = out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.python = sys.executable
        # The loader and throughput runs use the K short episodes (K a multiple of N: preprocess
        # parallelises over episodes); the 4L episode (index K) is only for the memory check.
        self.short_episodes = -(-profile.short_episodes // workers) * workers
        self.episodes_arg = f"0:{self.short_episodes}"

    def section(self, name: str, fn) -> None:
        started = time.perf_counter()
        log(f"== {name}")
        try:
            fn()
        except Exception as exc:
            self.results["errors"].append({"section": name, "error": f"{type(exc).__name__}: {exc}"[:4000]})
            log(f"{name} failed: {type(exc).__name__}: {str(exc)[:2000]}")
            traceback.print_exc(limit=3)
        self.results.setdefault("section_seconds", {})[name] = round(time.perf_counter() - started, 1)
        self.save()

    def save(self) -> None:
        (self.out / "results.json").write_text(json.dumps(self.results, indent=2, default=str))

    # -- data
    def build(self) -> None:
        from tests.benchmarks.dataset import build_dataset

        p = self.profile
        lengths = [p.episode_length] * self.short_episodes + [4 * p.episode_length]
        built = build_dataset(
            self.out / "data" / f"lerobot-v30-{p.name}", lengths, seed=self.args.seed, log=log
        )
        self.dataset = built
        self.results["dataset"] = built.to_json()
        log(
            f"dataset: {built.frames} frames; AV1 B/frame {report.fmt_dict(built.av1_bytes_per_frame)}; "
            f"JPEG q{built.jpeg_quality} (native size) B/frame {report.fmt_dict(built.jpeg_bytes_per_frame)}"
        )

    # -- preprocess (also makes the shard sets the loader reads)
    def preprocess(self) -> None:
        from tests.benchmarks.preprocess_bench import measure_floor, run_preprocess

        root = self.dataset.root
        res = self.results.setdefault("preprocess", {})
        shards = self.out / "shards"
        common = ["--shard-max-samples", str(self.args.shard_samples), "--no-progress"]
        common += ["--episodes", self.episodes_arg]
        frames = self.short_episodes * self.profile.episode_length
        n = self.workers
        one_core = ["--decoder-threads", "1"]

        def job(key: str, workers: int, out: str, extra: list[str], what: str, size: str | None = None):
            return (
                key,
                what,
                lambda: run_preprocess(
                    root,
                    shards / out,
                    workers=workers,
                    image_size=size,
                    extra=[*common, *extra],
                    log_dir=self.logs,
                    name=f"preprocess-{out}",
                ),
            )

        # The scaling target compares one core per worker: --decoder-threads 1 at 1 and N workers
        # (with auto threads, one worker's decoders already use every core). The auto-thread runs
        # (the default) are kept for reference; the --workers N one makes the loader's shards.
        jobs = [
            (
                "floor_1thread",
                "floor, decoder 1 thread",
                lambda: measure_floor(root, None, "1", max_frames=frames),
            ),
            (
                "floor_auto",
                "floor, decoder threads auto",
                lambda: measure_floor(root, None, "auto", max_frames=frames),
            ),
            job("run_w1_t1", 1, "default-w1-t1", one_core, "b1k-preprocess --workers 1 --decoder-threads 1"),
        ]
        if n > 1:
            jobs.append(
                job(
                    "run_wn_t1",
                    n,
                    "default-wn-t1",
                    one_core,
                    f"b1k-preprocess --workers {n} --decoder-threads 1",
                )
            )
        jobs.append(job("run_w1", 1, "default-w1", [], "b1k-preprocess --workers 1"))
        if n > 1:
            jobs.append(job("run_wn", n, "default", [], f"b1k-preprocess --workers {n}"))
        jobs += [
            job("run_224", n, "size224", [], f"b1k-preprocess --image-size 224 --workers {n}", size="224"),
            (
                "floor_224_1thread",
                "floor at 224, 1 thread",
                lambda: measure_floor(root, "224", "1", max_frames=frames),
            ),
        ]
        self.rounds(res, jobs, self.profile.preprocess_rounds, "frames_per_s", "frames/s")
        for name in ("default-w1-t1", "default-wn-t1"):
            shutil.rmtree(shards / name, ignore_errors=True)
        if n > 1:
            shutil.rmtree(shards / "default-w1", ignore_errors=True)
        elif (shards / "default-w1").is_dir():
            shutil.rmtree(shards / "default", ignore_errors=True)
            (shards / "default-w1").rename(shards / "default")
        for attr, name in (("shards_default", "default"), ("shards_224", "size224")):
            if (shards / name / "manifest.json").is_file():
                setattr(self, attr, str(shards / name))

    def rounds(self, res: dict, jobs: list, rounds: int, metric: str, unit: str) -> None:
        """Run the jobs round-robin `rounds` times (so slow spells of a shared machine hit every
        configuration alike) and keep each one's best run (interference only ever slows things down);
        every round's value is kept under `rounds`. A failing job is recorded and the others go on."""
        for round_index in range(rounds):
            for key, what, fn in jobs:
                try:
                    result = fn()
                except Exception as exc:
                    error = f"{type(exc).__name__}: {str(exc)[-1500:]}"
                    self.results["errors"].append(
                        {"section": f"{key} (round {round_index + 1})", "error": error}
                    )
                    log(f"{what} failed: {str(exc)[-300:]}")
                    res.setdefault(key, {"error": error})
                    continue
                values = [*res.get(key, {}).get("rounds", []), result[metric]]
                if "error" in res.get(key, {}) or result[metric] >= max(values):
                    res[key] = result
                res[key]["rounds"] = values
                log(
                    f"{what}: {result[metric]:.1f} {unit}"
                    + (f" (round {round_index + 1})" if rounds > 1 else "")
                )
                self.save()

    def memory(self) -> None:
        from tests.benchmarks.preprocess_bench import run_preprocess

        p = self.profile
        res = self.results.setdefault("memory", {"L": p.episode_length, "4L": 4 * p.episode_length})
        from tests.benchmarks.preprocess_bench import import_baseline

        res["import_baseline"] = import_baseline(self.logs)
        short, long_ = 0, self.short_episodes  # episode indices: 0 has length L, the last one 4L
        # one decoder thread: the runs also give the marginal per-core cost vs the 1-thread floor
        common = [
            "--shard-max-samples",
            str(self.args.shard_samples),
            "--no-progress",
            "--decoder-threads",
            "1",
        ]
        for label, episode in (("L", short), ("4L", long_)):
            run = run_preprocess(
                self.dataset.root,
                self.out / "shards" / f"mem-{label}",
                workers=1,
                extra=[*common, "--episodes", str(episode)],
                log_dir=self.logs,
                name=f"memory-{label}",
            )
            res[f"run_{label}"] = run
            shutil.rmtree(self.out / "shards" / f"mem-{label}", ignore_errors=True)
            log(
                f"memory {label}: peak RSS {run['maxrss_kb'] / 1024:.0f} MiB (tree {run['peak_tree_rss_kb'] / 1024:.0f} MiB)"
            )

    def existing_shards(self) -> None:
        """With --only (no preprocess section this run), use the shard sets a previous run left."""
        for attr, name in (("shards_default", "default"), ("shards_224", "size224")):
            path = self.out / "shards" / name
            if not getattr(self, attr, None) and (path / "manifest.json").is_file():
                setattr(self, attr, str(path))

    # -- loader
    def loader(self) -> None:
        self.existing_shards()
        res = self.results.setdefault("loader", {})
        n, secs = self.workers, self.profile.loader_seconds
        mod = [self.python, "-m", "tests.benchmarks.loader"]
        backend = run_json([*mod, "backend", "--root", self.dataset.root])
        res["backend"] = backend
        log(
            f"video backend: lerobot default {backend['lerobot_default']}, torchcodec decodes: {backend['torchcodec_decodes']}"
        )
        backends = ["torchcodec", "pyav"] if backend["torchcodec_decodes"] else ["pyav"]
        timeout = secs * 10 + 300
        jobs = []

        def job(key: str, what: str, cmd: list[str]) -> None:
            jobs.append((key, what, lambda: run_json(cmd, timeout=timeout)))

        for name in backends:
            for workers in sorted({0, n}):
                cmd = [*mod, "lerobot", "--root", self.dataset.root, "--backend", name]
                cmd += ["--workers", str(workers), "--seconds", str(secs), "--episodes", self.episodes_arg]
                job(f"lerobot_{name}_w{workers}", f"LeRobotDataset {name} num_workers={workers}", cmd)
        for label, shards in (
            ("default", getattr(self, "shards_default", None)),
            ("224", getattr(self, "shards_224", None)),
        ):
            if not shards:
                continue
            # default size: 0, 1 and N workers (1 worker: the pipeline's cost without core contention)
            for workers in sorted(
                {n} | ({0, 1} if self.profile.name == "full" or label == "default" else set())
            ):
                cmd = [*mod, "shards", "--root", shards, "--workers", str(workers), "--seconds", str(secs)]
                job(f"shards_{label}_w{workers}", f"shard stream {label} num_workers={workers}", cmd)
            cmd = [*mod, "floor", "--root", shards, "--seconds", str(self.profile.floor_seconds)]
            job(f"floor_{label}", f"JPEG decode floor {label} (per worker)", cmd)
            # for reference: torchvision's decoder, which returns a new tensor per image
            job(f"floortv_{label}", f"JPEG decode floor {label}, torchvision", [*cmd, "--decoder", "tensor"])
        self.rounds(res, jobs, self.profile.loader_rounds, "samples_per_s", "samples/s")

    # -- trainer
    def serve(self) -> None:
        """b1k-serve's overhead per step (everything but the model) at 720/480 and 224 inputs, CPU."""
        from tests.benchmarks.serve_bench import run as run_serve

        self.results["serve"] = run_serve(self.out / "serve", steps=60)

    def trainer(self) -> None:
        from tests.benchmarks.trainer_bench import run_trainer

        self.existing_shards()
        shards = getattr(self, "shards_224", None) or getattr(self, "shards_default", None)
        if not shards:
            raise RuntimeError("no shard set to train on")
        res = self.results.setdefault("trainer", {})
        for label, path in (
            ("224", getattr(self, "shards_224", None)),
            ("default", getattr(self, "shards_default", None)),
        ):
            if path:
                res[label] = run_trainer(
                    path,
                    self.out / "train" / label,
                    steps=self.profile.train_steps,
                    workers=self.workers,
                    log_dir=self.logs,
                    name=f"train-{label}",
                )
                log(f"trainer ({label}): data-wait share {report.pct(res[label].get('data_wait_share'))}")
        # b1k-train's stream at a realistic GPU step (batch 32, its default 8 workers)
        paced = res.setdefault("paced", {})
        for label, path in (
            ("default", getattr(self, "shards_default", None)),
            ("224", getattr(self, "shards_224", None)),
        ):
            if path:
                cmd = [self.python, "-m", "tests.benchmarks.trainer_bench", "paced", "--shards", path]
                paced[label] = run_json([*cmd, "--steps", str(self.profile.paced_steps)], timeout=900)
                r = paced[label]
                log(
                    f"paced consumer ({label}, {r['step_s'] * 1000:.0f} ms/step, batch {r['batch_size']}, "
                    f"{r['num_workers']} workers): data-wait share {report.pct(r['data_wait_share'])}, "
                    f"{r['cores_per_gpu']:.2f} worker cores per GPU"
                )

    # -- SmolVLA at its real size (opt-in: --only model; ~3 min and ~9 GB RAM on 2 cores)
    def model(self) -> None:
        self.results["model"] = run_json(
            [self.python, "-m", "tests.benchmarks.model_bench", "--out", str(self.out / "model")],
            timeout=1800,
        )

    # -- profiles of where time goes (cProfile, single process)
    def profiles(self) -> None:
        self.existing_shards()
        res = self.results.setdefault("profiles", {})
        prof = self.out / "profiles"
        prof.mkdir(exist_ok=True)
        mod = [self.python, "-m", "tests.benchmarks.loader"]
        if getattr(self, "shards_default", None):
            res["shards_w0"] = run_json(
                [
                    *mod,
                    "profile-shards",
                    "--root",
                    self.shards_default,
                    "--seconds",
                    "8",
                    "--profile-out",
                    str(prof / "shards_w0.prof"),
                ]
            )
        res["floor_preprocess"] = run_json(
            [
                self.python,
                "-m",
                "tests.benchmarks.preprocess_bench",
                "profile-floor",
                "--root",
                self.dataset.root,
                "--max-frames",
                str(self.profile.episode_length),
                "--profile-out",
                str(prof / "preprocess_floor.prof"),
            ]
        )
        for name, r in res.items():
            (prof / f"{name}.txt").write_text(
                r.get("profile_tottime", "") + "\n" + r.get("profile_cumtime", "")
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", default="bench-output", help="output directory [bench-output]")
    parser.add_argument("--full", action="store_true", help="longer episodes and timing windows")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: only checks that the harness runs")
    parser.add_argument("--workers", type=int, default=None, help="N for num_workers / --workers [cores]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--shard-samples",
        type=int,
        default=100,
        help="--shard-max-samples for the bench's shard sets (several shards per worker) [100]",
    )
    parser.add_argument(
        "--only",
        default=None,
        help="comma list of sections: build,preprocess,memory,loader,trainer,serve,profile,model "
        "[all but profile and model]",
    )
    parser.add_argument(
        "--profile", action="store_true", help="also cProfile the shard stream and the preprocess floor"
    )
    parser.add_argument(
        "--no-install-ffmpeg",
        action="store_true",
        help="do not apt-get install ffmpeg when its shared libraries (torchcodec) are missing",
    )
    args = parser.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    profile = FULL if args.full else SMOKE if args.smoke else QUICK
    workers = args.workers or len(os.sched_getaffinity(0))
    command = "python -m tests.benchmarks.run " + shlex.join(sys.argv[1:] if argv is None else argv)
    bench = Bench(out, profile, workers, args)
    bench.results.update(
        command=command.strip(),
        started=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        profile=profile.__dict__,
        workers=workers,
    )
    wanted = set((args.only or "build,preprocess,memory,loader,trainer,serve").split(","))
    if args.profile:
        wanted.add("profile")
    if args.only:
        carry_over(bench, wanted)
    wanted.add("build")  # every section needs the dataset (cached when unchanged)
    started = time.perf_counter()
    bench.results["ffmpeg"] = ensure_ffmpeg(not args.no_install_ffmpeg)
    bench.results["machine"] = machine_info()
    log(
        f"{command.strip()}  ({profile.name}; N = {workers} workers; {bench.results['machine'].get('cpus')} CPUs)"
    )
    bench.section("build", bench.build)
    if "build" in [e["section"] for e in bench.results["errors"]]:
        return finish(bench, started)
    for name, fn in (
        ("preprocess", bench.preprocess),
        ("memory", bench.memory),
        ("loader", bench.loader),
        ("trainer", bench.trainer),
        ("serve", bench.serve),
        ("profile", bench.profiles),
        ("model", bench.model),
    ):
        if name in wanted:
            bench.section(name, fn)
    return finish(bench, started)


SECTION_KEYS = {
    "preprocess": "preprocess",
    "memory": "memory",
    "loader": "loader",
    "trainer": "trainer",
    "serve": "serve",
    "model": "model",
}


def carry_over(bench: Bench, wanted: set[str]) -> None:
    """With --only, keep the other sections' results from the previous run in --out (same profile),
    so the table stays whole; `carried_over` says which and from which run."""
    previous_path = bench.out / "results.json"
    if not previous_path.is_file():
        return
    previous = json.loads(previous_path.read_text())
    if previous.get("profile", {}).get("name") != bench.profile.name:
        return
    for section, key in SECTION_KEYS.items():
        if section not in wanted and key in previous:
            bench.results[key] = previous[key]
            bench.results.setdefault("carried_over", {})[section] = {
                "command": previous.get("command"),
                "started": previous.get("started"),
            }
            log(f"{section}: results kept from {previous.get('started')} ({previous.get('command')})")


def finish(bench: Bench, started: float) -> int:
    bench.results["machine"]["load_avg_end"] = list(os.getloadavg())
    bench.results["total_seconds"] = round(time.perf_counter() - started, 1)
    bench.results["targets"] = report.targets(bench.results)
    bench.save()
    text = report.markdown(bench.results)
    (bench.out / "results.md").write_text(text)
    print(text, flush=True)
    log(
        f"wrote {bench.out / 'results.md'} and {bench.out / 'results.json'} in {bench.results['total_seconds']:.0f}s"
    )
    return 1 if bench.results["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
