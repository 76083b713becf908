"""Shared test fixtures and helpers: where the repository and the golden vectors live, small loaders
for the vectors, the tiny training corpus, and a few process helpers.

Test modules import the constants and helpers with `from conftest import ...` (pytest puts tests/ on
sys.path for this rootdir conftest); the fixtures are found by name.
"""
from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import pytest

from notagen.launch import free_port  # noqa: E402,F401  (shared with the tests)
from notagen.paths import REPO_ROOT, VECTORS_DIR as VECTORS  # noqa: E402  (the one definition of both)

# the prompt lines write_corpus(prompts=True) puts before every piece
CORPUS_PROMPT = "%Baroque\n%Bach, Johann Sebastian\n%Choral\n"


def load_vector(name: str):
    path = VECTORS / name
    if not path.exists():
        # the vectors are part of the contract: a missing file is a failure, never a skip
        raise FileNotFoundError(f"golden vector {path} is missing (the golden vectors live in tests/vectors/)")
    return json.loads(path.read_text())


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def pipeline_item(source: str) -> dict:
    """The data_pipeline.json item made from one music21 corpus file, e.g. "bach/bwv269.mxl"."""
    return next(item for item in load_vector("data_pipeline.json")["items"] if item["source"] == source)


def write_corpus(root: Path, *, prompts: bool = False, relative_to: Path | None = None,
                 eval_piece: int | None = None) -> Path:
    """The 3 real pieces of data_pipeline.json (15 keys each) in the corpus layout
    <root>/augmented/<KEY>/<name>_<KEY>.abc, plus index files; returns `root`.

    prompts: CORPUS_PROMPT before every piece. relative_to: index paths relative to this folder
    (absolute otherwise). eval_piece None: one index, augmented.jsonl, with the 3 pieces; a number:
    augmented_train.jsonl with the 3 pieces and augmented_eval.jsonl with that piece alone.
    """
    lines = []
    for item in load_vector("data_pipeline.json")["items"]:
        name = item["index_entry"]["name"]
        for key, text in item["augmented"].items():
            folder = root / "augmented" / key
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{name}_{key}.abc").write_text((CORPUS_PROMPT if prompts else "") + text)
        path = root / "augmented" / name
        if relative_to is not None:
            path = path.relative_to(relative_to)
        lines.append(json.dumps({"path": str(path), "key": item["index_entry"]["key"]}))
    if eval_piece is None:
        (root / "augmented.jsonl").write_text("\n".join(lines) + "\n")
    else:
        (root / "augmented_train.jsonl").write_text("\n".join(lines) + "\n")
        (root / "augmented_eval.jsonl").write_text(lines[eval_piece] + "\n")
    return root


@contextlib.contextmanager
def torch_threads(count: int = 1):
    """torch's thread count set to `count` inside the block, and put back after it."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """One torch thread in the test process: on a small shared CPU, OpenMP oversubscription stalls
    small products (subprocess tests choose their own threads)."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    return VECTORS


@pytest.fixture(scope="module")
def tiny_model():
    """The tiny published-format NotaGen checkpoint of tiny_notagen.json, loaded once per module."""
    from notagen.checkpoint import load_model

    return load_model(VECTORS / load_vector("tiny_notagen.json")["checkpoint"])
