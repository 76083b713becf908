"""Measure the music, not only the loss: one report on a folder of generated pieces against real ones.

Sections (each a function of its own, so tests check them on hand-made cases)
- validity: share of pieces that finished, convert to MusicXML, parse in music21 and are aligned
  (every part the same number of measures, at least 4, every inner measure of equal duration in all
  parts), the per-bar alignment rate, and the failure reasons with counts;
- statistics against the reference, from music21 scores: pitch-class, pitch-range, melodic-interval,
  note-duration, notes-per-bar and polyphony distributions, each compared by its overlap area
  (sum of the bin-wise minimum of the two normalised histograms: 1 = the same distribution);
- style: the CLaMP 2 score (cosine of each piece's feature to the reference mean feature);
- a critic: logistic regression telling real from generated pieces by their CLaMP 2 features and
  statistics histograms, ROC AUC under 5-fold cross-validation grouped by piece, a group being a
  piece and its near copies (cosine > 0.999), so that two folders of the same pieces score ~0.5;
- a style classifier (optional, `style_train_dir`: real pieces with prompt lines): logistic
  regression of the composer from the features, held-out accuracy on real pieces (the ceiling) and
  chance (the floor), and prompt adherence of the generated pieces (top-1 and top-5: is the piece
  written for "Bach" classified as Bach?);
- novelty: each piece's nearest reference piece by feature cosine; pieces above COPY_COSINE are
  flagged as copies.

Pieces are the `.abc` files under a folder; in an inference output folder (with `summary/`) the
raw texts under `original/` and `failed/` are read, and the summary gives which ones finished.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

COPY_COSINE = 0.99  # a generated piece this close to a reference piece is flagged as a copy
DUPLICATE_COSINE = 0.999  # pieces this close fall into one cross-validation group
MIN_MEASURES = 4
CRITIC_C = 1.0  # inverse L2 strength of the critic (standardised features; 1 separates scrambled chorales at AUC 0.98, 0.1 at 0.93)


@dataclass
class Piece:
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


def read_pieces(folder: str | Path) -> list[Piece]:
    """The pieces of a folder of .abc files, or of an inference output folder (see module notes)."""
    from .abc import read_abc_file, split_prompt_lines

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
            pieces.append(Piece(path.stem, text, finished.get(path.stem, True), tuple(l[1:] for l in prompt), path=str(path)))
    if not pieces:
        raise FileNotFoundError(f"no .abc pieces under {folder}")
    return sorted(pieces, key=lambda piece: piece.name)  # finished and failed ones interleaved, by index


# -- validity --------------------------------------------------------------------------------------
def check_piece(piece: Piece) -> Piece:
    """Convert and parse one piece; sets its score, bar counts and (when not usable) its reason."""
    from .abc import abc_to_musicxml
    from .abc.convert import musicxml_to_score

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


def validity(pieces: list[Piece]) -> dict:
    for piece in pieces:
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


# -- statistics ------------------------------------------------------------------------------------
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


def histograms(scores) -> dict[str, np.ndarray]:
    """Normalised histograms of each statistic over all notes of `scores` pooled."""
    pooled = {name: [] for name in STATISTICS}
    for score in scores:
        for name, values in piece_values(score).items():
            pooled[name] += values
    result = {}
    for name, bins in STATISTICS.items():
        counts, _ = np.histogram(np.clip(pooled[name], bins[0], bins[-1]), bins=bins)
        result[name] = counts / counts.sum() if counts.sum() else counts.astype(float)
    return result


def statistics_vector(score) -> np.ndarray:
    """One piece's histograms of every statistic, end to end: the critic's symbolic features."""
    return np.concatenate(list(histograms([score]).values()))


def overlap(p: np.ndarray, q: np.ndarray) -> float:
    """Overlapping area of two normalised histograms: 1 identical, 0 disjoint."""
    return float(np.minimum(p, q).sum())


def statistics(generated_scores, reference_scores) -> dict[str, float]:
    generated, reference = histograms(generated_scores), histograms(reference_scores)
    return {name: overlap(generated[name], reference[name]) for name in STATISTICS}


# -- features: CLaMP 2 score, critic, novelty, classifier -------------------------------------------
def _extractor(weights_path: str):
    """(model, patchilizer) of a feature extractor, loaded once per report (it is asked three
    times); a file rewritten since is loaded again."""
    stat = Path(weights_path).stat()
    return _load_extractor(weights_path, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=2)
def _load_extractor(weights_path: str, mtime_ns: int, size: int):
    from .clamp2 import M3Patchilizer, load_clamp2_music

    model = load_clamp2_music(weights_path)
    return model, M3Patchilizer(model.config.patch_size)


def features_of(texts: list[str], weights_path: str | Path, batch_size: int = 16) -> np.ndarray:
    """CLaMP 2 / M3 features [N, F] of texts (prompt lines and stream prefixes are dropped first)."""
    from .abc import full_interleaved, split_prompt_lines, strip_stream_prefixes
    from .abc.text import is_interleaved
    from .clamp2 import extract_features_batched

    model, patchilizer = _extractor(str(weights_path))
    cleaned = []
    for text in texts:
        body = split_prompt_lines(text)[1]
        try:
            cleaned.append(full_interleaved(body) if is_interleaved(body) else strip_stream_prefixes(body))
        except ValueError:
            cleaned.append(strip_stream_prefixes(body))
    return np.concatenate(extract_features_batched(model, patchilizer, cleaned, batch_size), axis=0)


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (zero rows stay zero)."""
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def clamp2_scores(generated: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return unit_rows(generated) @ unit_rows(reference.mean(axis=0, keepdims=True))[0]


def duplicate_groups(features: np.ndarray, threshold: float = DUPLICATE_COSINE) -> np.ndarray:
    """A group id per row: rows with cosine above `threshold` (transitively) share one."""
    unit = unit_rows(features)
    close = unit @ unit.T > threshold
    groups = -np.ones(len(features), dtype=int)
    for row in range(len(features)):
        if groups[row] < 0:
            stack, groups[row] = [row], row
            while stack:
                for other in np.flatnonzero(close[stack.pop()] & (groups < 0)):
                    groups[other] = row
                    stack.append(other)
    return groups


def critic_features(features: np.ndarray, scores) -> np.ndarray:
    """What the critic sees of each piece: its CLaMP 2 feature and its statistics histograms."""
    return np.hstack([features, np.stack([statistics_vector(score) for score in scores])])


def critic_auc(real: np.ndarray, generated: np.ndarray, folds: int = 5, seed: int = 0) -> float:
    """ROC AUC of real-vs-generated logistic regression, cross-validated with near copies kept in one fold."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.concatenate([real, generated])
    y = np.r_[np.ones(len(real)), np.zeros(len(generated))]
    groups = duplicate_groups(x)
    folds = min(folds, len(set(groups)))
    if folds < 2 or len(real) < 2 or len(generated) < 2:
        return float("nan")
    scores = np.zeros(len(x))
    order = np.random.default_rng(seed).permutation(len(x))  # GroupKFold is deterministic: shuffle rows once
    for train, test in GroupKFold(n_splits=folds).split(x[order], y[order], groups[order]):
        train, test = order[train], order[test]
        if len(set(y[train])) < 2:
            scores[test] = 0.5
            continue
        critic = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=CRITIC_C)).fit(x[train], y[train])
        scores[test] = critic.predict_proba(x[test])[:, 1]
    return float(roc_auc_score(y, scores))


def novelty(generated: np.ndarray, reference: np.ndarray, threshold: float = COPY_COSINE) -> dict:
    nearest = (unit_rows(generated) @ unit_rows(reference).T).max(axis=1)
    return {"mean_nearest_cosine": float(nearest.mean()), "max_nearest_cosine": float(nearest.max()),
            "copies": int((nearest > threshold).sum()), "copy_threshold": threshold}


def tested_pieces(labels: list[str]) -> list[int]:
    """The pieces whose composer has at least two (a class needs two pieces to be tested)."""
    counts = Counter(labels)
    return [i for i, label in enumerate(labels) if counts[label] >= 2]


def composer_classifier(train_features: np.ndarray, labels: list[str]):
    """Logistic regression (standardised features) on the composers with at least two real pieces
    (a class needs two to be tested); None when fewer than two such composers."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    keep = tested_pieces(labels)
    y = [labels[i] for i in keep]
    if len(set(y)) < 2:
        return None
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=1.0)).fit(train_features[keep], y)


def composer_log_probabilities(classifier, features: np.ndarray, composers: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per piece, log p(its own composer) and that composer's rank among the classifier's choices
    (0 = its first); NaN where the classifier does not know the composer. From the linear scores:
    the classifier is so sure that most probabilities round to 0 or 1."""
    from scipy.special import log_softmax

    classes = list(classifier.classes_)
    scores = classifier.decision_function(features)
    if scores.ndim == 1:  # two composers: one score, p(second) = sigmoid(score)
        scores = np.column_stack([np.zeros_like(scores), scores])
    log_p = log_softmax(scores, axis=1)  # [pieces, classes]
    own = np.full(len(composers), np.nan)
    rank = np.full(len(composers), np.nan)
    for i, composer in enumerate(composers):
        if composer in classes:
            own[i] = log_p[i, classes.index(composer)]
            rank[i] = np.sum(log_p[i] > own[i])
    return own, rank


def style_classifier(train_features: np.ndarray, labels: list[str], generated: np.ndarray | None = None,
                     prompts: list[str] | None = None, seed: int = 0) -> dict:
    """Composer classifier: held-out accuracy on real pieces (5-fold), chance, and prompt adherence."""
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    keep = tested_pieces(labels)
    x, y = train_features[keep], np.array([labels[i] for i in keep])
    if len(y) == 0:
        return {"classes": 0, "train_pieces": 0, "chance": float("nan"), "accuracy": float("nan")}
    classes = sorted(set(y))
    result = {"classes": len(classes), "train_pieces": len(y), "chance": max(Counter(y).values()) / len(y)}
    model = composer_classifier(x, list(y))
    if model is None:
        return {**result, "accuracy": float("nan")}
    folds = StratifiedKFold(n_splits=min(5, min(Counter(y).values())), shuffle=True, random_state=seed)
    result["accuracy"] = float((cross_val_predict(clone(model), x, y, cv=folds) == y).mean())
    if generated is not None and prompts:
        probabilities = model.predict_proba(generated)
        ranked = [[model.classes_[i] for i in np.argsort(-row)] for row in probabilities]
        known = [i for i, prompt in enumerate(prompts) if prompt in classes]
        result["adherence_pieces"] = len(known)
        result["adherence_top1"] = float(np.mean([ranked[i][0] == prompts[i] for i in known])) if known else float("nan")
        result["adherence_top5"] = float(np.mean([prompts[i] in ranked[i][:5] for i in known])) if known else float("nan")
        result["chance_top5"] = min(1.0, 5 / len(classes))
    return result


# -- the report ------------------------------------------------------------------------------------
@dataclass
class Report:
    validity: dict
    statistics: dict = field(default_factory=dict)
    style: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def summary_line(self) -> str:
        v, s = self.validity, self.style
        parts = [f"{v['usable']:.0%} of {v['pieces']} usable", f"bar alignment {v['bar_alignment']:.0%}"]
        if self.statistics:
            parts.append(f"statistics overlap {np.mean(list(self.statistics.values())):.2f}")
        if "clamp2_score" in s:
            parts.append(f"CLaMP 2 score {s['clamp2_score']:.3f}")
        if "critic_auc" in s:
            parts.append(f"critic AUC {s['critic_auc']:.2f}")
        if "classifier" in s and "adherence_top5" in s["classifier"]:
            parts.append(f"composer adherence top-5 {s['classifier']['adherence_top5']:.0%}")
        return "evaluation: " + ", ".join(parts)

    def markdown(self) -> str:
        v = self.validity
        lines = ["| validity | share |", "|---|---|"]
        lines += [f"| {key} | {v[key]:.1%} |" for key in ("finished", "converted", "parsed", "usable", "bar_alignment")]
        lines += ["", "| failure reason | pieces |", "|---|---|"] + [f"| {r} | {n} |" for r, n in v["reasons"].items()]
        if self.statistics:
            lines += ["", "| statistic vs reference | overlap |", "|---|---|"]
            lines += [f"| {name} | {value:.3f} |" for name, value in self.statistics.items()]
        if self.style:
            lines += ["", "| style | value |", "|---|---|"]
            for key, value in self.style.items():
                if isinstance(value, dict):
                    lines += [f"| {key}: {k} | {x:.3f} |" if isinstance(x, float) else f"| {key}: {k} | {x} |"
                              for k, x in value.items()]
                else:
                    lines.append(f"| {key} | {value:.3f} |" if isinstance(value, float) else f"| {key} | {value} |")
        lines += [""] + [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict:
        return {"validity": self.validity, "statistics": self.statistics, "style": self.style, "notes": self.notes,
                "summary": self.summary_line()}


def evaluate(generated_dir, reference_dir, clamp2_weights_path: str = "", style_train_dir: str = "",
             max_pieces: int = 0) -> Report:
    """The whole report; `max_pieces` > 0 evaluates only the first that many generated pieces."""
    generated, reference = read_pieces(generated_dir), read_pieces(reference_dir)
    generated = generated[:max_pieces] if max_pieces > 0 else generated
    report = Report(validity(generated))
    validity(reference)
    usable = [p for p in generated if p.usable]
    real = [p for p in reference if p.usable]
    if usable and real:
        report.statistics = statistics([p.score for p in usable], [p.score for p in real])
    else:
        report.notes.append("statistics skipped: no usable generated or reference piece")
    if not clamp2_weights_path:
        report.notes.append("style, critic and novelty skipped: no clamp2_weights_path")
        return report
    if not usable:
        report.notes.append("style, critic and novelty skipped: no usable generated piece")
        return report
    gen_features = features_of([p.text for p in usable], clamp2_weights_path)
    ref_features = features_of([p.text for p in reference], clamp2_weights_path)
    report.style["clamp2_score"] = float(clamp2_scores(gen_features, ref_features).mean())
    real_features = ref_features[[i for i, p in enumerate(reference) if p.usable]]
    if real:
        report.style["critic_auc"] = critic_auc(critic_features(real_features, [p.score for p in real]),
                                                critic_features(gen_features, [p.score for p in usable]))
    else:
        report.notes.append("critic skipped: no usable reference piece")
    report.style["novelty"] = novelty(gen_features, ref_features)
    if style_train_dir:
        train = [p for p in read_pieces(style_train_dir) if len(p.prompt) >= 2]
        if train:
            train_features = features_of([p.text for p in train], clamp2_weights_path)
            prompts = [p.composer for p in usable]
            report.style["classifier"] = style_classifier(train_features, [p.composer for p in train],
                                                          gen_features, prompts)
        else:
            report.notes.append(f"classifier skipped: no piece with prompt lines under {style_train_dir}")
    else:
        report.notes.append("classifier skipped: no style_train_dir (real pieces with prompt lines)")
    return report


def write_report(report: Report, output_dir: str | Path) -> dict[str, Path]:
    """report.md, report.json and report.png (overlaps and validity) in `output_dir`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .io import atomic_open, atomic_write_json, atomic_write_text

    out = Path(output_dir)
    paths = {"markdown": out / "report.md", "json": out / "report.json", "plot": out / "report.png"}
    atomic_write_text(paths["markdown"], f"# Evaluation\n\n{report.summary_line()}\n\n{report.markdown()}")
    atomic_write_json(paths["json"], report.to_dict())
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    keys = ["finished", "converted", "parsed", "usable", "bar_alignment"]
    left.bar(keys, [report.validity[k] for k in keys], color="#4c72b0")
    left.set_ylim(0, 1)
    left.set_title("validity")
    left.tick_params(axis="x", rotation=30)
    if report.statistics:
        right.bar(list(report.statistics), list(report.statistics.values()), color="#55a868")
    right.set_ylim(0, 1)
    right.set_title("overlap with the reference")
    right.tick_params(axis="x", rotation=30)
    figure.tight_layout()
    with atomic_open(paths["plot"], "wb") as handle:
        figure.savefig(handle, format="png", dpi=110)
    plt.close(figure)
    return paths
