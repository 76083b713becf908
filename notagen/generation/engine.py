"""Generation engine: batched, streaming, key/value-cached sampling of NotaGen pieces.

How a piece grows (shared/spec/model.md, "Generation")
- The patch-level context starts as BOS patch + one metadata chunk per prompt line. The feature of
  its last complete patch conditions the char-level decoder, which writes the next patch char by
  char ([feature] + chars so far -> next char). When the context ends in an open patch (after a
  stream rebuild the last bar stays open), the new chars continue it and only they add text.
- A patch ends at its first EOS char or at 16 chars. A patch starting with chars (1, 2) is the EOS
  patch: the piece is finished. The first patch whose text starts with `[r:` gets `0/` forced as its
  next two chars (the published loop regenerates it with `[r:0/` forced: the same distribution).
- Stream continuation: when the context reaches patch_length patches it is rebuilt from the text,
  `encode_generate(metadata + last c body lines)`, c = half the body lines at the first rebuild.
  "metadata" is the prompt lines + the metadata the model generated before the body (the greedy
  vectors' rebuild points and texts decide this); the body lines are those of the context's body,
  stripped and re-split exactly as published (see `Piece.rebuild`). A rebuilt context that is still
  too long loses body lines from the front (the published code cut off its newest patches
  instead, which can stall a piece for good).
- Limits: a piece fails as soon as its text (prompt lines included) exceeds `max_chars`, when it
  runs past `max_seconds`, or after `max_empty_patches` patches in a row that add no text.
- `Engine.stream` yields GenerationEvent(piece, text, result): the prompt text, then one event per
  generated patch (text may be ""), then one with the PieceResult.

Engine
- `KVCache` runs a transformers GPT-2 stack (its own weights, no copies) with a small cached
  attention: `prefill` a few rows from scratch, `advance` every row by one token at its own position.
  The patch-level decoder keeps one cache row per piece in the batch (capacity patch_length); the
  char-level decoder one row per piece (capacity patch_size + 1), reset for every patch.
- On CPU, batches run the char-level decoder's matrix products on oneDNN-packed copies of its
  weights (`_Linear`; `Engine(pack="none")` turns it off, "all" packs the patch level too).
- Pieces of a batch have different context lengths: each row writes its keys at its own position
  and attends through a length mask. A finished piece's row is given to the next waiting piece, or
  dropped when none is left, so finished pieces cost nothing.
- Sampling (top-k -> top-p -> temperature, `notagen.sampling`) runs on the device in float64; each
  piece draws from its own random stream (seeded from `seed` and its index), so a piece's music with
  a given seed does not depend on batch size or on the other pieces.
- `reference_generate` is the published loop's structure (no caches: the whole context through the
  patch-level decoder for every patch, the patch so far through the char-level decoder for every
  char; one piece): the uncached reference for tests and the benchmark baseline.
"""
from __future__ import annotations

import math
import random
import time
import unicodedata
import warnings
from collections import deque
from dataclasses import dataclass, field
from typing import Iterable, Iterator, NamedTuple

import torch
import torch.nn.functional as F

from ..config import BOS_ID, EOS_ID, PAD_ID
from ..patchilizer import Patchilizer, split_lines
from ..sampling import filter_probs

R0_TRIGGER = [ord(c) for c in "[r:"]  # first three chars of the first tune-body patch ...
R0_FORCED = [ord(c) for c in "0/"]  # ... are followed by these, so the body starts at line 0


# ---------------------------------------------------------------------------------------------
# Prompts and settings
# ---------------------------------------------------------------------------------------------
class PromptError(ValueError):
    """A prompt that cannot be used."""


def to_ascii(text: str, what: str = "prompt") -> str:
    """ASCII text as the model needs; non-ASCII is transliterated (unidecode) with a warning."""
    if text.isascii():
        return text
    from unidecode import unidecode

    converted = unidecode(unicodedata.normalize("NFC", text))
    bad = sorted({c for c in text if not c.isascii()})
    warnings.warn(f"{what} has non-ASCII characters {''.join(bad)!r}; transliterated to ASCII "
                  f"(the model only knows ASCII): {converted.strip()[:80]!r}", stacklevel=3)
    return converted


@dataclass(frozen=True)
class Prompt:
    """What a piece starts from: prompt lines (metadata chunks), or an ABC text to continue."""
    lines: tuple[str, ...] = ()  # each ends with "\n"
    text: str | None = None  # ABC text to continue (its own header and body)

    @classmethod
    def from_triple(cls, period: str, composer: str, instrumentation: str) -> "Prompt":
        return cls.from_lines([f"%{period.strip()}", f"%{composer.strip()}", f"%{instrumentation.strip()}"])

    @classmethod
    def from_lines(cls, lines: Iterable[str]) -> "Prompt":
        clean = []
        for line in lines:
            line = to_ascii(line).rstrip("\r\n")
            if "\n" in line:
                raise PromptError(f"a prompt line holds a line break: {line!r}")
            if line.strip():
                clean.append(line + "\n")
        return cls(lines=tuple(clean))

    @classmethod
    def from_abc(cls, text: str) -> "Prompt":
        text = to_ascii(text.replace("\r\n", "\n").replace("\r", "\n"), "ABC prompt")
        if not text.strip():
            raise PromptError("the ABC text to continue is empty")
        lines = split_lines(text)
        if Patchilizer.find_body_start(lines, generate=True) is None:
            return cls.from_lines(lines)  # a header only: its lines are prompt lines
        return cls(text=text)

    @property
    def prompt_text(self) -> str:
        return self.text if self.text is not None else "".join(self.lines)

    @property
    def triple(self) -> tuple[str, ...] | None:
        """(period, composer, instrumentation) when the prompt is exactly three `%` lines."""
        if self.text is None and len(self.lines) == 3 and all(
                l.startswith("%") and not l.startswith("%%") for l in self.lines):
            return tuple(l[1:].strip() for l in self.lines)
        return None


@dataclass
class GenerationSettings:
    top_k: int = 9  # published defaults
    top_p: float = 0.9
    temperature: float = 1.2
    greedy: bool = False  # argmax every char (top_k == 1 is greedy too)
    seed: int | None = None  # None: a fresh random seed
    max_chars: int = 102400  # a piece fails once its text (prompt included) is longer
    max_seconds: float = 1200.0  # wall-clock limit per piece
    max_empty_patches: int = 64  # patches in a row without text -> stalled
    max_patches: int | None = None  # a piece fails after this many generated patches (None: no limit)
    batch_size: int = 1  # pieces generated together

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, not {self.batch_size}")
        if self.temperature <= 0 and not self.greedy:
            raise ValueError(f"temperature must be > 0, not {self.temperature} (use greedy for argmax)")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], not {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = no top-k cut), not {self.top_k}")


@dataclass
class PieceResult:
    index: int
    prompt: Prompt
    text: str  # everything: prompt text + generated text
    status: str  # "finished" (EOS patch) or "failed"
    reason: str = ""  # why it failed: max_chars, max_seconds, stalled, metadata_overflow
    seconds: float = 0.0
    patches: int = 0  # patches generated
    stream_events: list[int] = field(default_factory=list)  # text length at each context rebuild

    @property
    def chars(self) -> int:
        return len(self.text)

    @property
    def ok(self) -> bool:
        return self.status == "finished"


class GenerationEvent(NamedTuple):
    """One per piece for its prompt, one per generated patch (text may be ""), one at its end."""
    piece: int  # index of the piece in the prompts given
    text: str  # new text: the prompt text first, then each patch's chars
    result: PieceResult | None = None  # set on the last event of a piece (its text is "")


def split_header(text: str) -> tuple[str, str]:
    """(metadata lines, tune body from its first line on) of an ABC text; body "" when none."""
    offset = 0
    for raw in text.split("\n"):
        if raw.startswith(("[V:", "[r:")):
            return "".join(split_lines(text[:offset])), text[offset:]
        offset += len(raw) + 1
    return "".join(split_lines(text)), ""


# ---------------------------------------------------------------------------------------------
# One piece's text and context (the published loop's bookkeeping, no tensors)
# ---------------------------------------------------------------------------------------------
class Piece:
    def __init__(self, index: int, prompt: Prompt, patchilizer: Patchilizer, patch_length: int,
                 settings: GenerationSettings):
        self.index, self.prompt, self.settings = index, prompt, settings
        self.patchilizer, self.patch_length = patchilizer, patch_length
        self.patch_size = patchilizer.patch_size
        self.started = time.monotonic()
        self.patches = 0
        self.empty_run = 0
        self.cut: int | None = None  # c: body lines kept by a rebuild, fixed at the first one
        self.stream_events: list[int] = []
        self.status: str | None = None
        self.reason = ""
        self.text = prompt.prompt_text
        if prompt.text is None:
            # the prompt lines belong to the metadata that every stream rebuild keeps
            self.metadata, self.body, self.in_body = "".join(prompt.lines), "", False
            self.context = [patchilizer.bos_patch] + patchilizer.encode_metadata(list(prompt.lines))
            self.partial: list[int] = []
        else:
            self.metadata, self.body = split_header(prompt.text)
            self.in_body = True
            self.context, self.partial = [], []
            self._set_context(split_lines(self.body, keep_last_unfinished=True))
        self._check_limits()

    # -- the char decoder's view of the next patch ---------------------------------------------
    def prefix(self) -> list[int]:
        """Chars the next patch starts with (an open last patch of the context)."""
        return list(self.partial)

    def forced(self, new: list[int]) -> int | None:
        """A char that must come next, given the new chars of the patch so far (the `[r:0/` rule)."""
        if not self.in_body and not self.partial and new[:3] == R0_TRIGGER and 3 <= len(new) < 5:
            return R0_FORCED[len(new) - 3]
        return None

    def patch_done(self, new: list[int]) -> bool:
        return (new and new[-1] == EOS_ID) or len(self.partial) + len(new) >= self.patch_size

    # -- after the char decoder ------------------------------------------------------------------
    def add_patch(self, new: list[int]) -> tuple[str, bool]:
        """Append a generated patch; returns (its new text, whether the context was rebuilt)."""
        self.patches += 1
        if new[:2] == [BOS_ID, EOS_ID]:
            self._finish("finished")
            return "", False
        text = Patchilizer.patch_text(new)
        if not self.in_body and text.startswith("[r:"):
            self.in_body = True
        self.text += text
        if self.in_body:
            self.body += text
        else:
            self.metadata += text
        patch = self.partial + new
        patch += [PAD_ID] * (self.patch_size - len(patch))
        self.context.append(patch)
        self.partial = []
        self.empty_run = 0 if text else self.empty_run + 1
        if self._check_limits():
            return text, False
        if len(self.context) >= self.patch_length:
            return text, self.rebuild()
        return text, False

    def _check_limits(self) -> bool:
        if len(self.text) > self.settings.max_chars:
            self._finish("failed", "max_chars")
        elif time.monotonic() - self.started > self.settings.max_seconds:
            self._finish("failed", "max_seconds")
        elif self.empty_run >= self.settings.max_empty_patches > 0:
            self._finish("failed", "stalled")
        elif self.settings.max_patches is not None and self.patches >= self.settings.max_patches:
            self._finish("failed", "max_patches")
        return self.status is not None

    def _finish(self, status: str, reason: str = "") -> None:
        self.status, self.reason = status, reason

    @property
    def done(self) -> bool:
        return self.status is not None

    def result(self) -> PieceResult:
        return PieceResult(self.index, self.prompt, self.text, self.status or "failed", self.reason,
                           time.monotonic() - self.started, self.patches, self.stream_events)

    # -- stream continuation ---------------------------------------------------------------------
    def _body_lines(self) -> list[str]:
        """The body split as published: strip(), split on "\\n", "\\n" back on all but an open last line."""
        lines = self.body.strip().split("\n")
        ends_open = not self.body.endswith("\n")
        return [line + "\n" for line in lines[:-1]] + [lines[-1] + ("" if ends_open else "\n")]

    def rebuild(self) -> bool:
        """Context full: re-encode metadata + the last c body lines. False if the piece failed."""
        self.stream_events.append(len(self.text))
        if "\n" not in self.body:
            self._finish("failed", "metadata_overflow")  # nothing but metadata fills the context
            return False
        lines = self._body_lines()
        if self.cut is None:
            self.cut = len(lines) // 2
        self._set_context(lines[-self.cut:])  # lines[-0:] keeps all, as published
        return True

    def _set_context(self, lines: list[str]) -> None:
        """Context = encode_generate(metadata + lines), dropping front lines until it fits."""
        encode = self.patchilizer.encode_generate
        big = 1 << 30
        patches = encode(self.metadata + "".join(lines), big)
        while len(patches) > self.patch_length and len(lines) > 1:
            lines = lines[1:]
            patches = encode(self.metadata + "".join(lines), big)
        if len(patches) > self.patch_length:  # one unfinished line longer than the context
            head = [self.patchilizer.bos_patch] + self.patchilizer.encode_metadata(split_lines(self.metadata))
            if len(head) > self.patch_length // 2:
                head = [self.patchilizer.bos_patch]
            body = encode("".join(lines), big, add_special_patches=False)
            patches = head + body[len(body) - (self.patch_length - len(head)):]
        self.body = "".join(lines)
        if patches and len(patches[-1]) < self.patch_size:
            self.context, self.partial = patches[:-1], list(patches[-1])
        else:
            self.context, self.partial = patches, []


# ---------------------------------------------------------------------------------------------
# Cached GPT-2
# ---------------------------------------------------------------------------------------------
class _Linear:
    """transformers' Conv1D, y = x @ weight[in, out] + bias, on x [N, in].

    `packed`: on a CPU with oneDNN, a copy of the weight in oneDNN's blocked layout. MKL's sgemm
    re-packs the weight on every call, which makes a step with 2-16 rows cost 2-3x a one-row step;
    the pre-packed product is about 30% faster at 8 rows (benchmarks/generation.py). Used for
    batches only (one row is a matrix-vector product either way): it costs one weight copy."""

    def __init__(self, conv, packed: bool = False):
        self.weight, self.bias = conv.weight, conv.bias  # [in, out], [out]
        self.packed = _onednn_pack(conv.weight) if packed else None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is not None:
            return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")
        return torch.addmm(self.bias, x, self.weight)


def _onednn_pack(weight: torch.Tensor) -> torch.Tensor | None:
    """weight [in, out] -> oneDNN-packed [out, in], or None where that is unavailable or differs."""
    if weight.device.type != "cpu" or weight.dtype != torch.float32 or not torch.backends.mkldnn.is_available():
        return None
    try:
        packed = torch.ops.mkldnn._reorder_linear_weight(weight.t().contiguous(), 8)
        probe = torch.randn(3, weight.shape[0], generator=torch.Generator().manual_seed(0))
        got = torch.ops.mkldnn._linear_pointwise(probe, packed, None, "none", [], "")
        if torch.allclose(got, probe @ weight, rtol=1e-4, atol=1e-4):
            return packed
    except (AttributeError, RuntimeError):  # an op missing or refusing in another torch build
        pass
    return None


class _Block(NamedTuple):
    """One GPT-2 block's parameters."""
    ln_1: tuple  # (weight, bias, eps)
    attn: _Linear  # hidden -> 3*hidden (q, k, v)
    proj: _Linear  # hidden -> hidden
    ln_2: tuple
    fc: _Linear  # hidden -> 4*hidden
    out: _Linear  # 4*hidden -> hidden

    @classmethod
    def of(cls, block, packed: bool = False) -> "_Block":
        attn, mlp = block.attn, block.mlp
        return cls((block.ln_1.weight, block.ln_1.bias, block.ln_1.eps), _Linear(attn.c_attn, packed),
                   _Linear(attn.c_proj, packed), (block.ln_2.weight, block.ln_2.bias, block.ln_2.eps),
                   _Linear(mlp.c_fc, packed), _Linear(mlp.c_proj, packed))


def stack_blocks(stack, packed: bool = False) -> list[_Block]:
    return [_Block.of(block, packed) for block in stack.h]


def _layer_norm(x: torch.Tensor, params: tuple) -> torch.Tensor:
    weight, bias, eps = params
    return F.layer_norm(x, (x.shape[-1],), weight, bias, eps)


def _after_attention(block: _Block, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
    # x, attended: [N, hidden] -> the block's output [N, hidden] (attention projection + MLP, residuals)
    x = x + block.proj(attended)
    h = F.gelu(block.fc(_layer_norm(x, block.ln_2)), approximate="tanh")  # gelu_new
    return x + block.out(h)


class KVCache:
    """Key/value cache for a transformers GPT2Model, with its own small cached attention.

    Shapes: k[layer], v[layer]: [rows, heads, capacity, head_dim]; `lengths[r]` tokens of row r are
    cached (positions 0 .. lengths[r]-1). The stack's weights are used in place (no copies).
    API: `reset(rows)` forgets rows; `prefill(rows, x, lengths)` runs rows from position 0;
    `advance(x, rows)` adds one token per row at its own position; `keep(rows)` drops other rows.
    """

    def __init__(self, stack, rows: int, capacity: int, blocks: list[_Block] | None = None):
        # stack: transformers GPT2Model (wpe, h[i], ln_f); its wte is not used here.
        # blocks: the stack's blocks as `stack_blocks(stack, packed)` gives them (default: unpacked)
        self.blocks = blocks or stack_blocks(stack)
        self.wpe = stack.wpe.weight  # [n_positions, hidden]
        self.ln_f = (stack.ln_f.weight, stack.ln_f.bias, stack.ln_f.eps)
        self.hidden = stack.config.n_embd
        self.heads, self.head_dim = stack.config.n_head, self.hidden // stack.config.n_head
        self.capacity = capacity
        shape = (rows, self.heads, capacity, self.head_dim)
        like = dict(dtype=self.wpe.dtype, device=self.wpe.device)
        self.k = [torch.zeros(shape, **like) for _ in self.blocks]
        self.v = [torch.zeros(shape, **like) for _ in self.blocks]
        self.lengths = [0] * rows

    @property
    def rows(self) -> int:
        return len(self.lengths)

    def reset(self, rows: Iterable[int] | None = None) -> None:
        for r in (range(self.rows) if rows is None else rows):
            self.lengths[r] = 0

    def keep(self, rows: list[int]) -> None:
        index = torch.tensor(rows, device=self.wpe.device)
        self.k = [k.index_select(0, index) for k in self.k]
        self.v = [v.index_select(0, index) for v in self.v]
        self.lengths = [self.lengths[r] for r in rows]

    def prefill(self, rows: list[int], x: torch.Tensor, lengths: list[int]) -> torch.Tensor:
        """Rows start over with inputs x [R, T, hidden] (row i valid up to lengths[i], right-padded).

        Returns the final hidden state (after ln_f) at each row's last valid position: [R, hidden]."""
        R, T, hidden = x.shape
        H, D = self.heads, self.head_dim
        if T > self.capacity:
            raise ValueError(f"{T} positions do not fit a cache of {self.capacity}")
        index = torch.tensor(rows, device=x.device)
        x = (x + self.wpe[:T]).reshape(R * T, hidden)
        for block, k_all, v_all in zip(self.blocks, self.k, self.v):
            qkv = block.attn(_layer_norm(x, block.ln_1))  # [R*T, 3*hidden]
            q, k, v = qkv.view(R, T, 3, H, D).permute(2, 0, 3, 1, 4)  # each [R, H, T, D]
            k_all[index, :, :T] = k
            v_all[index, :, :T] = v
            # right padding: a causal mask keeps every valid position away from the padding
            attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # [R, H, T, D]
            x = _after_attention(block, x, attended.transpose(1, 2).reshape(R * T, hidden))
        for r, n in zip(rows, lengths):
            self.lengths[r] = n
        last = torch.tensor([i * T + n - 1 for i, n in enumerate(lengths)], device=x.device)
        return _layer_norm(x[last], self.ln_f)

    def advance(self, x: torch.Tensor, rows: list[int] | None = None) -> torch.Tensor:
        """One new token per row: x [B, hidden] for `rows` (default all) -> hidden after ln_f [B, hidden]."""
        all_rows = rows is None or len(rows) == self.rows
        rows = list(range(self.rows)) if rows is None else rows
        positions = [self.lengths[r] for r in rows]
        first, last = min(positions), max(positions)
        if last >= self.capacity:
            raise ValueError(f"cache full: {self.capacity} positions")
        B, hidden = x.shape
        H, D, T, device = self.heads, self.head_dim, last + 1, x.device
        pos = torch.tensor(positions, device=device)
        index = torch.arange(B, device=device) if all_rows else torch.tensor(rows, device=device)
        bias = None  # [B, 1, 1, T]: -inf where a row has no token yet
        if first != last:
            bias = torch.zeros(B, 1, 1, T, dtype=x.dtype, device=device).masked_fill_(
                (torch.arange(T, device=device) > pos[:, None])[:, None, None, :], float("-inf"))
        scale = 1.0 / math.sqrt(D)
        x = x + self.wpe[pos]  # [B, hidden]
        for block, k_all, v_all in zip(self.blocks, self.k, self.v):
            qkv = block.attn(_layer_norm(x, block.ln_1))  # [B, 3*hidden]
            q, k, v = qkv.view(B, 3, H, D).unbind(1)  # each [B, H, D]
            if all_rows and first == last:
                k_all[:, :, first] = k
                v_all[:, :, first] = v
            else:
                k_all[index, :, pos] = k
                v_all[index, :, pos] = v
            if all_rows:
                keys, values = k_all[:, :, :T], v_all[:, :, :T]  # views [B, H, T, D]
            else:
                keys, values = k_all[index, :, :T], v_all[index, :, :T]  # copies [B, H, T, D]
            # one query per row: plain matmuls beat SDPA's kernels on these strided cache views
            scores = torch.matmul(q.unsqueeze(2), keys.transpose(-1, -2)) * scale  # [B, H, 1, T]
            if bias is not None:
                scores = scores + bias
            attended = torch.matmul(torch.softmax(scores, dim=-1), values)  # [B, H, 1, D]
            x = _after_attention(block, x, attended.view(B, hidden))
        for r in rows:
            self.lengths[r] += 1
        return _layer_norm(x, self.ln_f)


# ---------------------------------------------------------------------------------------------
# Sampling with one random stream per piece
# ---------------------------------------------------------------------------------------------
def fresh_seed() -> int:
    """A random seed that leaves torch's global generator alone."""
    return random.SystemRandom().randrange(1 << 62)


def piece_seed(seed: int, index: int) -> int:
    return (seed * 0x9E3779B97F4A7C15 + index * 0xBF58476D1CE4E5B9 + 1) % (1 << 63)


def candidate_probs(logits: torch.Tensor, settings: GenerationSettings
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The published chain top-k -> top-p -> temperature on logits [B, V], in float64.

    With top-k the later steps only see the k survivors, so they run on [B, k] (same numbers as
    `filter_probs` on the full vector, far fewer ops): returns (probs [B, k], their ids [B, k]).
    Without top-k: (probs [B, V], None)."""
    if logits.device.type == "mps":  # no float64 on Apple GPUs: [B, 128] is cheap to move
        logits = logits.cpu()
    probs = torch.softmax(logits.double(), dim=-1)
    if 0 < settings.top_k < probs.shape[-1]:
        top, ids = probs.topk(settings.top_k, dim=-1)  # sorted, descending
        top = top / top.sum(dim=-1, keepdim=True)
        return filter_probs(top, 0, settings.top_p, settings.temperature), ids
    return filter_probs(probs, 0, settings.top_p, settings.temperature), None


def sample_rows(logits: torch.Tensor, generators: list[torch.Generator | None],
                settings: GenerationSettings) -> list[int]:
    """One char id per row of logits [B, 128]: greedy argmax, or top-k -> top-p -> temperature,
    drawing row b's uniform number from generators[b]."""
    if settings.greedy or settings.top_k == 1:
        return logits.argmax(dim=-1).tolist()
    probs, ids = candidate_probs(logits, settings)
    cdf = probs.cumsum(dim=-1)  # [B, K]
    u = torch.stack([torch.rand((), dtype=torch.float64, generator=g) for g in generators])
    u = u.to(probs.device)[:, None] * cdf[:, -1:]
    choice = torch.searchsorted(cdf, u, right=True).clamp_(max=probs.shape[-1] - 1)  # [B, 1]
    return (choice if ids is None else ids.gather(-1, choice))[:, 0].tolist()


# ---------------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------------
class Engine:
    """Generates pieces from a NotaGenLMHeadModel: `stream(...)` yields text as it is written."""

    def __init__(self, model, patchilizer: Patchilizer | None = None, pack: str = "auto"):
        """pack: oneDNN-packed weight copies for batches on CPU ("auto": the char-level decoder,
        "all": both decoders, "none"); see `_Linear`."""
        self.pack = pack
        self._blocks: dict = {}
        self.model = model.eval()
        self.config = model.config
        self.patchilizer = patchilizer or Patchilizer(self.config.patch_size)
        self.patch_embedding = model.patch_level_decoder.patch_embedding
        self.patch_stack = model.patch_level_decoder.base  # GPT2Model
        self.char_stack = model.char_level_decoder.base.transformer  # GPT2Model
        self.lm_head = model.char_level_decoder.base.lm_head
        self.device = self.patch_embedding.weight.device

    # -- helpers ---------------------------------------------------------------------------------
    def _stack_blocks(self, stack, rows: int) -> list[_Block]:
        wanted = {"auto": (self.char_stack,), "all": (self.char_stack, self.patch_stack)}.get(self.pack, ())
        packed = rows > 1 and self.device.type == "cpu" and any(stack is s for s in wanted)
        key = (id(stack), packed)
        if key not in self._blocks:
            self._blocks[key] = stack_blocks(stack, packed)
        return self._blocks[key]

    def _embed_patches(self, patches: list[list[int]]) -> torch.Tensor:
        ids = torch.tensor(patches, dtype=torch.long, device=self.device)  # [N, P]
        return self.patch_embedding(ids[None])[0]  # [N, hidden]

    def _prefill_patches(self, cache: KVCache, rows: list[int], pieces: list[Piece]) -> torch.Tensor:
        """Patch-level prefill of whole contexts -> last feature per row [R, hidden]."""
        lengths = [len(p.context) for p in pieces]
        T = max(lengths)
        padded = [p.context + [p.context[-1]] * (T - len(p.context)) for p in pieces]
        ids = torch.tensor(padded, dtype=torch.long, device=self.device)  # [R, T, P]
        return cache.prefill(rows, self.patch_embedding(ids), lengths)

    def _char_round(self, cache: KVCache, features: torch.Tensor, pieces: list[Piece],
                    generators: list, settings: GenerationSettings) -> list[list[int]]:
        """Every piece writes its next patch: features [B, hidden] -> new char ids per piece."""
        wte = self.char_stack.wte.weight
        prefixes = [p.prefix() for p in pieces]
        lengths = [1 + len(prefix) for prefix in prefixes]
        x = features.new_zeros(len(pieces), max(lengths), features.shape[-1])  # [B, T, hidden]
        x[:, 0] = features
        for b, prefix in enumerate(prefixes):
            if prefix:
                x[b, 1:1 + len(prefix)] = wte[torch.tensor(prefix, device=self.device)]
        cache.reset()
        logits = self.lm_head(cache.prefill(list(range(len(pieces))), x, lengths))  # [B, 128]
        new: list[list[int]] = [[] for _ in pieces]
        active = list(range(len(pieces)))
        while True:
            ids = sample_rows(logits, [generators[b] for b in active], settings)
            still = []
            for b, char in zip(active, ids):
                forced = pieces[b].forced(new[b])
                new[b].append(char if forced is None else forced)
                if not pieces[b].patch_done(new[b]):
                    still.append(b)
            if not still:
                return new
            chars = torch.tensor([new[b][-1] for b in still], device=self.device)
            active = still
            logits = self.lm_head(cache.advance(wte[chars], rows=active if len(active) < cache.rows else None))

    # -- the generator ---------------------------------------------------------------------------
    @torch.inference_mode()
    def stream(self, prompts: Iterable[Prompt], settings: GenerationSettings | None = None
               ) -> Iterator[GenerationEvent]:
        """Generate one piece per prompt; yields GenerationEvent(piece, text, result) as text appears.

        The first event of a piece carries its prompt text; the last one its PieceResult."""
        settings = settings or GenerationSettings()
        seed = settings.seed if settings.seed is not None else fresh_seed()
        queue = deque(enumerate(prompts))
        slots = min(settings.batch_size, len(queue))
        if not slots:
            return
        patch_cache = KVCache(self.patch_stack, slots, self.config.patch_length,
                              self._stack_blocks(self.patch_stack, slots))
        char_cache = KVCache(self.char_stack, slots, self.config.patch_size + 1,
                             self._stack_blocks(self.char_stack, slots))
        pieces: list[Piece | None] = [None] * slots
        generators: list[torch.Generator | None] = [None] * slots
        features = torch.zeros(slots, self.config.hidden_size, dtype=self.patch_embedding.weight.dtype,
                               device=self.device)
        to_prefill = list(range(slots))  # rows whose context must be run from scratch
        while True:
            # give free rows to waiting pieces
            for row in range(len(pieces)):
                while pieces[row] is None and queue:
                    index, prompt = queue.popleft()
                    piece = Piece(index, prompt, self.patchilizer, self.config.patch_length, settings)
                    yield GenerationEvent(index, piece.text)
                    if piece.done:  # e.g. a prompt already longer than max_chars
                        yield GenerationEvent(index, "", piece.result())
                        continue
                    pieces[row] = piece
                    generators[row] = torch.Generator().manual_seed(piece_seed(seed, index))
                    if row not in to_prefill:
                        to_prefill.append(row)
            live = [row for row, piece in enumerate(pieces) if piece is not None]
            if not live:
                return
            if len(live) < len(pieces):  # no one waits for the free rows: drop them
                patch_cache.keep(live)
                char_cache = KVCache(self.char_stack, len(live), self.config.patch_size + 1,
                                     self._stack_blocks(self.char_stack, slots))
                features = features[live]
                to_prefill = [live.index(r) for r in to_prefill if r in live]
                pieces = [pieces[r] for r in live]
                generators = [generators[r] for r in live]
            if to_prefill:
                features[to_prefill] = self._prefill_patches(patch_cache, to_prefill,
                                                             [pieces[r] for r in to_prefill])
                to_prefill = []

            new = self._char_round(char_cache, features, pieces, generators, settings)

            advance_rows, advance_patches = [], []
            for row, piece in enumerate(pieces):
                text, rebuilt = piece.add_patch(new[row])
                yield GenerationEvent(piece.index, text)
                if piece.done:
                    yield GenerationEvent(piece.index, "", piece.result())
                    pieces[row] = None
                elif rebuilt:
                    to_prefill.append(row)
                else:
                    advance_rows.append(row)
                    advance_patches.append(piece.context[-1])
            if advance_rows:
                hidden = patch_cache.advance(self._embed_patches(advance_patches),
                                             rows=None if len(advance_rows) == patch_cache.rows else advance_rows)
                features[advance_rows] = hidden

    def generate(self, prompts: Iterable[Prompt], settings: GenerationSettings | None = None
                 ) -> list[PieceResult]:
        """All pieces, in prompt order."""
        results = {}
        for event in self.stream(prompts, settings):
            if event.result is not None:
                results[event.piece] = event.result
        return [results[i] for i in sorted(results)]


# ---------------------------------------------------------------------------------------------
# The published loop's structure: no caches, one piece (reference and benchmark baseline)
# ---------------------------------------------------------------------------------------------
@torch.inference_mode()
def reference_generate(model, prompt: Prompt, settings: GenerationSettings | None = None
                       ) -> Iterator[GenerationEvent]:
    """Every patch re-runs the whole context through the patch-level decoder, every char re-runs
    the patch so far through the char-level decoder, as the published loop does."""
    settings = settings or GenerationSettings()
    model.eval()
    config = model.config
    patchilizer = Patchilizer(config.patch_size)
    device = model.patch_level_decoder.patch_embedding.weight.device
    seed = settings.seed if settings.seed is not None else fresh_seed()
    generator = torch.Generator().manual_seed(piece_seed(seed, 0))
    piece = Piece(0, prompt, patchilizer, config.patch_length, settings)
    yield GenerationEvent(0, piece.text)
    char_model = model.char_level_decoder.base
    while not piece.done:
        context = torch.tensor([piece.context], dtype=torch.long, device=device)  # [1, N, P]
        feature = model.patch_level_decoder(context).last_hidden_state[:, -1:]  # [1, 1, hidden]
        new: list[int] = []
        while True:
            chars = torch.tensor([piece.prefix() + new], dtype=torch.long, device=device)
            inputs = torch.cat([feature, char_model.transformer.wte(chars)], dim=1)
            logits = char_model(inputs_embeds=inputs).logits[:, -1]  # [1, 128]
            char = sample_rows(logits, [generator], settings)[0]
            forced = piece.forced(new)
            new.append(char if forced is None else forced)
            if piece.patch_done(new):
                break
        text, _ = piece.add_patch(new)
        yield GenerationEvent(0, text)
    yield GenerationEvent(0, "", piece.result())
