"""notagen: the shared library behind every NotaGen stage (data, training, inference, CLaMP 2, RL).

Stage folders (`pretrain/`, `finetune/`, `inference/`, `clamp2/`, `RL/`, `data/`, `gradio/`) hold only a
`config.py` and thin scripts; all logic lives here. Heavy modules (torch, transformers, music21)
are imported on first use, so light tools such as the data scripts start quickly.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "NotaGenConfig": "config", "PRESETS": "config", "resolve_config": "config",
    "config_from_state_dict": "config", "weights_file_name": "config",
    "Patchilizer": "patchilizer",
    "NotaGenLMHeadModel": "model", "build_model": "model",
    "load_model": "checkpoint", "save_checkpoint": "checkpoint", "read_checkpoint": "checkpoint",
    "CheckpointError": "checkpoint", "load_state_dict_checked": "checkpoint",
    "filter_probs": "sampling", "sample_next": "sampling",
    "parse_settings": "settings",
    "dpop_loss": "dpo",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'notagen' has no attribute {name!r}")
