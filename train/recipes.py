"""Training recipes for the action: its representation, its normalisation, and the EMA of the weights.

- `--action-repr relative`: the action dims of `relative_groups` (default torso and both arms,
  `schemas.r1pro.RELATIVE_ACTION_GROUPS`) are trained as offsets from the current state; base
  velocity and grippers stay absolute. lerobot's own `RelativeActionsProcessorStep` /
  `AbsoluteActionsProcessorStep` do it, in lerobot's order (raw -> relative -> normalise -> model ->
  unnormalise -> absolute), and take the reference from `state[:23]`: the set's state preset must be
  `aligned` (`schemas.presets.ALIGNED_PARTS`).
- `--action-norm`: `mean_std` (lerobot's MEAN_STD), `quantile` (lerobot's QUANTILES with q01/q99) or
  `per_timestep` (mean/std of each chunk step, `schemas.processor_steps`; only whole chunks can be
  unnormalised, so lerobot's `select_action` fails loudly on such a checkpoint).
- `--ema-decay`: `EMA`, the exponential moving average of the trainable weights that checkpoints hold.

The normaliser's action stats are those of what the model is trained on. For an absolute action with
`mean_std`/`quantile` they are the manifest's (every train frame's action). Otherwise they are the stats
of the chunk targets (`chunk_target_stats`): chunk step k of train frame t is action[t+k] (minus
state[t] on the relative dims), over every step of every train-split chunk of the trained chunk size,
padded steps (t+k past the episode's end) excluded, computed exactly in float64 from the set's stats
sidecars (`shards.stats`: every train frame in (episode, frame) order, with each episode's columns).
Not the absolute actions' stats for relative targets: that was lerobot's bug.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from schemas.errors import B1kError
from schemas.presets import ALIGNED_ACTION_DIMS, ALIGNED_PARTS, ordered_indices
from schemas.r1pro import ACTION_KEY, RELATIVE_ACTION_GROUPS, STATE_KEY, action_group_dims
from shards.stats import compute_stats, load_stats_values

ACTION_REPRS = ("absolute", "relative")
ACTION_NORMS = ("mean_std", "quantile", "per_timestep")
RAW_WEIGHTS_FILE = "b1k_raw_model.safetensors"  # training_state/: the raw weights beside the EMA ones
NORMALIZATION_MODES = {"mean_std": "MEAN_STD", "quantile": "QUANTILES", "per_timestep": "IDENTITY"}


class RecipeError(B1kError, ValueError):
    """A recipe that cannot be trained on this data; the message says what to change."""


@dataclass(frozen=True)
class ActionRecipe:
    """How the action is represented and normalised (recorded in the checkpoint's provenance)."""

    repr: str = "absolute"
    norm: str = "mean_std"
    relative_groups: tuple[str, ...] = RELATIVE_ACTION_GROUPS

    def __post_init__(self) -> None:
        if self.repr not in ACTION_REPRS:
            raise RecipeError(f"--action-repr {self.repr!r}: expected one of {ACTION_REPRS}")
        if self.norm not in ACTION_NORMS:
            raise RecipeError(f"--action-norm {self.norm!r}: expected one of {ACTION_NORMS}")
        try:
            action_group_dims(self.relative_groups)
        except ValueError as exc:
            raise RecipeError(str(exc)) from None

    @property
    def relative(self) -> bool:
        return self.repr == "relative"

    @property
    def relative_dims(self) -> tuple[int, ...]:
        """The action dims trained relative to the state (none for an absolute action)."""
        return action_group_dims(self.relative_groups) if self.relative else ()

    def mask(self, action_dim: int) -> list[bool]:
        dims = set(self.relative_dims)
        return [i in dims for i in range(action_dim)]

    @property
    def needs_chunk_stats(self) -> bool:
        return self.relative or self.norm == "per_timestep"

    def check(self, spec) -> None:
        """A relative action needs a set whose state starts with the action-aligned dims."""
        if not self.relative:
            return
        aligned = list(ordered_indices(spec.state_layout, ALIGNED_PARTS)[:ALIGNED_ACTION_DIMS])
        if spec.state_preset != "aligned" or list(spec.state_indices[:ALIGNED_ACTION_DIMS]) != aligned:
            raise RecipeError(
                f"--action-repr relative subtracts state[:{ALIGNED_ACTION_DIMS}] from the action, so the state "
                f"must be the action-aligned preset; this set's state preset is {spec.state_preset!r}. "
                f"Re-run b1k-preprocess with --state-preset aligned (or train --action-repr absolute)."
            )
        if max(self.relative_dims) >= spec.action_dim:
            raise RecipeError(
                f"the action has {spec.action_dim} dims; relative dims are {self.relative_dims}"
            )

    def to_json(self) -> dict:
        return {
            "repr": self.repr,
            "norm": self.norm,
            "relative_groups": list(self.relative_groups) if self.relative else [],
            "relative_dims": list(self.relative_dims),
            "normalization_mode": NORMALIZATION_MODES[self.norm],
        }

    def describe(self) -> str:
        what = f"relative {'/'.join(self.relative_groups)}" if self.relative else "absolute"
        return f"{what} actions, {self.norm} normalisation"


# ---------------------------------------------------------------------------------------------
# Exact stats of the chunk targets, from the stats sidecars


@dataclass
class SidecarValues:
    """One set's train split as its stats sidecars hold it: state (S, N), action (A, N) float64 in
    (episode, frame) order, each episode's column count, and the set's frame stride."""

    state: np.ndarray
    action: np.ndarray
    episodes: list[tuple[int, int]]
    stride: int = 1


@dataclass
class ChunkStats:
    """Stats of the chunk targets: over every valid step (`overall`, lerobot's stats fields per dim) and
    per chunk step (`step_mean`/`step_std`/`step_count`, (T, A))."""

    overall: dict[str, list[float]]
    step_mean: np.ndarray
    step_std: np.ndarray
    step_count: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


def chunk_starts(values: SidecarValues) -> tuple[np.ndarray, np.ndarray]:
    """(column of each sample's frame t, frames left in its episode from t), for the frames the set
    samples (t % stride == 0)."""
    columns, left = [], []
    start = 0
    for _, length in values.episodes:
        frames = np.arange(0, length, values.stride)
        columns.append(start + frames)
        left.append(length - frames)
        start += length
    if start != values.action.shape[1]:
        raise RecipeError(
            f"the episodes index counts {start} columns, the sidecar has {values.action.shape[1]}"
        )
    return np.concatenate(columns), np.concatenate(left)


def chunk_target_pieces(
    values: SidecarValues, chunk_size: int, relative_dims: tuple[int, ...], dim: int
) -> list[np.ndarray]:
    """Action dim `dim`'s chunk targets, one array per chunk step k: action[t+k] (- state[t] when `dim`
    is relative) over the sampled frames t whose step k is inside the episode."""
    columns, left = chunk_starts(values)
    pieces = []
    for k in range(chunk_size):
        t = columns[left > k]
        target = np.asarray(values.action[dim, t + k], dtype=np.float64)
        if dim in relative_dims:
            target = target - np.asarray(values.state[dim, t], dtype=np.float64)
        pieces.append(target)
    return pieces


def chunk_target_stats(
    sets: list[SidecarValues], chunk_size: int, relative_dims: tuple[int, ...]
) -> ChunkStats:
    """Exact float64 stats of the chunk targets of every set's train split (numpy, one action dim at a
    time: memory ~ 8 bytes x frames x chunk_size)."""
    action_dim = sets[0].action.shape[0]
    per_dim: list[dict] = []
    step_mean = np.zeros((chunk_size, action_dim))
    step_std = np.zeros((chunk_size, action_dim))
    step_count = np.zeros(chunk_size, dtype=np.int64)
    for d in range(action_dim):
        by_step = [chunk_target_pieces(v, chunk_size, relative_dims, d) for v in sets]
        steps = [np.concatenate([pieces[k] for pieces in by_step]) for k in range(chunk_size)]
        for k, row in enumerate(steps):
            if row.size == 0:
                raise RecipeError(f"chunk step {k}: no train frame has one (every episode is shorter)")
            step_mean[k, d], step_std[k, d] = row.mean(), row.std()
            step_count[k] = row.size
        per_dim.append(compute_stats(np.concatenate(steps)[None, :]))
    overall = {name: [entry[name][0] for entry in per_dim] for name in per_dim[0] if name != "count"}
    overall["count"] = per_dim[0]["count"]
    return ChunkStats(overall, step_mean, step_std, step_count)


@contextlib.contextmanager
def _sidecar_file(src, key: str) -> Iterator[Path]:
    """The verified local file of a set's sidecar `key` (downloaded for a remote set)."""
    from shards.fetch import fetched
    from shards.scan import is_local, local_file_problem

    entry = src.manifest.sidecar(key)
    url = src.shard_set.url(entry.name)
    if is_local(url):
        if problem := local_file_problem(url, entry):
            raise RecipeError(f"stats sidecar {url} of {src.location} is corrupt ({problem})")
        yield Path(url)
        return
    with fetched(url, entry) as path:
        yield path


def load_sidecars(src) -> SidecarValues:
    """A `train.data.ShardSource`'s stats sidecars, in memory, with their episode index."""
    sidecars = {key: src.manifest.sidecar(key) for key in (STATE_KEY, ACTION_KEY)}
    missing = [key for key, sidecar in sidecars.items() if sidecar is None]
    if missing:
        raise RecipeError(
            f"{src.location} has no stats sidecar for {missing}: the chunk-target stats of relative or "
            "per-timestep actions are computed from them; re-run b1k-preprocess for this set"
        )
    episodes = src.manifest.sidecar(ACTION_KEY).episodes
    if episodes is None or src.manifest.sidecar(STATE_KEY).episodes != episodes:
        raise RecipeError(
            f"{src.location}: its stats sidecars do not record each episode's columns (an older set or "
            "merge); re-run b1k-preprocess or b1k-shards merge for it"
        )
    arrays = {}
    for key in (STATE_KEY, ACTION_KEY):
        with _sidecar_file(src, key) as path:
            arrays[key] = np.array(load_stats_values(path), dtype=np.float64)
    stride = src.manifest.frame_stride or 1
    return SidecarValues(arrays[STATE_KEY], arrays[ACTION_KEY], list(episodes), stride)


def normalizer_stats(spec, recipe: ActionRecipe, chunk_size: int) -> tuple[dict, ChunkStats | None]:
    """(the stats lerobot's normaliser gets, the chunk-target stats when the recipe needs them)."""
    stats = {key: {name: list(values) for name, values in entry.items()} for key, entry in spec.stats.items()}
    if not recipe.needs_chunk_stats:
        return stats, None
    chunk = chunk_target_stats([load_sidecars(src) for src in spec.sources], chunk_size, recipe.relative_dims)
    stats[ACTION_KEY] = {name: chunk.overall[name] for name in ("mean", "std", "min", "max", "q01", "q99")}
    return stats, chunk


# ---------------------------------------------------------------------------------------------
# lerobot's pipelines with the recipe's steps


def add_recipe_steps(
    preprocessor, postprocessor, recipe: ActionRecipe, action_names, chunk: ChunkStats | None
):
    """Insert the recipe's steps into SmolVLA's pipelines, in lerobot's order: the relative step just
    before the normaliser (it caches the raw state), the per-step (un)normaliser beside lerobot's (whose
    action mode is then IDENTITY), the absolute step after the unnormaliser."""
    from lerobot.processor import (
        AbsoluteActionsProcessorStep,
        NormalizerProcessorStep,
        RelativeActionsProcessorStep,
        UnnormalizerProcessorStep,
    )

    from schemas.processor_steps import ChunkNormalizerStep, ChunkUnnormalizerStep

    pre, post = preprocessor.steps, postprocessor.steps
    normalize = next(i for i, s in enumerate(pre) if isinstance(s, NormalizerProcessorStep))
    unnormalize = next(i for i, s in enumerate(post) if isinstance(s, UnnormalizerProcessorStep))
    if recipe.norm == "per_timestep":
        assert chunk is not None
        pre.insert(normalize + 1, ChunkNormalizerStep().set_stats(chunk.step_mean, chunk.step_std))
        post.insert(unnormalize + 1, ChunkUnnormalizerStep().set_stats(chunk.step_mean, chunk.step_std))
        unnormalize += 1
    if recipe.relative:
        names = list(action_names)
        absolute = [names[i] for i in range(len(names)) if i not in set(recipe.relative_dims)]
        relative = RelativeActionsProcessorStep(enabled=True, exclude_joints=absolute, action_names=names)
        if relative._build_mask(len(names)) != recipe.mask(len(names)):  # lerobot matches names by substring
            raise RecipeError(
                f"lerobot's relative mask over {names} differs from dims {recipe.relative_dims}"
            )
        pre.insert(normalize, relative)
        post.insert(unnormalize + 1, AbsoluteActionsProcessorStep(enabled=True, relative_step=relative))
    return preprocessor, postprocessor


def set_normalization_mode(policy_config, recipe: ActionRecipe) -> None:
    from lerobot.configs import NormalizationMode

    mapping = dict(policy_config.normalization_mapping)
    mapping["ACTION"] = NormalizationMode[NORMALIZATION_MODES[recipe.norm]]
    policy_config.normalization_mapping = mapping


# ---------------------------------------------------------------------------------------------
# EMA of the weights


class EMA:
    """ema <- decay * ema + (1 - decay) * weight after every optimizer step, for the trainable
    parameters (the frozen ones equal their EMA). Checkpoints hold the EMA weights (`swapped_in`); the
    raw ones go to training_state/ for `--resume` (`raw_state` / `load_raw`)."""

    def __init__(self, policy: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise RecipeError(f"--ema-decay {decay}: must be in (0, 1)")
        self.decay = decay
        self.params = {n: p for n, p in policy.named_parameters() if p.requires_grad}
        self.shadow = {n: p.detach().clone() for n, p in self.params.items()}

    @torch.no_grad()
    def update(self) -> None:
        for name, param in self.params.items():
            self.shadow[name].lerp_(param.detach(), 1.0 - self.decay)

    @contextlib.contextmanager
    def swapped_in(self) -> Iterator[None]:
        """The EMA weights in the policy for the block (saving, evaluating); the raw ones after."""
        raw = {n: p.detach().clone() for n, p in self.params.items()}
        with torch.no_grad():
            for name, param in self.params.items():
                param.copy_(self.shadow[name])
        try:
            yield
        finally:
            with torch.no_grad():
                for name, param in self.params.items():
                    param.copy_(raw[name])

    def raw_state(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().cpu().contiguous() for n, p in self.params.items()}

    @torch.no_grad()
    def load_raw(self, path: Path) -> None:
        """Resume: the policy was loaded from the checkpoint (the EMA weights): they become the shadow,
        the raw weights of `path` go into the policy."""
        from safetensors.torch import load_file

        raw = load_file(str(path))
        missing = sorted(set(self.params) - set(raw))
        if missing:
            raise RecipeError(f"{path}: no raw weights for {missing[:5]} (resume with the run's options)")
        for name, param in self.params.items():
            self.shadow[name] = param.detach().clone()
            param.copy_(raw[name].to(param.device, param.dtype))
