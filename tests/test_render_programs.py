"""Rendered pieces sound like their score: each part plays the General MIDI program its name says
(notagen.texture.gm_program), read back from the MIDI files the demo and `--render true` write
(notagen.render.export_piece); a key MIDI cannot hold (11 flats) is respelled, not an audio failure."""
from __future__ import annotations

from pathlib import Path

import pretty_midi

from conftest import pipeline_item
from notagen.abc.convert import musicxml_to_score
from notagen.render import RenderSettings, export_piece


def first_bars(text: str, bars: int = 6) -> str:
    """The header and the first `bars` lines of interleaved text: a short piece that renders fast."""
    lines = text.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("[V:"))
    return "\n".join(lines[:start + bars]) + "\n"


def render(text: str, folder, audio: bool = False):
    done = export_piece(text, lambda kind, suffix: folder / f"piece{suffix}",
                        RenderSettings(audio=audio, audio_format="wav", synth="midirenderer"))
    assert not done.problems, done.problems
    return done, pretty_midi.PrettyMIDI(done.files["midi"])


def programs(midi: pretty_midi.PrettyMIDI) -> list[tuple[str, int]]:
    return [(instrument.name, instrument.program) for instrument in midi.instruments]


def test_a_string_quartet_plays_on_strings(tmp_path):
    quartet = first_bars(pipeline_item("beethoven/opus18no4.mxl")["interleaved"])
    assert quartet.startswith("%%score ( 1 2 ) ( 3 4 ) ( 5 6 ) 7\n")  # seven voices on four staves
    _, midi = render(quartet, tmp_path)
    assert programs(midi) == [("Violin I", 40), ("Violin II", 40), ("Viola", 41), ("Violoncello", 42)]
    assert all(instrument.notes for instrument in midi.instruments)


def test_a_chorale_sings_as_a_choir_and_a_song_as_one_voice_with_piano(tmp_path):
    _, chorale = render(first_bars(pipeline_item("bach/bwv269.mxl")["interleaved"]), tmp_path / "chorale")
    assert programs(chorale) == [("Soprano", 52), ("Alto", 52), ("Tenor", 52), ("Bass", 52)]
    song = ('%%score 1 { 2 | 3 }\nL:1/8\nM:4/4\nK:G\nV:1 treble nm="Singstimme\\nVoice"\nV:2 treble nm="Pianoforte"\n'
            'V:3 bass\n[V:1]G4 A4|[V:2]B8|[V:3]G,8|\n[V:1]B8|][V:2]d8|][V:3]G,,8|]\n')
    _, lied = render(song, tmp_path / "lied")
    assert [program for _, program in programs(lied)] == [53, 0, 0]  # the singer, the piano's two staves


def test_a_key_of_eleven_flats_is_respelled_for_midi(tmp_path):
    """Fb minor has 11 flats: music21 wrote them into the MIDI file and mido (pretty_midi, the audio
    length) refused it: "Could not decode key with 11 flats and mode 1". It is E minor for MIDI."""
    piece = ('%%score 1 2\nL:1/8\nM:4/4\nK:Fbm\nV:1 treble nm="Violin"\nV:2 bass nm="Cello"\n'
             '[V:1]F2 G2 A2 B2|[V:2]F,8|\n[V:1]c8|][V:2]F,8|]\n')
    done, midi = render(piece, tmp_path, audio=True)
    assert done.audio_seconds > 1 and done.files["audio"].endswith(".wav")
    assert [(k.key_number, k.time) for k in midi.key_signature_changes] == [(pretty_midi.key_name_to_key_number("E minor"), 0.0)]
    # the notes sound as the score writes them: only the key signature event changed
    score = musicxml_to_score(Path(done.files["musicxml"]).read_text(encoding="utf-8"))
    for part, instrument in zip(score.parts, midi.instruments):
        assert [note.pitch for note in instrument.notes] == [n.pitch.midi for n in part.flatten().notes]
    assert [note.pitch for note in midi.instruments[1].notes] == [52, 52]  # Fb3 (E3), twice
    assert programs(midi) == [("Violin", 40), ("Cello", 42)]
