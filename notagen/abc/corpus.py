"""The embedded corpus, built offline from the scores in the repository and in music21: pre-training,
fine-tuning and reference sets.

Layout under the output folder (default `corpus/` of the repository):
    sources/standard_abc/ interleaved/ augmented/<KEY>/   every chosen piece converted and
                                         preprocessed once, without prompt lines (a cache: a
                                         rebuild only does what is missing)
    pretrain/standard_abc/ interleaved/ augmented/<KEY>/  augmented.jsonl _train _eval
    finetune/...same layout, every file starting with the three prompt lines, + prompts.json
    reference/bach_chorales/, palestrina/, art_songs/, string_quartets/   interleaved ABC, held out
    summary.json                          piece counts (also printed)

Design choices:
- Sources (`corpus_sources.py`, `openscore.py`): music21's bundled corpus and the OpenScore Lieder
  and String Quartets corpora of `data/openscore/` (`openscore_folder`; "" leaves them out).
- Prompts: for music21's corpus `corpus_prompts.PROMPT_TABLE` maps folders to (period, composer,
  instrumentation), the trecento composer coming from each score's composer credit; OpenScore
  pieces get theirs from their composer (`openscore.py`, NotaGen-X's spelling). Every prompt goes
  through `metadata.check_prompt` and onto the files through `metadata.with_prompt`, as stage 2's
  `--metadata` does. Only pieces with a prompt go into the fine-tuning set, and only when their
  prompt has at least `min_prompt_pieces` pieces outside the references (a prompt seen a few
  times is not learned); the others stay in pre-training only.
- References: `reference_pieces` Bach chorales, Palestrina pieces, OpenScore songs and quartet
  movements are drawn (seeded) from the full corpus before anything else, so the reference sets
  do not depend on `max_pieces`, and they are excluded from both training sets.
- `max_pieces` (per set) picks round-robin across collections (pre-training; the OpenScore
  corpora are the collections `lieder` and `string-quartets`) or prompts (fine-tuning), each
  shuffled with the seed, so a small corpus is still varied. Pieces are picked before
  conversion: a set holds at most `max_pieces`, fewer if some fail to convert.
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
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ..io import atomic_write_json, atomic_write_text
from ..paths import REPO_ROOT
from .batch import Task, run_batch
from .corpus_prompts import metadata_composers, prompt_for
from .corpus_sources import MUSIC21, CorpusPiece, CorpusRoots, corpus_piece_to_abc, corpus_root, find_corpus_pieces
from .metadata import Prompt, with_prompt
from .openscore import OPENSCORE, OPENSCORE_FOLDER, find_openscore_pieces
from .pipeline import PreprocessLayout, preprocess_job, failure_log_beside, write_index_files
from .text import KEYS_15

REFERENCE_SETS = {  # set name -> (corpus, pattern of the pieces' source paths)
    "bach_chorales": (MUSIC21, "bach/*"), "palestrina": (MUSIC21, "palestrina/*"),
    "art_songs": (OPENSCORE, "lieder/*"), "string_quartets": (OPENSCORE, "string-quartets/*")}
MIN_PROMPT_PIECES = 10  # the Python API's default of corpus_config.MIN_PROMPT_PIECES


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
    rare_prompts: dict[Prompt, int] = field(default_factory=dict)  # left out of fine-tuning: pieces each

    def all_pieces(self) -> list[CorpusPiece]:
        everything = {piece.name: piece for piece in self.pretrain}
        everything.update({piece.name: piece for piece in self.finetune})
        for pieces in self.references.values():
            everything.update({piece.name: piece for piece in pieces})
        return [everything[name] for name in sorted(everything)]


def plan_corpus(pieces: list[CorpusPiece], prompts: dict[str, Prompt], max_pieces: int,
                reference_pieces: int, seed: int, focus: Prompt | None = None,
                focus_pieces: int = 0, pretrain: bool = True, min_prompt_pieces: int = 1) -> CorpusPlan:
    """Choose the references first, then the training sets (see the module docstring); then add
    up to `focus_pieces` more fine-tuning pieces of the `focus` prompt (seeded choice).
    `pretrain` False leaves the pre-training set empty; the other sets stay as they would be.
    A prompt with fewer than `min_prompt_pieces` pieces outside the references is left out of
    fine-tuning (its pieces stay in pre-training); a reference set without candidates is left out."""
    rng = random.Random(seed)
    references = {}
    for set_name, (corpus, pattern) in REFERENCE_SETS.items():
        candidates = [piece for piece in pieces if piece.corpus == corpus and fnmatch.fnmatch(piece.source, pattern)]
        if candidates:
            references[set_name] = sorted(rng.sample(candidates, min(reference_pieces, len(candidates))),
                                          key=lambda piece: piece.name)
    held_out = {piece.name for chosen in references.values() for piece in chosen}
    trainable = [piece for piece in pieces if piece.name not in held_out]
    counts = Counter(prompts[piece.name] for piece in trainable if piece.name in prompts)
    rare = {prompt: count for prompt, count in sorted(counts.items()) if count < min_prompt_pieces}
    with_prompt = [piece for piece in trainable if piece.name in prompts and prompts[piece.name] not in rare]
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
                      references=references, rare_prompts=rare)


def _conversion_job(job: tuple[CorpusPiece, Path, Path]):
    piece, root, target = job
    return {target: corpus_piece_to_abc(piece, root)}


@dataclass
class Candidates:
    """Every piece the corpus can hold, their prompts, and where their corpora lie."""
    pieces: list[CorpusPiece]
    prompts: dict[str, Prompt]
    roots: CorpusRoots
    notes: dict  # for the summary: pieces per corpus, OpenScore composers without a period


def find_candidates(openscore_folder: str | Path | None = REPO_ROOT / OPENSCORE_FOLDER) -> Candidates:
    """music21's corpus with the prompts of `corpus_prompts.py`, plus the OpenScore corpora in
    `openscore_folder` with theirs (`openscore.py`; "" or None: music21's corpus alone)."""
    roots = {MUSIC21: corpus_root()}
    pieces = find_corpus_pieces(roots[MUSIC21])
    composers = metadata_composers(pieces, roots[MUSIC21])
    prompts = {piece.name: prompt for piece in pieces if (prompt := prompt_for(piece, composers))}
    notes = {MUSIC21: len(pieces)}
    if openscore_folder:
        roots[OPENSCORE] = Path(openscore_folder)
        openscore = find_openscore_pieces(roots[OPENSCORE])
        pieces += openscore.pieces
        prompts.update(openscore.prompts)
        notes[OPENSCORE] = dict(Counter(piece.collection for piece in openscore.pieces))
        notes["openscore_without_period"] = openscore.without_period
    return Candidates(pieces, prompts, roots, notes)


# ---------------------------------------------------------------- writing the sets

def _index_prefix(folder: Path) -> str:
    try:
        return folder.resolve().relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return str(folder.resolve())


def _publish(source: Path, target: Path, prompt: Prompt | None) -> None:
    """target = prompt lines + source text, rewritten only where it changed."""
    text = with_prompt(source.read_text(encoding="utf-8"), prompt)
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


def _write_references(out_dir: Path, plan: CorpusPlan, interleaved: PreprocessLayout, converted: set[str]) -> dict:
    """reference/<set>/<name>.abc: the interleaved file of each finished reference piece."""
    counts = {}
    for set_name, chosen in plan.references.items():
        folder = out_dir / "reference" / set_name
        names = {piece.name for piece in chosen} & set(_finished(interleaved, converted))
        _prune(folder, names)
        for name in sorted(names):
            _publish(interleaved.interleaved(name), folder / f"{name}.abc", None)
        counts[f"reference_{set_name}"] = {"selected": len(chosen), "pieces": len(names)}
    return counts


def build_corpus(out_dir: str | Path, max_pieces: int = 0, reference_pieces: int = 20,
                 eval_split: float = 0.1, seed: int = 0, workers: int = 0, timeout: float = 180.0,
                 progress: bool = True, focus: Prompt | None = None, focus_pieces: int = 0,
                 pretrain: bool = True, openscore_folder: str | Path | None = REPO_ROOT / OPENSCORE_FOLDER,
                 min_prompt_pieces: int = MIN_PROMPT_PIECES) -> dict:
    """Build (or finish) the embedded corpus under `out_dir`; returns the counts it also writes
    to `<out_dir>/summary.json`.

    Every chosen piece is converted and preprocessed once, without prompt lines, into
    `sources/` (standard_abc, interleaved, augmented); the sets are then written from there
    (fine-tuning files with their prompt lines on top), so a piece in both training sets costs
    one conversion, and a rebuild only converts what `sources/` lacks.
    """
    started = time.monotonic()
    out_dir = Path(out_dir)
    batch = {"workers": workers, "timeout": timeout, "progress": progress}

    found = find_candidates(openscore_folder)
    plan = plan_corpus(found.pieces, found.prompts, max_pieces, reference_pieces, seed, focus, focus_pieces,
                       pretrain, min_prompt_pieces)

    standard = out_dir / "sources" / "standard_abc"
    conversion = run_batch(
        [Task(piece.label, (piece, found.roots[piece.corpus], standard / f"{piece.name}.abc"),
              (standard / f"{piece.name}.abc",)) for piece in plan.all_pieces()],
        _conversion_job, failure_log=failure_log_beside(standard), desc="convert", **batch)
    converted = {piece.name for piece in plan.all_pieces() if (standard / f"{piece.name}.abc").exists()}

    cache = _set_layout(out_dir / "sources")
    references_only = PreprocessLayout(cache.interleaved_folder, None)
    training = {piece.name for piece in plan.pretrain} | {piece.name for piece in plan.finetune}
    preprocessing = run_batch(
        [Task(name, (standard / f"{name}.abc", name, cache if name in training else references_only, None),
              (cache if name in training else references_only).outputs(name)) for name in sorted(converted)],
        preprocess_job, failure_log=failure_log_beside(cache.augmented_folder), desc="preprocess", **batch)

    summary = {"max_pieces": max_pieces, "focus": list(focus or ()), "focus_pieces": focus_pieces,
               "candidates": found.notes,
               "sources": {"selected": len(plan.all_pieces()), "converted": len(converted),
                           "preprocessed": len(_finished(references_only, converted)),
                           "failed": dict(conversion.reason_counts() + preprocessing.reason_counts())},
               "rare_prompts": {"min_pieces": min_prompt_pieces, "prompts": len(plan.rare_prompts),
                                "pieces": sum(plan.rare_prompts.values())}}
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

    summary.update(_write_references(out_dir, plan, references_only, converted))
    summary["seconds"] = round(time.monotonic() - started, 1)
    atomic_write_json(out_dir / "summary.json", summary)
    return summary


def summary_lines(summary: dict) -> list[str]:
    """What `data/build_corpus.py` prints: pieces per set and per fine-tuning prompt."""
    sources = summary["sources"]
    candidates = summary["candidates"]
    lines = [f"candidates: {candidates[MUSIC21]} pieces of music21's corpus"
             + "".join(f", {count} OpenScore {collection}" for collection, count in candidates.get(OPENSCORE, {}).items())]
    if candidates.get("openscore_without_period"):
        lines.append(f"OpenScore composers without a period (pre-training only): "
                     f"{'; '.join(candidates['openscore_without_period'])}")
    lines.append(f"sources: {sources['converted']} of {sources['selected']} converted, "
                 f"{sources['preprocessed']} preprocessed"
                 + (f" (failed: {sources['failed']})" if sources["failed"] else ""))
    rare = summary["rare_prompts"]
    if rare["prompts"]:
        lines.append(f"prompts with fewer than {rare['min_pieces']} pieces (pre-training only): "
                     f"{rare['prompts']} prompts, {rare['pieces']} pieces")
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
