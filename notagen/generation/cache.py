"""A key/value cache over a transformers GPT-2 stack: plain storage plus a small cached attention.

- `KVCache` runs a GPT-2 stack's own weights (no copies) with a cached attention: `prefill` a few
  rows from scratch, `advance` every row by one token at its own position. Rows have their own
  lengths and attend through a length mask, so pieces of different context lengths share every
  matrix product; `keep(rows)` drops the rows of finished pieces.
- On CPU, batches run the matrix products on oneDNN-packed copies of the weights (`_Linear`):
  MKL re-packs a weight on every call for 2-16 rows.
- A block product that is not a Conv1D (an int8 Linear of `notagen.quantize`) is called as it is:
  its kernel keeps its own packed weights, and the cache and attention stay float32.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable, NamedTuple

import torch
import torch.nn.functional as F
from transformers.pytorch_utils import Conv1D

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


PACKED_DTYPES = {torch.float32: 1e-4, torch.bfloat16: 3e-2}  # dtype -> tolerance of the packing probe


def _onednn_pack(weight: torch.Tensor) -> torch.Tensor | None:
    """weight [in, out] -> oneDNN-packed [out, in], or None where that is unavailable or differs.
    In bfloat16 this is what makes a CPU's bf16 units (AMX, AVX512-BF16) do the work: unpacked bf16
    products are slower than float32 ones (benchmarks/bf16.py)."""
    tolerance = PACKED_DTYPES.get(weight.dtype)
    if weight.device.type != "cpu" or tolerance is None or not torch.backends.mkldnn.is_available():
        return None
    try:
        packed = torch.ops.mkldnn._reorder_linear_weight(weight.t().contiguous(), 8)
        probe = torch.randn(3, weight.shape[0], generator=torch.Generator().manual_seed(0)).to(weight.dtype)
        got = torch.ops.mkldnn._linear_pointwise(probe, packed, None, "none", [], "")
        expected = probe.float() @ weight.float()
        if torch.allclose(got.float(), expected, rtol=tolerance, atol=tolerance * expected.abs().max().item()):
            return packed
    except (AttributeError, RuntimeError):  # an op missing or refusing in another torch build
        pass
    return None


def _product(module, packed: bool = False) -> Callable[[torch.Tensor], torch.Tensor]:
    """A block product x [N, in] -> [N, out]: a Conv1D as `_Linear`, any other module (int8) as it is."""
    return _Linear(module, packed) if isinstance(module, Conv1D) else module


class _Block(NamedTuple):
    """One GPT-2 block's parameters."""
    ln_1: tuple  # (weight, bias, eps)
    attn: Callable  # hidden -> 3*hidden (q, k, v)
    proj: Callable  # hidden -> hidden
    ln_2: tuple
    fc: Callable  # hidden -> 4*hidden
    out: Callable  # 4*hidden -> hidden

    @classmethod
    def of(cls, block, packed: bool = False) -> "_Block":
        attn, mlp = block.attn, block.mlp
        return cls((block.ln_1.weight, block.ln_1.bias, block.ln_1.eps), _product(attn.c_attn, packed),
                   _product(attn.c_proj, packed), (block.ln_2.weight, block.ln_2.bias, block.ln_2.eps),
                   _product(mlp.c_fc, packed), _product(mlp.c_proj, packed))


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
    `advance(x, rows)` adds one token per row at its own position; `rewind(row, n)` cuts a row back;
    `keep(rows)` drops other rows.
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

    def rewind(self, row: int, length: int) -> None:
        """Row `row` keeps its first `length` tokens; later ones are overwritten by the next advance."""
        if not 0 <= length <= self.lengths[row]:
            raise ValueError(f"cannot rewind row {row} of {self.lengths[row]} tokens to {length}")
        self.lengths[row] = length

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
