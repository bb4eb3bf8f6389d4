"""BPR-MF: matrix factorisation trained with the Bayesian Personalized Ranking loss.

Rendle, Freudenthaler, Gantner, Schmidt-Thieme, "BPR: Bayesian Personalized Ranking from
Implicit Feedback", UAI 2009.

Every user ``u`` and item ``i`` gets a ``factors``-dimensional vector (plus, optionally, an item
bias ``b_i``); the predicted preference is ``x_ui = <p_u, q_i> + b_i``. Training looks at triples
``(u, i, j)`` where ``i`` is an item ``u`` interacted with and ``j`` one drawn at random, and
maximises the log-probability that ``u`` ranks ``i`` above ``j``::

    loss = -mean log sigmoid(x_ui - x_uj) + reg * sum_batch(|p_u|^2 + |q_i|^2 + |q_j|^2) / B

with lazy Adam (the update of ``torch.optim.SparseAdam``: only the rows a batch touches are
updated, and their moment estimates advance only then; a dense Adam would rewrite all of both
tables on every batch, which made a Gowalla epoch ~10x slower), in mini-batches of ``batch_size``
positive pairs (with ``neg_per_pos`` > 1 the ``|q_j|^2`` term is averaged over a pair's negatives;
with ``item_bias`` the biases get the same penalty). The L2 term covers only the rows a batch
touches (the usual "batch embedding" regularisation of LightGCN / RecBole), so ``reg`` is per
example: on MovieLens-100K values around 1e-2 work far better than 1e-4.

``optimizer="sgd"`` swaps the lazy Adam for plain SGD on the same gradient (``p -= lr * g`` on the
touched rows, the update implicit's BPR makes per example). ``lr`` then multiplies the gradient of
the batch *mean*, so it is about ``batch_size`` times a per-example rate (implicit's 0.01 is about
20 at batch 2048). An SGD step costs about half an Adam step (no moments to gather and write
back), but it learns less per epoch: see ``docs/speed.md``.

A training step is written out by hand rather than left to autograd: one gather brings a
batch's user, positive and negative rows, its loss and their gradients come from a few fused
operations written into buffers kept from batch to batch (:class:`_BatchLoss`, :class:`_Scratch`),
the duplicates of a row are summed without sorting (:class:`_RowSums`), the gradient is put on
``.grad`` directly (autograd would copy it), and the lazy Adam gathers the touched rows of the
factors and moments, runs torch's fused Adam kernel on them and writes them back
(:class:`_LazyAdam`). The updates are SparseAdam's (or SGD's) on autograd's gradients, to float
rounding. At ML-1M sizes an epoch is memory traffic: with Adam each step reads and writes the
~3,700 touched rows (of ~9,700) of the factors and of both moments several times, which is its floor.

Sampling, all in torch, seeded by a local ``torch.Generator`` (global RNG state is untouched):
each epoch shuffles every positive ``(u, i)`` pair of the training matrix once and draws
``neg_per_pos`` negatives per pair uniformly over all items, all of the epoch's in one call (the
same stream as one call per batch). There is no rejection step, so a "negative" is occasionally
an item the user did interact with (a false negative, probability ``|I_u| / n_items`` per draw).
On sparse feedback that is rare and it acts as mild label noise; in exchange sampling is one
``randint`` call per epoch, with no loop over users.

Training runs on the shared loop (:class:`feedgan.gan.LossTrainer`: NaN guard, progress). With
``eval_every`` > 0 and a validation part, NDCG@20 on validation is measured every ``eval_every``
epochs and the best factors are kept (see :mod:`feedgan.rec.selection`); the chosen epoch count
is what the refit on train + valid uses.

BPR cannot fold in unseen users (``fold_in = False``): a user's vector exists only after fit.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from ..gan import BestCheckpoint, LossTrainer
from .base import Recommender, Validation
from .selection import check_can_score, epoch_choice, validation_ndcg

_INIT_STD = 0.1  # std of the normal initialisation of both factor tables


class BPR(Recommender):
    """Matrix factorisation with the BPR pairwise ranking loss (Rendle et al. 2009).

    Learned state: ``user_factors_`` (n_users, factors), ``item_factors_`` (n_items, factors) and
    ``item_bias_`` (n_items,) (all zeros without ``item_bias``), numpy float32.
    ``loss_history_`` is the mean batch loss of every epoch (a list, not saved).
    """

    name = "bpr"
    fold_in = False
    uses_validation = True

    def __init__(self, factors: int = 64, lr: float = 1e-3, reg: float = 1e-4, epochs: int = 50,
                 batch_size: int = 4096, neg_per_pos: int = 1, item_bias: bool = False, eval_every: int = 0,
                 patience: int | None = None, optimizer: str = "adam", seed: int = 0, device: str = "cpu"):
        self.factors, self.lr, self.reg, self.epochs = factors, lr, reg, epochs
        self.batch_size, self.neg_per_pos, self.item_bias = batch_size, neg_per_pos, item_bias
        self.eval_every, self.patience, self.seed, self.device = eval_every, patience, seed, device
        self.optimizer = optimizer

    # -- training ---------------------------------------------------------------------------------
    def _fit(self, X: sp.csr_matrix, progress=None, valid: Validation | None = None) -> None:
        if self.factors < 1 or self.epochs < 0 or self.batch_size < 1 or self.neg_per_pos < 1:
            raise ValueError(f"{self.name}: factors, batch_size and neg_per_pos must be >= 1 and epochs >= 0, "
                             f"got {self.get_params()}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"{self.name}: optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        select = valid is not None and self.eval_every > 0
        if select:
            check_can_score(self, valid)
        dev = torch.device(self.device)
        gen = torch.Generator(device=dev).manual_seed(int(self.seed))
        n_users, n_items = X.shape
        P = torch.randn(n_users, self.factors, generator=gen, device=dev) * _INIT_STD
        Q = torch.randn(n_items, self.factors, generator=gen, device=dev) * _INIT_STD
        net = _Factors(P, Q, torch.zeros(n_items, 1, device=dev), self.item_bias)
        opt = OPTIMIZERS[self.optimizer]([p for p in net.parameters() if p.requires_grad], lr=self.lr)
        task = _Epochs(self, net, X, gen)
        trainer = LossTrainer(net, task, opt, self.epochs, name=self.name)
        best = None
        if select:
            @torch.no_grad()
            def metric(_) -> float:
                return validation_ndcg(lambda u: (net.P[u] @ net.Q.T + net.b.T).cpu().numpy(), valid)

            best = BestCheckpoint(metric, every=self.eval_every * task.steps_per_epoch, patience=self.patience,
                                  restore_on_end=True)
        trainer.fit(progress=progress, callbacks=[best] if best else [])
        self.loss_history_ = [s["loss"] for s in trainer.history]
        self.valid_history_, self.best_epoch_ = epoch_choice(best, task.steps_per_epoch, None) if best else ([], None)
        self.user_factors_ = net.P.detach().cpu().numpy().astype(np.float32)  # (n_users, factors)
        self.item_factors_ = net.Q.detach().cpu().numpy().astype(np.float32)  # (n_items, factors)
        self.item_bias_ = net.b.detach()[:, 0].cpu().numpy().astype(np.float32)  # (n_items,)

    # -- scoring ----------------------------------------------------------------------------------
    def _score(self, users, history):
        # users is never None here: fold_in = False makes the base class refuse history-only calls
        U = torch.from_numpy(self.user_factors_[users])  # (B, factors)
        V = torch.from_numpy(self.item_factors_)  # (n_items, factors)
        return (U @ V.T + torch.from_numpy(self.item_bias_)[None, :]).numpy()  # (B, n_items)


class _Factors(nn.Module):
    """The learned tables: one parameter ``W`` (n_users + n_items, d) holding the user rows ``P``
    (n_users, d) and then the item rows ``Q`` (n_items, d) (one table: a batch's rows are summed
    and updated in one pass), and the item bias ``b`` (n_items, 1) (a one-column table, trained
    only with ``item_bias``)."""

    def __init__(self, P: torch.Tensor, Q: torch.Tensor, b: torch.Tensor, item_bias: bool):
        super().__init__()
        self.n_users = P.shape[0]
        self.W = nn.Parameter(torch.cat([P, Q]))
        self.b = nn.Parameter(b, requires_grad=item_bias)

    @property
    def P(self) -> torch.Tensor:
        return self.W[:self.n_users]

    @property
    def Q(self) -> torch.Tensor:
        return self.W[self.n_users:]


class _Epochs:
    """BPR batches for :class:`~feedgan.gan.LossTrainer`: every epoch shuffles all positive pairs
    once and draws every negative of the epoch in one call; step ``t`` is batch
    ``t mod steps_per_epoch`` of that order."""

    def __init__(self, model: BPR, net: _Factors, X: sp.csr_matrix, gen: torch.Generator):
        dev = net.W.device
        # every positive pair once: pos_u[k], pos_i[k] is the k-th non-zero of X
        self.pos_u = torch.from_numpy(np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))).to(dev)  # (nnz,)
        self.pos_i = torch.from_numpy(X.indices.astype(np.int64)).to(dev)  # (nnz,)
        self.model, self.net, self.gen, self.n_items = model, net, gen, X.shape[1]
        self.steps_per_epoch = math.ceil(len(self.pos_u) / model.batch_size)
        rows = _RowSums if model.optimizer == "adam" else _RowList
        self.sums = (rows(net.W), rows(net.b) if model.item_bias else None)
        self.scratch = _Scratch()  # the batch's gathered rows and their gradients, reused batch to batch
        self.u = self.i = self.j = None  # this epoch's pairs in shuffled order (nnz,), (nnz,), (nnz, n)

    def loss(self, step: int) -> torch.Tensor:
        k, B, net = step % self.steps_per_epoch, self.model.batch_size, self.net
        if k == 0:
            self._new_epoch()
        batch = slice(k * B, (k + 1) * B)
        return _BatchLoss.apply(net.W, net.b, self.u[batch], self.i[batch], self.j[batch], net.n_users,
                                float(self.model.reg), self.sums, self.scratch)

    def _new_epoch(self) -> None:
        # the same random stream as one randint per batch: the draws are consumed in order
        dev = self.net.W.device
        order = torch.randperm(len(self.pos_u), generator=self.gen, device=dev)  # (nnz,)
        self.u, self.i = self.pos_u[order], self.pos_i[order]
        self.j = torch.randint(self.n_items, (len(order), self.model.neg_per_pos), generator=self.gen, device=dev)


class _Scratch:
    """Work tensors kept from batch to batch: ``get(name, m, like)`` is the first ``m`` rows of
    one buffer shaped like ``like`` past its first dimension (grown when too small). On CPU a
    batch-sized tensor allocated afresh costs an extra pass (the allocator hands back new pages)."""

    def __init__(self):
        self.buffers: dict[str, torch.Tensor] = {}

    def get(self, name, m: int, like: torch.Tensor) -> torch.Tensor:
        buf = self.buffers.get(name)
        if buf is None or len(buf) < m or buf.shape[1:] != like.shape[1:] or buf.dtype != like.dtype:
            buf = self.buffers[name] = torch.empty(m, *like.shape[1:], dtype=like.dtype, device=like.device)
        return buf[:m]


class _RowList:
    """Hands per-example row gradients of a ``table`` (n_rows, d) over as they are: an uncoalesced
    sparse tensor storing one row per appearance (what :class:`_RowSGD` adds up in one pass)."""

    def __init__(self, table: torch.Tensor):
        self.shape = table.shape

    def __call__(self, *parts: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """``parts``: pairs ``(idx, vals)``, rows ``vals`` (m, d) belonging to table rows ``idx`` (m,)."""
        idx, vals = parts[0] if len(parts) == 1 else (torch.cat(p) for p in zip(*parts))
        return torch.sparse_coo_tensor(idx[None], vals, self.shape, check_invariants=False)


class _RowSums:
    """Sums per-example row gradients into the gradient of a ``table`` (n_rows, d): a coalesced
    sparse tensor with one stored row per touched table row, duplicates summed. Instead of sorting
    the indices, a mask marks the touched rows and a lookup table numbers them (both kept between
    batches; only what a batch touched is reset)."""

    def __init__(self, table: torch.Tensor):
        self.shape = table.shape
        self.touched = torch.zeros(table.shape[0], dtype=torch.bool, device=table.device)  # (n_rows,)
        self.slot = torch.zeros(table.shape[0], dtype=torch.long, device=table.device)  # row -> its stored row
        self.scratch = _Scratch()  # the summed rows (valid until the next call: the step consumes them first)

    def __call__(self, *parts: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """``parts``: pairs ``(idx, vals)``, rows ``vals`` (m, d) belonging to table rows ``idx`` (m,)."""
        for idx, _ in parts:
            self.touched[idx] = True
        rows = self.touched.nonzero()[:, 0]  # (r,), sorted
        self.touched[rows] = False
        self.slot[rows] = torch.arange(len(rows), device=rows.device)
        summed = self.scratch.get("summed", len(rows), parts[0][1]).zero_()  # (r, d)
        for idx, vals in parts:  # scatter_add_ with a broadcast index: index_add_ takes a slower path
            summed.scatter_add_(0, self.slot[idx][:, None].expand_as(vals), vals)
        return torch.sparse_coo_tensor(rows[None], summed, self.shape, is_coalesced=True, check_invariants=False)


def _sq(x: torch.Tensor) -> torch.Tensor:
    """Sum of squares (a dot product: no temporary)."""
    flat = x.reshape(-1)
    return torch.dot(flat, flat)


def _row_grads(rows: torch.Tensor, B: int, dz: torch.Tensor, dz_sum: torch.Tensor, c: float,
               grad: torch.Tensor, diff: torch.Tensor | None) -> torch.Tensor:
    """The loss's gradient for every gathered row, written into ``grad`` (B (2 + n), d) in the
    layout of ``rows``: the user rows ``p_u``, then the positives ``q_i``, then the negatives
    ``q_j`` (B n of them, a pair's n in a row). ``dz`` (B, n) is d loss / d (x_ui - x_uj),
    ``dz_sum`` (B, 1) its sum over a pair's negatives, ``c`` the L2 slope of one appearance (a
    negative's is ``c / n``); with one negative, ``diff`` (B, d) is ``q_i - q_j``."""
    n = dz.shape[1]
    pu, qi, qj = rows[:B], rows[B:2 * B], rows[2 * B:].view(B, n, -1)
    g_pu, g_qi, g_qj = grad[:B], grad[B:2 * B], grad[2 * B:].view(B, n, -1)
    # the L2 terms first, then the ranking terms added in place
    if n == 1:
        torch.mul(rows, c, out=grad)
        g_pu.addcmul_(diff, dz)  # dz (q_i - q_j)
    else:
        torch.mul(rows[:2 * B], c, out=grad[:2 * B])
        torch.mul(qj, c / n, out=g_qj)
        g_pu.addcmul_(qi, dz_sum).sub_(torch.bmm(dz[:, None, :], qj)[:, 0])  # sum_n dz (q_i - q_j) (B, d)
    g_qi.addcmul_(pu, dz_sum)
    g_qj.addcmul_(dz[..., None], pu[:, None, :], value=-1.0)
    return grad


class _BatchLoss(torch.autograd.Function):
    """The BPR loss of one batch with its gradient written out by hand: B positive pairs
    ``(u, i)``, each with n negatives ``j`` (B, n)::

        z = x_ui - x_uj                                        (B, n)
        loss = mean softplus(-z) + reg * (|p_u|^2 + |q_i|^2 + mean_n |q_j|^2 [+ bias terms]) / B

    ``W`` stacks the user rows and then the item rows (item ``i`` is row ``n_users + i``).
    ``forward`` needs no autograd graph (a few fused row operations instead of embedding lookups
    and their backward); ``backward`` puts the row gradients of ``W`` (and of ``b`` when ``sums``
    has a second entry: the item bias is trained) on their ``.grad`` as sparse tensors, shaped by
    ``sums``: each touched row once (:class:`_RowSums`, for :class:`_LazyAdam`) or one row per
    appearance (:class:`_RowList`, for :class:`_RowSGD`)."""

    @staticmethod
    def forward(ctx, W, b, u, i, j, n_users: int, reg: float, sums: tuple, scratch: _Scratch):
        B, n = j.shape
        idx = torch.cat([u, i + n_users, j.reshape(-1) + n_users])  # rows of W: users, positives, negatives
        rows = torch.index_select(W, 0, idx, out=scratch.get("rows", len(idx), W))  # (B (2 + n), d), one gather
        pu, qi, qj = rows[:B], rows[B:2 * B], rows[2 * B:].view(B, n, -1)  # (B, d), (B, d), (B, n, d)
        diff = None
        if n == 1:  # x_ui - x_uj = <p_u, q_i - q_j>, through kept (B, d) buffers
            diff = torch.sub(qi, qj[:, 0], out=scratch.get("diff", B, W))
            z = torch.mul(diff, pu, out=scratch.get("prod", B, W)).sum(1, keepdim=True)  # (B, 1)
        else:
            z = torch.linalg.vecdot(pu, qi)[:, None] - torch.linalg.vecdot(pu[:, None, :], qj)  # (B, n)
        sq = _sq(rows) if n == 1 else _sq(rows[:2 * B]) + _sq(qj) / n
        if sums[1] is not None:
            bi, bj = F.embedding(i, b)[:, 0], F.embedding(j, b)[..., 0]  # (B,), (B, n)
            z = z + (bi[:, None] - bj)
            sq = sq + _sq(bi) + _sq(bj) / n
        loss = F.softplus(-z).mean() + reg * sq / B
        # d loss / d z (B, n) and its sum over a pair's negatives (B, 1); c: the L2 slope per appearance
        dz = torch.sigmoid(-z).mul_(-1.0 / (B * n))
        dz_sum, c = dz.sum(1, keepdim=True), 2.0 * reg / B
        grads = [sums[0]((idx, _row_grads(rows, B, dz, dz_sum, c, scratch.get("grad", len(idx), W), diff))), None]
        if sums[1] is not None:
            grads[1] = sums[1]((i, torch.add(dz_sum, bi[:, None], alpha=c)),
                               (j.reshape(-1), torch.add(-dz, bj, alpha=c / n).reshape(B * n, 1)))
        ctx.tables, ctx.grads = (W, b), grads
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        # the row gradients go onto the tables' .grad here rather than through autograd's
        # accumulation, which copies every sparse gradient it is handed (one more pass per step)
        grads, ctx.grads = ctx.grads, None
        scaled = grad_loss.device.type != "cpu" or grad_loss.item() != 1.0  # the loop never scales its loss
        for table, g in zip(ctx.tables, grads):
            if g is None:
                continue
            if scaled:
                g._values().mul_(grad_loss)  # in place: the tensors are this batch's own
            table.grad = g if table.grad is None else table.grad + g
        return (None,) * 9


class _LazyAdam(torch.optim.Optimizer):
    """Lazy Adam on sparse row gradients: the update of ``torch.optim.SparseAdam`` (the moments of
    a row advance only on the steps that touch it; the bias correction follows the step count).
    Each step gathers the touched rows of the parameter and its moments, runs torch's fused Adam
    kernel on them (one pass instead of one per elementwise operation) and writes them back.
    SparseAdam adds ``eps`` to ``sqrt(v)`` before the bias correction, the fused kernel after it,
    so the kernel gets ``eps / sqrt(1 - beta2 ** step)``: the same update.
    Gradients must be sparse tensors storing each touched row once, as :class:`_BatchLoss` gives."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})
        self.scratch = _Scratch()  # kept buffers for the gathered rows (not state: nothing to save)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            (beta1, beta2), eps = group["betas"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:  # step: a host count; the kernel reads its own copy
                    state.update(step=0, step_t=torch.zeros((), dtype=torch.float32, device=p.device),
                                 exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
                state["step"] += 1
                state["step_t"].add_(1)
                rows, g = p.grad._indices()[0], p.grad._values()  # (r,), (r, d)
                tables = (p, state["exp_avg"], state["exp_avg_sq"])
                p_r, m_r, v_r = (torch.index_select(t, 0, rows, out=self.scratch.get((id(p), k), len(rows), t))
                                 for k, t in enumerate(tables))  # (r, d) each
                # the kernel torch.optim.Adam(fused=True) runs, called directly (its Python wrapper
                # costs about as much as the kernel at these sizes)
                torch._fused_adam_([p_r], [g.contiguous()], [m_r], [v_r], [], [state["step_t"]], amsgrad=False,
                                   beta1=beta1, beta2=beta2, lr=group["lr"], weight_decay=0.0,
                                   eps=eps / math.sqrt(1 - beta2 ** state["step"]), maximize=False)
                for table, r in zip(tables, (p_r, m_r, v_r)):
                    table.index_copy_(0, rows, r)


class _RowSGD(torch.optim.Optimizer):
    """Plain SGD on sparse row gradients, ``p[rows] -= lr * g`` for every stored row in one pass
    (a row stored twice moves by the sum: the step on the summed gradient); untouched rows stay."""

    def __init__(self, params, lr: float = 0.05):
        super().__init__(params, {"lr": lr})
        self.scratch = _Scratch()  # a kept buffer for -lr g

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                rows, g = p.grad._indices()[0], p.grad._values()  # (m,), (m, d): g[k] belongs to row rows[k]
                step = torch.mul(g, -group["lr"], out=self.scratch.get(id(p), len(g), g))
                p.scatter_add_(0, rows[:, None].expand_as(step), step)  # index_add_ with alpha is slower


OPTIMIZERS = {"adam": _LazyAdam, "sgd": _RowSGD}  # BPR's ``optimizer`` -> the class that updates the rows
