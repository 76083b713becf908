"""Where the embedded corpus's pieces come from: music21's bundled corpus (and the piece type
that the OpenScore corpora of `openscore.py` use too), and how one piece becomes standard ABC.

Design choices:
- A piece is named by its path inside its corpus (`source`) plus the corpus it belongs to
  (`corpus`: "music21" or "openscore"); the corpus folders are passed along as `CorpusRoots`,
  so pieces stay small, picklable values and the folders are looked up once.
- music21's corpus: every .mxl/.musicxml/.xml/.krn/.abc/.mid file except test material (demos,
  theory exercises). MusicXML files go straight to xml2abc (the golden path); Humdrum, ABC and
  MIDI go through music21 to MusicXML first. A multi-tune ABC collection gives one piece per
  tune, except for files whose tunes are the voices of one piece (Josquin), which music21
  merges. When a piece exists in several formats, MusicXML wins.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .convert import musicxml_to_abc, xml_file_to_abc
from .errors import AbcError, captured_output

MUSIC21 = "music21"  # the `corpus` of music21's pieces
SOURCE_SUFFIXES = [".mxl", ".musicxml", ".xml", ".krn", ".abc", ".mid", ".midi"]  # preference order for duplicates (MIDI via music21)
SKIPPED_FOLDERS = ("demos/", "theoryExercises/", "_metadataCache/", "bach/choraleAnalyses/")
WHOLE_FILE_ABC = ("josquin/",)  # ABC files whose X: tunes are the voices of one piece
_TUNE_START = re.compile(r"^X:", flags=re.MULTILINE)

@dataclass(frozen=True)
class CorpusPiece:
    name: str                   # unique file name stem, e.g. "bach_bwv269", "essenFolksong_han1_0003"
    source: str                 # path inside its corpus, e.g. "bach/bwv269.mxl"
    tune: int | None = None     # 1-based tune of a multi-tune ABC file; None = the whole file
    corpus: str = MUSIC21       # which corpus folder `source` is in (`CorpusRoots`)

    @property
    def collection(self) -> str:
        """The first folder of `source` (music21: "bach", "essenFolksong"; OpenScore: "lieder")."""
        return self.source.split("/")[0]

    @property
    def label(self) -> str:
        """The piece in logs: its source path (and tune), prefixed by the corpus unless music21's."""
        where = self.source if self.corpus == MUSIC21 else f"{self.corpus}/{self.source}"
        return where + (f"#{self.tune}" if self.tune else "")


CorpusRoots = dict  # corpus name -> the folder its pieces' `source` paths start from


# ---------------------------------------------------------------- finding pieces

def corpus_root() -> Path:
    from music21 import common
    return Path(common.getCorpusFilePath())


def safe_name(text: str) -> str:
    """`text` as a piece name part: runs of other characters than ASCII letters, digits, `.+-` -> `_`."""
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
        stem = safe_name(str(Path(relative).with_suffix("")).replace("/", "_"))
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
    """Standard ABC of one corpus piece (`root`: its corpus folder): xml2abc on MusicXML,
    music21 -> MusicXML -> xml2abc otherwise."""
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


