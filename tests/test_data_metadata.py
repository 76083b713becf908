"""Stage 2's `--metadata`: prompt lines from a CSV, JSON lines or a folder layout on top of every
output; pieces without an entry counted, named and kept; bad metadata is one `error:` line naming
the file and line, before anything is written; a changed table rewrites the pieces it changes.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, pipeline_item
from notagen.abc import KEYS_15
from notagen.abc.metadata import (MetadataError, assign_prompts, read_csv_metadata, read_folder_metadata,
                                  read_metadata, with_prompt)

HEADER = "name,period,composer,instrumentation\n"
BACH = pipeline_item("bach/bwv269.mxl")["standard_abc"]
MONTEVERDI = pipeline_item("monteverdi/madrigal.3.1.mxl")["standard_abc"]


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_entries(tmp_path):
    table = write(tmp_path / "m.csv", "\ufeff" + "instrumentation,name,composer,period,title\n"
                  'Art Song,a,"Schröter, Corona",Classical,An Laura\n\n'
                  'Choral , b ,"Bach, Johann Sebastian", Baroque,x\n')
    entries = read_csv_metadata(table)
    assert {name: entry.prompt for name, entry in entries.items()} == {
        "a": ("Classical", "Schroter, Corona", "Art Song"), "b": ("Baroque", "Bach, Johann Sebastian", "Choral")}
    assert entries["b"].where == f"{table}:4"  # the blank line counts


@pytest.mark.parametrize("rows, message", [
    ('a,Romantic,,Art Song\n', ":2: empty composer"),
    ('a,Romantic,X,Art Song\nb,Romantic,"Brahms,\nJohannes",Art Song\n', ":3: composer 'Brahms,\\nJohannes' holds a line break"),
    ('a,Romantic,X,Art Song\nb,Romantic,X,\n', ":3: empty instrumentation"),
    ('a,Romantic,Brahms|J,Art Song\n', ":2: composer 'Brahms|J' holds '|'"),
    ('a,%Romantic,X,Art Song\n', ":2: period '%Romantic' starts with '%'"),
    ('a,Romantic,X,Art Song\n"x\n",Romantic,X,Art Song\n', ":3: name 'x' holds a line break"),
    ('a,Romantic,X,Art Song\na,Baroque,Y,Choral\n', ":3: 'a' is listed again (first at "),
    ('a,Romantic,X\n', ":2: 3 fields, the header has 4"),
])
def test_bad_csv_lines_are_named(tmp_path, rows, message):
    table = write(tmp_path / "m.csv", HEADER + rows)
    with pytest.raises(MetadataError) as error:
        read_csv_metadata(table)
    assert str(error.value).startswith(f"{table}{message}")


def test_a_header_without_a_column_and_json_lines(tmp_path):
    with pytest.raises(MetadataError, match=r"m.csv:1: the header lacks instrumentation"):
        read_csv_metadata(write(tmp_path / "m.csv", "name,period,composer\na,b,c\n"))
    lines = write(tmp_path / "m.jsonl", json.dumps({"name": "a", "period": "Romantic", "composer": "Lang, Josephine",
                                                    "instrumentation": "Art Song"}) + "\n\n"
                  + json.dumps({"name": "b", "period": "Romantic", "composer": ["x"], "instrumentation": "y"}) + "\n")
    with pytest.raises(MetadataError, match=r"m.jsonl:3: composer must be text"):
        read_metadata(lines, tmp_path)
    write(lines, lines.read_text().splitlines()[0] + "\n")
    assert read_metadata(lines, tmp_path)["a"].prompt == ("Romantic", "Lang, Josephine", "Art Song")


def test_folder_layout(tmp_path):
    for relative in ("Romantic/Brahms, Johannes/Art Song/op1/lied.mxl", "Baroque/Bach/Choral/c.abc",
                     "loose.mxl", "Romantic/Brahms, Johannes/notes.txt"):
        write(tmp_path / "scores" / relative, "x")
    entries = read_folder_metadata(tmp_path / "scores")
    assert {name: entry.prompt for name, entry in entries.items()} == {
        "Romantic_Brahms, Johannes_Art Song_op1_lied": ("Romantic", "Brahms, Johannes", "Art Song"),
        "Baroque_Bach_Choral_c": ("Baroque", "Bach", "Choral")}
    # a score of the layout with no ABC (stage 1 failed on it) is no error; a table's unknown name is
    assignment = assign_prompts(entries, ["Baroque_Bach_Choral_c", "loose"])
    assert assignment.prompts == {"Baroque_Bach_Choral_c": ("Baroque", "Bach", "Choral")}
    assert assignment.summary() == ("prompt lines: 1 pieces with an entry (1 prompts), 1 without "
                                    "(kept without prompt lines: loose)")
    with pytest.raises(MetadataError, match=r"m.csv:2: 'lost' matches no score"):
        assign_prompts(read_csv_metadata(write(tmp_path / "m.csv", HEADER + "lost,a,b,c\n")), ["loose"])


def test_with_prompt_replaces_the_prompt_lines_a_text_had():
    assert with_prompt("%Old\n%Prompt\n%Lines\n%%score 1\nX:1\n", ("a", "b", "c")) == "%a\n%b\n%c\n%%score 1\nX:1\n"
    assert with_prompt("X:1\n", None) == "X:1\n"


def stage2(tmp_path, *extra, expect=0):
    command = [sys.executable, str(REPO_ROOT / "data" / "2_data_preprocess.py"), "--ori_folder", str(tmp_path / "abc"),
               "--interleaved_folder", str(tmp_path / "interleaved"), "--augmented_folder", str(tmp_path / "augmented"),
               "--workers", "1", *map(str, extra)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == expect, result.stdout + result.stderr
    return result


def test_stage2_puts_the_metadata_on_top_and_names_the_pieces_without(tmp_path):
    write(tmp_path / "abc" / "bach.abc", BACH)
    write(tmp_path / "abc" / "monteverdi.abc", MONTEVERDI)
    write(tmp_path / "abc" / "bach_copy.abc", BACH)
    table = write(tmp_path / "m.csv", HEADER + 'bach,Baroque,"Bach, Johann Sebastian",Choral\n'
                                               'monteverdi,Renaissance,"Monteverdi, Claudio",Choral\n')
    bad = write(tmp_path / "bad.csv", table.read_text() + "bach_cpy,Baroque,Bach,Choral\n")
    result = stage2(tmp_path, "--metadata", bad, expect=2)
    assert result.stderr.strip() == (f"error: {bad}:4: 'bach_cpy' matches no score (names are the file names "
                                     f"without suffix, as stage 1 names its ABC files)")
    assert not (tmp_path / "interleaved").exists()  # nothing written

    out = stage2(tmp_path, "--metadata", table).stdout
    assert "3 converted, 0 failed" in out
    assert "prompt lines: 2 pieces with an entry (2 prompts), 1 without (kept without prompt lines: bach_copy)" in out
    bach = "%Baroque\n%Bach, Johann Sebastian\n%Choral\n"
    for key in KEYS_15:
        assert (tmp_path / "augmented" / key / f"bach_{key}.abc").read_text().startswith(bach)
    assert (tmp_path / "interleaved" / "monteverdi.abc").read_text().startswith("%Renaissance\n%Monteverdi, Claudio\n")
    copy = (tmp_path / "interleaved" / "bach_copy.abc").read_text()
    assert copy.startswith("%%score") and (tmp_path / "interleaved" / "bach.abc").read_text() == bach + copy

    # a changed entry rewrites that piece (all 16 files); the others are skipped
    write(table, HEADER + 'bach,Baroque,"Bach, J. S.",Choral\nmonteverdi,Renaissance,"Monteverdi, Claudio",Choral\n')
    out = stage2(tmp_path, "--metadata", table).stdout
    assert "1 converted, 0 failed, 2 skipped (already done)" in out
    assert (tmp_path / "augmented" / "Db" / "bach_Db.abc").read_text().startswith("%Baroque\n%Bach, J. S.\n%Choral\n")
    index = [json.loads(line) for line in (tmp_path / "augmented.jsonl").read_text().splitlines()]
    assert sorted(entry["path"].rsplit("/", 1)[1] for entry in index) == ["bach", "bach_copy", "monteverdi"]
