"""CLaMP 2 score: cosine to the reference mean, folder scoring, statistics script."""
import csv
import runpy
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO_ROOT
from notagen.clamp2 import clamp2_score, load_feature_folder, score_folder, summarize_scores


def save(folder: Path, name: str, vector) -> None:
    path = folder / f"{name}.npy"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.asarray(vector, dtype=np.float32).reshape(1, -1))


def test_score_is_cosine_to_the_reference_mean():
    reference = np.array([3.0, 4.0, 0.0])
    assert clamp2_score(np.array([[6.0, 8.0, 0.0]]), reference) == pytest.approx(1.0)
    assert clamp2_score(np.array([[0.0, 0.0, 2.0]]), reference) == pytest.approx(0.0)
    assert clamp2_score(np.array([[-4.0, 3.0, 0.0]]), reference) == pytest.approx(0.0)
    assert clamp2_score(np.array([[1.0, 0.0, 0.0]]), reference) == pytest.approx(0.6)
    with pytest.raises(ValueError):
        clamp2_score(np.ones((1, 4)), reference)


@pytest.fixture
def feature_folders(tmp_path):
    reference, generated = tmp_path / "reference", tmp_path / "generated"
    save(reference, "r1", [2.0, 0.0])  # mean [1, 1]: unnormalized features are averaged as they are
    save(reference, "sub/r2", [0.0, 2.0])
    save(generated, "same", [5.0, 5.0])  # cos 1
    save(generated, "x/axis", [1.0, 0.0])  # cos 1/sqrt(2)
    save(generated, "opposite", [-1.0, -1.0])  # cos -1
    save(generated, "orthogonal", [1.0, -1.0])  # cos 0
    return generated, reference


def test_feature_folder_and_folder_scores(feature_folders):
    generated, reference = feature_folders
    assert list(load_feature_folder(reference)) == ["r1", "sub/r2"]
    scores = score_folder(generated, reference)
    assert scores == pytest.approx({"same": 1.0, "x/axis": 2 ** -0.5, "opposite": -1.0, "orthogonal": 0.0})
    stats = summarize_scores(scores)
    assert stats["count"] == 4 and stats["min"] == pytest.approx(-1) and stats["max"] == pytest.approx(1)
    assert stats["mean"] == pytest.approx((1 + 2 ** -0.5 - 1 + 0) / 4)
    assert stats["sem"] == pytest.approx(np.std([1, 2 ** -0.5, -1, 0], ddof=1) / 2)
    # linear quantiles of the sorted scores (-1, 0, 1/sqrt 2, 1): positions 0.75, 1.5 and 2.25
    assert stats["q1"] == pytest.approx(-1 + 0.75 * (0 - -1))
    assert stats["median"] == pytest.approx(0 + 0.5 * (2 ** -0.5 - 0))
    assert stats["q3"] == pytest.approx(2 ** -0.5 + 0.25 * (1 - 2 ** -0.5))


def test_statistics_script_prints_and_writes_csv(feature_folders, tmp_path, capsys):
    generated, reference = feature_folders
    script = runpy.run_path(str(REPO_ROOT / "clamp2" / "statistics.py"), run_name="clamp2_statistics")
    stats = script["main"](["--generated_features_dir", str(generated), "--reference_features_dir",
                            str(reference), "--scores_csv", str(tmp_path / "scores.csv")])
    out = capsys.readouterr().out
    assert f"mean {stats['mean']:.4f} over 4 files" in out and "median" in out
    with open(tmp_path / "scores.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["file", "score"]
    assert [r[0] for r in rows[1:]] == ["same", "x/axis", "orthogonal", "opposite"]  # best first
    assert float(rows[2][1]) == pytest.approx(2 ** -0.5, abs=1e-6)
