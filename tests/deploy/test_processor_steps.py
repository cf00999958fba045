"""The processor steps `--action-norm per_timestep` checkpoints save live in `schemas.processor_steps`, a
module train/ and deploy/ both use (issue 27): checkpoints saved since name them there, and checkpoints
saved before, whose pipeline JSON names `deploy.action_norm.*`, still load in lerobot's own loader and in
b1k-serve's / b1k-eval's (`deploy.checkpoint.load_checkpoint`), to the same classes and numbers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from schemas.processor_steps import ChunkNormalizerStep, ChunkUnnormalizerStep
from tests.deploy.evaluator_client import observation
from tests.deploy.helpers import chunk_model

PIPELINES = ("policy_preprocessor.json", "policy_postprocessor.json")
OLD_MODULE = "deploy.action_norm"  # where the steps lived, and what checkpoints saved before name
NEW_MODULE = "schemas.processor_steps"


def _step_classes(directory: Path) -> list[str]:
    """The class paths the pipelines of a checkpoint name for their steps (registry names aside)."""
    steps = [s for name in PIPELINES for s in json.loads((directory / name).read_text())["steps"]]
    return [s["class"] for s in steps if "class" in s]


def _as_saved_before(checkpoint: Path, target: Path) -> Path:
    """`checkpoint` as b1k-train wrote it before the move: its pipelines name `deploy.action_norm.*`."""
    shutil.copytree(checkpoint, target)
    for name in PIPELINES:
        text = (target / name).read_text()
        (target / name).write_text(text.replace(f'"{NEW_MODULE}.', f'"{OLD_MODULE}.'))
    return target


@pytest.fixture(scope="module")
def saved_before(checkpoint_relative, tmp_path_factory) -> Path:
    return _as_saved_before(checkpoint_relative, tmp_path_factory.mktemp("saved-before") / "pretrained_model")


def _chunk_steps(pipeline) -> list:
    return [s for s in pipeline.steps if isinstance(s, ChunkNormalizerStep | ChunkUnnormalizerStep)]


def test_a_per_timestep_checkpoint_names_its_steps_in_the_module_train_and_deploy_share(checkpoint_relative):
    assert _step_classes(checkpoint_relative).count(f"{NEW_MODULE}.ChunkNormalizerStep") == 1
    assert _step_classes(checkpoint_relative).count(f"{NEW_MODULE}.ChunkUnnormalizerStep") == 1


def test_a_checkpoint_saved_before_the_move_loads_in_lerobots_loader_with_the_same_steps(
    checkpoint_relative, saved_before
):
    """make_pre_post_processors(pretrained_path) imports `deploy.action_norm` for the old class paths and
    gets the very classes of `schemas.processor_steps`, with the saved per-step stats."""
    from lerobot.configs import PreTrainedConfig
    from lerobot.policies.factory import make_pre_post_processors

    assert f"{OLD_MODULE}.ChunkUnnormalizerStep" in _step_classes(saved_before)
    config = PreTrainedConfig.from_pretrained(saved_before)
    old = make_pre_post_processors(config, pretrained_path=str(saved_before))
    new = make_pre_post_processors(config, pretrained_path=str(checkpoint_relative))
    for old_pipeline, new_pipeline in zip(old, new, strict=True):
        (old_step,), (new_step,) = _chunk_steps(old_pipeline), _chunk_steps(new_pipeline)
        assert type(old_step) is type(new_step)
        for key, value in new_step.state_dict().items():
            torch.testing.assert_close(old_step.state_dict()[key], value, rtol=0, atol=0)


def test_a_checkpoint_saved_before_the_move_loads_in_b1k_serves_loader_and_predicts_the_same_chunks(
    checkpoint_relative, saved_before
):
    """`load_checkpoint` (b1k-serve's and b1k-eval's loader) on the old class paths: the same steps, and
    the served chunks of the checkpoint as saved since, bit for bit."""
    old, new = chunk_model(saved_before), chunk_model(checkpoint_relative)
    assert [type(s) for s in _chunk_steps(old.checkpoint.postprocessor)] == [ChunkUnnormalizerStep]
    assert [type(s) for s in _chunk_steps(old.checkpoint.preprocessor)] == [ChunkNormalizerStep]
    inputs, _ = new.adapter(observation(11, batch=2))
    noise = new.noise(2, torch.Generator().manual_seed(5))
    np.testing.assert_array_equal(old.predict(inputs, noise).actions, new.predict(inputs, noise).actions)


def test_lerobot_builds_the_steps_of_a_new_checkpoint_with_only_the_shared_module_imported(
    checkpoint_relative,
):
    """In a fresh interpreter: importing `schemas.processor_steps` alone (no deploy/, no train/) is enough for
    lerobot to resolve the step classes a checkpoint names and to load its pipelines."""
    script = f"""
import sys
import schemas.processor_steps as steps
from lerobot.processor.pipeline import PolicyProcessorPipeline as Pipeline
for name in ("ChunkNormalizerStep", "ChunkUnnormalizerStep"):
    cls, _ = Pipeline._resolve_step_class({{"class": "{NEW_MODULE}." + name}})
    assert cls is getattr(steps, name), cls
post = Pipeline.from_pretrained({str(checkpoint_relative)!r}, config_filename="policy_postprocessor.json")
assert any(isinstance(s, steps.ChunkUnnormalizerStep) for s in post.steps), post.steps
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("deploy", "train"))
assert not loaded, loaded
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]
