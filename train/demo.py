"""`make demo`: the whole mission on a small synthetic BEHAVIOR dataset, through the real commands.

    python -m train.demo --out demo-output                  # the 2025 release's 256-dim state
    python -m train.demo --out demo-output --release 2026   # the 2026 release: 61-dim state, 2 tasks

Runs, each as a subprocess exactly as a user would type it (their output streams through):

1. `b1k-synthetic-dataset`  a small LeRobot v3.0 BEHAVIOR dataset (R1Pro, 3 RGB cameras as AV1 mp4);
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
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import click

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

# The synthetic dataset's BEHAVIOR task ids per release: the 2026 demo shows a multi-task set.
RELEASE_TASKS = {"2025": (6,), "2026": (6, 1)}
RELEASE_STATE_DIMS = {layout.release: layout.dim for layout in LAYOUTS.values()}
ACTION_GROUPS = (
    ("base", 0, 3),
    ("torso", 3, 7),
    ("left_arm", 7, 14),
    ("left_gripper", 14, 15),
    ("right_arm", 15, 22),
    ("right_gripper", 22, 23),
)


# ----------------------------------------------------------------------------- running the commands


class StepFailed(click.ClickException):
    exit_code = 1


class Runner:
    """Runs the demo's commands one after the other, streaming their output and timing them."""

    def __init__(self, out: Path, total_steps: int):
        self.out = out
        self.total = total_steps
        self.index = 0
        self.bin = Path(sys.executable).parent  # the venv's bin dir: where the b1k-* scripts live
        self.log = (out / "demo.log").open("ab")
        self.timings: dict[str, float] = {}
        self.env = dict(os.environ)
        self.env.update(
            {
                "HF_HUB_OFFLINE": "1",  # the demo is offline: the backbone is local, nothing is downloaded
                "HF_DATASETS_OFFLINE": "1",
                "SVT_LOG": "1",  # libsvtav1's banner
                "PYTHONUNBUFFERED": "1",
                # The demo trains with 4 DataLoader workers on purpose (the original had to use 0); torch warns
                # when that exceeds the core count. Harmless here: the workers only decode small JPEGs.
                "PYTHONWARNINGS": "ignore:This DataLoader will create:UserWarning",
            }
        )

    def _echo(self, text: str = "", **style) -> None:
        click.secho(text, **style)
        self.log.write((click.unstyle(text) + "\n").encode())
        self.log.flush()

    def header(self, title: str) -> None:
        self.index += 1
        self._echo()
        self._echo(f"== [{self.index}/{self.total}] {title}", bold=True, fg="cyan")

    def run(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> str:
        """Run one command (streaming its stdout+stderr as it comes), return its output as text."""
        env = env or {}
        shown = " ".join([*(f"{k}={shlex.quote(v)}" for k, v in env.items()), shlex.join(argv)])
        self._echo(f"$ {shown}", bold=True)
        exe = argv[0]
        if exe.startswith("b1k-"):
            exe = str(self.bin / exe)
        elif exe == "python":
            exe = sys.executable
        start = time.perf_counter()
        proc = subprocess.Popen(
            [exe, *argv[1:]],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**self.env, **env},
            bufsize=0,
        )
        captured = bytearray()
        out = sys.stdout.buffer
        assert proc.stdout is not None
        while chunk := os.read(proc.stdout.fileno(), 65536):
            captured += chunk
            out.write(chunk)
            out.flush()
            self.log.write(chunk)
        rc = proc.wait()
        elapsed = time.perf_counter() - start
        self.timings[name] = elapsed
        self.log.flush()
        if rc != 0:
            raise StepFailed(
                f"`{shown}` failed with exit status {rc} after {elapsed:.1f} s "
                f"(its output is above and in {self.out / 'demo.log'})"
            )
        self._echo(f"   ({elapsed:.1f} s)", dim=True)
        return captured.decode(errors="replace")


def prepare_out(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).exists():
            raise click.UsageError(
                f"{out} exists and was not made by the demo; choose another --out or remove it"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("made by `python -m train.demo`; `make clean` removes this folder\n")


def rel(path: Path) -> str:
    """A path as the user would type it: relative to the current directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError


# ----------------------------------------------------------------------------- the reload check


def select_action_on_val_frame(checkpoint: Path, shards: Path) -> dict:
    """Load `checkpoint` with lerobot's own loaders and run `select_action` on a held-out frame.

    Only lerobot loads the model and its processors (nothing from `train/`); the frame is read from
    the shard set's `val` split with `shards/` (the held-out episodes the policy never trained on).
    """
    import numpy as np
    import torch
    from lerobot.policies.factory import make_pre_post_processors
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    from schemas.r1pro import camera_for_key
    from shards.codec import decode_sample
    from shards.reader import iter_tar_samples, open_shard_set

    start = time.perf_counter()
    policy = SmolVLAPolicy.from_pretrained(str(checkpoint))
    policy.eval()
    preprocess, postprocess = make_pre_post_processors(policy.config, pretrained_path=str(checkpoint))
    load_s = time.perf_counter() - start

    shard_set = open_shard_set(str(shards))
    manifest = shard_set.manifest
    val_urls = shard_set.urls("val")
    if not val_urls:
        raise click.ClickException(f"{shards} has no val split")
    # The held-out frame nearest the middle of its episode (in the first val shard).
    raws = list(iter_tar_samples(val_urls[0]))
    metas = [json.loads(raw["json"]) for raw in raws]
    pick = min(range(len(raws)), key=lambda i: abs(metas[i]["progress"] - 0.5))
    sample = decode_sample(raws[pick])
    meta = sample["json"]

    # A raw observation as a robot would give it: RGB images float [0, 1] CHW, the filtered state, the task.
    # The image keys are the checkpoint's own: the dataset's (`observation.images.rgb.head`) or, in
    # checkpoints written before those, the short ones (`observation.images.head`).
    observation = {}
    for key in policy.config.image_features:
        camera = camera_for_key(key).name
        if camera not in manifest["cameras"]:
            raise click.ClickException(
                f"the checkpoint expects camera {camera!r} ({key}), the shard set has none"
            )
        member = manifest["cameras"][camera].get("member", f"{camera}.jpg")
        image = np.array(sample[member], dtype=np.uint8)  # HxWx3 RGB
        observation[key] = torch.from_numpy(image).permute(2, 0, 1).float() / 255.0
    observation["observation.state"] = torch.from_numpy(np.array(sample["state.npy"], dtype=np.float32))
    observation["task"] = meta["task"]
    missing = sorted(set(policy.config.input_features) - set(observation))
    if missing:
        raise click.ClickException(f"the checkpoint expects inputs the shard set does not have: {missing}")

    policy.reset()
    with torch.inference_mode():
        action = postprocess(policy.select_action(preprocess(observation)))
    action = action.detach().float().cpu().numpy().reshape(-1)
    recorded = np.asarray(sample["action.npy"], dtype=np.float64)[0]
    stats = manifest["stats"]["action"]
    lo, hi = np.asarray(stats["min"]), np.asarray(stats["max"])
    span = np.maximum(hi - lo, 1e-6)
    return {
        "checkpoint": str(checkpoint),
        "policy_class": type(policy).__name__,
        "parameters": int(sum(p.numel() for p in policy.parameters())),
        "input_features": {k: list(v.shape) for k, v in policy.config.input_features.items()},
        "load_seconds": round(load_s, 2),
        "frame": {
            "key": sample["__key__"],
            "episode_index": meta["episode_index"],
            "frame_index": meta["frame_index"],
            "task": meta["task"],
            "val_episodes": manifest["splits"]["val"]["episodes"],
        },
        "action": [float(x) for x in action],
        "action_dim": int(action.shape[0]),
        "recorded_action": [float(x) for x in recorded],
        "action_names": manifest["action"]["names"],
        # Data units: the unnormalised action falls in (or near) the range the training actions span.
        "within_train_range": bool(np.all((action >= lo - 0.5 * span) & (action <= hi + 0.5 * span))),
    }


# ----------------------------------------------------------------------------- summary


def format_action(label: str, values: list[float], width: int = 100) -> list[str]:
    """`label  base [..] torso [..] ...`, wrapped at `width`, groups as in BEHAVIOR's R1Pro action layout."""
    nbsp = "\u00a0"  # textwrap breaks only at ASCII whitespace: keep each group on one line
    groups = [
        f"{name}{nbsp}[" + nbsp.join(f"{v:.3g}" for v in values[a:b]) + "]" for name, a, b in ACTION_GROUPS
    ]
    lines = textwrap.wrap(
        " ".join(groups),
        width=width,
        initial_indent=f"  {label:<10}",
        subsequent_indent=" " * 12,
        break_long_words=False,
    )
    return [line.replace(nbsp, " ") for line in lines]


def train_numbers(run_dir: Path, batch_size: int) -> dict:
    records = [
        json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines() if line.strip()
    ]
    train = [r for r in records if r.get("kind", "train") == "train" and "loss" in r]
    val = [r for r in records if r.get("kind") == "val"]
    if not train:
        raise click.ClickException(f"no training records in {run_dir / 'train_log.jsonl'}")
    k = max(1, min(5, len(train) // 4))
    steady = train[1:] or train  # the first step pays for worker start-up
    return {
        "steps": train[-1]["step"],
        "loss_start": statistics.fmean(r["loss"] for r in train[:k]),
        "loss_end": statistics.fmean(r["loss"] for r in train[-k:]),
        "start_steps": f"{train[0]['step']}-{train[k - 1]['step']}" if k > 1 else f"{train[0]['step']}",
        "end_steps": f"{train[-k]['step']}-{train[-1]['step']}" if k > 1 else f"{train[-1]['step']}",
        "samples_per_s": statistics.median(r["samples_per_s"] for r in steady),
        "data_wait": statistics.fmean(r.get("data_wait_share", 0.0) for r in steady),
        "val": [(r["step"], r["val_loss"]) for r in val],
    }


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
    help="Synthetic episodes (task 6; with --release 2026 tasks 6 and 1 alternate; one is held out for val).",
)
@click.option(
    "--release",
    type=click.Choice(tuple(RELEASE_TASKS)),
    default="2025",
    show_default=True,
    help="BEHAVIOR release the synthetic dataset follows: 2025 (256-dim state) or 2026 (61-dim state).",
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


def run_demo(
    out: Path, *, episodes: int, release: str, steps: int, batch_size: int, num_workers: int
) -> None:
    started = time.perf_counter()
    prepare_out(out)
    runner = Runner(out, total_steps=7)
    o = rel(out)
    dataset, backbone, shard_dir = f"{o}/dataset", f"{o}/tiny-smolvlm", f"{o}/shards"
    sheet, run_dir = f"{o}/contact-sheet.png", f"{o}/train"
    lengths = ",".join(str(n) for n in (90, 120, 60, 150, 75, 105)[:episodes])
    tty = sys.stdout.isatty()

    click.secho(
        "b1k-smolvla demo: decode once, stream many times (synthetic data, tiny offline model, CPU)",
        bold=True,
    )
    click.echo(f"everything goes to {o}/ ; commands run from {rel(runner.bin)}/")

    tasks = RELEASE_TASKS[release]
    runner.header(
        f"a synthetic BEHAVIOR dataset (LeRobot v3.0, {release} release: {RELEASE_STATE_DIMS[release]}-dim R1Pro"
        f" state, 3 RGB cameras as AV1 mp4, task{'s' if len(tasks) > 1 else ''} {', '.join(map(str, tasks))})"
    )
    runner.run(
        "dataset",
        [
            "b1k-synthetic-dataset",
            "--output-dir",
            dataset,
            "--layout",
            "v3.0",
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

    runner.header("a tiny SmolVLM backbone with random weights (offline stand-in for SmolVLM2-500M)")
    runner.run("backbone", ["b1k-tiny-backbone", "--output-dir", backbone])

    runner.header("decode once: b1k-preprocess -> WebDataset shards + manifest.json")
    pre_out = runner.run(
        "preprocess",
        [
            "b1k-preprocess",
            "--dataset-path",
            dataset,
            "--output-dir",
            shard_dir,
            "--temporal-alpha",
            "1.0",
            "--val-fraction",
            "0.2",
            "--shard-max-samples",
            "64",
            *(["--progress"] if tty else []),
        ],
    )

    runner.header("trust: b1k-shards verify (sizes, sha256, every sample decodes with the right shapes)")
    runner.run("verify", ["b1k-shards", "verify", shard_dir])

    runner.header("look: b1k-shards inspect + contact sheet")
    runner.run("inspect", ["b1k-shards", "inspect", shard_dir, "--sheet", sheet, "--no-stats"])

    runner.header(f"stream many times: b1k-train, {steps} steps, {num_workers} DataLoader workers")
    runner.run(
        "train",
        [
            "b1k-train",
            "--shards",
            shard_dir,
            "--vlm-model",
            backbone,
            "--output-dir",
            run_dir,
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

    checkpoint = Path(run_dir) / "checkpoints" / "last" / "pretrained_model"
    runner.header("reload with lerobot's own loaders in a fresh process, select_action on a held-out frame")
    runner.run(
        "select_action",
        [
            "python",
            "-m",
            "train.demo",
            "--select-action",
            str(checkpoint),
            "--shards",
            shard_dir,
            "--result",
            f"{o}/select_action.json",
        ],
    )
    result = json.loads((out / "select_action.json").read_text())

    summary = make_summary(
        out, runner, pre_out, result, batch_size=batch_size, total_s=time.perf_counter() - started
    )
    (out / "summary.txt").write_text(click.unstyle(summary) + "\n")
    runner._echo()
    runner._echo(summary)
    runner.log.close()


def make_summary(
    out: Path, runner: Runner, pre_out: str, result: dict, *, batch_size: int, total_s: float
) -> str:
    o = rel(out)
    manifest = json.loads((out / "shards" / "manifest.json").read_text())
    splits = manifest["splits"]
    samples = {s: sum(sh["samples"] for sh in splits[s]["shards"]) for s in splits}
    n_shards = sum(len(splits[s]["shards"]) for s in splits)
    shard_bytes = sum(sh["bytes"] for s in splits for sh in splits[s]["shards"])
    frames = sum(samples.values())
    video_bytes = dir_bytes(out / "dataset" / "videos")
    info = json.loads((out / "dataset" / "meta" / "info.json").read_text())
    state_dim = info["features"]["observation.state"]["shape"][0]
    match = re.findall(r"([\d.]+) frames/s", pre_out)
    fps = float(match[-1]) if match else frames / runner.timings["preprocess"]
    fps_note = "" if match else " (incl. start-up)"
    tr = train_numbers(out / "train", batch_size)
    ckpts = sorted(p.name for p in (out / "train" / "checkpoints").iterdir() if p.name != "last")
    frame = result["frame"]
    val_txt = ", ".join(f"{v:.3f} (step {s})" for s, v in tr["val"]) or "not run"

    lines = [
        click.style("== demo summary", bold=True, fg="green"),
        f"total {total_s:.0f} s on {os.cpu_count()} cores  "
        + "  ".join(f"{k} {v:.0f}s" for k, v in runner.timings.items()),
        "",
        click.style("produced (all under " + o + "/):", bold=True),
        f"  dataset/          synthetic LeRobot v3.0 dataset: {len(splits['train']['episodes']) + len(splits['val']['episodes'])}"
        f" episodes, {info['total_tasks']} task{'s' if info['total_tasks'] > 1 else ''}, {state_dim}-dim state,"
        f" {frames} frames,"
        f" {human_bytes(video_bytes)} of AV1 video",
        "  tiny-smolvlm/     tiny random-weight SmolVLM backbone (config, processor, tokenizer)",
        f"  shards/           shard set (schema v{manifest['schema_version']}): manifest.json + {n_shards} .tar shards,"
        f" {human_bytes(shard_bytes)}; train {samples.get('train', 0)} samples"
        f" (episodes {splits['train']['episodes']}), val {samples.get('val', 0)} (episodes {splits['val']['episodes']})",
        "  contact-sheet.png  three cameras + state/action curves of a few samples",
        f"  train/            train_log.jsonl; checkpoints {', '.join(ckpts)} (+ last) in lerobot's format",
        "  select_action.json, summary.txt, demo.log",
        "",
        click.style("how fast:", bold=True),
        f"  preprocess        {fps:.1f} frames/s{fps_note} (each frame: 3 cameras decoded, resized, JPEG-encoded)",
        f"  train             {tr['samples_per_s']:.1f} samples/s (median per step, batch {batch_size}),"
        f" {tr['data_wait']:.0%} of step time waiting for data",
        "",
        click.style("learning:", bold=True),
        f"  loss              {tr['loss_start']:.3f} (steps {tr['start_steps']}) -> {tr['loss_end']:.3f}"
        f" (steps {tr['end_steps']}) over {tr['steps']} steps; val loss {val_txt}",
        "",
        click.style("reloaded with lerobot (fresh process):", bold=True),
        f"  SmolVLAPolicy.from_pretrained + make_pre_post_processors({o}/train/checkpoints/last/pretrained_model)",
        f"  {result['policy_class']}, {result['parameters']:,} parameters, loaded in {result['load_seconds']:.1f} s",
        f"  held-out frame {frame['key']} (val episode {frame['episode_index']}, task {frame['task']!r})",
        f"  select_action -> {result['action_dim']}-dim action in data units"
        f" ({'inside' if result['within_train_range'] else 'OUTSIDE'} the training actions' range)",
        f"  (a tiny random-weight model after {tr['steps']} steps: this checks the plumbing, not the skill)",
        *format_action("predicted", result["action"]),
        *format_action("recorded", result["recorded_action"]),
    ]
    lines += [
        "",
        click.style("the same on real data (README, 'Real data quick start'):", bold=True),
        *("  " + line if line else "" for line in REAL_DATA_COMMANDS.rstrip().splitlines()),
        "",
        f"make clean removes {o}/.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
