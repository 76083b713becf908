"""docs/own-scores.md, run as written: every ```bash block of the page, in order, from the repository
root, with its workspace `runs/own` moved to a temporary folder and the tiny vector checkpoint, a
few steps and one short piece in place of the shipped model's real run. Then what the page
promises: prompt lines on every training file, the per-prompt counts printed at the start of
fine-tuning, a prompts.txt with both prompts, and a generated piece that starts with its prompt lines.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys

from conftest import REPO_ROOT, VECTORS

PAGE = REPO_ROOT / "docs" / "own-scores.md"
BRAHMS = "%Romantic\n%Brahms, Johannes\n%Art Song\n"


def page_commands(workspace) -> str:
    """The page's bash blocks as one script, with the test's settings in place of the real run's."""
    text = PAGE.read_text(encoding="utf-8")
    script = "\n".join(re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL))
    replacements = {  # each must be on the page: a test that no longer runs what the page says fails
        "--pretrained_path weights/embedded": f"--pretrained_path {VECTORS / 'tiny_notagen.pth'}",
        "--num_epochs 20": "--num_epochs 20 --max_steps 3 --batch_size 2 --cpu true --num_threads 1 --progress_bar false",
        "--num_samples 4": "--num_samples 1 --seed 0 --max_chars 1000 --device cpu --num_threads 1 --stream false "
                           "--convert false",
        "runs/own": str(workspace),
    }
    for old, new in replacements.items():
        assert old in script, f"docs/own-scores.md no longer has {old!r}"
        script = script.replace(old, new)
    return re.sub(r"^python ", f"{sys.executable} ", script, flags=re.MULTILINE)


def test_the_walkthrough_runs_from_scores_and_a_csv_to_a_prompted_piece(tmp_path):
    workspace = tmp_path / "own"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(["bash", "-e", "-c", page_commands(workspace)], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout

    assert sorted(path.stem for path in (workspace / "scores").glob("*.mxl")) == \
        sorted([f"Brahms_{n}" for n in range(1, 7)] + [f"Lang_{n}" for n in range(1, 7)])
    assert "prompt lines: 12 pieces with an entry (2 prompts), 0 without" in out
    for path in [*(workspace / "interleaved").glob("*.abc"), *(workspace / "augmented" / "Eb").glob("*.abc")]:
        composer = "Brahms, Johannes" if path.name.startswith("Brahms") else "Lang, Josephine"
        assert path.read_text().startswith(f"%Romantic\n%{composer}\n%Art Song\n"), path
    # fine-tuning says what it learns: 11 training pieces (one is the eval piece), every one prompted
    counts = re.search(r"fine-tuning on 11 pieces of .*: 2 prompts, 0 pieces without prompt lines\n"
                       r" +(\d+)  Romantic / (\S+), \S+ / Art Song\n +(\d+)  Romantic / (\S+), \S+ / Art Song\n", out)
    assert counts and int(counts[1]) + int(counts[3]) == 11 and {counts[2], counts[4]} == {"Brahms", "Lang"}, out
    assert (workspace / "finetune" / "prompts.txt").read_text() == \
        "Romantic|Brahms, Johannes|Art Song\nRomantic|Lang, Josephine|Art Song\n"
    assert "Romantic|Brahms, Johannes|Art Song\nRomantic|Lang, Josephine|Art Song" in out  # the page's `cat`
    # the tiny model (64 patches of context) rarely finishes a song: the piece is in original/ or failed/
    pieces = [*(workspace / "pieces").glob("original/*/*.abc"), *(workspace / "pieces").glob("failed/*/*.abc")]
    assert len(pieces) == 1 and pieces[0].read_text().startswith(BRAHMS)
    assert len(pieces[0].read_text()) > len(BRAHMS) + 100  # the model wrote on after the prompt
