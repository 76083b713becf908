"""What a piece starts from: prompt lines (metadata chunks such as `%period`), or an ABC text to continue.

Design choices
- The model knows only ASCII: other characters are transliterated (unidecode) with a warning.
- A prompt line holds no line break; blank lines are dropped; each kept line ends with "\\n".
- An ABC text without a tune body (a header only) is a set of prompt lines; with one, the model
  continues it (its own header and body: `split_header`).
"""
from __future__ import annotations

import unicodedata
import warnings
from dataclasses import dataclass
from typing import Iterable

from unidecode import unidecode

from ..abc.text import is_prompt_line
from ..patchilizer import Patchilizer, split_lines


class PromptError(ValueError):
    """A prompt that cannot be used."""


def to_ascii(text: str, what: str = "prompt") -> str:
    """ASCII text as the model needs; non-ASCII is transliterated (unidecode) with a warning."""
    if text.isascii():
        return text
    converted = unidecode(unicodedata.normalize("NFC", text))
    bad = sorted({c for c in text if not c.isascii()})
    warnings.warn(f"{what} has non-ASCII characters {''.join(bad)!r}; transliterated to ASCII "
                  f"(the model only knows ASCII): {converted.strip()[:80]!r}", stacklevel=3)
    return converted


@dataclass(frozen=True)
class Prompt:
    """What a piece starts from: prompt lines (metadata chunks), or an ABC text to continue."""
    lines: tuple[str, ...] = ()  # each ends with "\n"
    text: str | None = None  # ABC text to continue (its own header and body)

    @classmethod
    def from_triple(cls, period: str, composer: str, instrumentation: str) -> "Prompt":
        return cls.from_lines([f"%{period.strip()}", f"%{composer.strip()}", f"%{instrumentation.strip()}"])

    @classmethod
    def from_lines(cls, lines: Iterable[str]) -> "Prompt":
        clean = []
        for line in lines:
            line = to_ascii(line).rstrip("\r\n")
            if "\n" in line:
                raise PromptError(f"a prompt line holds a line break: {line!r}")
            if line.strip():
                clean.append(line + "\n")
        return cls(lines=tuple(clean))

    @classmethod
    def from_abc(cls, text: str) -> "Prompt":
        text = to_ascii(text.replace("\r\n", "\n").replace("\r", "\n"), "ABC prompt")
        if not text.strip():
            raise PromptError("the ABC text to continue is empty")
        lines = split_lines(text)
        if Patchilizer.find_body_start(lines, generate=True) is None:
            return cls.from_lines(lines)  # a header only: its lines are prompt lines
        return cls(text=text)

    @property
    def prompt_text(self) -> str:
        return self.text if self.text is not None else "".join(self.lines)

    @property
    def triple(self) -> tuple[str, ...] | None:
        """(period, composer, instrumentation) when the prompt is exactly three `%` lines."""
        if self.text is None and len(self.lines) == 3 and all(is_prompt_line(l) for l in self.lines):
            return tuple(l[1:].strip() for l in self.lines)
        return None



def split_header(text: str) -> tuple[str, str]:
    """(metadata lines, tune body from its first line on) of an ABC text; body "" when none."""
    offset = 0
    for raw in text.split("\n"):
        if raw.startswith(("[V:", "[r:")):
            return "".join(split_lines(text[:offset])), text[offset:]
        offset += len(raw) + 1
    return "".join(split_lines(text)), ""
