"""Generation engine: exact greedy text of the tiny checkpoint (streaming, batching, caches), sampling
reproducibility, the [r:0/ rule, limits, stream rebuilds, and the KV cache against transformers."""
from __future__ import annotations

import warnings

import pytest
import torch

from conftest import load_vector, torch_threads
from notagen.config import BOS_ID, EOS_ID, NotaGenConfig
from notagen.generation import (Engine, GenerationSettings, KVCache, Piece, Prompt, reference_generate,
                                to_ascii)
from notagen.generation.cache import stack_blocks
from notagen.model import build_model
from notagen.patchilizer import Patchilizer

TINY = load_vector("tiny_notagen.json")
GREEDY = TINY["greedy_generation"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # tiny matrices: one thread avoids OpenMP hand-offs on a shared 2-core machine
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def engine(tiny_model):
    return Engine(tiny_model)


def greedy(char_limit: int, batch_size: int = 1) -> GenerationSettings:
    return GenerationSettings.published(greedy=True, max_chars=char_limit, batch_size=batch_size)


def prompt_of(case) -> Prompt:
    return Prompt.from_lines(case["prompt_lines"])


@pytest.mark.parametrize("case", GREEDY, ids=lambda case: case["prompt_lines"][0].strip())
def test_greedy_vector_one_piece_streaming(engine, case):
    streamed, results = [], []
    for event in engine.stream([prompt_of(case)], greedy(case["char_limit"])):
        assert event.piece == 0
        streamed.append(event.text)
        if event.result is not None:
            results.append(event.result)
    (result,) = results
    assert "".join(streamed) == case["text"]  # streaming yields exactly the text, prompt first
    assert streamed[0] == "".join(case["prompt_lines"])
    assert result.text == case["text"]
    assert result.status == "failed" and result.reason == "max_chars"  # ended_by char_limit
    assert result.stream_events == case["stream_events_at_chars"]


def test_greedy_vectors_in_one_batch(engine):
    # the two prompts side by side (different context lengths all the way), plus a repeat of the
    # first, in a batch of 2: rows are handed on when a piece ends
    limit = max(case["char_limit"] for case in GREEDY)
    prompts = [prompt_of(GREEDY[0]), prompt_of(GREEDY[1]), prompt_of(GREEDY[0])]
    texts = {0: "", 1: "", 2: ""}
    results = {}
    for event in engine.stream(prompts, greedy(limit, batch_size=2)):
        texts[event.piece] += event.text
        if event.result is not None:
            results[event.piece] = event.result
    for index, case in ((0, GREEDY[0]), (1, GREEDY[1]), (2, GREEDY[0])):
        assert texts[index] == results[index].text
        if case["char_limit"] == limit:
            assert results[index].text == case["text"]
        else:  # greedy text is a prefix of any longer greedy run
            assert len(results[index].text) > case["char_limit"]
            assert results[index].text[:len(case["text"])] == case["text"]


def test_cached_and_uncached_greedy_are_identical(engine, tiny_model):
    case = GREEDY[1]  # the first stream rebuild is at 769 chars
    settings = greedy(1000)
    events = list(reference_generate(tiny_model, prompt_of(case), settings))
    uncached = "".join(event.text for event in events)
    (cached,) = engine.generate([prompt_of(case)], settings)
    assert uncached == cached.text and len(uncached) > 1000
    assert case["text"].startswith(uncached)
    assert events[-1].result.stream_events == cached.stream_events == case["stream_events_at_chars"][:1]


def test_seeded_sampling_is_reproducible_and_independent_of_batch_size(engine):
    prompts = [Prompt.from_triple("Baroque", "Bach, Johann Sebastian", "Choral"),
               Prompt.from_triple("Classical", "Mozart, Wolfgang Amadeus", "Keyboard"),
               Prompt.from_triple("Romantic", "Chopin, Frederic", "Keyboard")]
    settings = dict(top_k=9, top_p=0.9, temperature=1.2, seed=1234, max_chars=400)
    first = [r.text for r in engine.generate(prompts, GenerationSettings.published(batch_size=3, **settings))]
    again = [r.text for r in engine.generate(prompts, GenerationSettings.published(batch_size=3, **settings))]
    alone = [r.text for r in engine.generate(prompts, GenerationSettings.published(batch_size=1, **settings))]
    other = [r.text for r in engine.generate(prompts[:1], GenerationSettings.published(**{**settings, "seed": 99}))]
    assert first == again == alone
    assert other[0] != first[0]
    assert len(set(first)) == 3  # different pieces draw from different streams


def test_kv_cache_matches_transformers_with_ragged_rows():
    torch.manual_seed(0)
    stack = build_model(NotaGenConfig(patch_length=32, patch_num_layers=2, char_num_layers=1,
                                      hidden_size=64)).patch_level_decoder.base.eval()
    x = torch.randn(3, 12, 64)  # [rows, T, hidden]
    lengths = [5, 8, 3]
    with torch.no_grad():
        full = stack(inputs_embeds=x).last_hidden_state  # [3, 12, 64], causal
        cache = KVCache(stack, rows=3, capacity=32)
        first = cache.prefill([0, 1, 2], x[:, :8], lengths)  # right-padded prefill
        assert torch.allclose(first, full[torch.arange(3), torch.tensor(lengths) - 1], atol=1e-5)
        for _ in range(3):  # every row one token further, each at its own position
            positions = list(cache.lengths)
            step = cache.advance(x[torch.arange(3), torch.tensor(positions)])
            assert torch.allclose(step, full[torch.arange(3), torch.tensor(positions)], atol=1e-5)
        # a subset of rows, then drop a row
        positions = list(cache.lengths)
        step = cache.advance(x[[0, 2], [positions[0], positions[2]]], rows=[0, 2])
        assert torch.allclose(step, full[[0, 2], [positions[0], positions[2]]], atol=1e-5)
        cache.keep([1, 2])
        assert cache.lengths == [positions[1], positions[2] + 1]
        step = cache.advance(x[[1, 2], cache.lengths])
        assert torch.allclose(step, full[[1, 2], [positions[1], positions[2] + 1]], atol=1e-5)
        cache.reset()
        assert cache.lengths == [0, 0]
        # oneDNN-packed weight copies (CPU batches) compute the same thing
        packed = KVCache(stack, rows=3, capacity=32, blocks=stack_blocks(stack, packed=True))
        first_packed = packed.prefill([0, 1, 2], x[:, :8], lengths)
        assert torch.allclose(first_packed, first, atol=1e-4)
        step = packed.advance(x[torch.arange(3), torch.tensor(lengths)])
        assert torch.allclose(step, full[torch.arange(3), torch.tensor(lengths)], atol=1e-4)


# ---- the piece's bookkeeping ------------------------------------------------------------------
def make_piece(prompt=None, patch_length=64, **settings) -> Piece:
    prompt = prompt or Prompt.from_triple("Baroque", "Bach, Johann Sebastian", "Keyboard")
    return Piece(0, prompt, Patchilizer(16), patch_length, GenerationSettings.published(**settings))


def ids(text: str) -> list[int]:
    return [ord(c) for c in text]


def test_first_body_patch_is_forced_to_start_at_line_zero():
    piece = make_piece()
    assert piece.forced(ids("[r")) is None
    assert piece.forced(ids("[r:")) == ord("0")
    assert piece.forced(ids("[r:0")) == ord("/")
    assert piece.forced(ids("[r:0/")) is None
    assert piece.forced(ids("L:1")) is None
    text, _ = piece.add_patch(ids("[r:0/12][V:1]abc"))
    assert text == "[r:0/12][V:1]abc" and piece.in_body
    assert piece.forced(ids("[r:")) is None  # only the first time


def test_eos_patch_finishes_and_eos_char_ends_a_patch():
    piece = make_piece()
    assert piece.patch_done(ids("L:1/8\n") + [EOS_ID])
    assert not piece.patch_done(ids("L:1/8\n"))
    assert piece.patch_done(ids("x" * 16))
    text, _ = piece.add_patch(ids("L:1/8\n") + [EOS_ID])
    assert text == "L:1/8\n" and piece.context[-1] == ids("L:1/8\n") + [EOS_ID] + [0] * 9
    text, _ = piece.add_patch([BOS_ID, EOS_ID])
    assert text == "" and piece.done and piece.result().status == "finished"


def test_limits_stall_and_prompt_length():
    piece = make_piece(max_empty_patches=3)
    for _ in range(3):
        assert piece.add_patch([EOS_ID]) == ("", "")  # a patch with no text
    assert piece.result().reason == "stalled"
    piece = make_piece(max_chars=60)
    piece.add_patch(ids("%%score ( 1 2 )\n"))
    assert not piece.done and len(piece.text) == 59
    piece.add_patch(ids("L:1/8\n") + [EOS_ID])  # 59 -> 65 chars: past the limit
    assert piece.result().reason == "max_chars" and len(piece.text) == 65
    piece = make_piece(max_seconds=0)
    piece.add_patch(ids("L:1/8\n") + [EOS_ID])
    assert piece.result().reason == "max_seconds"


def test_rebuild_keeps_metadata_and_half_the_body_lines():
    piece = make_piece(patch_length=20)  # BOS + 4 prompt-line patches (the composer line takes 2)
    assert len(piece.context) == 5
    body = [f"[r:{i:02d}/9][V:1]a\n" for i in range(15)]  # 15 chars: one patch each with its EOS
    for line in body[:14]:
        assert piece.add_patch(ids(line) + [EOS_ID]) == (line, "")
    assert piece.add_patch(ids(body[14]) + [EOS_ID]) == (body[14], "rebuilt")  # 20 patches: rebuild
    assert piece.stream_events == [len(piece.text)] and piece.cut == 7
    # the prompt lines are part of the metadata a rebuild keeps (the greedy vectors say so)
    expected = Patchilizer(16).encode_generate("".join(piece.prompt.lines) + "".join(body[8:]), 20)
    assert piece.context == expected[:-1] and piece.partial == expected[-1]
    assert piece.partial == ids(body[14])  # the last bar stays open: the next patch continues it
    assert piece.add_patch([EOS_ID]) == ("", "") and piece.context[-1] == ids(body[14]) + [EOS_ID]


def test_a_context_that_does_not_fit_loses_front_lines_or_keeps_the_newest_patches():
    header = "%Baroque\nL:1/8\nK:C\nV:1 treble\n"
    lines = [f"[r:{i}/9][V:1]abcdefgh|\n" for i in range(10)]  # each line: 2 patches
    # BOS + 4 + 20 + an open patch = 26 > 20: three lines go (the published code kept the first 20)
    piece = make_piece(Prompt.from_abc(header + "".join(lines) + "[r:10/0][V:1]ab"), patch_length=20)
    assert len(piece.context) == 19 and piece.partial == ids("[r:10/0][V:1]ab")
    assert piece.metadata == header and piece.body.startswith("[r:3/9]")
    assert Patchilizer.patch_text(piece.context[5]) == "[r:3/9][V:1]abcd"
    # a single line longer than the context: newest patches kept, after BOS + metadata
    long_line = "[r:0/0][V:1]" + "abcdefg|" * 80
    piece = make_piece(Prompt.from_abc(header + long_line), patch_length=16)
    assert len(piece.context) + 1 == 16
    assert piece.context[0] == Patchilizer(16).bos_patch
    assert Patchilizer.patch_text(piece.context[1]) == "%Baroque\n"
    assert Patchilizer.patch_text(piece.partial) == "|abcdefg|"  # the open last bar (a lone "|" is glued on)


def test_prompt_forms_and_ascii():
    triple = Prompt.from_triple("Romantic", "Chopin, Frederic", "Keyboard")
    assert triple.lines == ("%Romantic\n", "%Chopin, Frederic\n", "%Keyboard\n")
    assert triple.triple == ("Romantic", "Chopin, Frederic", "Keyboard")
    with pytest.warns(UserWarning, match="transliterated"):
        converted = Prompt.from_triple("Romantic", "Dvořák, Antonín", "Chamber")
    assert converted.lines[1] == "%Dvorak, Antonin\n"
    assert to_ascii("plain") == "plain"
    header_only = Prompt.from_abc("%Classical\nL:1/8\n")
    assert header_only.text is None and header_only.lines == ("%Classical\n", "L:1/8\n")
    continued = Prompt.from_abc("L:1/8\nK:C\n[r:0/1][V:1]abc|\n[r:1/0][V:1]de")
    assert continued.text is not None and continued.prompt_text.endswith("de")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Prompt.from_lines(["%Baroque", "", "%Keyboard\n"])


def test_continuing_an_abc_text_extends_it(engine):
    case = GREEDY[0]
    cut = case["text"].index("[r:67/38]") + 20  # inside a body line: an open last patch
    prompt = Prompt.from_abc(case["text"][:cut])
    (result,) = engine.generate([prompt], greedy(cut + 200))
    assert result.text.startswith(case["text"][:cut]) and len(result.text) > cut + 200


def test_candidate_probs_equal_the_published_chain_on_the_full_vector():
    from notagen.sampling import candidate_probs
    from notagen.sampling import filter_probs

    torch.manual_seed(3)
    logits = torch.randn(5, 128) * 3
    for top_k, top_p, temperature in ((9, 0.9, 1.2), (0, 0.8, 0.7), (20, 1.0, 1.0), (128, 0.5, 2.0)):
        settings = GenerationSettings.published(top_k=top_k, top_p=top_p, temperature=temperature)
        full = filter_probs(torch.softmax(logits.double(), dim=-1), top_k, top_p, temperature)
        probs, ids = candidate_probs(logits, settings.top_k, settings.top_p, settings.temperature)
        dense = probs if ids is None else torch.zeros_like(full).scatter(-1, ids, probs)
        assert torch.allclose(dense / dense.sum(-1, keepdim=True), full / full.sum(-1, keepdim=True),
                              atol=1e-12, rtol=0)


# ---- bar-checked generation -------------------------------------------------------------------
TWO_VOICES = Prompt.from_lines(["%Baroque", "%Bach, Johann Sebastian", "%Choral", "%%score 1 2", "L:1/8",
                                "M:4/4", "K:C", "V:1 treble", "V:2 bass"])


def feed(piece: Piece, text: str) -> list[tuple[str, str]]:
    """The patches of `text` as the char decoder would write them (after the piece's open patch)."""
    outcomes = []
    for patch in Patchilizer(16).encode_generate(text, 1 << 30, add_special_patches=False):
        chars = [c for c in patch if c != 0]
        outcomes.append(piece.add_patch(chars + ([EOS_ID] if len(chars) < 16 else [])))
    return outcomes


@pytest.mark.parametrize("line, problem", [
    ("[r:3/9][V:1]abcd efga|[V:2]C8|\n", None),
    ("[V:1]abcd|[V:2]C8|\n", "voices differ in duration"),
    ("[V:1]a8|[V:1]C8|\n", "repeated voice"),
    ("[V:1]a4|b4|[V:2]C8|\n", "several bars in a voice"),
    ("[V:1]a8|[V:3]C8|\n", "undeclared voice"),
    ("[V:1]a4 [ceg|[V:2]C8|\n", "bar of unknown duration"),  # an open chord: broken text, no real bar has one
    ("[V:1]G2 FF EE !E2|[V:2]C8|\n", "bar of unknown duration"),  # an open decoration
    ("[V:1](3abc d6|[V:2]{g}C4 C>D C<D|\n", None),  # tuplets, grace notes, broken rhythm: durations known
    ("\n", None),  # every voice rests
])
def test_line_problem_names_what_is_misaligned(line, problem):
    from notagen.abc.unreduce import line_problem

    assert line_problem(line, {"V:1", "V:2"}) == problem


def test_a_line_that_leaves_a_voice_out_must_last_the_metre():
    from notagen.abc.unreduce import bar_length, line_problem

    assert [bar_length(m, u) for m, u in [("3/4", "1/8"), ("C", "1/8"), ("C|", "1/4"), ("2+3/8", "1/16"), ("none", "1/8")]] \
        == [6, 8, 4, 10, None]
    three_four = bar_length("3/4")
    assert line_problem("[V:1]a2 b2 c2 d2|\n", {"V:1", "V:2"}, three_four) == "a left-out voice's rest would not fill the bar"
    assert line_problem("[V:1]a2 b2 c2|\n", {"V:1", "V:2"}, three_four) is None
    assert line_problem("[V:1]a2 b2 c2 d2|[V:2]C8|\n", {"V:1", "V:2"}, three_four) is None  # both voices there: aligned
    piece = make_piece(Prompt.from_lines(["%Baroque", "%Bach, Johann Sebastian", "%Choral", "L:1/8", "M:3/4",
                                          "K:C", "V:1 treble", "V:2 bass"]), bar_retries=1)
    feed(piece, "[r:0/9][V:1]a8|\n")  # line 0 may be a pickup of any length
    assert feed(piece, "[r:1/8][V:1]a8|\n")[-1][1] == "rewound"
    assert feed(piece, "[r:1/8][V:1][M:4/4]a8|\n")[-1][1] == ""  # an inline metre counts from its line on
    assert feed(piece, "[r:2/7][V:1]a6|\n")[-1][1] == "rewound" and feed(piece, "[r:2/7][V:1]a8|\n")[-1][1] == ""


def test_real_chorale_lines_pass_the_bar_check():
    from conftest import pipeline_item
    from notagen.abc.unreduce import line_problem

    lines = [l for l in pipeline_item("bach/bwv269.mxl")["interleaved"].splitlines(True) if l.startswith("[V:")]
    assert len(lines) > 10 and all(line_problem(l, {f"V:{n}" for n in range(1, 5)}) is None for l in lines)


def test_a_misaligned_line_is_written_again_and_its_text_held_back():
    piece = make_piece(TWO_VOICES, bar_retries=2)
    assert [text for text, _ in feed(piece, "[r:0/9][V:1]a8|[V:2]C8|\n")][-1].startswith("[r:0/9][V:1]a8")
    start = (len(piece.text), len(piece.context), piece.released)
    assert piece.released == len(piece.text)  # a good line is released once complete
    bad = feed(piece, "[r:1/8][V:1]abcd|[V:2]C8|\n")
    assert [outcome for _, outcome in bad] == ["", "rewound"] and all(text == "" for text, _ in bad)
    assert (len(piece.text), len(piece.context), piece.released) == start and piece.lines.resampled_lines == 1
    assert feed(piece, "[r:1/8][V:1]abcd|[V:2]C8|\n")[-1][1] == "rewound"  # the second retry
    kept = feed(piece, "[r:1/8][V:1]abcd|[V:2]C8|\n")  # no retries left: the line stays
    assert kept[-1] == ("[r:1/8][V:1]abcd|[V:2]C8|\n", "") and piece.lines.resampled_lines == 2
    feed(piece, "[r:2/7][V:1]a8|\n")  # a voice may rest (left out), and the count starts again
    assert feed(piece, "[r:3/6][V:1]a4|[V:1]b4|\n")[-1][1] == "rewound"
    assert piece.text.endswith("[r:2/7][V:1]a8|\n") and piece.result().resampled_lines == 3


def test_a_header_line_that_declares_a_voice_again_is_written_again():
    from notagen.abc.unreduce import header_line_problem

    header = "%%score { 1 | 2 }\nL:1/8\nV:1 treble nm=\"Piano\"\n"
    assert header_line_problem("V:1 bass\n", header) == "voice declared twice"
    assert header_line_problem("V:2 bass\n", header) is None and header_line_problem("V:10 bass\n", header) is None
    assert header_line_problem('V:2 bass nm="Cello" snm="\n', header) == "unclosed quote"
    assert header_line_problem("%%score [ 1 2 3 | 3 | 4 ]\n", "") == "voice twice in %%score"
    assert header_line_problem("%%score { ( 1 2 ) | ( 3 4 ) }\n", "") is None
    unchecked = make_piece(bar_retries=1)  # bar lines checked, header lines not
    assert unchecked.add_patch(ids("%%score 1 1\n") + [EOS_ID]) == ("%%score 1 1\n", "")
    piece = make_piece(header_retries=1)  # the prompt's three style lines, then the model's header
    line = lambda text: piece.add_patch(ids(text) + [EOS_ID])[1]  # noqa: E731 - one short header line, one patch
    assert [line(text) for text in ["%%score { 1 | 2 }\n", "L:1/8\n", "M:4/4\n", "K:C\n", "V:1 treble\n"]] == [""] * 5
    start = (len(piece.text), len(piece.context))
    assert line("V:1 bass\n") == "rewound" and (len(piece.text), len(piece.context)) == start
    assert line("V:2 bass\n") == "" and piece.lines.line_retries == 0 and piece.text.endswith("V:1 treble\nV:2 bass\n")
    prompt_end, prompt_patches = len(piece.prompt.prompt_text), 1 + len(Patchilizer(16).encode_metadata(piece.prompt.lines))
    assert line("V:2 alto\n") == "rewound" and piece.lines.line_retries == 1  # its one retry
    assert line("V:2 alto\n") == "rewound" and len(piece.text) == prompt_end  # out of retries: the header starts over
    assert (piece.lines.header_restarts, piece.lines.line_retries, len(piece.context)) == (1, 0, prompt_patches)  # BOS + style lines
    assert [line(text) for text in ["L:1/8\n", "V:1 treble\n", "V:1 bass\n", "V:1 bass\n"]] == ["", "", "rewound", ""]
    assert piece.text.endswith("V:1 treble\nV:1 bass\n")  # header restarts spent too: the line stays
    assert piece.released == prompt_end  # the header is held back until a body line stands ...
    released = "".join(text for text, _ in feed(piece, "[r:0/9][V:1]a8|\n"))
    assert released == piece.text[prompt_end:] and released.startswith("L:1/8\nV:1 treble")  # ... then released once
    assert make_piece().add_patch(ids("%%score 1 1\n") + [EOS_ID])[1] == ""  # the published loop: never checked
    with pytest.raises(ValueError, match="header_retries must be >= 0"):
        GenerationSettings.published(header_retries=-1)


def test_bar_checked_lines_can_only_name_later_voices():
    piece = make_piece(Prompt.from_lines(["%Baroque", "%Bach, Johann Sebastian", "%Choral", "L:1/8", "M:4/4",
                                          "K:C", "V:1 treble", "V:2 treble", "V:10 bass", "V:3 bass"]), bar_retries=2)
    allowed = lambda text: piece.allowed(ids(text))  # noqa: E731
    assert allowed("[r:0/9][V:") == ids("123")  # numeric order: 1 2 3 10
    assert allowed("[r:0/9][V:1]a8|[V:") == ids("123") and allowed("[r:0/9][V:1") == ids("0]")
    assert allowed("[r:0/9][V:1]a8|[V:2]C8|[V:") == ids("13")  # 3 or 10, never 1 or 2 again
    assert allowed("[r:0/9][V:1]a8|[V:3]C8|[V:1") == ids("0") and allowed("[r:0/9][V:1]a8|[V:3]C8|[V:10") == ids("]")
    assert allowed("[r:0/9][V:1]a8|[V:10]C8|[V:") is None  # no voice left: the bar check judges the line
    assert allowed("[r:0/9][V:1]a8") is None and allowed("[r:0/9][V:1]a8|[V:2]") is None  # not naming a voice
    assert allowed("%%score [V:") is None  # not a body line
    feed(piece, "[r:0/9][V:1]a8|[V:2]C8|\n")
    assert allowed("[r:1/8][V:2]a8|[V:") == ids("13")  # each line starts over: a line may skip voices
    assert make_piece(TWO_VOICES).allowed(ids("[r:0/9][V:1]a8|[V:")) is None  # the published loop: free


def test_the_published_loop_releases_every_patch_and_never_rewinds():
    piece = make_piece(TWO_VOICES)
    outcomes = feed(piece, "[r:0/9][V:1]abcd|[V:2]C8|\n")
    assert "".join(text for text, _ in outcomes) == "[r:0/9][V:1]abcd|[V:2]C8|\n"
    assert {outcome for _, outcome in outcomes} == {""} and piece.lines.resampled_lines == 0


def test_kv_cache_rewind_then_advance_equals_the_other_path():
    torch.manual_seed(0)
    stack = build_model(NotaGenConfig(patch_length=32, patch_num_layers=2, char_num_layers=1,
                                      hidden_size=64)).patch_level_decoder.base.eval()
    x = torch.randn(2, 10, 64)
    other = torch.randn(2, 4, 64)  # the tokens written after the rewind
    with torch.no_grad():
        cache = KVCache(stack, rows=2, capacity=32)
        cache.prefill([0, 1], x[:, :6], [6, 6])
        for t in range(6, 10):
            cache.advance(x[:, t])
        cache.rewind(0, 3)
        with pytest.raises(ValueError):
            cache.rewind(1, 11)
        steps = [cache.advance(other[:1, t], rows=[0]) for t in range(4)]
        expected = stack(inputs_embeds=torch.cat([x[:1, :3], other[:1]], dim=1)).last_hidden_state[0, 3:]
        assert torch.allclose(torch.cat(steps), expected, atol=1e-5)
        row1 = cache.advance(x[1:, 9], rows=[1])  # the other row was not touched
        assert torch.allclose(row1, stack(inputs_embeds=torch.cat([x[1:], x[1:, 9:]], 1)).last_hidden_state[0, -1],
                              atol=1e-5)


def test_bar_checked_sampling_rewinds_the_cache_like_the_uncached_loop(engine, tiny_model):
    prompt = Prompt.from_triple("Baroque", "Bach, Johann Sebastian", "Choral")
    settings = GenerationSettings.published(seed=7, max_chars=1500, bar_retries=4)
    events = list(reference_generate(tiny_model, prompt, settings))
    (cached,) = engine.generate([prompt], settings)
    assert "".join(event.text for event in events) == events[-1].result.text == cached.text
    assert cached.resampled_lines == events[-1].result.resampled_lines > 0
    streamed = [event for event in engine.stream([prompt] * 3, GenerationSettings.published(**{**vars(settings), "batch_size": 3}))]
    for index in range(3):  # in a batch too, the events add up to the piece
        result = next(e.result for e in streamed if e.piece == index and e.result is not None)
        assert "".join(e.text for e in streamed if e.piece == index) == result.text


def test_guidance_zero_writes_the_piece_the_prompt_free_twin_would(engine):
    """g = 0 draws every char from the twin's logits alone: the music of a piece begun without the
    style lines (same random stream), behind those lines; rewinds (bar check) keep the twin in step."""
    prompt = Prompt.from_triple("Romantic", "Chopin, Frederic", "Keyboard")
    settings = dict(seed=3, max_chars=10**6, max_patches=60, bar_retries=4)  # before any rebuild (it keeps
    # the prompted context's body lines, so the twin's context is then shorter than a free piece's)
    (guided,) = engine.generate([prompt], GenerationSettings.published(guidance=0.0, **settings))
    assert guided.resampled_lines > 0 and not guided.stream_events
    # two rows, as the guided piece and its twin: the same (packed) char-level products on CPU
    free, _ = engine.generate([Prompt()] * 2, GenerationSettings.published(batch_size=2, **settings))
    assert guided.text == prompt.prompt_text + free.text
    (plain,) = engine.generate([prompt], GenerationSettings.published(**settings))
    assert plain.text != guided.text  # the style lines do change the tiny model's piece


def test_guided_pieces_do_not_depend_on_the_batch(engine):
    """Twin rows follow their pieces through continuous batching, row drops, rewinds and rebuilds."""
    prompts = [Prompt.from_triple("Baroque", "Bach, Johann Sebastian", "Choral"),
               Prompt.from_triple("Classical", "Mozart, Wolfgang Amadeus", "Keyboard"),
               Prompt.from_triple("Romantic", "Chopin, Frederic", "Keyboard")]
    settings = dict(seed=6, max_chars=3000, bar_retries=4, guidance=2.5)
    together = engine.generate(prompts, GenerationSettings.published(batch_size=2, **settings))
    alone = engine.generate(prompts, GenerationSettings.published(batch_size=1, **settings))
    assert [r.text for r in together] == [r.text for r in alone]
    assert any(r.stream_events for r in alone) and any(r.resampled_lines for r in alone)
    unguided = engine.generate(prompts, GenerationSettings.published(batch_size=1, **{**settings, "guidance": 1.0}))
    assert [r.text for r in unguided] != [r.text for r in alone]
    with pytest.raises(ValueError, match="guidance must be >= 0"):
        GenerationSettings.published(guidance=-1.0)
