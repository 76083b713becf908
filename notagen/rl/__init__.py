"""notagen.rl: CLaMP-DPO, a module for each step of the `RL/` stage scripts.

    loss.py    DPOP, the preference loss, as a pure function of four summed log-prob tensors
    data.py    `RL/data.py`: preference pairs, ranked by CLaMP 2 score (published) or per prompt
               by a composer classifier
    train.py   `RL/train.py`: DPOP training on a preference file, on the shared training loop
    loop.py    `RL/loop.py`: K iterations in one command, each step skipped when already done
    stats.py   the chain table's statistics: Welch's change, variety, copies, repeated lines

The names below load on first use (`notagen._lazy`), so `from notagen.rl import dpop_loss` does not
load the generation engine or the training loop.
"""
from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "dpop_loss": "loss",
    **dict.fromkeys(("COPY_THRESHOLD", "Candidate", "CopyDetector", "Preferences", "bars_aligned", "build_preferences",
                     "collect_candidates", "make_preference_file", "make_prompt_preference_file", "preference_pairs",
                     "prompt_groups", "real_pieces_by_prompt", "self_play_groups", "staves_grouped"), "data"),
    **dict.fromkeys(("PreferencePairs", "collate_pairs", "disable_dropout", "dpo_weights_name", "dpop_compute_loss",
                     "encode_for_preference", "read_preferences", "reference_logps", "run_dpo_training",
                     "target_counts"), "train"),
    **dict.fromkeys(("chain_row", "evaluate_pieces", "generate_pieces", "run_loop", "sampling_settings",
                     "score_summary"), "loop"),
    **dict.fromkeys(("PhraseIndex", "copy_rate", "features_and_texts", "leave_one_out_scores", "mean_pairwise_cosine",
                     "model_statistics", "near_copy_share", "phrases", "prompt_texts", "real_copy_rate",
                     "reference_statistics", "repeated_lines", "welch"), "stats"),
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
