"""The CLaMP-DPO chain's statistics on hand-worked cases (notagen.rl.stats)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from notagen.rl.stats import (PhraseIndex, copy_rate, leave_one_out_scores, mean_pairwise_cosine, near_copy_share,
                              phrases, prompt_texts, real_copy_rate, repeated_lines, welch)


def test_welch_by_hand():
    previous, current = [1.0, 2.0, 3.0], [2.0, 4.0, 6.0, 8.0]
    # means 2 and 5; variances 1 and 20/3; se = sqrt(1/3 + (20/3)/4) = sqrt(2)
    result = welch(previous, current)
    assert result["diff"] == pytest.approx(3.0)
    assert result["se"] == pytest.approx(math.sqrt(2.0))
    assert result["t"] == pytest.approx(3.0 / math.sqrt(2.0))
    # Welch-Satterthwaite: df = 2^2 / ((1/3)^2/2 + (5/3)^2/3) = 4 / (1/18 + 25/27) = 4.075...
    from scipy import stats

    df = 4 / ((1 / 3) ** 2 / 2 + (5 / 3) ** 2 / 3)
    assert result["p"] == pytest.approx(2 * stats.t.sf(3.0 / math.sqrt(2.0), df))
    assert math.isnan(welch([1.0], current)["se"])


def test_pairwise_cosine_of_alike_orthogonal_and_opposite_pieces():
    assert mean_pairwise_cosine(np.ones((5, 3))) == pytest.approx(1.0)
    assert mean_pairwise_cosine(np.eye(4)) == pytest.approx(0.0)
    assert mean_pairwise_cosine(np.array([[1.0, 0.0], [-2.0, 0.0]])) == pytest.approx(-1.0)
    # three pieces: cos(a,b) = 1, cos(a,c) = cos(b,c) = 0 -> mean 1/3
    assert mean_pairwise_cosine(np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])) == pytest.approx(1 / 3)
    assert math.isnan(mean_pairwise_cosine(np.ones((1, 3))))


def test_leave_one_out_scores_and_near_copies():
    features = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    # piece 0 against the mean of the others (0, 1): cosine 0; piece 1 against (0.5, 0.5): 1/sqrt(2)
    assert leave_one_out_scores(features) == pytest.approx([0.0, 1 / math.sqrt(2), 1 / math.sqrt(2)])
    generated = np.array([[1.0, 0.01], [1.0, 1.0], [-1.0, 0.0], [0.0, 5.0]])
    assert near_copy_share(generated, features, 0.99) == pytest.approx(0.5)  # rows 0 and 3


def test_repeated_lines_count_exact_repeats_within_a_piece():
    header = "%%score 1 2\nL:1/8\nM:4/4\nK:C\nV:1\nV:2\n"
    looped = header + "[r:0/3][V:1]a8|[V:2]C8|\n[r:1/2][V:1]a8|[V:2]C8|\n[r:2/1][V:1]b8|[V:2]C8|\n"
    other = header + "[V:1]a8|[V:2]C8|\n"  # the same line in another piece is no repeat
    assert repeated_lines([looped]) == pytest.approx(1 / 3)
    assert repeated_lines([looped, other]) == pytest.approx(1 / 4)
    assert math.isnan(repeated_lines([header]))


HEADER = "%%score 1 2\nL:1/8\nM:4/4\nK:C\nV:1\nV:2\n"


def piece(*lines: tuple[str, str]) -> str:
    return HEADER + "".join(f"[V:1]{upper}|[V:2]{lower}|\n" for upper, lower in lines)


def test_phrases_are_each_voices_two_bar_runs_without_rests_alone():
    text = piece(("a8", "z8"), ("b8", "z8"), ("[ce]8", "C8"))
    assert phrases(text) == {("a8|", "b8|"), ("b8|", "[ce]8|"), ("z8|", "C8|")}  # (z8, z8) is left out
    assert phrases(text, bars=3) == {("a8|", "b8|", "[ce]8|"), ("z8|", "z8|", "C8|")}


def test_a_copy_shares_half_its_phrases_with_one_real_piece():
    real = {"one": piece(("a8", "A8"), ("b8", "B8"), ("c8", "C8")),  # phrases (a,b) (b,c) (A,B) (B,C)
            "two": piece(("e8", "E8"), ("f8", "F8"))}  # (e,f) (E,F)
    index = PhraseIndex(real)
    assert index.copy_share(real["one"]) == (1.0, "one")
    altered = piece(("a8", "A8"), ("b8", "B8"), ("d8", "D8"))  # (a,b) (A,B) shared; (b,d) (B,D) new
    assert index.copy_share(altered) == (0.5, "one")
    # a piece that borrows one phrase from each real piece is no copy of either: 1/4 each
    mixed = piece(("a8", "E8"), ("b8", "F8"), ("g8", "G8"))
    assert index.copy_share(mixed)[0] == pytest.approx(0.25)
    assert copy_rate([real["two"], altered, mixed], index) == pytest.approx(2 / 3)
    assert index.copy_share(piece(("g8", "G8"), ("a8", "A8"))) == (0.0, None)
    assert math.isnan(copy_rate([], index))


def test_real_pieces_are_checked_against_the_others_only():
    one = piece(("a8", "A8"), ("b8", "B8"))
    distinct = {"one": one, "two": piece(("e8", "E8"), ("f8", "F8"))}
    assert real_copy_rate(distinct, PhraseIndex(distinct)) == 0.0
    duplicated = {"one": one, "same": one, "two": distinct["two"]}  # a piece in the corpus twice
    assert real_copy_rate(duplicated, PhraseIndex(duplicated)) == pytest.approx(2 / 3)


def test_prompt_texts_keep_the_prompts_pieces_rest_unreduced(tmp_path):
    chorale = "%Baroque\n%Bach, Johann Sebastian\n%Choral\n" + piece(("a8", "A8"), ("b8", "B8"))
    (tmp_path / "chorale.abc").write_text(chorale)
    (tmp_path / "motet.abc").write_text("%Renaissance\n%Palestrina, Giovanni Pierluigi da\n%Vocal\n"
                                        + piece(("c8", "C8"), ("d8", "D8")))
    (tmp_path / "index.txt").write_text(f"{tmp_path / 'chorale.abc'}\n{tmp_path / 'motet.abc'}\n")
    texts = prompt_texts(tmp_path / "index.txt", ("Baroque", "Bach, Johann Sebastian", "Choral"))
    assert list(texts) == ["chorale"]
    assert not texts["chorale"].startswith("%Baroque") and phrases(texts["chorale"]) == phrases(chorale)
