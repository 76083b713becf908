"""One piece's life during generation: its settings, result and events, and the published loop's
bookkeeping of text and context (no tensors). The engine (`engine.py`) drives many at once.

How a piece grows (docs/spec/model.md, "Generation")
- The patch-level context starts as BOS patch + one metadata chunk per prompt line. The feature of
  its last complete patch conditions the char-level decoder, which writes the next patch char by
  char ([feature] + chars so far -> next char). When the context ends in an open patch (after a
  stream rebuild the last bar stays open), the new chars continue it and only they add text.
- A patch ends at its first EOS char or at 16 chars. A patch starting with chars (1, 2) is the EOS
  patch: the piece is finished. The first patch whose text starts with `[r:` gets `0/` forced as its
  next two chars (the published loop regenerates it with `[r:0/` forced: the same distribution).
- Stream continuation: when the context reaches patch_length patches it is rebuilt from the text,
  `encode_generate(metadata + last c body lines)`, c = half the body lines at the first rebuild.
  "metadata" is the prompt lines + the metadata the model generated before the body (the greedy
  vectors' rebuild points and texts decide this); the body lines are those of the context's body,
  stripped and re-split exactly as published (see `Piece.rebuild`). A rebuilt context that is still
  too long loses body lines from the front (the published code cut off its newest patches
  instead, which can stall a piece for good).
- Limits: a piece fails as soon as its text (prompt lines included) exceeds `max_chars`, when it
  runs past `max_seconds`, or after `max_empty_patches` patches in a row that add no text.
- Prompts (`Prompt`, `PromptError`, `split_header`): `prompt.py`.
- Line checks (`bar_retries`, `header_retries` > 0; not in the published loop): whether a finished
  body or header line stands, where a rejected one is cut back to, the voices' order inside a body
  line, and how far text is released: `lines.py` (`LineChecker`, `piece.lines`). `Piece` takes the
  marks (`LineStart`) and cuts itself back to them.
- Controls (`key`, `meter`, `tempo`, `bars`; none by default): the chosen header lines, the stream
  prefixes of a piece of N bars, its end, and the meter check are `controls.py`'s (`PieceControls`,
  `ControlledPiece`); with controls, text is released line by line as with the checks. A stall
  limit (`stall_seconds`) ends a piece that has had no new body line for that long (`no_new_bar`).
- Guidance (`guidance` g != 1; not in the published loop): every piece has a twin context without
  its leading `%` style lines (`Piece.free_context`), and each char is drawn from
  free + g * (prompted - free) logits (classifier-free guidance): g > 1 follows the prompt more.
"""
from __future__ import annotations

import itertools
import re
import time
from dataclasses import dataclass, field
from typing import NamedTuple

from ..abc.text import is_prompt_line
from ..config import BOS_ID, EOS_ID, PAD_ID
from ..patchilizer import Patchilizer, split_lines
from .controls import ControlledPiece, PieceControls, normal_controls
from .lines import LineChecker, LineStart
from .prompt import Prompt, split_header

R0_TRIGGER = [ord(c) for c in "[r:"]  # first three chars of the first tune-body patch ...
R0_FORCED = [ord(c) for c in "0/"]  # ... are followed by these, so the body starts at line 0
CHECKED_BAR_RETRIES = 32  # default retries of the bar and header checks (GenerationSettings.published(): 0, no check)
REBUILT, REWOUND = "rebuilt", "rewound"  # what `Piece.add_patch` did to the context besides appending


# ---------------------------------------------------------------------------------------------
# Settings and results
# ---------------------------------------------------------------------------------------------
@dataclass
class GenerationSettings:
    """How pieces are sampled; the defaults are inference/config.py's (the published sampling with
    this project's bar and header checks). `GenerationSettings.published()` is the published sampler."""
    top_k: int = 9  # published defaults
    top_p: float = 0.9
    temperature: float = 1.2
    greedy: bool = False  # argmax every char (top_k == 1 is greedy too)
    seed: int | None = None  # None: a fresh random seed
    max_chars: int = 102400  # a piece fails once its text (prompt included) is longer
    max_seconds: float = 1200.0  # wall-clock limit per piece
    max_empty_patches: int = 64  # patches in a row without text -> stalled
    max_patches: int | None = None  # a piece fails after this many generated patches (None: no limit)
    batch_size: int = 1  # pieces generated together
    bar_retries: int = CHECKED_BAR_RETRIES  # resample a misaligned bar line up to this many times (0: the published loop)
    header_retries: int = CHECKED_BAR_RETRIES  # rewrite a header line that declares a voice again up to this many times, then the header (as often) (0: the published loop)
    guidance: float = 1.0  # classifier-free guidance on the prompt lines: logits = free + g * (prompted - free); 1 = off (published)
    stall_seconds: float = 0.0  # a piece with no new body line for this long ends (reason no_new_bar); 0 = no limit
    key: str = ""  # K: of the piece, e.g. Dm, Eb, F#min ("" = the model chooses); controls.py
    meter: str = ""  # M: of the piece, e.g. 3/4, 6/8, C ("" = the model chooses)
    tempo: int | None = None  # Q:1/4=<tempo>, quarter notes per minute (None = the model chooses)
    bars: int | None = None  # full bars of the piece (a pickup comes on top); None = the model ends it

    @classmethod
    def published(cls, **overrides) -> "GenerationSettings":
        """The published sampler: the same defaults without the bar and header checks (what the
        golden vectors record); `overrides` as for the constructor."""
        return cls(**{"bar_retries": 0, "header_retries": 0, **overrides})

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, not {self.batch_size}")
        if self.temperature <= 0 and not self.greedy:
            raise ValueError(f"temperature must be > 0, not {self.temperature} (use greedy for argmax)")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], not {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = no top-k cut), not {self.top_k}")
        if self.bar_retries < 0:
            raise ValueError(f"bar_retries must be >= 0 (0 = no bar check), not {self.bar_retries}")
        if self.header_retries < 0:
            raise ValueError(f"header_retries must be >= 0 (0 = no header check), not {self.header_retries}")
        if self.guidance < 0:
            raise ValueError(f"guidance must be >= 0 (1 = off, > 1 follows the prompt more), not {self.guidance}")
        if self.stall_seconds < 0:
            raise ValueError(f"stall_seconds must be >= 0 (0 = no limit), not {self.stall_seconds}")
        self.key, self.meter, self.tempo, self.bars = normal_controls(self.key, self.meter, self.tempo, self.bars)


@dataclass
class PieceResult:
    index: int
    prompt: Prompt
    text: str  # everything: prompt text + generated text
    status: str  # "finished" (EOS patch) or "failed"
    reason: str = ""  # why it failed: max_chars, max_seconds, stalled, no_new_bar, metadata_overflow, max_patches
    seconds: float = 0.0
    patches: int = 0  # patches generated
    stream_events: list[int] = field(default_factory=list)  # text length at each context rebuild
    resampled_lines: int = 0  # bar lines written again by the bar check

    @property
    def chars(self) -> int:
        return len(self.text)

    @property
    def ok(self) -> bool:
        return self.status == "finished"


class GenerationEvent(NamedTuple):
    """One per piece for its prompt, one per generated patch (text may be ""), one at its end."""
    piece: int  # index of the piece in the prompts given
    text: str  # new text: the prompt text first, then each patch's chars
    result: PieceResult | None = None  # set on the last event of a piece (its text is "")


# ---------------------------------------------------------------------------------------------
# One piece's text and context (the published loop's bookkeeping, no tensors)
# ---------------------------------------------------------------------------------------------
class Piece(ControlledPiece):
    """One piece being generated: its text (prompt + generated), split into metadata and body, and
    the patch-level context the model reads (`context` + the open `partial` patch). The engine asks
    it which chars come next (`prefix`, `forced`, `allowed`, `patch_done`) and hands it each patch
    (`add_patch`); its line check (`self.lines`, a `LineChecker`) says where a rejected line is cut
    back to, and the controls (`self.controls`, `ControlledPiece`) edit its header and end it."""

    def __init__(self, index: int, prompt: Prompt, patchilizer: Patchilizer, patch_length: int,
                 settings: GenerationSettings):
        self.index, self.prompt, self.settings = index, prompt, settings
        self.patchilizer, self.patch_length = patchilizer, patch_length
        self.patch_size = patchilizer.patch_size
        self.started = self.progressed = time.monotonic()  # progressed: when the last body line stood
        self.controls = PieceControls.of(settings)
        self.patches = 0
        self.empty_run = 0
        self.cut: int | None = None  # c: body lines kept by a rebuild, fixed at the first one
        self.stream_events: list[int] = []
        self.status: str | None = None
        self.reason = ""
        self.text = prompt.prompt_text
        # the leading style lines' (`%period`, `%composer`, ...) patches: guidance's twin leaves them out
        style = list(itertools.takewhile(is_prompt_line, prompt.lines)) if settings.guidance != 1 else []
        self.prompt_patches = patchilizer.encode_metadata(style) if style else []
        if prompt.text is None:
            # the prompt lines belong to the metadata that every stream rebuild keeps
            self.metadata, self.body, self.in_body = "".join(prompt.lines), "", False
            self.context = [patchilizer.bos_patch] + patchilizer.encode_metadata(list(prompt.lines))
            self.partial: list[int] = []
        else:
            self.metadata, self.body = split_header(prompt.text)
            self.in_body = True
            self.context, self.partial = [], []
            self._set_context(split_lines(self.body, keep_last_unfinished=True))
        self.released = len(self.text)  # text already handed out (the engine's first event: the prompt)
        self.lines = LineChecker(settings.bar_retries, settings.header_retries, self.controls, self.body)
        self._line_started()  # the piece's first mark: where its header starts over
        if self.controls and (first := re.search(r"^\[r:0/.*\n", self.text, re.M)):  # continued: a pickup?
            self.controls.line_stood(first[0], self.lines.bar(self.metadata, first[0]))
        self._check_limits()

    @property
    def free_context(self) -> list[list[int]]:
        """The context without the prompt lines (guidance's twin): BOS, then what follows them."""
        k = len(self.prompt_patches)
        if k and self.context[1:1 + k] == self.prompt_patches:
            return self.context[:1] + self.context[1 + k:]
        return self.context  # no prompt lines in the context (e.g. dropped by a rebuild): no guidance

    # -- the char decoder's view of the next patch ---------------------------------------------
    def prefix(self) -> list[int]:
        """Chars the next patch starts with (an open last patch of the context)."""
        return list(self.partial)

    def forced(self, new: list[int]) -> int | None:
        """A char that must come next, given the new chars of the patch so far (the `[r:0/` rule;
        with controls, the stream prefix of a line that starts with this patch)."""
        typed = "".join(map(chr, new))
        if self.controls and not self.partial and "\n" not in typed and self.text.endswith("\n") and (
                (char := self.controls.forced(self.text, typed, self.in_body)) is not None):
            return char
        if not self.in_body and not self.partial and new[:3] == R0_TRIGGER and 3 <= len(new) < 5:
            return R0_FORCED[len(new) - 3]
        return None

    def allowed(self, new: list[int]) -> list[int] | None:
        """Chars allowed next, given the new chars so far (None: any char): the voice-order rule's
        (`LineChecker.voice_chars`), else, at a fresh patch of a piece with a bar count, any but the
        end of the piece."""
        line = self.text[self.text.rfind("\n") + 1:] + "".join(map(chr, new))
        voices = self.lines.voice_chars(self.metadata, line)
        if voices is None and self.controls and not new and not self.partial:
            return self.controls.allowed_first()
        return voices

    def patch_done(self, new: list[int]) -> bool:
        return (new and new[-1] == EOS_ID) or len(self.partial) + len(new) >= self.patch_size

    # -- after the char decoder ------------------------------------------------------------------
    def add_patch(self, new: list[int]) -> tuple[str, str]:
        """Append a generated patch; returns (the text it releases, "" | REBUILT | REWOUND).

        REBUILT: the context was encoded again (the engine prefills it). REWOUND: the line it ended
        was rejected and the context cut back to `len(self.context)` patches."""
        outcome = self._append(new)
        return self._release(), outcome

    def _append(self, new: list[int]) -> str:
        self.patches += 1
        if new[:2] == [BOS_ID, EOS_ID]:
            self._finish("finished")
            return ""
        if self.controls and self.in_body and (not self.context or EOS_ID in self.context[-1]):
            self.lines.chunk = self._mark()  # a chunk (a voice's bar) starts: what `rejects_bar` cuts back to
        text = Patchilizer.patch_text(new)
        began_body = not self.in_body and text.startswith("[r:")
        self.in_body = self.in_body or began_body
        self.text += text
        if self.in_body:
            self.body += text
        else:
            self.metadata += text
        patch = self.partial + new
        patch += [PAD_ID] * (self.patch_size - len(patch))
        self.context.append(patch)
        self.partial = []
        self.empty_run = 0 if text else self.empty_run + 1
        if (start := self._rejected(new, text)) is not None:
            self._cut_back(start)
            return "" if self._check_limits() else REWOUND
        line = self.lines.line
        if self.controls and (began_body or "\n" in text and not self.in_body) and (
                (lines := self.controls.header_edit(self.metadata[:line.metadata], self.text[line.text:])) is not None):
            return REBUILT if self._edit_header(lines) else ""
        if text.endswith("\n"):
            if self.in_body and self.controls and (self._ends_piece() or self._recounted()):
                return "" if self.done else REBUILT  # the last chosen bar, or a pickup's line recounted
            self._line_started()
        if self._check_limits():
            return ""
        if len(self.context) >= self.patch_length:
            if not self.rebuild():
                return ""
            if text.endswith("\n"):  # the rebuilt context is the new line's start
                self._line_started()
            return REBUILT
        return ""

    # -- the line check's marks (lines.py) ------------------------------------------------------
    def _last_line(self) -> str:
        return self.text[self.text.rfind("\n", 0, len(self.text) - 1) + 1:]

    def _mark(self) -> LineStart:
        return LineStart(len(self.text), len(self.metadata), len(self.body), len(self.context), list(self.partial),
                         self.in_body, self.empty_run, len(self.stream_events))

    def _line_started(self) -> None:
        if self.in_body:
            self.progressed = time.monotonic()
        self.lines.start_line(self._mark(), self._last_line())

    def _rejected(self, new: list[int], text: str) -> LineStart | None:
        """Where to cut back to when the patch just appended ended a voice's bar or a line that does
        not stand (`LineChecker`); None: it stands."""
        line, rebuilds = self._last_line(), len(self.stream_events)
        start = self.lines.rejects_bar(self.metadata, line, self.in_body, new[-1:] == [EOS_ID], rebuilds)
        if start is None and "\n" in text:  # a line ended (a header line may end inside a patch, after a stray newline)
            start = self.lines.rejects_line(self.metadata, self.body, line, self.in_body, text.endswith("\n"), rebuilds)
        return start

    def _cut_back(self, start: LineStart) -> None:
        self.text, self.metadata, self.body = (self.text[:start.text], self.metadata[:start.metadata],
                                               self.body[:start.body])
        self.context, self.partial = self.context[:start.context], list(start.partial)
        self.in_body, self.empty_run = start.in_body, start.empty_run

    def _release(self) -> str:
        """Text that can no longer be taken back (`LineChecker.release_end`)."""
        end = self.lines.release_end(len(self.text), self.done)
        text, self.released = self.text[self.released:end], max(self.released, end)
        return text

    def _check_limits(self) -> bool:
        if len(self.text) > self.settings.max_chars:
            self._finish("failed", "max_chars")
        elif time.monotonic() - self.started > self.settings.max_seconds:
            self._finish("failed", "max_seconds")
        elif self.empty_run >= self.settings.max_empty_patches > 0:
            self._finish("failed", "stalled")
        elif self.settings.max_patches is not None and self.patches >= self.settings.max_patches:
            self._finish("failed", "max_patches")
        elif self.settings.stall_seconds and time.monotonic() - self.progressed > self.settings.stall_seconds:
            self._finish("failed", "no_new_bar")
        return self.status is not None

    def _finish(self, status: str, reason: str = "") -> None:
        self.status, self.reason = status, reason

    @property
    def done(self) -> bool:
        return self.status is not None

    @property
    def draft(self) -> str:
        """Text written but not yet released: the line being written, which a check may take back."""
        return self.text[self.released:]

    def result(self) -> PieceResult:
        return PieceResult(self.index, self.prompt, self.text, self.status or "failed", self.reason,
                           time.monotonic() - self.started, self.patches, self.stream_events,
                           self.lines.resampled_lines)

    # -- stream continuation ---------------------------------------------------------------------
    def _body_lines(self) -> list[str]:
        """The body split as published: strip(), split on "\\n", "\\n" back on all but an open last line."""
        lines = self.body.strip().split("\n")
        ends_open = not self.body.endswith("\n")
        return [line + "\n" for line in lines[:-1]] + [lines[-1] + ("" if ends_open else "\n")]

    def rebuild(self) -> bool:
        """Context full: re-encode metadata + the last c body lines. False if the piece failed."""
        self.stream_events.append(len(self.text))
        if "\n" not in self.body:
            self._finish("failed", "metadata_overflow")  # nothing but metadata fills the context
            return False
        lines = self._body_lines()
        if self.cut is None:
            self.cut = len(lines) // 2
        self._set_context(lines[-self.cut:])  # lines[-0:] keeps all, as published
        return True

    def _set_context(self, lines: list[str]) -> None:
        """Context = encode_generate(metadata + lines), dropping front lines until it fits."""
        encode = self.patchilizer.encode_generate
        big = 1 << 30
        patches = encode(self.metadata + "".join(lines), big)
        while len(patches) > self.patch_length and len(lines) > 1:
            lines = lines[1:]
            patches = encode(self.metadata + "".join(lines), big)
        if len(patches) > self.patch_length:  # one unfinished line longer than the context
            head = [self.patchilizer.bos_patch] + self.patchilizer.encode_metadata(split_lines(self.metadata))
            if len(head) > self.patch_length // 2:
                head = [self.patchilizer.bos_patch]
            body = encode("".join(lines), big, add_special_patches=False)
            patches = head + body[len(body) - (self.patch_length - len(head)):]
        self.body = "".join(lines)
        if patches and len(patches[-1]) < self.patch_size:
            self.context, self.partial = patches[:-1], list(patches[-1])
        else:
            self.context, self.partial = patches, []
