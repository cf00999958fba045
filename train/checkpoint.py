"""Checkpoints in lerobot's layout, and where `--resume` starts from:

    <output-dir>/checkpoints/<step>/pretrained_model/   SmolVLAPolicy.from_pretrained(...) and
        config.json, model.safetensors,                  lerobot's processor pipelines load it as is
        policy_preprocessor*.json/.safetensors, policy_postprocessor*..., b1k_provenance.json
    <output-dir>/checkpoints/<step>/training_state/     lerobot's save_training_state (optimizer,
        ..., b1k_data_position.json                      scheduler, step, RNG) + our data position
    <output-dir>/checkpoints/last -> <step>

`save_checkpoint` writes one (complete or absent), `list_checkpoints` / `last_checkpoint` find them,
`resume_target` / `check_resumed` / `first_load_report` read one back for `--resume`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from schemas.provenance import PROVENANCE_FILE, Provenance, ProvenanceError, read_provenance
from train import data as data_mod
from train.config import TRAIN_CONFIG_FILE, TrainConfig, TrainError
from train.data import DataSpec
from train.recipes import EMA, RAW_WEIGHTS_FILE
from train.resume import check_resume

DATA_POSITION_FILE = "b1k_data_position.json"


def checkpoints_dir(output_dir: Path) -> Path:
    return Path(output_dir) / "checkpoints"


def list_checkpoints(output_dir: Path) -> list[Path]:
    root = checkpoints_dir(output_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and not p.is_symlink() and p.name.isdigit()]
    return sorted(found, key=lambda p: int(p.name))


def last_checkpoint(output_dir: Path) -> Path | None:
    link = checkpoints_dir(output_dir) / "last"
    if link.exists():
        return link.resolve()
    found = list_checkpoints(output_dir)
    return found[-1] if found else None


def _point_last(checkpoint: Path) -> None:
    """Point `last` at `checkpoint` in one rename (lerobot's `update_last_checkpoint` unlinks, then
    links: a crash in between would leave no `last`)."""
    link = checkpoint.parent / "last"
    tmp = checkpoint.parent / ".last.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(checkpoint.name)
    os.replace(tmp, link)


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def _link_files(source: Path, target: Path) -> None:
    """Make the policy loadable from the step dir itself as well as from lerobot's
    `<step>/pretrained_model` layout: hard links, so no second copy of the weights (copies where
    the filesystem has no hard links)."""
    for path in source.iterdir():
        if path.is_file():
            try:
                os.link(path, target / path.name)
            except OSError:
                shutil.copy2(path, target / path.name)


def save_pretrained(
    pretrained: Path,
    step: int,
    *,
    policy,
    preprocessor,
    postprocessor,
    provenance: Provenance,
    train_config: dict,
    ema: EMA | None = None,
) -> None:
    """A checkpoint's `pretrained_model/`: the policy (its EMA weights with `--ema-decay`), its processor
    pipelines and our provenance, as `SmolVLAPolicy.from_pretrained`, lerobot's pipelines and b1k-serve /
    b1k-eval load it. Also what `--eval-every` hands b1k-eval at a step with no checkpoint."""
    with ema.swapped_in() if ema is not None else contextlib.nullcontext():  # the EMA weights, if any
        policy.save_pretrained(pretrained)
    preprocessor.save_pretrained(pretrained)
    postprocessor.save_pretrained(pretrained)
    (pretrained / PROVENANCE_FILE).write_text(replace(provenance, step=step).dumps())
    _write_json(pretrained / TRAIN_CONFIG_FILE, train_config)


def save_checkpoint(
    output_dir: Path,
    step: int,
    max_steps: int,
    *,
    policy,
    preprocessor,
    postprocessor,
    optimizer,
    scheduler,
    provenance: Provenance,
    train_config: dict,
    data_position: dict,
    keep_last: int,
    world: int,
    batch_size: int,
    ema: EMA | None = None,
) -> Path:
    """Write checkpoint `step` (temporary dir, then rename: complete or absent), point `last` at it,
    keep the newest `keep_last`.

    Layout: lerobot's (`pretrained_model/` + `training_state/`), with the policy and processor files
    also at the top of the step dir, so `SmolVLAPolicy.from_pretrained(<output>/checkpoints/last)` and
    `.../last/pretrained_model` both load it."""
    from lerobot.common.train_utils import get_step_checkpoint_dir, save_training_state

    final = get_step_checkpoint_dir(Path(output_dir), max_steps, step)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    pretrained = tmp / "pretrained_model"
    save_pretrained(
        pretrained,
        step,
        policy=policy,
        preprocessor=preprocessor,
        postprocessor=postprocessor,
        provenance=provenance,
        train_config=train_config,
        ema=ema,
    )
    _link_files(pretrained, tmp)
    save_training_state(tmp, step, optimizer, scheduler, num_processes=world, batch_size=batch_size)
    _write_json(tmp / "training_state" / DATA_POSITION_FILE, data_position)
    if ema is not None:  # the raw weights, which --resume continues from
        from safetensors.torch import save_file

        save_file(ema.raw_state(), str(tmp / "training_state" / RAW_WEIGHTS_FILE))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _point_last(final)
    if keep_last > 0:
        for old in list_checkpoints(output_dir)[:-keep_last]:
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
    return final


def data_order(cfg: TrainConfig, world: int, spec: DataSpec, task_repeats: dict | None) -> dict:
    """What decides the order of the samples (`train.resume.DATA_ORDER`): saved with every checkpoint,
    compared by `--resume`."""
    return {
        "manifests": [data_mod.manifest_fingerprint(src.manifest) for src in spec.sources],
        "seed": cfg.seed,
        "batch_size": cfg.batch_size,
        "world_size": world,
        "num_workers": cfg.num_workers,
        "shuffle_buffer": cfg.shuffle_buffer,
        "stratify": cfg.stratify,
        "task_repeats": task_repeats,
    }


def resume_target(cfg: TrainConfig) -> Path | None:
    """The checkpoint `--resume` continues from (None without `--resume`); without `--resume`, an
    output dir that already holds checkpoints is refused."""
    if cfg.resume:
        return _resolve_resume(cfg)
    if list_checkpoints(cfg.output_dir):
        raise TrainError(
            f"{Path(cfg.output_dir)} already holds checkpoints: pass --resume to continue, or another --output-dir"
        )
    return None


def check_resumed(checkpoint: Path, cfg: TrainConfig, order_now: dict) -> None:
    """Refuse (or with `--force-resume` log) a resume whose data order or model options differ from
    the checkpoint's (`train.resume.check_resume`)."""
    position = json.loads((checkpoint / "training_state" / DATA_POSITION_FILE).read_text())
    saved_config = checkpoint / "pretrained_model" / TRAIN_CONFIG_FILE
    check_resume(
        position,
        order_now,
        json.loads(saved_config.read_text()) if saved_config.is_file() else None,
        cfg.to_json(),
        force=cfg.force_resume,
    )


def first_load_report(checkpoint: Path | None, load_report: dict) -> dict:
    """What the run loaded when it first started (e.g. what a fine-tune loaded), kept across resumes."""
    if checkpoint is None:
        return load_report
    if not (checkpoint / "pretrained_model" / PROVENANCE_FILE).is_file():
        return load_report
    try:
        previous = read_provenance(checkpoint / "pretrained_model")
    except ProvenanceError as exc:
        raise TrainError(f"--resume {checkpoint}: {exc}") from None
    return previous.load_report if previous.load_report is not None else load_report


def _resolve_resume(cfg: TrainConfig) -> Path:
    if cfg.resume == "last":
        found = last_checkpoint(cfg.output_dir)
        if found is None:
            raise TrainError(f"--resume: no checkpoint under {checkpoints_dir(cfg.output_dir)}")
        return found
    path = Path(cfg.resume)
    if path.name == "pretrained_model":
        path = path.parent
    if not (path / "training_state").is_dir() or not (path / "pretrained_model").is_dir():
        raise TrainError(
            f"--resume {cfg.resume}: not a checkpoint dir (expected pretrained_model/ and training_state/)"
        )
    return path.resolve()
