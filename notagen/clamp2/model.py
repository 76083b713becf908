"""M3 (CLaMP 2's music encoder), its masked-patch pre-training model, and the CLaMP 2 music side.

Design choices
- Module and attribute names follow the published state dicts, so their files load unchanged:
  `M3Encoder` = `patch_embedding` (Linear(patch_size*128 -> hidden)) + `base` (transformers
  BertModel), `M3CharDecoder.base` = GPT2LMHeadModel, `M3Model` = `encoder` + `decoder`,
  `Clamp2MusicModel` = `music_model` + `music_proj`.
- The published patch embedding is one-hot(128) per position -> Linear(64*128 -> hidden); it is
  NotaGen's `PatchEmbedding` (same layout, any patch size), which sums the picked weight columns
  with `embedding_bag` instead of building the one-hot tensor.
- BERT's token embedding (vocab 1) and pooler are kept for the file format but never used; they
  are frozen (requires_grad False) so optimizers and DDP ignore them.
- Masked-patch pre-training (spec): per sequence ceil(45%) of the real patches are selected;
  each selected patch independently becomes all-MASK (80%), gets its chars between BOS and its
  first EOS shuffled (10%) or stays (10%). Randomness comes from a torch.Generator that callers
  can inject; in eval mode without one, a fixed seed makes the eval loss reproducible.
- The char decoder reconstructs each selected patch from its encoder output: input = [feature] +
  embeddings of chars 1..P-1, position j predicts char j+1; padding chars are not targets. Loss =
  mean cross-entropy over all target chars of the batch. Trailing columns that are padding in
  every selected patch are cut before decoding (causal decoder: the loss is unchanged). Like
  NotaGen's PATCH_SAMPLING_BATCH_SIZE, `decoder_patch_sample` = K > 0 decodes only K random
  selected patches per training batch (an unbiased, cheaper estimate of the loss; 0 = all);
  evaluation always decodes all of them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertModel, GPT2LMHeadModel

from notagen.config import EOS_ID, NUM_CHARS, PAD_ID
from notagen.model import PatchEmbedding

from .patchilizer import MASK_ID
from .sizes import M3Config, resolve_m3_config

MASK_RATIO = 0.45  # share of real patches selected for reconstruction
MASK_PROBS = (0.8, 0.1, 0.1)  # of the selected: all-MASK, chars shuffled, unchanged
EVAL_MASK_SEED = 0  # masking seed in eval mode when no generator is given


class M3Encoder(nn.Module):
    """Bidirectional BERT over patch embeddings: one vector per patch."""

    def __init__(self, config: M3Config):
        super().__init__()
        self.config = config
        self.patch_embedding = PatchEmbedding(config.patch_size, config.hidden_size)
        self.base = BertModel(config.bert_config(), add_pooling_layer=config.pooler)
        unused = [self.base.embeddings.word_embeddings]
        if self.base.pooler is not None:
            unused.append(self.base.pooler)
        for module in unused:
            module.requires_grad_(False)

    def forward(self, patches: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        # patches: [B, N, P] ids, masks: [B, N] (1 = real patch) -> last hidden state [B, N, hidden]
        embeddings = self.patch_embedding(patches)
        return self.base(inputs_embeds=embeddings, attention_mask=masks).last_hidden_state


def masked_mean(states: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Mean over the real positions: states [B, N, H], masks [B, N] -> [B, H]."""
    weights = masks.to(states.dtype).unsqueeze(-1)  # [B, N, 1]
    return (states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)


class Clamp2MusicModel(nn.Module):
    """CLaMP 2's music side: M3 encoder, mean over real patches, then `music_proj` (if any).

    `music_proj` is None for a bare M3: features are then the mean-pooled encoder outputs, minus
    the M3's `feature_center` when its checkpoint has one. Raw pooled outputs share a large common
    component (every piece scores ~0.98 against any reference), so `clamp2/train-m3.py` stores the
    mean pooled output of its training pieces and features are centred on it: cosine scores then
    separate styles, and the "copy" threshold (0.95) of CLaMP-DPO means something.
    """

    def __init__(self, config: M3Config, projection_size: int | None = 768):
        super().__init__()
        self.config = config
        self.music_model = M3Encoder(config)
        self.music_proj = (nn.Linear(config.hidden_size, projection_size)
                           if projection_size is not None else None)
        self.register_buffer("feature_center", None, persistent=False)  # [hidden] or None

    @property
    def feature_size(self) -> int:
        return self.music_proj.out_features if self.music_proj is not None else self.config.hidden_size

    def forward(self, patches: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        # patches: [B, N, P], masks: [B, N] -> one feature per segment [B, feature_size]
        pooled = masked_mean(self.music_model(patches, masks), masks)  # [B, hidden]
        if self.music_proj is not None:
            return self.music_proj(pooled)
        return pooled - self.feature_center if self.feature_center is not None else pooled


class M3CharDecoder(nn.Module):
    """GPT-2 over the chars of one patch, conditioned on that patch's encoder output."""

    def __init__(self, config: M3Config):
        super().__init__()
        self.base = GPT2LMHeadModel(config.gpt2_config())

    def forward(self, features: torch.Tensor, target_patches: torch.Tensor) -> torch.Tensor:
        # features: [S, hidden], target_patches: [S, P] (P <= patch_size)
        # -> logits [S, P-1, 128], row j predicting char j+1
        char_embeddings = self.base.transformer.wte(target_patches[:, 1:-1])  # [S, P-2, hidden]
        inputs = torch.cat([features.unsqueeze(1), char_embeddings], dim=1)  # [S, P-1, hidden]
        return self.base(inputs_embeds=inputs).logits


@dataclass
class M3Output:
    loss: torch.Tensor  # mean cross-entropy over the target chars
    num_targets: torch.Tensor  # number of target chars behind `loss` (a tensor: no device sync)


def select_and_corrupt(patches: torch.Tensor, masks: torch.Tensor,
                       generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked-patch corruption (see module docstring).

    patches [B, N, P] ids, masks [B, N] -> (corrupted input patches [B, N, P], selected [B, N] bool).
    Random numbers are drawn on the generator's device (CPU by default) and moved to `patches`.
    """
    device = patches.device
    rng_device = generator.device if generator is not None else torch.device("cpu")
    batch, length, patch_size = patches.shape
    real = masks.bool()

    # select the ceil(45%) real patches with the smallest random scores (padding scores 2 > any)
    scores = torch.rand(batch, length, generator=generator, device=rng_device).to(device)
    scores = scores.masked_fill(~real, 2.0)
    ranks = scores.argsort(dim=1).argsort(dim=1)  # [B, N] rank of each patch's score
    counts = torch.ceil(real.sum(dim=1) * MASK_RATIO).long()  # [B]
    selected = ranks < counts.unsqueeze(1)  # [B, N]

    action = torch.rand(batch, length, generator=generator, device=rng_device).to(device)
    to_mask = selected & (action < MASK_PROBS[0])
    to_shuffle = selected & (action >= MASK_PROBS[0]) & (action < MASK_PROBS[0] + MASK_PROBS[1])

    # shuffle chars 1 .. eos-1 of a patch (eos = first EOS position, or P if the patch was cut):
    # content positions get sort keys uniform in [0.5, eos-0.5), others keep key = position
    positions = torch.arange(patch_size, device=device).expand(batch, length, patch_size)  # [B, N, P]
    is_eos = patches == EOS_ID
    eos_at = torch.where(is_eos.any(dim=-1), is_eos.int().argmax(dim=-1),
                         torch.full_like(patches[..., 0], patch_size))  # [B, N]
    content = (positions >= 1) & (positions < eos_at.unsqueeze(-1)) & to_shuffle.unsqueeze(-1)
    noise = torch.rand(batch, length, patch_size, generator=generator, device=rng_device).to(device)
    keys = torch.where(content, 0.5 + noise * (eos_at.unsqueeze(-1) - 1), positions.float())
    corrupted = patches.gather(-1, keys.argsort(dim=-1))  # [B, N, P]

    corrupted = corrupted.masked_fill(to_mask.unsqueeze(-1), MASK_ID)
    return corrupted, selected


class M3Model(nn.Module):
    """M3 for masked-patch pre-training: `model(patches, masks).loss`.

    The checkpoint format is the published one: state dict = `encoder.*` + `decoder.*`.
    """

    def __init__(self, config: M3Config | str = "tiny", generator: torch.Generator | None = None,
                 decoder_patch_sample: int = 0):
        super().__init__()
        self.config = resolve_m3_config(config)
        self.encoder = M3Encoder(self.config)
        self.decoder = M3CharDecoder(self.config)
        self.generator = generator  # default masking RNG; None = torch's global RNG
        self.decoder_patch_sample = decoder_patch_sample  # K > 0: decode K random selected patches

    def forward(self, patches: torch.Tensor, masks: torch.Tensor,
                generator: torch.Generator | None = None) -> M3Output:
        # patches: [B, N, P] ids, masks: [B, N] (1 = real patch)
        if generator is None:
            generator = self.generator
        if generator is None and not self.training:
            generator = torch.Generator().manual_seed(EVAL_MASK_SEED)
        inputs, selected = select_and_corrupt(patches, masks, generator)
        states = self.encoder(inputs, masks)  # [B, N, hidden]
        features, targets = states[selected], patches[selected]  # [S, hidden], [S, P] original chars
        if self.training and 0 < self.decoder_patch_sample < len(targets):
            rng_device = generator.device if generator is not None else torch.device("cpu")
            keep = torch.randperm(len(targets), generator=generator, device=rng_device)
            keep = keep[:self.decoder_patch_sample].to(targets.device)
            features, targets = features[keep], targets[keep]
        used_columns = int((targets != PAD_ID).any(dim=0).nonzero().max()) + 1  # trailing padding cut
        targets = targets[:, :max(used_columns, 2)]  # [S, P'] with P' <= P
        logits = self.decoder(features, targets)  # [S, P'-1, 128]
        labels = targets[:, 1:].masked_fill(targets[:, 1:] == PAD_ID, -100)  # [S, P'-1]
        loss = F.cross_entropy(logits.reshape(-1, NUM_CHARS), labels.reshape(-1), ignore_index=-100)
        return M3Output(loss=loss, num_targets=(labels != -100).sum())

