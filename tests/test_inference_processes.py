"""`accelerate launch inference/inference.py`: the pieces are split across processes, and two CPU
processes write exactly the files that one process writes with the same seed."""
import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO_ROOT
from notagen.launch import accelerate_command

SCRIPT = REPO_ROOT / "inference" / "inference.py"


def files_of(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): p.read_text() for p in sorted(out.rglob("*.abc"))}


def test_two_processes_write_what_one_process_writes(tmp_path):
    args = ["--prompt", "Baroque|Bach, Johann Sebastian|Choral", "--num_samples", "5", "--batch_size", "2",
            "--seed", "7", "--temperature", "1.0", "--max_chars", "1500", "--convert", "false",
            "--stream", "false", "--device", "cpu", "--num_threads", "1"]  # the shipped checkpoint
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, str(SCRIPT), *args, "--output_dir", str(tmp_path / "one")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    # accelerate 1.x: `--multi_gpu` starts the processes with torchrun; on CPUs they form a gloo group
    two = subprocess.run(accelerate_command(SCRIPT, [*args, "--output_dir", str(tmp_path / "two")], 2),
                         capture_output=True, text=True, env=env, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "2 processes" in two.stdout

    written_one, written_two = files_of(tmp_path / "one"), files_of(tmp_path / "two")
    assert len(written_one) >= 5 and written_one == written_two
    [summary_one] = (tmp_path / "one" / "summary").glob("*.json")
    [summary_two] = (tmp_path / "two" / "summary").glob("*.json")
    pieces = [json.loads(p.read_text())["pieces"] for p in (summary_one, summary_two)]
    keep = ("index", "name", "status", "reason", "chars", "patches")
    assert [{k: e[k] for k in keep} for e in pieces[0]] == [{k: e[k] for k in keep} for e in pieces[1]]
    assert [e["index"] for e in pieces[1]] == [0, 1, 2, 3, 4]
