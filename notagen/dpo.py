"""DPOP, the preference loss of CLaMP-DPO, as a pure function of four summed log-prob tensors.

loss = -logsigmoid(beta * ((pc - pr) - (rc - rr) - lam * max(0, rc - pc)))
pc/pr: policy log-probs of the chosen/rejected texts; rc/rr: the frozen reference's. The lambda
term (DPO-Positive) penalises the policy for making the chosen text less likely than the
reference did, which plain DPO allows. Rewards are beta * (policy - reference) per text.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def dpop_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
              ref_rejected: torch.Tensor, beta: float = 0.1, lam: float = 10.0):
    """-> (losses [B], chosen_rewards [B], rejected_rewards [B]); all inputs [B] summed log-probs."""
    margin = (policy_chosen - policy_rejected) - (ref_chosen - ref_rejected)
    penalty = lam * torch.clamp(ref_chosen - policy_chosen, min=0)
    losses = -F.logsigmoid(beta * (margin - penalty))
    chosen_rewards = beta * (policy_chosen - ref_chosen).detach()
    rejected_rewards = beta * (policy_rejected - ref_rejected).detach()
    return losses, chosen_rewards, rejected_rewards
