"""Real runs of pretrain/train-gen.py: two CPU processes under `accelerate launch`, and kill -9 + resume.

Data: the 3 real pieces of tests/vectors/data_pipeline.json, all 15 augmented keys each.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from conftest import REPO_ROOT, write_corpus
from notagen.launch import accelerate_command
from notagen.checkpoint import load_model, read_checkpoint

SCRIPT = REPO_ROOT / "pretrain" / "train-gen.py"


def stage_args(corpus: Path, out: Path, *extra: str) -> list[str]:
    return ["--preset", "tiny", "--patch_length", "128", "--data_train_index_path",
            str(corpus / "augmented_train.jsonl"), "--data_eval_index_path", str(corpus / "augmented_eval.jsonl"),
            "--batch_size", "1", "--learning_rate", "1e-3", "--warmup_steps", "2", "--log_every_steps", "1",
            "--output_dir", str(out), "--progress_bar", "false", "--cpu", "true", *extra]


def env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def steps_of(out: Path) -> list[dict]:
    [path] = out.glob("logs_notagen_*.steps.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_two_cpu_processes_train_on_different_data(tmp_path):
    corpus, out = write_corpus(tmp_path / "corpus", eval_piece=1), tmp_path / "out"
    # accelerate 1.x runs `launch --cpu --num_processes 2` as ONE process (multi-CPU needs mpirun);
    # `--multi_gpu` starts the processes with torchrun and `--cpu true` makes them a gloo group
    command = accelerate_command(SCRIPT, stage_args(corpus, out, "--num_epochs", "3"), 2)
    run = subprocess.run(command, cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    log = next(out.glob("logs_notagen_*.txt")).read_text()
    assert "2 process(es)" in log and "process 0 on cpu" in log and "process 1 on cpu" in log
    steps = steps_of(out)
    assert [s["step"] for s in steps] == [1, 2, 3, 4, 5, 6]  # 3 pieces padded to 4 = 2 per process
    assert all(len(s["process_losses"]) == 2 for s in steps)
    assert all(s["process_losses"][0] != s["process_losses"][1] for s in steps)  # different data
    assert sum(s["loss"] for s in steps[-2:]) < sum(s["loss"] for s in steps[:2]) - 0.5
    eval_losses = [float(line.split()[1]) for line in log.splitlines() if line.startswith("eval_loss")]
    assert len(eval_losses) == 3 and eval_losses[2] < eval_losses[0]
    [weights] = out.glob("weights_notagen_*.pth")  # one checkpoint, in the published layout
    assert weights.name == "weights_notagen_pretrain_p_size_16_p_length_128_p_layers_3_c_layers_2_h_size_128_lr_0.001_batch_1.pth"
    assert load_model(weights).config.patch_length == 128
    assert len(read_checkpoint(next(out.glob("resume_notagen_*.pth")))["rng"]) == 2  # both RNG states


def run_and_kill(command: list[str], out: Path, cwd: Path, at_step: int = 5) -> int:
    """Start a training run and kill -9 it once step `at_step` is logged; the last step logged."""
    process = subprocess.Popen(command, cwd=cwd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        logs = list(out.glob("*.steps.jsonl"))
        if logs and any(json.loads(line)["step"] >= at_step for line in logs[0].read_text().splitlines()
                        if line.endswith("}")):
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    assert process.wait(timeout=60) == -signal.SIGKILL, "the run ended before it could be killed"
    return max(s["step"] for s in steps_of(out))


def test_killed_run_resumes_to_the_same_losses_and_weights(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", eval_piece=1)
    # dropout and patch sampling on: the RNG states must be restored for equal results
    common = ("--num_epochs", "3", "--save_every_steps", "2", "--patch_sampling_batch_size", "24")
    full, broken = tmp_path / "full", tmp_path / "broken"
    run = subprocess.run([sys.executable, str(SCRIPT), *stage_args(corpus, full, *common)],
                         cwd=REPO_ROOT, env=env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]

    killed_at = run_and_kill([sys.executable, str(SCRIPT), *stage_args(corpus, broken, *common)], broken, tmp_path)
    assert 5 <= killed_at < 9

    run = subprocess.run([sys.executable, str(SCRIPT), *stage_args(corpus, broken, *common),
                          "--load_from_checkpoint", "true"], cwd=REPO_ROOT, env=env(), capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    log = next(broken.glob("logs_notagen_*.txt")).read_text()
    assert "resuming from" in log and "continuing at epoch" in log and "warning" not in log

    expected, got = steps_of(full), steps_of(broken)
    assert [s["step"] for s in got] == list(range(1, 10))
    for a, b in zip(expected, got):
        assert abs(a["loss"] - b["loss"]) <= 1e-5 and a["lr"] == b["lr"], (a, b)
    for pattern in ("weights_notagen_*.pth", "resume_notagen_*.pth"):
        a = read_checkpoint(next(full.glob(pattern)))
        b = read_checkpoint(next(broken.glob(pattern)))
        assert a["epoch"] == b["epoch"] == 3 and a["best_epoch"] == b["best_epoch"]
        for key, tensor in a["model"].items():
            assert torch.allclose(tensor, b["model"][key], atol=1e-5, rtol=0), key


def test_a_fresh_run_never_replaces_an_earlier_one(tmp_path):
    """A run started without --load_from_checkpoint in a folder holding a run of the same name stops
    before touching anything and names the ways on; --overwrite true starts over."""
    corpus, out = write_corpus(tmp_path / "corpus", eval_piece=1), tmp_path / "run"
    command = [sys.executable, str(SCRIPT), *stage_args(corpus, out, "--max_steps", "3", "--num_epochs", "5")]
    subprocess.run(command, env=env(), check=True, capture_output=True, timeout=600)
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    assert any(name.startswith("weights_") for name in before) and any(name.startswith("resume_") for name in before)
    again = subprocess.run(command + ["--max_steps", "1"], env=env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 2, again.stderr
    assert again.stderr.startswith("error: ") and "Traceback" not in again.stderr
    for way in ("--load_from_checkpoint true", "--overwrite true", "--output_dir"):
        assert way in again.stderr
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before  # nothing touched
    killed_save = out / f".{next(n for n in before if n.startswith('resume_'))}.a1b2c3.tmp"
    killed_save.write_bytes(b"half a checkpoint")
    fresh = subprocess.run(command + ["--max_steps", "1", "--overwrite", "true"], env=env(), capture_output=True,
                           text=True, timeout=600)
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    assert [record["step"] for record in steps_of(out)] == [1]  # started over
    assert not killed_save.exists()  # the killed save's temporary is gone


def test_a_run_restarted_from_its_settings_file_has_the_same_losses(tmp_path):
    corpus, first, again = write_corpus(tmp_path / "corpus", eval_piece=1), tmp_path / "first", tmp_path / "again"
    command = [sys.executable, str(SCRIPT), *stage_args(corpus, first, "--max_steps", "4", "--num_epochs", "3",
                                                         "--seed", "5", "--learning_rate", "3e-3")]
    subprocess.run(command, env=env(), check=True, capture_output=True, timeout=600)
    settings = json.loads((first / "settings.json").read_text())
    assert settings["seed"] == 5 and settings["learning_rate"] == 3e-3 and settings["max_steps"] == 4
    # only the settings file and a new output folder: every other value comes from the file
    repeat = [sys.executable, str(SCRIPT), "--config", str(first / "settings.json"), "--output_dir", str(again)]
    done = subprocess.run(repeat, env=env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    losses = lambda out: [(r["step"], round(r["loss"], 6)) for r in steps_of(out)]  # noqa: E731
    assert losses(again) == losses(first) and len(losses(first)) == 4
