"""main.py: a finished step is reused only for the same settings, --quick, and the refusal on the real script."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from conftest import REPO_ROOT
from notagen.settings import parse_settings

MAIN = REPO_ROOT / "main.py"
spec = importlib.util.spec_from_file_location("main_job", MAIN)
main_job = importlib.util.module_from_spec(spec)
spec.loader.exec_module(main_job)


def counting_step(log, steps: int) -> list[str]:
    """A python command line that appends one line to `log` each time it runs; `--steps` a setting."""
    return ["-c", f"open({str(log)!r}, 'a').write('ran\\n')", "--steps", str(steps), "--out", str(REPO_ROOT / "x")]


def test_a_finished_step_is_skipped_for_the_same_settings_only(tmp_path):
    log = tmp_path / "ran.txt"
    main_job.run("train", counting_step(log, 5), tmp_path)
    marker = json.loads((tmp_path / "steps" / "train.done").read_text())
    assert marker["args"][-1] == "x"  # paths inside the checkout recorded relative to it
    main_job.run("train", counting_step(log, 5), tmp_path)
    assert log.read_text() == "ran\n"  # skipped the second time
    with pytest.raises(main_job.StepChanged, match=r"step train finished earlier .*--steps 5 -> 6.*--fresh true"):
        main_job.run("train", counting_step(log, 6), tmp_path)
    assert log.read_text() == "ran\n"  # neither rerun nor replaced


def test_a_marker_without_settings_is_skipped_as_before(tmp_path, capsys):
    (tmp_path / "steps").mkdir()
    (tmp_path / "steps" / "train.done").write_text("12.0 s\n")  # written by jobs before markers held settings
    main_job.run("train", counting_step(tmp_path / "ran.txt", 5), tmp_path)
    assert not (tmp_path / "ran.txt").exists()
    assert "did not record its settings" in capsys.readouterr().out


def test_quick_sets_toy_sizes_and_the_command_line_still_wins():
    cfg = parse_settings(MAIN, main_job.quick_argv(["--rl_samples", "64"]))
    assert (cfg.runs_dir, cfg.pretrain_steps, cfg.rl_iterations, cfg.rl_samples) == ("runs/quick", 40, 1, 64)
    assert parse_settings(MAIN, []).pretrain_steps == 450  # the full job is untouched


def test_the_job_stops_with_one_line_when_a_finished_step_had_other_settings(tmp_path):
    runs = tmp_path / "runs"
    (runs / "steps").mkdir(parents=True)
    (runs / "steps" / "corpus.done").write_text(json.dumps({"seconds": 1.0, "args": ["data/build_corpus.py",
                                                             "--max_pieces", "50"]}))
    result = subprocess.run([sys.executable, str(MAIN), "--runs_dir", str(runs), "--corpus_dir", str(tmp_path / "c")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.startswith("error: step corpus finished earlier") and result.stderr.count("\n") == 1
    assert "--max_pieces 50 -> 100" in result.stderr and not (tmp_path / "c").exists()
