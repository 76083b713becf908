"""Model sizes: the published presets, a tiny CPU preset, and detection from checkpoint shapes.

Design choices
- One frozen dataclass describes a NotaGen model; everything else (GPT-2 configs, file names)
  is derived from it, so a checkpoint's tensor shapes are enough to rebuild its model.
- Heads are hidden / 64 as published; only a config stored inside a project checkpoint can say
  otherwise (shapes cannot tell head count).
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields, replace

NUM_CHARS = 128  # ASCII: a character's id is its code point
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2


class SizesConfig:
    """What NotaGen's and M3's frozen size dataclasses share: head count by the published rule, and
    plain-dict round trips (unknown keys ignored, so newer files load)."""

    def _default_heads(self, strict: bool = False) -> None:
        """num_heads 0 -> hidden_size // 64 (published); strict: hidden_size must be a multiple of 64."""
        if self.num_heads == 0:
            if strict and self.hidden_size % 64:
                raise ValueError(f"hidden_size {self.hidden_size} is not a multiple of 64: give num_heads")
            object.__setattr__(self, "num_heads", max(1, self.hidden_size // 64))
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by {self.num_heads} heads")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict):
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def with_(self, **changes):
        return replace(self, **changes)

    @classmethod
    def resolve(cls, preset_or_config, presets: dict, what: str = "preset"):
        """A config as it is, from a dict, or one of `presets` by name (any case)."""
        if isinstance(preset_or_config, cls):
            return preset_or_config
        if isinstance(preset_or_config, dict):
            return cls.from_dict(preset_or_config)
        name = str(preset_or_config).lower()
        if name not in presets:
            raise ValueError(f"unknown {what} {preset_or_config!r}; choose one of {', '.join(presets)}")
        return presets[name]


@dataclass(frozen=True)
class NotaGenConfig(SizesConfig):
    patch_size: int = 16  # characters per patch
    patch_length: int = 1024  # patches per sequence (patch-level context)
    patch_num_layers: int = 20  # GPT-2 blocks of the patch-level decoder
    char_num_layers: int = 6  # GPT-2 blocks of the char-level decoder
    hidden_size: int = 1280  # width of both decoders
    num_heads: int = 0  # attention heads; 0 means hidden_size // 64 (published rule)
    dropout: float = 0.1  # GPT-2's residual/embedding/attention dropout (published default)
    attn_implementation: str = "sdpa"  # "sdpa" (PyTorch scaled-dot-product) or "eager"

    model_type = "notagen"  # a class constant, not a field: published files name no type

    def __post_init__(self):
        self._default_heads()

    def describe(self) -> str:
        return (f"{self.patch_num_layers}+{self.char_num_layers} layers, hidden {self.hidden_size}, "
                f"context {self.patch_length} patches")

    def run_name(self, tag: str, learning_rate: float, batch_size: int) -> str:
        return run_name(self, tag, learning_rate, batch_size)


PRESETS: dict[str, NotaGenConfig] = {
    "tiny": NotaGenConfig(patch_length=256, patch_num_layers=3, char_num_layers=2, hidden_size=128),
    "small": NotaGenConfig(patch_length=2048, patch_num_layers=12, char_num_layers=3, hidden_size=768),
    "medium": NotaGenConfig(patch_length=2048, patch_num_layers=16, char_num_layers=3, hidden_size=1024),
    "large": NotaGenConfig(patch_length=1024, patch_num_layers=20, char_num_layers=6, hidden_size=1280),
    "x": NotaGenConfig(patch_length=1024, patch_num_layers=20, char_num_layers=6, hidden_size=1280),
}


def resolve_config(preset_or_config: str | NotaGenConfig | dict) -> NotaGenConfig:
    return NotaGenConfig.resolve(preset_or_config, PRESETS)


def count_layers(keys, prefix: str) -> int:
    """Number of `<prefix><i>.` blocks among `keys` (max index + 1)."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    indices = {int(m.group(1)) for key in keys if (m := pattern.match(key))}
    return max(indices) + 1 if indices else 0


def config_from_state_dict(state_dict: dict, base: NotaGenConfig | None = None) -> NotaGenConfig:
    """Read the sizes of a NotaGen model off its tensors (published checkpoints carry no config)."""
    try:
        embedding = state_dict["patch_level_decoder.patch_embedding.weight"]  # [hidden, patch_size*128]
        positions = state_dict["patch_level_decoder.base.wpe.weight"]  # [patch_length, hidden]
    except KeyError as missing:
        raise KeyError(f"not a NotaGen state dict: no tensor {missing}") from None
    keys = list(state_dict)
    sizes = dict(
        hidden_size=int(embedding.shape[0]),
        patch_size=int(embedding.shape[1]) // NUM_CHARS,
        patch_length=int(positions.shape[0]),
        patch_num_layers=count_layers(keys, "patch_level_decoder.base.h."),
        char_num_layers=count_layers(keys, "char_level_decoder.base.transformer.h."),
    )
    if base is not None:
        return base.with_(**sizes)
    return NotaGenConfig(**sizes)


def weights_file_name(config: NotaGenConfig, tag: str, learning_rate: float, batch_size: int) -> str:
    """The published naming pattern, e.g. weights_notagen_pretrain_p_size_16_p_length_1024_..."""
    return f"weights_notagen_{run_name(config, tag, learning_rate, batch_size)}.pth"


def run_name(config: NotaGenConfig, tag: str, learning_rate: float, batch_size: int) -> str:
    return (f"{tag}_p_size_{config.patch_size}_p_length_{config.patch_length}"
            f"_p_layers_{config.patch_num_layers}_c_layers_{config.char_num_layers}"
            f"_h_size_{config.hidden_size}_lr_{learning_rate}_batch_{batch_size}")
