"""Offline, open-loop action error of checkpoints on held-out episodes (`b1k-eval`).

For every evaluated frame of a split, the checkpoint predicts an action chunk from the frame's
observation (the same `ChunkModel` `b1k-serve` runs, fed `PolicyInputs` built from the shard sample)
and the chunk is compared with the recorded actions, in dataset units: the chunk is truncated to the
checkpoint's `chunk_size` and padded steps (`action_is_pad`, past the episode's end) are left out.
Errors are tallied overall, per action group (`schemas.r1pro.ACTION_SEGMENTS`), per episode-progress
bin, per chunk step, per task and per annotated skill (the sample json's `skill`; frames without one,
and every frame of a set written before skills, are grouped as no skill).

"Executed" replays the frames of each episode in frame order through a `Policy` with the serving
execution mode (receding horizon or temporal ensembling) and compares the action it sends at frame t
with the recorded action of frame t: the error of what the evaluator would be sent, open loop.

The baseline ("repeat the last recorded action") predicts, for frame t, the action recorded at the
episode's previous observation for every step of the chunk (at an episode's first frame, where there
is none, the action of that frame: the robot holds its start pose). Its "executed" row sends that
action at every frame. It puts numbers in scale: a model that does not beat it has learnt no motion.

Frames: every frame of the split, or with `max_frames=N` exactly N of them, spread over every
episode and over its whole length as runs of consecutive frames (`select_windows`), so that the
executed replay (which restarts the policy at the start of each run, as at an episode start) stays
meaningful. The flow-matching noise of a frame's open-loop prediction is drawn from a generator
seeded by (seed, episode, frame) (`frame_seed`), so a frame's prediction depends neither on the
batch size nor on the other frames; the executed replay draws from `Policy`'s own generator (seeded
with `seed` at each reset), as served. The same command gives the same report.

Memory: the raw (still encoded) samples of the evaluated frames are held while checkpoints are
evaluated (a few tens of KB a frame at 224 px); use `max_frames` on a large split.

The parts, one job each: `deploy.eval.config` (the settings, `EvalError`), `deploy.eval.frames` (the
frames and which of them are evaluated), `deploy.eval.inputs` (checkpoint against shard set, frames as
the model's input), `deploy.eval.replay` (open loop, executed, baseline), `deploy.eval.tally` (errors
and their breakdowns), `deploy.eval.report` (what is written). This module reads the split and puts the
report together.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from deploy.checkpoint import CheckpointError, DeploySpec, LoadedCheckpoint, load_checkpoint
from deploy.eval.config import DEFAULT_BATCH_SIZE, DEFAULT_BINS, EvalConfig, EvalError
from deploy.eval.frames import EvalFrames, Frame, select_windows
from deploy.eval.inputs import InputsAdapter, frame_seed, image_members, input_problems, progress_problems
from deploy.eval.replay import evaluate_baseline, executed, open_loop
from deploy.eval.tally import Tally, breakdown, executed_row
from deploy.policy import ChunkModel
from schemas.manifest import SPLITS, Manifest
from schemas.sample import (
    ACTION_IS_PAD_MEMBER,
    ACTION_MEMBER,
    JSON_MEMBER,
    STATE_MEMBER,
    SampleMeta,
    json_problems,
    sample_problems,
)
from shards.codec import decode_npy, npy_view
from shards.guard import VerifiedShards
from shards.reader import ShardSet, open_shard_set

# What other code imports from here; the settings, `frame_seed` and `select_windows` live in eval_*.
__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_BINS",
    "EvalConfig",
    "EvalError",
    "checkpoint_label",
    "evaluate",
    "evaluate_checkpoint",
    "frame_seed",
    "read_split",
    "select_windows",
]

logger = logging.getLogger(__name__)

WINDOW_CHUNKS = (
    4  # with --max-frames, a run of consecutive frames spans this many chunks of the largest checkpoint
)


def read_split(shard_set: ShardSet, split: str, max_frames: int | None, window: int) -> EvalFrames:
    """Two reads of the split (each shard verified against the manifest before its first sample is
    read, hashed once): the first learns its frames (json and first action only), the second keeps
    the raw samples of the selected ones."""
    manifest = shard_set.manifest
    if split not in SPLITS or not manifest.split(split).episodes:
        raise EvalError(
            f"{shard_set.location}: the {split!r} split has no episodes (b1k-preprocess puts episodes in it "
            f"with --val-episodes / --val-fraction; or pass another --split)"
        )
    positions: dict[int, list[tuple[int, str]]] = {}
    first_action: dict[str, np.ndarray] = {}
    verified = VerifiedShards()
    for raw in shard_set.checked_samples(split, verified):
        meta = _checked_members(raw, manifest)
        positions.setdefault(meta.episode_index, []).append((meta.frame_index, raw["__key__"]))
        first_action[raw["__key__"]] = npy_view(raw[ACTION_MEMBER])[0].astype(np.float32)
    if not positions:
        raise EvalError(f"{shard_set.location}: the {split!r} split has no samples")
    for frames in positions.values():
        frames.sort()
    chosen = select_windows({e: len(f) for e, f in positions.items()}, max_frames, window)
    wanted = {positions[e][i][1]: None for e, runs in chosen.items() for run in runs for i in run}
    kept: dict[str, dict[str, bytes]] = {}
    for raw in shard_set.checked_samples(split, verified):
        if raw["__key__"] in wanted:
            kept[raw["__key__"]] = {k: bytes(v) for k, v in raw.items() if not k.startswith("__")}
    frames, samples, windows, previous = [], [], [], []
    for e, runs in chosen.items():
        for run in runs:
            windows.append(range(len(frames), len(frames) + len(run)))
            for i in run:
                key = positions[e][i][1]
                meta = SampleMeta.from_json(_json(kept[key]))  # checked in the first read
                frames.append(
                    Frame(
                        key=key,
                        episode=e,
                        frame=meta.frame_index,
                        progress=float(meta.progress),
                        task_index=meta.task_index,
                        task=meta.task,
                        skill=meta.skill,
                    )
                )
                samples.append(kept[key])
                previous.append(first_action[positions[e][max(i - 1, 0)][1]])
    return EvalFrames(
        frames=frames,
        samples=samples,
        windows=windows,
        previous_action=np.stack(previous),
        horizon=manifest.horizon,
        action_dim=manifest.action.dim,
    )


def _json(raw: dict) -> dict:
    return json.loads(bytes(raw[JSON_MEMBER]))


def _checked_members(raw: dict, manifest: Manifest) -> SampleMeta:
    """The sample's json, once its arrays and json are what the schema says for this set (dtype, shape,
    fields: `schemas.sample.sample_problems`); else an EvalError naming the shard, sample and member.
    The evaluation reads these members as they lie (`npy_view`), so nothing unchecked reaches it."""
    try:
        decoded = {m: decode_npy(raw[m]) for m in (STATE_MEMBER, ACTION_MEMBER, ACTION_IS_PAD_MEMBER)}
        decoded[JSON_MEMBER] = _json(raw)
    except (KeyError, ValueError, RecursionError) as exc:  # RecursionError: json nested too deep
        raise EvalError(
            f"{raw.get('__url__')}: sample {raw.get('__key__')}: {type(exc).__name__}: {str(exc)[:200]}"
        ) from None
    state_dim, horizon = manifest.state.dim, manifest.horizon
    problems = sample_problems(decoded, state_dim, manifest.action.dim, horizon)
    problems += input_problems(raw, manifest)  # images by their headers
    valid_json = not json_problems(decoded[JSON_MEMBER])
    meta = SampleMeta.from_json(decoded[JSON_MEMBER]) if valid_json else None
    problems += [] if meta is None else progress_problems(meta)
    if problems:
        raise EvalError(f"{raw.get('__url__')}: sample {raw.get('__key__')}: {'; '.join(problems)}")
    return meta


def evaluate_checkpoint(
    loaded: LoadedCheckpoint, data: EvalFrames, shard_set: ShardSet, config: EvalConfig
) -> dict:
    """The report entry of one loaded checkpoint."""
    spec = loaded.spec
    members = image_members(spec, shard_set)
    model = ChunkModel(loaded, InputsAdapter(spec))
    tally = Tally()
    label = checkpoint_label(spec.path)
    started = time.perf_counter()
    open_loop(model, data, members, config, tally, label)
    mode = executed(model, data, members, config, tally, label)
    seconds = time.perf_counter() - started
    logger.info(
        "%s: %d frames in %.1f s (%.1f frames/s)", label, len(data), seconds, len(data) / max(seconds, 1e-9)
    )
    return {
        "path": str(spec.path),
        "label": label,
        "step": spec.step,
        "chunk_size": spec.chunk_size,
        "action_recipe": spec.recipe_label,
        **breakdown(tally, config.bins, spec.chunk_size),
        "executed": executed_row(tally, "executed", **mode),
    }


def checkpoint_label(path: Path) -> str:
    """`<run>@<step>` for `<run>/checkpoints/<step>[/pretrained_model]`, else the directory's name."""
    parts = Path(path).parts
    if len(parts) >= 4 and parts[-1] == "pretrained_model" and parts[-3] == "checkpoints":
        return f"{parts[-4]}@{parts[-2]}"
    if len(parts) >= 3 and parts[-2] == "checkpoints":  # the step dir (`--checkpoint <run>`)
        return f"{parts[-3]}@{parts[-1]}"
    return Path(path).name if Path(path).name != "pretrained_model" else Path(path).parent.name


def evaluate(
    checkpoints: Iterable[str | Path],
    shards: str | Path,
    config: EvalConfig,
    *,
    load: Callable[[str | Path], LoadedCheckpoint] | None = None,
) -> dict:
    """The report (see `deploy.eval.report`) of every checkpoint on the split of a shard set.

    Checkpoints are loaded one at a time (`load_checkpoint`, or `load` for one already in memory, as
    `b1k-train --eval-every` passes) and checked against the set before any frame is read."""
    load = load or (lambda path: load_checkpoint(path, device=config.device, vlm_model=config.vlm_model))
    shard_set = open_shard_set(shards)
    paths = list(checkpoints)
    if not paths:
        raise EvalError("no checkpoint given (--checkpoint)")
    loaded = [load(path) for path in paths[:1]]
    specs = [loaded[0].spec]
    for path in paths[1:]:  # fail fast on a mismatching checkpoint, before the long part
        specs.append(_spec_only(path, config))
    for spec in specs:
        image_members(spec, shard_set, config.execution)
    chunk = max(spec.chunk_size for spec in specs)
    data = read_split(shard_set, config.split, config.max_frames, WINDOW_CHUNKS * chunk)
    logger.info(
        "%s split of %s: %d frames of %d episodes", config.split, shard_set.location, len(data),
        len({f.episode for f in data.frames}),
    )  # fmt: skip
    entries = []
    for i, path in enumerate(paths):
        current = loaded.pop() if i == 0 else load(path)
        entries.append(evaluate_checkpoint(current, data, shard_set, config))
        del current
    return {
        "split": config.split,
        "shards": str(shards),
        "seed": config.seed,
        "bins": config.bins,
        "max_frames": config.max_frames,
        "frames": len(data),
        "episodes": len({f.episode for f in data.frames}),
        "execution": {
            "action_steps": config.execution.action_steps,  # None: each checkpoint's n_action_steps
            "ensemble": config.execution.ensemble,
            "ensemble_coeff": config.execution.ensemble_coeff,
        },
        "checkpoints": entries,
        "baseline": evaluate_baseline(data, chunk, config.bins),
    }


def _spec_only(path: str | Path, config: EvalConfig) -> DeploySpec:
    """A checkpoint's `DeploySpec` without loading its weights."""
    from lerobot.configs import PreTrainedConfig

    from deploy.checkpoint import find_checkpoint, read_provenance, spec_from

    directory = find_checkpoint(path)
    try:
        policy_config = PreTrainedConfig.from_pretrained(directory)
    except Exception as exc:
        raise CheckpointError(f"{directory}: cannot read the policy config ({exc})") from exc
    return spec_from(directory, policy_config, read_provenance(directory))
