"""Any music file -> the model's prompt, so the model continues a user's music.

Design choices
- One route for every input, the training data's own: MusicXML (given, or made by abc2xml from
  any ABC, or by music21 from MIDI) -> standard ABC by xml2abc with the data settings ->
  cleaning -> rest-reduced interleaved text in the piece's own key (`notagen.abc.reduce_abc`) ->
  `[r:i/j]` stream prefixes. So a standard ABC file, an interleaved one, a generated one and the
  same piece as MusicXML all become the same prompt.
- MIDI goes through music21's importer, which quantises onsets and durations to sixteenth notes
  and eighth-note triplets (its default quarterLengthDivisors (4, 3)).
- `continue_bars` N keeps the first N bars (a pickup bar is bar 1). The stream prefixes of the kept
  lines count the bars of the whole piece, `[r:i/(total-1-i)]`, as training data does, so the model
  is told how many bars are still to come; with every bar kept it is told the piece is over.
- `prompt_lines` (e.g. `%Baroque`, `%Bach, Johann Sebastian`, `%Choral`) go in front; the file's
  own prompt lines, if any, are replaced by them.
- Every failure is a `ContinuationError` naming the file and the reason.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .abc.convert import SCORE_SUFFIXES, abc_to_musicxml, musicxml_to_abc, read_abc_file, score_file_to_musicxml
from .abc.errors import AbcError
from .abc.preprocess import reduce_abc
from .abc.text import split_prompt_lines, text_to_lines
from .abc.unreduce import split_header_body
from .generation.prompt import Prompt, PromptError
from .patchilizer import add_stream_prefixes

ABC_SUFFIXES = (".abc",)
MUSIC_SUFFIXES = ABC_SUFFIXES + SCORE_SUFFIXES


class ContinuationError(PromptError):
    """A music file that cannot become a prompt."""


@dataclass(frozen=True)
class Continuation:
    prompt: Prompt
    bars_given: int  # bars of the user's music in the prompt; the model writes bar bars_given + 1 on
    bars_in_file: int
    source: str


def file_to_musicxml(path: str | Path) -> bytes:
    """The MusicXML document (bytes, in the encoding it declares) of an ABC, MusicXML or MIDI file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise ContinuationError(f"{path}: file not found")
    if suffix not in MUSIC_SUFFIXES:
        raise ContinuationError(f"{path.name}: not a music file (give one of {', '.join(MUSIC_SUFFIXES)})")
    try:
        if suffix in ABC_SUFFIXES:
            return abc_to_musicxml(read_abc_file(path)).encode("utf-8")
        return score_file_to_musicxml(path)
    except AbcError as error:
        raise ContinuationError(f"{path.name}: {error}") from None


def reduced_body(musicxml: bytes, name: str = "score") -> tuple[str, list[str]]:
    """(metadata lines, tune-body lines) of the rest-reduced interleaved text of a MusicXML score."""
    try:
        reduced = reduce_abc(musicxml_to_abc(musicxml, name))
    except AbcError as error:
        raise ContinuationError(f"{name}: {error}") from None
    _, reduced = split_prompt_lines(reduced)
    header, body = split_header_body(text_to_lines(reduced))
    if not body:
        raise ContinuationError(f"{name}: the score has no bars")
    return "".join(header), body


def music_to_prompt(path: str | Path, prompt_lines=(), continue_bars: int = 0) -> Continuation:
    """A music file -> the prompt that makes the model continue it (see the module notes)."""
    path = Path(path)
    if continue_bars < 0:
        raise ContinuationError(f"continue_bars must be >= 0, not {continue_bars}")
    header, body = reduced_body(file_to_musicxml(path), path.name)
    lines = add_stream_prefixes([line if line.endswith("\n") else line + "\n" for line in body])
    kept = lines[:continue_bars] if continue_bars else lines
    prompt_text = "".join(f"{line.rstrip()}\n" for line in prompt_lines if line.strip())
    prompt = Prompt.from_abc(prompt_text + header + "".join(kept))
    return Continuation(prompt, len(kept), len(lines), str(path))
