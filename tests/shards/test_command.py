"""shards.command, the one way every console script runs: the `error:` line, exit statuses, `--debug`,
Ctrl-C, both option spellings and the logging setup, on small commands made with it."""

from __future__ import annotations

import errno
import logging

import click
import pytest
from click.testing import CliRunner

from schemas.errors import B1kError
from shards.command import Exits, command, configure_logging, error_line, group


class Refused(B1kError, ValueError):
    pass


class Stopped(B1kError):
    exit_status = 3


def make(exits: Exits, raised: BaseException | None = None) -> click.Command:
    @command("b1k-toy", exits)
    @click.option("--dataset-path", "dataset_path", default="d")
    @click.option("--save-every", "--save-steps", "save_every", type=int, default=1)
    @click.option("--freeze-vision/--no-freeze-vision", "freeze_vision", default=None)
    def toy(dataset_path: str, save_every: int, freeze_vision: bool | None) -> None:
        logging.getLogger("shards.toy").info("path %s", dataset_path)
        logging.getLogger("shards.toy").debug("a debug line")
        if raised is not None:
            raise raised
        click.echo(f"{dataset_path} {save_every} {freeze_vision}")

    return toy


def run(cmd: click.Command, *args: str):
    return CliRunner().invoke(cmd, list(args))


def test_a_user_error_is_one_escaped_line_with_the_commands_status():
    result = run(make(Exits(error=2), Refused("bad task 'a\x1b]52;c;eA==\x07b'")))
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == "error: bad task 'a\\x1b]52;c;eA==\\x07b'"
    assert "Traceback" not in result.output


def test_a_named_tool_prefixes_its_line_and_a_class_may_name_its_own_status():
    result = run(make(Exits(error=1, named=True), Stopped("loss is nan")))
    assert result.exit_code == 3 and result.output.splitlines()[-1] == "b1k-toy: error: loss is nan"


def test_debug_shows_the_traceback_instead():
    result = run(make(Exits(error=2), Refused("bad")), "--debug")
    assert isinstance(result.exception, Refused) and "error:" not in result.output


def test_a_bug_keeps_its_traceback():
    result = run(make(Exits(error=2), KeyError("x")))
    assert isinstance(result.exception, KeyError) and "error:" not in result.output


def test_a_failed_file_operation_is_described_with_the_commands_hint():
    full = OSError(errno.ENOSPC, "No space left on device", "/out/train-000000.tar")
    result = run(make(Exits(error=1, named=True, os_hint="(--resume continues this run)"), full))
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (
        "b1k-toy: error: /out/train-000000.tar: No space left on device; the disk is full: free space or "
        "choose another output folder, then run again (--resume continues this run)"
    )


def test_a_closed_pipe_is_left_to_click():
    result = run(make(Exits(error=2), BrokenPipeError(errno.EPIPE, "Broken pipe")))
    assert "error:" not in result.output and result.exit_code != 2


def test_ctrl_c_says_how_to_go_on_where_the_command_knows():
    told = run(make(Exits(named=True, interrupted="interrupted; rerun with --resume"), KeyboardInterrupt()))
    assert (
        told.exit_code == 130 and told.output.splitlines()[-1] == "b1k-toy: interrupted; rerun with --resume"
    )
    plain = run(make(Exits(), KeyboardInterrupt()))
    assert plain.exit_code == 1 and "Aborted!" in plain.output


def test_a_worker_traceback_in_a_message_is_cut_to_its_last_line():
    wrapped = Refused(
        "Caught ShardCorruptError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\nshards.errors.ShardCorruptError: corrupt shard a.tar: truncated\n'
    )
    assert error_line(wrapped) == "corrupt shard a.tar: truncated"
    assert error_line(Refused("first line\n  second line")) == "first line second line"
    assert error_line(Refused()) == "Refused"


def test_every_option_takes_both_spellings_and_the_help_lists_them():
    toy = make(Exits())
    result = run(toy, "--dataset_path", "p", "--save_steps", "5", "--no_freeze_vision")
    assert result.exit_code == 0 and result.output.splitlines()[-1] == "p 5 False"
    assert run(toy, "--dataset-path", "p", "--save-every", "6").output.splitlines()[-1] == "p 6 None"
    help_text = run(toy, "--help").output
    assert "--dataset-path, --dataset_path" in help_text
    assert "--save-every, --save_every, --save-steps, --save_steps" in help_text
    assert "--no-freeze-vision, --no_freeze_vision" in help_text


def test_the_log_lines_name_the_command_and_v_adds_debug_lines():
    quiet = run(make(Exits()))
    assert " b1k-toy path d" in quiet.output and "a debug line" not in quiet.output
    assert "a debug line" in run(make(Exits()), "-v").output


def test_a_torchrun_rank_is_in_its_lines_and_ranks_other_than_0_log_warnings_only(capsys):
    configure_logging("b1k-train", rank=1)
    logging.getLogger("train.x").info("an info line")
    logging.getLogger("train.x").warning("a warning \x1b[2J")
    configure_logging("b1k-train", rank=0)
    logging.getLogger("train.x").info("rank 0 info")
    err = capsys.readouterr().err
    assert "an info line" not in err
    assert " b1k-train [rank 1] a warning \\x1b[2J" in err and " b1k-train [rank 0] rank 0 info" in err


def test_a_group_reports_its_subcommands_errors_and_takes_debug_before_them():
    @group("b1k-toys", Exits(error=1, named=True))
    def toys() -> None:
        pass

    @toys.command("check")
    @click.option("--max-size", "max_size", default=1)
    def check(max_size: int) -> None:
        raise Refused(f"size {max_size}")

    result = run(toys, "check", "--max_size", "4")
    assert result.exit_code == 1 and result.output.splitlines()[-1] == "b1k-toys: error: size 4"
    assert isinstance(run(toys, "--debug", "check").exception, Refused)


@pytest.mark.parametrize("spelled", ["--x-y", "--x_y"])
def test_click_options_declared_with_the_underscore_are_not_doubled(spelled):
    @command("b1k-toy")
    @click.option("--x-y", "--x_y", "x_y", default=0)
    def toy(x_y: int) -> None:
        click.echo(str(x_y))

    assert toy.params[0].opts == ["--x-y", "--x_y"]
    assert run(toy, spelled, "3").output.strip() == "3"
