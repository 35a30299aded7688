"""LfF / DisEnt building blocks by hand (PROTOCOL section 4; Nam et al. 2020, Lee et al. 2021)."""

import numpy as np
import pytest
import torch

from fairser.debias.lff import classwise_max, ema_update, gce_loss, relative_difficulty


def test_gce_is_q_times_p_label_to_the_q_times_the_loss():
    logits = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    labels = torch.tensor([0, 1])
    losses = torch.tensor([1.5, 2.0])
    p1 = 1 / (1 + np.exp(2.0))  # softmax([2, 0])[1]
    expected = [0.7 * 0.5 ** 0.7 * 1.5, 0.7 * p1 ** 0.7 * 2.0]
    np.testing.assert_allclose(gce_loss(losses, logits, labels, 0.7).numpy(), expected, rtol=1e-6)


def test_gce_factor_is_a_constant_for_the_gradient():
    logits = torch.tensor([[1.0, 0.0]], requires_grad=True)
    losses = (logits * torch.tensor([[1.0, 2.0]])).sum(-1)
    gce_loss(losses, logits, torch.tensor([0]), 0.7).sum().backward()
    factor = 0.7 * torch.softmax(logits.detach(), -1)[0, 0] ** 0.7
    np.testing.assert_allclose(logits.grad.numpy(), (factor * torch.tensor([[1.0, 2.0]])).numpy())


def test_ema_starts_at_the_first_loss_then_averages():
    ema, seen = torch.zeros(3), torch.zeros(3)
    idx, mask = torch.tensor([0, 2]), torch.tensor([True, True])
    ema, seen = ema_update(ema, seen, idx, torch.tensor([1.0, 2.0]), 0.7, mask)
    np.testing.assert_allclose(ema.numpy(), [1.0, 0.0, 2.0])
    ema, seen = ema_update(ema, seen, idx, torch.tensor([3.0, 5.0]), 0.7, torch.tensor([True, False]))
    np.testing.assert_allclose(ema.numpy(), [0.7 * 1 + 0.3 * 3, 0.0, 2.0], rtol=1e-6)
    np.testing.assert_allclose(seen.numpy(), [1.0, 0.0, 1.0])


def test_relative_difficulty_normalises_by_the_class_max():
    ema_b = torch.tensor([1.0, 2.0, 4.0])
    ema_d = torch.tensor([2.0, 2.0, 1.0])
    labels = torch.tensor([0, 0, 1])
    mb, md = classwise_max(ema_b, labels, 2), classwise_max(ema_d, labels, 2)
    np.testing.assert_allclose(mb.numpy(), [2.0, 4.0])
    w = relative_difficulty(ema_b, ema_d, mb[labels], md[labels])
    b, d = np.array([0.5, 1.0, 1.0]), np.array([1.0, 1.0, 1.0])
    np.testing.assert_allclose(w.numpy(), b / (b + d + 1e-8), rtol=1e-6)


def test_classwise_max_ignores_padding_label():
    ema = torch.tensor([1.0, 9.0])
    assert classwise_max(ema, torch.tensor([0, 2]), 2).tolist() == [1.0, 0.0]


def test_padded_slots_pointing_at_clip_0_never_overwrite_its_update():
    # The last batch of an epoch: clip 0 is a real slot, and the two padded slots also point at
    # position 0 (as the trainer pads). Clip 0's EMA must start at its loss, 7.0.
    ema, seen = torch.zeros(3), torch.zeros(3)
    idx = torch.tensor([2, 0, 0, 0])
    mask = torch.tensor([True, True, False, False])
    ema, seen = ema_update(ema, seen, idx, torch.tensor([1.0, 7.0, 9.0, 9.0]), 0.7, mask)
    np.testing.assert_allclose(ema.numpy(), [7.0, 0.0, 1.0])
    np.testing.assert_allclose(seen.numpy(), [1.0, 0.0, 1.0])


def test_classwise_max_keeps_the_ema_dtype():
    ema = torch.tensor([0.1, 0.3, 0.2], dtype=torch.float64)
    out = classwise_max(ema, torch.tensor([0, 0, 1]), 3)
    assert out.dtype == torch.float64
    np.testing.assert_array_equal(out.numpy(), [0.3, 0.2, 0.0])


def test_relative_difficulty_is_finite_when_both_losses_vanish():
    # b = 1e-8, d = 0: W = b / (b + d + eps) = 1/2 with Nam et al.'s eps = 1e-8, not b / 0.
    w = relative_difficulty(torch.tensor([1e-8]), torch.tensor([0.0]), torch.tensor([1.0]),
                            torch.tensor([1.0]))
    assert w.item() == pytest.approx(0.5, rel=1e-5)


# --- pairing with ERM ---------------------------------------------------------------------------

def _untrained_test_probs(method, hp):
    """Test probabilities of `method`'s reported model after one epoch at lr 0 (its initial
    weights), on a toy fold, seed 7."""
    from fairser.train import FoldData, TrainConfig, build_run, fit

    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 2, 5)).astype(np.float32)
    p = rng.dirichlet(np.ones(6), size=40)
    fold = FoldData(fold=2, train=np.arange(24), dev=np.arange(24, 32), test=np.arange(32, 40),
                    labels=p[:24].argmax(1))
    run = build_run(method, method, fold, seed=7, hparams=hp, seed_index=1)
    return fit(x, p, [run], TrainConfig(epochs=1, batch_size=8, lr=0.0, hidden=4))[0].test_probs


def test_lff_reported_model_starts_from_erms_initial_weights():
    erm = _untrained_test_probs("erm", {})
    lff = _untrained_test_probs("lff", {"gce_q": 0.7, "ema_alpha": 0.7})
    np.testing.assert_allclose(lff, erm, rtol=1e-6, atol=1e-7)
    # not trivially equal: an untrained model is not uniform
    assert not np.allclose(erm, np.full_like(erm, 1 / 6), atol=1e-3)
