"""Small text-level facts about NotaGen's ABC (spec sections 4-8), shared by every other module.

Design choices:
- A text is handled as a list of lines that keep their "\\n", because that is what abctoolkit's
  functions take and return (they were written for `file.readlines()`). `text_to_lines` turns a
  string into that form after normalising Windows / old-Mac line ends, like text-mode reading does.
- Prompt lines (`%period`, `%composer`, `%instrumentation`) are plain comments before the header.
  The pipeline splits them off before any processing and puts them back on top of every output,
  so no abctoolkit function ever has to cope with them.
"""
from __future__ import annotations

import re

from .errors import AbcError

# The 15 key signatures of the augmented folders, in the order the spec lists them.
KEYS_15 = ["C", "C#", "Db", "D", "Eb", "E", "F", "F#", "Gb", "G", "Ab", "A", "Bb", "B", "Cb"]

_STREAM_PREFIX = re.compile(r"^\[r:[^\]\n]*\]", flags=re.MULTILINE)


def text_to_lines(text: str) -> list[str]:
    """Split into lines that keep their newline (the last one may lack it), like readlines()."""
    # split on "\n" only: str.splitlines would also split on \x0c, \u2028, ... inside lyrics
    parts = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return [part + "\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def is_prompt_line(line: str) -> bool:
    return line.startswith("%") and not line.startswith("%%")


def split_prompt_lines(text: str) -> tuple[list[str], str]:
    """Leading `%...` comment lines (not `%%` directives), without newlines, and the rest of the text."""
    lines = text_to_lines(text)
    count = 0
    while count < len(lines) and is_prompt_line(lines[count]):
        count += 1
    return [line.rstrip("\n") for line in lines[:count]], "".join(lines[count:])


def join_prompt_lines(prompt_lines: list[str], text: str) -> str:
    return "".join(line + "\n" for line in prompt_lines) + text


def strip_stream_prefixes(text: str) -> str:
    """Remove the `[r:i/j]` stream prefix at the start of each line (spec section 8)."""
    return _STREAM_PREFIX.sub("", text)


def original_key(lines: list[str]) -> str:
    """First field of the first `K:` header line, e.g. `G`, `Cmin`, `F#dor`, `none`."""
    for line in lines:
        if line.startswith("K:"):
            fields = line[2:].split()
            return fields[0] if fields else "none"
    raise AbcError("no key", "the header has no K: line")


def is_interleaved(text: str) -> bool:
    """True when the tune body is written as `[V:n]` bar lines (spec section 3)."""
    return any(line.startswith("[V:") for line in text_to_lines(strip_stream_prefixes(text)))
