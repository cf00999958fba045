"""The sections of `make bench` (`Bench`: build, preprocess, memory, loader, trainer, serve, profile,
model): each runs its measurements, mostly in subprocesses, and records them in `Bench.results`."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import traceback
from pathlib import Path

from tests.benchmarks.harness import Profile, log
from tests.benchmarks.measure import run_json
from tests.benchmarks.report_numbers import fmt_dict, pct


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
            f"dataset: {built.frames} frames; AV1 B/frame {fmt_dict(built.av1_bytes_per_frame)}; "
            f"JPEG q{built.jpeg_quality} (native size) B/frame {fmt_dict(built.jpeg_bytes_per_frame)}"
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
        """b1k-serve on CPU: overhead per step at 720/480 and 224, start-to-healthy, N = 1..64 clients
        batched vs one at a time (tiny and real-size SmolVLA), an honest client beside a hostile one."""
        from tests.benchmarks.serve_bench import run as run_serve

        self.results["serve"] = run_serve(self.out / "serve", steps=60, full=self.profile.name == "full")

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
                log(f"trainer ({label}): data-wait share {pct(res[label].get('data_wait_share'))}")
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
                    f"{r['num_workers']} workers): data-wait share {pct(r['data_wait_share'])}, "
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
