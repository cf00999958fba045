"""`b1k-eval`: open-loop action error of checkpoints on a shard set's held-out episodes (see
`deploy.eval.evaluate`). Errors, `--debug`, `-v`, logging and the `--x_y` spellings: `shards.command`."""

from __future__ import annotations

import time
from pathlib import Path

import click

from deploy.eval.evaluate import DEFAULT_BATCH_SIZE, DEFAULT_BINS, EvalConfig
from deploy.policy import DEFAULT_ENSEMBLE_COEFF, ExecutionConfig
from schemas.errors import OptionError
from shards.command import Exits, command

# "error: ..." and status 2.
EXITS = Exits(error=2)


@command("b1k-eval", EXITS)
@click.option(
    "--checkpoint",
    "checkpoints",
    multiple=True,
    required=True,
    metavar="DIR",
    help="A b1k-train checkpoint: <run>/checkpoints/<step>/pretrained_model, the step dir, or the run dir (its "
    "checkpoints/last). Repeat to compare checkpoints side by side on the same frames.",
)
@click.option(
    "--shards",
    required=True,
    metavar="LOCATION",
    help="Shard set: directory, path to manifest.json, http(s):// URL prefix or 'pipe:...{name}...'.",
)
@click.option(
    "--split",
    type=click.Choice(["val", "train"]),
    default="val",
    show_default=True,
    help="Split whose frames are evaluated.",
)
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
     help="Output directory: report.json and error_by_progress.png.")  # fmt: skip
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the flow-matching noise (per frame, and of the executed replay): the same command writes the "
    "same report.json.",
)
@click.option(
    "--bins",
    type=click.IntRange(min=1),
    default=DEFAULT_BINS,
    show_default=True,
    help="Episode-progress bins (progress = frame / (episode length - 1)); 5 bins put the last 40% of an "
    "episode in the last two.",
)
@click.option(
    "--max-frames",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Evaluate exactly N frames, spread over every episode and its whole length as runs of "
    "consecutive frames (4 chunks long) [default: every frame of the split].",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=DEFAULT_BATCH_SIZE,
    show_default=True,
    help="Frames per model call (open loop), and episode runs replayed in lock-step (executed).",
)
@click.option(
    "--device",
    default="auto",
    show_default=True,
    help="torch device: auto (cuda when available, else cpu), cpu, cuda, cuda:N.",
)
@click.option(
    "--action-steps",
    type=click.IntRange(min=1),
    default=None,
    help="Executed row, receding horizon: actions executed from each predicted chunk before predicting again "
    "(steps) [default: each checkpoint's n_action_steps].",
)
@click.option(
    "--ensemble/--no-ensemble",
    default=False,
    show_default=True,
    help="Executed row with temporal ensembling (ACT), as `b1k-serve --ensemble` runs it.",
)
@click.option(
    "--ensemble-coeff",
    type=float,
    default=DEFAULT_ENSEMBLE_COEFF,
    show_default=True,
    help="With --ensemble: weights exp(-coeff * i), i = 0 the oldest prediction.",
)
@click.option(
    "--vlm-model",
    default=None,
    metavar="DIR",
    help="Local copy of the checkpoints' VLM backbone (config and tokenizer), for machines without the Hub.",
)
@click.option("--progress/--no-progress", default=True, show_default=True,
     help="Progress bars with frames/s and ETA (stderr).")  # fmt: skip
def main(
    checkpoints: tuple[str, ...],
    shards: str,
    split: str,
    out: Path,
    seed: int,
    bins: int,
    max_frames: int | None,
    batch_size: int,
    device: str,
    action_steps: int | None,
    ensemble: bool,
    ensemble_coeff: float,
    vlm_model: str | None,
    progress: bool,
) -> None:
    """Which checkpoint is better, and where in the episode? Open-loop action error on held-out episodes.

    For each frame of the split every checkpoint predicts an action chunk (the policy b1k-serve runs, fed the
    frame's observation from the shard set) that is compared with the recorded actions (padded steps left
    out), in dataset units: MAE and RMSE overall, per action group, per episode-progress bin, per chunk step,
    per task, and as executed (receding horizon or ensembling, what the evaluator would be sent), next to a
    baseline that repeats the last recorded action. Writes DIR/report.json and DIR/error_by_progress.png and
    prints the tables.
    """
    from deploy.eval.evaluate import evaluate
    from deploy.eval.report import PLOT_FILE, format_table, plot_progress, write_report
    from shards.text import printable

    if ensemble and action_steps not in (None, 1):
        raise OptionError("--ensemble predicts a chunk every step: --action-steps does not apply")
    config = EvalConfig(
        split=split,
        seed=seed,
        bins=bins,
        max_frames=max_frames,
        batch_size=batch_size,
        device=device,
        vlm_model=vlm_model,
        execution=ExecutionConfig(
            action_steps=action_steps, ensemble=ensemble, ensemble_coeff=ensemble_coeff, seed=seed
        ),
        progress=progress,
    )
    started = time.perf_counter()
    report = evaluate(checkpoints, shards, config)
    seconds = time.perf_counter() - started
    path = write_report(report, out)
    plot = plot_progress(report, out / PLOT_FILE)
    click.echo(printable(format_table(report)))  # per-task rows print the set's task names
    frames = report["frames"] * len(report["checkpoints"])
    click.echo(
        f"\n{frames} checkpoint-frames in {seconds:.1f} s ({frames / max(seconds, 1e-9):.1f} frames/s)"
    )
    click.echo(f"wrote {path} and {plot}")


if __name__ == "__main__":
    main()
