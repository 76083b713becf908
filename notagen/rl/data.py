"""CLaMP-DPO preference data (`RL/data.py`): rank generated pieces by CLaMP 2 score, keep the best
and the worst; or, with RANK_BY composer, per prompt by a composer classifier (`prompt_groups`).

Design choices (docs/spec/clamp2-and-dpo.md, "CLaMP-DPO, one iteration")
- Rejected = the lowest `portion` of pieces by score; chosen = walk down from the top, skipping
  pieces that are ill-formed or suspicious, until `portion` x total are chosen. The rejected set
  is not filtered: a bad piece is exactly what the model should learn to avoid. Optionally a
  share of it is the lowest of the well-formed pieces instead (`rejected_usable_share`), so
  that pairs still teach style once the model has learned to avoid broken pieces.
- Exclusion rules, each a small pure function so it can be tested on hand-made ABC:
  bars not aligned across voices; a near copy of one ground-truth piece (cosine > 0.95);
  staves of one instrument not grouped together.
- Ground-truth features are stacked and normalised once, then each candidate costs one
  matrix-vector product.
- The copy threshold is the published 0.95. A small feature extractor (a tiny M3 trained for
  minutes) can put two *different* real pieces above 0.95; `copy_threshold=0` then calibrates it:
  a piece counts as a copy only when it is closer to one ground-truth piece than any two distinct
  ground-truth pieces are to each other (never below 0.95).
"""
from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np

from ..abc import check_bar_alignment
from ..clamp2.score import clamp2_score, load_feature_folder, reference_mean
from ..data import NotaGenDataset, choose_key
from ..evaluation import check_piece, composer_classifier, composer_log_probabilities, features_of, read_pieces
from ..io import atomic_write_json

COPY_THRESHOLD = 0.95
_INSTRUMENT_NAME = re.compile(r'nm="([^"]*)"')


def bars_aligned(interleaved_text: str) -> bool:
    """Barlines, bar counts and bar durations agree across voices (after un-interleaving)."""
    try:
        return bool(check_bar_alignment(interleaved_text))
    except Exception:  # text the checker cannot even parse is not aligned
        return False


def staves_grouped(text: str) -> bool:
    """False when an instrument name `nm="..."` comes back after a different one came between."""
    names = [match.group(1) for line in text.splitlines() if line.startswith("V:")
             for match in [_INSTRUMENT_NAME.search(line)] if match]
    finished: set[str] = set()
    for previous, current in zip(names, names[1:]):
        if current != previous:
            if current in finished:
                return False
            finished.add(previous)
    return True


class CopyDetector:
    """Cosine similarity of a piece against every ground-truth piece, precomputed once.

    `threshold` 0 = calibrated (see the module docstring)."""

    def __init__(self, ground_truth_features: np.ndarray, threshold: float = COPY_THRESHOLD):
        features = np.asarray(ground_truth_features, dtype=np.float64).reshape(len(ground_truth_features), -1)
        self.unit = features / np.linalg.norm(features, axis=1, keepdims=True).clip(min=1e-12)  # [G, D]
        self.threshold = threshold if threshold > 0 else self.calibrated_threshold()

    def calibrated_threshold(self) -> float:
        """max(0.95, highest cosine between two different ground-truth pieces)."""
        if len(self.unit) < 2:
            return COPY_THRESHOLD
        similarities = self.unit @ self.unit.T  # [G, G]
        np.fill_diagonal(similarities, -np.inf)
        return max(COPY_THRESHOLD, float(similarities.max()))

    def max_similarity(self, feature: np.ndarray) -> float:
        vector = np.asarray(feature, dtype=np.float64).reshape(-1)
        return float((self.unit @ (vector / max(np.linalg.norm(vector), 1e-12))).max())

    def is_copy(self, feature: np.ndarray) -> bool:
        return self.max_similarity(feature) > self.threshold


@dataclass
class Candidate:
    name: str  # identifies the piece (e.g. its file stem)
    score: float  # CLaMP 2 score against the target style
    original_path: str  # raw generated text: what the preference file points at
    interleaved_text: str  # rest-unreduced text, for the checks
    feature: np.ndarray  # its CLaMP 2 feature


@dataclass
class Preferences:
    chosen: list[Candidate]
    rejected: list[Candidate]
    skipped: Counter = field(default_factory=Counter)  # rule -> how many top pieces it skipped
    well_formed_rejected: int = 0  # rejected pieces taken from the well-formed ones (rejected_usable_share)

    def to_json(self) -> dict:
        return {"chosen": [c.original_path for c in self.chosen],
                "rejected": [c.original_path for c in self.rejected]}

    def summary(self) -> str:
        def score_range(items):
            return f"{min(c.score for c in items):.4f}..{max(c.score for c in items):.4f}" if items else "-"
        skipped = ", ".join(f"{rule}: {count}" for rule, count in sorted(self.skipped.items())) or "none"
        return (f"{len(self.chosen)} chosen (scores {score_range(self.chosen)}), "
                f"{len(self.rejected)} rejected (scores {score_range(self.rejected)}"
                + (f", {self.well_formed_rejected} of them well-formed" if self.well_formed_rejected else "")
                + f"); skipped: {skipped}")


def exclusion_reason(candidate: Candidate, copies: CopyDetector) -> str | None:
    if not bars_aligned(candidate.interleaved_text):
        return "bars not aligned"
    if copies.is_copy(candidate.feature):
        return f"copy (cosine > {copies.threshold:.4g})"
    if not staves_grouped(candidate.interleaved_text):
        return "staves not grouped"
    return None


def build_preferences(candidates: list[Candidate], ground_truth_features: np.ndarray,
                      portion: float = 0.1, copy_threshold: float = COPY_THRESHOLD,
                      rejected_usable_share: float = 0.0) -> Preferences:
    """Rejected: the lowest `portion`; chosen: the best that pass every exclusion rule.

    With `rejected_usable_share` > 0 that share of the rejected pieces are instead the lowest-scoring
    pieces that pass the chosen rules too (and are not chosen): pairs that differ in style, not in
    broken bars, which a model that already avoids broken pieces still learns from."""
    if not candidates:
        raise ValueError("no generated pieces to rank")
    if not 0.0 <= rejected_usable_share <= 1.0:
        raise ValueError(f"rejected_usable_share is a share of the rejected pieces, between 0 and 1, "
                         f"not {rejected_usable_share}")
    ranked = sorted(candidates, key=lambda c: c.score, reverse=True)
    count = max(1, int(portion * len(ranked)))
    usable_count = int(round(rejected_usable_share * count))
    rejected = ranked[len(ranked) - (count - usable_count):]  # the bottom, unfiltered
    rejected_names = {c.name for c in rejected}
    copies = CopyDetector(ground_truth_features, copy_threshold)
    preferences = Preferences(chosen=[], rejected=rejected)
    for candidate in ranked:
        if len(preferences.chosen) == count or candidate.name in rejected_names:
            break
        reason = exclusion_reason(candidate, copies)
        if reason:
            preferences.skipped[reason] += 1
        else:
            preferences.chosen.append(candidate)
    if usable_count:
        taken = rejected_names | {c.name for c in preferences.chosen}
        lowest_first = (c for c in reversed(ranked) if c.name not in taken and exclusion_reason(c, copies) is None)
        well_formed = list(islice(lowest_first, usable_count))  # stops once enough are found
        preferences.rejected = well_formed[::-1] + rejected  # still best to worst
        preferences.well_formed_rejected = len(well_formed)
    return preferences


def preference_pairs(chosen: list, rejected: list) -> list[tuple]:
    """Every chosen x every rejected, the published pairing."""
    return [(c, r) for c in chosen for r in rejected]


def collect_candidates(original_dir: str | Path, interleaved_dir: str | Path, feature_dir: str | Path,
                       ground_truth_features: dict[str, np.ndarray]) -> tuple[list[Candidate], list[str]]:
    """Generated pieces with their score, raw path, interleaved text and feature.

    Pieces are matched by relative path (`<name>.abc` in the text folders, `<name>.npy` among the
    features). Returns (candidates, names that lack one of the three files)."""
    original_dir, interleaved_dir = Path(original_dir), Path(interleaved_dir)
    reference = reference_mean(ground_truth_features)
    candidates, incomplete = [], []
    for name, feature in load_feature_folder(feature_dir).items():
        original, interleaved = original_dir / f"{name}.abc", interleaved_dir / f"{name}.abc"
        if not (original.is_file() and interleaved.is_file()):
            incomplete.append(name)
            continue
        candidates.append(Candidate(name=name, score=clamp2_score(feature, reference),
                                    original_path=str(original),
                                    interleaved_text=interleaved.read_text(encoding="utf-8"),
                                    feature=feature))
    return candidates, incomplete


def make_preference_file(settings) -> Preferences:
    """RL/data.py: rank, select, write `{"chosen": [...], "rejected": [...]}`, print what happened."""
    ground_truth = load_feature_folder(settings.ground_truth_feature_dir)  # loaded once
    if not ground_truth:
        raise ValueError(f"no ground-truth features (.npy) under {settings.ground_truth_feature_dir}")
    candidates, incomplete = collect_candidates(settings.generated_original_dir,
                                                settings.generated_interleaved_dir,
                                                settings.generated_feature_dir, ground_truth)
    if not candidates and not incomplete:
        raise ValueError(f"no generated features (.npy) under {settings.generated_feature_dir}: "
                         f"extract them from the generated pieces first (clamp2/extract_clamp2.py)")
    if not candidates:
        raise ValueError(f"none of the {len(incomplete)} features under {settings.generated_feature_dir} has its "
                         f"text in both {settings.generated_original_dir} and {settings.generated_interleaved_dir}, "
                         f"e.g. {incomplete[0]}.abc")
    if incomplete:
        print(f"warning: {len(incomplete)} features have no matching original/interleaved text, "
              f"e.g. {incomplete[0]}")
    preferences = build_preferences(candidates, np.stack([v.reshape(-1) for v in ground_truth.values()]),
                                    settings.portion, settings.copy_threshold,
                                    settings.rejected_usable_share)
    if not preferences.chosen:
        raise ValueError(f"no generated piece passes the chosen-set rules ({preferences.summary()}); "
                         f"nothing to prefer: generate more pieces or use a stronger model")
    atomic_write_json(settings.output_path, preferences.to_json())
    print(f"{len(candidates)} pieces ranked -> {settings.output_path}: {preferences.summary()}")
    return preferences


# -- preference groups per prompt, ranked by a composer classifier -----------------------------------
def prompt_groups(prompts: list[str], usable: list[bool], log_probs, portion: float = 0.25,
                  margin: float = 1.0, choosable: list[bool] | None = None) -> list[dict]:
    """CLaMP-DPO's selection done per prompt, with a composer classifier as the critic: indices of
    the chosen and rejected pieces of each prompt, `[{"name": prompt, "chosen": [i], "rejected": [i]}]`.

    With n pieces of a prompt, k = max(1, round(portion * n)):
    - chosen: the k usable pieces with the highest log p(the prompt's composer);
    - rejected: up to ceil(k / 2) pieces that are not usable, then the usable pieces the classifier
      finds least like the composer (at least `margin` nats below every chosen one), then more
      unusable ones, k in all: the model learns to write valid music *and* to follow its prompt.
    A NaN log-probability (a composer the classifier does not know) ranks by usability alone.
    `choosable` (default: every usable piece) limits who may be chosen, e.g. to the pieces whose
    composer the classifier ranks in its top 5. A prompt without a chosen or a rejected piece
    makes no group."""
    log_probs = np.asarray(log_probs, dtype=np.float64)
    groups = []
    for prompt in dict.fromkeys(prompts):
        members = [i for i, p in enumerate(prompts) if p == prompt]
        k = max(1, round(portion * len(members)))
        good = sorted((i for i in members if usable[i]), key=lambda i: -np.nan_to_num(log_probs[i], nan=0.0))
        chosen = [i for i in good if choosable is None or choosable[i]][:k]
        if not chosen:
            continue
        failed = [i for i in members if not usable[i]]
        floor = min(log_probs[i] for i in chosen) - margin  # NaN when the composer is unknown: none below
        unlike = sorted((i for i in good if i not in chosen and log_probs[i] < floor), key=lambda i: log_probs[i])
        if rejected := _rejected(failed, unlike, k):
            groups.append({"name": prompt, "chosen": chosen, "rejected": rejected})
    return groups


def _rejected(failed: list[int], unlike: list[int], k: int) -> list[int]:
    """k pieces to reject: up to ceil(k / 2) broken ones, then the unlike ones, then more broken."""
    half = -(-k // 2)
    rejected = (failed[:half] + unlike)[:k]
    return rejected + [i for i in failed[half:] if i not in rejected][:k - len(rejected)]


def self_play_groups(prompts: list[str], usable: list[bool], log_probs, real: dict[str, list[str]],
                     portion: float = 0.25) -> list[dict]:
    """CLaMP-DPO per prompt with real music on the chosen side (self-play, as in SPIN): for each
    prompt with n generated pieces and some real ones, k = max(1, round(portion * n));
    chosen: the first k of its real pieces (`real[prompt]`, paths, in the order given);
    rejected: k of the model's own pieces of that prompt, up to ceil(k / 2) unusable ones, then the
    usable ones the classifier finds least like the composer (no margin: the real pieces are the
    target), then more unusable ones. Returns `[{"name", "chosen": [path], "rejected": [i]}]`;
    a prompt without real pieces makes no group."""
    log_probs = np.asarray(log_probs, dtype=np.float64)
    groups = []
    for prompt in dict.fromkeys(prompts):
        members = [i for i, p in enumerate(prompts) if p == prompt]
        k = max(1, round(portion * len(members)))
        if not (chosen := list(real.get(prompt, []))[:k]):
            continue
        failed = [i for i in members if not usable[i]]
        unlike = sorted((i for i in members if usable[i]), key=lambda i: np.nan_to_num(log_probs[i], nan=0.0))
        groups.append({"name": prompt, "chosen": chosen, "rejected": _rejected(failed, unlike, k)})
    return groups


def real_pieces_by_prompt(index_path: str | Path, seed: int = 0) -> dict[str, list[str]]:
    """The real pieces of a fine-tuning index, `{"period|composer|instrumentation": [path, ...]}`,
    each prompt's in a seeded random order, each piece in a key drawn as fine-tuning draws it
    ("near" its own); pieces without prompt lines are left out."""
    data = NotaGenDataset(index_path, key_mode="near", seed=seed)
    rng = random.Random(seed)
    real: dict[str, list[str]] = {}
    for entry in data.entries:
        if prompt := data.prompt_of(entry):
            key = choose_key(entry.key, data.key_mode, rng) if data.keyed else None
            if (path := data.file_for(entry, key)) is not None and path.is_file():
                real.setdefault("|".join(prompt), []).append(str(path))
    for paths in real.values():
        rng.shuffle(paths)
    return real


def make_prompt_preference_file(settings) -> list[dict]:
    """RL/data.py with RANK_BY composer: the pieces of an inference output folder (all prompts),
    ranked per prompt by the evaluation's composer classifier; writes `{"groups": [...]}`."""
    if not settings.style_train_dir or not settings.clamp2_weights_path:
        raise ValueError("RANK_BY composer needs STYLE_TRAIN_DIR (real pieces with prompt lines) and "
                         "CLAMP2_WEIGHTS_PATH (the feature extractor of the classifier)")
    pieces = [check_piece(p) for p in read_pieces(settings.generated_original_dir)]
    train = [p for p in read_pieces(settings.style_train_dir) if len(p.prompt) >= 2]
    classifier = composer_classifier(features_of([p.text for p in train], settings.clamp2_weights_path),
                                     [p.composer for p in train])
    if classifier is None:
        raise ValueError(f"{settings.style_train_dir} needs real pieces of at least two composers (two each)")
    usable = [i for i, p in enumerate(pieces) if p.usable]
    log_probs, ranks = np.full(len(pieces), np.nan), np.full(len(pieces), np.nan)
    if usable:
        log_probs[usable], ranks[usable] = composer_log_probabilities(
            classifier, features_of([pieces[i].text for i in usable], settings.clamp2_weights_path),
            [pieces[i].composer for i in usable])
    # CHOSEN_TOP > 0: only a piece whose composer the classifier ranks among its first CHOSEN_TOP
    # may be chosen (a composer it does not know: any usable piece)
    choosable = [p.usable and (settings.chosen_top <= 0 or not ranks[i] >= settings.chosen_top)
                 for i, p in enumerate(pieces)]
    prompts = ["|".join(p.prompt[:3]) for p in pieces]  # a piece may write more "%" lines after its prompt
    if settings.chosen_index_path:  # self-play: real pieces chosen, the model's own rejected
        groups = self_play_groups(prompts, [p.usable for p in pieces], log_probs,
                                  real_pieces_by_prompt(settings.chosen_index_path, settings.seed), settings.portion)
        if not groups:
            raise ValueError(f"{settings.chosen_index_path} has real pieces of none of the prompts under "
                             f"{settings.generated_original_dir}")
    else:
        groups = prompt_groups(prompts, [p.usable for p in pieces], log_probs, settings.portion, choosable=choosable)
        for group in groups:
            group["chosen"] = [pieces[i].path for i in group["chosen"]]
        if not groups:
            raise ValueError(f"no prompt under {settings.generated_original_dir} has both a usable piece and one "
                             f"to reject: generate more pieces")
    atomic_write_json(settings.output_path, {"groups": [
        {"name": g["name"], "chosen": g["chosen"], "rejected": [pieces[i].path for i in g["rejected"]]}
        for g in groups]})
    pairs = sum(len(g["chosen"]) * len(g["rejected"]) for g in groups)
    print(f"{len(pieces)} pieces of {len(set(prompts))} prompts ({len(usable)} usable), ranked by "
          f"{len(classifier.classes_)}-composer classifier -> {settings.output_path}: {len(groups)} groups, {pairs} pairs")
    return groups
