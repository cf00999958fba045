"""Text from a shard set, made safe to print on a terminal.

Task names, sample keys, json values and file names come from whoever wrote the set. Printed raw,
their control characters are commands to the terminal: OSC 52 (`ESC ] 52 ; c ; <base64> BEL`) writes
the clipboard, other sequences move the cursor or retitle the window, and bidi overrides make a
line read other than it is. Every printout of the command-line tools passes through `printable`.
"""

from __future__ import annotations

import logging
import re

# C0 and C1 controls but newline and tab, DEL, the line/paragraph separators and the bidi controls.
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """`text` with every terminal control character written as a visible escape (`\\x1b`, `\\u202e`);
    newlines and tabs are kept. ~0.2 us for a short clean line."""
    return _UNPRINTABLE.sub(_escape, text)


class _PrintableFilter(logging.Filter):
    """Escapes a record's message once it is formatted with its arguments (`printable`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = printable(record.getMessage()), None
        return True


def escape_logging() -> None:
    """Make the root logger's handlers print log lines through `printable` (call after `basicConfig`)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _PrintableFilter) for f in handler.filters):
            handler.addFilter(_PrintableFilter())
