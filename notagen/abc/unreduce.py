"""Generated (rest-reduced, stream-prefixed) text -> full interleaved ABC, and the alignment check.

`rest_unreduce` follows spec section 9 and reproduces the published outputs exactly: the inserted
rest takes the most common bar duration of the line (ties: the voice that comes first in the
line), the right barline of the line's last present voice, and on line 0 whatever precedes the
first `[V:`. Where the published code fails silently or crashes, this one raises `AbcError`:
- no `%%score` line while the piece has several voices (z/x cannot be chosen; a single voice
  needs no score line: it stands alone and rests with `z`);
- a line that misses voices but none of whose bars has a computable duration;
- a voice in the body that the header does not declare, or one voice twice in a line.
An empty body line is a bar where every voice rests (rest reduction writes it that way): it is
filled from the previous line's duration and barline, as the published code does.
"""
from __future__ import annotations

import re
from collections import Counter
from fractions import Fraction

from abctoolkit.check import check_alignment_unrotated
from abctoolkit.duration import calculate_bartext_duration
from abctoolkit.rotate import unrotate_abc
from abctoolkit.utils import Barline_regexPattern

from .errors import AbcError, captured_output
from .text import split_prompt_lines, strip_stream_prefixes, text_to_lines

_VOICE_PATCH = re.compile(r"\[V:(\d+)\](.*?)(?=\[V:|$)")
_ROUND_GROUP = re.compile(r"\((.*?)\)")


def bar_duration(bar_text: str):
    """abctoolkit's text-only bar duration (a Fraction), or None where it cannot tell."""
    try:
        with captured_output():  # it prints the bar and the error instead of raising
            return calculate_bartext_duration(bar_text)
    except Exception:
        return None


def bar_length(meter: str, unit: str = "1/8") -> Fraction | None:
    """A metre's bar (`M:` text: "3/4", "C", "C|", "2+3/8") in units of `L:` (unit), or None where
    the metre is free or unreadable."""
    meter = {"C": "4/4", "C|": "2/2"}.get(meter.strip(), meter.strip())
    match = re.fullmatch(r"([\d+]+)/(\d+)", meter)
    unit_match = re.fullmatch(r"(\d+)/(\d+)", unit.strip())
    if not match or not unit_match or not int(match[2]) or not int(unit_match[1]):
        return None
    beats = sum(int(part) for part in match[1].split("+") if part)
    return Fraction(beats, int(match[2])) / Fraction(int(unit_match[1]), int(unit_match[2]))


def split_header_body(lines: list[str]) -> tuple[list[str], list[str]]:
    """Header (prompt lines included) and body of interleaved text: the body starts at the first `[V:` line."""
    for index, line in enumerate(lines):
        if "[V:" in line:
            return lines[:index], lines[index:]
    raise AbcError("not interleaved", "no line contains [V:")


def declared_voices(header: list[str]) -> list[str]:
    """`V:n` symbols of the header, in voice-number order."""
    symbols = [line.split()[0] for line in header if line.startswith("V:") and line.split()]
    if not symbols:
        raise AbcError("no voices", "the header declares no V: line")
    try:
        return sorted(symbols, key=lambda symbol: int(symbol[2:]))
    except ValueError:
        raise AbcError("bad voice id", f"voice ids must be numbers: {symbols}") from None


def rest_letters(header: list[str], symbols: list[str]) -> dict[str, str]:
    """Which rest each voice gets: `z` for the first voice of a `( ... )` group or a lone voice, else `x`."""
    score_lines = [line for line in header if line.startswith("%%score")]
    if not score_lines:
        if len(symbols) == 1:
            return {symbols[0]: "z"}
        raise AbcError("no %%score line", "cannot tell which voices rest with z and which with x")
    letters = {}
    for group in _ROUND_GROUP.findall(score_lines[0]):
        for position, number in enumerate(group.split()):
            letters[f"V:{number}"] = "z" if position == 0 else "x"
    return {symbol: letters.get(symbol, "z") for symbol in symbols}


def _line_patches(line: str, line_number: int, declared: set[str]) -> dict[str, str]:
    patches: dict[str, str] = {}
    for number, bar in _VOICE_PATCH.findall(line):
        symbol = f"V:{number}"
        if symbol not in declared:
            raise AbcError("undeclared voice", f"line {line_number} has [{symbol}], the header does not")
        if symbol in patches:
            raise AbcError("repeated voice", f"line {line_number} has [{symbol}] twice")
        patches[symbol] = bar
    return patches


def _right_barline(bar: str) -> str:
    """The last barline of a voice's bar and whatever follows it."""
    return "".join(re.split(Barline_regexPattern, bar)[-2:])


def _reference_duration(patches: dict[str, str]):
    """Most common duration among the line's bars (first seen wins a tie), or None."""
    durations = Counter()
    for bar in patches.values():
        barline = _right_barline(bar)
        duration = bar_duration(bar[:-len(barline)] if barline else "")
        if duration is not None:
            durations[duration] += 1
    return max(durations, key=durations.__getitem__) if durations else None


def rest_unreduce(text: str) -> str:
    """Insert a rest for every voice a line leaves out; strip stream prefixes (spec section 9)."""
    header, body = split_header_body(text_to_lines(strip_stream_prefixes(text)))
    symbols = declared_voices(header)
    letters = rest_letters(header, symbols)
    out = [line if line.endswith("\n") else line + "\n" for line in header]
    reference, barline = None, None
    for line_number, line in enumerate(body):
        line = line.rstrip("\n")
        patches = _line_patches(line, line_number, set(symbols))
        if patches:
            barline = _right_barline(list(patches.values())[-1])
            reference = _reference_duration(patches)
        elif line.strip():
            raise AbcError("unreadable line", f"line {line_number} has no [V:n] bar: {line[:80]!r}")
        # an empty line keeps the previous line's duration and barline (a bar of silence)
        missing = [symbol for symbol in symbols if symbol not in patches]
        if missing and reference is None:
            raise AbcError("no bar duration",
                           f"line {line_number}: no bar has a computable duration to fill {missing}")
        lead = line.split("[V:")[0] if line_number == 0 else ""
        out.append("".join(
            f"[{symbol}]" + (patches[symbol] if symbol in patches
                             else f"{lead}{letters[symbol]}{reference}{barline}")
            for symbol in symbols) + "\n")
    return "".join(out)


def voice_bars(line: str) -> list[tuple[str, str, str]]:
    """(`V:n`, the bar's text, its right barline) of each voice of one body line (stream prefix allowed)."""
    bars = []
    for number, bar in _VOICE_PATCH.findall(strip_stream_prefixes(line.rstrip("\n"))):
        barline = _right_barline(bar)
        bars.append((f"V:{number}", bar[:-len(barline)] if barline else bar, barline))
    return bars


def line_problem(line: str, declared: set[str] | None = None, metre_bar: Fraction | None = None) -> str | None:
    """Why one body line (a bar of every voice, stream prefix allowed) cannot be aligned, or None.

    Text-only, as generation needs it the moment a line is complete: a voice that the header does
    not declare (`declared`; None: not checked), a voice twice, a voice with more than one bar, a
    bar whose duration abctoolkit cannot tell (broken text: an open chord or decoration; not one
    of the 88,000 body lines of the embedded fine-tuning set has one), voices whose bars last
    differently, or a line that leaves a declared voice out while its bars do not last the metre's
    `metre_bar` (in units of L; None: not checked): the rest filled in for that voice is a whole-bar rest,
    which lasts the metre. An empty line (every voice rests) is fine."""
    if not strip_stream_prefixes(line.rstrip("\n")).strip():
        return None
    bars = voice_bars(line)
    if not bars:
        return "no voice bar"
    durations, seen = set(), set()
    for symbol, inner, _ in bars:
        if declared is not None and symbol not in declared:
            return "undeclared voice"
        if symbol in seen:
            return "repeated voice"
        seen.add(symbol)
        if len(re.split(Barline_regexPattern, inner.lstrip(":|[]"))) > 1:
            return "several bars in a voice"
        duration = bar_duration(inner)
        if duration is None:
            return "bar of unknown duration"
        durations.add(duration)
    if len(durations) > 1:
        return "voices differ in duration"
    if metre_bar is not None and declared is not None and seen != declared and durations != {metre_bar}:
        return "a left-out voice's rest would not fill the bar"
    return None


def header_line_problem(line: str, header: str) -> str | None:
    """Why one complete header line cannot follow the header lines before it (`header`), or None:
    a voice declared again (`V:n` twice: its parts lose track of their bars), a voice line with an
    unclosed quote, or a `%%score` line that names a voice twice. Text-only, as generation needs
    it the moment the line is complete."""
    line = line.strip()
    if line.startswith("V:") and line.split():
        symbol = line.split()[0]
        if any(earlier.split()[:1] == [symbol] for earlier in header.split("\n")):
            return "voice declared twice"
        if line.count('"') % 2:  # a name's newline: the header's lines after it come apart
            return "unclosed quote"
    if line.startswith("%%score"):
        numbers = re.findall(r"\d+", line)
        if len(numbers) != len(set(numbers)):
            return "voice twice in %%score"
    return None


def is_rest_reduced(text: str) -> bool:
    """True when some body line of interleaved text leaves out a declared voice."""
    header, body = split_header_body(text_to_lines(strip_stream_prefixes(text)))
    declared = set(declared_voices(header))
    return any(set(f"V:{number}" for number, _ in _VOICE_PATCH.findall(line.rstrip("\n"))) != declared
               for line in body)


def full_interleaved(text: str) -> str:
    """Interleaved text with every voice on every line and no stream prefixes."""
    return rest_unreduce(text) if is_rest_reduced(text) else strip_stream_prefixes(text)


def check_bar_alignment(interleaved_text: str) -> bool:
    """True when every voice has the same number of bars and each bar lasts the same in every voice.

    Accepts generated text (prompt lines, stream prefixes, rest-reduced): it is restored, unrotated
    to standard ABC and checked with abctoolkit's `check_alignment_unrotated`. Any text that cannot
    get that far is not aligned.
    """
    try:
        _, body = split_prompt_lines(interleaved_text)
        with captured_output():
            standard = unrotate_abc(text_to_lines(full_interleaved(body)))
            _, bar_numbers_equal, bar_durations_equal = check_alignment_unrotated(standard)
    except Exception:  # AbcError or any abctoolkit failure: the text is not usable
        return False
    return bool(bar_numbers_equal and bar_durations_equal)
