"""RL/loop.py: K iterations of CLaMP-DPO in one command, each step skipped when already done.

Iteration k (folder `<LOOP_DIR>/iter_k`):
  1. generate NUM_SAMPLES pieces from the current weights  -> generated/candidates/{original,interleaved}/
  2. CLaMP 2 features of the interleaved (rest-unreduced) texts -> features/
  3. preference pairs (RL/data.py's logic)                  -> preferences.json
  4. DPOP training (RL/train.py's logic)                    -> dpo/weights_notagen_...pth
The weights of step 4 start iteration k+1. After the last iteration, the final model generates
and is scored once more, so the table shows the mean CLaMP 2 score of every model in the chain,
each measured with the same feature extractor, reference set and number of pieces.
Steps are marked done by a small JSON file written last (atomically), so an interrupted loop
resumes at the step it was in (generation and extraction also skip finished pieces).
"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from ..clamp2 import run_extraction, score_folder, summarize_scores
from ..evaluation import evaluate_folder, write_report
from ..generation import GenerationSettings, engine_for
from ..generation.run import interleaved_text, load_generation_model, parse_prompt, prompt_slug, resolve_device
from ..io import atomic_write_json, atomic_write_text
from ..launch import gathered, processes, wait_for_everyone
from ..paths import resolve_input_path, resolve_output_dir, resolve_weights_path
from ..settings import apply_num_threads, record_settings
from .data import CopyDetector, make_preference_file
from .stats import (PhraseIndex, features_and_texts, model_statistics, prompt_texts, real_copy_rate,
                    reference_statistics, welch)
from .train import run_dpo_training


def _done(marker: Path) -> dict | None:
    return json.loads(marker.read_text()) if marker.is_file() else None


LIMIT_REASONS = ("max_chars", "max_seconds", "max_patches")


def sampling_settings(settings):
    """The loop's own generation settings (RL/config.py's sampling and limits)."""
    return GenerationSettings(top_k=settings.top_k, top_p=settings.top_p, temperature=settings.temperature,
                              seed=settings.seed, max_chars=settings.max_chars, max_seconds=settings.max_seconds,
                              max_patches=getattr(settings, "max_patches", 0) or None,
                              batch_size=settings.generation_batch_size, bar_retries=settings.bar_retries,
                              header_retries=getattr(settings, "header_retries", 0))


LATER_SETTINGS = {"header_retries": 0}  # identity fields added later: what pieces made before them were made with


def generation_identity(settings) -> dict:
    """The settings that decide which pieces a model writes: pieces made under others are not
    reused (a batch size or a time limit changes no piece)."""
    names = ("prompt", "num_samples", "seed", "top_k", "top_p", "temperature", "max_chars", "max_patches",
             "bar_retries", "header_retries")
    return {name: getattr(settings, name, None) for name in names}


def candidate_text(result) -> str | None:
    """The raw text a generated piece takes part with, or None when it is left out.

    Finished pieces are candidates as they are. A piece stopped by the char or time limit is a
    sample of the model's output too (a weak model, such as the embedded default's, may rarely end
    a piece): it takes part with its complete lines. Other failures are left out."""
    if result.ok:
        return result.text
    if result.reason in LIMIT_REASONS:
        return result.text[: result.text.rfind("\n") + 1]
    return None


def generate_pieces(settings, weights: Path, out: Path, procs=None) -> tuple[Path, Path]:
    """Step 1: generate `num_samples` pieces with the engine; returns the candidates'
    (original dir, interleaved dir). Also written, for the evaluation: every piece's raw text in
    `original/` (finished) or `failed/`, and `summary/pieces.json` (status and reason of each),
    the layout `notagen.evaluation.read_pieces` reads. Pieces whose text cannot be rest-unreduced
    are left out of the candidates and counted. Under several processes each writes its share
    (the pieces of a one-process run: each piece's random stream follows its number)."""
    originals, interleaved = out / "candidates" / "original", out / "candidates" / "interleaved"
    marker = out / "done.json"
    weights = Path(weights).resolve()
    identity = generation_identity(settings)
    if done := _done(marker):
        if done.get("weights", str(weights)) != str(weights):  # a folder left by another chain of models
            raise RuntimeError(f"{out} holds pieces of {done['weights']}, not of {weights}: "
                               f"remove {out.parent} or choose another LOOP_DIR")
        earlier, now = {**LATER_SETTINGS, **done.get("generation", identity)}, identity
        if changed := [name for name in now if earlier.get(name) != now[name]]:
            raise RuntimeError(f"{out} holds pieces made with other settings ("
                               + ", ".join(f"{n} {earlier.get(n)!r}, now {now[n]!r}" for n in changed)
                               + "): choose another LOOP_DIR, or remove it to start over")
        return originals, interleaved
    procs = procs or loop_processes(settings)
    sampling = sampling_settings(settings)
    prompt = parse_prompt(settings.prompt)
    model = load_generation_model(weights, procs.device)
    slug = prompt_slug(prompt)
    entries = []
    mine = procs.share(settings.num_samples)
    for event in engine_for(model).stream([prompt] * len(mine), sampling, indices=mine):
        if (result := event.result) is None:
            continue
        name = f"{slug}_seed{sampling.seed}_{result.index:04d}"
        atomic_write_text(out / ("original" if result.ok else "failed") / f"{name}.abc", result.text)
        raw = candidate_text(result)
        try:
            text = None if raw is None else interleaved_text(raw)
        except Exception:  # noqa: BLE001 - unusable text is counted, the rest goes on
            text = None
        kind = "dropped" if text is None else "finished" if result.ok else "limit (complete lines kept)"
        entries.append({"index": result.index, "name": name, "status": result.status, "reason": result.reason,
                        "candidate": kind, "patches": result.patches})
        if text is not None:
            atomic_write_text(originals / f"{name}.abc", raw)
            atomic_write_text(interleaved / f"{name}.abc", text)
    entries = gathered(entries, procs)
    counts = {kind: sum(e["candidate"] == kind for e in entries)
              for kind in ("finished", "limit (complete lines kept)", "dropped")}
    if procs.rank == 0:
        atomic_write_json(out / "summary" / "pieces.json", {"weights": str(weights), "pieces": entries})
        print(f"generated {len(entries)} pieces; candidates: " + ", ".join(f"{n} {k}" for k, n in counts.items()))
    if counts["dropped"] == len(entries):
        raise RuntimeError(f"none of the {len(entries)} generated pieces is usable; see {out}")
    if procs.rank == 0:
        atomic_write_json(marker, {**counts, "weights": str(weights), "generation": identity})
    wait_for_everyone(procs)
    return originals, interleaved


def loop_processes(settings):
    """This process's place among the loop's processes (rank 0 of 1 when run alone)."""
    return processes(resolve_device(settings.device), settings.device)


def extract(settings, abc_dir: Path, feature_dir: Path) -> Path:
    """Step 2 (and the reference set): CLaMP 2 features, skipping files already done."""
    run_extraction(abc_dir, feature_dir, settings.clamp2_weights_path, settings.feature_batch_size)
    return feature_dir


def score_summary(feature_dir: Path, reference_dir: Path) -> tuple[dict, list[float]]:
    """Mean CLaMP 2 score of a model's pieces, its standard error (how far the mean may move with
    other samples of the same model) and the number of pieces; and the pieces' scores."""
    scores = score_folder(feature_dir, reference_dir)
    stats = summarize_scores(scores)
    return {"mean_score": stats["mean"], "sem": stats["sem"], "pieces": stats["count"]}, list(scores.values())


def real_phrases(settings):
    """The phrases of the real pieces a generated piece could copy: the reference pieces and, with
    COPY_SOURCE_INDEX, the training index's pieces of the loop's prompt in every key; and the share
    of the reference pieces that the rule calls a copy of another real piece."""
    reference_dir = resolve_input_path(settings.reference_dir)
    reference = {path.stem: path.read_text(encoding="utf-8") for path in sorted(reference_dir.glob("*.abc"))}
    texts = dict(reference)
    if source := getattr(settings, "copy_source_index", ""):
        texts.update(prompt_texts(resolve_input_path(source), tuple(settings.prompt.split("|"))))
    index = PhraseIndex(texts)
    return index, real_copy_rate(reference, index)


def chain_row(settings, k: int, weights: Path, iteration: Path, reference_features: Path, reference,
              copy_threshold: float, previous_scores: list[float] | None, main: bool,
              copy_index=None) -> tuple[dict, list[float]]:
    """One model's row of the table: score, the change against the previous model (Welch), the
    reward-hacking checks (`notagen.rl.stats`; `reference`: the real pieces' features [R, F];
    `copy_index`: the real pieces' `PhraseIndex`) and, when asked, the evaluation report's columns."""
    summary, scores = score_summary(iteration / "features", reference_features)
    row = {"model": k - 1, "label": "fine-tuned" if k == 1 else f"RL{k - 1}", "weights": str(weights), **summary,
           **model_statistics(iteration / "features", iteration / "generated" / "candidates" / "interleaved",
                              reference, copy_threshold, settings.num_samples, copy_index)}
    if previous_scores is not None:
        row["vs_previous"] = welch(previous_scores, scores)
    if main:
        row.update(evaluate_pieces(settings, iteration / "generated", iteration / "evaluation"))
    return row, scores


def evaluate_pieces(settings, generated_dir: Path, out: Path) -> dict:
    """clamp2/evaluate.py's report on a model's pieces (`eval_pieces` of them; 0 = skip): the
    table's validity, critic and adherence columns."""
    if getattr(settings, "eval_pieces", 0) <= 0:
        return {}
    report_path = out / "report.json"
    if not (report := _done(report_path)):
        style = settings.style_train_dir and str(resolve_input_path(settings.style_train_dir))
        written = evaluate_folder(generated_dir, resolve_input_path(settings.reference_dir),
                                  str(resolve_input_path(settings.clamp2_weights_path)), style or "",
                                  settings.eval_pieces)
        write_report(written, out)
        report = written.to_dict()
    classifier = report["style"].get("classifier", {})
    return {"usable_strict": report["validity"]["usable"], "bar_alignment": report["validity"]["bar_alignment"],
            "critic_auc": report["style"].get("critic_auc", float("nan")),
            "adherence_top5": classifier.get("adherence_top5", float("nan")), "evaluation": report["summary"]}


def train_dpo(settings, weights: Path, preference_path: Path, out: Path, procs) -> Path:
    """Step 4: DPOP from `weights` on the preference file (data parallel over the loop's
    processes); returns the new weights."""
    marker = out / "done.json"
    if not (done := _done(marker)):
        dpo_settings = SimpleNamespace(**vars(settings))
        # a resume checkpoint left by an interrupted attempt is continued, not restarted
        dpo_settings.__dict__.update(preference_path=str(preference_path), weights_path=str(weights),
                                     output_dir=str(out), load_from_checkpoint=any(out.glob("resume_*.pth")))
        done = {"weights": str(run_dpo_training(dpo_settings))}
        if procs.rank == 0:
            atomic_write_json(marker, done)
        wait_for_everyone(procs)
    return Path(done["weights"])


def plot_scores(rows: list[dict], path: Path) -> None:
    import matplotlib  # lazy: matplotlib is heavy to import, and only the table's plot needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 3.2))
    axis.errorbar([r["model"] for r in rows], [r["mean_score"] for r in rows],
                  yerr=[r["sem"] for r in rows], marker="o", capsize=4)  # +- one standard error
    axis.set_xticks([r["model"] for r in rows], [r["label"] for r in rows])
    axis.set_ylabel("mean CLaMP 2 score")
    axis.set_title("CLaMP-DPO")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def run_loop(settings) -> list[dict]:
    """K iterations (see the module docstring). Under `accelerate launch` (RL/loop.py
    `--num_processes N` starts it so) every process runs this: generation, feature extraction and
    DPOP are split across them, the ranking and the reports are rank 0's."""
    if not settings.reference_dir:
        raise ValueError("--reference_dir is required: a folder of real pieces of the target style (.abc), "
                         "e.g. corpus/reference/bach_chorales from data/build_corpus.py")
    apply_num_threads(settings)
    procs = loop_processes(settings)
    main = procs.rank == 0
    say = print if main else (lambda *_: None)
    root = resolve_output_dir(settings.loop_dir)
    if main:
        record_settings(settings, root / "settings.json")  # `--config <loop_dir>/settings.json` repeats the loop
    reference_features = extract(settings, Path(settings.reference_dir), root / "reference_features")
    wait_for_everyone(procs)
    # the real pieces once: their features and texts for the table, the near-copy threshold
    reference, reference_texts = features_and_texts(reference_features, resolve_input_path(settings.reference_dir))
    copy_threshold = CopyDetector(reference, settings.copy_threshold).threshold
    copy_index, real_copies = real_phrases(settings) if main else (None, None)
    weights = resolve_weights_path(settings.weights_path)
    rows, scores = [], None
    for k in range(1, settings.iterations + 2):
        iteration = root / f"iter_{k}"
        original_dir, interleaved_dir = generate_pieces(settings, weights, iteration / "generated", procs)
        features = extract(settings, interleaved_dir, iteration / "features")
        wait_for_everyone(procs)
        row, scores = chain_row(settings, k, weights, iteration, reference_features, reference, copy_threshold,
                                scores, main, copy_index)
        rows.append(row)
        say(f"iteration {k}: model {row['label']} mean CLaMP 2 score {row['mean_score']:.4f} "
            f"+- {row['sem']:.4f} over {row['pieces']} pieces")
        if k > settings.iterations:
            break
        preference_path = iteration / "preferences.json"
        if main and not preference_path.is_file():
            make_preference_file(SimpleNamespace(
                ground_truth_feature_dir=reference_features, generated_feature_dir=features,
                generated_original_dir=original_dir, generated_interleaved_dir=interleaved_dir,
                output_path=preference_path, portion=settings.portion,
                copy_threshold=settings.copy_threshold, rejected_usable_share=settings.rejected_usable_share))
        wait_for_everyone(procs)
        weights = train_dpo(settings, weights, preference_path, iteration / "dpo", procs)
    if main:
        own = {**reference_statistics(reference, reference_texts), "copies": real_copies}
        atomic_write_json(root / "reference.json", own)
        report_rows(rows, root, own)
    return rows


def _change(row: dict) -> str:
    change = row.get("vs_previous")
    if change is None:
        return ""
    sigmas = change["diff"] / change["se"] if change["se"] > 0 else float("nan")
    return f"{change['diff']:+.4f} ({sigmas:+.1f} SE, p {change['p']:.2g})"


def _where(weights: Path, root: Path) -> str:
    """A model's weights as the table names them: under the loop's folder (every DPOP iteration
    writes the same file name into its own iter_k/dpo/), else the file name."""
    try:
        return str(weights.resolve().relative_to(root.resolve()))
    except ValueError:
        return weights.name


def report_rows(rows: list[dict], root: Path, reference: dict | None = None) -> None:
    """scores.json, scores.png and the printed table (the real target pieces' own values under it)."""
    atomic_write_json(root / "scores.json", rows)
    plot_scores(rows, root / "scores.png")
    evaluated = all("usable_strict" in row for row in rows)
    extra_head = " usable (strict) | bar alignment | critic AUC | adherence top-5 |" if evaluated else ""
    print(f"\n| model | mean CLaMP 2 score +- standard error | change vs previous (Welch) | pieces | usable | "
          f"variety (pairwise cosine) | copies (phrases) | near copies (M3) | repeated lines |{extra_head} weights |\n"
          f"|---|---|---|---|---|---|---|---|---|{'---|---|---|---|' if evaluated else ''}---|")
    for row in rows:
        extra = (f" {row['usable_strict']:.0%} | {row['bar_alignment']:.0%} | {row['critic_auc']:.2f} | "
                 f"{row['adherence_top5']:.0%} |" if evaluated else "")
        print(f"| {row['label']} | {row['mean_score']:.4f} +- {row['sem']:.4f} | {_change(row)} | {row['pieces']} | "
              f"{row['usable']:.0%} | {row['variety']:.3f} | {row.get('copies', float('nan')):.1%} | "
              f"{row['near_copies']:.1%} | {row['repeated_lines']:.1%} |"
              f"{extra} {_where(Path(row['weights']), root)} |")
    if reference:
        print(f"real target pieces ({reference['pieces']}): leave-one-out score {reference['mean_score']:.4f} "
              f"+- {reference['sem']:.4f}, variety {reference['variety']:.3f}, "
              f"repeated lines {reference['repeated_lines']:.1%}, copies of another real piece "
              f"{reference.get('copies', float('nan')):.1%}")
    print(f"\nscores: {root / 'scores.json'}, plot: {root / 'scores.png'}")
