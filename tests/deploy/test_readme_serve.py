"""The README's "Run it in the BEHAVIOR evaluator" command runs as written (HOME is a temporary folder
whose `~/runs/smolvla-task-0006` is a b1k-train run; only `--port 8000` becomes `--port 0`, a free port),
and the evaluator's client gets actions from it."""

from __future__ import annotations

import os

import numpy as np
import pytest

from tests.deploy.evaluator_client import EvaluatorClient, observation
from tests.deploy.helpers import ServeProcess
from tests.test_readme import code_blocks, readme_text, shell_commands


def serve_block() -> str:
    blocks = [body for _, body, before in code_blocks(readme_text()) if before.startswith("<!-- serve:")]
    assert len(blocks) == 1, "README.md must hold exactly one block marked <!-- serve: ... -->"
    return blocks[0]


@pytest.mark.slow
def test_the_readmes_serve_command_runs_and_answers_the_evaluator(checkpoint_2025, tmp_path):
    commands = shell_commands(serve_block())
    assert len(commands) == 1 and commands[0][0] == "b1k-serve"
    home = tmp_path / "home"
    (home / "runs").mkdir(parents=True)
    os.symlink(checkpoint_2025.parent.parent.parent, home / "runs" / "smolvla-task-0006")
    args = [str(home) + a[1:] if a.startswith("~/") else a for a in commands[0][1:]]
    assert "8000" in args
    args[args.index("8000")] = "0"
    with (
        ServeProcess(args, env={"HOME": str(home)}) as server,
        EvaluatorClient("127.0.0.1", server.port) as client,
    ):
        client.reset()
        action = client.infer(observation(0, task_id=1))["action"]
    assert action.shape == (23,) and np.isfinite(action).all()
