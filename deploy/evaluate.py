"""Offline, open-loop action error of checkpoints on held-out episodes (`b1k-eval`).

For every evaluated frame of a split, the checkpoint predicts an action chunk from the frame's
observation (the same `ChunkModel` `b1k-serve` runs, fed `PolicyInputs` built from the shard sample)
and the chunk is compared with the recorded actions, in dataset units: the chunk is truncated to the
checkpoint's `chunk_size` and padded steps (`action_is_pad`, past the episode's end) are left out.
Errors are tallied overall, per action group (`schemas.r1pro.ACTION_SEGMENTS`), per episode-progress
bin, per chunk step and per task.

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
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from deploy.adapter import PolicyInputs
from deploy.checkpoint import CheckpointError, DeploySpec, LoadedCheckpoint, load_checkpoint
from deploy.policy import ChunkModel, ExecutionConfig, Policy
from schemas.manifest import ManifestError, state_layout_of
from schemas.r1pro import ACTION_SEGMENTS, LayoutError, camera_for_key
from schemas.sample import (
    ACTION_IS_PAD_MEMBER,
    ACTION_MEMBER,
    JSON_MEMBER,
    STATE_MEMBER,
    image_member,
    sample_problems,
)
from shards.codec import decode_image_into, decode_npy, npy_view
from shards.reader import ShardSet, open_shard_set

logger = logging.getLogger(__name__)

DEFAULT_BINS = 5
DEFAULT_BATCH_SIZE = 32
WINDOW_CHUNKS = (
    4  # with --max-frames, a run of consecutive frames spans this many chunks of the largest checkpoint
)
BASELINE_LABEL = "baseline: repeat last action"


class EvalError(ValueError):
    """Input `b1k-eval` cannot evaluate (the message says what and where)."""


@dataclass(frozen=True)
class EvalConfig:
    split: str = "val"
    seed: int = 0
    bins: int = DEFAULT_BINS
    max_frames: int | None = None  # None: every frame of the split
    batch_size: int = DEFAULT_BATCH_SIZE
    device: str = "auto"
    vlm_model: str | None = None
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    progress: bool = False


# ---------------------------------------------------------------------------------------------
# Frames


@dataclass(frozen=True)
class Frame:
    """One evaluated frame (its sample's json)."""

    key: str
    episode: int
    frame: int
    progress: float
    task_index: int
    task: str


@dataclass
class EvalFrames:
    """The evaluated frames of a split in (episode, frame) order, their raw samples, and the runs of
    consecutive frames (`windows`, index ranges into `frames`) the executed replay goes through."""

    frames: list[Frame]
    samples: list[dict[str, bytes]]
    windows: list[range]
    previous_action: np.ndarray  # float32 (N, A): the action recorded at the episode's previous observation
    horizon: int
    action_dim: int

    def __len__(self) -> int:
        return len(self.frames)

    def recorded(self, index: Sequence[int], chunk: int) -> tuple[np.ndarray, np.ndarray]:
        """(actions float32 (B, chunk, A), valid bool (B, chunk)) recorded for frames `index`."""
        actions = np.stack([npy_view(self.samples[i][ACTION_MEMBER])[:chunk] for i in index]).astype(
            np.float32
        )
        pad = np.stack([npy_view(self.samples[i][ACTION_IS_PAD_MEMBER])[:chunk] for i in index])
        return actions, ~pad.astype(bool)


def select_windows(episodes: dict[int, int], max_frames: int | None, window: int) -> dict[int, list[range]]:
    """Per episode (its sample count), the runs of sample positions to evaluate.

    Without `max_frames`: each episode whole. With it: exactly min(max_frames, total) positions; each
    episode gets its share (largest remainder, proportional to its length), cut into runs of at most
    `window` consecutive positions spread evenly over the episode (the unselected positions are
    shared out evenly before the runs)."""
    total = sum(episodes.values())
    if max_frames is None or max_frames >= total:
        return {e: [range(n)] for e, n in sorted(episodes.items())}
    exact = {e: max_frames * n / total for e, n in episodes.items()}
    quota = {e: math.floor(x) for e, x in exact.items()}
    by_remainder = sorted(episodes, key=lambda e: (-(exact[e] - quota[e]), e))
    for e in by_remainder[: max_frames - sum(quota.values())]:
        quota[e] += 1
    out: dict[int, list[range]] = {}
    for e, length in sorted(episodes.items()):
        q = quota[e]
        if q == 0:
            continue
        runs = math.ceil(q / window)
        sizes = [q // runs + (i < q % runs) for i in range(runs)]
        gaps, start, ranges = length - q, 0, []
        for i, size in enumerate(sizes):
            begin = start + (i * gaps) // runs
            ranges.append(range(begin, begin + size))
            start += size
        out[e] = ranges
    return out


def _raw_samples(shard_set: ShardSet, split: str) -> Iterator[dict]:
    """Every raw sample of the split, each shard checked against the manifest as it streams."""
    yield from shard_set.pipeline(
        split, seed=0, shuffle_shards=False, split_by_node=False, split_by_worker=False, decode=False
    )


def read_split(shard_set: ShardSet, split: str, max_frames: int | None, window: int) -> EvalFrames:
    """Two reads of the split: the first learns its frames (json and first action only), the second
    keeps the raw samples of the selected ones."""
    manifest = shard_set.manifest
    if split not in manifest["splits"] or not manifest["splits"][split].get("episodes"):
        raise EvalError(
            f"{shard_set.location}: the {split!r} split has no episodes (b1k-preprocess puts episodes in it "
            f"with --val-episodes / --val-fraction; or pass another --split)"
        )
    positions: dict[int, list[tuple[int, str]]] = {}
    first_action: dict[str, np.ndarray] = {}
    for raw in _raw_samples(shard_set, split):
        meta = _checked_members(raw, manifest)
        positions.setdefault(int(meta["episode_index"]), []).append(
            (int(meta["frame_index"]), raw["__key__"])
        )
        first_action[raw["__key__"]] = npy_view(raw[ACTION_MEMBER])[0].astype(np.float32)
    if not positions:
        raise EvalError(f"{shard_set.location}: the {split!r} split has no samples")
    for frames in positions.values():
        frames.sort()
    chosen = select_windows({e: len(f) for e, f in positions.items()}, max_frames, window)
    wanted = {positions[e][i][1]: None for e, runs in chosen.items() for run in runs for i in run}
    kept: dict[str, dict[str, bytes]] = {}
    for raw in _raw_samples(shard_set, split):
        if raw["__key__"] in wanted:
            kept[raw["__key__"]] = {k: bytes(v) for k, v in raw.items() if not k.startswith("__")}
    frames, samples, windows, previous = [], [], [], []
    for e, runs in chosen.items():
        for run in runs:
            windows.append(range(len(frames), len(frames) + len(run)))
            for i in run:
                key = positions[e][i][1]
                meta = _json(kept[key])
                frames.append(
                    Frame(
                        key=key,
                        episode=e,
                        frame=int(meta["frame_index"]),
                        progress=float(meta["progress"]),
                        task_index=int(meta["task_index"]),
                        task=str(meta["task"]),
                    )
                )
                samples.append(kept[key])
                previous.append(first_action[positions[e][max(i - 1, 0)][1]])
    return EvalFrames(
        frames=frames,
        samples=samples,
        windows=windows,
        previous_action=np.stack(previous),
        horizon=int(manifest["horizon"]),
        action_dim=int(manifest["action"]["dim"]),
    )


def _json(raw: dict) -> dict:
    return json.loads(bytes(raw[JSON_MEMBER]))


def _checked_members(raw: dict, manifest: dict) -> dict:
    """The sample's json, once its arrays and json are what the schema says for this set (dtype, shape,
    fields: `schemas.sample.sample_problems`); else an EvalError naming the shard, sample and member.
    The evaluation reads these members as they lie (`npy_view`), so nothing unchecked reaches it."""
    try:
        decoded = {m: decode_npy(raw[m]) for m in (STATE_MEMBER, ACTION_MEMBER, ACTION_IS_PAD_MEMBER)}
        decoded[JSON_MEMBER] = _json(raw)
    except (KeyError, ValueError) as exc:
        raise EvalError(
            f"{raw.get('__url__')}: sample {raw.get('__key__')}: {type(exc).__name__}: {exc}"
        ) from None
    state_dim, horizon = len(manifest["state"]["indices"]), int(manifest["horizon"])
    problems = sample_problems(decoded, state_dim, int(manifest["action"]["dim"]), horizon)
    if problems:
        raise EvalError(f"{raw.get('__url__')}: sample {raw.get('__key__')}: {'; '.join(problems)}")
    return decoded[JSON_MEMBER]


# ---------------------------------------------------------------------------------------------
# Checkpoint <-> shard set


def image_members(
    spec: DeploySpec, shard_set: ShardSet, execution: ExecutionConfig | None = None
) -> dict[str, str]:
    """Policy image key -> the set's member holding that camera; an `EvalError` when the checkpoint's
    features do not match the set (camera, frame size, state, action, chunk size)."""
    manifest, where = shard_set.manifest, f"--checkpoint {spec.path}"
    cameras = manifest["cameras"]
    members: dict[str, str] = {}
    for camera in spec.cameras:
        by_key = [n for n, c in cameras.items() if c.get("video_key") == camera.key]
        try:
            name = by_key[0] if by_key else camera_for_key(camera.key).name
        except LayoutError:
            name = None
        if name not in cameras:
            raise EvalError(
                f"{where}: image feature {camera.key} has no camera in the shard set {shard_set.location} "
                f"(its cameras: {', '.join(sorted(cameras))})"
            )
        stored = (int(cameras[name]["height"]), int(cameras[name]["width"]))
        if stored != (camera.height, camera.width):
            raise EvalError(
                f"{where}: camera {name} was trained on {camera.height}x{camera.width} frames, the shard set "
                f"stores {stored[0]}x{stored[1]}"
            )
        members[camera.key] = image_member(name, cameras[name].get("encoding", "jpeg"))
    try:
        layout = state_layout_of(manifest)
    except ManifestError as exc:
        raise EvalError(str(exc)) from None
    indices = tuple(int(i) for i in manifest["state"]["indices"])
    if (layout.name, indices) != (spec.layout.name, spec.state_indices):
        raise EvalError(
            f"{where}: the policy's state is {spec.state_dim} dims of {spec.layout.describe()} (indices "
            f"{list(spec.state_indices)[:8]}...), the shard set's {len(indices)} dims of {layout.describe()} "
            f"(indices {list(indices)[:8]}...)"
        )
    if int(manifest["action"]["dim"]) != spec.action_dim:
        raise EvalError(f"{where}: action dim {spec.action_dim}, the shard set's {manifest['action']['dim']}")
    if spec.chunk_size > int(manifest["horizon"]):
        raise EvalError(
            f"{where}: chunk size {spec.chunk_size} is above the shard set's stored horizon {manifest['horizon']}"
        )
    steps = execution.action_steps if execution is not None else None
    if steps is not None and not (execution.ensemble or steps <= spec.chunk_size):
        raise EvalError(f"--action-steps {steps}: above the chunk size {spec.chunk_size} of {spec.path}")
    return members


def policy_inputs(
    data: EvalFrames, index: Sequence[int], spec: DeploySpec, members: dict[str, str]
) -> PolicyInputs:
    """The frames `index` as `PolicyInputs`: what the adapter gives the policy at the robot."""
    images = {}
    for camera in spec.cameras:
        frames = np.empty((len(index), camera.height, camera.width, 3), np.uint8)
        for row, i in enumerate(index):
            decode_image_into(data.samples[i][members[camera.key]], frames[row])
        images[camera.key] = frames
    state = np.stack([decode_npy(data.samples[i][STATE_MEMBER]) for i in index]).astype(np.float32)
    return PolicyInputs(images=images, state=state, tasks=[data.frames[i].task for i in index])


def frame_seed(seed: int, episode: int, frame: int) -> int:
    """The seed of one frame's flow-matching noise in the open-loop evaluation."""
    return (seed * 0x9E3779B97F4A7C15 + episode * 1_000_003 + frame) % (2**63 - 1)


def frame_noise(model: ChunkModel, seed: int, frames: Sequence[Frame]) -> torch.Tensor:
    generator = torch.Generator(device="cpu")
    rows = []
    for frame in frames:
        generator.manual_seed(frame_seed(seed, frame.episode, frame.frame))
        rows.append(model.noise(1, generator))
    return torch.cat(rows)


# ---------------------------------------------------------------------------------------------
# Tallies


class Tally:
    """Sums of |error|, error^2, values and frames per named cell, in float64, in a fixed order."""

    def __init__(self) -> None:
        self.cells: dict[object, np.ndarray] = {}

    def add(self, name: object, abs_sum: float, sq_sum: float, values: float, frames: float) -> None:
        cell = self.cells.setdefault(name, np.zeros(4, np.float64))
        cell += (abs_sum, sq_sum, values, frames)

    def row(self, name: object) -> dict:
        abs_sum, sq_sum, values, frames = self.cells.get(name, np.zeros(4))
        return {
            "frames": int(frames),
            "mae": float(abs_sum / values) if values else None,
            "rmse": float(math.sqrt(sq_sum / values)) if values else None,
        }


def tally_chunks(
    tally: Tally, error: np.ndarray, valid: np.ndarray, frames: Sequence[Frame], bins: int, prefix: str = ""
) -> None:
    """Add a batch of chunk errors (B, C, A) with their valid steps (B, C) to every breakdown."""
    error = error.astype(np.float64) * valid[..., None]
    absolute, square = np.abs(error), error**2
    for b, frame in enumerate(frames):
        steps = float(valid[b].sum())
        cell = (absolute[b].sum(), square[b].sum(), steps * error.shape[2], 1)
        bin_ = min(int(frame.progress * bins), bins - 1)
        tally.add((prefix, "overall"), *cell)
        tally.add((prefix, "bin", bin_), *cell)
        tally.add((prefix, "task", frame.task_index, frame.task), *cell)
        for segment in ACTION_SEGMENTS:
            sl = slice(segment.start, segment.stop)
            group = (absolute[b, :, sl].sum(), square[b, :, sl].sum(), steps * segment.size, 1)
            tally.add((prefix, "group", segment.name), *group)
            tally.add((prefix, "bin-group", bin_, segment.name), *group)
        for s in np.flatnonzero(valid[b]):
            tally.add((prefix, "step", int(s)), absolute[b, s].sum(), square[b, s].sum(), error.shape[2], 1)


def breakdown(tally: Tally, bins: int, chunk: int, prefix: str = "") -> dict:
    """The report's breakdowns from a tally (`tally_chunks`)."""
    groups = [s.name for s in ACTION_SEGMENTS]
    tasks = sorted(k[2:] for k in tally.cells if k[:2] == (prefix, "task"))
    return {
        "frames": tally.row((prefix, "overall"))["frames"],
        "overall": _error(tally.row((prefix, "overall"))),
        "by_group": {g: tally.row((prefix, "group", g)) for g in groups},
        "by_progress": [
            {
                "lo": i / bins,
                "hi": (i + 1) / bins,
                **tally.row((prefix, "bin", i)),
                "by_group": {g: _error(tally.row((prefix, "bin-group", i, g))) for g in groups},
            }
            for i in range(bins)
        ],
        "by_step": [{"step": s, **tally.row((prefix, "step", s))} for s in range(chunk)],
        "by_task": [
            {"task_index": t, "task": name, **tally.row((prefix, "task", t, name))} for t, name in tasks
        ],
    }


def _error(row: dict) -> dict:
    return {"mae": row["mae"], "rmse": row["rmse"]}


def executed_row(tally: Tally, prefix: str, **mode) -> dict:
    groups = [s.name for s in ACTION_SEGMENTS]
    return {
        **mode,
        **tally.row((prefix, "overall")),
        "by_group": {g: _error(tally.row((prefix, "group", g))) for g in groups},
    }


def tally_actions(tally: Tally, error: np.ndarray, prefix: str) -> None:
    """Add executed-action errors (B, A), one per frame."""
    error = error.astype(np.float64)
    for row in error:
        tally.add((prefix, "overall"), np.abs(row).sum(), (row**2).sum(), row.size, 1)
        for segment in ACTION_SEGMENTS:
            part = row[segment.start : segment.stop]
            tally.add((prefix, "group", segment.name), np.abs(part).sum(), (part**2).sum(), part.size, 1)


# ---------------------------------------------------------------------------------------------
# Evaluation


class _InputsAdapter:
    """The adapter of a `ChunkModel` fed `PolicyInputs` (shard samples) instead of evaluator
    observations: `Policy.step(inputs)` then runs exactly as served, batched (one stream per row)."""

    def __init__(self, spec: DeploySpec) -> None:
        self.spec = spec

    def __call__(self, inputs: PolicyInputs) -> tuple[PolicyInputs, bool]:
        return inputs, True


def _batches(indices: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(indices), size):
        yield indices[start : start + size]


def _bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="frame", disable=not enabled, dynamic_ncols=True, leave=False)


def open_loop(
    model: ChunkModel, data: EvalFrames, members: dict[str, str], config: EvalConfig, tally: Tally, label: str
) -> None:
    chunk = model.spec.chunk_size
    with _bar(len(data), f"{label}: chunks", config.progress) as bar:
        for index in _batches(range(len(data)), config.batch_size):
            frames = [data.frames[i] for i in index]
            inputs = policy_inputs(data, index, model.spec, members)
            predicted = model.predict(inputs, frame_noise(model, config.seed, frames)).actions[:, :chunk]
            recorded, valid = data.recorded(index, chunk)
            tally_chunks(tally, predicted - recorded, valid, frames, config.bins)
            bar.update(len(index))


def executed(
    model: ChunkModel, data: EvalFrames, members: dict[str, str], config: EvalConfig, tally: Tally, label: str
) -> dict:
    """Replay the runs of consecutive frames through a `Policy` (a stream per run, `batch_size` runs in
    lock-step; a run that ends before the others of its batch repeats its last frame, unscored); returns
    the execution mode."""
    policy = Policy(model, dataclasses.replace(config.execution, seed=config.seed))
    runs = sorted(data.windows, key=lambda r: (-len(r), r.start))  # similar lengths share a batch
    with _bar(len(data), f"{label}: executed", config.progress) as bar:
        for group in _batches(runs, config.batch_size):
            policy.reset()
            for t in range(len(group[0])):
                index = [run[min(t, len(run) - 1)] for run in group]
                action = policy.step(policy_inputs(data, index, model.spec, members)).action
                live = [b for b, run in enumerate(group) if t < len(run)]
                recorded, _ = data.recorded([index[b] for b in live], 1)
                tally_actions(tally, action[live] - recorded[:, 0], "executed")
                bar.update(len(live))
    return execution_mode(config.execution, policy.action_steps)


def evaluate_checkpoint(
    loaded: LoadedCheckpoint, data: EvalFrames, shard_set: ShardSet, config: EvalConfig
) -> dict:
    """The report entry of one loaded checkpoint."""
    spec = loaded.spec
    members = image_members(spec, shard_set)
    model = ChunkModel(loaded, _InputsAdapter(spec))
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


def execution_mode(execution: ExecutionConfig, action_steps: int) -> dict:
    if execution.ensemble:
        return {"mode": "ensemble", "ensemble_coeff": execution.ensemble_coeff, "action_steps": 1}
    return {"mode": "receding", "action_steps": action_steps}


def evaluate_baseline(data: EvalFrames, chunk: int, bins: int) -> dict:
    """ "Repeat the last recorded action": for frame t, the action recorded at the episode's previous
    observation, for every step of a `chunk`-step chunk (and sent at frame t when executed)."""
    tally = Tally()
    for index in _batches(range(len(data)), 256):
        recorded, valid = data.recorded(index, chunk)
        held = data.previous_action[list(index)][:, None, :]
        tally_chunks(tally, held - recorded, valid, [data.frames[i] for i in index], bins)
        tally_actions(tally, held[:, 0] - recorded[:, 0], "executed")
    return {
        "label": BASELINE_LABEL,
        "chunk_size": chunk,
        **breakdown(tally, bins, chunk),
        "executed": executed_row(tally, "executed", mode="hold"),
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
    """The report (see `deploy.eval_report`) of every checkpoint on the split of a shard set.

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
