"""Errors a user can cause end in one `error:` line that names the file and the reason (exit 2, no
traceback), on the real scripts; a full disk is said as such; features carry the fingerprint of
the extractor that made them, and NaN, garbage or mixed features are refused with the file named."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO_ROOT, VECTORS, load_vector, write_corpus

TINY = VECTORS / "tiny_notagen.pth"
TINY_CLAMP2 = VECTORS / "tiny_clamp2.pth"


def script(path: str, *args, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO_ROOT / path), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})


def refused(result: subprocess.CompletedProcess, *phrases: str) -> str:
    assert result.returncode == 2, f"exit {result.returncode}:\n{result.stdout[-1500:]}\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: "), result.stderr
    for phrase in phrases:
        assert phrase in line, line
    return line


@pytest.mark.parametrize("setting, value, message", [("--temperature", "0", "temperature must be > 0, not 0.0"),
                                                     ("--temperature", "-1", "temperature must be > 0"),
                                                     ("--batch_size", "0", "batch_size must be >= 1, not 0"),
                                                     ("--top_p", "1.5", "top_p must be in (0, 1]")])
def test_impossible_sampling_settings_are_one_clear_line(tmp_path, setting, value, message):
    refused(script("inference/inference.py", "--inference_weights_path", TINY, "--output_dir", tmp_path,
                   "--device", "cpu", setting, value, "--num_samples", "1"), message)


def test_an_index_file_with_bad_bytes_names_its_line(tmp_path):
    index = tmp_path / "train.jsonl"
    index.write_bytes(b'{"path": "a", "key": "C"}\n{"path": "b\xff\xfe", "key": "C"}\n')
    refused(script("pretrain/train-gen.py", "--preset", "tiny", "--data_train_index_path", index,
                   "--data_eval_index_path", "", "--output_dir", tmp_path / "run", "--cpu", "true"),
            f"{index}:2: not UTF-8 text")


def test_a_preference_file_that_is_not_json_is_named(tmp_path):
    preferences = tmp_path / "pairs.json"
    preferences.write_text("chosen: a.abc\n")
    refused(script("RL/train.py", "--preference_path", preferences, "--weights_path", TINY,
                   "--output_dir", tmp_path / "dpo"), str(preferences), "not a preference file")


@pytest.fixture
def feature_folders(tmp_path):
    generated, reference = tmp_path / "generated", tmp_path / "reference"
    for folder in (generated, reference):
        folder.mkdir()
        for index in range(3):
            np.save(folder / f"piece{index}.npy", np.random.default_rng(index).normal(size=(1, 8)).astype(np.float32))
    return generated, reference


@pytest.mark.parametrize("damage, message", [
    (lambda path: path.write_bytes(b"garbage"), "is not a .npy feature file"),
    (lambda path: np.save(path, np.ones((2, 8), dtype=np.float32)), "shape (2, 8), not a [1, F] feature"),
    (lambda path: np.save(path, np.full((1, 8), np.nan, dtype=np.float32)), "holds NaN or infinite values"),
    (lambda path: np.save(path, np.ones((1, 5), dtype=np.float32)), "2 files have 8 values, but piece1.npy (5)")])
def test_bad_features_are_refused_with_the_file_named(feature_folders, damage, message):
    generated, reference = feature_folders
    damage(generated / "piece1.npy")
    line = refused(script("clamp2/statistics.py", "--generated_features_dir", generated,
                          "--reference_features_dir", reference), message)
    assert "piece1.npy" in line or str(generated) in line


def test_empty_or_mismatched_feature_folders_name_the_folder(feature_folders, tmp_path):
    generated, reference = feature_folders
    empty = tmp_path / "empty"
    empty.mkdir()
    refused(script("clamp2/statistics.py", "--generated_features_dir", generated, "--reference_features_dir", empty),
            f"no .npy features under the reference folder {empty}")
    for path in reference.glob("*.npy"):
        np.save(path, np.ones((1, 4), dtype=np.float32))
    refused(script("clamp2/statistics.py", "--generated_features_dir", generated, "--reference_features_dir", reference),
            "extracted by different models")


def test_preference_pairs_from_an_empty_feature_folder_name_it(feature_folders, tmp_path):
    generated, reference = feature_folders
    empty = tmp_path / "no_features"
    empty.mkdir()
    texts = tmp_path / "texts"
    texts.mkdir()
    refused(script("RL/data.py", "--ground_truth_feature_dir", reference, "--generated_feature_dir", empty,
                   "--generated_original_dir", texts, "--generated_interleaved_dir", texts,
                   "--output_path", tmp_path / "pairs.json"), f"no generated features (.npy) under {empty}")
    refused(script("RL/data.py", "--ground_truth_feature_dir", reference, "--generated_feature_dir", generated,
                   "--generated_original_dir", texts, "--generated_interleaved_dir", texts,
                   "--output_path", tmp_path / "pairs.json"), f"none of the 3 features under {generated}", "piece0.abc")
    assert not (tmp_path / "pairs.json").exists()


def test_features_carry_their_extractor_and_other_weights_re_extract(tmp_path):
    import torch

    from notagen.clamp2.checkpoint import load_clamp2_music

    pieces = tmp_path / "pieces"
    pieces.mkdir()
    for item in load_vector("data_pipeline.json")["items"]:
        (pieces / f"{item['index_entry']['name']}.abc").write_text(item["interleaved"])
    features = tmp_path / "features"
    first = script("clamp2/extract_clamp2.py", "--input_dir", pieces, "--output_dir", features,
                   "--clamp2_weights_path", TINY_CLAMP2)
    assert first.returncode == 0, first.stderr[-3000:]
    record = json.loads((features / "extractor.json").read_text())
    assert record["weights"] == str(TINY_CLAMP2) and len(record["fingerprint"]) == 16
    before = {path.name: np.load(path) for path in features.glob("*.npy")}
    # other weights: the same architecture, every tensor nudged
    other = tmp_path / "other_clamp2.pth"
    checkpoint = torch.load(TINY_CLAMP2, map_location="cpu", weights_only=True)
    model = load_clamp2_music(TINY_CLAMP2)
    state = {name: tensor + 0.01 for name, tensor in model.state_dict().items()}
    key = next(k for k, v in checkpoint.items() if isinstance(v, dict) and any(torch.is_tensor(t) for t in v.values()))
    checkpoint[key] = {name: state.get(name, tensor) for name, tensor in checkpoint[key].items()}
    torch.save(checkpoint, other)
    again = script("clamp2/extract_clamp2.py", "--input_dir", pieces, "--output_dir", features,
                   "--clamp2_weights_path", other)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "made by other weights" in again.stderr
    assert json.loads((features / "extractor.json").read_text())["fingerprint"] != record["fingerprint"]
    after = {path.name: np.load(path) for path in features.glob("*.npy")}
    assert after.keys() == before.keys() and all(not np.allclose(after[n], before[n]) for n in after)
    # scoring a folder made by one extractor against one made by another stops
    reference = tmp_path / "reference"
    first_again = script("clamp2/extract_clamp2.py", "--input_dir", pieces, "--output_dir", reference,
                         "--clamp2_weights_path", TINY_CLAMP2)
    assert first_again.returncode == 0
    refused(script("clamp2/statistics.py", "--generated_features_dir", features, "--reference_features_dir", reference),
            "were extracted by different weights")


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MB filesystem (tmpfs; needs root, as CI has)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        if os.environ.get("CI"):
            raise AssertionError("CI runs as root: the disk-full test must run")
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        if os.environ.get("CI"):
            raise AssertionError(f"cannot mount a tmpfs for the disk-full test: {done.stderr}")
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_a_full_disk_during_training_is_said_with_the_path(small_disk, tmp_path):
    from test_training_runs import stage_args

    corpus = write_corpus(tmp_path / "corpus", eval_piece=1)
    result = script("pretrain/train-gen.py", *stage_args(corpus, small_disk / "run", "--max_steps", "2"))
    line = refused(result, "disk full while writing", str(small_disk / "run"))
    assert "MB free" in line
    assert not [p for p in (small_disk / "run").glob(".*.tmp")]  # no partial file left behind


def test_a_nan_feature_never_ranks_a_preference_file(tmp_path):
    """RL/data.py refuses a NaN feature with the file named instead of ranking pieces on NaN."""
    for name in ("generated", "reference"):
        (tmp_path / name).mkdir()
    for index in range(4):
        np.save(tmp_path / "reference" / f"ref{index}.npy", np.random.default_rng(index).normal(size=(1, 8)).astype(np.float32))
        np.save(tmp_path / "generated" / f"piece{index}.npy", np.random.default_rng(9 + index).normal(size=(1, 8)).astype(np.float32))
    np.save(tmp_path / "generated" / "piece2.npy", np.full((1, 8), np.nan, dtype=np.float32))
    result = script("RL/data.py", "--ground_truth_feature_dir", tmp_path / "reference", "--generated_feature_dir",
                    tmp_path / "generated", "--generated_original_dir", tmp_path, "--generated_interleaved_dir", tmp_path,
                    "--output_path", tmp_path / "pairs.json")
    refused(result, "piece2.npy holds NaN or infinite values")
    assert not (tmp_path / "pairs.json").exists()


def test_a_bad_settings_file_is_one_error_line_in_every_script(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"no_such_setting": 1}')
    for path in ("pretrain/train-gen.py", "inference/inference.py", "RL/train.py", "clamp2/train-m3.py"):
        result = script(path, "--config", bad)
        assert result.returncode == 2 and "Traceback" not in result.stderr, (path, result.stderr[-2000:])
        assert "unknown setting(s) no_such_setting" in result.stderr.strip().splitlines()[-1], path


@pytest.mark.parametrize("absolute", [True, False])
def test_run_sh_uses_the_venv_it_is_given(tmp_path, absolute):
    """`VENV=path bash run.sh` runs the scripts with that environment's python, whether the path is
    relative to the repository or absolute (an absolute one was once prefixed with the repository)."""
    venv = (tmp_path if absolute else REPO_ROOT) / f".venv-test-{os.getpid()}-{absolute}"
    try:
        (venv / "bin").mkdir(parents=True)
        fake = venv / "bin" / "python"
        fake.write_text('#!/bin/sh\necho "the given venv runs: $*"\n')
        fake.chmod(0o755)
        for requirements in ("requirements.txt", "requirements-test.txt"):
            (venv / f".installed-{requirements}").touch()  # newer than the requirements: no install
        given = str(venv) if absolute else venv.name
        done = subprocess.run(["bash", str(REPO_ROOT / "run.sh"), "main", "--rl", "false"], capture_output=True,
                              text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "VENV": given, "HOME": str(tmp_path)})
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "the given venv runs: main.py --rl false"
    finally:
        shutil.rmtree(venv, ignore_errors=True)
