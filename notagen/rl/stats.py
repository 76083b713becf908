"""Honest statistics of a CLaMP-DPO chain: is a gain real, and is it music or reward hacking?

Per model of the chain (`RL/loop.py`'s table), beside the mean CLaMP 2 score:
- `welch`: the change against the previous model, in standard errors of the difference, with
  Welch's t-test (the two models' pieces are independent samples of unequal variance);
- `variety`: the mean pairwise cosine between the pieces' features (1 = all alike); a chain that
  collapses onto one kind of piece shows it rising above the real pieces' own value;
- `near_copies`: the share of pieces closer to one real piece than the copy threshold (by
  features: with a small M3 this flags closeness of style, real pieces included);
- `copies`: the share of pieces that write at least half of their two-bar phrases (one voice's
  bars as written) exactly as one real piece does, in any of its keys: copying, measured on the
  text (`PhraseIndex`), against the target's real pieces and, when given, the training pieces;
- `repeated_lines`: the share of bar lines that repeat an earlier line of the same piece exactly
  (a model can raise its score by looping one good bar);
- `usable`: the share of generated pieces that were scored at all (they convert and align).
`reference_statistics` gives the same for the real target pieces, with their own leave-one-out
score: what a model that writes like them would reach.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
from scipy.stats import ttest_ind

from ..abc import rest_unreduce, split_prompt_lines, strip_stream_prefixes
from ..clamp2.score import load_feature_folder
from ..data import KEYS, NotaGenDataset
from ..evaluation import novelty, unit_rows


def _vectors(x) -> np.ndarray:
    """Features as float64 rows [N, F] (from [N, 1, F] .npy stacks or lists)."""
    return np.asarray(x, dtype=np.float64).reshape(len(x), -1)


def welch(previous, current) -> dict:
    """Difference of means (current - previous), its standard error, Welch's t and two-sided p."""
    a, b = np.asarray(previous, dtype=np.float64), np.asarray(current, dtype=np.float64)
    if a.size < 2 or b.size < 2:
        return {"diff": float(b.mean() - a.mean()) if a.size and b.size else math.nan,
                "se": math.nan, "t": math.nan, "p": math.nan}
    se = math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    result = ttest_ind(b, a, equal_var=False)
    return {"diff": float(b.mean() - a.mean()), "se": se, "t": float(result.statistic), "p": float(result.pvalue)}


def mean_pairwise_cosine(features) -> float:
    """Mean cosine over all pairs of distinct rows of features [N, F] (nan for fewer than 2)."""
    unit = unit_rows(_vectors(features))
    n = len(unit)
    if n < 2:
        return math.nan
    total = unit.sum(axis=0)
    return float((total @ total - n) / (n * (n - 1)))  # sum over i != j of u_i . u_j, unit rows


def leave_one_out_scores(features) -> np.ndarray:
    """Each real piece's CLaMP 2 score against the mean of the others [N]."""
    x = _vectors(features)
    others = (x.sum(axis=0, keepdims=True) - x) / max(len(x) - 1, 1)
    return np.sum(unit_rows(x) * unit_rows(others), axis=1)


def body_lines(text: str) -> list[str]:
    """Bar lines of a piece's text (the lines holding `[V:`), stream prefixes removed."""
    return [line.strip() for line in strip_stream_prefixes(text).split("\n") if "[V:" in line]


def repeated_lines(texts) -> float:
    """Share of bar lines, over all pieces, equal to an earlier bar line of their own piece."""
    repeats = total = 0
    for text in texts:
        lines = body_lines(text)
        repeats += len(lines) - len(set(lines))
        total += len(lines)
    return repeats / total if total else math.nan


def near_copy_share(generated, reference, threshold: float) -> float:
    """Share of generated features whose nearest reference feature is closer than `threshold`."""
    if len(generated) == 0:
        return math.nan
    return novelty(_vectors(generated), _vectors(reference), threshold)["copies"] / len(generated)


PHRASE_BARS = 2  # a phrase: this many consecutive bars of one voice
COPY_SHARE = 0.5  # a piece sharing at least this share of its phrases with one real piece is a copy
_VOICE_TAG = re.compile(r"\[V:([^\]]*)\]")
_REST_ONLY = re.compile(r"[zxZX\d/|:\]\s.]*")


def phrases(text: str, bars: int = PHRASE_BARS) -> set[tuple[str, ...]]:
    """A piece's phrases: each voice's runs of `bars` consecutive bars, as written (runs of rests
    alone are left out: every piece has them)."""
    voices: dict[str, list[str]] = {}
    for line in body_lines(text):
        parts = _VOICE_TAG.split(line)  # ['', voice, bar, voice, bar, ...]
        for voice, bar in zip(parts[1::2], parts[2::2]):
            voices.setdefault(voice, []).append(bar.strip())
    return {run for sequence in voices.values() for run in zip(*(sequence[i:] for i in range(bars)))
            if not all(_REST_ONLY.fullmatch(bar) for bar in run)}


class PhraseIndex:
    """Which real pieces hold each phrase, built once; `copy_share` finds the real piece a text
    shares most phrases with."""

    def __init__(self, texts: dict[str, str], bars: int = PHRASE_BARS):
        self.bars = bars
        self.holders: dict[tuple[str, ...], list[str]] = {}
        for name, text in texts.items():
            for phrase in phrases(text, bars):
                self.holders.setdefault(phrase, []).append(name)

    def copy_share(self, text: str, exclude: str | None = None) -> tuple[float, str | None]:
        """(share of the text's phrases found in one real piece, that piece), the piece holding
        most; `exclude`: a real piece's own name, when the text is that piece."""
        own = phrases(text, self.bars)
        counts = Counter(name for phrase in own for name in self.holders.get(phrase, ()) if name != exclude)
        if not counts:
            return 0.0, None
        name, shared = counts.most_common(1)[0]
        return shared / len(own), name


def copy_rate(texts, index: PhraseIndex, share: float = COPY_SHARE) -> float:
    """Share of texts that write at least `share` of their phrases as one real piece does."""
    texts = list(texts)
    if not texts:
        return math.nan
    return sum(index.copy_share(text)[0] >= share for text in texts) / len(texts)


def real_copy_rate(texts: dict[str, str], index: PhraseIndex, share: float = COPY_SHARE) -> float:
    """The rule on real pieces (each left out of the index it is checked against): how often it
    calls a real piece a copy of another."""
    if not texts:
        return math.nan
    return sum(index.copy_share(text, exclude=name)[0] >= share for name, text in texts.items()) / len(texts)


def prompt_texts(index_path: str | Path, prompt: tuple[str, ...]) -> dict[str, str]:
    """The texts, in every key, of an index's pieces written for `prompt`: what a model trained
    on that index could copy. Names are `<piece>_<key>`."""
    data = NotaGenDataset(index_path)
    texts = {}
    for entry in dict.fromkeys(data.entries):
        if data.prompt_of(entry)[:len(prompt)] != tuple(prompt):
            continue
        for key in (KEYS if data.keyed else (None,)):
            path = data.file_for(entry, key)
            if path is not None and path.is_file():
                text = split_prompt_lines(path.read_text(encoding="utf-8"))[1]
                try:  # as the generated pieces are compared: rest-unreduced
                    texts[path.stem] = rest_unreduce(text)
                except Exception:  # noqa: BLE001 - a text the rewrite cannot read is compared as written
                    texts[path.stem] = text
    return texts


def features_and_texts(feature_dir: Path, text_dir: Path) -> tuple[np.ndarray, list[str]]:
    """The features [N, F] under `feature_dir` and the texts they were made from (`text_dir`)."""
    features = load_feature_folder(feature_dir)
    texts = [(text_dir / f"{name}.abc").read_text(encoding="utf-8") for name in features
             if (text_dir / f"{name}.abc").is_file()]
    return _vectors(np.concatenate(list(features.values()))), texts


def model_statistics(feature_dir: Path, text_dir: Path, reference: np.ndarray, copy_threshold: float,
                     generated: int, real_phrases: PhraseIndex | None = None) -> dict:
    """A model's row: variety, near copies (of the `reference` features), copies (of the texts in
    `real_phrases`), repeated lines and the usable share of `generated` pieces."""
    features, texts = features_and_texts(feature_dir, text_dir)
    row = {"usable": len(features) / generated if generated else math.nan,
           "variety": mean_pairwise_cosine(features), "near_copies": near_copy_share(features, reference, copy_threshold),
           "repeated_lines": repeated_lines(texts)}
    if real_phrases is not None:
        row["copies"] = copy_rate(texts, real_phrases)
    return row


def reference_statistics(features: np.ndarray, texts: list[str]) -> dict:
    """The real target pieces' own values: leave-one-out score (mean, standard error), variety and
    repeated lines."""
    scores = leave_one_out_scores(features)
    return {"mean_score": float(scores.mean()),
            "sem": float(scores.std(ddof=1) / math.sqrt(len(scores))) if len(scores) > 1 else math.nan,
            "pieces": len(scores), "variety": mean_pairwise_cosine(features), "repeated_lines": repeated_lines(texts)}
