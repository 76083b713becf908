"""Text <-> patches: how NotaGen sees ABC notation.

Design choices (see docs/spec/model.md, "Characters and patches")
- A character's id is its code point; 0 pads, 1 is BOS, 2 is EOS. A patch is 16 ids.
- Metadata lines (before the tune body) are one chunk each; tune-body lines are split into bars,
  one chunk each. A chunk whose length is not a multiple of the patch size gets an EOS char, then is
  cut into patches and padded with 0.
- Every tune-body line carries a stream prefix `[r:i/j]` (line i, j lines left) in training, so a
  model can continue a piece past its context ("streaming").
- Sequences longer than `patch_length` are cut at a body-line boundary chosen at random (head,
  tail or middle); the random source is injectable so tests can drive every outcome.
- `encode_generate` follows the published encoder to the letter, quirks included (a text with no
  tune-body line is encoded as metadata *and* body), because published checkpoints were used with it.
"""
from __future__ import annotations

import random
import re

from .config import BOS_ID, EOS_ID, PAD_ID

BARLINES = ("|:", "::", ":|", "[|", "||", "|]", "|")  # longest first: "||" before "|"
_BARLINE_SPLIT = re.compile("(" + "|".join(re.escape(b) for b in BARLINES) + ")")
STREAM_CUT_CHOICES = ("head", "tail", "middle")


def split_lines(text: str, keep_last_unfinished: bool = False) -> list[str]:
    """Non-empty lines, each with its `\\n`; optionally leave an unfinished last line as it is."""
    lines = [line for line in text.split("\n") if line]
    if not lines:
        return []
    with_newline = [line + "\n" for line in lines]
    if keep_last_unfinished and not text.endswith("\n"):
        with_newline[-1] = lines[-1]
    return with_newline


def add_stream_prefixes(body_lines: list[str]) -> list[str]:
    """`[r:i/j]` in front of each tune-body line: i from the start, j lines remaining."""
    total = len(body_lines)
    return [f"[r:{i}/{total - 1 - i}]{line}" for i, line in enumerate(body_lines)]


class Patchilizer:
    """Encodes ABC text into patches of `patch_size` character ids and decodes them back."""

    def __init__(self, patch_size: int = 16):
        self.patch_size = patch_size
        self.bos_patch = [BOS_ID] * (patch_size - 1) + [EOS_ID]
        self.eos_patch = [BOS_ID] + [EOS_ID] * (patch_size - 1)

    # ---- chunks and bars -------------------------------------------------------------------
    @staticmethod
    def split_bars(lines: list[str]) -> list[str]:
        """Split body lines into bar chunks, each starting with the barline that opened it."""
        bars: list[str] = []
        for line in lines:
            pieces = [piece for piece in _BARLINE_SPLIT.split(line) if piece]
            if not pieces:
                continue
            line_bars = [] if pieces[0] in BARLINES else [pieces.pop(0)]
            # (barline, following text) pairs; a trailing lone barline stands by itself
            line_bars += ["".join(pieces[i:i + 2]) for i in range(0, len(pieces), 2)]
            if len(line_bars) > 1 and "V" not in line_bars[-1]:
                last = line_bars.pop()
                line_bars[-1] += last  # e.g. "|\n" belongs to the bar before it
            bars.extend(line_bars)
        return bars

    def chunk_to_patches(self, chunk: str, add_eos: bool = True) -> list[str]:
        """Cut one chunk into patch strings; the EOS char marks where a short chunk ends."""
        if add_eos and len(chunk) % self.patch_size != 0:
            chunk += chr(EOS_ID)
        return [chunk[i:i + self.patch_size] for i in range(0, len(chunk), self.patch_size)]

    def patch_to_ids(self, patch: str, pad: bool = True) -> list[int]:
        ids = [ord(char) for char in patch]
        if pad:
            ids += [PAD_ID] * (self.patch_size - len(ids))
        return ids

    @staticmethod
    def find_body_start(lines: list[str], generate: bool = False) -> int | None:
        starts = ("[V:", "[r:") if generate else ("[V:",)
        return next((i for i, line in enumerate(lines) if line.startswith(starts)), None)

    # ---- training ------------------------------------------------------------------------
    def encode_train(self, text: str, patch_length: int, add_special_patches: bool = True,
                     cut: bool = True, rng: random.Random | None = None) -> list[list[int]]:
        """Training sequence: BOS + metadata + body (with stream prefixes) + EOS, cut to length."""
        lines = split_lines(text)
        body_start = self.find_body_start(lines)
        if body_start is None:
            body_start = len(lines)
        metadata_lines, body_lines = lines[:body_start], add_stream_prefixes(lines[body_start:])

        metadata = [p for line in metadata_lines for p in self.chunk_to_patches(line)]
        body = [p for bar in self.split_bars(body_lines) for p in self.chunk_to_patches(bar)]
        head = [self.bos_patch] if add_special_patches else []
        tail = [self.eos_patch] if add_special_patches else []
        to_ids = lambda patches: [self.patch_to_ids(p) for p in patches]  # noqa: E731

        sequence = head + to_ids(metadata) + to_ids(body) + tail
        if not cut or len(sequence) <= patch_length:
            return sequence[:patch_length]
        start = self.choose_stream_cut(body, len(sequence) - patch_length, rng or random)
        return (head + to_ids(metadata) + to_ids(body[start:]) + tail)[:patch_length]

    def stream_cut_points(self, body_patches: list[str], excess: int) -> list[int]:
        """Body patch indices where a line starts, up to the first one at or after `excess`."""
        points = [0]
        for index, patch in enumerate(body_patches[:-1]):
            if points[-1] >= excess:
                break
            if "\n" in patch:
                points.append(index + 1)
        return points

    def choose_stream_cut(self, body_patches: list[str], excess: int, rng) -> int:
        points = self.stream_cut_points(body_patches, excess)
        choice = rng.choice(STREAM_CUT_CHOICES)
        if choice == "head" or len(points) == 1:
            return 0
        if choice == "tail" or len(points) == 2:
            return points[-1]
        return points[rng.randint(1, len(points) - 2)]

    # ---- generation ----------------------------------------------------------------------
    def encode_generate(self, text: str, patch_length: int, add_special_patches: bool = True
                        ) -> list[list[int]]:
        """Context for generation: no EOS patch; the text's last bar stays open for continuation."""
        lines = split_lines(text)
        body_start = self.find_body_start(lines, generate=True)
        metadata_lines = lines[:body_start]
        body_lines = split_lines(text, keep_last_unfinished=True)[body_start:] if lines else []

        patches = [self.bos_patch] if add_special_patches else []
        patches += [self.patch_to_ids(p) for line in metadata_lines for p in self.chunk_to_patches(line)]
        bars = self.split_bars(body_lines)
        for index, bar in enumerate(bars):
            is_last = index == len(bars) - 1
            for patch in self.chunk_to_patches(bar, add_eos=not is_last):
                # an open last patch stays short: the char decoder continues it
                patches.append(self.patch_to_ids(patch, pad=not (is_last and len(patch) < self.patch_size)))
        return patches[:patch_length]

    def encode_metadata(self, lines: list[str]) -> list[list[int]]:
        """Prompt lines as metadata patches (no BOS), e.g. the period/composer/instrumentation."""
        return [self.patch_to_ids(p) for line in lines for p in self.chunk_to_patches(line)]

    # ---- decoding ------------------------------------------------------------------------
    @staticmethod
    def patch_text(patch) -> str:
        """Characters of one patch up to its first EOS; special ids produce no text."""
        chars = []
        for char_id in patch:
            char_id = int(char_id)
            if char_id == EOS_ID:
                break
            if char_id > EOS_ID:
                chars.append(chr(char_id))
        return "".join(chars)

    def decode(self, patches) -> str:
        return "".join(self.patch_text(patch) for patch in patches)
