"""Generation for the flat baselines: the same pieces, events and limits as NotaGen's engine.

- A flat model writes one character per step. Its characters are handed to `Piece` (the
  published loop's bookkeeping) in chunks that end at a line end or after patch_size characters,
  so prompts, the bar check, the text limits and the results are NotaGen's. The chunks are pieces
  of lines, not NotaGen's bars: a flat model's context is rebuilt when it holds patch_length
  chunks (so never more than `context_chars` characters), at other places than NotaGen's would be,
  and `PieceResult.patches`, `max_patches` and `max_empty_patches` count chunks.
- A row whose piece was rebuilt or whose line was rejected is prefilled again from the piece's
  context, flattened; the others advance by one character.
- Batching is continuous and every piece draws from its own random stream, as in `Engine` (the
  rows are `notagen.generation.rows.Rows`, without guidance twins).
- `notagen.generation.engine_for` finds `FlatEngine` for the flat model types in its `ENGINES`,
  where this module registers it.
"""
from __future__ import annotations

from typing import Callable, Iterable, Iterator

import torch

from ..config import BOS_ID, EOS_ID
from ..generation.engine import ENGINES
from ..generation.piece import REBUILT, REWOUND, GenerationEvent, GenerationSettings, Piece, PieceResult
from ..generation.prompt import Prompt
from ..generation.rows import Rows, results_in_order, stream_setup
from ..patchilizer import Patchilizer
from ..sampling import restrict_rows, sample_rows
from .config import FLAT_TYPES
from .models import flat_ids

LINE_END = ord("\n")
END_OF_PIECE = [BOS_ID, EOS_ID]  # the EOS patch, as Piece knows it


def flat_context(piece: Piece, new: list[int]) -> list[int]:
    """What the flat model has read: its context, flattened, plus the open patch."""
    return flat_ids(piece.context) + piece.prefix() + new


class FlatEngine:
    """`stream(...)` / `generate(...)` as `Engine`'s, for `AbcGPT2LMHeadModel` and `FolkRNNLMHeadModel`."""

    def __init__(self, model):
        self.model = model.eval()
        self.config = model.config
        self.patchilizer = Patchilizer(self.config.patch_size)

    def _write(self, piece: Piece, new: list[int], char: int) -> tuple[list[str], str]:
        """Add one character -> (texts released, outcome): outcome None while the chunk is open, else
        what `Piece.add_patch` said ("" | REBUILT | REWOUND); at the end of the piece, ""."""
        if char == EOS_ID:  # the end of the piece
            texts = []
            if new:
                texts.append(piece.add_patch(new + [EOS_ID])[0])
            if not piece.done:
                texts.append(piece.add_patch(list(END_OF_PIECE))[0])
            return texts, ""
        new.append(char)
        if char != LINE_END and not piece.patch_done(new):
            return [], None
        short = len(piece.prefix()) + len(new) < self.config.patch_size
        text, outcome = piece.add_patch(new + [EOS_ID] if short else new)
        return [text], outcome

    @torch.inference_mode()
    def stream(self, prompts: Iterable[Prompt], settings: GenerationSettings | None = None,
               indices: Iterable[int] | None = None, watch: Callable[[Piece], None] | None = None
               ) -> Iterator[GenerationEvent]:
        settings, seed, queue = stream_setup(prompts, settings, indices)
        slots = min(settings.batch_size, len(queue))
        if not slots:
            return
        state = self.model.generation_rows(slots)
        rows = Rows(slots)
        new: list[list[int]] = [[] for _ in range(slots)]  # each row's open chunk
        logits = None
        new_piece = lambda index, prompt: Piece(index, prompt, self.patchilizer, self.config.patch_length, settings)  # noqa: E731
        while True:
            for row in (yield from rows.fill(queue, seed, new_piece)):
                new[row] = []
            live = rows.live()
            if not live:
                return
            if len(live) < len(rows):  # no one waits for the free rows: drop them
                state.keep(rows.keep(live))
                logits = logits[live] if logits is not None else None
                new = [new[row] for row in live]
            if stale := rows.take_stale():
                fresh = state.prefill(stale, [flat_context(rows.pieces[r], new[r]) for r in stale])
                logits = fresh if logits is None else logits.index_copy(0, torch.tensor(stale, device=fresh.device), fresh)

            logits[:, :EOS_ID] = float("-inf")  # PAD and BOS are never targets: only EOS ends a piece
            logits = restrict_rows(logits, [piece.allowed(new[row]) for row, piece in enumerate(rows.pieces)])
            chars = sample_rows(logits, rows.generators, settings.top_k, settings.top_p, settings.temperature,
                                settings.greedy)
            advance_rows, advance_chars = [], []
            for row, piece in enumerate(rows.pieces):
                forced = piece.forced(new[row])
                char = chars[row] if forced is None else forced
                texts, outcome = self._write(piece, new[row], char)
                if watch is not None and outcome is not None:
                    watch(piece)
                for text in texts:
                    yield GenerationEvent(piece.index, text)
                if outcome is not None:  # the chunk went to the piece
                    new[row] = []
                if piece.done:
                    yield GenerationEvent(piece.index, "", piece.result())
                    rows.pieces[row] = None
                elif outcome in (REBUILT, REWOUND):
                    rows.stale.append(row)
                else:
                    advance_rows.append(row)
                    advance_chars.append(char)
            if advance_rows:
                stepped = state.advance(advance_chars, advance_rows)
                logits = logits.index_copy(0, torch.tensor(advance_rows, device=stepped.device), stepped)

    def generate(self, prompts: Iterable[Prompt], settings: GenerationSettings | None = None
                 ) -> list[PieceResult]:
        """All pieces, in prompt order."""
        return results_in_order(self.stream(prompts, settings))


ENGINES.update(dict.fromkeys(FLAT_TYPES, FlatEngine))
