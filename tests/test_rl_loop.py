"""RL/loop.py end to end: the loop's engine-driven generation writes what inference writes, and one
CLaMP-DPO iteration runs through (generation, features, pairs, DPOP, the next model scored)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT, VECTORS
from notagen.settings import parse_settings

SHIPPED = next((REPO_ROOT / "weights" / "embedded").glob("weights_notagen_*.pth"))


def reference_folder(tmp_path: Path) -> Path:
    """Real interleaved chorales from the golden data vectors."""
    items = json.loads((VECTORS / "data_pipeline.json").read_text())["items"]
    folder = tmp_path / "reference"
    folder.mkdir()
    for index, item in enumerate(i for i in items):
        (folder / f"real{index}.abc").write_text(item["interleaved"])
    return folder


def test_one_iteration_of_the_loop_and_its_pieces_equal_inference(tmp_path):
    from notagen.generation import run_inference
    from notagen.rl.loop import run_loop

    # the shipped model's unchecked pieces rarely rest-unreduce: the bar check gives the pairs usable pieces
    sampling = ["--temperature", "1.0", "--max_chars", "3000", "--seed", "4", "--bar_retries", "8"]
    args = ["--weights_path", str(SHIPPED), "--iterations", "1",
            "--num_samples", "16", "--generation_batch_size", "16", *sampling, "--device", "cpu",
            "--clamp2_weights_path", str(VECTORS / "tiny_clamp2.pth"), "--reference_dir", str(reference_folder(tmp_path)),
            "--portion", "0.2", "--copy_threshold", "0", "--optimization_steps", "2", "--batch_size", "1",
            "--learning_rate", "1e-5", "--save_every_steps", "1"]
    loop = parse_settings(REPO_ROOT / "RL" / "config.py", [*args, "--loop_dir", str(tmp_path / "rl")])
    rows = run_loop(loop)

    assert [row["label"] for row in rows] == ["fine-tuned", "RL1"]
    assert rows[1]["weights"] != rows[0]["weights"] and Path(rows[1]["weights"]).is_file()
    assert all(0 < row["pieces"] <= 16 and -1 <= row["mean_score"] <= 1 for row in rows)
    assert json.loads((tmp_path / "rl" / "scores.json").read_text()) == rows
    # the reward-hacking checks of every model, the change in standard errors for the second
    for row in rows:
        assert 0 < row["usable"] <= 1 and row["pieces"] == round(row["usable"] * 16)
        assert -1 <= row["variety"] <= 1 and 0 <= row["near_copies"] <= 1 and 0 <= row["repeated_lines"] < 1
        assert 0 <= row["copies"] <= 1  # of the reference pieces, by their phrases
    assert "vs_previous" not in rows[0]
    change = rows[1]["vs_previous"]
    assert change["diff"] == pytest.approx(rows[1]["mean_score"] - rows[0]["mean_score"]) and 0 <= change["p"] <= 1
    reference = json.loads((tmp_path / "rl" / "reference.json").read_text())
    assert reference["pieces"] == len(list((tmp_path / "reference").glob("*.abc")))
    assert -1 <= reference["mean_score"] <= 1 and -1 <= reference["variety"] <= 1 and 0 <= reference["copies"] <= 1
    generated = tmp_path / "rl" / "iter_1" / "generated"
    summary = json.loads((generated / "summary" / "pieces.json").read_text())
    assert len(summary["pieces"]) == 16
    # a later run with other generation settings does not take these pieces as its own
    from notagen.rl.loop import generate_pieces

    more = parse_settings(REPO_ROOT / "RL" / "config.py", [*args, "--loop_dir", str(tmp_path / "rl"), "--num_samples", "32"])
    with pytest.raises(RuntimeError, match="num_samples 16, now 32"):
        generate_pieces(more, SHIPPED, generated)

    # inference.py with the same weights, prompt and sampling writes the same raw texts
    cfg = parse_settings(REPO_ROOT / "inference" / "config.py", [
        "--inference_weights_path", str(SHIPPED), "--prompt", loop.prompt, "--num_samples", "16",
        "--batch_size", "16", *sampling, "--output_dir", str(tmp_path / "inference"), "--convert", "false",
        "--stream", "false", "--device", "cpu"])
    written = run_inference(cfg, log=lambda *_: None)["pieces"]
    for entry in written:
        path = Path(entry["files"].get("original") or entry["files"]["failed"])
        folder = "original" if entry["status"] != "failed" or not entry["reason"].startswith("max_") else "failed"
        assert (generated / folder / f"{entry['name']}.abc").read_text() == path.read_text(), entry["name"]

    # two processes (RL/loop.py starts itself under accelerate launch): the same pieces, features and pairs
    two = subprocess.run([sys.executable, str(REPO_ROOT / "RL" / "loop.py"), *args, "--loop_dir", str(tmp_path / "rl2"),
                          "--num_processes", "2"], capture_output=True, text=True, timeout=900,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert two.returncode == 0, two.stdout[-2000:] + two.stderr[-3000:]
    assert "starting 2 processes" in two.stdout
    for folder in ("candidates/original", "candidates/interleaved", "failed", "original"):
        one_files = {p.name: p.read_text() for p in (generated / folder).glob("*.abc")}
        two_files = {p.name: p.read_text() for p in (tmp_path / "rl2" / "iter_1" / "generated" / folder).glob("*.abc")}
        assert one_files == two_files, folder
    pairs = [json.loads((tmp_path / d / "iter_1" / "preferences.json").read_text()) for d in ("rl", "rl2")]
    assert [[Path(p).name for p in pair["chosen"]] for pair in pairs][0] == [Path(p).name for p in pairs[1]["chosen"]]
    rows_two = json.loads((tmp_path / "rl2" / "scores.json").read_text())
    assert [r["label"] for r in rows_two] == ["fine-tuned", "RL1"]
    # features of other batches in each process: equal up to float rounding
    assert abs(rows_two[0]["mean_score"] - rows[0]["mean_score"]) < 1e-6 and rows_two[0]["pieces"] == rows[0]["pieces"]
    assert "2 process(es)" in next((tmp_path / "rl2" / "iter_1" / "dpo").glob("logs_*.txt")).read_text()


def test_a_patch_cap_ends_long_pieces_the_same_way_on_every_run(tmp_path):
    """MAX_PATCHES counts every generated patch, rewritten lines included: a piece past it fails as
    'max_patches' and takes part with its complete lines, and two runs write the same files."""
    from notagen.rl.loop import generate_pieces

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


def test_table_names_weights_by_their_iteration_folder(tmp_path):
    from notagen.rl.loop import _where

    inside = tmp_path / "iter_2" / "dpo" / "weights_notagen_x.pth"
    assert _where(inside, tmp_path) == "iter_2/dpo/weights_notagen_x.pth"
    assert _where(Path("/elsewhere/weights_start.pth"), tmp_path) == "weights_start.pth"
