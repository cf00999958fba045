"""`b1k-train`'s options, declared once: `TrainConfig` has one field per option, and each field's
`Option` (its help, range, choices, other names) is what `train.cli` makes the click option from.
Also what a run records of them (`TrainConfig.record`, `b1k_train_config.json`, readable again with
`--config`), what a run returns, and why it stops."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any

from schemas.errors import B1kError
from schemas.r1pro import RELATIVE_ACTION_GROUPS
from train.model import DEFAULT_PRETRAINED

# The resolved options of a run: in the run directory (written before the first step) and in every
# checkpoint's pretrained_model/ (what `--resume` compares), plus the number of processes.
TRAIN_CONFIG_FILE = "b1k_train_config.json"
RECORDED_ONLY = ("world_size",)  # keys of that record that are no option (a --config file may hold them)


class TrainError(B1kError, RuntimeError):
    """A training run cannot start or must stop; the message says why."""


class NonFiniteLossError(TrainError):
    """The loss (or gradient) became NaN/inf; the run stopped without saving (b1k-train exits 3)."""

    exit_status = 3

    def __init__(self, message: str, step: int, last_checkpoint: Path | None):
        where = (
            f"the last good checkpoint is {last_checkpoint}"
            if last_checkpoint
            else "no checkpoint was saved before it"
        )
        super().__init__(f"{message}; training stopped without saving; {where}")
        self.step = step
        self.last_checkpoint = last_checkpoint


@dataclass(frozen=True)
class Option:
    """How a `TrainConfig` field is given on the command line (`train.cli` makes the click option).

    The field gives the name (`batch_size`: `--batch-size`, also `--batch_size`), the type and the
    default; a bool is `--x/--no-x` unless `flag`; a list is a repeated option unless `separator`."""

    help: str
    aliases: tuple[str, ...] = ()  # more names, e.g. the original script's --save-steps
    metavar: str | None = None
    min: int | None = None  # an int's smallest value
    open_range: tuple[float, float] | None = None  # a float's allowed open interval
    choices: tuple[str, ...] = ()
    flag: bool = False  # a bool given as `--x` alone (False without it)
    bare: str | None = None  # the value of the option given without one (`--resume`: "last")
    none: str | None = None  # how None is spelled (`--pretrained-model none`)
    separator: str | None = None  # a list given as one string (`--relative-groups torso,left_arm`)


def option(help: str, default: Any = MISSING, *, factory: Any = MISSING, **spec: Any) -> Any:
    """A `TrainConfig` field and its option: `batch_size: int = option("Samples per step.", 8, min=1)`."""
    return field(default=default, default_factory=factory, metadata={"option": Option(help, **spec)})


def option_of(f: dataclasses.Field) -> Option:
    return f.metadata["option"]


@dataclass(frozen=True)
class TrainConfig:
    """Every option of `b1k-train`, in the order `--help` lists them (same names, same defaults)."""

    shards: list[str] = option(  # noqa: RUF009 (option() is a dataclasses.field)
        "Shard set: directory, path to manifest.json, http(s):// URL prefix or 'pipe:...{name}...'. "
        "Repeat to mix sets (same features); optional @WEIGHT = relative sampling weight (default: by size).",
        metavar="LOCATION[@WEIGHT]",
    )
    pretrained_model: str | None = option(
        "SmolVLA checkpoint to start from: hub id or local dir ('none' = no SmolVLA weights, needs --vlm-model). "
        "Its features are adapted to the shard set's; every weight whose shape fits is loaded.",
        DEFAULT_PRETRAINED,
        none="none",
    )
    vlm_model: str | None = option(
        "SmolVLM-architecture backbone (dir or hub id). Alone: build SmolVLA from it without SmolVLA weights "
        "(image resize follows its vision image_size). With --pretrained-model: where the checkpoint's backbone "
        "lives.",
        None,
    )
    batch_size: int = option(
        "Samples per step per process (global batch = batch size x processes).", 8, min=1
    )
    max_steps: int = option("Optimizer steps to train for (in total, a resumed run included).", 30_000, min=1)
    lr: float = option("Peak learning rate (AdamW).", 1e-4)
    chunk_size: int = option(
        "Action chunk length in steps (frames); must be <= the shard set's stored horizon.", 50, min=1
    )
    temporal_alpha: float | None = option(
        "Temporal weight = 1 + alpha*progress^2, recomputed from the stored progress. Default: the manifest's "
        "alpha; 0 = uniform.",
        None,
    )
    freeze_vision: bool | None = option(
        "Freeze the vision encoder. Default: the checkpoint's setting (SmolVLA preset: frozen).", None
    )
    train_expert_only: bool | None = option(
        "Train only the action expert (and projections), freezing the VLM. Default: the checkpoint's (preset: "
        "yes).",
        None,
    )
    num_workers: int = option(
        "DataLoader worker processes per rank (JPEG decoding; no video decoding at train time).", 8, min=0
    )
    shuffle_buffer: int = option(
        "Samples in each worker's shuffle buffer (0 = no sample shuffle).", 1000, min=0
    )
    stratify: bool = option(
        "Episode-stratified picks from the shuffle buffers: the samples of a batch come from distinct episodes "
        "whenever the buffers hold them (same data per epoch, only the order changes).",
        True,
    )
    task_balance: bool = option(
        "Balance the tasks: every sample of task t streams r_t = max(1, round(n_max / n_t)) times per epoch "
        "(n_t: its train samples over all --shards sets), so small tasks are not drowned; needs sets whose "
        "manifest counts samples per task (b1k-preprocess writes them). Default mixture weights follow.",
        False,
        flag=True,
    )
    skip_corrupt: bool = option(
        "Skip corrupt shards (checked against the manifest as they stream) instead of stopping; they are "
        "counted in the log and listed in corrupt_shards_rank<R>.jsonl.",
        False,
        flag=True,
    )
    allow_split_overlap: bool = option(
        "Train although episodes are in both the train and the val split of a set (refused otherwise, like "
        "every problem `b1k-shards verify` reports in a manifest; here the val loss then measures training data).",
        False,
        flag=True,
    )
    gpu_id: int | None = option("Train on cuda:N (error if CUDA is absent).", None, min=0)
    device: str = option(
        "auto (CUDA when available, else CPU), cpu, cuda or cuda:N. Under torchrun: cuda:LOCAL_RANK.", "auto"
    )
    output_dir: Path = option(  # noqa: RUF009
        "Run directory: checkpoints/, train_log.jsonl, curves.png (the run's curves), tensorboard/, and "
        f"{TRAIN_CONFIG_FILE} (the run's options, a --config file).",
        Path("outputs/b1k-smolvla"),
    )
    seed: int = option("Seed of the model init, the data order and the flow-matching noise.", 1000)
    save_every: int = option(
        "Save a checkpoint every N steps (and always at the last step); 0 = only at the end. "
        "--save_steps is the original script's name for it.",
        1000,
        min=0,
        aliases=("--save-steps",),
    )
    keep_last: int = option(
        "Keep the newest N checkpoints (0 = keep all). --keep_last_n_checkpoints is the original script's name "
        "for it.",
        3,
        min=0,
        aliases=("--keep-last-n-checkpoints",),
    )
    log_every: int = option("Write a JSONL log line every N steps (0 = off).", 10, min=0)
    val_every: int = option("Compute the loss on the val split every N steps (0 = never).", 500, min=0)
    val_batches: int = option("Batches per rank per validation (0 = the whole val split).", 50, min=0)
    eval_every: int = option(
        "Every N steps (and at the last), b1k-eval's action error on the val split (open-loop chunk MAE, "
        "executed MAE, per group and progress bin, in dataset units), logged next to the val loss (0 = never).",
        0,
        min=0,
    )
    eval_frames: int = option(
        "Val frames of each --eval-every evaluation (the same ones each time, spread over every episode).",
        256,
        min=1,
    )
    wandb_project: str | None = option(
        "Log the curves (loss, lr, data wait, val loss, action error) to this Weights & Biases project "
        "(needs the wandb extra; WANDB_MODE=offline keeps the run on disk).",
        None,
        metavar="PROJECT",
    )
    wandb_disable: bool = option(
        "Do not log to Weights & Biases even with --wandb-project (the original script's flag).",
        False,
        flag=True,
    )
    resume: str | None = option(
        "Resume from <output-dir>/checkpoints/last, or from the given checkpoint dir: weights, optimizer, "
        "scheduler, step, RNG and data position; continues exactly like an uninterrupted run. Refused when the "
        "shard sets or an option that changes the data order or the model differ from the checkpoint's.",
        None,
        metavar="[CHECKPOINT]",
        bare="last",
    )
    force_resume: bool = option(
        "With --resume: go on although the shard sets or such options changed (each difference is logged; "
        "the run then differs from an uninterrupted one).",
        False,
        flag=True,
    )
    warmup_steps: int = option(
        "Linear LR warmup steps (lerobot SmolVLA preset; scaled down when --max-steps < --decay-steps).",
        1_000,
        min=0,
    )
    decay_steps: int = option("Cosine decay steps (lerobot SmolVLA preset).", 30_000, min=1)
    decay_lr: float = option("Final learning rate of the cosine decay.", 2.5e-6)
    grad_clip: float = option("Max gradient norm (0 = no clipping).", 10.0)
    precision: str = option(
        "auto = bf16 autocast on CUDA, fp32 on CPU.", "auto", choices=("auto", "bf16", "fp32")
    )
    augment: bool = option(
        "Colour jitter on images and small Gaussian jitter (5% of std) on gripper state.", False
    )
    action_repr: str = option(
        "relative: train the --relative-groups action dims as offsets from the current state (lerobot's "
        "relative/absolute action steps, saved in the checkpoint); needs a set preprocessed with "
        "--state-preset aligned.",
        "absolute",
        choices=("absolute", "relative"),
    )
    relative_groups: list[str] = option(  # noqa: RUF009
        "With --action-repr relative: the action groups (base, torso, left_arm, left_gripper, right_arm, "
        "right_gripper) that are relative; the others stay absolute.",
        factory=lambda: list(RELATIVE_ACTION_GROUPS),
        separator=",",
    )
    action_norm: str = option(
        "How actions are normalised: mean/std per dim, q01/q99 to [-1, 1] per dim (lerobot's QUANTILES), or "
        "mean/std per dim and chunk step (whole chunks only: lerobot's select_action refuses such a checkpoint).",
        "mean_std",
        choices=("mean_std", "quantile", "per_timestep"),
    )
    ema_decay: float | None = option(
        "Keep an exponential moving average of the weights (e.g. 0.999); checkpoints hold it (the raw "
        "weights are kept for --resume). Off by default.",
        None,
        open_range=(0.0, 1.0),
    )
    progress: bool = option("Show a progress bar.", True)
    log_sample_keys: bool = option(
        "Debug: every rank writes the sample keys of each step to sample_keys_rank<R>.jsonl.",
        False,
        flag=True,
    )

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        out["output_dir"] = str(self.output_dir)
        return out

    def record(self, world: int) -> dict:
        """What a run records of its options (`TRAIN_CONFIG_FILE`): every option, resolved, and the
        number of processes."""
        return {**self.to_json(), "world_size": world}


def write_record(directory: Path, record: dict) -> Path:
    """`record` as `<directory>/b1k_train_config.json`, complete or absent (written aside, renamed)."""
    path = Path(directory) / TRAIN_CONFIG_FILE
    partial = path.with_name(f".{TRAIN_CONFIG_FILE}.tmp")
    partial.write_text(json.dumps(record, indent=2, default=str) + "\n")
    os.replace(partial, path)
    return path


@dataclass
class TrainResult:
    step: int
    last_checkpoint: Path | None
    losses: dict[int, float] = field(default_factory=dict)  # step -> weighted loss (this rank)
    load_report: Any = None
