"""The three folder-to-folder stages behind `data/1_...`, `data/2_...` and `data/3_...`.

Each stage finds its inputs (recursively), turns them into `Task`s with known output paths and
hands them to `run_batch`, which parallelises, times out, logs failures and resumes.

Naming: an input's piece name is its path relative to the input folder, without suffix, with
folders joined by "_" (`bach/bwv269.mxl` -> `bach_bwv269`; a flat folder keeps plain stems, as the
published scripts do). Output folders are flat. Two inputs that would get the same name (for
example `x.xml` and `x.mxl`) are not both converted: the first in sorted order wins and the other
is logged as a "name clash" failure instead of silently overwriting it.

Stage 2's `metadata` (`metadata.py`) puts each listed piece's prompt lines on top of its outputs;
a finished piece whose prompt lines are not those it gets now is written again.

Index files (spec section 5) are written after stage 2 from what is on disk, so pieces finished by
an earlier (interrupted) run are listed too. Their `path` is `<augmented folder>/<name>` with the
folder written as given (or as `index_prefix`), like the published files.
"""
from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from unidecode import unidecode

from ..io import atomic_write_text
from .batch import BatchReport, Task, run_batch
from .convert import MAX_INPUT_MB, SCORE_SUFFIXES, abc_to_musicxml, read_abc_file, xml_file_to_abc
from .errors import AbcError
from .metadata import PromptAssignment, assign_prompts, piece_name, read_metadata, with_prompt
from .preprocess import preprocess_abc
from .text import KEYS_15, original_key, split_prompt_lines, text_to_lines

ABC_SUFFIXES = (".abc",)


def check_folders_apart(ori_folder, *out_folders) -> None:
    """Stop before writing when an output folder is the input folder, or one lies inside the other:
    the stage would overwrite its sources, or read its own outputs as inputs on the next run."""
    source = Path(ori_folder).resolve()
    for out in out_folders:
        if out is None:
            continue
        target = Path(out).resolve()
        if target == source or source in target.parents or target in source.parents:
            raise ValueError(f"output folder {out} {'is' if target == source else 'overlaps'} the input folder "
                             f"{ori_folder}: choose an output folder outside it")


def find_inputs(folder: str | Path, suffixes: Iterable[str]) -> tuple[list[Path], list[Path]]:
    """(files under `folder`, recursively, whose suffix is one of `suffixes` (any case), the other
    files), both sorted; hidden files are neither."""
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"no such input folder: {folder}")
    suffixes = tuple(suffix.lower() for suffix in suffixes)
    files = sorted(path for path in Path(folder).rglob("*") if path.is_file() and not path.name.startswith("."))
    return ([path for path in files if path.suffix.lower() in suffixes],
            [path for path in files if path.suffix.lower() not in suffixes])


def find_files(folder: str | Path, suffixes: Iterable[str]) -> list[Path]:
    """Files under `folder` (recursively) whose suffix is one of `suffixes` (any case), sorted."""
    return find_inputs(folder, suffixes)[0]


def beside(folder: str | Path, suffix: str) -> Path:
    """`<folder><suffix>` next to a stage's output folder (which holds music files only)."""
    folder = Path(folder)
    return folder.parent / f"{folder.name}{suffix}"


def failure_log_beside(folder: str | Path) -> Path:
    """Default failure log of a stage: `<folder>_failures.log` next to its output folder."""
    return beside(folder, "_failures.log")


def print_stage_result(report: BatchReport, failure_log: str | Path, *extra_lines: str) -> int:
    """Print a stage's summary line (and where its failures are listed); return its exit status:
    1 only when there were inputs and none of them is done."""
    print(report.summary())
    for line in extra_lines:
        print(line)
    if report.failures:
        print(f"failures are listed in {failure_log}")
    return 1 if report.failures and not (report.converted or report.skipped) else 0


def name_inputs(paths: list[Path], folder: Path) -> tuple[dict[str, Path], list[tuple[str, str]]]:
    """{piece name: input path} and the clash failures for inputs whose name was already taken."""
    named: dict[str, Path] = {}
    clashes: list[tuple[str, str]] = []
    for path in paths:
        name = piece_name(path, folder)
        if name in named:
            clashes.append((str(path), f"name clash: {name!r} is already produced from {named[name]}"))
        else:
            named[name] = path
    return named, clashes


# ---------------------------------------------------------------- stage 1: MusicXML -> ABC

def _xml2abc_job(job: tuple[Path, Path, float]):
    source, target, max_mb = job
    return {target: xml_file_to_abc(source, max_mb)}


def xml2abc_folder(ori_folder, des_folder, *, workers: int = 0, timeout: float = 120.0,
                   failure_log=None, progress: bool = True, max_input_mb: float = MAX_INPUT_MB) -> BatchReport:
    """Every .xml/.musicxml/.mxl/.mid/.midi under `ori_folder` -> `<des_folder>/<name>.abc` (xml2abc
    -d 8 -c 6 -x; MIDI through music21, quantised); other files are counted and named as skipped."""
    ori_folder, des_folder = Path(ori_folder), Path(des_folder)
    check_folders_apart(ori_folder, des_folder)
    scores, others = find_inputs(ori_folder, SCORE_SUFFIXES)
    named, clashes = name_inputs(scores, ori_folder)
    tasks = [Task(str(source), (source, des_folder / f"{name}.abc", max_input_mb), (des_folder / f"{name}.abc",))
             for name, source in named.items()]
    return run_batch(tasks, _xml2abc_job, workers=workers, timeout=timeout, known_failures=clashes,
                     unknown=[str(path) for path in others],
                     failure_log=failure_log, desc="xml2abc", progress=progress)


# ---------------------------------------------------------------- stage 2: clean, interleave, augment

@dataclass(frozen=True)
class PreprocessLayout:
    """Where stage 2 puts a piece's files."""
    interleaved_folder: Path
    augmented_folder: Path | None  # None: interleaved only (reference sets)

    def interleaved(self, name: str) -> Path:
        return self.interleaved_folder / f"{name}.abc"

    def augmented(self, name: str, key: str) -> Path:
        return augmented_file(self.augmented_folder / name, key)

    def outputs(self, name: str) -> tuple[Path, ...]:
        keys = KEYS_15 if self.augmented_folder is not None else []
        return (self.interleaved(name),) + tuple(self.augmented(name, key) for key in keys)


def augmented_file(entry_path: str | Path, key: str) -> Path:
    """Index `path` + key name -> the transposed file, `<AUG>/<KEY>/<name>_<KEY>.abc` (spec section 5)."""
    entry_path = Path(entry_path)
    return entry_path.parent / key / f"{entry_path.name}_{key}.abc"


def preprocess_job(job: tuple[Path, str, PreprocessLayout, tuple | None]):
    """One piece's stage-2 files; a prompt (not None) replaces the source's own prompt lines."""
    source, name, layout, prompt = job
    piece = preprocess_abc(with_prompt(read_abc_file(source), prompt), augment=layout.augmented_folder is not None)
    outputs = {layout.interleaved(name): piece.interleaved}
    outputs.update({layout.augmented(name, key): text for key, text in piece.augmented.items()})
    return outputs


def interleaved_key(path: Path) -> str:
    """The original key of a finished piece, read back from its interleaved file."""
    _, body = split_prompt_lines(path.read_text(encoding="utf-8"))
    return original_key(text_to_lines(body))


def split_train_eval(names: list[str], eval_split: float, seed: int) -> tuple[list[str], list[str]]:
    """Seeded random split; at least one eval piece whenever eval_split > 0 and there are two pieces."""
    shuffled = sorted(names)
    random.Random(seed).shuffle(shuffled)
    eval_count = round(len(shuffled) * eval_split)
    if eval_split > 0 and len(shuffled) >= 2:
        eval_count = min(max(eval_count, 1), len(shuffled) - 1)
    return sorted(shuffled[eval_count:]), sorted(shuffled[:eval_count])


def write_index_files(names: list[str], layout: PreprocessLayout, eval_split: float, seed: int,
                      index_prefix: str | None = None) -> dict[str, int]:
    """`<AUG>.jsonl`, `<AUG>_train.jsonl`, `<AUG>_eval.jsonl` for the finished pieces among `names`."""
    folder = layout.augmented_folder
    prefix = index_prefix if index_prefix is not None else str(folder)
    finished = sorted(name for name in names if all(path.exists() for path in layout.outputs(name)))
    entries = {name: {"path": os.path.join(prefix, name), "key": interleaved_key(layout.interleaved(name))}
               for name in finished}
    train, evaluation = split_train_eval(finished, eval_split, seed)
    counts = {}
    for suffix, subset in (("", finished), ("_train", train), ("_eval", evaluation)):
        text = "".join(json.dumps(entries[name]) + "\n" for name in subset)
        atomic_write_text(folder.parent / f"{folder.name}{suffix}.jsonl", text)
        counts[f"{folder.name}{suffix}.jsonl"] = len(subset)
    return counts


def redo_other_prompts(named_sources: dict[str, Path], layout: PreprocessLayout, prompts: dict) -> list[str]:
    """Remove the interleaved file of each finished piece whose prompt lines are not those it gets
    now (its metadata entry, else its source's own lines), so this run writes the piece again."""
    redone = []
    for name, source in named_sources.items():
        done = layout.interleaved(name)
        if not done.is_file():
            continue
        if name in prompts:
            wanted = [f"%{value}" for value in prompts[name]]
        else:
            try:
                wanted = [unidecode(line) for line in split_prompt_lines(read_abc_file(source))[0]]
            except AbcError:
                continue  # the run reports the unreadable source
        if split_prompt_lines(done.read_text(encoding="utf-8"))[0] != wanted:
            done.unlink()
            redone.append(name)
    return redone


def preprocess_files(named_sources: dict[str, Path], layout: PreprocessLayout, *, workers: int = 0,
                     timeout: float = 120.0, failure_log=None, known_failures=(), progress: bool = True,
                     desc: str = "preprocess", unknown=(), prompts: dict | None = None) -> BatchReport:
    """Stage 2's conversions on {piece name: standard ABC file} (no index files); `prompts`
    {name: (period, composer, instrumentation)} go on top of those pieces' outputs."""
    prompts = prompts or {}
    tasks = [Task(str(source), (source, name, layout, prompts.get(name)), layout.outputs(name))
             for name, source in named_sources.items()]
    return run_batch(tasks, preprocess_job, workers=workers, timeout=timeout, failure_log=failure_log,
                     known_failures=known_failures, desc=desc, progress=progress, unknown=unknown)


def preprocess_folder(ori_folder, interleaved_folder, augmented_folder, *, eval_split: float = 0.1,
                      seed: int = 0, metadata: str | Path = "",
                      **options) -> tuple[BatchReport, dict[str, int], PromptAssignment | None]:
    """Every .abc under `ori_folder` -> interleaved folder, 15 augmented key folders, index files;
    returns the batch report, the number of pieces in each index file and, with `metadata` (a CSV
    or JSON-lines file, a folder, or "folders": see `metadata.py`), which pieces got prompt lines.
    Bad metadata stops the stage before anything is written."""
    ori_folder = Path(ori_folder)
    check_folders_apart(ori_folder, interleaved_folder, augmented_folder)
    sources, others = find_inputs(ori_folder, ABC_SUFFIXES)
    named, clashes = name_inputs(sources, ori_folder)
    assignment = assign_prompts(read_metadata(metadata, ori_folder), named) if str(metadata).strip() else None
    prompts = assignment.prompts if assignment is not None else {}
    layout = PreprocessLayout(Path(interleaved_folder), Path(augmented_folder))
    redo_other_prompts(named, layout, prompts)
    report = preprocess_files(named, layout, known_failures=clashes, unknown=[str(p) for p in others],
                              prompts=prompts, **options)
    return report, write_index_files(list(named), layout, eval_split, seed), assignment


# ---------------------------------------------------------------- stage 3: ABC -> MusicXML

def _abc2xml_job(job: tuple[Path, Path]):
    source, target = job
    return {target: abc_to_musicxml(read_abc_file(source))}


def abc2xml_folder(ori_folder, des_folder, *, workers: int = 0, timeout: float = 120.0,
                   failure_log=None, progress: bool = True) -> BatchReport:
    """Every .abc under `ori_folder` (standard, interleaved or generated) -> `<des_folder>/<name>.xml`."""
    ori_folder, des_folder = Path(ori_folder), Path(des_folder)
    check_folders_apart(ori_folder, des_folder)
    sources, others = find_inputs(ori_folder, ABC_SUFFIXES)
    named, clashes = name_inputs(sources, ori_folder)
    tasks = [Task(str(source), (source, des_folder / f"{name}.xml"), (des_folder / f"{name}.xml",))
             for name, source in named.items()]
    return run_batch(tasks, _abc2xml_job, workers=workers, timeout=timeout, known_failures=clashes,
                     unknown=[str(path) for path in others],
                     failure_log=failure_log, desc="abc2xml", progress=progress)

