"""The evaluation report: every section on one folder of generated pieces against real ones, as
report.md, report.json and report.png (`clamp2/evaluate.py` is its command line).

Sections: validity (notagen.evaluation.pieces), statistics (music_statistics' histogram overlaps), with a feature
extractor the CLaMP 2 score, critic, novelty and FMD (features, frechet), and prompt adherence
(adherence): the texture each piece's header writes against its prompt's instrumentation, and with
`style_train_dir` (real pieces with prompt lines) the composer classifier and the texture rule's
ceiling on those real pieces. A section that cannot run says why in the notes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .adherence import style_classifier, texture_adherence
from .features import clamp2_scores, critic_auc, critic_features, features_of, novelty
from .frechet import fmd
from ..io import atomic_open, atomic_write_json, atomic_write_text
from .music_statistics import histogram_overlaps, pieces_values
from .pieces import EvaluatedPiece, read_pieces, validity


def _value(value) -> str:
    if isinstance(value, float):
        return "n/a" if np.isnan(value) else f"{value:.3f}"
    return str(value)


def _percent(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.0%}"


@dataclass
class Report:
    validity: dict
    statistics: dict = field(default_factory=dict)
    style: dict = field(default_factory=dict)
    adherence: dict = field(default_factory=dict)  # "texture": texture_adherence(...)
    notes: list[str] = field(default_factory=list)

    def summary_line(self) -> str:
        v, s = self.validity, self.style
        parts = [f"{v['usable']:.0%} of {v['pieces']} usable", f"bar alignment {v['bar_alignment']:.0%}"]
        if self.statistics:
            parts.append(f"statistics overlap {np.mean(list(self.statistics.values())):.2f}")
        if "clamp2_score" in s:
            parts.append(f"CLaMP 2 score {s['clamp2_score']:.3f}")
        if "fmd" in s:
            parts.append(f"FMD {s['fmd']:.4g}")
        if "critic_auc" in s:
            parts.append(f"critic AUC {s['critic_auc']:.2f}")
        if self.adherence.get("texture", {}).get("pieces"):
            parts.append(f"texture adherence {_percent(self.adherence['texture']['adherence'])}")
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
                    lines += [f"| {key}: {k} | {_value(x)} |" for k, x in value.items() if k != "by_prompt"]
                else:
                    lines.append(f"| {key} | {_value(value)} |")
        lines += self._adherence_lines()
        lines += [""] + [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"

    def _adherence_lines(self) -> list[str]:
        """One row per prompt: texture adherence (and the real pieces'), the textures written,
        composer top-1 / top-5; then the totals and the classifier's chance."""
        texture = self.adherence.get("texture")
        if not texture or not texture["by_prompt"]:
            return []
        classifier = self.style.get("classifier", {})
        composers = classifier.get("by_prompt", {})
        lines = ["", "| prompt | pieces | texture adherence | real pieces' | textures written | composer top-1 | top-5 |",
                 "|---|---|---|---|---|---|---|"]
        for prompt, entry in texture["by_prompt"].items():
            composer = composers.get(prompt, {})
            written = ", ".join(f"{label} {n}" for label, n in entry["textures"].items())
            lines.append(f"| {prompt.replace('|', ' / ')} | {entry['pieces']} | {_percent(entry['adherence']) if entry['rated'] else 'no rule'} "
                         f"| {_percent(entry.get('real_adherence'))} | {written} | {_percent(composer.get('top1'))} "
                         f"| {_percent(composer.get('top5'))} |")
        lines.append(f"| all ({texture['pieces']} rated) | | **{_percent(texture['adherence'])}** "
                     f"| {_percent(texture.get('real_adherence'))} | | **{_percent(classifier.get('adherence_top1'))}** "
                     f"| **{_percent(classifier.get('adherence_top5'))}** |")
        if "chance_top5" in classifier:
            lines += ["", f"Composer chance over {classifier['classes']} composers: top-1 "
                          f"{_percent(classifier['chance_top1'])}, top-5 {_percent(classifier['chance_top5'])}; "
                          f"the classifier's held-out accuracy on real pieces {_percent(classifier['accuracy'])}."]
        return lines

    def to_dict(self) -> dict:
        return {"validity": self.validity, "statistics": self.statistics, "style": self.style,
                "adherence": self.adherence, "notes": self.notes, "summary": self.summary_line()}


def evaluate_folder(generated_dir, reference_dir, clamp2_weights_path: str = "", style_train_dir: str = "",
                    max_pieces: int = 0) -> Report:
    """The whole report; `max_pieces` > 0 evaluates only the first that many generated pieces."""
    generated, reference = read_pieces(generated_dir), read_pieces(reference_dir)
    generated = generated[:max_pieces] if max_pieces > 0 else generated
    report = Report(validity(generated, "checking generated pieces"))
    validity(reference, "checking reference pieces")
    usable = [p for p in generated if p.usable]
    real = [p for p in reference if p.usable]
    usable_values, real_values = [], []  # each piece's statistics, read once: the overlaps and the critic share them
    if usable and real:
        usable_values = pieces_values([p.score for p in usable], "music statistics: generated")
        real_values = pieces_values([p.score for p in real], "music statistics: reference")
        report.statistics = histogram_overlaps(usable_values, real_values)
    else:
        report.notes.append("statistics skipped: no usable generated or reference piece")
    train = [p for p in read_pieces(style_train_dir) if len(p.prompt) >= 2] if style_train_dir else []
    if any(p.instrumentation for p in generated):
        report.adherence["texture"] = texture_adherence(generated, train)
    else:
        report.notes.append("texture adherence skipped: no generated piece has prompt lines")
    if not clamp2_weights_path:
        report.notes.append("CLaMP 2 score, FMD, critic, novelty and composer classifier skipped: no clamp2_weights_path")
        return report
    if not usable:
        report.notes.append("CLaMP 2 score, FMD, critic, novelty and composer classifier skipped: no usable generated piece")
        return report
    gen_features = _feature_sections(report, usable, reference, clamp2_weights_path, usable_values, real_values)
    if not style_train_dir:
        report.notes.append("composer classifier skipped: no style_train_dir (real pieces with prompt lines)")
    elif not train:
        report.notes.append(f"composer classifier skipped: no piece with prompt lines under {style_train_dir}")
    else:
        train_features = features_of([p.text for p in train], clamp2_weights_path)
        report.style["classifier"] = style_classifier(train_features, [p.composer for p in train], gen_features,
                                                      [p.composer for p in usable],
                                                      groups=[p.prompt_name for p in usable])
    return report


def _feature_sections(report: Report, usable: list[EvaluatedPiece], reference: list[EvaluatedPiece],
                      weights_path: str, usable_values: list, real_values: list) -> np.ndarray:
    """CLaMP 2 score, FMD, critic and novelty of the usable generated pieces against the reference
    (`*_values`: the statistics of the usable generated and usable reference pieces, in order);
    returns the generated pieces' features [N, F]."""
    gen_features = features_of([p.text for p in usable], weights_path)
    ref_features = features_of([p.text for p in reference], weights_path)
    report.style["clamp2_score"] = float(clamp2_scores(gen_features, ref_features).mean())
    if len(usable) >= 2 and len(reference) >= 2:
        report.style["fmd"] = fmd(gen_features, ref_features)
        report.style["fmd_pieces"] = f"{len(usable)} generated, {len(reference)} reference"
    else:
        report.notes.append("FMD skipped: it needs at least 2 usable generated and 2 reference pieces")
    real = [i for i, p in enumerate(reference) if p.usable]
    if real:
        report.style["critic_auc"] = critic_auc(critic_features(ref_features[real], real_values),
                                                critic_features(gen_features, usable_values))
    else:
        report.notes.append("critic skipped: no usable reference piece")
    report.style["novelty"] = novelty(gen_features, ref_features)
    return gen_features


def write_report(report: Report, output_dir: str | Path) -> dict[str, Path]:
    """report.md, report.json and report.png (overlaps and validity) in `output_dir`."""
    import matplotlib  # lazy: matplotlib is heavy to import, and only the written report needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
