"""Generation: the cached, batched, streaming engine (`engine`) and inference runs (`run`).

`run` (output folders, conversions, run summary) is imported on first use, so importing the engine
does not pull in the ABC converters.
"""
from __future__ import annotations

import importlib

from .engine import (Engine, GenerationEvent, GenerationSettings, KVCache, Piece, PieceResult, Prompt,
                     PromptError, reference_generate, sample_rows, split_header, to_ascii)

_LAZY = {"run_inference": "run", "parse_prompt": "run", "resolve_device": "run", "resolve_dtype": "run",
         "resolve_weights": "run", "output_folder_name": "run", "load_prompt_list": "run"}

__all__ = ["Engine", "GenerationEvent", "GenerationSettings", "KVCache", "Piece", "PieceResult", "Prompt",
           "PromptError", "reference_generate", "sample_rows", "split_header", "to_ascii", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
