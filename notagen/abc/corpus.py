"""Real training data from music21's bundled corpus, built offline: pre-training, fine-tuning, references.

Layout under the output folder (default `corpus/` of the repository):
    sources/standard_abc/ interleaved/ augmented/<KEY>/   every chosen piece converted and
                                         preprocessed once, without prompt lines (a cache: a
                                         rebuild only does what is missing)
    pretrain/standard_abc/ interleaved/ augmented/<KEY>/  augmented.jsonl _train _eval
    finetune/...same layout, every file starting with the three prompt lines, + prompts.json
    reference/bach_chorales/, reference/palestrina/   interleaved ABC, held out of both sets
    summary.json                          piece counts (also printed)

Design choices:
- Sources: every .mxl/.musicxml/.xml/.krn/.abc file of the corpus except test material (demos,
  theory exercises). MusicXML files go straight to xml2abc (the golden path); Humdrum and ABC go
  through music21 to MusicXML first. A multi-tune ABC collection gives one piece per tune, except
  for files whose tunes are the voices of one piece (Josquin), which music21 merges. When a piece
  exists in several formats, MusicXML wins.
- Prompts (`corpus_prompts.py`): `PROMPT_TABLE` maps corpus folders to (period, composer, instrumentation); for the
  trecento collection the composer comes from each score's metadata (its MusicXML composer
  credit), normalised through `TRECENTO_COMPOSERS`. Only pieces with a prompt go into the
  fine-tuning set; pieces of unknown or unlisted composers stay in pre-training only.
- References: `reference_pieces` Bach chorales and Palestrina pieces are drawn (seeded) from the
  full corpus before anything else, so the reference sets do not depend on `max_pieces`, and they
  are excluded from both training sets.
- `max_pieces` (per set) picks round-robin across collections (pre-training) or prompts
  (fine-tuning), each shuffled with the seed, so a small corpus is still varied. Pieces are picked
  before conversion: a set holds at most `max_pieces`, fewer if some fail to convert.
- `focus` + `focus_pieces`: a small corpus can add more pieces of one prompt to the fine-tuning
  set (the main job adds Bach chorales, the style its CLaMP-DPO step targets), so a tiny model
  sees enough of that style to write it; the round-robin choice above stays as it was. The
  focus prompt's pieces also get their own index files (`augmented_focus_{train,eval}.jsonl`,
  the same split), for a second fine-tune on that style alone.
- Index `path`s are relative to the repository root when the output folder is inside it, so the
  corpus stays valid when the checkout moves; `augmented_file(REPO_ROOT / path, key)` finds a file.
"""
from __future__ import annotations

import fnmatch
import json
import random
import re
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from ..io import atomic_write_json, atomic_write_text
from ..paths import REPO_ROOT
from .batch import Task, run_batch
from .convert import musicxml_to_abc, xml_file_to_abc
from .errors import AbcError, captured_output
from .pipeline import PreprocessLayout, preprocess_job, failure_log_beside, write_index_files
from .corpus_prompts import Prompt, metadata_composers, prompt_for
from .text import KEYS_15

SOURCE_SUFFIXES = [".mxl", ".musicxml", ".xml", ".krn", ".abc", ".mid", ".midi"]  # preference order for duplicates (MIDI via music21)
SKIPPED_FOLDERS = ("demos/", "theoryExercises/", "_metadataCache/", "bach/choraleAnalyses/")
WHOLE_FILE_ABC = ("josquin/",)  # ABC files whose X: tunes are the voices of one piece
_TUNE_START = re.compile(r"^X:", flags=re.MULTILINE)

REFERENCE_SETS = {"bach_chorales": "bach/*", "palestrina": "palestrina/*"}


@dataclass(frozen=True)
class CorpusPiece:
    name: str                   # unique file name stem, e.g. "bach_bwv269", "essenFolksong_han1_0003"
    source: str                 # path inside music21's corpus, e.g. "bach/bwv269.mxl"
    tune: int | None = None     # 1-based tune of a multi-tune ABC file; None = the whole file

    @property
    def collection(self) -> str:
        return self.source.split("/")[0]


# ---------------------------------------------------------------- finding pieces

def corpus_root() -> Path:
    from music21 import common
    return Path(common.getCorpusFilePath())


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_")


def _read_corpus_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")  # a few old ABC collections are Latin-1


def find_corpus_pieces(root: Path | None = None) -> list[CorpusPiece]:
    """Every convertible piece of music21's corpus, one per score file or per ABC tune."""
    root = root or corpus_root()
    best: dict[str, Path] = {}  # name stem -> preferred file
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.suffix.lower() not in SOURCE_SUFFIXES or relative.startswith(SKIPPED_FOLDERS):
            continue
        stem = _safe(str(Path(relative).with_suffix("")).replace("/", "_"))
        rank = SOURCE_SUFFIXES.index(path.suffix.lower())
        if stem not in best or rank < SOURCE_SUFFIXES.index(best[stem].suffix.lower()):
            best[stem] = path
    pieces = []
    for stem, path in sorted(best.items()):
        relative = path.relative_to(root).as_posix()
        tunes = len(_TUNE_START.findall(_read_corpus_text(path))) if path.suffix.lower() == ".abc" else 0
        if tunes <= 1 or relative.startswith(WHOLE_FILE_ABC):
            pieces.append(CorpusPiece(stem, relative))
        else:
            pieces.extend(CorpusPiece(f"{stem}_{tune:04d}", relative, tune) for tune in range(1, tunes + 1))
    return pieces


# ---------------------------------------------------------------- choosing pieces

def round_robin(groups: dict[str, list], limit: int, seed: int) -> list:
    """Up to `limit` items taken in turn from each group (groups and items shuffled by `seed`)."""
    rng = random.Random(seed)
    queues = []
    for key in sorted(groups):
        items = list(groups[key])
        rng.shuffle(items)
        queues.append(items)
    chosen = []
    while len(chosen) < limit and any(queues):
        for queue in queues:
            if queue and len(chosen) < limit:
                chosen.append(queue.pop(0))
    return chosen


@dataclass
class CorpusPlan:
    pretrain: list[CorpusPiece]
    finetune: dict[CorpusPiece, Prompt]
    references: dict[str, list[CorpusPiece]]

    def all_pieces(self) -> list[CorpusPiece]:
        everything = {piece.name: piece for piece in self.pretrain}
        everything.update({piece.name: piece for piece in self.finetune})
        for pieces in self.references.values():
            everything.update({piece.name: piece for piece in pieces})
        return [everything[name] for name in sorted(everything)]


def plan_corpus(pieces: list[CorpusPiece], prompts: dict[str, Prompt], max_pieces: int,
                reference_pieces: int, seed: int, focus: Prompt | None = None,
                focus_pieces: int = 0, pretrain: bool = True) -> CorpusPlan:
    """Choose the references first, then the training sets (see the module docstring); then add
    up to `focus_pieces` more fine-tuning pieces of the `focus` prompt (seeded choice).
    `pretrain` False leaves the pre-training set empty; the other sets stay as they would be."""
    rng = random.Random(seed)
    references = {}
    for set_name, pattern in REFERENCE_SETS.items():
        candidates = [piece for piece in pieces if fnmatch.fnmatch(piece.source, pattern)]
        references[set_name] = sorted(rng.sample(candidates, min(reference_pieces, len(candidates))),
                                      key=lambda piece: piece.name)
    held_out = {piece.name for chosen in references.values() for piece in chosen}
    trainable = [piece for piece in pieces if piece.name not in held_out]
    with_prompt = [piece for piece in trainable if piece.name in prompts]
    if max_pieces > 0:
        by_collection, by_prompt = defaultdict(list), defaultdict(list)
        for piece in trainable:
            by_collection[piece.collection].append(piece)
        for piece in with_prompt:
            by_prompt["|".join(prompts[piece.name])].append(piece)
        trainable = round_robin(by_collection, max_pieces, seed)
        every_with_prompt = with_prompt
        with_prompt = round_robin(by_prompt, max_pieces, seed)
        if focus is not None and focus_pieces > 0:
            chosen = {piece.name for piece in with_prompt}
            extra = [piece for piece in every_with_prompt
                     if prompts[piece.name] == tuple(focus) and piece.name not in chosen]
            with_prompt += random.Random(seed).sample(extra, min(focus_pieces, len(extra)))
    return CorpusPlan(pretrain=sorted(trainable, key=lambda piece: piece.name) if pretrain else [],
                      finetune={piece: prompts[piece.name] for piece in sorted(with_prompt, key=lambda p: p.name)},
                      references=references)


# ---------------------------------------------------------------- converting pieces

def abc_tune(text: str, tune: int) -> str:
    """The `tune`-th X: tune of an ABC collection, with the collection's preamble before it."""
    starts = [match.start() for match in _TUNE_START.finditer(text)]
    if not 1 <= tune <= len(starts):
        raise AbcError("no such tune", f"tune {tune} of {len(starts)}")
    end = starts[tune] if tune < len(starts) else len(text)
    return text[:starts[0]] + text[starts[tune - 1]:end]


def music21_score(path: Path, tune: int | None):
    """music21's reading of a corpus file (or of one tune of an ABC collection) as one Score."""
    from music21 import converter, stream
    if path.suffix.lower() == ".abc" and tune is not None:
        parsed = converter.parseData(abc_tune(_read_corpus_text(path), tune), format="abc")
    else:
        parsed = converter.parse(path, forceSource=True)
    if isinstance(parsed, stream.Opus):
        parsed = parsed.mergeScores()  # tunes that are the voices of one piece
    return parsed


def corpus_piece_to_abc(piece: CorpusPiece, root: Path) -> str:
    """Standard ABC of one corpus piece: xml2abc on MusicXML, music21 -> MusicXML -> xml2abc otherwise."""
    path = root / piece.source
    if path.suffix.lower() in (".mxl", ".musicxml", ".xml"):
        return xml_file_to_abc(path)
    from music21.musicxml.m21ToXml import GeneralObjectExporter
    try:
        with captured_output():
            musicxml = GeneralObjectExporter(music21_score(path, piece.tune)).parse()
    except AbcError:
        raise
    except Exception as exc:
        raise AbcError("music21 failed", f"{type(exc).__name__}: {exc}") from None
    return musicxml_to_abc(musicxml, path.name)


def _conversion_job(job: tuple[CorpusPiece, Path, Path]):
    piece, root, target = job
    return {target: corpus_piece_to_abc(piece, root)}


# ---------------------------------------------------------------- writing the sets

def prompt_header(prompt: Prompt | None) -> str:
    return "".join(f"%{field}\n" for field in prompt or ())


def _index_prefix(folder: Path) -> str:
    try:
        return folder.resolve().relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return str(folder.resolve())


def _publish(source: Path, target: Path, prompt: Prompt | None) -> None:
    """target = prompt lines + source text, rewritten only where it changed."""
    text = prompt_header(prompt) + source.read_text(encoding="utf-8")
    if not target.exists() or target.read_text(encoding="utf-8") != text:
        atomic_write_text(target, text)


def _prune(folder: Path, keep: set[str]) -> None:
    """Remove the .abc files of pieces no longer selected (a rebuild with another max_pieces)."""
    if folder.is_dir():
        for path in folder.glob("*.abc"):
            if path.stem not in keep:
                path.unlink()


def _set_layout(set_folder: Path) -> PreprocessLayout:
    return PreprocessLayout(set_folder / "interleaved", set_folder / "augmented")


def _publish_set(standard: Path, cache: PreprocessLayout, set_folder: Path,
                 pieces: dict[str, Prompt | None]) -> None:
    """A training set's folders from the shared cache: standard, interleaved and 15 keys per piece."""
    layout = _set_layout(set_folder)
    _prune(set_folder / "standard_abc", set(pieces))
    _prune(layout.interleaved_folder, set(pieces))
    for key in KEYS_15:
        _prune(layout.augmented_folder / key, {f"{name}_{key}" for name in pieces})
    for name, prompt in pieces.items():
        _publish(standard / f"{name}.abc", set_folder / "standard_abc" / f"{name}.abc", prompt)
        for source, target in zip(cache.outputs(name), layout.outputs(name)):
            _publish(source, target, prompt)


def _piece_name(index_line: str) -> str:
    """The piece an index line names: the last part of its `path`."""
    return Path(json.loads(index_line)["path"]).name


def _index_lines(index: Path, keep) -> list[str]:
    """The lines of an index file whose piece name passes `keep`."""
    return [line for line in index.read_text(encoding="utf-8").splitlines(keepends=True) if keep(_piece_name(line))]


def write_focus_index(augmented_folder: Path, names: set[str]) -> dict[str, int]:
    """`<AUG>_focus_train.jsonl` / `<AUG>_focus_eval.jsonl`: the lines of the set's own train / eval
    index files whose piece is in `names`, so the split stays the same (no eval piece is trained on)."""
    counts = {}
    for split in ("train", "eval"):
        lines = _index_lines(augmented_folder.parent / f"{augmented_folder.name}_{split}.jsonl", names.__contains__)
        atomic_write_text(augmented_folder.parent / f"{augmented_folder.name}_focus_{split}.jsonl", "".join(lines))
        counts[split] = len(lines)
    return counts


def write_mixed_index(set_folder: Path, focus_pieces: int, out_dir: Path) -> dict[str, int]:
    """`<out_dir>/{train,eval}.jsonl` for a model that has seen little of the focus prompt (the
    main job's CLaMP-DPO starts from one): train, the fine-tuning set's train lines without its
    focus pieces plus the first `focus_pieces` lines of `augmented_focus_train.jsonl`; eval, the
    set's own eval lines (every prompt, as the other fine-tuning runs are measured)."""
    focus_lines = {split: (set_folder / f"augmented_focus_{split}.jsonl").read_text(encoding="utf-8")
                   .splitlines(keepends=True) for split in ("train", "eval")}
    focus = {_piece_name(line) for lines in focus_lines.values() for line in lines}
    if not focus:
        raise ValueError(f"{set_folder} has no focus pieces: build the corpus with --focus_prompt")
    train = _index_lines(set_folder / "augmented_train.jsonl", lambda name: name not in focus)
    added = focus_lines["train"][:focus_pieces]
    train += added
    evaluation = (set_folder / "augmented_eval.jsonl").read_text(encoding="utf-8")
    atomic_write_text(out_dir / "train.jsonl", "".join(train))
    atomic_write_text(out_dir / "eval.jsonl", evaluation)
    return {"train": len(train), "focus": len(added), "eval": len(evaluation.splitlines())}


def _finished(layout: PreprocessLayout, names) -> list[str]:
    return sorted(name for name in names if all(path.exists() for path in layout.outputs(name)))


def build_corpus(out_dir: str | Path, max_pieces: int = 0, reference_pieces: int = 20,
                 eval_split: float = 0.1, seed: int = 0, workers: int = 0, timeout: float = 180.0,
                 progress: bool = True, focus: Prompt | None = None, focus_pieces: int = 0,
                 pretrain: bool = True) -> dict:
    """Build (or finish) the embedded corpus under `out_dir`; returns the counts it also writes
    to `<out_dir>/summary.json`.

    Every chosen piece is converted and preprocessed once, without prompt lines, into
    `sources/` (standard_abc, interleaved, augmented); the sets are then written from there
    (fine-tuning files with their prompt lines on top), so a piece in both training sets costs
    one conversion, and a rebuild only converts what `sources/` lacks.
    """
    started = time.monotonic()
    out_dir = Path(out_dir)
    root = corpus_root()
    batch = {"workers": workers, "timeout": timeout, "progress": progress}

    pieces = find_corpus_pieces(root)
    composers = metadata_composers(pieces, root)
    prompts = {piece.name: prompt for piece in pieces if (prompt := prompt_for(piece, composers))}
    plan = plan_corpus(pieces, prompts, max_pieces, reference_pieces, seed, focus, focus_pieces, pretrain)

    standard = out_dir / "sources" / "standard_abc"
    conversion = run_batch(
        [Task(piece.source + (f"#{piece.tune}" if piece.tune else ""), (piece, root, standard / f"{piece.name}.abc"),
              (standard / f"{piece.name}.abc",)) for piece in plan.all_pieces()],
        _conversion_job, failure_log=failure_log_beside(standard), desc="convert", **batch)
    converted = {piece.name for piece in plan.all_pieces() if (standard / f"{piece.name}.abc").exists()}

    cache = _set_layout(out_dir / "sources")
    references_only = PreprocessLayout(cache.interleaved_folder, None)
    training = {piece.name for piece in plan.pretrain} | {piece.name for piece in plan.finetune}
    preprocessing = run_batch(
        [Task(name, (standard / f"{name}.abc", name, cache if name in training else references_only),
              (cache if name in training else references_only).outputs(name)) for name in sorted(converted)],
        preprocess_job, failure_log=failure_log_beside(cache.augmented_folder), desc="preprocess", **batch)

    summary = {"max_pieces": max_pieces, "focus": list(focus or ()), "focus_pieces": focus_pieces,
               "sources": {"selected": len(plan.all_pieces()), "converted": len(converted),
                           "preprocessed": len(_finished(references_only, converted)),
                           "failed": dict(conversion.reason_counts() + preprocessing.reason_counts())}}
    sets = [("finetune", plan.finetune)]
    if pretrain:  # without it, an earlier build's pre-training set in out_dir is left as it was
        sets.insert(0, ("pretrain", {piece: None for piece in plan.pretrain}))
    else:
        summary["pretrain"] = {"selected": 0, "pieces": 0, "built": False}
    for set_name, selection in sets:
        finished = set(_finished(cache, [piece.name for piece in selection]))
        chosen = {piece.name: prompt for piece, prompt in selection.items() if piece.name in finished}
        _publish_set(standard, cache, out_dir / set_name, chosen)
        layout = _set_layout(out_dir / set_name)
        write_index_files(sorted(chosen), layout, eval_split, seed, _index_prefix(layout.augmented_folder))
        summary[set_name] = {"selected": len(selection), "pieces": len(chosen)}
        if set_name == "finetune":
            triples = [list(prompt) for prompt in sorted(set(chosen.values()))]
            atomic_write_json(out_dir / set_name / "prompts.json", triples)
            per_prompt = Counter(" / ".join(prompt) for prompt in chosen.values())
            summary[set_name]["per_prompt"] = dict(sorted(per_prompt.items()))
            if focus is not None:  # the focus prompt's pieces alone, for a second, focused fine-tune
                summary[set_name]["focus_index"] = write_focus_index(
                    layout.augmented_folder, {name for name, prompt in chosen.items() if prompt == tuple(focus)})

    for set_name, chosen in plan.references.items():
        folder = out_dir / "reference" / set_name
        names = {piece.name for piece in chosen} & set(_finished(references_only, converted))
        _prune(folder, names)
        for name in sorted(names):
            _publish(references_only.interleaved(name), folder / f"{name}.abc", None)
        summary[f"reference_{set_name}"] = {"selected": len(chosen), "pieces": len(names)}

    summary["seconds"] = round(time.monotonic() - started, 1)
    atomic_write_json(out_dir / "summary.json", summary)
    return summary


def summary_lines(summary: dict) -> list[str]:
    """What `data/build_corpus.py` prints: pieces per set and per fine-tuning prompt."""
    sources = summary["sources"]
    lines = [f"sources: {sources['converted']} of {sources['selected']} converted, "
             f"{sources['preprocessed']} preprocessed"
             + (f" (failed: {sources['failed']})" if sources["failed"] else "")]
    for set_name in ("pretrain", "finetune"):
        built = summary[set_name].get("built", True)
        lines.append(f"{set_name}: {summary[set_name]['pieces']} pieces" if built
                     else f"{set_name}: not built (an earlier one in this folder is left as it was)")
    lines += [f"  {count:5d}  {prompt}" for prompt, count in summary["finetune"]["per_prompt"].items()]
    if "focus_index" in summary["finetune"]:
        counts = summary["finetune"]["focus_index"]
        lines.append(f"focus ({' / '.join(summary['focus'])}): {counts['train']} train + {counts['eval']} eval "
                     f"pieces in finetune/augmented_focus_{{train,eval}}.jsonl")
    lines += [f"{key.replace('_', ' ', 1)}: {value['pieces']} pieces"
              for key, value in summary.items() if key.startswith("reference_")]
    lines.append(f"built in {summary['seconds']} s")
    return lines
