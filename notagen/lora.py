"""LoRA adapters (through `peft`) and gradient checkpointing for the NotaGen model.

    add_lora(model, rank=8)              # adapters on both decoders' GPT-2 layers; the rest frozen
    with adapters_disabled(model): ...   # the base model (e.g. DPOP's frozen reference)
    merged_state_dict(model)             # published layout: base + adapters, no peft keys
    adapter_state_dict(model)            # the adapter weights alone (small resume checkpoints)

Design choices
- `peft.inject_adapter_in_model` puts LoRA layers into the model in place, so it stays a
  `NotaGenLMHeadModel` (its forward, `sequence_logp`, config and the training loop unchanged).
  GPT-2's layers are transformers `Conv1D` (weight [in, out]): peft handles them with
  `fan_in_fan_out=True`.
- Targets are module names: `c_attn` (q, k, v), `c_proj` (attention and MLP output), `c_fc` (MLP
  input), in both decoders. Only `lora_` parameters train; the patch embedding, layer norms and the
  LM head stay as pre-trained.
- A merged file is what inference and the demo read like any other checkpoint: each adapted
  weight becomes `W + B A * alpha / rank` (`get_delta_weight`), keys lose peft's `base_layer.`.
- Checkpointing recomputes each GPT-2 block in the backward pass (non-reentrant, which works with
  frozen inputs), trading about a third more compute for activations of one block per decoder.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch

from .errors import CheckpointError

LORA_TARGETS = "c_attn,c_proj,c_fc"  # every linear layer of both GPT-2 decoders


@dataclass(frozen=True)
class LoraSettings:
    rank: int = 8  # 0 = no adapters (full fine-tuning)
    alpha: float = 16.0  # the update is scaled by alpha / rank
    dropout: float = 0.0  # dropout on the adapters' input
    targets: str = LORA_TARGETS  # comma list of module names to adapt

    def to_dict(self) -> dict:
        return {"rank": self.rank, "alpha": self.alpha, "dropout": self.dropout, "targets": self.targets}


def lora_settings(settings) -> LoraSettings | None:
    """The adapters a stage's settings ask for (`lora_rank` 0 or missing: None)."""
    rank = int(getattr(settings, "lora_rank", 0) or 0)
    if rank <= 0:
        return None
    return LoraSettings(rank, float(getattr(settings, "lora_alpha", LoraSettings.alpha)),
                        float(getattr(settings, "lora_dropout", LoraSettings.dropout)),
                        str(getattr(settings, "lora_targets", "") or LoraSettings.targets))


def add_lora(model: torch.nn.Module, lora: LoraSettings) -> torch.nn.Module:
    """Adapters on `lora.targets` of both decoders, in place; every other parameter is frozen."""
    from peft import LoraConfig, inject_adapter_in_model  # lazy: peft takes seconds to import, only LoRA runs need it

    targets = [name.strip() for name in lora.targets.split(",") if name.strip()]
    if not targets:
        raise ValueError("lora_targets names no module (e.g. c_attn,c_proj,c_fc)")
    config = LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets,
                        fan_in_fan_out=True, bias="none")
    try:
        inject_adapter_in_model(config, model)
    except ValueError as error:  # peft: "Target modules ... not found in the base model"
        raise ValueError(f"lora_targets {lora.targets!r}: {error}") from None
    for name, parameter in model.named_parameters():
        parameter.requires_grad_("lora_" in name)
    model.lora = lora
    return model


def has_lora(model: torch.nn.Module) -> bool:
    return getattr(getattr(model, "module", model), "lora", None) is not None


def _tuner_layers(model: torch.nn.Module):
    from peft.tuners.tuners_utils import BaseTunerLayer  # lazy: peft, as in add_lora

    return [module for module in model.modules() if isinstance(module, BaseTunerLayer)]


@contextmanager
def adapters_disabled(model: torch.nn.Module):
    """The base model inside the block (adapters bypassed, not removed)."""
    layers = _tuner_layers(model)
    for layer in layers:
        layer.enable_adapters(False)
    try:
        yield model
    finally:
        for layer in layers:
            layer.enable_adapters(True)


def adapter_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in model.state_dict().items() if "lora_" in k}


def load_adapter_state(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Adapter weights into a model that has the same adapters (every key must fit)."""
    own = adapter_state_dict(model)
    missing, unknown = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unknown:
        raise CheckpointError(f"{source} does not fit the model's adapters: missing {missing[:3]}, "
                              f"unexpected {unknown[:3]} (same lora_rank and lora_targets as the run?)")
    model.load_state_dict(state, strict=False)


@torch.no_grad()
def merged_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The published layout with every adapter folded into its weight (the model is not changed)."""
    merged = {}
    deltas = {}
    for name, module in model.named_modules():
        if hasattr(module, "get_delta_weight") and hasattr(module, "base_layer"):
            deltas[f"{name}.weight"] = module.get_delta_weight("default")
    for key, value in model.state_dict().items():
        if "lora_" in key:
            continue
        key = key.replace(".base_layer.", ".")
        value = value.detach()
        if key in deltas:
            value = value + deltas[key].to(value.dtype)
        merged[key] = value.cpu()
    return merged


def enable_gradient_checkpointing(model: torch.nn.Module) -> None:
    """Recompute each GPT-2 block of both decoders in the backward pass."""
    for stack in (model.patch_level_decoder.base, model.char_level_decoder.base):
        if hasattr(stack, "activation_checkpointing_enable"):  # transformers >= 5.x's name
            stack.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            stack.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        stack.config.use_cache = False
