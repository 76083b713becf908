"""The golden vectors of CLaMP 2 (m3_clamp2.json + tiny_clamp2.pth): patches and features.

Features go through the real script, clamp2/extract_clamp2.py, on files written as the vector
note says (a first `%` comment line before each text).
"""
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO_ROOT, VECTORS, load_vector
from notagen.clamp2 import M3Patchilizer, extract_folder, load_clamp2_music

CASES = load_vector("m3_clamp2.json")
CHECKPOINT = VECTORS / CASES["checkpoint"]




def test_patches_match_vectors_exactly():
    patchilizer = M3Patchilizer(CASES["m3"]["patch_size"])
    for case in CASES["cases"]:
        assert patchilizer.encode(case["text"], add_special_patches=True) == \
            case["m3_encode_with_special_patches"]


def test_sizes_read_from_checkpoint_match_vector_config():
    model = load_clamp2_music(CHECKPOINT)  # no config given: heads = hidden / 64
    expected = CASES["m3"]
    got = model.config
    assert (got.patch_size, got.patch_length, got.hidden_size, got.num_layers, got.num_heads,
            got.intermediate_size) == (expected["patch_size"], expected["patch_length"],
                                       expected["hidden_size"], expected["layers"], expected["heads"],
                                       expected["intermediate_size"])
    assert model.checkpoint_kind == "clamp2"
    assert model.feature_size == len(CASES["cases"][0]["feature"])


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    """Run extract_clamp2.py as a user would, from the repository root, on the vector inputs."""
    root = tmp_path_factory.mktemp("vectors")
    inputs, outputs = root / "abc", root / "features"
    for index, case in enumerate(CASES["cases"]):
        path = inputs / f"group{index % 2}" / f"case{index}.abc"  # nested: outputs must mirror
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("%a prompt comment line\n" + case["text"], encoding="utf-8")
    command = [sys.executable, "clamp2/extract_clamp2.py", "--input_dir", str(inputs),
               "--output_dir", str(outputs), "--clamp2_weights_path", str(CHECKPOINT), "--batch_size", "8"]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": "", "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    return inputs, outputs


def test_script_features_match_vectors(extracted):
    _, outputs = extracted
    for index, case in enumerate(CASES["cases"]):
        feature = np.load(outputs / f"group{index % 2}" / f"case{index}.npy")
        assert feature.shape == (1, len(case["feature"])) and feature.dtype == np.float32
        np.testing.assert_allclose(feature[0], case["feature"], rtol=0, atol=1e-4)


def test_rerun_skips_finished_files(extracted):
    inputs, outputs = extracted
    before = {p: p.stat().st_mtime_ns for p in outputs.rglob("*.npy")}
    model = load_clamp2_music(CHECKPOINT)
    summary = extract_folder(model, M3Patchilizer(model.config.patch_size), inputs, outputs, progress=False)
    assert (summary.written, summary.skipped, summary.failed) == (0, len(CASES["cases"]), {})
    assert {p: p.stat().st_mtime_ns for p in outputs.rglob("*.npy")} == before
