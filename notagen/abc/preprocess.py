"""Standard ABC -> cleaned ABC -> interleaved ABC and 15 rest-reduced transpositions (spec 2-5).

The outputs must be byte-identical to what the published checkpoints were trained on, so every
step mirrors the published semantics exactly, including its quirks:
- quoted-text edits use `str.replace` on the whole line (an edited quote changes every identical
  quote of that line), and they also apply to header lines;
- the bar check is abctoolkit's `check_alignment_unrotated`; a piece whose bars it cannot even
  read is rejected like a misaligned one;
- the reduced line of a bar where every voice rests is empty but still written (a bare "\\n").
Prompt lines are split off first and put back on top of every output (see `text.py`).
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import abctoolkit.transpose
from abctoolkit.check import check_alignment_unrotated
from abctoolkit.rotate import rotate_abc
from abctoolkit.transpose import transpose_an_abc_text
from abctoolkit.utils import (Barlines, Quote_re, extract_barline_and_bartext_dict,
                              remove_bar_no_annotations, remove_information_field)
from unidecode import unidecode

from .errors import AbcError, captured_output, last_lines
from .text import KEYS_15, join_prompt_lines, original_key, split_prompt_lines, text_to_lines

# Information fields the models never see (spec 2.3). `w:` lyrics are dropped with them.
DROPPED_FIELDS = ["X:", "T:", "C:", "W:", "w:", "Z:", "%%MIDI"]
MAX_ANNOTATION_CHARS = 40  # a `"^..."` / `"_..."` annotation longer than this (quotes included) is dropped
_REPEATED_SYMBOL = re.compile(r"([^a-zA-Z0-9])\1+")
_FIELD_LINE = re.compile(r"^[A-Za-z]:")
_REST_LETTERS = set("zZxX")

# abctoolkit's transposition looks the same key up in its tables for every note: a quarter of
# its time. The lookups are pure functions of their (string) arguments, so they are memoised.
for _name in ("lookup_new_keymode_to_transpose", "lookup_key_according_to_keymode"):
    _lookup = getattr(abctoolkit.transpose, _name)
    if not hasattr(_lookup, "cache_info"):
        setattr(abctoolkit.transpose, _name, functools.lru_cache(maxsize=4096)(_lookup))


@dataclass(frozen=True)
class PreprocessedPiece:
    """Everything stage 2 writes for one piece."""
    key: str                    # first field of the original K: (index files)
    interleaved: str            # untransposed, all voices
    augmented: dict[str, str]   # KEYS_15 name -> transposed, rest-reduced text


def _prompt_free(text: str) -> tuple[list[str], list[str]]:
    """ASCII prompt lines and the remaining lines of `text`."""
    prompts, body = split_prompt_lines(text)
    return [unidecode(line) for line in prompts], text_to_lines(body)


def _edit_quotes(line: str, edit) -> str:
    """Apply `edit(quote) -> replacement | None` to every quoted text found in the original line."""
    for quote in re.findall(Quote_re, line):
        replacement = edit(quote)
        if replacement is not None:
            line = line.replace(quote, replacement)
    return line


def _drop_quote_with_barline(quote: str):
    return "" if any(barline in quote for barline in Barlines) else None


def _shorten_annotation(quote: str):
    if quote == '""':
        return ""
    if quote[1] in "^_":
        collapsed = _REPEATED_SYMBOL.sub(r"\1", quote)
        return collapsed if len(collapsed) <= MAX_ANNOTATION_CHARS else ""
    return None


def _bar_dicts(lines: list[str]):
    """abctoolkit's per-voice split into prefix / left barlines / bar texts / right barlines."""
    try:
        with captured_output():
            return extract_barline_and_bartext_dict(lines)
    except Exception as exc:  # abctoolkit raises bare Exceptions / IndexErrors on odd bodies
        raise AbcError("unreadable bars", f"{type(exc).__name__}: {exc}") from None


def _check_bar_numbers(lines: list[str]) -> None:
    """Reject voices with different bar counts; like the published check (abctoolkit's
    `check_alignment_unrotated`), also reject a piece whose bar durations it cannot even read."""
    _, _, _, bar_texts, _ = _bar_dicts(lines)
    if len({len(bars) for bars in bar_texts.values()}) > 1:
        counts = ", ".join(f"{symbol} has {len(bars)}" for symbol, bars in bar_texts.items())
        raise AbcError("unequal bar numbers", counts)
    with captured_output() as chatter:
        try:
            check_alignment_unrotated(lines)
        except Exception as exc:
            raise AbcError("unreadable bars", f"{type(exc).__name__}: {exc} "
                                              f"{last_lines(chatter.getvalue(), 1)}") from None


def _clean_lines(lines: list[str]) -> list[str]:
    lines = [unidecode(line) for line in lines if line.strip()]
    lines = remove_information_field(lines, DROPPED_FIELDS)
    if not any(line.strip() == "V:1" for line in lines):
        raise AbcError("no voices", "no 'V:1' line starts a tune body")
    lines = remove_bar_no_annotations(lines)
    lines = [line if _FIELD_LINE.match(line) or line.startswith("%") else line.replace('\\"', "")
             for line in lines]
    lines = [_edit_quotes(line, _drop_quote_with_barline) for line in lines]
    _check_bar_numbers(lines)
    return [_edit_quotes(line, _shorten_annotation) for line in lines]


def clean_abc(text: str) -> str:
    """Spec section 2 on a standard ABC text (xml2abc output); raises AbcError for misaligned voices."""
    prompts, lines = _prompt_free(text)
    return join_prompt_lines(prompts, "".join(_clean_lines(lines)))


def _interleave_lines(lines: list[str]) -> str:
    try:
        with captured_output():
            return "".join(rotate_abc(list(lines)))
    except Exception as exc:
        raise AbcError("interleave failed", f"{type(exc).__name__}: {exc}") from None


def interleave_abc(text: str) -> str:
    """Cleaned standard ABC -> interleaved ABC, one line per bar with every voice (spec section 3)."""
    prompts, lines = _prompt_free(text)
    return join_prompt_lines(prompts, _interleave_lines(lines))


def _has_notes(bar_text: str) -> bool:
    return any(char.isalpha() and char not in _REST_LETTERS for char in bar_text)


def rest_reduce_lines(lines: list[str]) -> str:
    """Interleave standard ABC lines, leaving out each voice whose bar has only rests (spec section 4)."""
    metadata, prefixes, left_barlines, bar_texts, right_barlines = _bar_dicts(lines)
    text = "".join(line if line.endswith("\n") else line + "\n" for line in metadata)
    for index in range(len(bar_texts["V:1"])):
        patches = []
        for symbol in prefixes:
            bar = bar_texts[symbol][index]
            if not _has_notes(bar):
                continue
            # bar 0 also carries the voice's leading prefix (e.g. [K:...]) and left barline
            head = prefixes[symbol] + left_barlines[symbol][0] if index == 0 else ""
            patches.append(f"[{symbol}]{head}{bar}{right_barlines[symbol][index]}")
        text += "".join(patches) + "\n"
    return text


def _transposed_lines(lines: list[str], key: str) -> list[str]:
    try:
        with captured_output():
            text = transpose_an_abc_text(lines, key)
    except Exception as exc:
        raise AbcError("transposition failed", f"to {key}: {type(exc).__name__}: {exc}") from None
    return [line + "\n" for line in text.split("\n") if line.strip()]


def _augment_lines(lines: list[str]) -> dict[str, str]:
    return {key: rest_reduce_lines(_transposed_lines(lines, key)) for key in KEYS_15}


def reduce_abc(text: str) -> str:
    """Standard ABC -> cleaned, rest-reduced interleaved text in its own key (the model's format
    without a transposition; the prompt of a continuation)."""
    prompts, lines = _prompt_free(text)
    return join_prompt_lines(prompts, rest_reduce_lines(_clean_lines(lines)))


def augment_abc(text: str) -> dict[str, str]:
    """Cleaned standard ABC -> {key name: transposed, rest-reduced interleaved text} for KEYS_15."""
    prompts, lines = _prompt_free(text)
    return {key: join_prompt_lines(prompts, reduced) for key, reduced in _augment_lines(lines).items()}


def preprocess_abc(text: str, augment: bool = True) -> PreprocessedPiece:
    """Standard ABC -> everything stage 2 writes; cleaning runs once for all outputs."""
    prompts, lines = _prompt_free(text)
    cleaned = _clean_lines(lines)
    augmented = {key: join_prompt_lines(prompts, reduced)
                 for key, reduced in (_augment_lines(cleaned) if augment else {}).items()}
    return PreprocessedPiece(key=original_key(cleaned),
                             interleaved=join_prompt_lines(prompts, _interleave_lines(cleaned)),
                             augmented=augmented)
