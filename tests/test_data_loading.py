"""NotaGen training data: index files, key choice (data-formats.md s.5-7), encoding, batches, sampler."""
from __future__ import annotations

import collections
import json
import logging
import random
from pathlib import Path

import pytest
import torch

from conftest import CORPUS_PROMPT, load_vector, read_jsonl, write_corpus
from notagen.data import (KEYS, DataError, NotaGenDataset, choose_key, collate_patches, key_signature_key,
                          read_index)
from notagen.patchilizer import Patchilizer
from notagen.training import ShardedSampler

@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    write_corpus(root)
    return root


def test_key_signature_key_matches_abctoolkit_tables():
    from abctoolkit.transpose import Key2index, Key2Mode

    for folder_key, modes in Key2Mode.items():
        for mode_key in modes:
            assert Key2index[key_signature_key(mode_key)] == Key2index[folder_key], mode_key
    assert key_signature_key("Cmin") == "Eb" and key_signature_key("G") == "G"
    assert key_signature_key("Cb") == "Cb" and key_signature_key("none") == "C"
    with pytest.raises(ValueError):
        key_signature_key("Hp")


def test_near_key_distribution_follows_the_spec():
    rng = random.Random(0)
    n = 32000
    pitch = {k: i for i, k in enumerate(["C", None, "D", "Eb", "E", "F", None, "G", "Ab", "A", "Bb", None])}
    pitch.update({"C#": 1, "Db": 1, "F#": 6, "Gb": 6, "B": 11, "Cb": 11})
    counts = collections.Counter(choose_key("D", "near", rng) for _ in range(n))  # tonic 2: -3..+3 = 11..5
    by_offset = collections.Counter()
    for key, c in counts.items():
        by_offset[(pitch[key] - 2 + 6) % 12 - 6] += c
    for offset, weight in zip(range(-3, 4), (1, 2, 3, 4, 3, 2, 1)):
        assert abs(by_offset[offset] / n - weight / 16) < 0.01, (offset, by_offset)
    assert abs(counts["Db"] / (counts["Db"] + counts["C#"]) - 0.8) < 0.03  # pitch class 1
    assert abs(counts["B"] / (counts["B"] + counts["Cb"]) - 0.8) < 0.03  # pitch class 11
    gb = collections.Counter(choose_key("Cmin", "near", rng) for _ in range(8000))  # Cmin -> Eb: 0..6
    assert set(gb) <= {"C", "Db", "C#", "D", "Eb", "E", "F", "F#", "Gb"} and "Bb" not in gb
    assert abs(gb["F#"] / (gb["F#"] + gb["Gb"]) - 0.5) < 0.05  # pitch class 6
    uniform = collections.Counter(choose_key("G", "uniform", rng) for _ in range(15000))
    assert set(uniform) == set(KEYS) and min(uniform.values()) > 850


def test_dataset_reads_the_chosen_key_and_cuts_reproducibly(corpus):
    data = NotaGenDataset(corpus / "augmented.jsonl", patch_length=128, seed=3)
    items = load_vector("data_pipeline.json")["items"]
    patchilizer = Patchilizer()
    for index in range(len(data)):
        got = data[index]
        assert got.dtype == torch.long and got.shape[1] == 16 and got.shape[0] <= 128
        # the same as choosing the key and encoding by hand with the example's own RNG
        rng = data.example_rng(index)
        key = choose_key(data.entries[index].key, "uniform", rng)
        text = items[index]["augmented"][key]
        assert got.tolist() == patchilizer.encode_train(text, 128, rng=rng)
        assert torch.equal(got, data[index])  # deterministic
    first = [data[i] for i in range(3)]
    data.set_epoch(1)
    assert any(not torch.equal(a, data[i]) for i, a in enumerate(first))  # new keys/cuts per epoch


def test_finetune_keeps_prompt_lines_and_reads_near_keys(tmp_path):
    write_corpus(tmp_path, prompts=True)
    data = NotaGenDataset(tmp_path / "augmented.jsonl", patch_length=64, key_mode="near")
    items = load_vector("data_pipeline.json")["items"]
    assert data.entries[0].key == "G"
    keys = set()
    for epoch in range(12):
        data.set_epoch(epoch)
        rng = data.example_rng(0)
        key = choose_key("G", "near", rng)
        keys.add(key)
        got = data[0].tolist()
        assert got == Patchilizer().encode_train(CORPUS_PROMPT + items[0]["augmented"][key], 64, rng=rng)
        assert Patchilizer().decode(got).startswith(CORPUS_PROMPT)  # prompt lines kept as metadata
    assert keys <= {"E", "F", "F#", "Gb", "G", "Ab", "A", "Bb"} and len(keys) > 2  # within 3 semitones
    assert data.prompt_triples() == [("Baroque", "Bach, Johann Sebastian", "Choral")]


def test_plain_file_lists_and_relative_paths(tmp_path):
    write_corpus(tmp_path / "corpus" / "pretrain", relative_to=tmp_path)  # paths from the root
    index = tmp_path / "corpus" / "pretrain" / "augmented.jsonl"
    entries = read_jsonl(index)
    data = NotaGenDataset(index, patch_length=64)  # resolved against the index's ancestors
    assert len(data) == 3 and data[0].shape[1] == 16
    files = sorted((tmp_path / "corpus" / "pretrain" / "augmented" / "C").glob("*.abc"))
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{f}\n" for f in files))
    plain = NotaGenDataset(listing, patch_length=4096, patch_stream=False)
    assert plain.key_mode == "none"
    assert Patchilizer().decode(plain[0].tolist()).startswith(files[0].read_text().split("\n")[0])
    assert entries[0]["path"].startswith("corpus")


def test_bad_index_files_give_clear_errors(tmp_path, corpus):
    with pytest.raises(FileNotFoundError, match="index file not found"):
        NotaGenDataset(tmp_path / "nope.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(DataError, match="lists no pieces"):
        read_index(empty)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"path": "a", "key": "C"}\n{"path": \n')
    with pytest.raises(DataError, match=r"broken.jsonl:2"):
        read_index(broken)
    bad_key = tmp_path / "bad_key.jsonl"
    line = json.loads((corpus / "augmented.jsonl").read_text().splitlines()[0])
    bad_key.write_text(json.dumps(line) + "\n" + json.dumps({**line, "key": "Xdor"}) + "\n")
    with pytest.raises(DataError, match=r"bad_key.jsonl:2"):
        NotaGenDataset(bad_key, key_mode="near")
    nowhere = tmp_path / "nowhere.jsonl"
    nowhere.write_text(json.dumps({"path": "no/such/folder/piece", "key": "C"}) + "\n")
    with pytest.raises(DataError, match="cannot find"):
        NotaGenDataset(nowhere)


def test_missing_and_non_ascii_files_are_logged_and_skipped(tmp_path, caplog):
    write_corpus(tmp_path)
    data = NotaGenDataset(tmp_path / "augmented.jsonl", patch_length=64, key_mode="original")
    name0 = Path(data.entries[0].path).name  # bwv269, key G
    (tmp_path / "augmented" / "G" / f"{name0}_G.abc").unlink()
    name1 = Path(data.entries[1].path).name  # opus18no4, Cmin -> Eb
    bad = tmp_path / "augmented" / "Eb" / f"{name1}_Eb.abc"
    bad.write_text("%Beethoven, Ludwig van \u2013 op. 18\n" + bad.read_text())
    with caplog.at_level(logging.WARNING, logger="notagen.data"):
        first, second, third = data[0], data[1], data[2]
    assert torch.equal(first, third) and torch.equal(second, third)  # both replaced by the next readable
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "file not found" in messages and "non-ASCII" in messages
    for key in KEYS:  # nothing readable at all: an error, not an endless loop
        for f in (tmp_path / "augmented" / key).glob("*.abc"):
            f.unlink()
    with pytest.raises(DataError, match="no piece"):
        data[0]


def test_collate_pads_patches_and_masks():
    a, b = torch.full((3, 16), 65), torch.full((1, 16), 66)
    batch = collate_patches([a, b])
    assert batch["patches"].shape == (2, 3, 16) and batch["masks"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["patches"][1, 1:].eq(0).all() and batch["patches"][1, 0].eq(66).all()


def test_sharded_sampler_splits_disjointly_and_resumes_mid_epoch():
    shards = [ShardedSampler(10, 3, rank, seed=5) for rank in range(3)]
    for s in shards:
        s.set_epoch(2)
    lists = [list(s) for s in shards]
    assert all(len(x) == 4 for x in lists)  # padded to 12: equal lengths for DDP
    assert set(sum(lists, [])) == set(range(10))
    assert sorted(collections.Counter(sum(lists, [])).values()) == [1] * 8 + [2] * 2  # 2 padding repeats
    exact = [list(ShardedSampler(12, 3, rank, seed=5)) for rank in range(3)]
    assert sorted(sum(exact, [])) == list(range(12))  # no padding: disjoint
    again = ShardedSampler(10, 3, 1, seed=5)
    again.set_epoch(2)
    assert list(again) == lists[1]  # order depends only on seed and epoch
    again.set_start(2)
    assert list(again) == lists[1][2:] and len(again) == 2
    again.set_epoch(3)
    assert list(again) != lists[1] and len(again) == 4


def test_prompt_balance_repeats_rarer_prompts(tmp_path, caplog):
    def piece(name, prompt):
        path = tmp_path / f"{name}.abc"
        path.write_text((f"%{prompt[0]}\n%{prompt[1]}\n%{prompt[2]}\n" if prompt else "") + "X:1\nL:1/8\nK:C\nCDEF|\n")
        return path
    common, rare = ("Renaissance", "Palestrina", "Choral"), ("Classical", "Mozart", "Chamber")
    files = [piece(f"common{i}", common) for i in range(9)] + [piece("rare", rare), piece("bare", None)]
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{f}\n" for f in files))
    natural = NotaGenDataset(listing, patch_length=64)
    assert len(natural) == 11 and natural.prompt_repeats == {}
    with caplog.at_level(logging.INFO, logger="notagen.data"):
        half = NotaGenDataset(listing, patch_length=64, prompt_balance=0.5)
    assert half.prompt_repeats == {common: 1, rare: 3, (): 3}  # round(sqrt(9 / 1))
    assert len(half) == 9 + 3 + 3 and "11 pieces of 3 prompts -> 15 examples" in caplog.text
    assert [e.path for e in half.entries].count(str(files[9])) == 3
    full = NotaGenDataset(listing, patch_length=64, prompt_balance=1.0)
    assert len(full) == 27 and full.prompt_triples() == sorted([common, rare])  # every group as large as the largest
    assert torch.equal(full[9], full[9]) and full[9].shape[1] == 16
    with pytest.raises(ValueError, match="prompt_balance"):
        NotaGenDataset(listing, patch_length=64, prompt_balance=-1)
