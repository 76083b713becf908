"""The rows of a batch being generated: what NotaGen's `Engine` and the baselines' `FlatEngine` share.

Design choices
- A piece being generated owns one row: `Rows.pieces[row]` and its random stream
  `Rows.generators[row]`. A finished piece's row is given to the next waiting prompt (`fill`);
  when none waits, the free rows are dropped (`keep`) and the rest renumbered from 0, so finished
  pieces cost nothing (continuous batching).
- Rows and cache rows: without guidance piece row r is cache row r. With guidance (`twins` 2)
  piece row r also has its prompt-free twin (`Piece.free_context`) at cache row r + len(pieces);
  `of(rows)` gives the cache rows of piece rows (the pieces' first, then their twins'), and
  `contexts(rows)` the contexts in the same order, so the engine never does that arithmetic.
- `stale` lists the rows whose context must be run from scratch (a new piece, a rebuilt context);
  the engine prefills them and empties it (`take_stale`).
- Each piece draws from its own random stream, seeded from the run's seed and its number, so its
  music does not depend on the batch size or on the other pieces.
"""
from __future__ import annotations

from collections import deque
from typing import Callable, Generator, Iterable

import torch

from ..sampling import fresh_seed, piece_seed
from .piece import GenerationEvent, GenerationSettings, Piece, PieceResult
from .prompt import Prompt


def stream_setup(prompts: Iterable[Prompt], settings: GenerationSettings | None, indices: Iterable[int] | None
                 ) -> tuple[GenerationSettings, int, deque]:
    """(settings or the defaults, the seed: a fresh one when unset, the queue of (index, prompt))."""
    settings = settings or GenerationSettings()
    seed = settings.seed if settings.seed is not None else fresh_seed()
    return settings, seed, deque(zip(indices, prompts) if indices is not None else enumerate(prompts))


def results_in_order(events: Iterable[GenerationEvent]) -> list[PieceResult]:
    """The PieceResults of a stream, in piece order."""
    results = {event.piece: event.result for event in events if event.result is not None}
    return [results[i] for i in sorted(results)]


class Rows:
    """The pieces generated together, one per row (None: a free row), with their random streams."""

    def __init__(self, slots: int, twins: int = 1):
        self.pieces: list[Piece | None] = [None] * slots
        self.generators: list[torch.Generator | None] = [None] * slots
        self.twins = twins  # cache rows per piece: 2 with guidance (the prompt-free twin), else 1
        self.stale: list[int] = []  # rows whose context must be run from scratch

    def __len__(self) -> int:
        return len(self.pieces)

    @property
    def cache_rows(self) -> int:
        return self.twins * len(self.pieces)

    def of(self, rows: list[int]) -> list[int]:
        """The cache rows of these piece rows: theirs, then (with guidance) their twins'."""
        return rows + [len(self.pieces) + row for row in rows] if self.twins == 2 else list(rows)

    def contexts(self, rows: list[int]) -> list[list[list[int]]]:
        """The contexts of these rows' cache rows (`of(rows)`): the pieces', then the twins'."""
        contexts = [self.pieces[row].context for row in rows]
        return contexts + [self.pieces[row].free_context for row in rows] if self.twins == 2 else contexts

    def last_patches(self, rows: list[int]) -> list[list[int]]:
        """The last patch of each context of `contexts(rows)` (a twin's is BOS when nothing
        follows its style lines)."""
        return [context[-1] for context in self.contexts(rows)]

    def fill(self, queue: deque, seed: int, new_piece: Callable[[int, Prompt], Piece]
             ) -> Generator[GenerationEvent, None, list[int]]:
        """Give free rows to waiting (index, prompt)s, each with its own random stream: yields each
        new piece's prompt event (and the result of one that is done at once); returns the rows it
        started (`started = yield from rows.fill(...)`), which are stale until prefilled."""
        started = []
        for row in range(len(self.pieces)):
            while self.pieces[row] is None and queue:
                index, prompt = queue.popleft()
                piece = new_piece(index, prompt)
                yield GenerationEvent(index, piece.text)
                if piece.done:  # e.g. a prompt already longer than max_chars
                    yield GenerationEvent(index, "", piece.result())
                    continue
                self.pieces[row] = piece
                self.generators[row] = torch.Generator().manual_seed(piece_seed(seed, index))
                started.append(row)
        self.stale += [row for row in started if row not in self.stale]
        return started

    def live(self) -> list[int]:
        return [row for row, piece in enumerate(self.pieces) if piece is not None]

    def keep(self, live: list[int]) -> list[int]:
        """Keep only the rows `live`, renumbered from 0; returns the cache rows they had, for the
        caches to keep the same."""
        cache_rows = self.of(live)
        self.stale = [live.index(row) for row in self.stale if row in live]
        self.pieces = [self.pieces[row] for row in live]
        self.generators = [self.generators[row] for row in live]
        return cache_rows

    def take_stale(self) -> list[int]:
        stale, self.stale = self.stale, []
        return stale

    def rewind(self, cache, row: int) -> None:
        """A rejected line is forgotten: the piece's cache rows (`KVCache`) are cut back to hold all
        but the last patch of their contexts, which the engine runs again for its feature."""
        for cache_row, context in zip(self.of([row]), self.contexts([row])):
            cache.rewind(cache_row, len(context) - 1)
