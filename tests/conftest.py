"""Shared test fixtures: where the golden vectors live, and small loaders for them."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
VECTORS = REPO_ROOT.parent / "shared" / "vectors"
sys.path.insert(0, str(REPO_ROOT))


def load_vector(name: str):
    path = VECTORS / name
    if not path.exists():
        # the vectors are part of the contract: a missing file is a failure, never a skip
        raise FileNotFoundError(f"golden vector {path} is missing (expected ../shared/vectors beside the repo)")
    return json.loads(path.read_text())


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """One torch thread in the test process: on a small shared CPU, OpenMP oversubscription stalls
    small products (subprocess tests choose their own threads)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    return VECTORS
