"""Which prompt a piece of music21's corpus gets: the folder table, and composers read from scores.

`PROMPT_TABLE` maps corpus paths (first matching pattern wins) to (period, composer,
instrumentation). For the trecento collection the composer comes from each score's MusicXML
composer credit, normalised through `TRECENTO_COMPOSERS`; pieces without a prompt stay in
pre-training only.
"""
from __future__ import annotations

import fnmatch
from pathlib import Path

from .convert import read_musicxml
from .errors import AbcError
from .metadata import Prompt, check_prompt


def _prompt_table(text: str) -> list[tuple[str, Prompt]]:
    """`pattern | period | composer | instrumentation` rows (a `# note` may follow); composer "-": None.
    Each row is checked as a user's metadata is (`metadata.check_prompt`)."""
    table = []
    for line in text.strip().splitlines():
        pattern, period, composer, instrumentation = (f.strip() for f in line.split("#")[0].split("|"))
        if composer == "-":
            table.append((pattern, (period, None, instrumentation)))
        else:
            table.append((pattern, check_prompt((period, composer, instrumentation), f"PROMPT_TABLE {pattern}")))
    return table


# First matching pattern (on the corpus-relative path) wins. Composer "-": from the score's metadata.
PROMPT_TABLE: list[tuple[str, Prompt]] = _prompt_table("""
bach/*                      | Baroque     | Bach, Johann Sebastian            | Choral
corelli/*                   | Baroque     | Corelli, Arcangelo                | Chamber
handel/*                    | Baroque     | Handel, George Frideric           | Art Song  # aria with keyboard reduction
palestrina/*                | Renaissance | Palestrina, Giovanni Pierluigi da | Choral
josquin/*                   | Renaissance | Josquin des Prez                  | Choral
lusitano/*                  | Renaissance | Lusitano, Vicente                 | Choral
monteverdi/*                | Renaissance | Monteverdi, Claudio               | Choral
trecento/*                  | Medieval    | -                                 | Choral
ciconia/*                   | Medieval    | Ciconia, Johannes                 | Choral
beethoven/*                 | Classical   | Beethoven, Ludwig van             | Chamber  # string quartets
haydn/*                     | Classical   | Haydn, Joseph                     | Chamber
mozart/k545/*               | Classical   | Mozart, Wolfgang Amadeus          | Keyboard
mozart/*                    | Classical   | Mozart, Wolfgang Amadeus          | Chamber
cpebach/*                   | Classical   | Bach, Carl Philipp Emanuel        | Keyboard
schumann_robert/opus41no1/* | Romantic    | Schumann, Robert                  | Chamber
schumann_robert/*           | Romantic    | Schumann, Robert                  | Art Song
schumann_clara/opus17/*     | Romantic    | Schumann, Clara                   | Chamber
schumann_clara/*            | Romantic    | Schumann, Clara                   | Keyboard
schubert/*                  | Romantic    | Schubert, Franz                   | Art Song
chopin/*                    | Romantic    | Chopin, Frederic                  | Keyboard
weber/*                     | Romantic    | Weber, Carl Maria von             | Chamber
beach/*                     | Romantic    | Beach, Amy                        | Choral
""")

# music21's metadata spells trecento composers many ways; these are the ones with several pieces.
TRECENTO_COMPOSERS = {
    "Johannes Ciconia": "Ciconia, Johannes",
    "Jacopo da Bologna": "Jacopo da Bologna",
    "Francesco Landini": "Landini, Francesco",
    "Philippe de Vitry": "Vitry, Philippe de",
}


def score_composer(path: Path) -> str | None:
    """The composer credited in a MusicXML file's <identification> (read up to <part-list> only)."""
    import io
    import xml.etree.ElementTree as ElementTree
    try:
        for _, element in ElementTree.iterparse(io.BytesIO(read_musicxml(path)), events=("end",)):
            if element.tag == "creator" and element.get("type") == "composer":
                return " ".join((element.text or "").split()) or None
            if element.tag == "part-list":
                return None
    except (AbcError, ElementTree.ParseError):
        return None
    return None


def metadata_composers(pieces: list, root: Path) -> dict[str, str]:
    """Corpus path -> normalised composer for the pieces whose prompt takes it from the metadata.

    The metadata is the composer credit inside each MusicXML file (music21's own metadata cache
    holds the same strings, but iterating it takes about a minute).
    """
    needs_composer = [pattern for pattern, (_, composer, _) in PROMPT_TABLE if composer is None]
    names = {}
    for piece in pieces:
        if piece.source.lower().endswith((".xml", ".mxl", ".musicxml")) and \
                any(fnmatch.fnmatch(piece.source, pattern) for pattern in needs_composer):
            credit = score_composer(root / piece.source) or ""
            for spelling, normalised in TRECENTO_COMPOSERS.items():
                if credit.startswith(spelling):
                    names[piece.source] = normalised
    return names


def prompt_for(piece, composers: dict[str, str]) -> Prompt | None:
    for pattern, (period, composer, instrumentation) in PROMPT_TABLE:
        if fnmatch.fnmatch(piece.source, pattern):
            composer = composer or composers.get(piece.source)
            return check_prompt((period, composer, instrumentation), piece.source) if composer else None
    return None
