"""data/balance_index.py: a fine-tuning index with each prompt capped and some repeated."""
from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest

from conftest import REPO_ROOT
from notagen.abc.balance import balance_index, parse_repeats

PROMPTS = {"a": "Baroque|Bach, Johann Sebastian|Choral", "b": "Romantic|Brahms, Johannes|Art Song",
           "c": "Classical|Haydn, Joseph|Chamber"}


def small_index(root, sizes: dict[str, int]):
    """An index of `sizes[x]` pieces of prompt x, each with one transposed file (in G) holding its prompt lines."""
    lines = []
    for letter, count in sizes.items():
        for number in range(count):
            name = f"{letter}{number}"
            (root / "augmented" / "G").mkdir(parents=True, exist_ok=True)
            prompt = "".join(f"%{field}\n" for field in PROMPTS[letter].split("|"))
            (root / "augmented" / "G" / f"{name}_G.abc").write_text(prompt + "X:1\nK:G\n")
            lines.append(json.dumps({"path": str(root / "augmented" / name), "key": "G"}))
    (root / "train.jsonl").write_text("\n".join(lines) + "\n")
    return root / "train.jsonl"


def prompt_counts(path) -> Counter:
    return Counter(json.loads(line)["path"].rsplit("/", 1)[1][0] for line in path.read_text().splitlines())


def test_prompts_are_capped_repeated_or_kept_whole(tmp_path):
    index = small_index(tmp_path, {"a": 7, "b": 5, "c": 2})
    out = tmp_path / "balanced.jsonl"
    counts = balance_index(index, out, cap=3, repeats={PROMPTS["c"]: 3}, uncapped=(PROMPTS["a"],))
    assert counts == {PROMPTS["a"]: 7, PROMPTS["b"]: 3, PROMPTS["c"]: 6}
    assert prompt_counts(out) == {"a": 7, "b": 3, "c": 6}
    lines = out.read_text().splitlines()
    assert set(lines) <= set(index.read_text().splitlines())  # the input's own lines
    assert len({line for line in lines if '/c' in line}) == 2  # each of c's pieces three times
    again = tmp_path / "again.jsonl"
    balance_index(index, again, cap=3, repeats={PROMPTS["c"]: 3}, uncapped=(PROMPTS["a"],))
    assert again.read_text() == out.read_text()  # seeded


def test_bad_requests_are_refused_with_the_prompt_named(tmp_path):
    index = small_index(tmp_path, {"a": 2})
    with pytest.raises(ValueError, match=r"no piece of Classical\|Haydn, Joseph\|Chamber"):
        balance_index(index, tmp_path / "out.jsonl", cap=2, repeats={PROMPTS["c"]: 2})
    with pytest.raises(ValueError, match="expected period|composer|instrumentation=N"):
        parse_repeats("Classical|Haydn, Joseph|Chamber")
    assert parse_repeats("A|B|C=3; D|E|F=2") == {"A|B|C": 3, "D|E|F": 2}


def test_the_script_prints_the_mix_and_writes_the_index(tmp_path):
    index = small_index(tmp_path, {"a": 4, "b": 1})
    result = subprocess.run([sys.executable, str(REPO_ROOT / "data/balance_index.py"), "--index", str(index),
                             "--output_path", str(tmp_path / "mix.jsonl"), "--cap", "2",
                             "--repeats", f"{PROMPTS['b']}=2"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert prompt_counts(tmp_path / "mix.jsonl") == {"a": 2, "b": 2}
    assert result.stdout.strip().endswith(f"4 lines of 2 prompts -> {tmp_path / 'mix.jsonl'}")
