"""Baselines in the same framework: a flat char-level GPT-2 ("ABC GPT2") and Folk-RNN (a char LSTM).

    model = build_flat_model(matched_config("folk_rnn", "tiny"))   # NotaGen tiny's parameter count
    model(patches, masks).loss; model.sequence_logp(patches, masks)  # NotaGen's interface
    FlatEngine(model).stream(prompts, settings)                     # NotaGen's events and limits

They read the data pipeline's patch batches (flattened to characters), save and load through
`notagen.checkpoint` (the file's `config` names the model type), train with the same loop and go
through DPOP unchanged. `notagen.generation.engine_for(model)` picks the engine.
"""
from .config import FLAT_TYPES, MODEL_TYPES, FlatConfig, flat_parameter_count, matched_config, notagen_parameter_count
from .engine import FlatEngine
from .models import AbcGPT2LMHeadModel, FlatLM, FolkRNNLMHeadModel, build_flat_model, collate_flat, flat_ids

__all__ = ["FLAT_TYPES", "MODEL_TYPES", "FlatConfig", "flat_parameter_count", "matched_config",
           "notagen_parameter_count", "FlatEngine", "AbcGPT2LMHeadModel", "FlatLM", "FolkRNNLMHeadModel",
           "build_flat_model", "collate_flat", "flat_ids"]
