"""Musical controls of a piece: key, meter, tempo and length in bars (`GenerationSettings.key`,
`.meter`, `.tempo`, `.bars`; `--key`, `--meter`, `--tempo`, `--bars` of inference.py; the demo's
fields beside the prompt). `Piece` asks a `PieceControls` at four points: which char is forced,
which chars are allowed, what a finished header line becomes, and whether a body line stands;
`ControlledPiece` (a mixin of `Piece`) does the bookkeeping that follows, and the line check
(`lines.py`) writes a voice's bar again.

Design choices
- Key, meter and tempo become the piece's own header lines (`K:`, `M:`, `Q:1/4=<tempo>`), written
  where the training data has them: after the model's `%%score` and `L:` lines, before its `V:`
  lines (xml2abc writes %%score, L:, Q:, M:, K:, V:). A header line of the model's for one of these
  fields is replaced by the chosen one; a line that comes later in that order (a `V:` line, the
  first body line) while a chosen line is missing is replaced by the missing lines, and the model
  writes it again after them. So the model reads the chosen lines where it learnt them and writes
  the rest of the header (voices, `%%score`, `L:`) itself.
- The key is spelt as the training data spells it (xml2abc): tonic, then `min`, `dor`, `phr`,
  `lyd`, `mix` or `loc`, nothing for major (`Dm` -> `Dmin`, `Ebmaj` -> `Eb`). A key signature of
  more than 7 sharps or flats does not exist and is refused.
- Bars N means N full bars; a pickup first bar (shorter than the meter) comes on top, as music21
  counts measures (N + 1 with a pickup). A body line is one bar of every voice, so the piece has N
  lines (N + 1). Every body line's stream prefix `[r:i/j]` is written for the model (j = lines still
  to come, as training data counts them), so it knows the piece's length from its first bar; the
  end-of-piece patch is not allowed before the last line, and the piece ends once its last line
  stands. A first bar that turns out to be a pickup gets its prefix written again (`[r:0/N]`, N
  lines to come), as training data counts a pickup. With the bar check the last line must close the piece: a final barline (`|]`, `||`) or a
  repeat end (`:|`).
- With the bar check (bar_retries > 0) the chosen meter is checked too: every bar of every voice
  lasts the meter, except a pickup first bar (shorter) and, in a piece with a pickup, the last bar
  (not longer); a change of meter or key inside the body (`[M:...]`, `[K:...]`) is refused. The
  check runs on each voice's bar as soon as the model ends its chunk (a patch ended by EOS: chunks
  end where a voice's bar does), and only that bar is written again (`bar_problem`), up to
  bar_retries times in each try at the line: a whole line written again until all its voices last
  the meter at once rarely gets there.
- Impossible values (an unknown key, meter `0/4`, bars 0, a tempo of 5000) raise `ControlError`, a
  ValueError, so scripts print one `error:` line.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

from abctoolkit.utils import Barline_regexPattern

from ..abc.text import strip_stream_prefixes
from ..abc.unreduce import bar_duration, voice_bars
from ..config import BOS_ID, EOS_ID, NUM_CHARS
from ..patchilizer import Patchilizer

TEMPO_RANGE = (20, 400)  # quarter notes per minute a `Q:` line may ask for
MAX_BARS = 1000  # longest piece in bars (the longest fine-tuning pieces have a few hundred)
_MODES = {"": "", "maj": "", "major": "", "ion": "", "ionian": "", "m": "min", "min": "min", "minor": "min",
          "aeo": "min", "aeolian": "min", "dor": "dor", "dorian": "dor", "phr": "phr", "phrygian": "phr",
          "lyd": "lyd", "lydian": "lyd", "mix": "mix", "mixolydian": "mix", "loc": "loc", "locrian": "loc"}
_MODE_SHIFT = {"": 0, "min": -3, "dor": -2, "phr": -4, "lyd": 1, "mix": -1, "loc": -5}  # sharps against major
_TONIC_SHARPS = {"C": 0, "G": 1, "D": 2, "A": 3, "E": 4, "B": 5, "F": -1}  # on the circle of fifths
_KEY = re.compile(r"([A-Ga-g])([#b]?)\s*([A-Za-z]*)")
_METER = re.compile(r"(\d+(?:\+\d+)*)/(\d+)")
_PREFIX = re.compile(r"\[r:(\d+)/(\d+)\]")
_VOICE_TAG = re.compile(r"\[V:[^\]]*\]")
_FIELD_ORDER = ("Q", "M", "K", "V", "body")  # the training data's header order, then the body
_NO_END = [c for c in range(NUM_CHARS) if c not in (BOS_ID, EOS_ID)]  # a patch that does not end the piece


class ControlError(ValueError):
    """A key, meter, tempo or bar count that cannot be used."""


# ---------------------------------------------------------------------------------------------
# Settings -> checked, normalised values
# ---------------------------------------------------------------------------------------------
def normal_key(text: str) -> str:
    """An ABC key (`Dm`, `D minor`, `Eb`, `F#min`, `Ador`) spelt as the training data spells it;
    "" stays "" (the model chooses)."""
    text = (text or "").strip()
    if not text:
        return ""
    match = _KEY.fullmatch(text)
    mode = _MODES.get(match[3].lower()) if match else None
    if mode is None:
        raise ControlError(f"key {text!r}: not a key; give a tonic A-G, # or b, and a mode: "
                           f"e.g. C, Dm, Eb, F#min, Ador (modes: min, dor, phr, lyd, mix, loc; major: none)")
    tonic = match[1].upper() + match[2]
    sharps = _TONIC_SHARPS[tonic[0]] + 7 * (tonic[1:] == "#") - 7 * (tonic[1:] == "b") + _MODE_SHIFT[mode]
    if abs(sharps) > 7:
        raise ControlError(f"key {text!r}: would need {abs(sharps)} {'sharps' if sharps > 0 else 'flats'} "
                           f"(at most 7); spell it enharmonically")
    return tonic + mode


def normal_meter(text: str) -> str:
    """A meter (`3/4`, `6/8`, `2+3/8`, `C`, `C|`), checked; "" stays "" (the model chooses)."""
    text = (text or "").strip().replace(" ", "")
    if not text or text in ("C", "C|"):
        return text
    match = _METER.fullmatch(text)
    if not match:
        raise ControlError(f"meter {text!r}: give beats/unit such as 3/4, 6/8, 2+3/8, or C, C|")
    beats = [int(part) for part in match[1].split("+")]
    if not all(1 <= beat <= 64 for beat in beats):
        raise ControlError(f"meter {text!r}: a bar needs 1 to 64 beats")
    if int(match[2]) not in (1, 2, 4, 8, 16, 32, 64):
        raise ControlError(f"meter {text!r}: the unit must be 1, 2, 4, 8, 16, 32 or 64")
    return text


def whole_number(value, what: str, low: int, high: int) -> int | None:
    """An int from low to high (a string of digits too); None or "" or "none" is None (the model chooses)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return None
    try:
        number = float(str(value).strip()) if not isinstance(value, int) else value  # a page's number field sends floats
    except ValueError:
        raise ControlError(f"{what} {value!r}: not a whole number") from None
    if not math.isfinite(number) or number != int(number):
        raise ControlError(f"{what} {value!r}: not a whole number")
    number = int(number)
    if isinstance(value, bool) or not low <= number <= high:
        raise ControlError(f"{what} {value!r}: must be {low} to {high}")
    return number


def normal_controls(key, meter, tempo, bars) -> tuple[str, str, int | None, int | None]:
    """(key, meter, tempo, bars) checked and normalised, as `GenerationSettings` keeps them."""
    return (normal_key(key), normal_meter(meter), whole_number(tempo, "tempo", *TEMPO_RANGE),
            whole_number(bars, "bars", 1, MAX_BARS))


# ---------------------------------------------------------------------------------------------
# One piece under controls
# ---------------------------------------------------------------------------------------------
def line_index(line: str) -> int | None:
    """i of a body line's stream prefix `[r:i/j]`, or None without one."""
    match = _PREFIX.match(line)
    return int(match[1]) if match else None


def _field(line: str) -> str | None:
    if line.startswith(("[r:", "[V:")):
        return "body"
    return line[0] if line[:2] in ("Q:", "M:", "K:", "V:") else None


def _bar_text(segment: str) -> str:
    """A voice's bar text after its `[V:n]` tag, without its closing barline (if it has one yet)."""
    parts = re.split(Barline_regexPattern, segment.rstrip("\n"))
    return "".join(parts[:-2]) if len(parts) > 1 and not parts[-1].strip() else segment.rstrip("\n")


def closes(line: str) -> bool:
    """Every voice of the line ends with a final barline (`|]`, `||`) or a repeat end (`:|`)."""
    bars = voice_bars(line)
    return bool(bars) and all("]" in barline or "||" in barline or ":|" in barline for _, _, barline in bars)


@dataclass
class PieceControls:
    """A piece's controls (settings already normalised) and what it has learnt: whether its first bar is a pickup."""
    key: str = ""
    meter: str = ""
    tempo: int | None = None
    bars: int | None = None
    pickup: bool = False

    @classmethod
    def of(cls, settings) -> "PieceControls | None":
        """The controls of `GenerationSettings`, or None when it sets none."""
        values = (settings.key, settings.meter, settings.tempo, settings.bars)
        return cls(*values) if any(v not in ("", None) for v in values) else None

    @property
    def header_lines(self) -> dict[str, str]:
        """field -> the header line written for it."""
        lines = {"Q": f"Q:1/4={self.tempo}\n" if self.tempo else "", "M": f"M:{self.meter}\n" if self.meter else "",
                 "K": f"K:{self.key}\n" if self.key else ""}
        return {field: line for field, line in lines.items() if line}

    @property
    def total_lines(self) -> int | None:
        return None if self.bars is None else self.bars + self.pickup

    # -- the char decoder --------------------------------------------------------------------------
    def forced(self, text: str, typed: str, in_body: bool) -> int | None:
        """The next char of a body line's stream prefix, when a line starts at this patch: `text` is
        the piece so far (ending with a line), `typed` the new chars. In the header only once the
        model has begun the body (`[r:`)."""
        if self.bars is None or not (in_body or typed.startswith("[r:")):
            return None
        previous = text[text.rfind("\n", 0, len(text) - 1) + 1:]
        index = (line_index(previous) + 1) if line_index(previous) is not None else 0
        target = f"[r:{index}/{max(self.total_lines - 1 - index, 0)}]"
        return ord(target[len(typed)]) if len(typed) < len(target) and target.startswith(typed) else None

    def allowed_first(self) -> list[int] | None:
        """Chars a fresh patch may start with: not the end of the piece while bars are to come."""
        return _NO_END if self.bars is not None else None

    # -- lines -------------------------------------------------------------------------------------
    def header_edit(self, header: str, written: str) -> list[str] | None:
        """The lines that stand in place of `written` (header lines the model has just finished, or
        the start of the body), given the `header` before them; None: `written` stands as it is."""
        chosen = self.header_lines
        present = {_field(line) for line in header.split("\n")}
        out, changed = [], False
        for line in written.splitlines(keepends=True):
            field = _field(line)
            if field is None:
                out.append(line)
                continue
            missing = [f for f in _FIELD_ORDER[:_FIELD_ORDER.index(field)] if f in chosen and f not in present]
            present |= set(missing)
            out += [chosen[f] for f in missing]
            changed |= bool(missing)
            if field in chosen:
                out.append(chosen[field])
                present.add(field)
                changed |= line != chosen[field]
            elif missing and field in ("V", "body"):  # before a chosen line: the model writes it again after it
                break
            else:
                out.append(line)
        if out and not out[-1].endswith("\n"):  # a line the model had begun: it writes it again
            out.pop()
        return out if changed else None

    def _meter_problem(self, duration: Fraction, index: int | None, bar: Fraction) -> str | None:
        """Why a bar of this duration cannot be bar `index` of the piece under the chosen meter."""
        last = self.bars is not None and index is not None and index + 1 >= self.total_lines
        if index == 0 or (last and self.pickup):  # a pickup, or the bar that completes one
            return None if duration <= bar else "a bar longer than the meter"
        return None if duration == bar else "a bar that does not last the meter"

    def bar_problem(self, line: str, bar: Fraction | None) -> str | None:
        """Why the last voice's bar of a line being written (the model has just ended its chunk)
        breaks the chosen meter, or None: unknown duration, another duration than the line's first
        voice, or not the meter's. `bar`: the meter's bar in units of L (None: unknown)."""
        if not self.meter or bar is None:
            return None
        bars = [_bar_text(segment) for segment in _VOICE_TAG.split(strip_stream_prefixes(line))[1:]]
        duration = bar_duration(bars[-1]) if bars else None
        if not bars or duration is None:
            return "bar of unknown duration" if bars else None
        if len(bars) > 1 and duration != bar_duration(bars[0]):
            return "voices differ in duration"
        return self._meter_problem(duration, line_index(line), bar)

    def line_problem(self, line: str, bar: Fraction | None) -> str | None:
        """Why a body line (one the bar check passed) breaks the controls, or None. `bar`: the
        meter's bar in units of L (None: unknown)."""
        index = line_index(line)
        if self.meter and re.search(r"\[M:", line):
            return "meter change"
        if self.key and re.search(r"\[K:", line):
            return "key change"
        last = self.bars is not None and index is not None and index + 1 >= self.total_lines
        if last and not closes(line):
            return "the last bar does not close the piece"
        bars = voice_bars(line)
        duration = bar_duration(bars[0][1]) if bars else None  # the bar check saw every voice last the same
        if not self.meter or bar is None or duration is None:
            return None
        return self._meter_problem(duration, index, bar)

    def recount(self, line: str) -> str | None:
        """The line with a stream prefix that counts the lines still to come, when its own does not
        (a first bar found to be a pickup after its prefix was written); else None."""
        match = _PREFIX.match(line)
        if self.bars is None or not match:
            return None
        right = f"[r:{match[1]}/{max(self.total_lines - 1 - int(match[1]), 0)}]"
        return None if match[0] == right else right + line[match.end():]

    def line_stood(self, line: str, bar: Fraction | None) -> bool:
        """A body line stands: True when it is the piece's last. Its first line tells whether the
        piece has a pickup (a first bar shorter than the meter)."""
        index = line_index(line)
        if index == 0 and bar is not None and (bars := voice_bars(line)):
            duration = bar_duration(bars[0][1])
            self.pickup = duration is not None and 0 < duration < bar
        return self.bars is not None and index is not None and index + 1 >= self.total_lines


# ---------------------------------------------------------------------------------------------
# What a Piece does for its controls
# ---------------------------------------------------------------------------------------------
class ControlledPiece:
    """`Piece`'s bookkeeping for its controls (`self.controls`, a PieceControls): header lines
    replaced, the piece ended after its last bar, a pickup's line recounted (a voice's bar written
    again is the line check's: `LineChecker.rejects_bar`). A mixin of `Piece`: it works on Piece's
    text, context and line marks (`_cut_back`, `_line_started`, `_last_line`, `self.lines`), and
    keeps the controls' part of them in this module."""

    def _edit_header(self, lines: list[str]) -> bool:
        """The model's latest header text gives way to `lines` (`PieceControls.header_edit`): True when
        the context is to be encoded again, False when the header no longer fits it (the piece fails)."""
        self._cut_back(self.lines.line)
        self.text, self.metadata = self.text + "".join(lines), self.metadata + "".join(lines)
        self.context += self.patchilizer.encode_metadata(lines)
        self._line_started()
        if len(self.context) >= self.patch_length:
            self._finish("failed", "metadata_overflow")
            return False
        return True

    def _ends_piece(self) -> bool:
        """A body line stands: after the last chosen bar the piece is finished."""
        line = self._last_line()
        if not self.controls.line_stood(line, self.lines.bar(self.metadata, line)):
            return False
        self._line_started()
        self._finish("finished")
        return True

    def _recounted(self) -> bool:
        """A first bar found to be a pickup gets the stream prefix that counts it (its chunks encoded
        as training encodes them): True when the context is to be encoded again."""
        line = self._last_line()
        fixed = self.controls.recount(line)
        if fixed is None or len(self.context) >= self.patch_length:
            return False
        self.text, self.body = self.text[:-len(line)] + fixed, self.body[:-len(line)] + fixed
        self.context = self.context[:self.lines.line.context] + [
            self.patchilizer.patch_to_ids(patch) for bar in Patchilizer.split_bars([fixed])
            for patch in self.patchilizer.chunk_to_patches(bar)]
        self._line_started()
        return True
