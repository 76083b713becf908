"""Sampling filters and the DPOP loss against the published values."""
import math

import pytest
import torch

from conftest import load_vector
from notagen import dpop_loss, sample_next
from notagen.sampling import apply_temperature, top_k_filter, top_p_filter

SAMPLING = load_vector("sampling.json")
DPOP = load_vector("dpop_loss.json")


@pytest.mark.parametrize("case", SAMPLING["cases"], ids=lambda c: f"k{c['top_k']}p{c['top_p']}t{c['temperature']}")
def test_filters_match_the_reference_step_by_step(case):
    probs = torch.tensor([case["probs"]], dtype=torch.float64)
    after_k = top_k_filter(probs, case["top_k"])
    after_p = top_p_filter(after_k, case["top_p"])
    after_t = apply_temperature(after_p, case["temperature"])
    for got, key in ((after_k, "after_top_k"), (after_p, "after_top_p"), (after_t, "after_temperature")):
        torch.testing.assert_close(got[0], torch.tensor(case[key], dtype=torch.float64), atol=1e-6, rtol=0)


def test_batched_filtering_equals_row_by_row():
    rows = torch.tensor([c["probs"] for c in SAMPLING["cases"] if c["top_k"] == 9], dtype=torch.float64)
    batched = apply_temperature(top_p_filter(top_k_filter(rows, 9), 0.9), 1.2)
    for row, expected in zip(rows, batched):
        single = apply_temperature(top_p_filter(top_k_filter(row[None], 9), 0.9), 1.2)[0]
        torch.testing.assert_close(single, expected)


def test_sampling_is_seeded_and_respects_top_k():
    logits = torch.randn(64, 128, generator=torch.Generator().manual_seed(0))
    first = sample_next(logits, top_k=3, top_p=1.0, temperature=1.0, generator=torch.Generator().manual_seed(5))
    again = sample_next(logits, top_k=3, top_p=1.0, temperature=1.0, generator=torch.Generator().manual_seed(5))
    assert torch.equal(first, again)
    top3 = logits.topk(3, dim=-1).indices
    assert (top3 == first[:, None]).any(dim=-1).all()
    assert torch.equal(sample_next(logits, greedy=True), logits.argmax(-1))


@pytest.mark.parametrize("case", DPOP["cases"], ids=lambda c: f"b{c['beta']}l{c['lambda']}")
def test_dpop_loss_matches_the_published_values(case):
    as_tensor = lambda key: torch.tensor([case[key]], dtype=torch.float64)  # noqa: E731
    losses, _, _ = dpop_loss(as_tensor("policy_chosen"), as_tensor("policy_rejected"),
                             as_tensor("ref_chosen"), as_tensor("ref_rejected"), case["beta"], case["lambda"])
    # the recorded losses are float32 values: abs 1e-6, or 1e-6 relative where float32 cannot hold 1e-6
    assert math.isclose(losses.item(), case["loss"], rel_tol=1e-6, abs_tol=1e-6)


def test_dpop_loss_hand_worked():
    # policy prefers chosen by 2 nats more than the reference does, and keeps chosen above the reference
    pc, pr, rc, rr = (torch.tensor([v]) for v in (-10.0, -20.0, -11.0, -19.0))
    losses, chosen_reward, rejected_reward = dpop_loss(pc, pr, rc, rr, beta=0.5, lam=10.0)
    assert losses.item() == pytest.approx(math.log1p(math.exp(-0.5 * 2.0)))
    assert chosen_reward.item() == pytest.approx(0.5) and rejected_reward.item() == pytest.approx(-0.5)
    # now the policy lowers chosen below the reference by 1 nat: the lambda term adds 10 * 1
    losses, _, _ = dpop_loss(torch.tensor([-12.0]), pr, rc, rr, beta=0.5, lam=10.0)
    assert losses.item() == pytest.approx(math.log1p(math.exp(-0.5 * (0.0 - 10.0))))


def test_dpop_loss_with_the_nll_term_hand_worked():
    # the same pair as above, plus 0.5 x the chosen text's NLL per character (10 nats over 20 chars)
    pc, pr, rc, rr = (torch.tensor([v]) for v in (-10.0, -20.0, -11.0, -19.0))
    losses, chosen_reward, _ = dpop_loss(pc, pr, rc, rr, beta=0.5, lam=10.0, nll_weight=0.5,
                                         chosen_length=torch.tensor([20.0]))
    assert losses.item() == pytest.approx(math.log1p(math.exp(-0.5 * 2.0)) + 0.5 * 10.0 / 20.0)
    assert chosen_reward.item() == pytest.approx(0.5)  # rewards stay DPOP's
    # its gradient raises the chosen log-prob even where the DPOP term has saturated
    far = torch.tensor([-10.0], requires_grad=True)
    dpop_loss(far, torch.tensor([-400.0]), rc, rr, beta=0.5, lam=10.0, nll_weight=0.5,
              chosen_length=torch.tensor([20.0]))[0].sum().backward()
    assert far.grad.item() == pytest.approx(-0.5 / 20.0, rel=1e-6)
    with pytest.raises(ValueError, match="chosen_length"):
        dpop_loss(pc, pr, rc, rr, nll_weight=0.5)
