"""M3 sizes: presets, transformers configs, and detection from checkpoint tensor shapes.

Design choices
- One frozen dataclass describes an M3 (encoder + char decoder); the BERT and GPT-2 configs are
  derived from it, so a checkpoint's tensor shapes are enough to rebuild its model.
- Published checkpoints carry no config. Every size but the head count is readable from tensor
  shapes; heads are hidden / 64 (the published rule) unless a config says otherwise (a dict stored
  in a project checkpoint, or one passed by the caller, e.g. the `m3` entry of m3_clamp2.json).
- `tiny` trains on a CPU in minutes; `published` is the size of the released M3 / CLaMP 2.
"""
from __future__ import annotations

from dataclasses import dataclass

from transformers import BertConfig, GPT2Config

from notagen.config import BOS_ID, EOS_ID, NUM_CHARS, PAD_ID, SizesConfig, count_layers


@dataclass(frozen=True)
class M3Config(SizesConfig):
    patch_size: int = 64  # characters per patch
    patch_length: int = 512  # patches per segment (BERT positions)
    hidden_size: int = 768  # width of encoder and char decoder
    num_layers: int = 12  # BERT layers of the encoder
    num_heads: int = 0  # attention heads; 0 means hidden_size // 64 (published rule)
    intermediate_size: int = 0  # BERT feed-forward width; 0 means 4 * hidden_size
    decoder_layers: int = 3  # GPT-2 blocks of the char decoder (pre-training only)
    type_vocab_size: int = 2  # BERT token-type rows (only row 0 is used; kept for file format)
    pooler: bool = True  # BERT pooler (unused by M3, but present in published files)
    dropout: float = 0.1  # BERT / GPT-2 dropout (published default)
    attn_implementation: str = "sdpa"  # "sdpa" (PyTorch scaled-dot-product) or "eager"

    def __post_init__(self):
        self._default_heads(strict=True)
        if self.intermediate_size == 0:
            object.__setattr__(self, "intermediate_size", 4 * self.hidden_size)

    def bert_config(self) -> BertConfig:
        return BertConfig(
            vocab_size=1,  # BERT's token embedding is unused: inputs are patch embeddings
            hidden_size=self.hidden_size, num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads, intermediate_size=self.intermediate_size,
            max_position_embeddings=self.patch_length, type_vocab_size=self.type_vocab_size,
            hidden_dropout_prob=self.dropout, attention_probs_dropout_prob=self.dropout,
            pad_token_id=0, attn_implementation=self.attn_implementation,
        )

    def gpt2_config(self) -> GPT2Config:
        return GPT2Config(
            vocab_size=NUM_CHARS, n_positions=self.patch_size, n_embd=self.hidden_size,
            n_layer=self.decoder_layers, n_head=self.num_heads, resid_pdrop=self.dropout,
            embd_pdrop=self.dropout, attn_pdrop=self.dropout, bos_token_id=BOS_ID,
            eos_token_id=EOS_ID, pad_token_id=PAD_ID, attn_implementation=self.attn_implementation,
        )


M3_PRESETS: dict[str, M3Config] = {
    "tiny": M3Config(patch_length=128, hidden_size=128, num_layers=3, decoder_layers=2),
    "published": M3Config(),
}


def resolve_m3_config(preset_or_config: str | M3Config | dict) -> M3Config:
    return M3Config.resolve(preset_or_config, M3_PRESETS, "M3 preset")


# Names a caller may use for sizes in a config dict (our field names, or m3_clamp2.json's).
_CONFIG_ALIASES = {"layers": "num_layers", "heads": "num_heads"}


def m3_config_from_state_dict(encoder_state: dict, decoder_state: dict | None = None,
                              given: dict | None = None) -> M3Config:
    """Sizes of an M3 read off its tensors.

    `encoder_state` holds the encoder's keys without prefix (`patch_embedding.*`, `base.*`),
    `decoder_state` the char decoder's (`base.transformer.*`, `base.lm_head.*`) if there is one.
    `given` may state sizes (e.g. `{"heads": 2}`); the head count is taken from it, every other
    size it states must agree with the tensors.
    """
    try:
        embedding = encoder_state["patch_embedding.weight"]  # [hidden, patch_size * 128]
        positions = encoder_state["base.embeddings.position_embeddings.weight"]  # [patch_length, hidden]
        token_types = encoder_state["base.embeddings.token_type_embeddings.weight"]  # [types, hidden]
        intermediate = encoder_state["base.encoder.layer.0.intermediate.dense.weight"]  # [inter, hidden]
    except KeyError as missing:
        raise KeyError(f"not an M3 encoder: no tensor {missing}") from None
    if embedding.shape[1] % NUM_CHARS:
        raise ValueError(f"patch_embedding.weight has {embedding.shape[1]} columns, not a multiple of {NUM_CHARS}")
    detected = dict(
        patch_size=embedding.shape[1] // NUM_CHARS,
        patch_length=positions.shape[0],
        hidden_size=embedding.shape[0],
        num_layers=count_layers(encoder_state, "base.encoder.layer."),
        intermediate_size=intermediate.shape[0],
        type_vocab_size=token_types.shape[0],
        pooler="base.pooler.dense.weight" in encoder_state,
    )
    if decoder_state:
        detected["decoder_layers"] = count_layers(decoder_state, "base.transformer.h.")
    stated = {_CONFIG_ALIASES.get(k, k): v for k, v in (given or {}).items()}
    conflicts = [f"{name}: config says {stated[name]}, tensors say {value}"
                 for name, value in detected.items() if name in stated and stated[name] != value]
    if conflicts:
        raise ValueError("checkpoint does not match its config: " + "; ".join(conflicts))
    return M3Config(**detected, num_heads=int(stated.get("num_heads", 0)))


M3_SIZE_SETTINGS = ("patch_length", "hidden_size", "num_layers", "decoder_layers")


def m3_config_from_settings(settings) -> M3Config:
    """Stage settings -> M3Config: PRESET, with every size setting that is not 0 overriding it
    (a new hidden size also re-derives heads and feed-forward width from the published rules)."""
    config = resolve_m3_config(getattr(settings, "preset", "") or "tiny")
    given = {name: int(getattr(settings, name, 0) or 0) for name in M3_SIZE_SETTINGS}
    given = {name: value for name, value in given.items() if value}
    if "hidden_size" in given:
        given.update(num_heads=0, intermediate_size=0)
    return config.with_(**given)
