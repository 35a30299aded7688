"""GDRO, GADRO and PGDRO q updates against the formulas (PROTOCOL section 4; Sagawa et al. 2020)."""

import math

import numpy as np
import pytest
import torch

from fairser.debias.dro import adjusted_group_loss, dro_loss, group_losses, hard_memberships, update_q


def test_group_loss_is_the_mean_per_group_and_zero_for_an_absent_group():
    losses = torch.tensor([1.0, 3.0, 2.0])
    memb = torch.tensor(hard_memberships([0, 0, 1], 3), dtype=torch.float32)  # group 2 absent
    np.testing.assert_allclose(group_losses(losses, memb).numpy(), [2.0, 2.0, 0.0])


def test_gdro_q_update_matches_the_formula():
    q = torch.tensor([0.5, 0.5])
    L = torch.tensor([1.0, 3.0])
    eta = 0.01
    new = update_q(q, adjusted_group_loss(L, torch.tensor([10.0, 10.0]), 0.0), eta)
    a, b = 0.5 * math.exp(eta * 1.0), 0.5 * math.exp(eta * 3.0)
    np.testing.assert_allclose(new.numpy(), [a / (a + b), b / (a + b)], rtol=1e-6)
    assert dro_loss(new, L).item() == pytest.approx(a / (a + b) * 1 + b / (a + b) * 3, rel=1e-6)


def test_gdro_absent_group_gets_exp_of_zero():
    q = torch.tensor([0.2, 0.3, 0.5])
    L = group_losses(torch.tensor([2.0]), torch.tensor([[1.0, 0.0, 0.0]]))  # groups 1, 2 absent
    new = update_q(q, L, 0.1)
    raw = np.array([0.2 * math.exp(0.2), 0.3, 0.5])
    np.testing.assert_allclose(new.numpy(), raw / raw.sum(), rtol=1e-6)


def test_gadro_adds_adjustment_over_sqrt_group_size_in_the_update_only():
    q = torch.tensor([0.5, 0.5])
    L = torch.tensor([1.0, 1.0])
    n = torch.tensor([100.0, 4.0])
    adj = adjusted_group_loss(L, n, 4.0)
    np.testing.assert_allclose(adj.numpy(), [1 + 4 / 10, 1 + 4 / 2])
    new = update_q(q, adj, 0.01)
    a, b = math.exp(0.01 * 1.4), math.exp(0.01 * 3.0)
    np.testing.assert_allclose(new.numpy(), [a / (a + b), b / (a + b)], rtol=1e-6)
    # the minimised loss uses the plain group losses
    assert dro_loss(new, L).item() == pytest.approx(1.0)


def test_pgdro_group_loss_uses_soft_memberships():
    losses = torch.tensor([1.0, 4.0])
    memb = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    expected = [(0.9 * 1 + 0.2 * 4) / 1.1, (0.1 * 1 + 0.8 * 4) / 0.9]
    np.testing.assert_allclose(group_losses(losses, memb).numpy(), expected, rtol=1e-6)


def test_q_update_does_not_overflow_for_large_steps():
    new = update_q(torch.tensor([0.5, 0.5]), torch.tensor([1e4, 0.0]), 1.0)
    assert torch.isfinite(new).all() and new[0].item() == pytest.approx(1.0)


@pytest.mark.parametrize("adjustment", [0.0, 2.0], ids=["gdro", "gadro"])
def test_q_after_two_steps_is_q_times_exp_of_the_adjusted_losses_by_hand(adjustment):
    # Two steps from a non-uniform q, groups of unequal size so C / sqrt(n_g) differs by group.
    eta, n = 0.5, [4.0, 9.0, 25.0]
    losses = [[1.0, 2.0, 0.5], [0.3, 0.1, 2.0]]
    q = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    for step in losses:
        q = update_q(q, adjusted_group_loss(torch.tensor(step, dtype=torch.float64),
                                            torch.tensor(n, dtype=torch.float64), adjustment), eta)
    # q_g <- q_g exp(eta (L_g + C / sqrt(n_g))), renormalised, twice: C / sqrt(n) = C * (1/2, 1/3, 1/5)
    by_hand = np.array([0.2, 0.3, 0.5])
    for step in losses:
        by_hand = by_hand * np.exp(eta * (np.array(step) + adjustment * np.array([1 / 2, 1 / 3, 1 / 5])))
        by_hand = by_hand / by_hand.sum()
    np.testing.assert_allclose(q.numpy(), by_hand, rtol=1e-12)


def test_q_update_normalises_each_run_of_a_batch_on_its_own():
    # Two runs side by side, one with a huge step: the other's q must not underflow to 0.
    q = torch.full((2, 2), 0.5, dtype=torch.float64)
    L = torch.tensor([[1e4, 0.0], [1.0, 3.0]], dtype=torch.float64)
    new = update_q(q, L, 1.0)
    a, b = math.exp(1.0), math.exp(3.0)
    np.testing.assert_allclose(new.numpy(), [[1.0, 0.0], [a / (a + b), b / (a + b)]], rtol=1e-12)
