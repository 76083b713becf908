"""Generation: prompts (`prompt`), pieces (`piece`), their line check (`lines`) and musical controls
(`controls`), the KV cache (`cache`), the batch's rows (`rows`), the cached, batched, streaming
engine (`engine`), an inference run's settings (`setup`) and inference runs (`run`).

`run` (output folders, conversions, run summary) is imported on first use, so importing the engine
does not pull in the ABC converters.
"""
from __future__ import annotations

from notagen._lazy import lazy_exports

from ..sampling import sample_rows
from .cache import KVCache
from .engine import Engine, engine_for, reference_generate
from .piece import GenerationEvent, GenerationSettings, Piece, PieceResult
from .prompt import Prompt, PromptError, split_header, to_ascii

_LAZY = {"run_inference": "run", "parse_prompt": "setup", "resolve_device": "setup", "resolve_dtype": "setup",
         "resolve_weights": "setup", "output_folder_name": "run", "load_prompt_list": "setup"}

__all__ = ["Engine", "engine_for", "GenerationEvent", "GenerationSettings", "KVCache", "Piece", "PieceResult", "Prompt",
           "PromptError", "reference_generate", "sample_rows", "split_header", "to_ascii", *_LAZY]


__getattr__ = lazy_exports(__name__, _LAZY, globals())
