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
import shlex
import sys
import time
from pathlib import Path

os.environ.setdefault("SVT_LOG", "1")  # quiet libsvtav1 while lerobot's writer encodes
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

# The parts: harness (profiles, log), machine (FFmpeg, machine info), sections (what each section
# measures), targets and report (results.md); this module is the command line, which sections run, and
# the end.
from tests.benchmarks import report
from tests.benchmarks.harness import FULL, QUICK, SMOKE, log
from tests.benchmarks.machine import ensure_ffmpeg, machine_info
from tests.benchmarks.sections import Bench
from tests.benchmarks.targets import targets


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
    bench.results["targets"] = targets(bench.results)
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
