"""DisEnt, Lee et al. 2021 ("Learning debiased representation via disentangled feature
augmentation", NeurIPS; their Algorithm 1 / train_ours); PROTOCOL section 4.

Intrinsic (encoder 0) and bias (1) encoders; classifier 0 reads [z_i, z_b.detach()], classifier 1
reads [z_i.detach(), z_b]. Classifier 1 is trained with GCE, classifier 0 with LfF's relative
difficulty weights (lff.difficulty). After `swap_after_epoch` epochs, z_b is permuted within the
batch to synthesise new clips. Their lambda_dis_align and lambda_swap_align are our lambda_dis and
lambda_swap_b; the swap term is scaled by lambda_swap. Labels for GCE as in LfF (the single
majority class). The reported model is classifier 0 on [z_intrinsic, z_bias] (their evaluation).
No groups.

Pairing with ERM (issue 23): the intrinsic encoder (0) starts from the weights of ERM's encoder
for the same (fold, seed) and the runs see the same shuffle order, but classifier 0 reads 2H
inputs where ERM's head reads H, so it cannot start from ERM's head: DisEnt's comparison with
ERM is paired in data order and encoder, not in the whole initial model (LfF's is fully paired).
"""

from __future__ import annotations

import numpy as np
import torch

from fairser.debias import lff
from fairser.debias.base import Arch, Method, register


class DisEnt(Method):
    name = "disent"
    taxonomy = "biased learner"
    family = "disent"
    arch = Arch(2, 2, 2)
    params = ("gce_q", "ema_alpha", "lambda_dis", "lambda_swap_b", "lambda_swap", "swap_after_epoch")

    def init_state(self, engine, mask):
        state = lff.ema_state(engine)
        state["swap_rngs"] = [np.random.default_rng(np.random.SeedSequence([g.lead.seed, 4]))
                              for g in engine.groups]
        return state

    def objective(self, batch, state, mask):
        labels = batch.labels()
        z_i, z_b = batch.z[:, 0], batch.z[:, 1]
        logit_c = batch.head(torch.cat([z_i, z_b.detach()], -1), 0)
        logit_a = batch.head(torch.cat([z_i.detach(), z_b], -1), 1)
        l_c, l_a = batch.cb(logit_c), batch.cb(logit_a)
        w = lff.difficulty(state, batch, l_a, l_c, labels).detach()
        q = batch.hp("gce_q")
        loss = batch.mean(w * l_c) + batch.hp("lambda_dis").squeeze(1) * batch.mean(
            lff.gce_loss(l_a, logit_a, labels, q))
        if batch.epoch > batch.engine.runs[0].hparams["swap_after_epoch"]:
            perm = self.swap_perm(batch.engine, state)                  # (R, B)
            z_bs = z_b.gather(1, perm.unsqueeze(-1).expand_as(z_b))
            t = batch.targets
            t_s, lab_s = t.gather(1, perm.unsqueeze(-1).expand_as(t)), labels.gather(1, perm)
            logit_sc = batch.head(torch.cat([z_i, z_bs.detach()], -1), 0)
            logit_sa = batch.head(torch.cat([z_i.detach(), z_bs], -1), 1)
            swap_c = batch.mean(w * batch.cb(logit_sc))
            swap_a = batch.mean(lff.gce_loss(batch.cb(logit_sa, t_s), logit_sa, lab_s, q))
            loss = loss + batch.hp("lambda_swap").squeeze(1) * (
                swap_c + batch.hp("lambda_swap_b").squeeze(1) * swap_a)
        return loss

    @staticmethod
    def swap_perm(engine, state) -> torch.Tensor:
        """Per group, a seeded permutation of the batch's valid positions (padding stays put)."""
        out = np.tile(np.arange(engine.batch_width), (engine.G, 1))
        for i, (rng, n) in enumerate(zip(state["swap_rngs"], engine.n_valid_host)):
            if n > 0:  # an idle group draws nothing, so its stream matches a run trained alone
                out[i, :n] = rng.permutation(n)
        return engine.per_run(torch.as_tensor(out, device=engine.device))

    def predict(self, engine, params, z):
        return engine.head(params, torch.cat([z[:, 0], z[:, 1]], -1), 0)


register(DisEnt())
