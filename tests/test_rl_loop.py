"""RL/loop.py: a table row worked by hand, then one CLaMP-DPO iteration end to end (generation,
features, pairs, DPOP, the next model scored), its pieces equal to inference's, on one process and on two."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import REPO_ROOT, VECTORS
from notagen.generation import run_inference
from notagen.rl import (PhraseIndex, chain_row, features_and_texts, generate_pieces, real_copy_rate,
                        reference_statistics, run_loop)
from notagen.rl.data import CopyDetector
from notagen.rl.loop import _where
from notagen.settings import parse_settings

SHIPPED = next((REPO_ROOT / "weights" / "embedded").glob("weights_notagen_*.pth"))
# the shipped model's unchecked pieces rarely rest-unreduce: the bar check gives the pairs usable pieces
SAMPLING = ["--temperature", "1.0", "--max_chars", "3000", "--seed", "4", "--bar_retries", "8"]
HEADER = "%%score 1 2\nL:1/8\nM:4/4\nK:C\nV:1\nV:2\n"


def piece(*bars: tuple[str, str]) -> str:
    """A two-voice text, one line per bar: `[V:1]<upper>|[V:2]<lower>|`."""
    return HEADER + "".join(f"[V:1]{upper}|[V:2]{lower}|\n" for upper, lower in bars)


def save_features(folder: Path, features: dict[str, list[float]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, vector in features.items():
        np.save(folder / f"{name}.npy", np.array([vector]))


def test_a_models_row_worked_by_hand(tmp_path):
    """Three usable pieces of four, against two real pieces with features (1, 0) and (0, 1)."""
    save_features(tmp_path / "reference_features", {"r1": [1.0, 0.0], "r2": [0.0, 1.0]})
    iteration = tmp_path / "iter_2"
    # against the reference mean (1/2, 1/2): g1 cosine 1, g2 and g3 s = 1/sqrt 2; g2 and g3 lie on a
    # real piece's direction (near copies); pairwise cosines s, s, 0
    save_features(iteration / "features", {"g1": [1.0, 1.0], "g2": [1.0, 0.0], "g3": [0.0, 3.0]})
    real = piece(("a8", "A8"), ("b8", "B8"), ("c8", "C8"))
    texts = {"g1": piece(("d8", "D8"), ("d8", "D8"), ("e8", "E8")),  # its second line repeats the first
             "g2": real,  # every phrase as the real piece writes it: a copy
             "g3": piece(("f8", "F8"), ("g8", "G8"))}
    for name, text in texts.items():
        path = iteration / "generated" / "candidates" / "interleaved" / f"{name}.abc"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    row, scores = chain_row(SimpleNamespace(num_samples=4), 2, Path("w.pth"), iteration, tmp_path / "reference_features",
                            np.array([[1.0, 0.0], [0.0, 1.0]]), 0.99, [0.5, 0.5, 1.0], False,
                            PhraseIndex({"real": real}))

    s = 2 ** -0.5
    assert scores == pytest.approx([1.0, s, s])
    change = row.pop("vs_previous")
    assert row == pytest.approx({
        "model": 1, "label": "RL1", "weights": "w.pth", "pieces": 3, "usable": 3 / 4,
        "mean_score": (1 + 2 * s) / 3, "sem": (1 - s) / 3,  # sample variance (1 - s)^2 / 3, over 3 pieces
        "variety": 2 * s / 3, "near_copies": 2 / 3, "repeated_lines": 1 / 8, "copies": 1 / 3})
    # against the previous model's scores (1/2, 1/2, 1): sample variance 1/12
    se = math.sqrt((1 - s) ** 2 / 9 + 1 / 36)
    assert change["diff"] == pytest.approx((2 * s - 1) / 3) and change["se"] == pytest.approx(se)
    assert change["t"] == pytest.approx(change["diff"] / se)


def test_table_names_weights_by_their_iteration_folder(tmp_path):
    inside = tmp_path / "iter_2" / "dpo" / "weights_notagen_x.pth"
    assert _where(inside, tmp_path) == "iter_2/dpo/weights_notagen_x.pth"
    assert _where(Path("/elsewhere/weights_start.pth"), tmp_path) == "weights_start.pth"


def test_a_patch_cap_ends_long_pieces_the_same_way_on_every_run(tmp_path):
    """MAX_PATCHES counts every generated patch, rewritten lines included: a piece past it fails as
    'max_patches' and takes part with its complete lines, and two runs write the same files."""
    settings = parse_settings(REPO_ROOT / "RL" / "config.py", [
        "--num_samples", "4", "--generation_batch_size", "4", "--temperature", "1.0", "--seed", "4",
        "--bar_retries", "8", "--max_patches", "40", "--device", "cpu"])
    written = []
    for run in ("a", "b"):
        generate_pieces(settings, SHIPPED, tmp_path / run)
        pieces = json.loads((tmp_path / run / "summary" / "pieces.json").read_text())["pieces"]
        assert len(pieces) == 4 and all(p["patches"] <= 40 for p in pieces)
        assert all(p["reason"] == "max_patches" for p in pieces if p["status"] == "failed")
        assert any(p["reason"] == "max_patches" for p in pieces)
        for p in pieces:
            if p["candidate"] == "limit (complete lines kept)":
                assert (tmp_path / run / "candidates" / "original" / f"{p['name']}.abc").read_text().endswith("\n")
        written.append({f.relative_to(tmp_path / run).as_posix(): f.read_text()
                        for f in (tmp_path / run).rglob("*.abc")})
    assert written[0] == written[1] and written[0]


def reference_folder(tmp_path: Path) -> Path:
    """Real interleaved chorales from the golden data vectors."""
    items = json.loads((VECTORS / "data_pipeline.json").read_text())["items"]
    folder = tmp_path / "reference"
    folder.mkdir()
    for index, item in enumerate(items):
        (folder / f"real{index}.abc").write_text(item["interleaved"])
    return folder


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """One iteration of RL/loop.py on the shipped model, in this process: 16 pieces a model."""
    tmp = tmp_path_factory.mktemp("chain")
    args = ["--weights_path", str(SHIPPED), "--iterations", "1",
            "--num_samples", "16", "--generation_batch_size", "16", *SAMPLING, "--device", "cpu",
            "--clamp2_weights_path", str(VECTORS / "tiny_clamp2.pth"), "--reference_dir", str(reference_folder(tmp)),
            "--portion", "0.2", "--copy_threshold", "0", "--optimization_steps", "2", "--batch_size", "1",
            "--learning_rate", "1e-5", "--save_every_steps", "1"]
    settings = parse_settings(REPO_ROOT / "RL" / "config.py", [*args, "--loop_dir", str(tmp / "rl")])
    return SimpleNamespace(tmp=tmp, root=tmp / "rl", args=args, settings=settings, rows=run_loop(settings))


def test_one_iteration_trains_a_new_model_and_scores_both(chain):
    rows = chain.rows
    assert [row["label"] for row in rows] == ["fine-tuned", "RL1"]
    assert rows[1]["weights"] != rows[0]["weights"] and Path(rows[1]["weights"]).is_file()
    assert json.loads((chain.root / "scores.json").read_text()) == rows
    assert (chain.root / "scores.png").read_bytes()[:4] == b"\x89PNG"
    pairs = json.loads((chain.root / "iter_1" / "preferences.json").read_text())
    assert pairs["chosen"] and pairs["rejected"] and not set(pairs["chosen"]) & set(pairs["rejected"])
    summary = json.loads((chain.root / "iter_1" / "generated" / "summary" / "pieces.json").read_text())
    assert len(summary["pieces"]) == 16


def test_each_row_is_the_table_row_of_its_own_iteration_folder(chain):
    """The loop hands each model's own folder, the real pieces and the previous model's scores to
    `chain_row` (worked by hand above); a piece counts when its feature was written."""
    reference, _ = features_and_texts(chain.root / "reference_features", Path(chain.settings.reference_dir))
    threshold = CopyDetector(reference, chain.settings.copy_threshold).threshold
    real = {p.stem: p.read_text() for p in sorted(Path(chain.settings.reference_dir).glob("*.abc"))}
    previous = None
    for k, row in enumerate(chain.rows, 1):
        features = list((chain.root / f"iter_{k}" / "features").glob("*.npy"))
        assert row["pieces"] == len(features) and row["usable"] == len(features) / 16
        again, previous = chain_row(chain.settings, k, Path(row["weights"]), chain.root / f"iter_{k}",
                                    chain.root / "reference_features", reference, threshold, previous, False,
                                    PhraseIndex(real))
        row = dict(row)
        assert again.pop("vs_previous", None) == pytest.approx(row.pop("vs_previous", None), nan_ok=True)
        assert again == pytest.approx(row, nan_ok=True)


def test_the_real_pieces_row(chain):
    reference, texts = features_and_texts(chain.root / "reference_features", Path(chain.settings.reference_dir))
    real = {p.stem: p.read_text() for p in sorted(Path(chain.settings.reference_dir).glob("*.abc"))}
    own = json.loads((chain.root / "reference.json").read_text())
    assert own["pieces"] == len(real) == len(texts)
    assert own == pytest.approx({**reference_statistics(reference, texts),
                                 "copies": real_copy_rate(real, PhraseIndex(real))}, nan_ok=True)


def test_pieces_made_with_other_settings_are_not_reused(chain):
    more = parse_settings(REPO_ROOT / "RL" / "config.py",
                          [*chain.args, "--loop_dir", str(chain.root), "--num_samples", "32"])
    with pytest.raises(RuntimeError, match="num_samples 16, now 32"):
        generate_pieces(more, SHIPPED, chain.root / "iter_1" / "generated")


def test_the_loops_pieces_are_what_inference_writes(chain):
    """inference.py with the same weights, prompt and sampling writes the same raw texts."""
    cfg = parse_settings(REPO_ROOT / "inference" / "config.py", [
        "--inference_weights_path", str(SHIPPED), "--prompt", chain.settings.prompt, "--num_samples", "16",
        "--batch_size", "16", *SAMPLING, "--output_dir", str(chain.tmp / "inference"), "--convert", "false",
        "--stream", "false", "--device", "cpu"])
    generated = chain.root / "iter_1" / "generated"
    for entry in run_inference(cfg, log=lambda *_: None)["pieces"]:
        path = Path(entry["files"].get("original") or entry["files"]["failed"])
        folder = "original" if entry["status"] != "failed" or not entry["reason"].startswith("max_") else "failed"
        assert (generated / folder / f"{entry['name']}.abc").read_text() == path.read_text(), entry["name"]


def test_two_processes_write_the_same_pieces_features_and_pairs(chain):
    """RL/loop.py --num_processes 2 starts itself under accelerate launch."""
    two = subprocess.run([sys.executable, str(REPO_ROOT / "RL" / "loop.py"), *chain.args,
                          "--loop_dir", str(chain.tmp / "rl2"), "--num_processes", "2"],
                         capture_output=True, text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert two.returncode == 0, two.stdout[-2000:] + two.stderr[-3000:]
    assert "starting 2 processes" in two.stdout
    for folder in ("candidates/original", "candidates/interleaved", "failed", "original"):
        one_files = {p.name: p.read_text() for p in (chain.root / "iter_1" / "generated" / folder).glob("*.abc")}
        two_files = {p.name: p.read_text() for p in (chain.tmp / "rl2" / "iter_1" / "generated" / folder).glob("*.abc")}
        assert one_files == two_files, folder
    pairs = [json.loads((root / "iter_1" / "preferences.json").read_text()) for root in (chain.root, chain.tmp / "rl2")]
    assert [Path(p).name for p in pairs[0]["chosen"]] == [Path(p).name for p in pairs[1]["chosen"]]
    rows_two = json.loads((chain.tmp / "rl2" / "scores.json").read_text())
    assert [r["label"] for r in rows_two] == ["fine-tuned", "RL1"]
    # features of other batches in each process: equal up to float rounding
    assert rows_two[0]["mean_score"] == pytest.approx(chain.rows[0]["mean_score"], abs=1e-6)
    assert rows_two[0]["pieces"] == chain.rows[0]["pieces"]
    assert "2 process(es)" in next((chain.tmp / "rl2" / "iter_1" / "dpo").glob("logs_*.txt")).read_text()
