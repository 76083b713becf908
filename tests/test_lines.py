"""The line check on its own (`notagen/generation/lines.py`): text in, decisions out, no model.

Each case is worked by hand: the metadata and lines a piece would hold, the mark the piece would
take, and what the checker must answer. How `Piece` uses the answers (cutting itself back, the
engine rewinding its cache) is tested in test_generation.py and test_controls.py.
"""
from __future__ import annotations

from fractions import Fraction

from notagen.generation.controls import PieceControls
from notagen.generation.lines import LineChecker, LineStart, read_header

HEADER = "%%score { 1 | 2 }\nL:1/8\nM:4/4\nK:C\nV:1 treble\nV:2 bass\n"


def mark(text: str, metadata: str, body: str, in_body: bool, rebuilds: int = 0) -> LineStart:
    """The mark a piece holding this text would take (no patches: the checker does not read them)."""
    return LineStart(len(text), len(metadata), len(body), 0, [], in_body, 0, rebuilds)


def body_checker(body: str, **options) -> LineChecker:
    """A checker whose line starts after `body` (a piece with HEADER, in its body)."""
    checker = LineChecker(options.pop("bar_retries", 2), options.pop("header_retries", 0), **options)
    checker.start_line(mark(HEADER + body, HEADER, body, in_body=True), body[body.rfind("\n", 0, -1) + 1:])
    return checker


def test_the_header_is_read_for_voice_order_metre_and_unit():
    header = read_header("%%score { 1 | 2 }\nL:1/4\nM:3/4\nV:2 bass\nV:1 treble\n")
    assert header == (["1", "2"], {"V:1", "V:2"}, "3/4", "1/4")  # numeric order, whatever the declared order
    assert read_header("V:S\nV:A\n") == (["S", "A"], {"V:S", "V:A"}, None, "1/8")  # names: as declared; L: default


def test_the_bar_follows_the_header_then_inline_metres_line_by_line():
    checker = body_checker("[r:0/9][V:1]a8|[V:2]C8|\n")
    assert checker.bar(HEADER, "[r:1/8][V:1]a8|") == Fraction(8)  # 4/4 in eighths
    assert checker.bar(HEADER, "[r:1/8][V:1][M:3/4]a6|") == Fraction(6)  # changed inside the line
    checker.start_line(mark("", HEADER, "", True), "[r:1/8][V:1][M:3/4]a6|[V:2]C6|\n")
    assert checker.bar(HEADER, "[r:2/7][V:1]a6|") == Fraction(6)  # ... and in force on the next line
    assert LineChecker(1, 0, body="[r:0/1][V:1][M:2/4]a4|\n").bar(HEADER, "[r:1/0]") == Fraction(4)  # a continued body's


def test_voice_order_allows_only_later_voices_after_a_voice_tag():
    header = "L:1/8\nM:4/4\nV:1\nV:2\nV:10\nV:11\n"
    checker = LineChecker(bar_retries=1, header_retries=0)
    chars = lambda line: [chr(c) for c in checker.voice_chars(header, line) or []]  # noqa: E731
    assert chars("[r:0/9][V:") == ["1", "2"]  # every voice: 1, 2, 10, 11 start with 1 or 2
    assert chars("[r:0/9][V:1]a8|[V:") == ["1", "2"]  # 2, 10, 11
    assert chars("[r:0/9][V:2]a8|[V:1") == ["0", "1"]  # only 10 and 11 come after 2; "1" itself is earlier
    assert chars("[r:0/9][V:10]a8|[V:1") == ["1"]  # 11
    assert chars("[r:0/9][V:1]a8|[V:1") == ["0", "1"]  # 10 or 11: voice 1 again cannot close
    assert chars("[r:0/9][V:1]a8|[V:2") == ["]"]  # voice 2 closes; no later voice goes on from "2"
    assert checker.voice_chars(header, "[r:0/9][V:11]a8|[V:") is None  # no voice left: the model writes, the check judges
    assert checker.voice_chars(header, "V:") is None and checker.voice_chars(header, "[r:0/9][V:1]a") is None
    assert LineChecker(bar_retries=0, header_retries=0).voice_chars(header, "[r:0/9][V:") is None  # no bar check


def test_a_misaligned_body_line_is_cut_back_to_its_start_while_it_has_retries():
    body = "[r:0/9][V:1]a8|[V:2]C8|\n"
    checker = body_checker(body, bar_retries=2)
    start = checker.line
    bad = "[r:1/8][V:1]abcd|[V:1]C8|\n"
    args = (HEADER, body + bad, bad, True, True)
    assert checker.problem(*args) == "repeated voice"
    assert checker.rejects_line(*args, rebuilds=0) is start and checker.line_retries == 1
    assert checker.rejects_line(*args, rebuilds=0) is start and checker.line_retries == 2
    assert checker.rejects_line(*args, rebuilds=0) is None  # retries spent: the line stays
    assert (checker.resampled_lines, checker.line_rewrites) == (2, 2)
    checker.start_line(mark(HEADER + body + bad, HEADER, body + bad, True), bad)
    assert (checker.line_retries, checker.line_rewrites) == (0, 0)  # a new line: new retries
    good = "[r:2/7][V:1]abcd|[V:2]C4|\n"
    assert checker.rejects_line(HEADER, body + bad + good, good, True, True, rebuilds=0) is None
    assert checker.rejects_line(HEADER, body + bad + bad, bad, True, True, rebuilds=1) is None  # rebuilt inside: it stands


def test_a_left_out_voice_must_last_the_metre_except_on_the_first_line():
    checker = body_checker("", bar_retries=1)
    short = "[r:0/9][V:1]abcd|\n"
    assert checker.problem(HEADER, short, short, True, True) is None  # the first line may be a pickup
    later = "[r:1/8][V:1]abcd|\n"
    assert checker.problem(HEADER, short + later, later, True, True) == "a left-out voice's rest would not fill the bar"
    assert checker.problem(HEADER, short + later, later, True, False) is None  # the patch did not end it


def test_a_header_line_out_of_retries_sends_the_piece_to_the_start_of_its_header():
    prompt = "%Baroque\n"
    checker = LineChecker(bar_retries=0, header_retries=1)
    checker.start_line(mark(prompt, prompt, "", False), prompt)
    header_start = checker.header_start
    metadata = prompt + "V:1 treble\n"
    checker.start_line(mark(metadata, metadata, "", False), "V:1 treble\n")
    line_start, again = checker.line, metadata + "V:1 bass\n"
    assert checker.problem(again, "", "V:1 bass\n", False, True) == "voice declared twice"
    assert checker.rejects_line(again, "", "V:1 bass\n", False, True, rebuilds=0) is line_start
    assert checker.rejects_line(again, "", "V:1 bass\n", False, True, rebuilds=0) is header_start
    assert (checker.line, checker.header_restarts, checker.line_retries) == (header_start, 1, 0)
    assert checker.rejects_line(again, "", "V:1 bass\n", False, True, rebuilds=0) is header_start  # a retry, from there
    assert checker.rejects_line(again, "", "V:1 bass\n", False, True, rebuilds=0) is None  # all spent: the line stays
    assert (checker.header_start, checker.resampled_lines) == (header_start, 3)


def test_text_is_released_up_to_the_line_start_and_the_header_once_a_body_line_stands():
    body = "[r:0/9][V:1]a8|[V:2]C8|\n"
    assert LineChecker(0, 0).release_end(100, done=False) == 100  # no check: everything at once
    in_body = body_checker(body, bar_retries=1)
    assert in_body.release_end(len(HEADER + body) + 5, done=False) == len(HEADER + body)
    assert in_body.release_end(len(HEADER + body) + 5, done=True) == len(HEADER + body) + 5
    header = LineChecker(0, header_retries=1)
    header.start_line(mark("%a\n", "%a\n", "", False), "%a\n")
    header.start_line(mark("%a\nL:1/8\n", "%a\nL:1/8\n", "", False), "L:1/8\n")
    assert header.release_end(20, done=False) == len("%a\n")  # the header may still start over
    assert LineChecker(0, 0, PieceControls(key="D")).holds_back  # controls release line by line too


def test_with_a_chosen_meter_a_voice_bar_that_breaks_it_is_written_again_alone():
    body = "[r:0/9][V:1]a8|[V:2]C8|\n"
    checker = body_checker(body, bar_retries=1, controls=PieceControls(meter="4/4"))
    line = "[r:1/8][V:1]a8|[V:2]C6"
    checker.chunk = chunk = mark(HEADER + body + "[r:1/8][V:1]a8", HEADER, body + "[r:1/8][V:1]a8", True)
    assert checker.rejects_bar(HEADER, line, True, chunk_ended=False, rebuilds=0) is None  # the chunk is open
    assert checker.rejects_bar(HEADER, "[r:1/8][V:1]a8|[V:2]C8", True, True, 0) is None  # it lasts the meter
    assert checker.rejects_bar(HEADER, line, True, chunk_ended=True, rebuilds=1) is None  # rebuilt inside: it stands
    assert checker.rejects_bar(HEADER, line, True, chunk_ended=True, rebuilds=0) is chunk
    assert (checker.bar_rewrites, checker.resampled_lines) == (1, 1)
    assert checker.rejects_bar(HEADER, line, True, chunk_ended=True, rebuilds=0) is None  # bar_retries spent
