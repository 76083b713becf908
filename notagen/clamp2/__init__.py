"""CLaMP 2 music side for NotaGen: M3 patches and encoder, features, the CLaMP 2 score, M3 training.

Modules
- `patchilizer`: `M3Patchilizer` (ABC text -> 64-char patches; different from NotaGen's).
- `sizes`: `M3Config`, presets `tiny` / `published`, sizes read off checkpoint tensors.
- `model`: `M3Encoder` (BERT over gathered patch embeddings), `M3Model` (encoder + GPT-2 char
  decoder, masked-patch loss), `Clamp2MusicModel` (encoder + mean pooling + projection).
- `checkpoint`: `load_clamp2_music` (CLaMP 2 or bare M3 files), `load_m3_model`.
- `features`: the feature of a piece, one at a time or with segments of many pieces batched.
- `extraction`: a folder of .abc -> a mirrored folder of .npy (accelerate-aware, resumable).
- `score`: feature folders, reference mean, cosine score, distribution, CSV.
- `data`: M3 pre-training dataset and collate function.
Only the music side exists here: text keys of CLaMP 2 files are ignored (no text model).
"""
from .checkpoint import load_clamp2_music, load_m3_model
from .data import M3TrainingDataset, collate_m3, m3_datasets, split_files
from .extraction import ExtractionSummary, extract_folder, list_abc_files, run_extraction
from .features import encode_for_feature, extract_feature, extract_features_batched
from .model import Clamp2MusicModel, M3Encoder, M3Model, M3Output, select_and_corrupt
from .patchilizer import M3Patchilizer
from .score import (clamp2_score, load_feature_folder, reference_mean, score_folder,
                    summarize_scores, write_scores_csv)
from .sizes import M3_PRESETS, M3Config, m3_config_from_settings, m3_config_from_state_dict, resolve_m3_config

__all__ = [
    "M3Patchilizer", "M3Config", "M3_PRESETS", "resolve_m3_config", "m3_config_from_state_dict",
    "m3_config_from_settings",
    "M3Encoder", "M3Model", "M3Output", "Clamp2MusicModel", "select_and_corrupt",
    "load_clamp2_music", "load_m3_model",
    "encode_for_feature", "extract_feature", "extract_features_batched",
    "ExtractionSummary", "extract_folder", "list_abc_files", "run_extraction",
    "clamp2_score", "load_feature_folder", "reference_mean", "score_folder", "summarize_scores",
    "write_scores_csv",
    "M3TrainingDataset", "collate_m3", "m3_datasets", "split_files",
]
