"""A fine-tuning index with a chosen mix of prompts: each prompt's pieces capped, some repeated.

The embedded fine-tuning set is uneven (1,298 Palestrina pieces, 390 Bach chorales, 10 of many
songwriters), so a model fine-tuned on it as it is spends most of its steps on one style. The
shipped model's recipe (`weights/README.md`) caps every prompt at `cap` pieces (except those in
`uncapped`) and lists the pieces of the prompts in `repeats` that many times, each repeat getting
its own key and stream cut from the data loader. `NotaGenDataset(prompt_balance=b)` is the smooth,
formula-driven alternative; this one names the mix outright.

A piece's prompt is read from the first lines of one of its transposed files; the output keeps the
input's lines unchanged, shuffled with the seed.
"""
from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path

from ..data import read_index
from ..io import atomic_write_text
from ..paths import index_entry_bases
from .pipeline import augmented_file
from .text import KEYS_15, split_prompt_lines


def entry_prompt(entry_path: str, bases: list[Path]) -> str:
    """`period|composer|instrumentation` of an index entry (its first transposed file found), "" without."""
    for base in bases:
        for key in KEYS_15:
            path = augmented_file(base / entry_path, key)
            if path.is_file():
                prompt, _ = split_prompt_lines(path.read_text(encoding="utf-8"))
                return "|".join(line[1:] for line in prompt[:3])
    raise FileNotFoundError(f"no transposed file of {entry_path} (looked for <KEY>/<name>_<KEY>.abc)")


def balance_index(index: str | Path, out: str | Path, cap: int, repeats: dict[str, int] | None = None,
                  uncapped: tuple[str, ...] = (), seed: int = 0) -> dict[str, int]:
    """Write `out`: `index`'s lines, at most `cap` (seeded choice) per prompt but for the prompts in
    `uncapped`, the prompts of `repeats` listed that many times; returns the lines per prompt."""
    repeats = repeats or {}
    if cap < 1 or any(count < 1 for count in repeats.values()):
        raise ValueError(f"cap and repeats must be >= 1 (cap {cap}, repeats {repeats})")
    bases = index_entry_bases(index)
    lines = [line for line in Path(index).read_text(encoding="utf-8").splitlines() if line.strip()]
    by_prompt: dict[str, list[str]] = defaultdict(list)
    for entry, line in zip(read_index(index), lines):
        by_prompt[entry_prompt(entry.path, bases)].append(line)
    unknown = sorted((set(repeats) | set(uncapped)) - set(by_prompt))
    if unknown:
        raise ValueError(f"{index} has no piece of {', '.join(unknown)}")
    rng, chosen, counts = random.Random(seed), [], {}
    for prompt, group in sorted(by_prompt.items()):
        rng.shuffle(group)
        kept = group if prompt in uncapped else group[:cap]
        chosen += kept * repeats.get(prompt, 1)
        counts[prompt] = len(kept) * repeats.get(prompt, 1)
    rng.shuffle(chosen)
    atomic_write_text(out, "".join(line + "\n" for line in chosen))
    return counts


def parse_repeats(text: str) -> dict[str, int]:
    """`"A|B|C=3;D|E|F=2"` -> {"A|B|C": 3, "D|E|F": 2} (the command line's form)."""
    repeats = {}
    for item in filter(None, (part.strip() for part in text.split(";"))):
        prompt, sep, count = item.rpartition("=")
        if not sep or not count.strip().isdigit():
            raise ValueError(f"repeat {item!r}: expected period|composer|instrumentation=N")
        repeats[prompt.strip()] = int(count)
    return repeats


def counts_json(counts: dict[str, int]) -> str:
    return json.dumps(dict(sorted(counts.items(), key=lambda item: -item[1])), indent=1, ensure_ascii=False)
