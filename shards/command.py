"""One way to run a command: every console script of the project (b1k-preprocess, b1k-shards,
b1k-train, b1k-serve, b1k-eval, b1k-synthetic-dataset, b1k-tiny-backbone) is a `Command` or a
`Group` of this module, and gets from it:

- errors: a `B1kError` (`schemas.errors`: the input or the options are wrong) or a failed file
  operation (`OSError`, described by `describe_os_error`) is one `error: ...` line on stderr, its
  control characters escaped (`printable`), and the command's documented exit status (`Exits`);
  `--debug` shows the traceback instead. Any other exception is a bug and keeps its traceback.
- Ctrl-C: a command that says how to go on (`Exits.interrupted`) prints it and exits 130; the others
  end as click ends them ("Aborted!", status 1).
- both spellings of every option: `--dataset-path` and the original script's `--dataset_path`.
- one logging setup (`configure_logging`): format, level, `-v`, the rank of a `torchrun` process.

Why in `shards/`: every package with a command already imports `shards` (it is the format preprocess
writes and train, deploy and the demo read), and what a command's printout is made of lives here
(`shards.text.printable` for text that comes from a set, `shards.errors.describe_os_error`). Not in
`schemas/`: the contract stays free of click and of the terminal, and holds only the click-free part
every package's errors need, `schemas.errors.B1kError`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import click

from schemas.errors import B1kError
from shards.errors import describe_os_error
from shards.text import escape_logging, printable

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 110}
INTERRUPTED = 130  # the shell's status of a process ended by Ctrl-C (128 + SIGINT)
# The project's packages: their loggers log at INFO (DEBUG with -v); other libraries' at WARNING.
PROJECT_PACKAGES = ("schemas", "shards", "preprocess", "train", "deploy", "demo")
_TRACEBACK = "Traceback (most recent call last)"


@dataclass(frozen=True)
class Exits:
    """How a command ends when it stops on an error (each command's documented statuses)."""

    error: int = 1  # a B1kError (unless its class names its own status) or a failed file operation
    named: bool = False  # "b1k-shards: error: ..." (the tools that always named themselves) or "error: ..."
    os_hint: str = ""  # added to a failed file operation's line: how to go on
    interrupted: str = ""  # Ctrl-C: this line and status 130 ("": click's "Aborted!" and status 1)


# ----------------------------------------------------------------------------- the error line


def error_line(exc: BaseException) -> str:
    """The one line `exc` is reported in: a failed file operation described (`describe_os_error`); a
    message that carries a traceback (a DataLoader worker's error, re-raised) cut to its last line
    without the exception's name; other lines joined; control characters escaped."""
    text = describe_os_error(exc) if _is_os_failure(exc) else str(exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if _TRACEBACK in text and lines:
        text = re.sub(r"^[\w.]+(Error|Exception): ", "", lines[-1])
    else:
        text = " ".join(lines)
    return printable(text or type(exc).__name__)


def _is_os_failure(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and not isinstance(exc, B1kError)


def exit_status(exc: B1kError | OSError, exits: Exits) -> int:
    """A class's own status (`B1kError.exit_status`, e.g. b1k-train's 3 for a non-finite loss), else
    the command's."""
    own = exc.exit_status if isinstance(exc, B1kError) else None
    return exits.error if own is None else own


@contextlib.contextmanager
def reported(prog: str, exits: Exits, debug: bool) -> Iterator[None]:
    """Run the body; a user-facing error ends the process with its `error:` line and status."""
    prefix = f"{prog}: " if exits.named else ""
    try:
        yield
    except KeyboardInterrupt:
        if not exits.interrupted:
            raise
        click.echo(f"{prefix}{exits.interrupted}", err=True)
        sys.exit(INTERRUPTED)
    except (B1kError, OSError) as exc:
        if debug or (isinstance(exc, OSError) and exc.errno == errno.EPIPE):  # click handles a closed pipe
            raise
        hint = f" {exits.os_hint}" if exits.os_hint and _is_os_failure(exc) else ""
        click.echo(f"{prefix}error: {error_line(exc)}{hint}", err=True)
        sys.exit(exit_status(exc, exits))


# ----------------------------------------------------------------------------- option spellings


def underscored(name: str) -> str:
    """`--dataset-path` -> `--dataset_path` (the original script's spelling); other names unchanged."""
    return "--" + name[2:].replace("-", "_") if name.startswith("--") else name


def _with_underscored(names: list[str]) -> list[str]:
    out: list[str] = []
    for name in names:
        out.append(name)
        if underscored(name) not in names and underscored(name) != name:
            out.append(underscored(name))
    return out


def spell_both_ways(params: list[click.Parameter]) -> None:
    """Every `--x-y` option of `params` also answers to `--x_y`, listed right after it (in place: click
    reads `opts` when it builds its parser and the help)."""
    for param in params:
        if isinstance(param, click.Option):
            param.opts = _with_underscored(param.opts)
            param.secondary_opts = _with_underscored(param.secondary_opts)


# ----------------------------------------------------------------------------- logging


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time of the record (not the one at set-up), so that
    a progress bar's or a test runner's replacement gets the lines."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def process_rank() -> int | None:
    """This process's rank under `torchrun` (which sets RANK), else None."""
    rank = os.environ.get("RANK", "")
    return int(rank) if rank.isdigit() else None


def configure_logging(prog: str, *, verbose: bool = False, rank: int | None = None) -> None:
    """Every command's log lines: `<time> <prog> [rank R] <message>` on stderr (the rank under
    `torchrun` only), control characters escaped. The project's loggers log at INFO, DEBUG with `-v`,
    WARNING on ranks other than 0 (which would repeat rank 0's lines); other libraries' at WARNING.
    A second call replaces the first (tests run many commands in one process)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(handler)
    handler = _StderrHandler()
    where = "" if rank is None else f" [rank {rank}]"
    handler.setFormatter(logging.Formatter(f"%(asctime)s {prog}{where} %(message)s"))
    root.addHandler(handler)
    escape_logging()  # task names and keys from a shard set reach the log lines
    level = logging.DEBUG if verbose else logging.INFO if not rank else logging.WARNING
    for name in PROJECT_PACKAGES:
        logging.getLogger(name).setLevel(level)


# ----------------------------------------------------------------------------- commands


def _debug_option() -> click.Option:
    return click.Option(
        ["--debug"], is_flag=True, help="On an error, show the Python traceback too (for bug reports)."
    )


def _verbose_option() -> click.Option:
    return click.Option(["-v", "--verbose"], is_flag=True, help="Debug logging.")


def _settings(attrs: dict[str, Any]) -> dict[str, Any]:
    return {**CONTEXT_SETTINGS, **(attrs.pop("context_settings", None) or {})}


class Subcommand(click.Command):
    """A subcommand of a `Group`: this project's help settings and both option spellings (the group
    reports its errors)."""

    def __init__(self, *args: Any, **attrs: Any) -> None:
        super().__init__(*args, context_settings=_settings(attrs), **attrs)
        spell_both_ways(self.params)


class Command(click.Command):
    """A console script: click's command plus `-v`, `--debug`, the `error:` line, the logging setup
    and both option spellings (module docstring). The callback sees neither `verbose` nor `debug`."""

    def __init__(self, *args: Any, exits: Exits = Exits(), **attrs: Any) -> None:
        super().__init__(*args, context_settings=_settings(attrs), **attrs)
        self.exits = exits
        self.params += [_verbose_option(), _debug_option()]
        spell_both_ways(self.params)

    def invoke(self, ctx: click.Context) -> Any:
        return _run(self, ctx, super().invoke)


class Group(click.Group):
    """A console script with subcommands (`b1k-shards`): `--debug` before the subcommand, the `error:`
    line for every subcommand, the logging setup, both option spellings."""

    command_class = Subcommand

    def __init__(self, *args: Any, exits: Exits = Exits(), **attrs: Any) -> None:
        super().__init__(*args, context_settings=_settings(attrs), **attrs)
        self.exits = exits
        self.params.append(_debug_option())
        spell_both_ways(self.params)

    def invoke(self, ctx: click.Context) -> Any:
        return _run(self, ctx, super().invoke)


def _run(script: Command | Group, ctx: click.Context, invoke: Callable[[click.Context], Any]) -> Any:
    """`invoke(ctx)` (click's own) with the logging set up and errors reported; `--debug` and `-v` are
    taken out of the callback's parameters."""
    debug, verbose = ctx.params.pop("debug"), ctx.params.pop("verbose", False)
    prog = script.name or ctx.info_name or "b1k"
    configure_logging(prog, verbose=verbose, rank=process_rank())
    with reported(prog, script.exits, debug):
        return invoke(ctx)


def command(prog: str, exits: Exits = Exits(), **attrs: Any) -> Callable[[Callable[..., Any]], Command]:
    """`@command("b1k-train", Exits(error=2))`: a console script of this project (`Command`)."""
    return click.command(prog, cls=Command, exits=exits, **attrs)


def group(prog: str, exits: Exits = Exits(), **attrs: Any) -> Callable[[Callable[..., Any]], Group]:
    """`@group("b1k-shards")`: a console script with subcommands (`Group`)."""
    return click.group(prog, cls=Group, exits=exits, **attrs)
