"""`b1k-train`: fine-tune SmolVLA on one or more shard sets (every option also spelled with `_`)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import click

from train.config import TrainConfig

_D = TrainConfig.__dataclass_fields__


def _default(name: str):
    return _D[name].default


def opt(*names: str, **kwargs):
    """A click option registered under both `--x-y` and `--x_y`."""
    spellings: list[str] = []
    for name in names:
        if not name.startswith("--"):
            spellings.append(name)
            continue
        parts = name.split("/")
        alternates = ["--" + part[2:].replace("-", "_") for part in parts]
        alternates = ["" if alt == part else alt for alt, part in zip(alternates, parts, strict=True)]
        spellings.append(name)
        if any(alternates):
            # click reads " /--no_x" (leading space) as a secondary name only
            spellings.append(
                (alternates[0] or " ") + "/" + alternates[1] if len(parts) > 1 else alternates[0]
            )
    return click.option(*spellings, **kwargs)


def _last_line(text: str) -> str:
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    line = lines[-1] if lines else str(text)
    return re.sub(r"^[\w.]+(Error|Exception): ", "", line)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@opt(
    "--shards",
    "shards",
    multiple=True,
    required=True,
    metavar="LOCATION[@WEIGHT]",
    help="Shard set: directory, path to manifest.json, http(s):// URL prefix or 'pipe:...{name}...'. "
    "Repeat to mix sets (same features); optional @WEIGHT = relative sampling weight (default: by size).",
)
@opt(
    "--pretrained-model",
    "pretrained_model",
    default=_default("pretrained_model"),
    show_default=True,
    help="SmolVLA checkpoint to start from: hub id or local dir ('none' = no SmolVLA weights, needs --vlm-model). "
    "Its features are adapted to the shard set's; every weight whose shape fits is loaded.",
)
@opt(
    "--vlm-model",
    "vlm_model",
    default=None,
    help="SmolVLM-architecture backbone (dir or hub id). Alone: build SmolVLA from it without SmolVLA weights "
    "(image resize follows its vision image_size). With --pretrained-model: where the checkpoint's backbone lives.",
)
@opt(
    "--batch-size",
    "batch_size",
    type=click.IntRange(min=1),
    default=_default("batch_size"),
    show_default=True,
    help="Samples per step per process (global batch = batch size x processes).",
)
@opt(
    "--max-steps",
    "max_steps",
    type=click.IntRange(min=1),
    default=_default("max_steps"),
    show_default=True,
    help="Optimizer steps to train for (in total, a resumed run included).",
)
@opt("--lr", "lr", type=float, default=_default("lr"), show_default=True, help="Peak learning rate (AdamW).")
@opt(
    "--chunk-size",
    "chunk_size",
    type=click.IntRange(min=1),
    default=_default("chunk_size"),
    show_default=True,
    help="Action chunk length in steps (frames); must be <= the shard set's stored horizon.",
)
@opt(
    "--temporal-alpha",
    "temporal_alpha",
    type=float,
    default=None,
    help="Temporal weight = 1 + alpha*progress^2, recomputed from the stored progress. Default: the manifest's "
    "alpha; 0 = uniform.",
)
@opt(
    "--freeze-vision/--no-freeze-vision",
    "freeze_vision",
    default=None,
    help="Freeze the vision encoder. Default: the checkpoint's setting (SmolVLA preset: frozen).",
)
@opt(
    "--train-expert-only/--no-train-expert-only",
    "train_expert_only",
    default=None,
    help="Train only the action expert (and projections), freezing the VLM. Default: the checkpoint's (preset: yes).",
)
@opt(
    "--num-workers",
    "num_workers",
    type=click.IntRange(min=0),
    default=_default("num_workers"),
    show_default=True,
    help="DataLoader worker processes per rank (JPEG decoding; no video decoding at train time).",
)
@opt(
    "--shuffle-buffer",
    "shuffle_buffer",
    type=click.IntRange(min=0),
    default=_default("shuffle_buffer"),
    show_default=True,
    help="Samples in each worker's shuffle buffer (0 = no sample shuffle).",
)
@opt(
    "--stratify/--no-stratify",
    "stratify",
    default=True,
    show_default=True,
    help="Episode-stratified picks from the shuffle buffers: the samples of a batch come from distinct episodes "
    "whenever the buffers hold them (same data per epoch, only the order changes).",
)
@opt(
    "--task-balance",
    "task_balance",
    is_flag=True,
    default=False,
    help="Balance the tasks: every sample of task t streams r_t = max(1, round(n_max / n_t)) times per epoch "
    "(n_t: its train samples over all --shards sets), so small tasks are not drowned; needs sets whose "
    "manifest counts samples per task (b1k-preprocess writes them). Default mixture weights follow.",
)
@opt(
    "--skip-corrupt",
    "skip_corrupt",
    is_flag=True,
    default=False,
    help="Skip corrupt shards (checked against the manifest as they stream) instead of stopping; they are "
    "counted in the log and listed in corrupt_shards_rank<R>.jsonl.",
)
@opt(
    "--allow-split-overlap",
    "allow_split_overlap",
    is_flag=True,
    default=False,
    help="Train although episodes are in both the train and the val split of a set (refused otherwise, like "
    "every problem `b1k-shards verify` reports in a manifest; here the val loss then measures training data).",
)
@opt(
    "--gpu-id",
    "gpu_id",
    type=click.IntRange(min=0),
    default=None,
    help="Train on cuda:N (error if CUDA is absent).",
)
@opt(
    "--device",
    "device",
    default=_default("device"),
    show_default=True,
    help="auto (CUDA when available, else CPU), cpu, cuda or cuda:N. Under torchrun: cuda:LOCAL_RANK.",
)
@opt(
    "--output-dir",
    "output_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=_default("output_dir"),
    show_default=True,
    help="Run directory: checkpoints/, train_log.jsonl, curves.png (the run's curves), tensorboard/.",
)
@opt(
    "--seed",
    "seed",
    type=int,
    default=_default("seed"),
    show_default=True,
    help="Seed of the model init, the data order and the flow-matching noise.",
)
@opt(
    "--save-every",
    "--save-steps",
    "save_every",
    type=click.IntRange(min=0),
    default=_default("save_every"),
    show_default=True,
    help="Save a checkpoint every N steps (and always at the last step); 0 = only at the end. "
    "--save_steps is the original script's name for it.",
)
@opt(
    "--keep-last",
    "--keep-last-n-checkpoints",
    "keep_last",
    type=click.IntRange(min=0),
    default=_default("keep_last"),
    show_default=True,
    help="Keep the newest N checkpoints (0 = keep all). --keep_last_n_checkpoints is the original script's name for it.",
)
@opt(
    "--log-every",
    "log_every",
    type=click.IntRange(min=0),
    default=_default("log_every"),
    show_default=True,
    help="Write a JSONL log line every N steps (0 = off).",
)
@opt(
    "--val-every",
    "val_every",
    type=click.IntRange(min=0),
    default=_default("val_every"),
    show_default=True,
    help="Compute the loss on the val split every N steps (0 = never).",
)
@opt(
    "--val-batches",
    "val_batches",
    type=click.IntRange(min=0),
    default=_default("val_batches"),
    show_default=True,
    help="Batches per rank per validation (0 = the whole val split).",
)
@opt(
    "--eval-every",
    "eval_every",
    type=click.IntRange(min=0),
    default=_default("eval_every"),
    show_default=True,
    help="Every N steps (and at the last), b1k-eval's action error on the val split (open-loop chunk MAE, "
    "executed MAE, per group and progress bin, in dataset units), logged next to the val loss (0 = never).",
)
@opt(
    "--eval-frames",
    "eval_frames",
    type=click.IntRange(min=1),
    default=_default("eval_frames"),
    show_default=True,
    help="Val frames of each --eval-every evaluation (the same ones each time, spread over every episode).",
)
@opt(
    "--wandb-project",
    "wandb_project",
    default=None,
    metavar="PROJECT",
    help="Log the curves (loss, lr, data wait, val loss, action error) to this Weights & Biases project "
    "(needs the wandb extra; WANDB_MODE=offline keeps the run on disk).",
)
@opt(
    "--wandb-disable",
    "wandb_disable",
    is_flag=True,
    default=False,
    help="Do not log to Weights & Biases even with --wandb-project (the original script's flag).",
)
@click.option(
    "--resume",
    "resume",
    is_flag=False,
    flag_value="last",
    default=None,
    metavar="[CHECKPOINT]",
    help="Resume from <output-dir>/checkpoints/last, or from the given checkpoint dir: weights, optimizer, "
    "scheduler, step, RNG and data position; continues exactly like an uninterrupted run. Refused when the "
    "shard sets or an option that changes the data order or the model differ from the checkpoint's.",
)
@opt(
    "--force-resume",
    "force_resume",
    is_flag=True,
    default=False,
    help="With --resume: go on although the shard sets or such options changed (each difference is logged; "
    "the run then differs from an uninterrupted one).",
)
@opt(
    "--warmup-steps",
    "warmup_steps",
    type=click.IntRange(min=0),
    default=_default("warmup_steps"),
    show_default=True,
    help="Linear LR warmup steps (lerobot SmolVLA preset; scaled down when --max-steps < --decay-steps).",
)
@opt(
    "--decay-steps",
    "decay_steps",
    type=click.IntRange(min=1),
    default=_default("decay_steps"),
    show_default=True,
    help="Cosine decay steps (lerobot SmolVLA preset).",
)
@opt(
    "--decay-lr",
    "decay_lr",
    type=float,
    default=_default("decay_lr"),
    show_default=True,
    help="Final learning rate of the cosine decay.",
)
@opt(
    "--grad-clip",
    "grad_clip",
    type=float,
    default=_default("grad_clip"),
    show_default=True,
    help="Max gradient norm (0 = no clipping).",
)
@opt(
    "--precision",
    "precision",
    type=click.Choice(["auto", "bf16", "fp32"]),
    default=_default("precision"),
    show_default=True,
    help="auto = bf16 autocast on CUDA, fp32 on CPU.",
)
@opt(
    "--augment/--no-augment",
    "augment",
    default=False,
    show_default=True,
    help="Colour jitter on images and small Gaussian jitter (5% of std) on gripper state.",
)
@opt(
    "--action-repr",
    "action_repr",
    type=click.Choice(["absolute", "relative"]),
    default=_default("action_repr"),
    show_default=True,
    help="relative: train the --relative-groups action dims as offsets from the current state (lerobot's "
    "relative/absolute action steps, saved in the checkpoint); needs a set preprocessed with "
    "--state-preset aligned.",
)
@opt(
    "--relative-groups",
    "relative_groups",
    default=",".join(_D["relative_groups"].default_factory()),
    show_default=True,
    help="With --action-repr relative: the action groups (base, torso, left_arm, left_gripper, right_arm, "
    "right_gripper) that are relative; the others stay absolute.",
)
@opt(
    "--action-norm",
    "action_norm",
    type=click.Choice(["mean_std", "quantile", "per_timestep"]),
    default=_default("action_norm"),
    show_default=True,
    help="How actions are normalised: mean/std per dim, q01/q99 to [-1, 1] per dim (lerobot's QUANTILES), or "
    "mean/std per dim and chunk step (whole chunks only: lerobot's select_action refuses such a checkpoint).",
)
@opt(
    "--ema-decay",
    "ema_decay",
    type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
    default=None,
    help="Keep an exponential moving average of the weights (e.g. 0.999); checkpoints hold it (the raw "
    "weights are kept for --resume). Off by default.",
)
@opt("--progress/--no-progress", "progress", default=True, show_default=True, help="Show a progress bar.")
@opt(
    "--log-sample-keys",
    "log_sample_keys",
    is_flag=True,
    default=False,
    help="Debug: every rank writes the sample keys of each step to sample_keys_rank<R>.jsonl.",
)
@click.option("--debug", is_flag=True, help="On an error, show the Python traceback too (for bug reports).")
def main(**kwargs) -> None:
    """Fine-tune lerobot's SmolVLA on WebDataset shard sets written by b1k-preprocess.

    Runs on one device as is, on several with `torchrun --nproc_per_node N -m train.cli ...` (DDP).
    Checkpoints are in lerobot's format: SmolVLAPolicy.from_pretrained(<output-dir>/checkpoints/last) loads one
    (so does .../last/pretrained_model, lerobot's own layout), and so do lerobot's processor pipelines.
    """
    from schemas.manifest import ManifestError
    from shards.errors import describe_os_error
    from shards.reader import ShardSetError
    from shards.text import printable
    from train.config import NonFiniteLossError, TrainError
    from train.data import DataSpecError, ShardReadError
    from train.logs import configure_logging
    from train.loop import train
    from train.model import ModelLoadError
    from train.recipes import RecipeError
    from train.resume import ResumeMismatchError
    from train.tracking import TrackingError

    if kwargs["pretrained_model"] and kwargs["pretrained_model"].lower() == "none":
        kwargs["pretrained_model"] = None
    ctx = click.get_current_context()
    # --vlm-model alone means: no SmolVLA weights.
    if (
        kwargs["vlm_model"]
        and ctx.get_parameter_source("pretrained_model") == click.core.ParameterSource.DEFAULT
    ):
        kwargs["pretrained_model"] = None
    kwargs["shards"] = list(kwargs["shards"])
    kwargs["relative_groups"] = [g.strip() for g in kwargs["relative_groups"].split(",") if g.strip()]
    debug = kwargs.pop("debug")
    cfg = TrainConfig(**kwargs)
    configure_logging(int(os.environ.get("RANK", "0")))
    try:
        result = train(cfg)
    except NonFiniteLossError as exc:
        where = (
            f"the last good checkpoint is {exc.last_checkpoint}"
            if exc.last_checkpoint
            else "no checkpoint was saved before it"
        )
        click.echo(printable(f"error: {exc}; training stopped without saving; {where}"), err=True)
        sys.exit(3)
    except (
        TrainError,
        DataSpecError,
        ShardReadError,
        ShardSetError,
        ModelLoadError,
        ManifestError,
        TrackingError,
        ResumeMismatchError,
        RecipeError,
        OSError,  # e.g. the output's disk full, a folder not writable
    ) as exc:
        if debug:
            raise
        message = describe_os_error(exc) if isinstance(exc, OSError) else _last_line(str(exc))
        click.echo(printable(f"error: {message}"), err=True)
        sys.exit(2)
    if int(os.environ.get("RANK", "0")) == 0:
        click.echo(f"done: step {result.step}; last checkpoint {result.last_checkpoint}")


if __name__ == "__main__":
    main()
