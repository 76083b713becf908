"""Prompt adherence: is a piece written for a prompt what the prompt asks for?

- Composer: a logistic regression of the composer from CLaMP 2 / M3 features, trained on real
  pieces with prompt lines (`style_train_dir`); its held-out accuracy on real pieces (the ceiling),
  chance (the floor: the largest composer's share; top-5 chance 5 / composers), and the share of
  generated pieces whose prompt's composer it ranks first (top-1) or among its first five (top-5).
- Texture: the instrumentation the piece's own header writes (notagen.texture: four singers for a
  chorale, a singer and a piano for an art song, ...), for every generated piece whose prompt's
  instrumentation has a rule, and the same rule on the real pieces of `style_train_dir` (the ceiling).
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from ..texture import texture


def tested_pieces(labels: list[str]) -> list[int]:
    """The pieces whose composer has at least two (a class needs two pieces to be tested)."""
    counts = Counter(labels)
    return [i for i, label in enumerate(labels) if counts[label] >= 2]


def composer_classifier(train_features: np.ndarray, labels: list[str]):
    """Logistic regression (standardised features) on the composers with at least two real pieces
    (a class needs two to be tested); None when fewer than two such composers."""
    from sklearn.linear_model import LogisticRegression  # lazy: scikit-learn is heavy; only classifiers need it
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
    from scipy.special import log_softmax  # lazy: only with a classifier (scikit-learn's)

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
                     prompts: list[str] | None = None, seed: int = 0, groups: list[str] | None = None) -> dict:
    """Composer classifier: held-out accuracy on real pieces (5-fold), chance, and prompt adherence
    (`prompts`: each generated piece's composer; `groups`: each one's whole prompt, for per-prompt
    shares under "by_prompt")."""
    from sklearn.base import clone  # lazy: scikit-learn is heavy; only classifiers need it
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
        top1 = {i: ranked[i][0] == prompts[i] for i in known}
        top5 = {i: prompts[i] in ranked[i][:5] for i in known}
        result["adherence_pieces"] = len(known)
        result["adherence_top1"] = _share(top1.values())
        result["adherence_top5"] = _share(top5.values())
        result["chance_top1"] = 1 / len(classes)
        result["chance_top5"] = min(1.0, 5 / len(classes))
        if groups:
            result["by_prompt"] = {group: {"pieces": len(members), "top1": _share(top1[i] for i in members),
                                           "top5": _share(top5[i] for i in members)}
                                   for group in dict.fromkeys(groups)
                                   for members in [[i for i in known if groups[i] == group]]}
    return result


def _share(flags) -> float:
    """Share of true flags; NaN for none."""
    flags = list(flags)
    return float(np.mean(flags)) if flags else float("nan")


def texture_shares(pieces) -> dict:
    """Texture adherence of pieces with prompt lines (notagen.texture): the pieces rated (their
    instrumentation has a rule) and the share that write the texture asked for; per prompt, the
    same and the textures written (label -> pieces)."""
    by_prompt: dict[str, dict] = {}
    rated = []
    for piece in pieces:
        if not piece.instrumentation:
            continue
        label, adheres = texture(piece.text, piece.instrumentation)
        entry = by_prompt.setdefault(piece.prompt_name, {"pieces": 0, "rated": [], "textures": Counter()})
        entry["pieces"] += 1
        entry["textures"][label] += 1
        if adheres is not None:
            entry["rated"].append(adheres)
            rated.append(adheres)
    return {"pieces": len(rated), "adherence": _share(rated),
            "by_prompt": {prompt: {"pieces": e["pieces"], "rated": len(e["rated"]), "adherence": _share(e["rated"]),
                                   "textures": dict(e["textures"].most_common())}
                          for prompt, e in sorted(by_prompt.items())}}


def texture_adherence(generated, real=None) -> dict:
    """`texture_shares` of the generated pieces, with the real pieces' shares beside them (the
    ceiling: real scores whose part names do not say what they are fail the rule too)."""
    result = texture_shares(generated)
    if real:
        ceiling = texture_shares(real)
        result["real_pieces"], result["real_adherence"] = ceiling["pieces"], ceiling["adherence"]
        for prompt, entry in result["by_prompt"].items():
            entry["real_adherence"] = ceiling["by_prompt"].get(prompt, {}).get("adherence", float("nan"))
    return result
