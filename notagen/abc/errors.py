"""The one error type of the ABC pipeline, and a guard that keeps abctoolkit's prints out of the way.

Every function of `notagen.abc` that cannot handle an input raises `AbcError` whose message starts
with a short reason ("empty file", "unequal bar numbers", "corrupted .mxl", ...) followed by a colon
and the details. Batch runs group failures by that short reason in their summary line, so the part
before the first colon must stay short and stable.

abctoolkit (and Vree's converters it ships) reports problems with `print` to stdout/stderr instead
of raising. `captured_output` collects those prints so they neither clutter a progress bar nor get
lost: callers put the collected text into the `AbcError` they raise.
"""
from __future__ import annotations

import contextlib
import io
import threading
import warnings


class AbcError(ValueError):
    """An ABC / MusicXML text that cannot be converted; `reason` is the short category."""

    def __init__(self, reason: str, detail: str = ""):
        self.reason = reason
        self.detail = detail.strip()
        super().__init__(f"{reason}: {self.detail}" if self.detail else reason)


# redirect_stdout, catch_warnings and xml2abc's module-level output object are process-wide:
# threads (the demo's workers) take turns inside `captured_output`
_CONVERTER_LOCK = threading.RLock()


@contextlib.contextmanager
def captured_output():
    """Collect everything printed (stdout and stderr) and every warning inside the block; one
    thread at a time (the redirections and the converters' globals are shared by all threads)."""
    sink = io.StringIO()
    with _CONVERTER_LOCK, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield sink


def last_lines(text: str, count: int = 3, width: int = 300) -> str:
    """The last non-empty lines of a converter's chatter, short enough for a log line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(lines[-count:])[-width:]
