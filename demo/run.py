"""`make demo`: the whole mission on a small synthetic BEHAVIOR dataset, through the real commands.

    python -m demo --out demo-output                  # the 2025 release's 256-dim state
    python -m demo --out demo-output --release 2026   # the 2026 release as published: 3 tasks

Runs, each as a subprocess exactly as a user would type it (their output streams through):

1. `b1k-synthetic-dataset`  a small LeRobot v3.0 BEHAVIOR dataset (R1Pro, 3 RGB cameras as AV1 mp4;
                            with --release 2026 the release's published layout: a partial download
                            of 3 task chunks, HEVC under the 2026 camera keys, skill annotations);
2. `b1k-tiny-backbone`      a tiny random-weight SmolVLM backbone (offline stand-in for SmolVLM2);
3. `b1k-preprocess`         decode once into WebDataset shards (temporal alpha 1.0, a val split);
4. `b1k-shards verify`      every shard against the manifest;
5. `b1k-shards inspect`     a summary and a contact sheet (PNG);
6. `b1k-train`              a few dozen SmolVLA steps streaming the shards with 4 DataLoader workers;
7. a fresh Python process that loads the checkpoint with lerobot's own loaders only
   (`SmolVLAPolicy.from_pretrained` and `make_pre_post_processors` on the same directory) and runs
   `select_action` on a held-out (val) frame;

then prints a summary (what was produced and where, frames/s, samples/s, loss at start and end, the
action) and the commands to run the same on real data. Everything lands in `--out`, which
`make clean` removes.

This module is the command line and the sequence of steps; `demo.runner` runs each command,
`demo.reload` is step 7 and `demo.summary` writes the summary.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import click

from demo.reload import select_action_on_val_frame
from demo.runner import Runner, rel
from demo.summary import make_summary
from schemas.r1pro import LAYOUTS

MARKER = ".b1k-demo"  # --out is only ever wiped when it holds this file (i.e. a previous demo made it)

# The commands to run the same on real data: the README's quick start, verbatim
# (tests/test_readme.py checks that the two stay equal).
REAL_DATA_COMMANDS = """\
# 0. once: the virtual environment (Python >= 3.12, lerobot 0.6.1) and the commands on PATH
make setup && source .venv/bin/activate

# 1. decode once: task 6 ("hiding Easter eggs", ~200 episodes) -> a shard set
b1k-preprocess --dataset-path ~/workspace/training_data/2025-challenge-demos-task0006 \\
  --output-dir ~/shards/task-0006 --temporal-alpha 1.0 --val-fraction 0.05

# 2. trust, then look
b1k-shards verify ~/shards/task-0006
b1k-shards inspect ~/shards/task-0006 --sheet ~/shards/task-0006-sheet.png

# 3. stream many times: fine-tune lerobot/smolvla_base on the shards
b1k-train --shards ~/shards/task-0006 --output-dir ~/runs/smolvla-task-0006 \\
  --batch-size 16 --max-steps 100000 --chunk-size 30 --num-workers 8 --lr 1e-4
"""

# The synthetic dataset's BEHAVIOR task ids (evaluator ids) per release: the 2026 demo shows a
# multi-task partial download of the release as published (three task chunks of the 100).
RELEASE_TASKS = {"2025": (6,), "2026": (0, 6, 51)}
# ... its layout (b1k-synthetic-dataset --layout) and what it looks like
RELEASE_LAYOUTS = {"2025": "v3.0", "2026": "published"}
RELEASE_VIDEO = {"2025": "3 RGB cameras as AV1 mp4", "2026": "task chunks, 3 RGB cameras as HEVC mp4"}
RELEASE_STATE_DIMS = {layout.release: layout.dim for layout in LAYOUTS.values()}


def prepare_out(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).exists():
            raise click.UsageError(
                f"{out} exists and was not made by the demo; choose another --out or remove it"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("made by `python -m demo.run`; `make clean` removes this folder\n")


# ----------------------------------------------------------------------------- the demo


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-output"),
    show_default=True,
    help="Folder for everything the demo writes (replaced when it is a previous demo's).",
)
@click.option(
    "--episodes",
    type=click.IntRange(min=3),
    default=6,
    show_default=True,
    help="Synthetic episodes (task 6; with --release 2026 tasks 0, 6 and 51 in turn; one is held out for val).",
)
@click.option(
    "--release",
    type=click.Choice(tuple(RELEASE_TASKS)),
    default="2025",
    show_default=True,
    help="BEHAVIOR release the synthetic dataset follows: 2025 (256-dim state) or 2026 (61-dim state, the "
    "release's published layout: task chunks, HEVC, the 2026 camera keys).",
)
@click.option("--steps", type=click.IntRange(min=2), default=40, show_default=True, help="Training steps.")
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=8, show_default=True, help="Training batch size."
)
@click.option(
    "--num-workers",
    type=click.IntRange(min=0),
    default=4,
    show_default=True,
    help="b1k-train DataLoader workers.",
)
@click.option(
    "--select-action",
    "select_action",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    hidden=True,
    help="Internal: load this checkpoint and run select_action (with --shards and --result).",
)
@click.option(
    "--shards",
    "shards",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    hidden=True,
    help="Internal: the shard set for --select-action.",
)
@click.option(
    "--result",
    "result_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    hidden=True,
    help="Internal: where --select-action writes its JSON result.",
)
def main(
    out: Path,
    episodes: int,
    release: str,
    steps: int,
    batch_size: int,
    num_workers: int,
    select_action: Path | None,
    shards: Path | None,
    result_path: Path | None,
) -> None:
    """Run the whole mission on a small synthetic BEHAVIOR dataset with the real commands."""
    if select_action is not None:
        if shards is None or result_path is None:
            raise click.UsageError("--select-action needs --shards and --result")
        result = select_action_on_val_frame(select_action, shards)
        result_path.write_text(json.dumps(result, indent=2) + "\n")
        frame = result["frame"]
        click.echo(
            f"{result['policy_class']} and its processors loaded by lerobot from {select_action}; "
            f"select_action on held-out frame {frame['key']} -> {result['action_dim']}-dim action ({result_path})"
        )
        return
    run_demo(
        out, episodes=episodes, release=release, steps=steps, batch_size=batch_size, num_workers=num_workers
    )


@dataclass(frozen=True)
class DemoPaths:
    """Where each step's output goes, as the commands are shown (relative to where they run)."""

    out: str
    dataset: str
    backbone: str
    shards: str
    sheet: str
    train: str

    @classmethod
    def under(cls, out: Path) -> DemoPaths:
        o = rel(out)
        return cls(
            o, f"{o}/dataset", f"{o}/tiny-smolvlm", f"{o}/shards", f"{o}/contact-sheet.png", f"{o}/train"
        )


def run_demo(
    out: Path, *, episodes: int, release: str, steps: int, batch_size: int, num_workers: int
) -> None:
    started = time.perf_counter()
    prepare_out(out)
    runner = Runner(out, total_steps=7)
    paths = DemoPaths.under(out)
    click.secho(
        "b1k-smolvla demo: decode once, stream many times (synthetic data, tiny offline model, CPU)",
        bold=True,
    )
    click.echo(f"everything goes to {paths.out}/ ; commands run from {rel(runner.bin)}/")
    make_dataset(runner, paths, release, episodes)
    runner.header("a tiny SmolVLM backbone with random weights (offline stand-in for SmolVLM2-500M)")
    runner.run("backbone", ["b1k-tiny-backbone", "--output-dir", paths.backbone])
    pre_out = preprocess(runner, paths)
    runner.header("trust: b1k-shards verify (sizes, sha256, every sample decodes with the right shapes)")
    runner.run("verify", ["b1k-shards", "verify", paths.shards])
    runner.header("look: b1k-shards inspect + contact sheet")
    runner.run("inspect", ["b1k-shards", "inspect", paths.shards, "--sheet", paths.sheet, "--no-stats"])
    train(runner, paths, steps=steps, batch_size=batch_size, num_workers=num_workers)
    result = select_action(runner, paths, out)
    summary = make_summary(
        out,
        runner,
        pre_out,
        result,
        batch_size=batch_size,
        total_s=time.perf_counter() - started,
        real_data_commands=REAL_DATA_COMMANDS,
    )
    (out / "summary.txt").write_text(click.unstyle(summary) + "\n")
    runner._echo()
    runner._echo(summary)
    runner.log.close()


def make_dataset(runner: Runner, paths: DemoPaths, release: str, episodes: int) -> None:
    tasks = RELEASE_TASKS[release]
    lengths = ",".join(str(n) for n in (90, 120, 60, 150, 75, 105)[:episodes])
    runner.header(
        f"a synthetic BEHAVIOR dataset (LeRobot v3.0, {release} release: {RELEASE_STATE_DIMS[release]}-dim R1Pro"
        f" state, {RELEASE_VIDEO[release]}, task{'s' if len(tasks) > 1 else ''} {', '.join(map(str, tasks))})"
    )
    runner.run(
        "dataset",
        [
            "b1k-synthetic-dataset",
            "--output-dir",
            paths.dataset,
            "--layout",
            RELEASE_LAYOUTS[release],
            "--release",
            release,
            "--episodes",
            str(episodes),
            "--lengths",
            lengths,
            "--tasks",
            ",".join(map(str, tasks)),
            "--head-size",
            "128",
            "--wrist-size",
            "96",
            "--episodes-per-video-file",
            "3",
        ],
    )


def preprocess(runner: Runner, paths: DemoPaths) -> str:
    """b1k-preprocess; its output (the summary reads its frames/s)."""
    runner.header("decode once: b1k-preprocess -> WebDataset shards + manifest.json")
    return runner.run(
        "preprocess",
        [
            "b1k-preprocess",
            "--dataset-path",
            paths.dataset,
            "--output-dir",
            paths.shards,
            "--temporal-alpha",
            "1.0",
            "--val-fraction",
            "0.2",
            "--shard-max-samples",
            "64",
            *(["--progress"] if sys.stdout.isatty() else []),
        ],
    )


def train(runner: Runner, paths: DemoPaths, *, steps: int, batch_size: int, num_workers: int) -> None:
    runner.header(f"stream many times: b1k-train, {steps} steps, {num_workers} DataLoader workers")
    runner.run(
        "train",
        [
            "b1k-train",
            "--shards",
            paths.shards,
            "--vlm-model",
            paths.backbone,
            "--output-dir",
            paths.train,
            "--num-workers",
            str(num_workers),
            "--batch-size",
            str(batch_size),
            "--max-steps",
            str(steps),
            "--log-every",
            "1",
            "--val-every",
            str(max(1, steps // 2)),
            "--val-batches",
            "2",
            "--save-every",
            str(max(1, steps // 2)),
            "--seed",
            "0",
            # A tiny model trained from scratch: a larger peak lr than fine-tuning's 1e-4 shows learning
            # within a few dozen steps.
            "--lr",
            "3e-3",
        ],
        # CPU only: the main process's OpenMP threads spin against the DataLoader workers for the few cores;
        # with this tiny model one intra-op thread is several times faster (not needed on a GPU).
        env={"OMP_NUM_THREADS": "1"},
    )


def select_action(runner: Runner, paths: DemoPaths, out: Path) -> dict:
    """Step 7 in a fresh process (`demo.reload`); its result."""
    checkpoint = Path(paths.train) / "checkpoints" / "last" / "pretrained_model"
    runner.header("reload with lerobot's own loaders in a fresh process, select_action on a held-out frame")
    runner.run(
        "select_action",
        [
            "python",
            "-m",
            "demo.run",
            "--select-action",
            str(checkpoint),
            "--shards",
            paths.shards,
            "--result",
            f"{paths.out}/select_action.json",
        ],
    )
    return json.loads((out / "select_action.json").read_text())


if __name__ == "__main__":
    main()
