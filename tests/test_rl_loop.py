"""RL/loop.py end to end: the loop's engine-driven generation writes what inference writes, and one
CLaMP-DPO iteration runs through (generation, features, pairs, DPOP, the next model scored)."""
import json
from pathlib import Path

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
    from notagen.rl_loop import run_loop

    sampling = ["--temperature", "1.0", "--max_chars", "6000", "--seed", "4"]  # a seed whose pieces include bar-aligned ones (the chosen set needs them)
    loop = parse_settings(REPO_ROOT / "RL" / "config.py", [
        "--weights_path", str(SHIPPED), "--loop_dir", str(tmp_path / "rl"), "--iterations", "1",
        "--num_samples", "24", "--generation_batch_size", "12", *sampling, "--device", "cpu",
        "--clamp2_weights_path", str(VECTORS / "tiny_clamp2.pth"), "--reference_dir", str(reference_folder(tmp_path)),
        "--portion", "0.2", "--copy_threshold", "0", "--optimization_steps", "2", "--batch_size", "1",
        "--learning_rate", "1e-5", "--save_every_steps", "1"])
    rows = run_loop(loop)

    assert [row["label"] for row in rows] == ["fine-tuned", "RL1"]
    assert rows[1]["weights"] != rows[0]["weights"] and Path(rows[1]["weights"]).is_file()
    assert all(0 < row["pieces"] <= 24 and -1 <= row["mean_score"] <= 1 for row in rows)
    assert json.loads((tmp_path / "rl" / "scores.json").read_text()) == rows
    generated = tmp_path / "rl" / "iter_1" / "generated"
    summary = json.loads((generated / "summary" / "pieces.json").read_text())
    assert len(summary["pieces"]) == 24

    # inference.py with the same weights, prompt and sampling writes the same raw texts
    cfg = parse_settings(REPO_ROOT / "inference" / "config.py", [
        "--inference_weights_path", str(SHIPPED), "--prompt", loop.prompt, "--num_samples", "24",
        "--batch_size", "12", *sampling, "--output_dir", str(tmp_path / "inference"), "--convert", "false",
        "--stream", "false", "--device", "cpu"])
    written = run_inference(cfg, log=lambda *_: None)["pieces"]
    for entry in written:
        path = Path(entry["files"].get("original") or entry["files"]["failed"])
        folder = "original" if entry["status"] != "failed" or not entry["reason"].startswith("max_") else "failed"
        assert (generated / folder / f"{entry['name']}.abc").read_text() == path.read_text(), entry["name"]
