"""The data scripts against the golden vectors: the three pieces of data_pipeline.json, taken from the
installed music21 corpus, must come out as exactly the published standard, interleaved and 15
augmented texts, with matching index entries; rest_unreduce must reproduce rest_unreduce.json.
"""
from __future__ import annotations

import shutil

import pytest

from conftest import REPO_ROOT, load_vector, read_jsonl
from notagen.abc import (KEYS_15, AbcError, augment_abc, check_bar_alignment, clean_abc, interleave_abc,
                         rest_unreduce, split_prompt_lines, strip_stream_prefixes)
from data_support import MUSIC21_CORPUS, run_script, summary_line

PIPELINE = load_vector("data_pipeline.json")
ITEMS = {item["index_entry"]["name"]: item for item in PIPELINE["items"]}
UNREDUCE = load_vector("rest_unreduce.json")["rest_unreduce"]


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    """Scripts 1 and 2 on the three golden pieces (script 2 started from inside data/)."""
    work = tmp_path_factory.mktemp("golden")
    (work / "xml").mkdir()
    for item in PIPELINE["items"]:
        shutil.copy(MUSIC21_CORPUS / item["source"], work / "xml")
    stage1 = run_script("1_batch_xml2abc.py", "--ori_folder", work / "xml", "--des_folder", work / "std",
                        "--workers", 2)
    stage2 = run_script("2_data_preprocess.py", "--ori_folder", work / "std",
                        "--interleaved_folder", work / "interleaved", "--augmented_folder", work / "aug",
                        "--workers", 2, "--seed", 0, cwd=REPO_ROOT / "data")
    return work, stage1, stage2


def test_xml2abc_options_are_the_published_ones():
    from notagen.abc.convert import XML2ABC_ARGS
    assert XML2ABC_ARGS == PIPELINE["xml2abc_args"]


@pytest.mark.parametrize("name", sorted(ITEMS))
def test_scripts_reproduce_golden_texts(pipeline_run, name):
    work, _, _ = pipeline_run
    item = ITEMS[name]
    assert (work / "std" / f"{name}.abc").read_text() == item["standard_abc"]
    assert (work / "interleaved" / f"{name}.abc").read_text() == item["interleaved"]
    assert sorted(item["augmented"]) == sorted(KEYS_15)
    for key in KEYS_15:
        assert (work / "aug" / key / f"{name}_{key}.abc").read_text() == item["augmented"][key], key


def test_index_files_match_golden_entries(pipeline_run):
    work, _, stage2 = pipeline_run
    expected = {f"{work / 'aug'}/{item['index_entry']['name']}": item["index_entry"]["key"]
                for item in PIPELINE["items"]}
    everything = read_jsonl(work / "aug.jsonl")
    assert {entry["path"]: entry["key"] for entry in everything} == expected
    train, evaluation = read_jsonl(work / "aug_train.jsonl"), read_jsonl(work / "aug_eval.jsonl")
    assert len(evaluation) == 1 and len(train) == 2  # 10% of 3 rounds to 0: one eval piece is kept
    assert sorted(map(str, train + evaluation)) == sorted(map(str, everything))
    assert summary_line(stage2).startswith("3 converted, 0 failed")


def test_rerun_skips_finished_outputs(pipeline_run):
    work, stage1, _ = pipeline_run
    assert summary_line(stage1).startswith("3 converted, 0 failed")
    before = {path: path.stat().st_mtime_ns for path in (work / "std").glob("*.abc")}
    again = run_script("1_batch_xml2abc.py", "--ori_folder", work / "xml", "--des_folder", work / "std")
    assert summary_line(again).startswith("0 converted, 0 failed, 3 skipped (already done)")
    assert {path: path.stat().st_mtime_ns for path in (work / "std").glob("*.abc")} == before


def test_abc2xml_script_takes_generated_and_interleaved_text(tmp_path):
    bach, madrigal = ITEMS["bwv269"], ITEMS["madrigal.3.1"]
    header, body = bach["augmented"]["Eb"].split("[V:1]", 1)
    lines = ("[V:1]" + body).splitlines()
    generated = "%Baroque\n%Bach, Johann Sebastian\n%Choral\n" + header + "".join(
        f"[r:{index}/{len(lines) - 1 - index}]{line}\n" for index, line in enumerate(lines))
    (tmp_path / "abc").mkdir()
    (tmp_path / "abc" / "generated.abc").write_text(generated)
    (tmp_path / "abc" / "madrigal.abc").write_text(madrigal["interleaved"])
    stdout = run_script("3_batch_abc2xml.py", "--ori_folder", tmp_path / "abc", "--des_folder", tmp_path / "xml")
    assert summary_line(stdout).startswith("2 converted, 0 failed")
    import xml.etree.ElementTree as ElementTree
    for name, parts, measures in (("generated", 4, 24), ("madrigal", 5, 102)):
        root = ElementTree.parse(tmp_path / "xml" / f"{name}.xml").getroot()
        assert [len(part.findall("measure")) for part in root.findall("part")] == [measures] * parts


def test_text_functions_reproduce_golden_bach():
    item = ITEMS["bwv269"]
    cleaned = clean_abc(item["standard_abc"])
    assert interleave_abc(cleaned) == item["interleaved"]
    assert augment_abc(cleaned) == item["augmented"]


def test_prompt_lines_survive_every_step():
    prompt = "%Baroque\n%Bach, Johann Sebastian\n%Choral\n"
    item = ITEMS["bwv269"]
    cleaned = clean_abc(prompt + item["standard_abc"])
    assert cleaned.startswith(prompt)
    assert interleave_abc(cleaned) == prompt + item["interleaved"]
    assert augment_abc(cleaned)["F#"] == prompt + item["augmented"]["F#"]


@pytest.mark.parametrize("case", range(len(UNREDUCE)))
def test_rest_unreduce_golden(case):
    vector = UNREDUCE[case]
    assert rest_unreduce(vector["text"]) == vector["unreduced"]
    assert check_bar_alignment(vector["text"]) and check_bar_alignment(vector["unreduced"])


def test_check_bar_alignment_rejects_a_short_bar():
    text = ITEMS["bwv269"]["interleaved"].replace("[V:2]D2 E2 D2|", "[V:2]D2 E2|", 1)
    assert not check_bar_alignment(text)
    assert not check_bar_alignment("not ABC at all")


def test_rest_unreduce_reports_what_the_published_code_gets_wrong():
    header = "L:1/8\nM:2/4\nK:C\nV:1 treble\nV:2 bass\n"
    with pytest.raises(AbcError, match="no %%score line"):
        rest_unreduce(header + "[r:0/0][V:1]C4|\n")
    with pytest.raises(AbcError, match="undeclared voice"):
        rest_unreduce("%%score 1 2\n" + header + "[r:0/0][V:1]C4|[V:3]C4|\n")
    with pytest.raises(AbcError, match="no bar duration"):  # "A>" lacks the note after ">"
        rest_unreduce("%%score 1 2\n" + header + "[r:0/0][V:1]A>|\n")
    assert rest_unreduce("%%score ( 1 2 )\n" + header + "[r:0/0][V:1]C4|\n") == \
        "%%score ( 1 2 )\n" + header + "[V:1]C4|[V:2]x4|\n"


def test_single_voice_needs_no_score_line():
    text = "L:1/8\nM:2/4\nK:C\nV:1 treble\n[r:0/1][V:1]C2 D2|\n[r:1/0]\n"
    assert rest_unreduce(text) == "L:1/8\nM:2/4\nK:C\nV:1 treble\n[V:1]C2 D2|\n[V:1]z4|\n"


def test_prompt_and_stream_prefix_helpers():
    prompts, rest = split_prompt_lines("%Classical\n%Haydn, Joseph\n%Chamber\n%%score 1 2\nL:1/8\n")
    assert prompts == ["%Classical", "%Haydn, Joseph", "%Chamber"] and rest == "%%score 1 2\nL:1/8\n"
    assert strip_stream_prefixes("K:C\n[r:0/1][V:1]a|\n[r:1/0][V:1]b|]\n") == "K:C\n[V:1]a|\n[V:1]b|]\n"
