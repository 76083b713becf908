"""inference/: settings -> files (exact greedy text of the tiny checkpoint), run summary, conversions,
and clear errors for bad input."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import REPO_ROOT, VECTORS, load_vector, torch_threads
from notagen.generation import Prompt, PromptError
from notagen.generation.piece import PieceResult
from notagen.generation.piece import GenerationSettings
from notagen.generation.run import (SetupError, generation_settings, main, output_folder_name, parse_prompt, resolve_device,
                                    resolve_dtype, resolve_weights, run_inference, write_piece)
from notagen.settings import parse_settings

CONFIG = REPO_ROOT / "inference" / "config.py"
TINY = load_vector("tiny_notagen.json")
WEIGHTS = VECTORS / TINY["checkpoint"]
PIECE = load_vector("rest_unreduce.json")["rest_unreduce"][0]


@pytest.fixture(autouse=True)
def one_thread():
    with torch_threads(1):
        yield


def settings(tmp_path, *extra):
    return parse_settings(CONFIG, ["--inference_weights_path", str(WEIGHTS), "--output_dir", str(tmp_path),
                                   "--device", "cpu", "--stream", "false", *extra])


def test_the_python_api_generates_as_inference_py_does():
    """GenerationSettings() is inference/config.py at its defaults (bar and header checks on);
    GenerationSettings.published() is the published sampler, without them."""
    cfg = parse_settings(CONFIG, [])
    assert generation_settings(cfg, seed=3) == GenerationSettings(seed=3)
    assert (cfg.bar_retries, cfg.header_retries) == (32, 32)
    published = GenerationSettings.published(seed=3)
    assert (published.bar_retries, published.header_retries) == (0, 0)
    assert published == GenerationSettings(seed=3, bar_retries=0, header_retries=0)


def test_greedy_run_keeps_the_exact_text_of_pieces_stopped_by_the_char_limit(tmp_path):
    case = TINY["greedy_generation"][1]  # Classical|Beethoven, Ludwig van|Chamber, 1354 chars
    prompt = "|".join(line.strip().lstrip("%") for line in case["prompt_lines"])
    cfg = settings(tmp_path, "--prompt", prompt, "--greedy", "true", "--max_chars", str(case["char_limit"]),
                   "--num_samples", "2", "--batch_size", "2", "--seed", "7", "--bar_retries", "0")  # the published loop
    logged = []
    summary = run_inference(cfg, log=logged.append)
    folder = output_folder_name(WEIGHTS, 9, 0.9, 1.2)
    assert folder == "tiny_notagen_k_9_p_0.9_temp_1.2"
    assert [p["status"] for p in summary["pieces"]] == ["failed", "failed"]
    for piece in summary["pieces"]:
        assert piece["reason"] == "max_chars" and piece["chars"] == len(case["text"])
        assert piece["stream_events"] == case["stream_events_at_chars"]
        path = Path(piece["files"]["failed"])
        assert path.parent == tmp_path / "failed" / folder
        assert path.name == f"Classical_Beethoven_Ludwig_van_Chamber_seed7_000{piece['index']}.abc"
        assert path.read_text() == case["text"]
    on_disk = json.loads((tmp_path / "summary" / f"{folder}_Classical_Beethoven_Ludwig_van_Chamber_seed7.json").read_text())
    assert on_disk["pieces"] == summary["pieces"] and on_disk["counts"]["failed"] == 2
    assert on_disk["memory"]["cpu_max_rss_mib"] > 0
    assert not (tmp_path / "original").exists()
    assert any(str(tmp_path / "failed" / folder) in line for line in logged)


def test_inference_from_a_checkpoint_folder_writes_the_golden_text(tmp_path):
    """The tiny checkpoint exported as a Hugging Face style folder generates the published greedy text."""
    from notagen.checkpoint import save_pretrained

    case = TINY["greedy_generation"][0]
    prompt = "|".join(line.strip().lstrip("%") for line in case["prompt_lines"])
    folder = save_pretrained(WEIGHTS, tmp_path / "tiny_folder")
    cfg = parse_settings(CONFIG, ["--inference_weights_path", str(folder), "--output_dir", str(tmp_path / "out"),
                                  "--device", "cpu", "--stream", "false", "--prompt", prompt, "--greedy", "true",
                                  "--max_chars", str(case["char_limit"]), "--num_samples", "1", "--seed", "7",
                                  "--bar_retries", "0", "--header_retries", "0", "--convert", "false"])
    (piece,) = run_inference(cfg, log=lambda line: None)["pieces"]
    assert Path(piece["files"]["failed"]).read_text() == case["text"]
    assert Path(piece["files"]["failed"]).parent.name == "tiny_folder_k_9_p_0.9_temp_1.2"


def test_a_finished_piece_gets_original_interleaved_musicxml_and_midi(tmp_path):
    text = "%Classical\n%Mozart, Wolfgang Amadeus\n%Choral\n" + PIECE["text"]
    result = PieceResult(3, Prompt(), text, "finished", seconds=1.5, patches=120)
    entry = write_piece(result, "piece_0003", tmp_path, "run", convert=True)
    assert entry["status"] == "ok", entry["reason"]
    files = {kind: Path(path) for kind, path in entry["files"].items()}
    assert files["original"] == tmp_path / "original" / "run" / "piece_0003.abc"
    assert files["original"].read_text() == text
    assert files["interleaved"].read_text() == "X:1\n" + PIECE["unreduced"]
    assert files["musicxml"].read_text().lstrip().startswith("<?xml")
    assert files["midi"].read_bytes()[:4] == b"MThd"
    # text that cannot be interleaved: recorded, raw text kept in failed/, nothing retried
    broken = PieceResult(4, Prompt(), "%Classical\nL:1/8\n[r:0/0][V:1]abc|\n", "finished")
    entry = write_piece(broken, "piece_0004", tmp_path, "run", convert=True)
    assert entry["status"] == "failed" and entry["reason"].startswith("rest_unreduce")
    assert Path(entry["files"]["failed"]).read_text() == broken.text


def test_prompt_forms(tmp_path):
    assert parse_prompt("Romantic|Chopin, Frederic|Keyboard").triple == ("Romantic", "Chopin, Frederic", "Keyboard")
    assert parse_prompt("%Romantic\\n%Chopin, Frederic").lines == ("%Romantic\n", "%Chopin, Frederic\n")
    abc = tmp_path / "start.abc"
    abc.write_text("%Baroque\nL:1/8\nK:C\nV:1 treble\n[r:0/1][V:1]abc|\n[r:1/0][V:1]de")
    continued = parse_prompt(str(abc))
    assert continued.text == abc.read_text()
    with pytest.raises(PromptError, match="not found"):
        parse_prompt(str(tmp_path / "missing.abc"))
    with pytest.raises(PromptError, match="empty"):
        parse_prompt("  ")
    known = {("Romantic", "Chopin, Frederic", "Keyboard")}
    with pytest.warns(UserWarning, match="not one of the 1"):
        parse_prompt("Romantic|Chopin, Frederic|Orchestral", known)
    with pytest.warns(UserWarning, match="non-ASCII"):
        assert parse_prompt("Romantic|Dvořák, Antonín|Chamber", None).lines[1] == "%Dvorak, Antonin\n"


def test_prompt_list_file_next_to_the_weights_is_used(tmp_path):
    weights = tmp_path / "w.pth"
    weights.write_bytes(WEIGHTS.read_bytes())
    (tmp_path / "prompts.txt").write_text("Baroque_Bach, Johann Sebastian_Keyboard\n")
    cfg = settings(tmp_path, "--inference_weights_path", str(weights), "--prompt", "Baroque|Nobody|Keyboard",
                   "--max_chars", "10", "--num_samples", "1")
    with pytest.warns(UserWarning, match="not one of the 1"):
        summary = run_inference(cfg, log=lambda line: None)
    assert summary["pieces"][0]["reason"] == "max_chars"  # the prompt alone is past 10 chars


def test_bad_settings_get_clear_errors(tmp_path, capsys, monkeypatch):
    with pytest.raises(SetupError, match="weights file not found: nowhere.pth"):
        resolve_weights("nowhere.pth")
    with pytest.raises(SetupError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(SetupError, match="no CUDA GPU"):
            resolve_device("cuda")
    if not torch.backends.mps.is_available():
        with pytest.raises(SetupError, match="MPS is not available"):
            resolve_device("mps")
    assert resolve_device("cpu").type == "cpu"
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    with pytest.raises(SetupError, match="float16 is for GPUs"):
        resolve_dtype("float16", torch.device("cpu"))
    with pytest.raises(SetupError, match="unknown dtype"):
        resolve_dtype("int4", torch.device("cpu"))
    not_a_checkpoint = tmp_path / "junk.pth"
    not_a_checkpoint.write_text("hello")
    monkeypatch.chdir(REPO_ROOT / "inference")  # the script's folder: paths still resolve
    for argv, message in ((["--inference_weights_path", "missing.pth"], "weights file not found"),
                          (["--inference_weights_path", str(not_a_checkpoint)], "not a readable PyTorch checkpoint"),
                          (["--inference_weights_path", str(WEIGHTS), "--device", "cuda:7"], "cuda:7"),
                          (["--inference_weights_path", str(WEIGHTS), "--prompt", "x.abc"], "not found")):
        assert main(CONFIG, argv + ["--output_dir", str(tmp_path)]) == 2
        error = capsys.readouterr().err
        assert error.startswith("error: ") and message in error, error


def test_only_a_music_file_is_read_as_a_prompt(tmp_path):
    """A prompt naming any other existing file is prompt text: the file is never read or copied."""
    secret = tmp_path / "notes.txt"
    secret.write_text("private: do not copy\n")
    for given in (str(secret), str(REPO_ROOT / "inference" / "config.py")):
        prompt = parse_prompt(given)
        assert prompt.text is None and prompt.lines == (given + "\n",)
    from data_support import MUSIC21_CORPUS

    chorale = parse_prompt(str(MUSIC21_CORPUS / "bach" / "bwv269.mxl"))  # MusicXML is converted
    assert chorale.text.splitlines()[-1].startswith("[r:") and "[V:1]G2|[V:2]D2|" in chorale.text
    with pytest.raises(PromptError, match="music file to continue not found"):
        parse_prompt(str(tmp_path / "missing.mid"))


def test_prompt_all_writes_every_known_prompt_in_one_stream(tmp_path):
    weights = tmp_path / "w.pth"
    weights.write_bytes(WEIGHTS.read_bytes())
    (tmp_path / "prompts.txt").write_text("Baroque_Bach, Johann Sebastian_Keyboard\nClassical_Beethoven, Ludwig van_Chamber\n")
    common = ["--inference_weights_path", str(weights), "--max_chars", "400", "--seed", "5", "--convert", "false"]
    logged = []
    summary = run_inference(settings(tmp_path / "all", *common, "--prompt", "all", "--num_samples", "2",
                                     "--batch_size", "3"), log=logged.append)
    assert summary["prompts"] == 2 and sum(summary["counts"].values()) == 4
    folder = output_folder_name(weights, 9, 0.9, 1.2)
    texts = {}
    for slug, prompt in (("Baroque_Bach_Johann_Sebastian_Keyboard", "Baroque|Bach, Johann Sebastian|Keyboard"),
                         ("Classical_Beethoven_Ludwig_van_Chamber", "Classical|Beethoven, Ludwig van|Chamber")):
        written = json.loads((tmp_path / "all" / "summary" / f"{folder}_{slug}_seed5.json").read_text())
        assert written["prompt"] == prompt and len(written["pieces"]) == 2
        names = sorted(Path(next(iter(p["files"].values()))).name for p in written["pieces"])
        assert names == [f"{slug}_seed5_0000.abc", f"{slug}_seed5_0001.abc"]
        texts[slug] = [Path(next(iter(p["files"].values()))).read_text() for p in written["pieces"]]
        assert all(text.startswith(f"%{prompt.split('|')[0]}\n") for text in texts[slug])
    # the first prompt's pieces are those of a run of that prompt alone (same seed, same piece numbers)
    alone = run_inference(settings(tmp_path / "alone", *common, "--prompt", "Baroque|Bach, Johann Sebastian|Keyboard",
                                   "--num_samples", "2"), log=lambda line: None)
    assert sorted(texts["Baroque_Bach_Johann_Sebastian_Keyboard"]) == sorted(
        Path(next(iter(p["files"].values()))).read_text() for p in alone["pieces"])
    assert logged[-1].startswith("done in") and "a summary per prompt" in logged[-1]
    with pytest.raises(SetupError, match="does not continue"):
        run_inference(settings(tmp_path, *common, "--prompt", "all", "--continue_from", "x.abc"), log=lambda line: None)
