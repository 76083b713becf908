"""The rows of a batch (`notagen/generation/rows.py`): which cache rows belong to which piece, how
free rows are filled and dropped. Real pieces, no model."""
from __future__ import annotations

from collections import deque

from notagen.generation import GenerationSettings, Piece, Prompt
from notagen.generation.rows import Rows
from notagen.patchilizer import Patchilizer

PATCHILIZER = Patchilizer(16)
SETTINGS = GenerationSettings.published(guidance=2.0)


def new_piece(index: int, prompt: Prompt) -> Piece:
    return Piece(index, prompt, PATCHILIZER, 32, SETTINGS)


def filled(slots: int, twins: int, prompts: list[Prompt]) -> tuple[Rows, list]:
    rows = Rows(slots, twins)
    events = list(rows.fill(deque(enumerate(prompts)), seed=0, new_piece=new_piece))
    return rows, events


def test_each_piece_row_has_its_twin_after_all_the_pieces():
    styled = Prompt.from_triple("Romantic", "Chopin", "Keyboard")
    rows, events = filled(3, 2, [styled] * 3)
    assert [event.piece for event in events] == [0, 1, 2] and rows.stale == [0, 1, 2]
    assert (len(rows), rows.cache_rows) == (3, 6)
    assert rows.of([0, 2]) == [0, 2, 3, 5]
    contexts = rows.contexts([2])
    assert contexts[0] == rows.pieces[2].context and len(contexts[0]) == 4  # BOS + three style lines
    assert contexts[1] == [PATCHILIZER.bos_patch]  # the twin: BOS alone
    assert rows.last_patches([2]) == [contexts[0][-1], PATCHILIZER.bos_patch]
    assert Rows(3, twins=1).of([0, 2]) == [0, 2]


def test_dropping_free_rows_renumbers_the_rest_and_their_stale_marks():
    prompt = Prompt.from_lines(["%Romantic"])
    rows, _ = filled(4, 2, [prompt] * 4)
    rows.take_stale()
    rows.stale = [3, 1]  # rebuilt contexts, waiting for their prefill
    rows.pieces[0] = rows.pieces[2] = None  # finished
    kept = rows.keep(rows.live())
    assert kept == [1, 3, 5, 7]  # the cache rows the caches keep: pieces 1 and 3, then their twins
    assert [piece.index for piece in rows.pieces] == [1, 3] and rows.stale == [1, 0]
    assert rows.take_stale() == [1, 0] and rows.stale == []


def test_a_free_row_goes_to_the_next_prompt_and_a_piece_done_at_once_never_gets_one():
    rows = Rows(1)
    too_long = Prompt.from_lines(["%" + "x" * 40])
    settings = GenerationSettings.published(max_chars=20)
    make = lambda index, prompt: Piece(index, prompt, PATCHILIZER, 32, settings)  # noqa: E731
    queue = deque([(0, too_long), (1, Prompt.from_lines(["%ok"]))])
    events = list(rows.fill(queue, seed=0, new_piece=make))
    assert [(event.piece, event.result is not None) for event in events] == [(0, False), (0, True), (1, False)]
    assert events[1].result.reason == "max_chars" and rows.pieces[0].index == 1 and not queue
