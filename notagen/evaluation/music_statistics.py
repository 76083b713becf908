"""Statistics of generated music against real music, from music21 scores: pitch-class, pitch-range,
melodic-interval, note-duration, notes-per-bar and polyphony histograms, each compared by its
overlap area (the sum of the bin-wise minimum of the two normalised histograms: 1 = the same
distribution, 0 = disjoint).

music21 walks every note of a piece (tie-stripping, chordify): the slow part of an evaluation, so a
piece's raw values are read once (`pieces_values`) and every histogram is built from them.
"""
from __future__ import annotations

import numpy as np
from tqdm import tqdm


STATISTICS = {  # name -> histogram bins
    "pitch_class": np.arange(13) - 0.5,
    "pitch_range": np.arange(0, 61, 4),
    "melodic_interval": np.arange(-12, 14) - 0.5,
    "note_duration": np.array([0, 0.3, 0.4, 0.6, 0.8, 1.1, 1.6, 2.1, 3.1, 4.1, 100]),
    "notes_per_bar": np.arange(0, 41, 2),
    "polyphony": np.arange(10) + 0.5,
}


def piece_values(score) -> dict[str, list[float]]:
    """The raw values each statistic counts, for one music21 score."""
    values = {name: [] for name in STATISTICS}
    pitches = []
    for part in score.parts:
        notes = list(part.stripTies().flatten().notes)
        part_pitches = [p.midi for n in notes for p in n.pitches]
        pitches += part_pitches
        melody = [n.pitches[-1].midi for n in notes]
        values["melodic_interval"] += [max(-12, min(12, b - a)) for a, b in zip(melody, melody[1:])]
        values["note_duration"] += [float(n.quarterLength) for n in notes]
        values["notes_per_bar"] += [len(m.notes) for m in part.getElementsByClass("Measure")]
    values["pitch_class"] = [p % 12 for p in pitches]
    values["pitch_range"] = [max(pitches) - min(pitches)] if pitches else []
    chords = score.chordify().flatten().notes
    values["polyphony"] = [min(9, len(c.pitches)) for c in chords]
    return values


def pieces_values(scores, desc: str = "music statistics") -> list[dict[str, list[float]]]:
    """`piece_values` of each score, with a progress bar (minutes for a few hundred pieces)."""
    return [piece_values(score) for score in tqdm(scores, desc=desc, unit="piece", leave=False)]


def histograms(values_of_pieces) -> dict[str, np.ndarray]:
    """Normalised histograms of each statistic over the pooled `piece_values` of several pieces."""
    pooled = {name: [] for name in STATISTICS}
    for piece in values_of_pieces:
        for name, values in piece.items():
            pooled[name] += values
    result = {}
    for name, bins in STATISTICS.items():
        counts, _ = np.histogram(np.clip(pooled[name], bins[0], bins[-1]), bins=bins)
        result[name] = counts / counts.sum() if counts.sum() else counts.astype(float)
    return result


def statistics_vector(values: dict[str, list[float]]) -> np.ndarray:
    """One piece's histograms of every statistic (from its `piece_values`), end to end: the critic's
    symbolic features."""
    return np.concatenate(list(histograms([values]).values()))


def overlap(p: np.ndarray, q: np.ndarray) -> float:
    """Overlapping area of two normalised histograms: 1 identical, 0 disjoint."""
    return float(np.minimum(p, q).sum())


def histogram_overlaps(generated_values, reference_values) -> dict[str, float]:
    """Each statistic's overlap between the pooled histograms of two sets of pieces (their `piece_values`)."""
    generated, reference = histograms(generated_values), histograms(reference_values)
    return {name: overlap(generated[name], reference[name]) for name in STATISTICS}

