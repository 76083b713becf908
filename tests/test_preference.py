"""CLaMP-DPO preference data (notagen.rl.data): each exclusion rule on hand-made ABC, ranking and pairing."""
import json
from pathlib import Path

import numpy as np
import pytest

from notagen.data import KEYS
from notagen.rl import (Candidate, CopyDetector, bars_aligned, build_preferences, preference_pairs, prompt_groups,
                        real_pieces_by_prompt, self_play_groups, staves_grouped)

HEADER = '%%score { ( 1 2 ) | 3 }\nL:1/8\nM:2/4\nK:C\nV:1 treble nm="Piano" snm="Pno."\nV:2 treble\nV:3 bass nm="Piano"\n'
ALIGNED = HEADER + "[V:1]cdef|[V:2]x4|[V:3]C,D,E,F,|\n[V:1]g4|][V:2]x4|][V:3]G,4|]\n"
SHORT_BAR = HEADER + "[V:1]cdef|[V:2]x4|[V:3]C,D,E,|\n[V:1]g4|][V:2]x4|][V:3]G,4|]\n"


def test_aligned_piece_passes_and_misaligned_ones_fail():
    assert bars_aligned(ALIGNED)
    assert not bars_aligned(SHORT_BAR)  # one voice's bar is shorter
    assert not bars_aligned("not music at all")


def test_staves_of_one_instrument_must_stay_together():
    grouped = 'V:1 treble nm="Violin"\nV:2 treble nm="Piano"\nV:3 bass nm="Piano"\n'
    split = 'V:1 treble nm="Piano"\nV:2 treble nm="Violin"\nV:3 bass nm="Piano"\n'
    assert staves_grouped(grouped)
    assert not staves_grouped(split)
    assert staves_grouped('V:1 treble\nV:2 bass\n')  # no names: nothing to check


def test_copy_detector_uses_the_closest_single_piece():
    references = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    detector = CopyDetector(references)
    assert detector.is_copy(np.array([[0.0, 2.0, 0.1]]))  # cosine 0.9988 to the second piece
    assert not detector.is_copy(np.array([[1.0, 1.0, 0.0]]))  # 0.707 to each: not a copy
    assert detector.max_similarity(np.array([1.0, 1.0, 0.0])) == pytest.approx(np.sqrt(0.5))


def make(name, score, text=ALIGNED, feature=(0.0, 0.0, 1.0)):
    return Candidate(name=name, score=score, original_path=f"original/{name}.abc",
                     interleaved_text=text, feature=np.array([feature]))


def test_calibrated_copy_threshold_sits_above_the_closest_two_references():
    close = np.array([[1.0, 0.0, 0.0], [0.99, 0.14, 0.0], [0.0, 0.0, 1.0]])  # rows 0 and 1: cosine 0.99015
    calibrated = CopyDetector(close, threshold=0)
    assert calibrated.threshold == pytest.approx(0.99 / np.hypot(0.99, 0.14))
    near_copy, merely_similar = np.array([1.0, 0.05, 0.0]), np.array([1.0, 0.3, 0.0])  # 0.99875, 0.98863
    assert calibrated.is_copy(near_copy) and not calibrated.is_copy(merely_similar)
    assert CopyDetector(close).is_copy(merely_similar)  # the published 0.95 would call it a copy
    assert CopyDetector(np.eye(3), threshold=0).threshold == 0.95  # never below the published value


def test_chosen_walks_down_past_excluded_pieces_and_rejected_is_the_bottom():
    references = np.array([[1.0, 0.0, 0.0]])
    candidates = [make("best_but_misaligned", 0.9, SHORT_BAR), make("copy", 0.8, feature=(1.0, 0.0, 0.01)),
                  make("good", 0.7), make("fine", 0.6), make("mid", 0.5)] + \
                 [make(f"low{i}", 0.1 - i * 0.01) for i in range(5)]
    preferences = build_preferences(candidates, references, portion=0.2)
    assert [c.name for c in preferences.chosen] == ["good", "fine"]
    assert [c.name for c in preferences.rejected] == ["low3", "low4"]
    assert preferences.skipped == {"bars not aligned": 1, "copy (cosine > 0.95)": 1}
    assert preferences.to_json() == {"chosen": ["original/good.abc", "original/fine.abc"],
                                     "rejected": ["original/low3.abc", "original/low4.abc"]}
    assert "2 chosen (scores 0.6000..0.7000)" in preferences.summary()


def test_a_share_of_rejected_pieces_can_be_the_lowest_well_formed_ones():
    references = np.array([[1.0, 0.0, 0.0]])
    candidates = [make("best", 0.9), make("good", 0.8), make("plain", 0.5), make("weak", 0.4),
                  make("weak_misaligned", 0.35, SHORT_BAR), make("weaker", 0.3)] + \
                 [make(f"broken{i}", 0.1 - i * 0.01, SHORT_BAR) for i in range(4)]
    preferences = build_preferences(candidates, references, portion=0.4, rejected_usable_share=0.5)
    assert [c.name for c in preferences.chosen] == ["best", "good", "plain", "weak"]
    # two of the four are the bottom of all, two the lowest well-formed pieces not chosen: only "weaker" is left
    assert [c.name for c in preferences.rejected] == ["weaker", "broken2", "broken3"]
    assert "3 rejected (scores 0.0700..0.3000, 1 of them well-formed)" in preferences.summary()
    published = build_preferences(candidates, references, portion=0.4)
    assert [c.name for c in published.rejected] == ["broken0", "broken1", "broken2", "broken3"]
    with pytest.raises(ValueError, match="between 0 and 1"):
        build_preferences(candidates, references, portion=0.4, rejected_usable_share=1.5)


def test_pairs_are_every_chosen_with_every_rejected():
    assert preference_pairs(["a", "b"], ["x", "y", "z"]) == [
        ("a", "x"), ("a", "y"), ("a", "z"), ("b", "x"), ("b", "y"), ("b", "z")]


def test_prompt_groups_choose_the_composer_like_and_reject_the_broken_and_the_unlike():
    nan = float("nan")
    prompts = ["Bach"] * 8 + ["Beach"] * 3 + ["Lone"]
    usable = [True, True, True, True, False, False, True, True] + [True, False, True] + [True]
    log_p = [-0.1, -5.0, -0.5, -0.2, nan, nan, -3.0, -0.6] + [nan, nan, nan] + [nan]
    groups = prompt_groups(prompts, usable, log_p, portion=0.5)
    # Bach, k = 4: chosen the four most Bach-like usable; rejected ceil(4/2) = 2 broken, then the
    # usable pieces at least 1 nat below the worst chosen (-0.6): -5.0, then -3.0
    assert groups[0] == {"name": "Bach", "chosen": [0, 3, 2, 7], "rejected": [4, 5, 1, 6]}
    # Beach is unknown to the classifier: usability alone, k = round(1.5) = 2
    assert groups[1] == {"name": "Beach", "chosen": [8, 10], "rejected": [9]}
    assert len(groups) == 2  # "Lone" has nothing to reject
    # fewer unlike pieces than half: the rest of the rejected are broken ones
    groups = prompt_groups(["p"] * 6, [True, True, True, False, False, False], [-1, -1.5, -9, nan, nan, nan], 0.5)
    assert groups == [{"name": "p", "chosen": [0, 1, 2], "rejected": [3, 4, 5]}]


def test_prompt_groups_choose_only_choosable_pieces():
    # the two most composer-like pieces are not choosable (e.g. the composer outside the top 5)
    groups = prompt_groups(["p"] * 5, [True] * 5, [-0.1, -0.2, -3.0, -6.0, -9.0], portion=0.4,
                           choosable=[False, False, True, True, True])
    # k = 2: chosen -3.0 and -6.0; rejected what lies 1 nat below -6.0, the unchosen better ones never
    assert groups == [{"name": "p", "chosen": [2, 3], "rejected": [4]}]


def test_self_play_groups_choose_real_pieces_and_reject_the_models_own():
    nan = float("nan")
    prompts = ["Mozart"] * 6 + ["Bach"] * 2 + ["Nobody"] * 2
    usable = [True, False, True, True, False, True] + [True, True] + [True, False]
    log_p = [-0.1, nan, -7.0, -2.0, nan, -4.0] + [-0.2, -0.3] + [nan, nan]
    real = {"Mozart": ["m1.abc", "m2.abc", "m3.abc", "m4.abc"], "Bach": ["b1.abc"]}
    groups = self_play_groups(prompts, usable, log_p, real, portion=0.5)
    # Mozart, k = 3: the first 3 real pieces; rejected ceil(3/2) = 2 broken, then the usable piece
    # least like Mozart (-7.0), even without any margin
    assert groups[0] == {"name": "Mozart", "chosen": ["m1.abc", "m2.abc", "m3.abc"], "rejected": [1, 4, 2]}
    # Bach, k = 1: its only real piece; every generated piece is usable: the least Bach-like one
    assert groups[1] == {"name": "Bach", "chosen": ["b1.abc"], "rejected": [7]}
    assert len(groups) == 2  # no real piece of "Nobody": no group


def test_real_pieces_by_prompt_reads_a_keyed_index(tmp_path):
    aug = tmp_path / "augmented"
    for name, prompt in (("a", "%Baroque\n%Bach\n%Choral\n"), ("b", "%Baroque\n%Bach\n%Choral\n"), ("c", "")):
        for key in KEYS:
            (aug / key).mkdir(parents=True, exist_ok=True)
            (aug / key / f"{name}_{key}.abc").write_text(f"{prompt}X:1\nL:1/8\nK:{key}\n[V:1]C|\n")
    index = tmp_path / "augmented_train.jsonl"
    index.write_text("".join(json.dumps({"path": f"augmented/{n}", "key": "C"}) + "\n" for n in "abc"))
    real = real_pieces_by_prompt(index, seed=1)
    assert list(real) == ["Baroque|Bach|Choral"]  # the piece without prompt lines is left out
    paths = real["Baroque|Bach|Choral"]
    assert sorted(Path(p).name.split("_")[0] for p in paths) == ["a", "b"]
    assert all(Path(p).is_file() and Path(p).parent.parent == aug for p in paths)
    assert real == real_pieces_by_prompt(index, seed=1)  # seeded
