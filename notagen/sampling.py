"""Next-char sampling on the device, batched: top-k, then top-p, then temperature.

Same semantics as the `samplings` package the published code calls one distribution at a time
(checked against tests/vectors/sampling.json):
- top-k keeps the k most probable ids (k <= 0: all) and renormalises;
- top-p keeps the most probable ids until their cumulative probability first exceeds p
  (that id included; p outside (0, 1): all) and renormalises;
- temperature T turns p into p^(1/T), rescaled to the input's total (zeros stay zero; T == 1:
  unchanged).
"""
from __future__ import annotations

import torch


def top_k_filter(probs: torch.Tensor, top_k: int) -> torch.Tensor:
    # probs: [B, V] -> [B, V]
    if top_k <= 0 or top_k >= probs.shape[-1]:
        return probs
    kept = torch.topk(probs, top_k, dim=-1)
    filtered = torch.zeros_like(probs).scatter(-1, kept.indices, kept.values)
    return filtered / filtered.sum(dim=-1, keepdim=True)


def top_p_filter(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    # probs: [B, V] -> [B, V]
    if not 0 < top_p < 1:
        return probs
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
    cumulative = sorted_probs.double().cumsum(dim=-1)  # float64, as the reference (numpy) sums
    # drop an id when the ids before it already exceed top_p (the crossing id is kept)
    drop_sorted = torch.zeros_like(cumulative, dtype=torch.bool)
    drop_sorted[:, 1:] = cumulative[:, :-1] > top_p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    filtered = probs.masked_fill(drop, 0.0)
    return filtered / filtered.sum(dim=-1, keepdim=True)


def apply_temperature(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    # probs: [B, V] -> [B, V]
    if temperature == 1:
        return probs
    total = probs.sum(dim=-1, keepdim=True)  # the reference keeps the input's total mass
    logits = torch.log(probs / total) / temperature  # log(0) = -inf stays excluded
    return torch.softmax(logits, dim=-1) * total


def filter_probs(probs: torch.Tensor, top_k: int = 0, top_p: float = 1.0,
                 temperature: float = 1.0) -> torch.Tensor:
    """The published chain: top-k, then top-p, then temperature."""
    return apply_temperature(top_p_filter(top_k_filter(probs, top_k), top_p), temperature)


def sample_next(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0, temperature: float = 1.0,
                generator: torch.Generator | None = None, greedy: bool = False) -> torch.Tensor:
    """One id per row from logits [B, V] -> [B]. Greedy (or top_k == 1) takes the argmax."""
    if greedy or top_k == 1:
        return logits.argmax(dim=-1)
    probs = filter_probs(torch.softmax(logits.double(), dim=-1), top_k, top_p, temperature)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


# ---- one random stream per piece, batched (the generation engine) -----------------------------
def fresh_seed() -> int:
    """A random seed that leaves torch's global generator alone."""
    import random

    return random.SystemRandom().randrange(1 << 62)


def piece_seed(seed: int, index: int) -> int:
    """The seed of piece `index` of a run seeded with `seed` (the same at any batch size)."""
    return (seed * 0x9E3779B97F4A7C15 + index * 0xBF58476D1CE4E5B9 + 1) % (1 << 63)


def candidate_probs(logits: torch.Tensor, top_k: int, top_p: float, temperature: float
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The published chain top-k -> top-p -> temperature on logits [B, V], in float64.

    With top-k the later steps only see the k survivors, so they run on [B, k] (same numbers as
    `filter_probs` on the full vector, far fewer ops): returns (probs [B, k], their ids [B, k]).
    Without top-k: (probs [B, V], None)."""
    if logits.device.type == "mps":  # no float64 on Apple GPUs: [B, 128] is cheap to move
        logits = logits.cpu()
    probs = torch.softmax(logits.double(), dim=-1)
    if 0 < top_k < probs.shape[-1]:
        top, ids = probs.topk(top_k, dim=-1)  # sorted, descending
        top = top / top.sum(dim=-1, keepdim=True)
        return filter_probs(top, 0, top_p, temperature), ids
    return filter_probs(probs, 0, top_p, temperature), None


def restrict_rows(logits: torch.Tensor, allowed: list[list[int] | None]) -> torch.Tensor:
    """logits [B, V] with every id outside allowed[b] at -inf (rows whose allowed is None stay)."""
    if all(ids is None for ids in allowed):
        return logits
    keep = torch.ones_like(logits, dtype=torch.bool)
    for row, ids in enumerate(allowed):
        if ids is not None:
            keep[row] = False
            keep[row, ids] = True
    return logits.masked_fill(~keep, float("-inf"))


def sample_rows(logits: torch.Tensor, generators: list, top_k: int, top_p: float, temperature: float,
                greedy: bool = False) -> list[int]:
    """One id per row of logits [B, V]: greedy argmax (or top_k == 1), else top-k -> top-p ->
    temperature, drawing row b's uniform number from generators[b]."""
    if greedy or top_k == 1:
        return logits.argmax(dim=-1).tolist()
    probs, ids = candidate_probs(logits, top_k, top_p, temperature)
    cdf = probs.cumsum(dim=-1)  # [B, K]
    u = torch.stack([torch.rand((), dtype=torch.float64, generator=g) for g in generators])
    u = u.to(probs.device)[:, None] * cdf[:, -1:]
    choice = torch.searchsorted(cdf, u, right=True).clamp_(max=probs.shape[-1] - 1)  # [B, 1]
    return (choice if ids is None else ids.gather(-1, choice))[:, 0].tolist()
