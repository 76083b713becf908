"""notagen.texture on real headers (music21's corpus and OpenScore scores, converted by this
project's pipeline: tests/fixtures/texture_headers.json) and on the broken headers generation makes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from notagen.texture import adheres, describe, gm_program, name_family, parts_of, texture

FIXTURE = Path(__file__).parent / "fixtures" / "texture_headers.json"

# source (without its collection prefix) -> (texture label, adheres to its prompt's instrumentation)
EXPECTED = {
    "bach/bwv269.mxl": ("voice x4", True),
    "bach/bwv66.6.mxl": ("voice x4", True),
    "palestrina/Agnus_01.krn": ("voice x5", True),
    "monteverdi/madrigal.5.3.mxl": ("voice x5 + keyboard", True),  # Canto, Alto, Quinto, Tenor, Basso + Continuo
    "trecento/PMFC_06_Piero_1-All_onbra d_un perlato.xml": ("voice x2", True),
    "josquin/adieuMesAmours.abc": ("unknown x4", False),  # no part names: cannot be told
    "lusitano/allor_che_ignuda.mxl": ("voice x3", True),
    "beach/prayer_of_a_tired_child.musicxml": ("voice x4 + keyboard", True),
    "handel/rinaldo/Lascia_chio_pianga.mxl": ("unknown + keyboard", False),  # the singer's staff has no name
    "schumann_robert/dichterliebe_no2.xml": ("unknown x2", False),  # "MusicXML Part" twice
    "corelli/opus3no1/1grave.xml": ("string x3", True),  # two violins in one brace are two parts
    "beethoven/opus18no5.mxl": ("string x4", True),
    "haydn/opus74no1/movement3.mxl": ("string x4", True),  # names with exported newlines and ':'
    "mozart/k80/movement3.mxl": ("string x4", True),
    "schumann_clara/opus17/movement3.xml": ("string x2 + keyboard", True),  # piano trio
    "weber/concertino_clarinet.mxl": ("instrument + keyboard", True),
    "schumann_robert/opus41no1/movement4.mxl": ("string x4", True),
    "cpebach/h186.mxl": ("unknown", True),  # one unnamed grand staff
    "chopin/mazurka06-2.krn": ("keyboard x2", True),
    "schumann_clara/polonaise_op1n1.mxl": ("keyboard", True),
    "Schubert,_Franz/4_Lieder,_Op.96/4_Fischerweise,_D.881/lc6487832.mxl": ("voice + keyboard", True),
    "Brahms,_Johannes/5_Lieder,_Op.49/3_Sehnsucht/lc5098713.mxl": ("voice + keyboard", True),
    "Lang,_Josephine/6_Deutsche_Lieder,_Op.11/2_Ruhethal/lc6577218.mxl": ("voice + keyboard", True),
    "Bizet,_Georges/20_Mélodies,_Op.21/10_Sérénade/lc6898141.mxl": ("voice + keyboard", True),
    "Arne,_Thomas/_/Love_Relaps’d/lc8873154.mxl": ("instrument + voice + keyboard", False),  # flute obbligato
    "Zumsteeg,_Emilie/5_Lieder/1_Des_Kaufmanns_Liebeswerbung/lc6158642.mxl": ("voice + plucked", True),
    "Beethoven,_Ludwig_van/String_Quartet_No.4,_Op.18_No.4/sq8913219.mxl": ("string x4", True),
    "Haydn,_Joseph/String_Quartet_in_D_major,_Hob.III34,_Op.20_No.4/sq8509238.mxl": ("string x4", True),
}


def test_real_headers_get_their_texture():
    cases = json.loads(FIXTURE.read_text(encoding="utf-8"))
    assert len(cases) == len(EXPECTED)
    for case in cases:
        source = case["source"].split(": ", 1)[1]
        assert texture(case["header"], case["instrumentation"]) == EXPECTED[source], source


def test_a_string_quartet_and_a_lied_in_parts():
    cases = {c["source"].split(": ", 1)[1]: c["header"] for c in json.loads(FIXTURE.read_text(encoding="utf-8"))}
    # %%score [ ( 1 2 3 ) ( 4 5 ) ( 6 7 ) 8 ]: four staves of several voices each
    quartet = parts_of(cases["Beethoven,_Ludwig_van/String_Quartet_No.4,_Op.18_No.4/sq8913219.mxl"])
    assert [(p.name, p.staves, p.voices) for p in quartet] == [
        ("Violin 1", 1, ("1", "2", "3")), ("Violin 2", 1, ("4", "5")), ("Viola", 1, ("6", "7")),
        ("Violoncello", 1, ("8",))]
    # %%score 1 { ( 2 5 ) | ( 3 4 ) }: the singer, then the piano's two staves as one part
    lied = parts_of(cases["Schubert,_Franz/4_Lieder,_Op.96/4_Fischerweise,_D.881/lc6487832.mxl"])
    assert [(p.family, p.staves, p.voices) for p in lied] == [("voice", 1, ("1",)), ("keyboard", 2, ("2", "5", "3", "4"))]


@pytest.mark.parametrize("name, family, program", [
    ("Violin 1", "string", 40), ("Vln. II", "string", 40), ("\\n\t\t\t:Viola", "string", 41),
    ("Violoncello", "string", 42), ("Vc.", "string", 42), ("Double Bass", "string", 43),
    ("Piano", "keyboard", 0), ("Pianoforte", "keyboard", 0), ("Basso continuo", "keyboard", 6),
    ("Violone e Organo", "string", 43), ("Piano (or Harp)", "keyboard", 0), ("Alto Saxophone", "instrument", 65),
    ("Bb Clarinet", "instrument", 71), ("Guitarre", "plucked", 24), ("Flute", "instrument", 73),
    ("MusicXML Part", "unknown", 0), ("Qnor", "unknown", 0), ("", "unknown", 0), ("P1", "unknown", 0),
])
def test_instrument_names(name, family, program):
    assert name_family(name) == family and gm_program(name) == program


@pytest.mark.parametrize("name", ["Soprano", "Alto", "Tenor", "Bass", "Basso", "Canto", "Quinto", "Contratenor",
                                  "Singstimme\\n\\n          Voice", "Chant\\nVoice", "Gesang", "Sång Voice",
                                  "S.", "T", "Soprano I"])
def test_voice_names_sing_as_a_choir_or_a_solo_voice(name):
    assert name_family(name) == "voice"
    assert gm_program(name, sung_parts=4) == 52 and gm_program(name, sung_parts=1) == 53


def test_generated_headers():
    # no %%score: every voice is a part; a broken name is unknown
    no_score = 'V:1 treble nm="Soprano"\nV:2 treble nm="Qnor"\nV:3 bass nm="Tenor"\nV:4 bass nm="Bass"\n'
    assert texture(no_score, "Choral") == ("voice x3 + unknown", True)  # three singers are a choir still
    assert texture(no_score, "Art Song") == ("voice x3 + unknown", False)
    # prompt lines, stream prefixes and the body's [V:n] bars are ignored
    generated = ('%Romantic\n%Schumann, Robert\n%Art Song\n%%score 1 { 2 | 3 }\nL:1/8\nK:G\n'
                 'V:1 treble nm="Voice"\nV:2 treble nm="Piano"\nV:3 bass\n[r:0/3][V:1]G8|[V:2]B8|[V:3]G,8|\n')
    assert texture(generated, "Art Song") == ("voice + keyboard", True)
    assert texture(generated, "Choral") == ("voice + keyboard", False)
    # an unclosed brace still holds its staves; a voice missing from %%score is a part of its own
    broken = '%%score 1 { 2 | 3\nV:1 nm="Violin"\nV:2 nm="Piano"\nV:3\nV:4 nm="Cello"\n'
    assert [(p.name, p.staves) for p in parts_of(broken)] == [("Violin", 1), ("Piano", 2), ("Cello", 1)]
    assert parts_of("X:1\nK:C\nCDEF|\n")[0].family == "unknown"  # a single unnamed voice


def test_rules_of_each_instrumentation():
    def parts(*names):
        return parts_of("".join(f'V:{i} nm="{n}"\n' for i, n in enumerate(names, 1)))

    assert adheres("Choral", parts("Soprano", "Alto", "Tenor", "Bass")) is True
    assert adheres("Choral", parts("Voice")) is False  # one singer is not a choir
    assert adheres("Choral", parts("Horn", "Soprano", "Alto", "Tenor", "Bass")) is True  # colla parte, as Bach
    assert adheres("Choral", parts("Soprano", "Alto", "Violin", "Viola", "Cello")) is False
    assert adheres("Art Song", parts("Soprano", "Alto", "Piano")) is False  # a duet
    assert adheres("Art Song", parts("Voice")) is False  # no accompaniment
    assert adheres("Chamber", parts("Soprano", "Alto", "Tenor", "Bass")) is False
    assert adheres("Chamber", parts("Piano", "Piano")) is False  # piano four hands is keyboard music
    assert adheres("Keyboard", parts("Piano", "Piano", "Piano")) is False  # three staves
    assert adheres("Keyboard", parts("Violin")) is False
    assert adheres("Orchestral", parts("Violin")) is None and describe([]) == "no parts"
