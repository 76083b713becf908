"""The line check of a piece being generated: whether each line the model finishes stands, where a
line that does not is cut back to, and the voice order inside a body line. Text only: `Piece`
(`piece.py`) owns the text and context, asks its `LineChecker`, and cuts itself back to the
`LineStart` it is given.

Design choices
- Bar-checked generation (`bar_retries` > 0; not in the published loop, which is `bar_retries=0`):
  when a body line (one bar of every voice) is complete and `line_problem` finds its voices
  misaligned (a voice twice, two bars in one voice, bars of different durations), the piece goes
  back to the end of the previous line and writes the line again from its own random stream, up to
  `bar_retries` times per line (then the line stays). Text is then released line by line
  (`release_end`), so what the events carry never has to be taken back; a stream rebuild inside a
  line lets that line stand. A line that leaves a voice out must last the metre (the rest filled in
  for that voice is a whole-bar rest).
- Voice order (with the bar check): after `[V:` only the names of voices that come later than the
  line's last one can be written (`voice_chars`; the corpus writes them in numeric order), so no
  line repeats a voice or goes back to an earlier one.
- Header-checked generation (`header_retries` > 0; not in the published loop): header lines the
  model writes are checked the same way (`header_line_problem`): a `V:n` line that declares a voice
  again or leaves a quote open, or a `%%score` line naming a voice twice, is written again (such
  headers make pieces whose parts differ in length: 45 of the shipped model's 84 unusable pieces in
  207); a header line out of retries sends the piece back to the start of its header (up to
  `header_retries` times): a header that has gone wrong (a fifth voice after a four-voice
  `%%score`) often leaves the model no good next line. The header is then released only once a
  body line stands.
- Controls (`controls.py`): a body line must also keep the chosen meter and close the piece when it
  is the last (`PieceControls.line_problem`); with a chosen meter each voice's bar is checked as
  soon as its chunk ends and only that bar is written again (`rejects_bar`, cut back to `chunk`).
- The marks are `LineStart`s: a snapshot of the piece's text and context lengths that `Piece`
  takes and restores; the checker only reads where the text, the metadata and the rebuilds stood.
"""
from __future__ import annotations

import re
from fractions import Fraction
from typing import NamedTuple

from ..abc.errors import AbcError
from ..abc.unreduce import bar_length, declared_voices, header_line_problem, line_problem
from .controls import PieceControls

_VOICE_TAG = re.compile(r"\[V:([^\]]*)\]")
INLINE_METER = re.compile(r"\[M:([^\]]*)\]")


class LineStart(NamedTuple):
    """Where a line (or a voice's bar) began: what a rejected one is cut back to (`Piece` takes it)."""
    text: int  # len(piece.text)
    metadata: int
    body: int
    context: int  # patches
    partial: list[int]  # the open last patch's chars
    in_body: bool
    empty_run: int
    rebuilds: int  # len(piece.stream_events)


class Header(NamedTuple):
    """What the line check reads off a piece's metadata."""
    order: list[str]  # voice names in the order body lines write them (numeric when all are numbers)
    declared: set[str]  # the declared `V:n` symbols
    meter: str | None  # the `M:` metre
    unit: str  # the `L:` unit


def read_header(metadata: str) -> Header:
    lines = [line.strip() for line in metadata.split("\n")]
    names = [line.split()[0][2:] for line in lines if line.startswith("V:") and line.split()]
    try:
        order = [symbol[2:] for symbol in declared_voices(lines)]  # rest_unreduce's order
    except AbcError:  # no voices, or names that are not numbers: the declared order
        order = names
    last = lambda key, default: ([default] + [l[2:] for l in lines if l.startswith(key)])[-1]  # noqa: E731
    return Header(order, {f"V:{name}" for name in names}, last("M:", None), last("L:", "1/8"))


class LineChecker:
    """One piece's line check: its retries, its marks (`line`, `header_start`, `chunk`) and counts."""

    def __init__(self, bar_retries: int, header_retries: int, controls: PieceControls | None = None,
                 body: str = ""):
        """`body`: the tune body the piece starts with (a continued piece's), for its last inline metre."""
        self.bar_retries, self.header_retries, self.controls = bar_retries, header_retries, controls
        self.meter = ([None] + INLINE_METER.findall(body))[-1]  # inline metre in force at the line start
        self.line: LineStart | None = None  # where the line being written began
        self.header_start: LineStart | None = None  # where a header that went wrong starts over
        self.chunk: LineStart | None = None  # where the voice's bar being written began (controls)
        self.line_retries = 0  # rewrites of the line being written
        self.header_restarts = 0
        self.bar_rewrites = 0  # rewrites of single bars in this try at the line (controls)
        self.resampled_lines = 0  # lines and bars written again, in all
        self.resampled_at_line = 0  # resampled_lines when the line being written began
        self._header_of, self._header = None, None  # the metadata last read, and what it said

    @property
    def line_rewrites(self) -> int:
        """Rewrites of the line being written (its bars' included)."""
        return self.resampled_lines - self.resampled_at_line

    @property
    def holds_back(self) -> bool:
        """Whether text is released line by line (a check may take the line being written back)."""
        return bool(self.bar_retries or self.header_retries or self.controls)

    def header(self, metadata: str) -> Header:
        if self._header_of != metadata:
            self._header_of, self._header = metadata, read_header(metadata)
        return self._header

    def bar(self, metadata: str, line: str) -> Fraction | None:
        """The metre's bar (units of L) at a body line: the header's, or the last inline one; None if unknown."""
        header = self.header(metadata)
        meter = ([self.meter or header.meter] + INLINE_METER.findall(line))[-1]
        return bar_length(meter, header.unit) if meter else None

    # -- marks -------------------------------------------------------------------------------------
    def start_line(self, start: LineStart, ended: str) -> None:
        """A new line begins at `start`; `ended` is the line before it (its inline metre holds on)."""
        self.meter = ([self.meter] + INLINE_METER.findall(ended))[-1]
        self.line_retries = self.bar_rewrites = 0
        self.resampled_at_line = self.resampled_lines
        self.line, self.chunk = start, None
        if self.header_start is None:  # the piece's first mark: its header starts there
            self.header_start = start

    def release_end(self, text_length: int, done: bool) -> int:
        """Where the text that can no longer be taken back ends: all of it without a check or once
        done, else the start of the line being written; the header only once a body line stands
        (until then the header may start over)."""
        if done or not self.holds_back:
            return text_length
        if self.line.in_body or not self.header_retries:
            return self.line.text
        return self.header_start.text

    # -- the char decoder --------------------------------------------------------------------------
    def voice_chars(self, metadata: str, line: str) -> list[int] | None:
        """Chars the voice-order rule allows next in `line`, the line being written with the new
        chars so far (None: any char).

        Only with the bar check, inside a body line, after `[V:`: the voices declared after the
        line's last voice (none written yet: all of them). None when no such voice is left, so the
        bar check sees what the model writes."""
        if not self.bar_retries:
            return None
        opened = line.rfind("[V:")
        if opened < 0 or "]" in line[opened:] or not line.startswith(("[r:", "[V:")):
            return None
        order, typed = self.header(metadata).order, line[opened + 3:]
        written = _VOICE_TAG.findall(line[:opened])
        if any(name not in order for name in written):
            return None
        later = order[max((order.index(name) for name in written), default=-1) + 1:]
        chars = {ord(name[len(typed)]) for name in later if name.startswith(typed) and len(name) > len(typed)}
        chars |= {ord("]")} if typed in later else set()
        return sorted(chars) or None

    # -- finished lines ----------------------------------------------------------------------------
    def problem(self, metadata: str, body: str, line: str, in_body: bool, line_ended: bool) -> str | None:
        """Why the lines completed since the line start cannot stand: each new header line against
        the header before it; `line`, the last line, when the patch ended it, as a body line
        (`body`: the piece's body, which tells whether it is the first body line)."""
        offset = self.line.metadata
        for header_line in metadata[offset:].splitlines(keepends=True) if self.header_retries else []:
            if header_line.endswith("\n") and (problem := header_line_problem(header_line, metadata[:offset])):
                return problem
            offset += len(header_line)
        if not (in_body and line_ended):
            return None
        bar = self.bar(metadata, line)
        problem = line_problem(line, self.header(metadata).declared or None,
                               bar if len(body) > len(line) else None)  # not the first body line
        return problem or (self.controls.line_problem(line, bar) if self.controls else None)

    def rejects_line(self, metadata: str, body: str, line: str, in_body: bool, line_ended: bool,
                     rebuilds: int) -> LineStart | None:
        """Where the piece is cut back to when the lines completed since the line start have a
        problem (a misaligned body line, a header line that declares a voice again): the line start
        while the line has retries left; a header line out of retries, the start of the header (as
        many times). None: they stand (also when the context was rebuilt inside the line)."""
        if self.line.rebuilds != rebuilds:
            return None
        retries = self.bar_retries if in_body else self.header_retries
        retry_line = self.line_retries < retries
        restart_header = not retry_line and not in_body and self.header_restarts < retries
        if not (retry_line or restart_header) or self.problem(metadata, body, line, in_body, line_ended) is None:
            return None
        if retry_line:
            self.line_retries += 1
            self.bar_rewrites = 0  # each try at the line may write its bars again
        else:  # the header so far leaves no good next line: write it again
            self.line, self.line_retries = self.header_start, 0
            self.header_restarts += 1
        self.resampled_lines += 1
        return self.line

    def rejects_bar(self, metadata: str, line: str, in_body: bool, chunk_ended: bool, rebuilds: int
                    ) -> LineStart | None:
        """With controls: where the piece is cut back to when the voice's bar whose chunk the model
        has just ended (`line`: the line so far) breaks the chosen meter, up to bar_retries times in
        each try at the line (`PieceControls.bar_problem`); None: it stands."""
        start = self.chunk
        if not (self.controls and in_body and start and chunk_ended) or (
                self.bar_rewrites >= self.bar_retries or start.rebuilds != rebuilds):
            return None
        if self.controls.bar_problem(line, self.bar(metadata, line)) is None:
            return None
        self.bar_rewrites += 1
        self.resampled_lines += 1
        return start
