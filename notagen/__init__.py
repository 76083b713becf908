"""notagen: the shared library behind every NotaGen stage (data, training, inference, CLaMP 2, RL).

Stage folders (`pretrain/`, `finetune/`, `inference/`, `clamp2/`, `RL/`, `data/`, `gradio/`) hold only a
`config.py` and thin scripts; all logic lives here. Heavy modules (torch, transformers, music21)
are imported on first use, so light tools such as the data scripts start quickly.
"""
from __future__ import annotations

from ._lazy import lazy_exports

_EXPORTS = {
    "NotaGenConfig": "config", "PRESETS": "config", "resolve_config": "config",
    "config_from_state_dict": "config", "weights_file_name": "config",
    "Patchilizer": "patchilizer",
    "NotaGenLMHeadModel": "model", "build_model": "model",
    "load_model": "checkpoint", "save_checkpoint": "checkpoint", "read_checkpoint": "checkpoint",
    "CheckpointError": "errors", "load_state_dict_checked": "checkpoint",
    "filter_probs": "sampling", "sample_next": "sampling",
    "parse_settings": "settings",
    "dpop_loss": "rl.loss",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
