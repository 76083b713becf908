"""int8 generation on the CPU: every linear layer of both decoders as an int8 product.

Design choices
- Library: `torch.ao.nn.quantized.dynamic.Linear` (PyTorch's fbgemm / oneDNN x86 kernels, VNNI
  where the CPU has it). Weights are int8 with one scale per output channel; each call quantizes its
  float32 input with one scale for the whole call (dynamic quantization; 7-bit steps, the kernels'
  `reduce_range`), multiplies in int8 with int32 sums, and returns float32. At batch 1 a char step is a matrix-vector product over
  the char decoder's weights, bound by memory bandwidth: int8 reads a quarter of the bytes.
  torchao 0.18's int8 configs (weight-only and dynamic) run several times slower than float32 on a
  CPU without its kernel library or torch.compile (docs/history.md), so torch.ao it is. PyTorch has
  deprecated its quantized tensors (the warnings at quantization are silenced by message here).
- What is int8: the four products of every GPT-2 block of both decoders (`attn.c_attn`,
  `attn.c_proj`, `mlp.c_fc`, `mlp.c_proj`) and the char-level LM head. transformers' GPT-2 uses
  `Conv1D` (weight [in, out]) for the block products, which torch.ao does not know: each becomes an
  `nn.Linear` (weight [out, in]) first. The patch embedding stays float32: it is a gather-and-sum
  of 16 columns (no product). Embeddings, layer norms, the KV cache and attention stay float32.
- One activation scale per call: a row's result depends on the other rows of its call, so int8
  pieces at batch 8 are not those of batch 1 (in float32 only rounding differs), and the cached
  engine's logits differ from the uncached loop's by quantization noise, not by rounding.
- Memory: the float32 model never exists whole. Each block is materialised in float32 (from a
  checkpoint read with mmap, or random), quantized, and its float weights dropped; on Linux the
  file pages of a converted block are given back (`madvise`). For a large model (`LARGE_MODEL`)
  allocations of 1 MiB and more are then mapped on their own (`mallopt`, process-wide from its
  load on) so that freed blocks and the prefill's activations go back to the system; small models
  leave the process's allocator alone. The peak is about one float32 block over
  the int8 model.
- CPU only: `--dtype int8` on a GPU is refused (`notagen.generation.setup.resolve_dtype`).
"""
from __future__ import annotations

import ctypes
import mmap
import sys
import warnings
from typing import Callable, Iterator

import torch
from torch import nn
from torch.ao.nn.quantized.dynamic import Linear as Int8Linear
from torch.ao.quantization import per_channel_dynamic_qconfig
from transformers.pytorch_utils import Conv1D

from .model import NotaGenLMHeadModel

INT8 = torch.int8  # the generation `dtype` that means int8 products with float32 everything else
BLOCK_PRODUCTS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")  # GPT-2 block submodules
LARGE_MODEL = 50_000_000  # parameters from which loading int8 also maps large allocations on their own
# PyTorch's deprecation of quantized tensors, printed at every quantization (not at generation)
_DEPRECATION = r"torch\.quantize_per_tensor, torch\.quantize_per_channel .* are deprecated"


def int8_linear(weight: torch.Tensor, bias: torch.Tensor | None) -> Int8Linear:
    """weight [out, in], bias [out] or None (any float dtype) -> a torch.ao dynamic int8 Linear."""
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
    linear.weight = nn.Parameter(weight.detach().float(), requires_grad=False)
    if bias is not None:
        linear.bias = nn.Parameter(bias.detach().float(), requires_grad=False)
    linear.qconfig = per_channel_dynamic_qconfig
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_DEPRECATION, category=UserWarning)
        return Int8Linear.from_float(linear)


def quantize_module(module: nn.Module) -> Int8Linear:
    """A Conv1D (y = x @ W[in, out] + b) or nn.Linear (y = x @ W[out, in].T + b) as an int8 Linear."""
    if isinstance(module, Conv1D):
        return int8_linear(module.weight.t(), module.bias)
    if type(module) is nn.Linear:
        return int8_linear(module.weight, module.bias)
    raise TypeError(f"cannot quantize a {type(module).__name__}")


def quantize_block(block: nn.Module) -> None:
    """One GPT-2 block's four products -> int8, in place."""
    for name in BLOCK_PRODUCTS:
        owner, _, attribute = name.rpartition(".")
        parent = block.get_submodule(owner)
        setattr(parent, attribute, quantize_module(getattr(parent, attribute)))


def decoder_blocks(model: NotaGenLMHeadModel) -> Iterator[tuple[str, nn.Module]]:
    """(state-dict prefix, block) of every GPT-2 block of both decoders."""
    for prefix, stack in (("patch_level_decoder.base.h.", model.patch_level_decoder.base.h),
                          ("char_level_decoder.base.transformer.h.", model.char_level_decoder.base.transformer.h)):
        for i, block in enumerate(stack):
            yield f"{prefix}{i}.", block


def quantize_model(model: NotaGenLMHeadModel) -> NotaGenLMHeadModel:
    """A float NotaGen model's linear layers -> int8, in place, block by block (the float weights of a
    block are freed as it is converted, unless something else holds them); returns the model."""
    for _, block in decoder_blocks(model):
        quantize_block(block)
    char_model = model.char_level_decoder.base
    char_model.lm_head = quantize_module(char_model.lm_head)
    return model.eval()


def float_products(model: nn.Module) -> list[str]:
    """Names of the modules that still multiply in floating point: Linear (bar the patch embedding,
    a gather) and Conv1D. Empty for an int8 model."""
    return [name for name, module in model.named_modules()
            if isinstance(module, Conv1D) or (isinstance(module, nn.Linear) and not name.endswith("patch_embedding"))]


def is_int8(model: nn.Module) -> bool:
    return any(isinstance(module, Int8Linear) for module in model.modules())


# ---------------------------------------------------------------------------------------------
# Building an int8 model without the whole float32 model in memory
# ---------------------------------------------------------------------------------------------
def int8_model(config, tensor: Callable[[str, torch.Tensor], torch.Tensor],
               release: Callable[[list[torch.Tensor]], None] | None = None) -> NotaGenLMHeadModel:
    """An int8 NotaGen model whose float weights come one block at a time from `tensor(key, like)`
    (key: a state-dict key; like: the meta tensor of its shape). `release(tensors)` is called with
    the tensors `tensor` gave for a block once the block is converted (`release_pages` for a
    checkpoint read with mmap). Every float tensor the model keeps is a copy."""
    with torch.device("meta"):
        model = NotaGenLMHeadModel(config)
    if sum(p.numel() for p in model.parameters()) >= LARGE_MODEL:
        map_large_allocations()
    for prefix, block in decoder_blocks(model):
        given = {key: tensor(prefix + key, like) for key, like in block.state_dict().items()}
        block.load_state_dict({key: value.float() for key, value in given.items()}, assign=True)
        quantize_block(block)
        _own_copies(block)  # its layer norms
        if release is not None:
            release(list(given.values()))
        del given
    in_blocks = tuple(prefix for prefix, _ in decoder_blocks(model))
    for name, module in model.named_modules():
        own = dict(module.named_parameters(recurse=False), **dict(module.named_buffers(recurse=False)))
        if own and not f"{name}.".startswith(in_blocks):
            module.load_state_dict({key: tensor(f"{name}.{key}", like).float() for key, like in own.items()},
                                   strict=False, assign=True)
            _own_copies(module)
    char_model = model.char_level_decoder.base
    char_model.lm_head = quantize_module(char_model.lm_head)
    return model.eval()


def _own_copies(module: nn.Module) -> None:
    """Every float parameter and buffer of `module` -> its own copy (none left on a file's pages)."""
    for owner in module.modules():
        for name, value in list(owner.named_parameters(recurse=False)):
            setattr(owner, name, nn.Parameter(value.detach().clone(), requires_grad=False))
        for name, value in list(owner.named_buffers(recurse=False)):
            setattr(owner, name, value.clone())


def random_tensor(generator: torch.Generator) -> Callable[[str, torch.Tensor], torch.Tensor]:
    """Random weights for benchmarks, GPT-2's initialisation: N(0, 0.02) weights, zero biases, unit
    layer-norm scales."""
    def tensor(key: str, like: torch.Tensor) -> torch.Tensor:
        if key.endswith(".bias"):
            return torch.zeros(like.shape)
        if key.split(".")[-2].startswith("ln"):  # ln_1, ln_2, ln_f
            return torch.ones(like.shape)
        return torch.empty(like.shape).normal_(0.0, 0.02, generator=generator)
    return tensor


def random_int8_model(config, seed: int = 0) -> NotaGenLMHeadModel:
    """An int8 model of random weights (`random_tensor`), built block by block."""
    return int8_model(config, random_tensor(torch.Generator().manual_seed(seed)))


def map_large_allocations() -> None:
    """From now on this process gets every allocation of 1 MiB or more as its own memory map, given
    back to the system when freed (glibc `mallopt(M_MMAP_THRESHOLD)`; elsewhere nothing). glibc's
    own threshold grows with each freed large block up to 32 MiB, and then keeps the freed float
    blocks and the prefill's activations in a heap that cannot shrink past the int8 weights."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None).mallopt(-3, 1 << 20)  # -3 = M_MMAP_THRESHOLD
        except AttributeError:  # a C library without it (musl)
            pass


def release_pages(tensors: list[torch.Tensor]) -> None:
    """Give back the memory pages wholly inside these tensors (Linux `madvise(MADV_DONTNEED)`): for
    tensors read from a file with mmap, a later read would load them from the file again. Elsewhere
    nothing is done."""
    if not sys.platform.startswith("linux"):
        return
    madvise = ctypes.CDLL(None, use_errno=True).madvise
    page = mmap.PAGESIZE
    for t in tensors:
        start = -(-t.data_ptr() // page) * page
        end = (t.data_ptr() + t.numel() * t.element_size()) // page * page
        if end > start:
            madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), 4)  # 4 = MADV_DONTNEED
