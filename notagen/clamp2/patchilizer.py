"""M3 patchilizer: ABC text -> patches of 64 char ids, the input of the CLaMP 2 music encoder.

Design choices (all fixed by the published M3, see spec/clamp2-and-dpo.md; the golden vectors in
`m3_clamp2.json` check them patch for patch):
- Text is transliterated to ASCII with unidecode; a char's id is its code point. 0 = padding,
  1 = BOS, 2 = EOS, 3 = MASK (used only by masked-patch pre-training).
- One patch per header line (letter + ':' first, e.g. `K:G`, `V:1 treble`) or `%%` line, one
  patch per bar of every other line. A bar is its text plus the barline that closes it; a
  leading barline is glued to the first bar; a trailing piece without a closing barline
  (normally the `\\n`) is dropped and `\\n` is appended to the last bar. This is the published
  behaviour, kept on purpose even where it loses text (a body line without any barline makes no
  patch, the text after the last barline of a line is dropped).
- Patch = [BOS] + chars + [EOS], cut to `patch_size` (so an overlong bar loses its end and its
  EOS), padded with 0. Special patches: all-BOS first; last, one BOS then EOS ids (the golden
  vectors show this leading BOS, which the spec's "64 EOS" omits).
- Unlike NotaGen's patchilizer there is no stream prefix `[r:i/j]` and no splitting of a bar over
  several patches.
"""
from __future__ import annotations

import re

from unidecode import unidecode

from notagen.config import BOS_ID, EOS_ID, NUM_CHARS, PAD_ID

MASK_ID = 3  # all-MASK patches replace 80% of the patches selected in masked-patch pre-training

# Longest first, so that `|:` is not read as `|` then `:`; same set as NotaGen's bar splitting.
BARLINES = ("|:", "::", ":|", "[|", "||", "|]", "|")
_BARLINE_SPLIT = re.compile("(" + "|".join(re.escape(b) for b in BARLINES) + ")")
_LINES = re.compile(r"[^\n]*\n|[^\n]+$")  # lines keeping their '\n'; a last line may lack it


def split_lines(text: str) -> list[str]:
    """Non-empty lines, each keeping its `\\n` (only `\\n` ends a line, as in the published code)."""
    return _LINES.findall(text)


def drop_comment_lines(text: str) -> str:
    """Remove lines starting with `%` but not `%%` (prompt lines, comments) before feature extraction."""
    return "".join(line for line in split_lines(text)
                   if not line.startswith("%") or line.startswith("%%"))


def is_single_patch_line(line: str) -> bool:
    """Header lines (`K:G`, `V:1 treble`, ...) and `%%` directives are one patch each."""
    return (len(line) > 1 and line[0].isalpha() and line[1] == ":") or line.startswith("%%")


def split_bars(line: str) -> list[str]:
    """Bars of one body line, each = text + closing barline; the last bar gets the `\\n`.

    >>> split_bars("[V:1]G A B c|d e f g|]\\n")
    ['[V:1]G A B c|', 'd e f g|]\\n']
    >>> split_bars("|:CDEF GABc:|\\n")
    ['|:CDEF GABc:|\\n']
    """
    pieces = [piece for piece in _BARLINE_SPLIT.split(line) if piece]
    if len(pieces) > 1 and pieces[0] in BARLINES:  # a leading barline belongs to the first bar
        pieces[:2] = [pieces[0] + pieces[1]]
    # (text, closing barline) pairs; an unpaired last piece (normally "\n") is dropped
    bars = [pieces[i] + pieces[i + 1] for i in range(0, len(pieces) - 1, 2)]
    if bars:
        bars[-1] += "\n"
    return bars


class M3Patchilizer:
    """Encode ABC text into M3 patches (lists of `patch_size` ids)."""

    def __init__(self, patch_size: int = 64):
        if patch_size < 2:
            raise ValueError("patch_size must leave room for BOS and EOS")
        self.patch_size = patch_size
        self.bos_patch = [BOS_ID] * patch_size
        # the golden vectors (published code) start the EOS patch with one BOS id, unlike the spec's
        # "64 EOS"; the BOS patch is all BOS
        self.eos_patch = [BOS_ID] + [EOS_ID] * (patch_size - 1)

    def chunks(self, text: str) -> list[str]:
        """The text of each patch, in order (no special patches)."""
        chunks: list[str] = []
        for line in split_lines(unidecode(text)):
            if is_single_patch_line(line):
                chunks.append(line)
            else:
                chunks.extend(split_bars(line))
        return chunks

    def chunk_to_patch(self, chunk: str) -> list[int]:
        ids = [BOS_ID] + [ord(char) for char in chunk] + [EOS_ID]
        ids = ids[: self.patch_size]
        if max(ids) >= NUM_CHARS:  # unidecode output is ASCII; this guards direct calls
            raise ValueError(f"non-ASCII character in {chunk!r}")
        return ids + [PAD_ID] * (self.patch_size - len(ids))

    def encode(self, text: str, add_special_patches: bool = True) -> list[list[int]]:
        """Patches of `text`: [BOS patch] + one patch per chunk + [EOS patch]."""
        patches = [self.chunk_to_patch(chunk) for chunk in self.chunks(text)]
        if add_special_patches:
            patches = [list(self.bos_patch)] + patches + [list(self.eos_patch)]
        return patches
