"""An M3 trained by clamp2/train-m3.py on the embedded corpus separates styles.

The issue's acceptance run on the tiny preset: build a small embedded corpus from music21 (20
pieces per training set, 10 + 10 held-out references; or use NOTAGEN_CORPUS=<built corpus>), train
M3 for a few dozen steps with the real script, then the mean CLaMP 2 score of held-out Bach chorales
against a Bach reference (the other half of the chorales) must beat that of held-out Palestrina
pieces against the same reference. About two minutes on 2 cores.
Measured: 40 steps on the 20-piece corpus: Bach 0.714, Palestrina 0.457 (30 steps on a 200-piece
corpus: 0.728 vs 0.229).
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO_ROOT
from notagen.clamp2 import (M3Patchilizer, clamp2_score, extract_features_batched, list_abc_files,
                            load_clamp2_music, reference_mean)

TRAIN_SCRIPT = REPO_ROOT / "clamp2" / "train-m3.py"
TRAIN_STEPS = int(os.environ.get("NOTAGEN_M3_STEPS", "40"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    if os.environ.get("NOTAGEN_CORPUS"):
        return Path(os.environ["NOTAGEN_CORPUS"])
    out = tmp_path_factory.mktemp("corpus")
    command = [sys.executable, str(REPO_ROOT / "data" / "build_corpus.py"), "--out_dir", str(out),
               "--max_pieces", "20", "--reference_pieces", "10", "--openscore_folder", ""]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def style_scores(weights: Path, corpus: Path) -> tuple[list[float], list[float]]:
    """(held-out Bach scores, Palestrina scores) against the mean of the Bach reference half."""
    model = load_clamp2_music(weights)
    patchilizer = M3Patchilizer(model.config.patch_size)
    bach = list_abc_files(corpus / "reference" / "bach_chorales")
    palestrina = list_abc_files(corpus / "reference" / "palestrina")

    def features(files):
        return extract_features_batched(model, patchilizer, [f.read_text(encoding="utf-8") for f in files], 32)

    reference = reference_mean(features(bach[::2]))
    return ([clamp2_score(f, reference) for f in features(bach[1::2])],
            [clamp2_score(f, reference) for f in features(palestrina)])


def test_trained_m3_scores_held_out_bach_above_palestrina(tmp_path, corpus):
    command = [sys.executable, str(TRAIN_SCRIPT), "--train_dir", str(corpus / "pretrain" / "interleaved"),
               "--output_dir", str(tmp_path), "--preset", "tiny", "--max_steps", str(TRAIN_STEPS),
               "--num_epochs", "1000", "--batch_size", "8", "--learning_rate", "1e-3", "--warmup_steps", "10",
               "--decoder_patch_sample", "32", "--progress_bar", "false", "--num_threads", "1", "--eval_share", "0"]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    bach, palestrina = style_scores(tmp_path / "weights_m3.pth", corpus)
    print(f"held-out Bach {np.mean(bach):.4f}, Palestrina {np.mean(palestrina):.4f} "
          f"(against the Bach reference, {len(bach)} and {len(palestrina)} pieces)")
    assert np.mean(bach) > np.mean(palestrina)
