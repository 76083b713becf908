"""DPOP, the preference loss of CLaMP-DPO, as a pure function of four summed log-prob tensors.

loss = -logsigmoid(beta * ((pc - pr) - (rc - rr) - lam * max(0, rc - pc)))
pc/pr: policy log-probs of the chosen/rejected texts; rc/rr: the frozen reference's. The lambda
term (DPO-Positive) penalises the policy for making the chosen text less likely than the
reference did, which plain DPO allows. Rewards are beta * (policy - reference) per text.

`nll_weight` > 0 adds the chosen text's negative log-likelihood per character (RPO, Pang et al.
2024, "Iterative Reasoning Preference Optimization"): once the sigmoid saturates (the rejected
text pushed far down) the DPOP term stops teaching, the NLL term keeps raising the chosen text.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def dpop_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
              ref_rejected: torch.Tensor, beta: float = 0.1, lam: float = 10.0,
              nll_weight: float = 0.0, chosen_length: torch.Tensor | None = None):
    """-> (losses [B], chosen_rewards [B], rejected_rewards [B]); all inputs [B] summed log-probs,
    `chosen_length` [B] the chosen texts' character counts (needed when `nll_weight` > 0)."""
    margin = (policy_chosen - policy_rejected) - (ref_chosen - ref_rejected)
    penalty = lam * torch.clamp(ref_chosen - policy_chosen, min=0)
    losses = -F.logsigmoid(beta * (margin - penalty))
    if nll_weight:
        if chosen_length is None:
            raise ValueError("nll_weight needs chosen_length (characters of each chosen text)")
        losses = losses - nll_weight * policy_chosen / chosen_length
    chosen_rewards = beta * (policy_chosen - ref_chosen).detach()
    rejected_rewards = beta * (policy_rejected - ref_rejected).detach()
    return losses, chosen_rewards, rejected_rewards
