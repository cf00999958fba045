"""SmolVLA for a shard set's features, and its lerobot pre/post-processors with the manifest's stats.

Two ways to get a policy:

- from a SmolVLA checkpoint (hub id such as `lerobot/smolvla_base`, or a local dir), whose features
  may differ from ours (other camera names, other state/action dims): the config's input/output
  features are replaced by the shard set's, the policy is built, and every checkpoint tensor whose
  name and shape fit is loaded; the rest is reported;
- from a SmolVLM-architecture backbone (`--vlm-model DIR`) without SmolVLA weights: the image resize
  (`resize_imgs_with_padding`) follows the backbone's vision `image_size`.

Normalisation is lerobot's own: `make_pre_post_processors(config, dataset_stats=...)`, so a saved
checkpoint carries its stats and lerobot loads and applies them as they are.
"""

from __future__ import annotations

import logging
import os
import socket
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import torch

from schemas.checkpoint import read_smolvla_config
from schemas.errors import B1kError
from train.data import ACTION_KEY, STATE_KEY, DataSpec

logger = logging.getLogger(__name__)

DEFAULT_PRETRAINED = "lerobot/smolvla_base"


class ModelLoadError(B1kError, RuntimeError):
    """The pretrained policy or the VLM backbone cannot be found or loaded."""


@dataclass
class LoadReport:
    """What happened to the checkpoint's tensors when loading it into our policy."""

    source: str
    loaded: list[str] = field(default_factory=list)
    shape_mismatch: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # in the policy, not in the checkpoint
    unexpected: list[str] = field(default_factory=list)  # in the checkpoint, not in the policy
    adapted: dict[str, tuple] = field(default_factory=dict)  # feature changes: name -> (theirs, ours)
    loaded_params: int = 0
    total_params: int = 0

    def summary(self) -> str:
        if not self.loaded and not self.shape_mismatch and not self.unexpected:
            return f"built SmolVLA ({self.total_params:,} parameters) from {self.source}"
        lines = [
            f"loaded {len(self.loaded)} tensors ({self.loaded_params:,} of {self.total_params:,} parameters) "
            f"from {self.source}"
        ]
        for name, (theirs, ours) in self.adapted.items():
            lines.append(f"  adapted {name}: {theirs} -> {ours}")
        for name, theirs, ours in self.shape_mismatch:
            lines.append(f"  skipped {name}: checkpoint shape {list(theirs)} != policy shape {list(ours)}")
        if self.missing:
            lines.append(
                f"  not in the checkpoint (kept at init): {len(self.missing)} tensors, e.g. {self.missing[:5]}"
            )
        if self.unexpected:
            lines.append(
                f"  unused from the checkpoint: {len(self.unexpected)} tensors, e.g. {self.unexpected[:5]}"
            )
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {
            "source": self.source,
            "loaded": len(self.loaded),
            "loaded_params": self.loaded_params,
            "total_params": self.total_params,
            "shape_mismatch": [[n, list(a), list(b)] for n, a, b in self.shape_mismatch],
            "missing": self.missing,
            "unexpected": self.unexpected,
            "adapted": {k: [str(a), str(b)] for k, (a, b) in self.adapted.items()},
        }


# ---------------------------------------------------------------------------------------------
# Where models live: local dirs, or the hub (with a clear error when it cannot be reached)


def _looks_local(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or os.path.exists(os.path.expanduser(name))


def _hub_reachable(timeout: float = 5.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parsed = urllib.parse.urlparse(endpoint)
    host = parsed.hostname or "huggingface.co"
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _in_hub_cache(repo_id: str, filename: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(repo_id, filename)
    return isinstance(cached, str)


def resolve_model_location(name: str, what: str, option: str, filename: str = "config.json") -> str:
    """A local dir (made absolute) or a hub id that is cached or reachable; else a clear error."""
    if _looks_local(name):
        path = Path(os.path.expanduser(name)).resolve()
        if not path.is_dir():
            raise ModelLoadError(f"{what} {name!r}: no such directory")
        if not (path / filename).is_file():
            raise ModelLoadError(f"{what} {name!r}: {filename} not found in {path}")
        return str(path)
    if _in_hub_cache(name, filename) or _hub_reachable():
        return name
    raise ModelLoadError(
        f"{what} {name!r} is a Hugging Face Hub id, and the Hub cannot be reached from this machine "
        f"(offline?) and it is not in the local cache. Download it on a machine with internet "
        f"(`hf download {name} --local-dir DIR`), copy DIR here and pass {option} DIR."
    )


# ---------------------------------------------------------------------------------------------
# Features


def policy_features(spec: DataSpec) -> tuple[dict, dict]:
    """SmolVLA input/output features of the shard set: its cameras (3,H,W), state (S,), action (A,)."""
    from lerobot.configs import FeatureType, PolicyFeature

    inputs = {
        cam.key: PolicyFeature(type=FeatureType.VISUAL, shape=(3, cam.height, cam.width))
        for cam in spec.cameras
    }
    inputs[STATE_KEY] = PolicyFeature(type=FeatureType.STATE, shape=(spec.state_dim,))
    outputs = {ACTION_KEY: PolicyFeature(type=FeatureType.ACTION, shape=(spec.action_dim,))}
    return inputs, outputs


def backbone_has_weights(location: str) -> bool:
    """Whether a backbone dir carries weights (a hub id is assumed to)."""
    if not os.path.isdir(location):
        return True
    return any(p.suffix in (".safetensors", ".bin") for p in Path(location).iterdir())


def _describe(features: dict) -> dict:
    return {k: tuple(v.shape) for k, v in features.items()}


def _build(config):
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    try:
        return SmolVLAPolicy(config)
    except OSError as exc:  # transformers cannot find the backbone
        raise ModelLoadError(
            f"cannot load the VLM backbone {config.vlm_model_name!r} ({exc}). Pass a local "
            f"SmolVLM-architecture backbone with --vlm-model DIR."
        ) from exc


@dataclass(frozen=True)
class PolicyOptions:
    """What b1k-train sets on a SmolVLA config, whichever way the policy is built (None: keep the config's)."""

    chunk_size: int
    device: str = "cpu"
    freeze_vision: bool | None = None
    train_expert_only: bool | None = None

    def apply(self, config, spec: DataSpec) -> None:
        """The shard set's features and these options, on `config`."""
        inputs, outputs = policy_features(spec)
        config.input_features = inputs
        config.output_features = outputs
        config.chunk_size = self.chunk_size
        config.n_action_steps = min(config.n_action_steps, self.chunk_size)
        config.max_state_dim = max(config.max_state_dim, spec.state_dim)
        config.max_action_dim = max(config.max_action_dim, spec.action_dim)
        config.empty_cameras = 0
        config.device = self.device
        if self.freeze_vision is not None:
            config.freeze_vision_encoder = bool(self.freeze_vision)
        if self.train_expert_only is not None:
            config.train_expert_only = bool(self.train_expert_only)


def backbone_image_size(vlm_dir: str | Path) -> int:
    """The vision tower's `image_size` of a SmolVLM-architecture backbone (local dir or hub id)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(vlm_dir))
    vision = getattr(config, "vision_config", None)
    size = getattr(vision, "image_size", None)
    if size is None:
        raise ValueError(f"{vlm_dir}: the backbone config has no vision_config.image_size (not a SmolVLM?)")
    return int(size[0] if isinstance(size, (list, tuple)) else size)


def build_policy_from_backbone(spec: DataSpec, vlm_model: str, options: PolicyOptions):
    """SmolVLA built on a SmolVLM-architecture backbone, no SmolVLA weights; returns (policy, report)."""
    from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig

    location = resolve_model_location(vlm_model, "VLM backbone", "--vlm-model")
    size = backbone_image_size(location)
    config = SmolVLAConfig(
        vlm_model_name=location,
        load_vlm_weights=backbone_has_weights(location),
        resize_imgs_with_padding=(size, size),
        # Set here too: the config checks n_action_steps <= chunk_size as it is made.
        chunk_size=options.chunk_size,
        n_action_steps=options.chunk_size,
    )
    options.apply(config, spec)
    policy = _build(config)
    total = sum(p.numel() for p in policy.parameters())
    weights = "with its pretrained VLM weights" if config.load_vlm_weights else "random init"
    report = LoadReport(source=f"backbone {location} ({weights}; no SmolVLA weights)", total_params=total)
    return policy, report


def _checkpoint_file(location: str) -> str:
    from huggingface_hub import hf_hub_download

    if os.path.isdir(location):
        path = os.path.join(location, "model.safetensors")
        if not os.path.isfile(path):
            raise ModelLoadError(f"pretrained model {location!r}: model.safetensors not found")
        return path
    try:
        return hf_hub_download(repo_id=location, filename="model.safetensors")
    except Exception as exc:
        raise ModelLoadError(
            f"cannot download model.safetensors of {location!r} ({type(exc).__name__}: {exc}); "
            f"download it elsewhere and pass --pretrained-model DIR"
        ) from exc


def load_fitting_weights(policy, checkpoint_file: str, report: LoadReport) -> LoadReport:
    """Load every checkpoint tensor whose name and shape match the policy's; record the rest."""
    from safetensors.torch import load_file

    theirs = load_file(checkpoint_file)
    ours = policy.state_dict()
    fitting = {}
    for name, tensor in theirs.items():
        if name not in ours:
            report.unexpected.append(name)
        elif tuple(tensor.shape) != tuple(ours[name].shape):
            report.shape_mismatch.append((name, tuple(tensor.shape), tuple(ours[name].shape)))
        else:
            fitting[name] = tensor
    report.missing = [name for name in ours if name not in theirs]
    policy.load_state_dict(fitting, strict=False)
    report.loaded = sorted(fitting)
    report.loaded_params = sum(t.numel() for t in fitting.values())
    report.total_params = sum(p.numel() for p in policy.parameters())
    return report


def build_policy_from_pretrained(
    spec: DataSpec, pretrained: str, options: PolicyOptions, vlm_model: str | None = None
):
    """SmolVLA from a SmolVLA checkpoint, adapted to the shard set's features; returns (policy, report)."""
    location = resolve_model_location(pretrained, "pretrained model", "--pretrained-model")
    try:
        config = read_smolvla_config(location)
    except ValueError as exc:
        raise ModelLoadError(f"{pretrained!r}: {exc}") from exc
    before_in, before_out = _describe(config.input_features), _describe(config.output_features)
    if vlm_model is not None:
        config.vlm_model_name = resolve_model_location(vlm_model, "VLM backbone", "--vlm-model")
    elif not _looks_local(config.vlm_model_name):
        config.vlm_model_name = resolve_model_location(
            config.vlm_model_name, "the checkpoint's VLM backbone", "--vlm-model"
        )
    # The VLM weights come from the SmolVLA checkpoint; only the backbone's config/processor are read.
    config.load_vlm_weights = False
    options.apply(config, spec)
    report = LoadReport(source=f"SmolVLA checkpoint {location}")
    after_in, after_out = _describe(config.input_features), _describe(config.output_features)
    if before_in != after_in:
        report.adapted["input_features"] = (before_in, after_in)
    if before_out != after_out:
        report.adapted["output_features"] = (before_out, after_out)
    policy = _build(config)
    load_fitting_weights(policy, _checkpoint_file(location), report)
    return policy, report


def build_policy(
    spec: DataSpec,
    *,
    pretrained: str | None,
    vlm_model: str | None,
    chunk_size: int,
    device: str = "cpu",
    freeze_vision: bool | None = None,
    train_expert_only: bool | None = None,
):
    """Dispatch: a SmolVLA checkpoint (optionally on another backbone dir), or a bare backbone."""
    if chunk_size > spec.horizon:
        raise ValueError(f"--chunk-size {chunk_size} is above the shard set's stored horizon {spec.horizon}")
    options = PolicyOptions(chunk_size, device, freeze_vision, train_expert_only)
    if pretrained:
        policy, report = build_policy_from_pretrained(spec, pretrained, options, vlm_model=vlm_model)
    elif vlm_model:
        policy, report = build_policy_from_backbone(spec, vlm_model, options)
    else:
        raise ModelLoadError("give --pretrained-model (a SmolVLA checkpoint) or --vlm-model (a backbone dir)")
    policy.to(device)
    return policy, report


def make_processors(policy_config, spec: DataSpec, recipe=None, stats: dict | None = None, chunk=None):
    """lerobot's SmolVLA pre/post-processors, normalising with the shard set's stats, or with `stats`
    (`train.recipes.normalizer_stats`) and the steps of an action recipe (`train.recipes.ActionRecipe`):
    its normalisation mode goes into the policy config, its steps into the pipelines."""
    from lerobot.policies.factory import make_pre_post_processors

    from train.data import STAT_FIELDS

    tensors = spec.stats_tensors()
    if stats is not None:
        tensors = {
            key: {name: torch.tensor(entry[name], dtype=torch.float32) for name in STAT_FIELDS}
            for key, entry in stats.items()
        }
    if recipe is None:
        return make_pre_post_processors(policy_config, dataset_stats=tensors)
    from train.recipes import add_recipe_steps, set_normalization_mode

    set_normalization_mode(policy_config, recipe)
    preprocessor, postprocessor = make_pre_post_processors(policy_config, dataset_stats=tensors)
    return add_recipe_steps(preprocessor, postprocessor, recipe, spec.action_names, chunk)


def count_parameters(policy) -> tuple[int, int]:
    params = list(policy.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA by default, fp32 elsewhere; explicit `bf16`/`fp32` win."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    raise ValueError(f"--precision {precision!r}: expected auto, bf16 or fp32")
