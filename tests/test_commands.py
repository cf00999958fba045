"""One way to run a command (`shards.command`), checked on every console script: each is made with it,
ends a user error with its one `error:` line (control characters escaped) and its documented status,
shows the traceback with `--debug`, and takes both option spellings; every user-facing error class
derives from `schemas.errors.B1kError` and keeps its older base."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from schemas.errors import B1kError
from shards.command import Command, Group

ESCAPE = "\x1b]0;pwned\x07"  # a terminal title change, from a path or a set's text
SHOWN = "\\x1b]0;pwned\\x07"


def console_scripts() -> dict[str, click.Command]:
    return {ep.name: ep.load() for ep in entry_points(group="console_scripts") if ep.name.startswith("b1k-")}


def test_every_console_script_runs_through_the_one_wrapper():
    scripts = console_scripts()
    assert set(scripts) >= {
        "b1k-preprocess", "b1k-shards", "b1k-train", "b1k-serve", "b1k-eval", "b1k-synthetic-dataset",
        "b1k-tiny-backbone",
    }  # fmt: skip
    for name, script in scripts.items():
        assert isinstance(script, Command | Group), name
        options = [p for p in script.params if isinstance(p, click.Option)]
        names = {n for p in options for n in p.opts + p.secondary_opts}
        assert "--debug" in names, name
        for option in options:  # the original script's `--x_y` spelling beside every `--x-y`
            for opt in option.opts + option.secondary_opts:
                if opt.startswith("--"):
                    assert "--" + opt[2:].replace("-", "_") in names, (name, opt)


def _cases(tmp: Path) -> dict[str, tuple[list[str], int, str]]:
    """command -> (arguments that end in a user error, its exit status, the start of its line)."""
    a_file = tmp / "a-file"
    a_file.write_text("")
    return {
        "b1k-preprocess": (
            [
                "--dataset_path",
                str(tmp / f"no{ESCAPE}set"),
                "--output-dir",
                str(tmp / "out"),
                "--workers",
                "1",
            ],
            1,
            "b1k-preprocess: error: ",
        ),
        "b1k-shards": (["verify", str(tmp / f"no{ESCAPE}set")], 1, "b1k-shards: error: "),
        "b1k-train": (
            ["--shards", str(tmp / f"no{ESCAPE}set"), "--output_dir", str(tmp / "run"), "--device", "cpu"],
            2,
            "error: ",
        ),
        "b1k-serve": (
            ["--checkpoint", str(tmp / f"no{ESCAPE}ckpt"), "--device", "cpu"],
            2,
            "error: --checkpoint",
        ),
        "b1k-eval": (
            [
                "--checkpoint",
                "c",
                "--shards",
                "s",
                "--out",
                str(tmp / "o"),
                "--ensemble",
                "--action_steps",
                "3",
            ],
            2,
            "error: --ensemble predicts a chunk every step",
        ),
        "b1k-synthetic-dataset": (
            ["--output-dir", str(tmp / "ds"), "--layout", "v2.1", "--release", "2026"],
            1,
            "error: the 2026 release comes in the layouts",
        ),
        "b1k-tiny-backbone": (["--output_dir", str(a_file / "backbone")], 1, "error: "),
    }


@pytest.mark.parametrize(
    "name",
    [
        "b1k-preprocess", "b1k-shards", "b1k-train", "b1k-serve", "b1k-eval", "b1k-synthetic-dataset",
        "b1k-tiny-backbone",
    ],
)  # fmt: skip
def test_a_user_error_is_one_escaped_error_line_and_the_documented_status(name, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    script = console_scripts()[name]
    args, status, start = _cases(tmp_path)[name]
    result = CliRunner().invoke(script, args)
    lines = [line for line in result.output.splitlines() if "error:" in line]
    assert result.exit_code == status and len(lines) == 1, result.output
    assert lines[0].startswith(start), lines[0]
    assert "Traceback" not in result.output and ESCAPE not in result.output
    if ESCAPE in " ".join(args):
        assert SHOWN in lines[0], lines[0]  # b1k-preprocess and b1k-serve printed them raw before
    debug = ["--debug", *args] if isinstance(script, Group) else [*args, "--debug"]
    raised = CliRunner().invoke(script, debug).exception
    assert isinstance(raised, B1kError | OSError), repr(raised)


def _user_errors() -> list[tuple[type, type]]:
    from demo.synthetic.plan import SyntheticConfigError
    from deploy.adapter import ObservationError
    from deploy.checkpoint import CheckpointError
    from deploy.eval.config import EvalError
    from deploy.wire import WireError
    from preprocess.images import ImageSizeError
    from preprocess.plan import PreprocessError
    from preprocess.source import EpisodeDataError, SourceError
    from preprocess.tasks import TaskError
    from schemas.errors import OptionError
    from schemas.manifest import ManifestError
    from schemas.presets import StateSelectionError
    from schemas.processor_steps import PerTimestepActionError
    from schemas.provenance import ProvenanceError
    from schemas.r1pro import LayoutError
    from schemas.sample import SampleJsonError
    from shards.errors import ShardCorruptError, ShardNetworkError, ShardSetError
    from shards.lock import FolderLockedError
    from shards.merge import MergeError
    from train.config import NonFiniteLossError, TrainError
    from train.errors import DataSpecError, ShardReadError
    from train.model import ModelLoadError
    from train.recipes import RecipeError
    from train.resume import ResumeMismatchError
    from train.tracking import TrackingError

    return [
        (ManifestError, ValueError), (LayoutError, ValueError), (StateSelectionError, ValueError),
        (OptionError, ValueError), (ShardSetError, RuntimeError), (ShardCorruptError, RuntimeError),
        (ShardNetworkError, RuntimeError), (FolderLockedError, RuntimeError), (MergeError, ValueError),
        (SourceError, RuntimeError), (EpisodeDataError, RuntimeError), (PreprocessError, RuntimeError),
        (TaskError, ValueError), (ImageSizeError, ValueError), (TrainError, RuntimeError),
        (NonFiniteLossError, RuntimeError), (DataSpecError, ValueError), (ShardReadError, RuntimeError),
        (ModelLoadError, RuntimeError), (RecipeError, ValueError), (ResumeMismatchError, RuntimeError),
        (TrackingError, RuntimeError), (CheckpointError, ValueError), (ObservationError, ValueError),
        (EvalError, ValueError), (WireError, ValueError), (SyntheticConfigError, ValueError),
        (ProvenanceError, ValueError), (PerTimestepActionError, ValueError), (SampleJsonError, ValueError),
    ]  # fmt: skip


def test_every_user_facing_error_derives_from_the_one_base_and_keeps_its_old_one():
    for cls, old in _user_errors():
        assert issubclass(cls, B1kError) and issubclass(cls, old), cls
    assert not issubclass(KeyError, B1kError)
