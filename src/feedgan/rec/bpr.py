"""BPR-MF: matrix factorisation trained with the Bayesian Personalized Ranking loss.

Rendle, Freudenthaler, Gantner, Schmidt-Thieme, "BPR: Bayesian Personalized Ranking from
Implicit Feedback", UAI 2009.

Every user ``u`` and item ``i`` gets a ``factors``-dimensional vector (plus, optionally, an item
bias ``b_i``); the predicted preference is ``x_ui = <p_u, q_i> + b_i``. Training looks at triples
``(u, i, j)`` where ``i`` is an item ``u`` interacted with and ``j`` one drawn at random, and
maximises the log-probability that ``u`` ranks ``i`` above ``j``::

    loss = -mean log sigmoid(x_ui - x_uj) + reg * sum_batch(|p_u|^2 + |q_i|^2 + |q_j|^2) / B

with lazy Adam (``torch.optim.SparseAdam``: only the rows a batch touches are updated, and their
moment estimates advance only then; a dense Adam would rewrite all of both tables on every batch,
which made a Gowalla epoch ~10x slower), in mini-batches of ``batch_size`` positive pairs (with ``neg_per_pos`` > 1 the
``|q_j|^2`` term is averaged over a pair's negatives; with ``item_bias`` the biases get the same
penalty). The L2 term covers only the rows a batch touches (the usual "batch embedding"
regularisation of LightGCN / RecBole), so ``reg`` is per example: on MovieLens-100K values
around 1e-2 work far better than 1e-4.

Sampling, all in torch, seeded by a local ``torch.Generator`` (global RNG state is untouched):
each epoch shuffles every positive ``(u, i)`` pair of the training matrix once and draws
``neg_per_pos`` negatives per pair uniformly over all items. There is no rejection step, so a
"negative" is occasionally an item the user did interact with (a false negative, probability
``|I_u| / n_items`` per draw). On sparse feedback that is rare and it acts as mild label noise;
in exchange sampling is one ``randint`` call per batch, with no loop over users.

With ``eval_every`` > 0 and a validation part, NDCG@20 on validation is measured every
``eval_every`` epochs and the best factors are kept (see :mod:`feedgan.rec.selection`); the
chosen epoch count is what the refit on train + valid uses.

BPR cannot fold in unseen users (``fold_in = False``): a user's vector exists only after fit.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from .base import Recommender
from .selection import EpochSelector, validation_ndcg

_INIT_STD = 0.1  # std of the normal initialisation of both factor tables


class BPR(Recommender):
    """Matrix factorisation with the BPR pairwise ranking loss (Rendle et al. 2009).

    Learned state: ``user_factors_`` (n_users, factors), ``item_factors_`` (n_items, factors) and
    ``item_bias_`` (n_items,) (all zeros without ``item_bias``), numpy float32.
    ``loss_history_`` is the mean training loss of every epoch (a list, not saved).
    """

    name = "bpr"
    fold_in = False
    uses_validation = True

    def __init__(self, factors: int = 64, lr: float = 1e-3, reg: float = 1e-4, epochs: int = 50,
                 batch_size: int = 4096, neg_per_pos: int = 1, item_bias: bool = False, eval_every: int = 0,
                 patience: int | None = None, seed: int = 0, device: str = "cpu"):
        self.factors, self.lr, self.reg, self.epochs = factors, lr, reg, epochs
        self.batch_size, self.neg_per_pos, self.item_bias = batch_size, neg_per_pos, item_bias
        self.eval_every, self.patience, self.seed, self.device = eval_every, patience, seed, device

    # -- training ---------------------------------------------------------------------------------
    def _fit(self, X: sp.csr_matrix, progress=None, valid: sp.csr_matrix | None = None) -> None:
        if self.factors < 1 or self.epochs < 0 or self.batch_size < 1 or self.neg_per_pos < 1:
            raise ValueError(f"{self.name}: factors, batch_size and neg_per_pos must be >= 1 and epochs >= 0, "
                             f"got {self.get_params()}")
        dev = torch.device(self.device)
        gen = torch.Generator(device=dev).manual_seed(int(self.seed))
        n_users, n_items = X.shape

        # every positive pair once: pos_u[k], pos_i[k] is the k-th non-zero of X
        pos_u = torch.from_numpy(np.repeat(np.arange(n_users), np.diff(X.indptr))).to(dev)  # (nnz,)
        pos_i = torch.from_numpy(X.indices.astype(np.int64)).to(dev)  # (nnz,)
        nnz = pos_u.shape[0]

        P = (torch.randn(n_users, self.factors, generator=gen, device=dev) * _INIT_STD).requires_grad_()
        Q = (torch.randn(n_items, self.factors, generator=gen, device=dev) * _INIT_STD).requires_grad_()
        b = torch.zeros(n_items, 1, device=dev, requires_grad=self.item_bias)  # a one-column table
        params = [P, Q, b] if self.item_bias else [P, Q]
        opt = torch.optim.SparseAdam(params, lr=self.lr)  # lazy Adam: only the batch's rows move

        task = progress.add_task(f"fit {self.name}", total=self.epochs) if progress is not None else None
        self.loss_history_: list[float] = []
        self.valid_history_: list[tuple[int, float]] = []
        self.best_epoch_: int | None = None  # set when validation picks the epoch
        select = (EpochSelector(self.eval_every, self.patience)
                  if self.eval_every > 0 and valid is not None and valid.nnz else None)
        for epoch in range(1, self.epochs + 1):
            order = torch.randperm(nnz, generator=gen, device=dev)  # (nnz,) shuffle of the pairs
            total = torch.zeros((), device=dev)
            for start in range(0, nnz, self.batch_size):
                idx = order[start:start + self.batch_size]
                u, i = pos_u[idx], pos_i[idx]  # (B,), (B,)
                j = torch.randint(n_items, (len(idx), self.neg_per_pos), generator=gen, device=dev)  # (B, n)
                loss = self._loss(P, Q, b, u, i, j)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.detach() * len(idx)
            self.loss_history_.append(float(total) / nnz)
            if task is not None:
                progress.advance(task)
            if select is not None and select.due(epoch):
                with torch.no_grad():
                    value = validation_ndcg(lambda u: (P[u] @ Q.T + b.T).cpu().numpy(), X, valid)
                self.valid_history_ = select.history
                if select.update(epoch, value, {"P": P, "Q": Q, "b": b}):
                    break
        if select is not None and select.best_state is not None:
            P, Q, b = (select.best_state[k] for k in ("P", "Q", "b"))
            self.best_epoch_ = select.best_epoch

        self.user_factors_ = P.detach().cpu().numpy().astype(np.float32)  # (n_users, factors)
        self.item_factors_ = Q.detach().cpu().numpy().astype(np.float32)  # (n_items, factors)
        self.item_bias_ = b.detach()[:, 0].cpu().numpy().astype(np.float32)  # (n_items,)

    def _loss(self, P: torch.Tensor, Q: torch.Tensor, b: torch.Tensor, u: torch.Tensor, i: torch.Tensor,
              j: torch.Tensor) -> torch.Tensor:
        """BPR loss of one batch: B positive pairs ``(u, i)``, each with n negatives ``j`` (B, n)."""
        def rows(table, idx):  # sparse gradient: cost follows the batch, not the table size
            return F.embedding(idx, table, sparse=True)

        pu, qi, qj = rows(P, u), rows(Q, i), rows(Q, j)  # (B, d), (B, d), (B, n, d)
        bi, bj = rows(b, i)[..., 0], rows(b, j)[..., 0]  # (B,), (B, n)
        x_ui = (pu * qi).sum(-1) + bi  # (B,)
        x_uj = torch.einsum("bd,bnd->bn", pu, qj) + bj  # (B, n)
        rank = -F.logsigmoid(x_ui[:, None] - x_uj).mean()  # mean over the B * n triples
        sq = pu.pow(2).sum() + qi.pow(2).sum() + qj.pow(2).sum() / j.shape[1]
        if self.item_bias:
            sq = sq + bi.pow(2).sum() + bj.pow(2).sum() / j.shape[1]
        return rank + self.reg * sq / u.shape[0]

    # -- scoring ----------------------------------------------------------------------------------
    def _score(self, users, history):
        # users is never None here: fold_in = False makes the base class refuse history-only calls
        U = torch.from_numpy(self.user_factors_[users])  # (B, factors)
        V = torch.from_numpy(self.item_factors_)  # (n_items, factors)
        return (U @ V.T + torch.from_numpy(self.item_bias_)[None, :]).numpy()  # (B, n_items)
