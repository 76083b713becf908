"""Continue anyone's music: a chorale as standard ABC, MusicXML or MIDI becomes the same prompt; the
tiny checkpoint continues each through inference.py --continue_from (with a prompt triple in
front); broken files get named errors; stages 1-2 take MIDI beside MusicXML and count what they skip."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import REPO_ROOT, VECTORS
from notagen.generation.run import main as inference_main
from data_support import MUSIC21_CORPUS, run_script, summary_line

CHORALE = MUSIC21_CORPUS / "bach" / "bwv269.mxl"
LINES = ("%Baroque", "%Bach, Johann Sebastian", "%Choral")


@pytest.fixture(scope="module")
def chorale_files(tmp_path_factory) -> dict[str, Path]:
    """bwv269 as standard ABC (xml2abc), MusicXML (the corpus file) and MIDI (written by music21)."""
    from music21 import converter

    from notagen.abc import xml_file_to_abc

    folder = tmp_path_factory.mktemp("chorale")
    standard = folder / "bwv269.abc"
    standard.write_text(xml_file_to_abc(CHORALE))
    midi = folder / "bwv269.mid"
    converter.parse(str(CHORALE)).write("midi", str(midi))
    return {"abc": standard, "musicxml": CHORALE, "midi": midi}


def soprano_notes(prompt_text: str) -> list[tuple[int, float]]:
    """(MIDI pitch, onset in quarters from the first note) of the first voice, ties merged."""
    from notagen.abc import abc_to_musicxml
    from notagen.abc.convert import musicxml_to_score

    part = musicxml_to_score(abc_to_musicxml(prompt_text)).parts[0].stripTies()
    notes = list(part.flatten().notes)
    return [(n.pitch.midi, float(n.offset - notes[0].offset)) for n in notes]


def test_a_chorale_as_abc_musicxml_or_midi_becomes_the_same_prompt(chorale_files):
    from notagen.continuation import music_to_prompt

    from_xml = music_to_prompt(chorale_files["musicxml"], LINES, continue_bars=4)
    from_abc = music_to_prompt(chorale_files["abc"], LINES, continue_bars=4)
    assert from_xml.prompt == from_abc.prompt and from_xml.bars_given == 4
    body = [line for line in from_xml.prompt.text.splitlines() if line.startswith("[r:")]
    assert len(body) == 4 and body[0].startswith("[r:0/") and body[3].startswith(f"[r:3/{from_xml.bars_in_file - 4}]")
    assert from_xml.prompt.text.startswith("%Baroque\n%Bach, Johann Sebastian\n%Choral\n")
    assert "[V:1]G2|[V:2]D2|[V:3]B,2|[V:4]G,,2|" in body[0]  # the pickup bar is bar 1
    # MIDI has no pickup bar (its bars are shifted by a beat), so compare the notes and their onsets,
    # up to the first repeat sign (music21 writes the repeat out into the MIDI file)
    from_midi = music_to_prompt(chorale_files["midi"], (), continue_bars=0)
    assert soprano_notes(from_midi.prompt.text)[:16] == soprano_notes(music_to_prompt(CHORALE).prompt.text)[:16]


def test_broken_files_get_named_errors(tmp_path):
    from notagen.continuation import ContinuationError, music_to_prompt

    cases = {"notes.txt": (b"hello", "notes.txt: not a music file"),
             "junk.musicxml": (b"<html></html>", "junk.musicxml: not MusicXML"),
             "broken.mid": (b"MThd garbage", "broken.mid: not MIDI"),
             "empty.abc": (b"", "empty.abc: empty file")}
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ContinuationError, match=message):
            music_to_prompt(tmp_path / name)


@pytest.mark.parametrize("kind", ["abc", "musicxml", "midi"])
def test_the_tiny_checkpoint_continues_each_form_after_a_prompt_triple(chorale_files, tmp_path, kind, capsys):
    from notagen.continuation import music_to_prompt

    argv = ["--inference_weights_path", str(VECTORS / "tiny_notagen.pth"), "--output_dir", str(tmp_path),
            "--device", "cpu", "--stream", "false", "--prompt", "Baroque|Bach, Johann Sebastian|Choral",
            "--continue_from", str(chorale_files[kind]), "--continue_bars", "4", "--num_samples", "1",
            "--seed", "3", "--max_chars", "2500"]
    assert inference_main(REPO_ROOT / "inference" / "config.py", argv) == 0
    out = capsys.readouterr().out
    assert "the model writes from bar 5" in out
    [summary_path] = (tmp_path / "summary").glob("*.json")
    summary = json.loads(summary_path.read_text())
    assert summary["continuation"]["continues_at_bar"] == 5 and summary["continuation"]["bars_given"] == 4
    [piece] = summary["pieces"]
    written = Path(next(iter(piece["files"].values()))).read_text()
    given = music_to_prompt(chorale_files[kind], LINES, 4).prompt.text
    assert written.startswith(given) and len(written) > len(given)  # the user's bars, then the model's
    assert Path(next(iter(piece["files"].values()))).name.startswith(f"bwv269_continued_seed3")


def test_a_broken_file_to_continue_is_one_error_line(tmp_path, capsys):
    broken = tmp_path / "broken.mid"
    broken.write_bytes(b"not midi")
    argv = ["--inference_weights_path", str(VECTORS / "tiny_notagen.pth"), "--output_dir", str(tmp_path),
            "--device", "cpu", "--continue_from", str(broken)]
    assert inference_main(REPO_ROOT / "inference" / "config.py", argv) == 2
    assert capsys.readouterr().err.startswith("error: broken.mid: not MIDI")


def test_stages_1_and_2_take_midi_beside_musicxml_and_name_what_they_skip(chorale_files, tmp_path):
    import shutil

    scores = tmp_path / "scores"
    scores.mkdir()
    shutil.copy(chorale_files["musicxml"], scores / "bwv269.mxl")
    shutil.copy(chorale_files["midi"], scores / "bwv269_from_midi.mid")
    (scores / "readme.txt").write_text("not a score")
    stage1 = summary_line(run_script("1_batch_xml2abc.py", "--ori_folder", scores, "--des_folder", tmp_path / "abc"))
    assert stage1.startswith("2 converted, 0 failed, 1 skipped (unknown type: readme.txt)")
    assert sorted(p.name for p in (tmp_path / "abc").iterdir()) == ["bwv269.abc", "bwv269_from_midi.abc"]
    assert "# skipped (unknown type): " in (tmp_path / "abc_failures.log").read_text()
    (tmp_path / "abc" / "notes.md").write_text("a stray file")
    stage2 = summary_line(run_script("2_data_preprocess.py", "--ori_folder", tmp_path / "abc", "--interleaved_folder",
                                     tmp_path / "interleaved", "--augmented_folder", tmp_path / "augmented"))
    assert stage2.startswith("2 converted, 0 failed, 1 skipped (unknown type: notes.md)")  # 2 + 0 + 1 = 3 files


def test_prompt_file_of_standard_abc_is_converted_not_taken_as_header(chorale_files, tmp_path):
    from notagen.generation.run import parse_prompt

    with_lyrics = tmp_path / "with_lyrics.abc"
    with_lyrics.write_text(chorale_files["abc"].read_text().replace("V:1 treble", "V:1 treble\nw: some lyrics", 1))
    prompt = parse_prompt(str(with_lyrics), continue_bars=4)
    body = [line for line in prompt.text.splitlines() if line.startswith("[r:")]
    assert len(body) == 4 and body[0].startswith("[r:0/") and "w:" not in prompt.text
    generated = tmp_path / "generated.abc"
    generated.write_text(prompt.text)
    assert parse_prompt(str(generated)).text == prompt.text  # the model's own format is taken as it is
