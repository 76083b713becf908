"""Round-trip check: does interleaved ABC -> MusicXML -> music21 give back the original score's shape?

For each piece of a corpus set, the interleaved file goes through `abc_to_musicxml` and music21,
and the result must have the same number of parts and measures as music21's reading of the
original corpus file. Parts count music21 `Part`s (a grand staff counts its two `PartStaff`s on
both sides); measures are counted in the part with the most measures.

The check runs on the batch runner: a piece that passes is "converted", a mismatch or a conversion
error is a failure whose reason says what differed, so the summary line is the pass rate and the
failure log lists every failing piece.
"""
from __future__ import annotations

from pathlib import Path

from ..paths import REPO_ROOT
from .batch import BatchReport, Task, run_batch
from .convert import abc_to_musicxml, musicxml_to_score
from .corpus import find_candidates
from .corpus_sources import CorpusPiece, music21_score
from .errors import AbcError, captured_output
from .openscore import OPENSCORE_FOLDER


def score_shape(score) -> tuple[int, int]:
    """(number of parts, number of measures of the longest part)."""
    from music21 import stream
    parts = list(score.parts)
    if not parts:
        return 0, 0
    return len(parts), max(len(part.getElementsByClass(stream.Measure)) for part in parts)


def original_shape(piece: CorpusPiece, root: Path) -> tuple[int, int]:
    try:
        with captured_output():
            return score_shape(music21_score(root / piece.source, piece.tune))
    except Exception as exc:
        raise AbcError("original unreadable", f"{type(exc).__name__}: {exc}") from None


def check_piece(interleaved_text: str, expected: tuple[int, int]) -> tuple[int, int]:
    """Shape of the round-tripped score; AbcError "round trip mismatch" when it differs."""
    got = score_shape(musicxml_to_score(abc_to_musicxml(interleaved_text)))
    if got != expected:
        raise AbcError("round trip mismatch", f"parts {got[0]} vs {expected[0]} in the original, "
                                              f"measures {got[1]} vs {expected[1]}")
    return got


def _roundtrip_job(job: tuple[CorpusPiece, Path, Path]):  # (piece, its corpus folder, interleaved file)
    piece, root, interleaved_path = job
    check_piece(interleaved_path.read_text(encoding="utf-8"), original_shape(piece, root))
    return {}


def check_corpus_roundtrip(set_folder: str | Path, *, workers: int = 0, timeout: float = 300.0,
                           failure_log=None, progress: bool = True,
                           openscore_folder: str | Path | None = REPO_ROOT / OPENSCORE_FOLDER) -> BatchReport:
    """Round-trip every interleaved piece of a built corpus set (`corpus/finetune`, or a reference
    folder such as `corpus/reference/bach_chorales` that holds the interleaved files itself);
    the originals are looked up in music21's corpus and the OpenScore corpora (`openscore_folder`)."""
    found = find_candidates(openscore_folder)
    pieces = {piece.name: piece for piece in found.pieces}
    folder = Path(set_folder, "interleaved") if Path(set_folder, "interleaved").is_dir() else Path(set_folder)
    interleaved = sorted(folder.glob("*.abc"))
    tasks = [Task(path.stem, (pieces[path.stem], found.roots[pieces[path.stem].corpus], path))
             for path in interleaved if path.stem in pieces]
    unknown = [(path.stem, "not a corpus piece: no original to compare with")
               for path in interleaved if path.stem not in pieces]
    return run_batch(tasks, _roundtrip_job, workers=workers, timeout=timeout, failure_log=failure_log,
                     known_failures=unknown, desc="round trip", progress=progress, skip_done=False)
