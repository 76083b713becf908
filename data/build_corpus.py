"""Build the embedded corpus: pre-training, fine-tuning (with prompt lines) and reference sets from
the scores that ship with music21 and the OpenScore Lieder and String Quartets corpora in
data/openscore/. Nothing is downloaded; a rebuild only does what is missing.

Writes corpus/pretrain, corpus/finetune (+ prompts.json), corpus/reference/{bach_chorales,
palestrina,art_songs,string_quartets} and corpus/summary.json, then prints the piece counts.
Settings: corpus_config.py.
"""
import sys
from pathlib import Path

from notagen.abc.corpus import build_corpus, summary_lines  # noqa: E402
from notagen.paths import resolve_input_path, resolve_output_dir  # noqa: E402
from notagen.settings import parse_settings, record_settings, run_stage  # noqa: E402

def main(argv=None) -> int:
    cfg = parse_settings(Path(__file__).with_name("corpus_config.py"), argv, description=__doc__)
    focus = tuple(field.strip() for field in cfg.focus_prompt.split("|")) if cfg.focus_prompt.strip() else None
    if focus is not None and (len(focus) != 3 or not all(focus)):
        raise SystemExit(f"--focus_prompt must be period|composer|instrumentation, got {cfg.focus_prompt!r}")
    summary = build_corpus(resolve_output_dir(cfg.out_dir), max_pieces=cfg.max_pieces,
                           reference_pieces=cfg.reference_pieces, eval_split=cfg.eval_split,
                           seed=cfg.seed, workers=cfg.workers, timeout=cfg.timeout,
                           focus=focus, focus_pieces=cfg.focus_pieces, pretrain=cfg.pretrain_set,
                           openscore_folder=resolve_input_path(cfg.openscore_folder) if cfg.openscore_folder.strip() else None,
                           min_prompt_pieces=cfg.min_prompt_pieces)
    record_settings(cfg, resolve_output_dir(cfg.out_dir) / "settings.json")  # `--config` repeats the build
    print("\n".join(summary_lines(summary)))
    return 0 if (summary["pretrain"]["pieces"] or not cfg.pretrain_set) and summary["finetune"]["pieces"] else 1

if __name__ == "__main__":
    sys.exit(run_stage(main))
