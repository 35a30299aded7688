"""Learning from Failure (LfF) and DisEnt weights (SPEC section 4).

- LfF, Nam et al. 2020 ("Learning from failure: training debiased classifier from biased
  classifier", NeurIPS, Algorithm 1): a biased model trained with generalized cross-entropy (GCE,
  Zhang and Sabuncu 2018) amplifies the shortcut; a per-clip exponential moving average of both
  models' losses, divided by the class-wise maximum, gives the relative difficulty
  W = L_b / (L_b + L_d) that weights the debiased model's loss.
- DisEnt, Lee et al. 2021 ("Learning debiased representation via disentangled feature
  augmentation", NeurIPS) uses the same GCE and weights on its bias and intrinsic branches.

Both assume one class per clip. Our clips are multi-label, so the GCE gather (p_y of the class y)
and the class-wise normalisation use the clip's single strict-majority class (folds.csv `label`);
the loss multiplied by the GCE factor is still our class-balanced soft-target loss.
"""

from __future__ import annotations

import torch


def gce_loss(losses: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, q) -> torch.Tensor:
    """GCE as Nam et al.'s code implements it: q * p_y^q (a constant for the gradient) times the
    loss, whose gradient equals that of (1 - p_y^q) / q scaled by q. It up-weights clips the
    model already fits (high p_y), which is what makes the model biased.

    losses (..., B), logits (..., B, K), labels (..., B) class ids.
    """
    p_y = torch.softmax(logits, -1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    return q * p_y.detach() ** q * losses


def ema_update(ema: torch.Tensor, seen: torch.Tensor, index: torch.Tensor, values: torch.Tensor,
               alpha, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-clip EMA e_i <- alpha e_i + (1 - alpha) l_i, started at the first loss seen (as Nam et
    al.'s EMA class: (1 - alpha * seen_i)). Returns new (ema, seen); `mask` (..., B) drops padding.

    ema, seen (..., N); index, values, mask (..., B). Valid positions within a batch are
    distinct; padded slots may repeat any position (the trainer points them at 0). They write
    into one extra slot that is dropped, so a padded slot can never overwrite a real update
    (scatter with repeated indices keeps an undefined one of the writes).
    """
    n = ema.shape[-1]
    target = torch.where(mask, index, n)
    pad = torch.zeros(ema.shape[:-1] + (1,), dtype=ema.dtype, device=ema.device)
    old = ema.gather(-1, index)
    was_seen = seen.gather(-1, index)
    new = alpha * old + (1 - alpha * was_seen) * values.detach()
    new_ema = torch.cat([ema, pad], -1).scatter(-1, target, new)[..., :n]
    new_seen = torch.cat([seen, pad], -1).scatter(-1, target, torch.ones_like(was_seen))[..., :n]
    return new_ema, new_seen


def classwise_max(ema: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(..., n_classes) max of `ema` over the clips of each class; labels == n_classes marks
    padding (it lands in an extra slot that is dropped). Classes with no clip get 0."""
    shape = ema.shape[:-1] + (n_classes + 1,)
    out = torch.zeros(shape, dtype=ema.dtype, device=ema.device)
    return out.scatter_reduce(-1, labels, ema, reduce="amax", include_self=True)[..., :n_classes]


def relative_difficulty(ema_b: torch.Tensor, ema_d: torch.Tensor, max_b: torch.Tensor,
                        max_d: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """W = (L_b / max_b) / (L_b / max_b + L_d / max_d + eps), per clip, each EMA divided by its
    class-wise maximum (the max of the clip's class). eps as Nam et al."""
    b = ema_b / max_b.clamp_min(eps)
    d = ema_d / max_d.clamp_min(eps)
    return b / (b + d + eps)
