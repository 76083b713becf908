"""The pieces of an evaluation and their validity: read a folder (or an inference output folder),
convert and parse each piece, and count what finished, converted, parsed and is usable.

Usable: every part the same number of measures, at least MIN_MEASURES, every inner measure of equal
duration in all parts (the first, a pickup, and the last may be short). Pieces are the `.abc` files
under a folder; in an inference output folder (with `summary/`) the raw texts under `original/` and
`failed/` are read, and the summary gives which ones finished.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ..abc import abc_to_musicxml, read_abc_file, split_prompt_lines
from ..abc.convert import musicxml_to_score

MIN_MEASURES = 4


@dataclass
class EvaluatedPiece:
    """One piece of an evaluation: its text and prompt as read, then what `check_piece` found."""
    name: str
    text: str
    finished: bool = True
    prompt: tuple[str, ...] = ()  # its prompt lines, without "%"
    score: object = None  # music21 Score, once it parsed (usable or not)
    reason: str = ""  # why it is not usable
    converted: bool = False  # abc2xml made MusicXML of it
    bars: int = 0
    aligned_bars: int = 0
    path: str = ""  # the file it was read from

    @property
    def usable(self) -> bool:
        return not self.reason

    @property
    def composer(self) -> str:
        """Its second prompt line ("" without one): what the composer classifier is asked about."""
        return self.prompt[1] if len(self.prompt) >= 2 else ""

    @property
    def instrumentation(self) -> str:
        """Its third prompt line ("" without one): the texture it was asked for."""
        return self.prompt[2] if len(self.prompt) >= 3 else ""

    @property
    def prompt_name(self) -> str:
        """Its prompt as one line, `period|composer|instrumentation` ("" without prompt lines); `%`
        lines a model wrote after its three prompt lines are not part of it."""
        return "|".join(self.prompt[:3])


def read_pieces(folder: str | Path) -> list[EvaluatedPiece]:
    """The pieces of a folder of .abc files, or of an inference output folder (see module notes)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no such folder of pieces: {folder}")
    finished: dict[str, bool] = {}
    roots = [folder]
    if (folder / "summary").is_dir():
        for summary in sorted((folder / "summary").glob("*.json")):
            for entry in json.loads(summary.read_text(encoding="utf-8"))["pieces"]:
                finished[entry["name"]] = entry["status"] != "failed" or not entry["reason"].startswith(
                    ("max_", "stalled", "metadata"))
        roots = [folder / "original", folder / "failed"]
    pieces = []
    for root in roots:
        for path in sorted(root.rglob("*.abc")) if root.is_dir() else []:
            text = read_abc_file(path)
            prompt, _ = split_prompt_lines(text)
            pieces.append(EvaluatedPiece(path.stem, text, finished.get(path.stem, True),
                                         tuple(line[1:] for line in prompt), path=str(path)))
    if not pieces:
        raise FileNotFoundError(f"no .abc pieces under {folder}")
    return sorted(pieces, key=lambda piece: piece.name)  # finished and failed ones interleaved, by index


# -- validity --------------------------------------------------------------------------------------
def check_piece(piece: EvaluatedPiece) -> EvaluatedPiece:
    """Convert and parse one piece; sets its score, bar counts and (when not usable) its reason."""
    if not piece.finished:
        piece.reason = "not finished"
        return piece
    try:
        musicxml = abc_to_musicxml(piece.text)
        piece.converted = True
        score = musicxml_to_score(musicxml)
    except ValueError as error:
        piece.reason = str(error).split(":", 1)[0]
        return piece
    piece.score = score
    measures = [list(part.getElementsByClass("Measure")) for part in score.parts]
    counts = {len(m) for m in measures}
    piece.bars = max(counts) if counts else 0
    if len(counts) != 1:
        piece.reason = "parts differ in measure count"
        return piece
    if piece.bars < MIN_MEASURES:
        piece.reason = f"fewer than {MIN_MEASURES} measures"
        return piece
    lengths = [[float(m.duration.quarterLength) for m in part] for part in measures]
    inner = range(1, piece.bars - 1)  # the first (pickup) and last measure may be short
    piece.aligned_bars = sum(len({part[i] for part in lengths}) == 1 for i in range(piece.bars))
    if any(len({part[i] for part in lengths}) != 1 for i in inner):
        piece.reason = "misaligned bars"
    return piece


def validity(pieces: list[EvaluatedPiece], desc: str = "checking pieces") -> dict:
    for piece in tqdm(pieces, desc=desc, unit="piece", leave=False):
        if piece.score is None and not piece.reason:
            check_piece(piece)  # once: a parsed or refused piece keeps its result
    count = len(pieces)
    bars = sum(p.bars for p in pieces)
    return {"pieces": count,
            "finished": sum(p.finished for p in pieces) / count,
            "converted": sum(p.converted for p in pieces) / count,
            "parsed": sum(p.score is not None for p in pieces) / count,
            "usable": sum(p.usable for p in pieces) / count,
            "bar_alignment": sum(p.aligned_bars for p in pieces) / bars if bars else 0.0,
            "reasons": dict(Counter(p.reason for p in pieces if p.reason).most_common())}

