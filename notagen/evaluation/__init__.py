"""Measure the music, not only the loss: one report on a folder of generated pieces against real ones.

Sections, a module each (so tests check them on hand-made cases):
- `pieces`: reading pieces and their validity (finished, converted to MusicXML, parsed by music21,
  usable: parts aligned bar by bar), the per-bar alignment rate and the failure reasons;
- `music_statistics`: pitch-class, pitch-range, melodic-interval, note-duration, notes-per-bar and
  polyphony histograms against the reference, each compared by its overlap area;
- `features`: CLaMP 2 / M3 features, the CLaMP 2 score, a critic (real vs generated, ROC AUC under
  cross-validation with near copies in one fold) and novelty (nearest reference piece, copies);
- `frechet`: Fréchet Music Distance between Gaussian fits of generated and reference features;
- `adherence`: does a piece follow its prompt? The texture its own header writes (notagen.texture)
  and a composer classifier trained on real pieces with prompt lines (top-1 / top-5 against chance);
- `report`: the `Report`, `evaluate_folder` (every section) and `write_report` (report.md/.json/.png).

The names below are this package's interface; `clamp2/evaluate.py` is its command line.
"""
from .adherence import (composer_classifier, composer_log_probabilities, style_classifier, tested_pieces,
                        texture_adherence, texture_shares)
from .features import (COPY_COSINE, CRITIC_C, DUPLICATE_COSINE, clamp2_scores, critic_auc, critic_features,
                       duplicate_groups, features_of, novelty, unit_rows)
from .frechet import fmd, frechet_distance, gaussian_fit
from .music_statistics import (STATISTICS, histogram_overlaps, histograms, overlap, piece_values, pieces_values,
                               statistics_vector)
from .pieces import MIN_MEASURES, EvaluatedPiece, check_piece, read_pieces, validity
from .report import Report, evaluate_folder, write_report

__all__ = ["COPY_COSINE", "CRITIC_C", "DUPLICATE_COSINE", "MIN_MEASURES", "STATISTICS", "EvaluatedPiece", "Report",
           "check_piece", "clamp2_scores", "composer_classifier", "composer_log_probabilities", "critic_auc",
           "critic_features", "duplicate_groups", "evaluate_folder", "features_of", "fmd", "frechet_distance",
           "gaussian_fit", "histogram_overlaps", "histograms", "novelty", "overlap", "piece_values", "pieces_values",
           "read_pieces", "statistics_vector", "style_classifier", "tested_pieces", "texture_adherence",
           "texture_shares", "unit_rows", "validity", "write_report"]
