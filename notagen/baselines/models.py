"""The flat baselines: a char-level GPT-2 (Symbotunes' "ABC GPT2") and a char-level LSTM (Folk-RNN).

Design choices
- Same interface as `NotaGenLMHeadModel`: `forward(patches, masks)` -> NotaGenOutput(loss,
  num_targets), `forward(..., sequence_logp=True)` / `sequence_logp(...)` -> [B], `config`. They
  take the data pipeline's patch batches and flatten them (`flat_ids`), so the datasets, the
  training loop, DPOP and the evaluation are shared unchanged.
- The flat stream of a window is BOS + its ABC characters + EOS (when the window holds the end):
  the chunk-end markers and padding of the patches are not text, so they are dropped.
- Loss: mean cross-entropy over every character after BOS, as NotaGen's is over its targets.
- Generation: `generation_rows(slots)` gives per-piece state with `prefill(rows, streams)` and
  `advance(chars, rows)`, both returning next-char logits [R, 128]; `FlatEngine` drives them. The
  GPT-2 rows are the project's `KVCache` (the same cached attention as NotaGen's engine); the
  LSTM rows are its (h, c) state.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel

from ..config import BOS_ID, EOS_ID, NUM_CHARS, PAD_ID
from ..generation.cache import KVCache
from ..model import NotaGenOutput
from .config import FlatConfig


def flat_ids(patches) -> list[int]:
    """Patches (lists of char ids) -> the flat stream: BOS, the text chars, EOS for the EOS patch."""
    stream = []
    for patch in patches:
        if patch[0] == BOS_ID:  # a special patch: BOS (1...1 2) or EOS (1 2...2)
            stream.append(BOS_ID if patch[1] == BOS_ID else EOS_ID)
            continue
        for char in patch:
            if char <= EOS_ID:  # the chunk-end marker or padding: the rest of the patch is not text
                break
            stream.append(char)
    return stream


def collate_flat(patches: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """A patch batch [B, N*P] or [B, N, P] with masks [B, N] -> flat ids [B, T], PAD on the right."""
    patches = patches.reshape(patches.shape[0], masks.shape[1], -1)
    streams = [flat_ids(row[:int(n)].tolist()) for row, n in zip(patches, masks.sum(dim=1))]
    return _padded(streams, patches.device)[0]


class FlatLM(nn.Module):
    """What both baselines share: the loss and log-probs over flattened patch batches."""

    config: FlatConfig

    def logits(self, ids: torch.Tensor) -> torch.Tensor:  # ids [B, T] -> [B, T, 128]
        raise NotImplementedError

    def _logits_and_targets(self, patches, masks):
        ids = collate_flat(patches, masks.to(patches.device))  # [B, T]
        return self.logits(ids[:, :-1]), ids[:, 1:]  # [B, T-1, 128], [B, T-1]

    def forward(self, patches: torch.Tensor, masks: torch.Tensor, patch_sample: int = 0,
                generator: torch.Generator | None = None, sequence_logp: bool = False):
        """NotaGenOutput(mean loss, targets); with `sequence_logp`, the summed log-prob per row [B].
        `patch_sample` and `generator` are NotaGen's patch sampling: a flat model has no patches."""
        if sequence_logp:
            return self.sequence_logp(patches, masks)
        logits, targets = self._logits_and_targets(patches, masks)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=PAD_ID)
        return NotaGenOutput(loss=loss, num_targets=int((targets != PAD_ID).sum()))

    def num_targets(self, patches: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """How many ids `sequence_logp` sums over, per row: [B] (no forward pass)."""
        ids = collate_flat(patches, masks.to(patches.device))  # [B, T]
        return (ids[:, 1:] != PAD_ID).sum(dim=-1)

    def sequence_logp(self, patches: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        logits, targets = self._logits_and_targets(patches, masks)
        logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        return (logp * (targets != PAD_ID)).sum(dim=-1)  # [B]


class AbcGPT2LMHeadModel(FlatLM):
    """A GPT-2 over ABC characters, one position per character of the window.

    No dropout on the attention maps (residual and embedding dropout stay): over thousands of
    characters, drawing that mask made a CPU training step 5x slower (7.4 s against 1.0 s forward)."""

    TIED_WEIGHTS = (("base.lm_head.weight", "base.transformer.wte.weight"),)  # GPT-2's output embedding

    def __init__(self, config: FlatConfig):
        super().__init__()
        self.config = config
        self.base = GPT2LMHeadModel(GPT2Config(
            vocab_size=NUM_CHARS, n_positions=config.context_chars, n_embd=config.hidden_size,
            n_layer=config.num_layers, n_head=config.num_heads, resid_pdrop=config.dropout,
            embd_pdrop=config.dropout, attn_pdrop=0.0, bos_token_id=BOS_ID, eos_token_id=EOS_ID,
            pad_token_id=None, attn_implementation=config.attn_implementation))  # right padding: causal attention never sees it

    def logits(self, ids):
        return self.base(input_ids=ids).logits

    def generation_rows(self, slots: int) -> "_GPT2Rows":
        return _GPT2Rows(self, slots)


class FolkRNNLMHeadModel(FlatLM):
    """Sturm et al.'s Folk-RNN design on characters: embedding, stacked LSTM with dropout, softmax."""

    def __init__(self, config: FlatConfig):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(NUM_CHARS, config.hidden_size)
        self.lstm = nn.LSTM(config.hidden_size, config.hidden_size, config.num_layers, batch_first=True,
                            dropout=config.dropout if config.num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden_size, NUM_CHARS)

    def logits(self, ids, state=None):
        outputs, _ = self.lstm(self.dropout(self.embedding(ids)), state)  # [B, T, H]
        return self.head(self.dropout(outputs))

    def generation_rows(self, slots: int) -> "_LSTMRows":
        return _LSTMRows(self, slots)


def build_flat_model(config: FlatConfig) -> FlatLM:
    return {"abc_gpt2": AbcGPT2LMHeadModel, "folk_rnn": FolkRNNLMHeadModel}[config.model_type](config)


# ---------------------------------------------------------------------------------------------
# Per-piece generation state (FlatEngine's rows)
# ---------------------------------------------------------------------------------------------
def _padded(streams: list[list[int]], device) -> tuple[torch.Tensor, list[int]]:
    lengths = [len(s) for s in streams]
    ids = torch.full((len(streams), max(lengths)), PAD_ID, dtype=torch.long)
    for row, stream in enumerate(streams):
        ids[row, :len(stream)] = torch.tensor(stream)
    return ids.to(device), lengths


class _GPT2Rows:
    """The GPT-2's rows in the project's KVCache: one row per piece, capacity = its context."""

    def __init__(self, model: AbcGPT2LMHeadModel, slots: int):
        self.wte, self.lm_head = model.base.transformer.wte, model.base.lm_head
        self.cache = KVCache(model.base.transformer, slots, model.config.context_chars)

    def prefill(self, rows: list[int], streams: list[list[int]]) -> torch.Tensor:
        ids, lengths = _padded(streams, self.wte.weight.device)
        return self.lm_head(self.cache.prefill(rows, self.wte(ids), lengths))  # [R, 128]

    def advance(self, chars: list[int], rows: list[int]) -> torch.Tensor:
        ids = torch.tensor(chars, device=self.wte.weight.device)
        return self.lm_head(self.cache.advance(self.wte(ids), rows=rows if len(rows) < self.cache.rows else None))

    def keep(self, rows: list[int]) -> None:
        self.cache.keep(rows)


class _LSTMRows:
    """The LSTM's (h, c) per piece: [layers, rows, hidden] each."""

    def __init__(self, model: FolkRNNLMHeadModel, slots: int):
        self.model = model
        weight = model.head.weight
        shape = (model.config.num_layers, slots, model.config.hidden_size)
        self.h, self.c = weight.new_zeros(shape), weight.new_zeros(shape)

    def prefill(self, rows: list[int], streams: list[list[int]]) -> torch.Tensor:
        ids, lengths = _padded(streams, self.h.device)
        packed = nn.utils.rnn.pack_padded_sequence(self.model.embedding(ids), lengths, batch_first=True,
                                                   enforce_sorted=False)
        outputs, (h, c) = self.model.lstm(packed)
        outputs, _ = nn.utils.rnn.pad_packed_sequence(outputs, batch_first=True)  # [R, T, H]
        self.h[:, rows], self.c[:, rows] = h, c
        last = outputs[torch.arange(len(rows)), torch.tensor(lengths) - 1]  # [R, H]
        return self.model.head(last)

    def advance(self, chars: list[int], rows: list[int]) -> torch.Tensor:
        ids = torch.tensor(chars, device=self.h.device)[:, None]  # [R, 1]
        outputs, (h, c) = self.model.lstm(self.model.embedding(ids), (self.h[:, rows], self.c[:, rows]))
        self.h[:, rows], self.c[:, rows] = h, c
        return self.model.head(outputs[:, 0])

    def keep(self, rows: list[int]) -> None:
        self.h, self.c = self.h[:, rows], self.c[:, rows]
