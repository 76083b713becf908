"""The repository as a stranger gets it: self-contained, and a README whose example runs."""
from __future__ import annotations

import contextlib
import io
import re
import subprocess

from conftest import REPO_ROOT, VECTORS, torch_threads

README = (REPO_ROOT / "README.md").read_text()


def tracked_files() -> list[str]:
    return subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True,
                          check=True).stdout.splitlines()


def test_nothing_reads_outside_the_checkout():
    """The golden vectors live in the repository, and no file points at a folder beside it."""
    assert VECTORS.is_relative_to(REPO_ROOT) and (VECTORS / "tiny_notagen.pth").is_file()
    outside = re.compile(r"\.\./shared|shared/vectors|shared/spec|shared/data")
    found = [name for name in tracked_files() if (REPO_ROOT / name).suffix in (".py", ".md", ".sh", ".txt", ".toml", "")
             and (REPO_ROOT / name).is_file() and outside.search((REPO_ROOT / name).read_text(errors="ignore"))]
    assert found == [] or found == ["tests/test_repository.py"], found


def test_readme_is_a_guide_with_the_sections_a_newcomer_looks_for():
    headings = re.findall(r"^## (.+)$", README, flags=re.M)
    for needed in ("Install", "Generate a piece in one minute", "The published NotaGen weights",
                   "Fine-tune on your own scores", "CLaMP-DPO", "The demo", "The main job", "Tests"):
        assert needed in headings, needed
    assert len(README.splitlines()) <= 300
    linked = re.findall(r"\]\(((?:docs|weights)/[^)#]+)", README)
    assert linked and [path for path in linked if not (REPO_ROOT / path).exists()] == []


def test_the_readme_python_example_generates_a_piece():
    (example,) = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    printed = io.StringIO()
    with torch_threads(1), contextlib.redirect_stdout(printed):
        exec(compile(example, "README.md", "exec"), {})
    status, text = printed.getvalue().split(" ", 1)
    assert status == "finished" and text.startswith("%Baroque\n%Bach, Johann Sebastian\n%Choral\n")


def heading_anchors(markdown: str) -> set[str]:
    """GitHub's anchors of a page's headings (lower case, punctuation dropped, spaces -> '-',
    repeats numbered) and its explicit <a name> anchors."""
    text = re.sub(r"```.*?```", "", markdown, flags=re.S)
    anchors, seen = set(re.findall(r'<a (?:name|id)="([^"]+)"', text)), {}
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", text, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", re.sub(r"<[^>]+>", "", heading).strip().lower()).replace(" ", "-")
        anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return anchors


def test_every_relative_link_of_the_docs_resolves():
    pages = [REPO_ROOT / name for name in tracked_files() if name.endswith(".md")]
    broken = []
    for page in pages:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            destination = (page.parent / path).resolve() if path else page
            if not destination.exists() or (anchor and destination.suffix == ".md"
                                             and anchor not in heading_anchors(destination.read_text())):
                broken.append(f"{page.relative_to(REPO_ROOT)}: {target}")
    assert broken == [], broken
