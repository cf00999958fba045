"""The demo's closing summary: what was produced and where, how fast (frames/s, samples/s), the loss at
start and end, the reloaded policy's action next to the recorded one, and the commands for real data."""

from __future__ import annotations

import json
import os
import re
import statistics
import textwrap
from pathlib import Path

import click

from demo.runner import Runner, rel
from schemas.manifest import MANIFEST_NAME, parse_manifest

ACTION_GROUPS = (
    ("base", 0, 3),
    ("torso", 3, 7),
    ("left_arm", 7, 14),
    ("left_gripper", 14, 15),
    ("right_arm", 15, 22),
    ("right_gripper", 22, 23),
)


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def tasks_on_disk(dataset: Path) -> int:
    """Tasks of the episodes present: meta/info.json's `total_tasks` counts the whole release in the
    2026 layout (a partial download describes all 100)."""
    import pyarrow.parquet as pq

    files = sorted((dataset / "meta" / "episodes").rglob("*.parquet"))
    return len(
        {
            task
            for f in files
            for tasks in pq.read_table(f, columns=["tasks"]).column(0).to_pylist()
            for task in tasks
        }
    )


def rgb_codec(info: dict) -> str:
    """The RGB videos' codec as a reader would name it (AV1, HEVC)."""
    codecs = {
        f["info"].get("video.codec", "?")
        for f in info["features"].values()
        if f["dtype"] == "video" and not f.get("info", {}).get("is_depth_map")
    }
    return "/".join(sorted(c.upper() for c in codecs))


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError


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


def make_summary(
    out: Path,
    runner: Runner,
    pre_out: str,
    result: dict,
    *,
    batch_size: int,
    total_s: float,
    real_data_commands: str,
) -> str:
    """The summary the demo prints and writes to `summary.txt`; `real_data_commands` ends it."""
    o = rel(out)
    manifest = parse_manifest((out / "shards" / MANIFEST_NAME).read_text())
    splits = manifest.splits
    samples = {name: split.shard_samples for name, split in splits}
    n_shards = sum(1 for _ in splits.shards)
    shard_bytes = sum(shard.bytes for _, shard in splits.shards)
    frames = sum(samples.values())
    video_bytes = dir_bytes(out / "dataset" / "videos")
    info = json.loads((out / "dataset" / "meta" / "info.json").read_text())
    state_dim = info["features"]["observation.state"]["shape"][0]
    n_tasks = tasks_on_disk(out / "dataset")
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
        f"  dataset/          synthetic LeRobot v3.0 dataset: {len(splits.train.episodes) + len(splits.val.episodes)}"
        f" episodes, {n_tasks} task{'s' if n_tasks > 1 else ''}, {state_dim}-dim state,"
        f" {frames} frames,"
        f" {human_bytes(video_bytes)} of {rgb_codec(info)} video",
        "  tiny-smolvlm/     tiny random-weight SmolVLM backbone (config, processor, tokenizer)",
        f"  shards/           shard set (schema v{manifest.schema_version}): manifest.json + {n_shards} .tar shards,"
        f" {human_bytes(shard_bytes)}; train {samples.get('train', 0)} samples"
        f" (episodes {list(splits.train.episodes)}), val {samples.get('val', 0)} (episodes {list(splits.val.episodes)})",
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
        *("  " + line if line else "" for line in real_data_commands.rstrip().splitlines()),
        "",
        f"make clean removes {o}/.",
    ]
    return "\n".join(lines)
