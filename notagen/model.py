"""NotaGen: a patch-level GPT-2 over 16-char patches, and a char-level GPT-2 inside each patch.

Design choices
- Both decoders are transformers' GPT-2 modules under the published attribute names, so published
  checkpoints load unchanged (`patch_level_decoder.base.*`, `char_level_decoder.base.*`).
- The patch embedding is published as one-hot(128) per position -> Linear(16*128 -> hidden). That
  is a sum of 16 weight columns plus the bias, so we gather-and-sum those columns
  (`embedding_bag`) instead of building the [B, N, 2048] one-hot tensor (same weights, same
  result up to float summation order, far less memory and time).
- The char decoder reads [feature of patch t-1] + chars of patch t (first 15) and predicts patch
  t's 16 chars; the published 17th input position only produces an unused output, so it is skipped.
- Padding chars (0) are never targets, the BOS patch is never a target; the training loss is the
  mean cross-entropy over all target chars of the batch. `sequence_logp` sums log-probs per
  sequence for preference training (DPO).
- Attention runs through PyTorch scaled-dot-product attention (`attn_implementation="sdpa"`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel, GPT2Model

from .config import NUM_CHARS, PAD_ID, NotaGenConfig, resolve_config


def gpt2_config(config: NotaGenConfig, *, vocab_size: int, n_positions: int, n_layer: int) -> GPT2Config:
    return GPT2Config(
        vocab_size=vocab_size, n_positions=n_positions, n_embd=config.hidden_size, n_layer=n_layer,
        n_head=config.num_heads, resid_pdrop=config.dropout, embd_pdrop=config.dropout,
        attn_pdrop=config.dropout, bos_token_id=None, eos_token_id=None, pad_token_id=None,
        attn_implementation=config.attn_implementation,
    )


class PatchEmbedding(nn.Linear):
    """Linear(patch_size*128 -> hidden) applied to one-hot patches, computed by gathering rows."""

    def __init__(self, patch_size: int, hidden_size: int):
        super().__init__(patch_size * NUM_CHARS, hidden_size)
        self.patch_size = patch_size

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        # patches: [B, N, P] char ids -> [B, N, hidden]
        # the weight column for (position j, char c) is j*128 + c; embedding_bag sums the 16
        # picked rows without materialising [B, N, P, hidden]
        offsets = torch.arange(self.patch_size, device=patches.device) * NUM_CHARS  # [P]
        columns = (patches + offsets).reshape(-1, self.patch_size)  # [B*N, P]
        rows = self.weight.t().contiguous()  # [P*128, hidden]
        summed = F.embedding_bag(columns, rows, mode="sum")  # [B*N, hidden]
        return (summed + self.bias).reshape(*patches.shape[:-1], -1)

    def forward_one_hot(self, patches: torch.Tensor) -> torch.Tensor:
        """The published formulation, kept as the reference for tests and benchmarks."""
        one_hot = F.one_hot(patches, NUM_CHARS).to(self.weight.dtype)  # [B, N, P, 128]
        return F.linear(one_hot.flatten(-2), self.weight, self.bias)  # [B, N, hidden]


class PatchLevelDecoder(nn.Module):
    """Causal GPT-2 over patch embeddings: one feature vector per patch."""

    def __init__(self, config: NotaGenConfig):
        super().__init__()
        self.patch_size = config.patch_size
        self.patch_embedding = PatchEmbedding(config.patch_size, config.hidden_size)
        self.base = GPT2Model(gpt2_config(config, vocab_size=1, n_positions=config.patch_length,
                                          n_layer=config.patch_num_layers))

    def forward(self, patches: torch.Tensor, masks: torch.Tensor | None = None, **base_kwargs):
        # patches: [B, N, P]; masks: [B, N] (1 = real patch) -> BaseModelOutput, last_hidden_state [B, N, H]
        embeddings = self.patch_embedding(patches)
        return self.base(inputs_embeds=embeddings, attention_mask=masks, **base_kwargs)


class CharLevelDecoder(nn.Module):
    """GPT-2 LM over the chars of one patch, conditioned on the previous patch's feature."""

    def __init__(self, config: NotaGenConfig):
        super().__init__()
        self.base = GPT2LMHeadModel(gpt2_config(config, vocab_size=NUM_CHARS,
                                                n_positions=config.patch_size + 1,
                                                n_layer=config.char_num_layers))

    def embed_chars(self, chars: torch.Tensor) -> torch.Tensor:
        return self.base.transformer.wte(chars)

    def forward(self, features: torch.Tensor, target_patches: torch.Tensor) -> torch.Tensor:
        # features: [M, H] (patch t-1), target_patches: [M, P] (patch t) -> logits [M, P, 128]
        char_inputs = self.embed_chars(target_patches[:, :-1])  # [M, P-1, H]
        inputs = torch.cat([features.unsqueeze(1), char_inputs], dim=1)  # [M, P, H]
        return self.base(inputs_embeds=inputs).logits


@dataclass
class NotaGenOutput:
    loss: torch.Tensor  # mean cross-entropy over target chars
    num_targets: int  # how many chars the mean is over


class NotaGenLMHeadModel(nn.Module):
    def __init__(self, config: NotaGenConfig):
        super().__init__()
        self.config = config
        self.patch_level_decoder = PatchLevelDecoder(config)
        self.char_level_decoder = CharLevelDecoder(config)

    def _target_logits(self, patches: torch.Tensor, masks: torch.Tensor,
                       patch_sample: int = 0, generator: torch.Generator | None = None):
        """Logits and targets of every predicted patch, with the sequence each belongs to."""
        patches = patches.reshape(patches.shape[0], -1, self.config.patch_size)  # [B, N, P]
        masks = masks.to(patches.device)
        features = self.patch_level_decoder(patches, masks).last_hidden_state  # [B, N, H]
        has_target = masks[:, 1:].bool()  # patch t (t >= 1) is real; its feature source is t-1
        source_features = features[:, :-1][has_target]  # [M, H]
        targets = patches[:, 1:][has_target]  # [M, P]
        sequence_index = torch.nonzero(has_target)[:, 0]  # [M]
        if 0 < patch_sample < len(targets):
            # published PATCH_SAMPLING_BATCH_SIZE: train the char decoder on a random subset
            chosen = torch.randperm(len(targets), generator=generator, device="cpu")[:patch_sample]
            chosen = chosen.to(targets.device)
            source_features, targets, sequence_index = (source_features[chosen], targets[chosen],
                                                        sequence_index[chosen])
        logits = self.char_level_decoder(source_features, targets)  # [M, P, 128]
        return logits, targets, sequence_index

    def forward(self, patches: torch.Tensor, masks: torch.Tensor, patch_sample: int = 0,
                generator: torch.Generator | None = None, sequence_logp: bool = False):
        """The mean loss (NotaGenOutput); with `sequence_logp`, the summed log-prob of each sequence
        [B] instead: the same as the method of that name, but through forward, so a DDP-wrapped
        model synchronises its gradients (DPOP under accelerate launch)."""
        if sequence_logp:
            return self.sequence_logp(patches, masks)
        logits, targets, _ = self._target_logits(patches, masks, patch_sample, generator)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=PAD_ID)
        return NotaGenOutput(loss=loss, num_targets=int((targets != PAD_ID).sum()))

    def num_targets(self, patches: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """How many chars `sequence_logp` sums over, per sequence: [B] (no forward pass).
        The targets of `_target_logits`: every real patch but the first, its PAD chars left out."""
        patches = patches.reshape(patches.shape[0], -1, self.config.patch_size)  # [B, N, P]
        has_target = masks.to(patches.device)[:, 1:].bool()  # [B, N-1]
        return ((patches[:, 1:] != PAD_ID) & has_target[..., None]).sum(dim=(1, 2))

    def sequence_logp(self, patches: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Summed log-probability of every target char, per sequence: [B]."""
        logits, targets, sequence_index = self._target_logits(patches, masks)
        logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        per_patch = (logp * (targets != PAD_ID)).sum(dim=-1)  # [M]
        totals = torch.zeros(patches.shape[0], dtype=per_patch.dtype, device=per_patch.device)
        return totals.index_add(0, sequence_index, per_patch)


def build_model(preset_or_config: str | NotaGenConfig | dict = "tiny",
                device: str | torch.device | None = None) -> NotaGenLMHeadModel:
    """A freshly initialised model; `device="meta"` builds the structure without allocating weights."""
    config = resolve_config(preset_or_config)
    with torch.device(device if device is not None else "cpu"):
        return NotaGenLMHeadModel(config)
