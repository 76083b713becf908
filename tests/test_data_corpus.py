"""The embedded corpus: a tiny build (3 pieces per set) has the contracted layout, prompt lines on
every fine-tuning file, consistent index files and prompts.json, held-out reference sets, and its
fine-tuning pieces survive the round trip to MusicXML and music21.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import read_jsonl
from notagen.abc import KEYS_15, augmented_file, split_prompt_lines
from notagen.abc.corpus import CorpusPiece, CorpusPlan, find_corpus_pieces, plan_corpus, round_robin, write_focus_index
from notagen.abc.roundtrip import check_corpus_roundtrip
from data_support import run_script


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus") / "corpus"
    stdout = run_script("build_corpus.py", "--out_dir", out, "--max_pieces", 3, "--reference_pieces", 2,
                        "--workers", 2, "--openscore_folder", "")  # OpenScore: test_data_openscore.py
    return out, stdout


def test_layout_and_printed_counts(tiny_corpus):
    out, stdout = tiny_corpus
    summary = json.loads((out / "summary.json").read_text())
    for set_name in ("pretrain", "finetune"):
        folder = out / set_name
        names = sorted(path.stem for path in (folder / "interleaved").glob("*.abc"))
        assert len(names) == summary[set_name]["pieces"] == 3
        assert sorted(path.stem for path in (folder / "standard_abc").glob("*.abc")) == names
        for key in KEYS_15:
            assert sorted(path.stem for path in (folder / "augmented" / key).glob("*.abc")) == \
                [f"{name}_{key}" for name in names]
        entries = read_jsonl(folder / "augmented.jsonl")
        train, evaluation = read_jsonl(folder / "augmented_train.jsonl"), read_jsonl(folder / "augmented_eval.jsonl")
        assert sorted(Path(entry["path"]).name for entry in entries) == names
        assert sorted(map(str, train + evaluation)) == sorted(map(str, entries)) and len(evaluation) == 1
        for entry in entries:  # paths are absolute here: the tmp corpus lies outside the repository
            assert augmented_file(entry["path"], "Eb").is_file()
        assert f"{set_name}: 3 pieces" in stdout


def test_finetune_files_carry_prompts(tiny_corpus):
    out, stdout = tiny_corpus
    prompts = {tuple(triple) for triple in json.loads((out / "finetune" / "prompts.json").read_text())}
    seen = set()
    for path in (out / "finetune" / "interleaved").glob("*.abc"):
        name = path.stem
        texts = [path.read_text(), (out / "finetune" / "standard_abc" / f"{name}.abc").read_text()] + \
                [(out / "finetune" / "augmented" / key / f"{name}_{key}.abc").read_text() for key in KEYS_15]
        found = {tuple(line[1:] for line in split_prompt_lines(text)[0]) for text in texts}
        assert len(found) == 1 and len(next(iter(found))) == 3, name
        seen |= found
    assert seen == prompts
    for period, composer, instrumentation in prompts:
        assert f"{period} / {composer} / {instrumentation}" in stdout


def test_references_are_held_out(tiny_corpus):
    out, _ = tiny_corpus
    training = {path.stem for set_name in ("pretrain", "finetune")
                for path in (out / set_name / "interleaved").glob("*.abc")}
    for set_name, prefix in (("bach_chorales", "bach_"), ("palestrina", "palestrina_")):
        names = [path.stem for path in (out / "reference" / set_name).glob("*.abc")]
        assert len(names) == 2 and all(name.startswith(prefix) for name in names)
        assert not training & set(names)
        assert all((out / "reference" / set_name / f"{name}.abc").read_text().count("[V:1]") > 4 for name in names)


def test_a_build_without_the_pretraining_set_leaves_an_earlier_one_alone(tiny_corpus, tmp_path):
    """`--pretrain_set false` into a folder that holds a pre-training set: its files and index stay."""
    import shutil

    out = shutil.copytree(tiny_corpus[0], tmp_path / "corpus")
    before = {path: path.read_bytes() for path in (out / "pretrain").rglob("*") if path.is_file()}
    stdout = run_script("build_corpus.py", "--out_dir", out, "--max_pieces", 3, "--reference_pieces", 2,
                        "--workers", 2, "--pretrain_set", "false", "--openscore_folder", "")
    assert "pretrain: not built (an earlier one in this folder is left as it was)" in stdout
    assert "finetune: 3 pieces" in stdout
    after = {path: path.read_bytes() for path in (out / "pretrain").rglob("*") if path.is_file()}
    assert len(before) > 45 and after == before
    assert json.loads((out / "summary.json").read_text())["pretrain"] == {"selected": 0, "pieces": 0, "built": False}


def test_finetune_round_trip(tiny_corpus):
    out, _ = tiny_corpus
    report = check_corpus_roundtrip(out / "finetune", workers=2, progress=False)
    assert (len(report.converted), report.failures) == (3, [])


def test_choice_is_varied_and_reproducible():
    pieces = find_corpus_pieces()
    assert len(pieces) > 14000 and len({piece.name for piece in pieces}) == len(pieces)
    prompts = {piece.name: ("P", piece.collection, "I") for piece in pieces if piece.collection in ("bach", "haydn")}
    plan = plan_corpus(pieces, prompts, max_pieces=40, reference_pieces=5, seed=3)
    assert plan == plan_corpus(pieces, prompts, max_pieces=40, reference_pieces=5, seed=3)
    assert len(plan.pretrain) == 40 and len({piece.collection for piece in plan.pretrain}) >= 30
    assert sum(piece.collection == "haydn" for piece in plan.finetune) == 9  # every Haydn, then Bach
    held_out = {piece.name for chosen in plan.references.values() for piece in chosen}
    assert len(held_out) == 10 and not held_out & {piece.name for piece in plan.pretrain + list(plan.finetune)}
    # a focus prompt adds pieces of that prompt to fine-tuning only, never a held-out one
    focused = plan_corpus(pieces, prompts, max_pieces=40, reference_pieces=5, seed=3,
                          focus=("P", "bach", "I"), focus_pieces=25)
    added = set(focused.finetune) - set(plan.finetune)
    assert set(plan.finetune) <= set(focused.finetune) and len(focused.finetune) == 65
    assert all(piece.collection == "bach" for piece in added) and not held_out & {p.name for p in added}
    assert focused.pretrain == plan.pretrain and focused.references == plan.references
    # without the pre-training set, the fine-tuning set and the references are what they were
    alone = plan_corpus(pieces, prompts, max_pieces=40, reference_pieces=5, seed=3, pretrain=False)
    assert alone == CorpusPlan([], plan.finetune, plan.references)
    groups = {"a": [1, 2, 3], "b": [4]}
    assert sorted(round_robin(groups, 3, seed=0)) in ([1, 2, 4], [1, 3, 4], [2, 3, 4])


def test_tunes_of_abc_collections_are_pieces():
    pieces = {piece.name: piece for piece in find_corpus_pieces()}
    assert pieces["essenFolksong_altdeu10_0001"] == CorpusPiece("essenFolksong_altdeu10_0001",
                                                                "essenFolksong/altdeu10.abc", 1)
    assert pieces["josquin_milleRegrets"].tune is None  # its tunes are the voices of one piece
    assert pieces["beethoven_opus18no1_movement1"].source.endswith(".mxl")  # MusicXML wins over Humdrum


def test_focus_index_is_a_subset_with_the_same_split(tmp_path):
    def entry(name):
        return json.dumps({"path": f"corpus/finetune/augmented/{name}", "key": "G"}) + "\n"

    (tmp_path / "augmented_train.jsonl").write_text(entry("bach_a") + entry("haydn_b") + entry("bach_c"))
    (tmp_path / "augmented_eval.jsonl").write_text(entry("bach_d") + entry("haydn_e"))
    counts = write_focus_index(tmp_path / "augmented", {"bach_a", "bach_c", "bach_d", "bach_not_built"})
    assert counts == {"train": 2, "eval": 1}
    assert (tmp_path / "augmented_focus_train.jsonl").read_text() == entry("bach_a") + entry("bach_c")
    assert (tmp_path / "augmented_focus_eval.jsonl").read_text() == entry("bach_d")


def test_mixed_index_keeps_few_focus_pieces(tmp_path):
    """The main job's CLaMP-DPO start set: the other prompts' training pieces, the first N focus
    training pieces, every eval piece; never a focus eval piece in train."""
    from notagen.abc.corpus import write_mixed_index

    def entry(name):
        return json.dumps({"path": f"corpus/finetune/augmented/{name}", "key": "G"}) + "\n"

    (tmp_path / "augmented_train.jsonl").write_text("".join(map(entry, ["bach_a", "haydn_b", "bach_c", "bach_f", "mozart_g"])))
    (tmp_path / "augmented_eval.jsonl").write_text(entry("bach_d") + entry("haydn_e"))
    write_focus_index(tmp_path / "augmented", {"bach_a", "bach_c", "bach_d", "bach_f"})
    counts = write_mixed_index(tmp_path, 2, tmp_path / "start")
    assert counts == {"train": 4, "focus": 2, "eval": 2}
    assert (tmp_path / "start" / "train.jsonl").read_text() == "".join(map(entry, ["haydn_b", "mozart_g", "bach_a", "bach_c"]))
    assert (tmp_path / "start" / "eval.jsonl").read_text() == entry("bach_d") + entry("haydn_e")
    assert write_mixed_index(tmp_path, 0, tmp_path / "none")["train"] == 2  # the other prompts alone
    (tmp_path / "augmented_focus_train.jsonl").write_text("")
    (tmp_path / "augmented_focus_eval.jsonl").write_text("")
    with pytest.raises(ValueError, match="no focus pieces"):
        write_mixed_index(tmp_path, 2, tmp_path / "bad")
