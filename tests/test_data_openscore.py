"""The OpenScore corpora in the embedded corpus: every score found, prompts spelled as NotaGen-X spells
them with the period from its list or from the birth year, the marks of MuseScore 4 exports that
xml2abc could not read, and a build (on a handful of scores) with the Art Song and quartet
reference sets held out.
"""
from __future__ import annotations

import csv
import json
from collections import Counter

import pytest

from conftest import REPO_ROOT
from notagen.abc import split_prompt_lines, xml_file_to_abc
from notagen.abc.convert import read_musicxml, xml2abc_readable
from notagen.abc.openscore import (composer_name, find_openscore_pieces, list_periods, list_spelling,
                                   period_of_birth)
from data_support import MUSIC21_CORPUS, openscore_sample, run_script

OPENSCORE = REPO_ROOT / "data" / "openscore"


@pytest.fixture(scope="module")
def corpus():
    return find_openscore_pieces(OPENSCORE)


def test_every_score_is_a_piece_with_a_unique_name(corpus):
    assert Counter(piece.collection for piece in corpus.pieces) == {"lieder": 1460, "string-quartets": 122}
    assert len({piece.name for piece in corpus.pieces}) == 1582
    assert all((OPENSCORE / piece.source).is_file() and piece.corpus == "openscore" for piece in corpus.pieces)
    assert (OPENSCORE / "lieder" / "LICENSE.txt").is_file() and (OPENSCORE / "string-quartets" / "LICENSE.txt").is_file()


def test_prompts_are_spelled_as_notagen_x_spells_them(corpus):
    by_source = {piece.source: corpus.prompts.get(piece.name) for piece in corpus.pieces}

    def prompts_of(folder):
        return {prompt for source, prompt in by_source.items() if f"/{folder}/" in source}

    assert prompts_of("Schröter,_Corona") == {("Classical", "Schroter, Corona", "Art Song")}
    assert prompts_of("Faisst,_Clara_Mathilda") == {("Romantic", "Faisst, Clara", "Art Song")}  # the list's name
    assert prompts_of("Holmès,_Augusta_Mary_Anne") == {("Romantic", "Holmes, Augusta Mary Anne", "Art Song")}
    assert prompts_of("Hensel,_Fanny") == {("Romantic", "Hensel, Fanny", "Art Song")}
    assert prompts_of("Haydn,_Joseph") == {("Classical", "Haydn, Joseph", "Art Song"), ("Classical", "Haydn, Joseph", "Chamber")}
    assert prompts_of("Arne,_Thomas") == {("Baroque", "Arne, Thomas", "Art Song")}  # born 1710, not in the list
    assert prompts_of("Stanford,_Charles_Villiers") == {("Romantic", "Stanford, Charles Villiers", "Art Song"),
                                                       ("Romantic", "Stanford, Charles Villiers", "Chamber")}
    assert corpus.without_period == ["Gray, Louisa", "White, Harold"]  # no birth year anywhere
    assert all(prompt is None for source, prompt in by_source.items() if "/Gray,_Louisa/" in source)
    # every prompt of a composer NotaGen-X knows uses its name and period
    periods = list_periods()
    known = [prompt for prompt in corpus.prompts.values() if prompt[1] in periods]
    assert len({prompt[1] for prompt in known}) == 48
    assert all(prompt[0] == periods[prompt[1]] for prompt in known)
    assert all("".join(prompt).isascii() for prompt in corpus.prompts.values())
    counts = Counter(corpus.prompts.values())
    assert sum(n >= 10 for (_, _, kind), n in counts.items() if kind == "Art Song") == 47
    assert {composer for (_, composer, kind), n in counts.items() if kind == "Chamber" and n >= 10} == \
        {"Haydn, Joseph", "Mozart, Wolfgang Amadeus", "Beethoven, Ludwig van"}


def test_the_birth_year_boundaries_give_notagen_x_its_own_periods():
    periods = list_periods()
    checked = set()
    for set_folder in ("lieder", "string-quartets"):
        with open(OPENSCORE / set_folder / "data" / "composers.tsv", encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle, delimiter="\t"):
                composer = list_spelling(composer_name(row["path"]), periods)
                if composer in periods and row["born"].isdigit():
                    assert period_of_birth(int(row["born"])) == periods[composer], composer
                    checked.add(composer)
    assert len(checked) == 45  # of the 48 composers both name (Berlioz, Chopin, Liszt have no table row)
    assert [period_of_birth(year) for year in (1399, 1400, 1559, 1560, 1713, 1714, 1779, 1780, 1906)] == \
        ["Medieval", "Renaissance", "Renaissance", "Baroque", "Baroque", "Classical", "Classical", "Romantic", "Romantic"]


def test_composer_names():
    assert composer_name("Barnard,_Charlotte_Alington_-_aka_Claribel") == "Barnard, Charlotte Alington"
    assert composer_name("Hensel,_Fanny_(Mendelssohn)") == "Hensel, Fanny"
    assert composer_name("Hardelot,_Guy_d’") == "Hardelot, Guy d'"
    assert composer_name("Poldowski") == "Poldowski"
    known = ["Schumann, Clara", "Schumann, Robert", "Faisst, Clara"]
    assert list_spelling("Faisst, Clara Mathilda", known) == "Faisst, Clara"
    assert list_spelling("Schumann, Clara", known) == "Schumann, Clara"
    assert list_spelling("Schumann, Claramonde", known) == "Schumann, Claramonde"  # word for word, not letters


@pytest.mark.parametrize("relative, mark", [
    ("lieder/scores/Brahms,_Johannes/5_Poems,_Op.19/2_Scheiden_und_Meiden/lc5069028.mxl", b'type="discontinue"'),
    ("lieder/scores/Brahms,_Johannes/8_Lieder_und_Gesänge,_Op.59/8_Dein_blaues_Auge/lc5058657.mxl", b">natural-flat<"),
    ("lieder/scores/Brahms,_Johannes/Marienlieder,_Op.22/3_Marias_Wallfahrt/lc8708688.mxl", b"<metronome"),
])
def test_xml2abc_reads_the_marks_of_musescore_exports(relative, mark):
    data = read_musicxml(OPENSCORE / relative)
    rewritten = xml2abc_readable(data)
    assert mark in data and mark not in rewritten and len(data) - len(rewritten) < 1000
    abc = xml_file_to_abc(OPENSCORE / relative)  # xml2abc raised on each of them before
    assert "V:1" in abc and abc.count("|") > 20


def test_a_score_without_those_marks_goes_to_xml2abc_byte_for_byte():
    data = read_musicxml(MUSIC21_CORPUS / "bach" / "bwv269.mxl")
    assert xml2abc_readable(data) is data


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    """A corpus from music21's corpus and the 7 sample scores, with Brahms songs as the focus prompt."""
    sample = openscore_sample(tmp_path_factory.mktemp("openscore"))
    out = tmp_path_factory.mktemp("corpus") / "corpus"
    stdout = run_script("build_corpus.py", "--out_dir", out, "--openscore_folder", sample, "--max_pieces", 2,
                        "--reference_pieces", 1, "--min_prompt_pieces", 1, "--workers", 2,
                        "--focus_prompt", "Romantic|Brahms, Johannes|Art Song", "--focus_pieces", 2)
    return out, stdout


def test_a_build_holds_out_an_art_song_and_a_quartet_set(build):
    out, stdout = build
    assert "candidates: 14914 pieces of music21's corpus, 5 OpenScore lieder, 2 OpenScore string-quartets" in stdout
    songs = [path.stem for path in (out / "reference" / "art_songs").glob("*.abc")]
    quartets = [path.stem for path in (out / "reference" / "string_quartets").glob("*.abc")]
    assert len(songs) == 1 and songs[0].startswith("lieder_") and len(quartets) == 1
    assert quartets[0] in ("quartets_Mozart_Wolfgang_Amadeus_sq7070781", "quartets_Mozart_Wolfgang_Amadeus_sq7093885")
    assert "reference art_songs: 1 pieces" in stdout and "reference string_quartets: 1 pieces" in stdout
    training = {path.stem for set_name in ("pretrain", "finetune") for path in (out / set_name / "interleaved").glob("*.abc")}
    assert not training & set(songs + quartets)
    assert (out / "reference" / "string_quartets" / f"{quartets[0]}.abc").read_text().count("[V:4]") > 20


def test_openscore_pieces_get_their_prompt_lines(build):
    out, stdout = build
    brahms = sorted((out / "finetune" / "interleaved").glob("lieder_Brahms_Johannes_*.abc"))
    assert len(brahms) == 2  # the two focus pieces (a third Brahms song may be the Art Song reference)
    for path in brahms:
        assert split_prompt_lines(path.read_text())[0] == ["%Romantic", "%Brahms, Johannes", "%Art Song"]
        assert (out / "finetune" / "augmented" / "C" / f"{path.stem}_C.abc").read_text().startswith("%Romantic\n%Brahms")
    assert ["Romantic", "Brahms, Johannes", "Art Song"] in json.loads((out / "finetune" / "prompts.json").read_text())
    assert "      2  Romantic / Brahms, Johannes / Art Song" in stdout
