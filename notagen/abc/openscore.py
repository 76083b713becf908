"""The OpenScore corpora of the repository (`data/openscore/`): their pieces and prompts.

OpenScore Lieder (1,460 songs) and OpenScore String Quartets (122 movements), MusicXML, CC0 1.0
(`data/openscore/README.md`). Each score is one `CorpusPiece` of the corpus "openscore": `source`
is its path below the folder, its name `lieder_<Composer>_<id>` / `quartets_<Composer>_<id>`.

Prompts are spelled as NotaGen-X's prompt list (`gradio/prompts.txt`) spells them:
- instrumentation: `Art Song` for the songs (voice and piano), `Chamber` for the quartets;
- composer: the composer's folder in ASCII (unidecode), `_` read as a space, without a
  parenthesised part or an `- aka ...` alias (`Holmès,_Augusta_Mary_Anne` -> `Holmes, Augusta Mary
  Anne`); where the list names the composer shorter (`Faisst, Clara` for `Faisst, Clara
  Mathilda`: a name of the list that the folder's name starts with, word for word), the list's name;
- period: the list's period for a composer it names; else the period of the birth year,
  `PERIOD_STARTS`: born before 1400 Medieval, 1400-1559 Renaissance, 1560-1713 Baroque, 1714-1779
  Classical, from 1780 Romantic. The list has no later period (Bartok, Prokofiev and Shostakovich
  are Romantic in it), and these boundaries give every composer that both the list and OpenScore
  name the list's own period (a test checks it). Birth years come from the corpora's
  `data/composers.tsv` (both tables, matched by the normalised name) and, for the few composers
  the Lieder table lacks, from `BIRTH_YEARS`; a composer with neither gets no prompt (pre-training
  only) and is named in the build summary.
Every prompt goes through `metadata.check_prompt`, as a user's metadata does.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from unidecode import unidecode

from ..paths import REPO_ROOT
from ..prompts import PromptCatalog
from .corpus_sources import CorpusPiece, safe_name
from .metadata import Prompt, check_prompt

OPENSCORE = "openscore"  # the `corpus` of these pieces
OPENSCORE_FOLDER = "data/openscore"  # where the corpora lie, relative to the repository root
NOTAGENX_PROMPTS = REPO_ROOT / "gradio" / "prompts.txt"  # NotaGen-X's 112 prompts (the published demo's list)
# corpus folder -> (piece name prefix, instrumentation)
SETS = {"lieder": ("lieder", "Art Song"), "string-quartets": ("quartets", "Chamber")}
# (first birth year, period), in order; born before the first: Medieval
PERIOD_STARTS = ((1400, "Renaissance"), (1560, "Baroque"), (1714, "Classical"), (1780, "Romantic"))
# composers of OpenScore Lieder missing from its composers.tsv and from NotaGen-X's list
BIRTH_YEARS = {
    "Arne, Thomas": 1710, "Berg, Alban": 1885, "Donaudy, Stefano": 1879, "Flegier, Ange": 1846,
    "Ives, Charles": 1874, "Leoncavallo, Ruggero": 1857, "Massenet, Jules": 1842,
    "Obradors, Fernando": 1897, "Paladilhe, Emile": 1844, "Quilter, Roger": 1877,
    "Rossini, Gioachino": 1792, "Schoenberg, Arnold": 1874, "Tosti, Francesco Paolo": 1846,
    "Verdi, Giuseppe": 1813, "Zemlinsky, Alexander von": 1871,
}
_ALIAS = re.compile(r"\s+-\s+aka\s.*$|\s*\([^)]*\)")


def composer_name(folder_name: str) -> str:
    """An OpenScore composer folder as a plain ASCII name: `Schröter,_Corona` -> `Schroter, Corona`."""
    return " ".join(_ALIAS.sub("", unidecode(folder_name).replace("_", " ")).split())


def list_periods(path: str | Path = NOTAGENX_PROMPTS) -> dict[str, str]:
    """Composer -> period in a prompt list (NotaGen-X's by default)."""
    return {composer: period for period, composer, _ in PromptCatalog.from_file(path).triples}


def list_spelling(name: str, known) -> str:
    """The name `known` (a prompt list's composers) gives `name`: itself, or the longest known
    name that `name` starts with, word for word; else `name`."""
    if name in known:
        return name
    shorter = [other for other in known if name.startswith(other + " ")]
    return max(shorter, key=len) if shorter else name


def period_of_birth(year: int) -> str:
    period = "Medieval"
    for start, name in PERIOD_STARTS:
        if year >= start:
            period = name
    return period


def birth_years(folder: str | Path) -> dict[str, int]:
    """Normalised composer name -> birth year, from each set's `data/composers.tsv`, then `BIRTH_YEARS`."""
    years = dict(BIRTH_YEARS)
    for set_folder in SETS:
        table = Path(folder) / set_folder / "data" / "composers.tsv"
        if table.is_file():
            with open(table, encoding="utf-8", newline="") as handle:
                for row in csv.DictReader(handle, delimiter="\t"):
                    if (row.get("born") or "").strip().isdigit():
                        years.setdefault(composer_name(row["path"]), int(row["born"]))
    return years


@dataclass
class OpenScoreCorpus:
    pieces: list[CorpusPiece] = field(default_factory=list)
    prompts: dict[str, Prompt] = field(default_factory=dict)  # piece name -> prompt
    without_period: list[str] = field(default_factory=list)   # composers with no known period


def find_openscore_pieces(folder: str | Path, prompt_list: str | Path = NOTAGENX_PROMPTS) -> OpenScoreCorpus:
    """Every .mxl score under `<folder>/lieder/scores/` and `<folder>/string-quartets/scores/`, and its prompt."""
    folder = Path(folder)
    if not any((folder / set_folder / "scores").is_dir() for set_folder in SETS):
        raise FileNotFoundError(f"no OpenScore corpus in {folder} (expected {' or '.join(SETS)}/scores/ there; "
                                f"openscore_folder '' builds from music21's corpus alone)")
    periods, years = list_periods(prompt_list), birth_years(folder)
    found, without_period = OpenScoreCorpus(), set()
    for set_folder, (prefix, instrumentation) in SETS.items():
        scores = folder / set_folder / "scores"
        for path in sorted(scores.rglob("*.mxl")) if scores.is_dir() else []:
            composer_folder = path.relative_to(scores).parts[0]
            source = path.relative_to(folder).as_posix()
            piece = CorpusPiece(f"{prefix}_{safe_name(unidecode(composer_folder))}_{path.stem}", source,
                                corpus=OPENSCORE)
            found.pieces.append(piece)
            name = composer_name(composer_folder)
            composer = list_spelling(name, periods)
            period = periods.get(composer) or (period_of_birth(years[name]) if name in years else None)
            if period is None:
                without_period.add(name)
                continue
            found.prompts[piece.name] = check_prompt((period, composer, instrumentation), f"{folder}/{source}")
    found.without_period = sorted(without_period)
    return found
