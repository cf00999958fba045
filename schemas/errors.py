"""What a user-facing error is: `B1kError`, the base of every error that means "the input or the
options are wrong (or the run must stop for a reason the user can act on); say so in one line".

Every command prints such an error as one `error: ...` line and exits with its documented status
(`shards.command`); any other exception is a bug and keeps its traceback. The classes keep their
older bases too (`class ManifestError(B1kError, ValueError)`), so code that catches them as
`ValueError` or `RuntimeError` is unchanged. Here, in `schemas/`, because every package imports
`schemas` and `schemas` imports none of them.
"""

from __future__ import annotations

from typing import ClassVar


class B1kError(Exception):
    """An error the user can fix or act on; its message says what is wrong and where, in one line."""

    # The exit status of a command stopped by this error; None: the command's own error status.
    exit_status: ClassVar[int | None] = None


class OptionError(B1kError, ValueError):
    """Options that cannot go together, or do not fit the input (the message names the option)."""
