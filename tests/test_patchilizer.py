"""The patchilizer reproduces the published encoder exactly (tests/vectors/patchilizer.json)."""
import json
import random

import pytest

from conftest import load_vector
from notagen.patchilizer import Patchilizer, split_lines

VECTOR = load_vector("patchilizer.json")
PATCHILIZER = Patchilizer(VECTOR["patch_size"])


@pytest.mark.parametrize("case", VECTOR["encode_train"], ids=lambda c: c["text"][:20])
def test_encode_train_split_bars_and_decode(case):
    lines = split_lines(case["text"])
    body = lines[PATCHILIZER.find_body_start(lines):]
    assert PATCHILIZER.split_bars(body) == case["split_bars"]
    patches = PATCHILIZER.encode_train(case["text"], patch_length=10**9, cut=False)
    assert patches == case["encode_train"]
    assert PATCHILIZER.decode(patches) == case["decode_of_content"]


@pytest.mark.parametrize("case", VECTOR["encode_generate"], ids=lambda c: str(len(c["text"])))
def test_encode_generate(case):
    assert PATCHILIZER.encode_generate(case["text"], patch_length=10**9) == case["encode_generate"]


@pytest.mark.parametrize("case", VECTOR["stream_cuts"], ids=lambda c: str(len(c["text"])))
def test_stream_cuts_cover_exactly_the_published_outcomes(case):
    expected = {json.dumps(o["patches"]) for o in case["outcomes"]}
    seen = {json.dumps(PATCHILIZER.encode_train(case["text"], case["patch_length"], rng=random.Random(seed)))
            for seed in range(300)}
    assert seen == expected  # every outcome reachable, and nothing else


def test_stream_cut_choice_is_driven_by_the_injected_rng():
    case = VECTOR["stream_cuts"][0]
    by_choice = {}
    for outcome in case["outcomes"]:
        key = (outcome["choice"], outcome.get("cut_index"))
        by_choice[key] = outcome["patches"]

    class Scripted(random.Random):
        def __init__(self, choice, index=None):
            super().__init__(0)
            self.forced_choice, self.forced_index = choice, index

        def choice(self, options):
            return self.forced_choice

        def randint(self, low, high):
            assert low <= self.forced_index <= high
            return self.forced_index

    for (choice, index), patches in by_choice.items():
        got = PATCHILIZER.encode_train(case["text"], case["patch_length"], rng=Scripted(choice, index))
        assert got == patches, (choice, index)


def test_sequences_shorter_than_the_context_are_never_cut():
    text = VECTOR["encode_train"][0]["text"]
    full = PATCHILIZER.encode_train(text, 10**9, cut=False)
    assert PATCHILIZER.encode_train(text, len(full), rng=random.Random(1)) == full
