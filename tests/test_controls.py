"""Musical controls (notagen/generation/controls.py): key, meter, tempo and bar count as header
lines, stream prefixes and the end of a piece; the meter-checked bars; the stall limit; refusals
of impossible values (one `error:` line from inference.py); and the tiny checkpoint generating
under all of them, cached and uncached alike."""
from __future__ import annotations

from fractions import Fraction

import pytest

from conftest import REPO_ROOT, VECTORS
from notagen.config import BOS_ID, EOS_ID
from notagen.generation import Engine, GenerationSettings, Piece, Prompt, reference_generate
from notagen.generation.controls import ControlError, PieceControls, closes, normal_key, normal_meter
from notagen.patchilizer import Patchilizer

BACH = Prompt.from_triple("Baroque", "Bach, Johann Sebastian", "Choral")


def make_piece(prompt=BACH, **settings) -> Piece:
    return Piece(0, prompt, Patchilizer(16), 64, GenerationSettings(**settings))


def ids(text: str) -> list[int]:
    return [ord(c) for c in text]


def feed(piece: Piece, text: str) -> list[tuple[str, str]]:
    """The patches of `text` as the char decoder would write them (each chunk ended by EOS)."""
    return [piece.add_patch([c for c in patch if c] + ([EOS_ID] if len([c for c in patch if c]) < 16 else []))
            for patch in Patchilizer(16).encode_generate(text, 1 << 30, add_special_patches=False)]


def header_line(piece: Piece, text: str) -> str:
    return piece.add_patch(ids(text) + [EOS_ID])[1]


def forced_prefix(piece: Piece, start: str = "") -> str:
    """The chars the piece forces from `start` on, as the char decoder would take them."""
    typed = ids(start)
    while (char := piece.forced(typed)) is not None:
        typed.append(char)
    return "".join(map(chr, typed))


# -- values ------------------------------------------------------------------------------------
@pytest.mark.parametrize("given, spelt", [("Dm", "Dmin"), ("D minor", "Dmin"), ("dmin", "Dmin"), ("Eb", "Eb"),
                                          ("Ebmaj", "Eb"), ("F#min", "F#min"), ("Ador", "Ador"), ("Bb aeolian", "Bbmin"),
                                          ("Cb", "Cb"), ("", "")])
def test_keys_are_spelt_as_the_training_data_spells_them(given, spelt):
    assert normal_key(given) == spelt


@pytest.mark.parametrize("given, message", [("H", "not a key"), ("Dmaior", "not a key"), ("Cbm", "10 flats"),
                                            ("G#maj", "8 sharps"), ("D#", "9 sharps")])
def test_impossible_keys_are_refused(given, message):
    with pytest.raises(ControlError, match=message):
        normal_key(given)


def test_meters_tempi_and_bars_are_checked():
    assert [normal_meter(m) for m in ("3/4", " 6/8 ", "2+3/8", "C", "C|", "")] == ["3/4", "6/8", "2+3/8", "C", "C|", ""]
    for meter, message in (("0/4", "1 to 64 beats"), ("3/5", "unit must be"), ("3/0", "unit must be"),
                           ("waltz", "beats/unit")):
        with pytest.raises(ControlError, match=message):
            normal_meter(meter)
    settings = GenerationSettings(key="Dm", meter="3/4", tempo="96", bars="12")  # strings from a command line
    assert (settings.key, settings.meter, settings.tempo, settings.bars) == ("Dmin", "3/4", 96, 12)
    assert (GenerationSettings(tempo="none", bars="").tempo, GenerationSettings(bars=None).bars) == (None, None)
    for values, message in (({"bars": 0}, "bars 0: must be 1 to 1000"), ({"tempo": 5000}, "tempo 5000: must be 20"),
                            ({"bars": "twelve"}, "not a whole number"), ({"stall_seconds": -1}, "stall_seconds")):
        with pytest.raises(ValueError, match=message):
            GenerationSettings(**values)


def test_impossible_values_are_one_error_line_from_inference(tmp_path, capsys):
    from notagen.generation.run import main

    config = REPO_ROOT / "inference" / "config.py"
    for argv, message in ((["--key", "H"], "error: key 'H': not a key"), (["--meter", "0/4"], "error: meter '0/4'"),
                          (["--bars", "0"], "error: bars '0': must be 1 to 1000"),
                          (["--tempo", "5000"], "error: tempo '5000': must be 20 to 400")):
        assert main(config, argv + ["--inference_weights_path", str(VECTORS / "tiny_notagen.pth"),
                                    "--output_dir", str(tmp_path), "--device", "cpu"]) == 2
        error = capsys.readouterr().err
        assert error.startswith(message) and error.count("\n") == 1, error
    assert not any(tmp_path.iterdir())  # nothing was generated


# -- header lines ------------------------------------------------------------------------------
def test_chosen_header_lines_stand_where_the_training_data_has_them():
    controls = PieceControls(key="Dmin", meter="3/4", tempo=96)
    header = "%Baroque\n%%score { 1 | 2 }\nL:1/8\n"
    assert controls.header_edit(header, "M:4/4\n") == ["Q:1/4=96\n", "M:3/4\n"]  # Q: comes before M:
    assert controls.header_edit(header + "Q:1/4=96\nM:3/4\n", "K:C\n") == ["K:Dmin\n"]
    assert controls.header_edit(header + "Q:1/4=96\nM:3/4\nK:Dmin\n", "V:1 treble\n") is None
    assert controls.header_edit(header, "L:1/4\n") is None  # not a chosen field
    # a voice or the body before a chosen line: the missing lines instead, the model writes it again
    assert controls.header_edit(header + "M:3/4\n", "V:1 treble\n") == ["Q:1/4=96\n", "K:Dmin\n"]
    assert controls.header_edit(header, "[r:0/11][V:1]a") == ["Q:1/4=96\n", "M:3/4\n", "K:Dmin\n"]
    assert controls.header_edit(header, "K:Dmin\nV:1 bass") == ["Q:1/4=96\n", "M:3/4\n", "K:Dmin\n"]
    assert PieceControls(meter="C").header_edit(header, "K:G\n") == ["M:C\n", "K:G\n"]  # the model's key stays
    assert PieceControls(meter="C").header_edit(header, "L:1/8\nM:4") == ["L:1/8\n", "M:C\n"]  # a line begun


def test_the_model_writes_the_rest_of_the_header_around_the_chosen_lines():
    piece = make_piece(key="Dm", meter="3/4", header_retries=2)
    assert [header_line(piece, line) for line in ("%%score 1 2\n", "L:1/8\n")] == ["", ""]
    assert header_line(piece, "M:4/4\n") == "rebuilt"  # the context is encoded again: the engine prefills it
    assert header_line(piece, "V:1 treble\n") == "rebuilt"  # K: first
    assert [header_line(piece, line) for line in ("V:1 treble\n", "V:2 bass\n")] == ["", ""]
    header = "%%score 1 2\nL:1/8\nM:3/4\nK:Dmin\nV:1 treble\nV:2 bass\n"
    assert piece.text == "".join(BACH.lines) + header
    patchilizer = Patchilizer(16)  # the context is as if the model had written the lines
    assert piece.context == [patchilizer.bos_patch] + patchilizer.encode_metadata(piece.text.splitlines(True))
    assert piece.released == len("".join(BACH.lines))  # nothing of the header before a body line stands
    released = "".join(text for text, _ in feed(piece, "[r:0/5][V:1]a6|[V:2]C6|\n"))
    assert released.startswith(header)


# -- bars --------------------------------------------------------------------------------------
def test_a_piece_of_n_bars_has_its_prefixes_written_and_ends_after_its_last_bar():
    piece = make_piece(meter="3/4", bars=3, bar_retries=2)
    for line in ("L:1/8\n", "M:3/4\n", "K:C\n", "V:1 treble\n", "V:2 bass\n"):
        header_line(piece, line)
    assert piece.forced(ids("[r")) is None and forced_prefix(piece, "[r:") == "[r:0/2]"  # the model starts the body
    no_end = piece.allowed([])
    assert BOS_ID not in no_end and EOS_ID not in no_end and ord("[") in no_end  # no end of piece before bar 3
    assert make_piece().allowed([]) is None
    feed(piece, "[r:0/2][V:1]a6|[V:2]C6|\n")
    assert forced_prefix(piece) == "[r:1/1]"
    assert piece.forced(ids("[r:1/1]")) is None  # the line is the model's from there
    feed(piece, "[r:1/1][V:1]b6|[V:2]D6|\n")
    assert not piece.done and forced_prefix(piece) == "[r:2/0]"
    assert feed(piece, "[r:2/0][V:1]c6|[V:2]E6|\n")[-1][1] == "rewound"  # the last bar must close the piece
    assert feed(piece, "[r:2/0][V:1]c6|][V:2]E6|]\n")[-1] == ("[r:2/0][V:1]c6|][V:2]E6|]\n", "")
    assert piece.done and piece.result().status == "finished" and piece.result().resampled_lines == 1


def test_a_pickup_bar_comes_on_top_of_the_chosen_bars():
    piece = make_piece(Prompt.from_lines(list(BACH.lines) + ["L:1/8", "M:3/4", "K:C", "V:1 treble"]),
                       meter="3/4", bars=2, bar_retries=2)
    assert forced_prefix(piece, "[r:") == "[r:0/1]"  # not known yet
    outcomes = feed(piece, "[r:0/1][V:1]a2|\n")  # 2 eighths of 6: a pickup, counted in its prefix
    assert outcomes[-1] == ("[r:0/2][V:1]a2|\n", "rebuilt") and piece.controls.pickup
    assert piece.text.endswith("K:C\nV:1 treble\n[r:0/2][V:1]a2|\n") and piece.released == len(piece.text)
    assert piece.context[-1] == Patchilizer(16).patch_to_ids("[r:0/2][V:1]a2|\n")  # as training encodes it (16 chars)
    assert forced_prefix(piece) == "[r:1/1]"
    feed(piece, "[r:1/1][V:1]a6|\n")
    assert not piece.done and forced_prefix(piece) == "[r:2/0]"
    assert feed(piece, "[r:2/0][V:1]a8|]\n")[-1][1] == "rewound"  # with a pickup the last bar may be short
    feed(piece, "[r:2/0][V:1]a4|]\n")
    assert piece.done and piece.text.count("\n[r:") == 3


def test_a_continued_piece_counts_the_bars_it_was_given():
    given = "%Baroque\nL:1/8\nM:3/4\nK:C\nV:1 treble\n[r:0/3][V:1]a2|\n[r:1/2][V:1]a6|\n"
    piece = make_piece(Prompt.from_abc(given), bars=3)
    assert piece.controls.pickup and forced_prefix(piece) == "[r:2/1]"
    feed(piece, "[r:2/1][V:1]b6|\n")
    feed(piece, "[r:3/0][V:1]c4|]\n")
    assert piece.done and piece.text == given + "[r:2/1][V:1]b6|\n[r:3/0][V:1]c4|]\n"


# -- the meter ---------------------------------------------------------------------------------
def test_each_voice_bar_is_checked_against_the_meter_as_soon_as_it_ends():
    controls, six = PieceControls(meter="3/4", bars=4), Fraction(6)
    assert controls.bar_problem("[r:1/3][V:1]a2 b2 c2", six) is None
    assert controls.bar_problem("[r:1/3][V:1]a2 b2 c2 d2", six) == "a bar that does not last the meter"
    assert controls.bar_problem("[r:1/3][V:1]a6|[V:2]C4", six) == "voices differ in duration"
    assert controls.bar_problem("[r:1/3][V:1]a6|[V:2]C6|\n", six) is None  # its own barline, at the line's end
    assert controls.bar_problem("[r:1/3][V:1]a4 [ce", six) == "bar of unknown duration"
    assert controls.bar_problem("[r:0/3][V:1]a2", six) is None  # a pickup
    assert controls.bar_problem("[r:0/3][V:1]a8", six) == "a bar longer than the meter"
    assert PieceControls(bars=4).bar_problem("[r:1/3][V:1]a8", six) is None  # no chosen meter: not checked
    assert controls.line_problem("[r:2/1][V:1][M:4/4]a8|\n", six) == "meter change"
    assert controls.line_problem("[r:2/1][V:1][K:G]a6|\n", six) is None  # no chosen key
    assert PieceControls(key="C").line_problem("[r:2/1][V:1][K:G]a6|\n", six) == "key change"
    assert [closes(line) for line in ("[V:1]a6|]", "[V:1]a6:|[V:2]C6||", "[V:1]a6|][V:2]C6|", "[r:3/0]")] \
        == [True, True, False, False]


def test_only_the_voice_whose_bar_breaks_the_meter_is_written_again():
    prompt = Prompt.from_lines(list(BACH.lines) + ["%%score { 1 | 2 }", "L:1/8", "M:3/4", "K:C", "V:1 treble", "V:2 bass"])
    piece = make_piece(prompt, meter="3/4", bar_retries=3)
    feed(piece, "[r:0/9][V:1]a6|[V:2]C6|\n")
    feed(piece, "[r:1/8][V:1]a6")
    kept = (len(piece.text), len(piece.context))
    assert piece.add_patch(ids("|[V:2]C8") + [EOS_ID]) == ("", "rewound")  # 4/4 in a voice: that chunk only
    assert (len(piece.text), len(piece.context)) == kept and piece.text.endswith("[r:1/8][V:1]a6")
    assert piece.add_patch(ids("|[V:2]C6") + [EOS_ID]) == ("", "")
    assert piece.add_patch(ids("|\n") + [EOS_ID])[0] == "[r:1/8][V:1]a6|[V:2]C6|\n"
    assert piece.lines.resampled_lines == 1
    for _ in range(3):  # bar_retries rewrites in a try at the line: then the bar stays, and the whole line is judged
        assert feed(piece, "[r:2/7][V:1]a8")[-1][1] == "rewound"
    assert feed(piece, "[r:2/7][V:1]a8")[-1][1] == ""
    assert piece.add_patch(ids("|[V:2]C8|\n") + [EOS_ID])[1] == "rewound" and piece.lines.line_retries == 1
    assert feed(piece, "[r:2/7][V:1]a8")[-1][1] == "rewound"  # the next try at the line rewrites its bars again


# -- the stall limit ---------------------------------------------------------------------------
def test_a_piece_with_no_new_bar_for_the_stall_limit_ends_with_its_text():
    piece = make_piece(stall_seconds=20, bar_retries=2)
    feed(piece, "L:1/8\nM:4/4\nK:C\nV:1 treble\n[r:0/9][V:1]a8|\n")
    piece.progressed -= 19  # 19 s since the last bar stood
    feed(piece, "[r:1/8][V:1]a4")
    assert not piece.done
    piece.progressed -= 2
    piece.add_patch(ids(" b4") + [EOS_ID])
    result = piece.result()
    assert result.status == "failed" and result.reason == "no_new_bar"
    assert result.text.endswith("[r:0/9][V:1]a8|\n[r:1/8][V:1]a4 b4")  # nothing is lost
    again = make_piece(stall_seconds=20, bar_retries=2)
    feed(again, "L:1/8\nM:4/4\nK:C\nV:1 treble\n[r:0/9][V:1]a8|\n")
    again.progressed -= 30  # a line being rewritten: the limit is checked on rewound patches too
    assert feed(again, "[r:1/8][V:1]abcd|[V:1]C8|\n")[-1] == ("", "") and again.result().reason == "no_new_bar"


# -- the tiny checkpoint under every control ---------------------------------------------------
def test_the_tiny_checkpoint_writes_a_piece_in_the_chosen_key_meter_and_bars(tiny_model):
    settings = GenerationSettings(seed=5, key="Eb", meter="6/8", tempo=72, bars=3, bar_retries=2, header_retries=2,
                                  max_chars=3000)
    events = list(reference_generate(tiny_model, BACH, settings))  # uncached
    (cached,) = Engine(tiny_model).generate([BACH], settings)
    result = events[-1].result
    assert "".join(event.text for event in events) == result.text == cached.text
    assert result.status == "finished", result.reason
    header, body = result.text.split("\n[r:0/", 1)
    assert [line for line in header.split("\n") if line[:2] in ("Q:", "M:", "K:")] == ["Q:1/4=72", "M:6/8", "K:Eb"]
    lines = ("[r:0/" + body).splitlines()
    pickup = len(lines) == 4
    assert [line[:line.index("]") + 1] for line in lines] == [f"[r:{i}/{len(lines) - 1 - i}]" for i in range(len(lines))]
    assert len(lines) == 3 + pickup and result.resampled_lines > 0  # the tiny model's bars were written again
