"""Sizes of the flat baselines, matched to a NotaGen preset's parameter count.

Design choices
- A flat model reads the same training windows as NotaGen: the data pipeline's patches (at most
  `patch_length` of them, cut at a line by the same stream rule), flattened back into the ABC
  characters they hold. So `context_chars` = patch_size x patch_length always holds a window, and
  both designs learn from exactly the same text.
- `--preset` gives each model NotaGen's parameter count at that preset: the ABC GPT-2 keeps the
  preset's width and takes as many layers as the budget allows (its position table is large: one
  row per character), the Folk-RNN keeps Sturm et al.'s 3 LSTM layers and takes the width.
- Dropout is NotaGen's 0.1 for all three (equal terms; Folk-RNN published 0.5 for long training).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import NUM_CHARS, PRESETS, NotaGenConfig, SizesConfig, resolve_config

MODEL_TYPES = ("notagen", "abc_gpt2", "folk_rnn")
FLAT_TYPES = MODEL_TYPES[1:]
FOLK_RNN_LAYERS = 3  # Sturm et al.


@dataclass(frozen=True)
class FlatConfig(SizesConfig):
    model_type: str = "abc_gpt2"  # abc_gpt2 (flat char-level GPT-2) or folk_rnn (char-level LSTM)
    hidden_size: int = 128  # width (GPT-2 embedding / LSTM state)
    num_layers: int = 4  # GPT-2 blocks or LSTM layers
    patch_length: int = 256  # the training window, in the data pipeline's patches (as NotaGen's)
    patch_size: int = 16  # characters per data-pipeline patch
    num_heads: int = 0  # GPT-2 attention heads; 0 = hidden_size // 64
    dropout: float = 0.1
    attn_implementation: str = "sdpa"

    def __post_init__(self):
        if self.model_type not in FLAT_TYPES:
            raise ValueError(f"unknown baseline model {self.model_type!r}; choose one of {', '.join(FLAT_TYPES)}")
        if self.model_type == "abc_gpt2":
            self._default_heads()

    @property
    def context_chars(self) -> int:
        """Characters a window can hold: BOS + text + EOS of at most patch_length full patches."""
        return self.patch_size * self.patch_length

    def describe(self) -> str:
        kind = "GPT-2 blocks" if self.model_type == "abc_gpt2" else "LSTM layers"
        return (f"{self.model_type}, {self.num_layers} {kind}, hidden {self.hidden_size}, "
                f"context {self.context_chars} chars")

    def run_name(self, tag: str, learning_rate: float, batch_size: int) -> str:
        return (f"{tag}_ctx_{self.context_chars}_layers_{self.num_layers}_h_size_{self.hidden_size}"
                f"_lr_{learning_rate}_batch_{batch_size}")


def flat_parameter_count(config: FlatConfig) -> int:
    """Parameters of the model `config` describes (the formula the tests check against a built model)."""
    h, v = config.hidden_size, NUM_CHARS
    if config.model_type == "abc_gpt2":  # wte + wpe + blocks + ln_f (the LM head is tied to wte)
        return v * h + config.context_chars * h + config.num_layers * (12 * h * h + 13 * h) + 2 * h
    lstm = config.num_layers * (8 * h * h + 8 * h)  # 4 gates x (input + recurrent) weights + 2 biases
    return v * h + lstm + h * v + v  # embedding + LSTM + head


def notagen_parameter_count(config: NotaGenConfig) -> int:
    """NotaGen's parameters: patch embedding, two GPT-2 stacks (their wte/wpe included)."""
    h, p = config.hidden_size, config.patch_size
    block = 12 * h * h + 13 * h
    patch_level = (p * NUM_CHARS + 1) * h + h + config.patch_length * h + config.patch_num_layers * block + 2 * h
    char_level = NUM_CHARS * h + (p + 1) * h + config.char_num_layers * block + 2 * h
    return patch_level + char_level


def matched_config(model_type: str, preset: str | NotaGenConfig = "tiny") -> FlatConfig:
    """The baseline of `model_type` with about the parameters of NotaGen's `preset`."""
    base = resolve_config(preset) if not isinstance(preset, NotaGenConfig) else preset
    target = notagen_parameter_count(base)
    if model_type == "abc_gpt2":
        config = FlatConfig("abc_gpt2", base.hidden_size, 1, base.patch_length, base.patch_size)
        per_block = 12 * base.hidden_size ** 2 + 13 * base.hidden_size
        layers = max(1, round((target - flat_parameter_count(config) + per_block) / per_block))
        return config.with_(num_layers=layers)
    if model_type == "folk_rnn":
        # 8 L h^2 + (8 L + 2 V) h + V = target, solved for h, rounded to a multiple of 8
        a, b, c = 8 * FOLK_RNN_LAYERS, 8 * FOLK_RNN_LAYERS + 2 * NUM_CHARS, NUM_CHARS - target
        hidden = (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)
        return FlatConfig("folk_rnn", max(8, 8 * round(hidden / 8)), FOLK_RNN_LAYERS, base.patch_length,
                          base.patch_size)
    raise ValueError(f"unknown baseline model {model_type!r}; choose one of {', '.join(FLAT_TYPES)}")


def flat_presets(model_type: str) -> dict[str, FlatConfig]:
    return {name: matched_config(model_type, name) for name in PRESETS}
