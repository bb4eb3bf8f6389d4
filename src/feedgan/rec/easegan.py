"""EASE-GAN: a linear item-to-item generator, denoising reconstruction, adversarial regulariser.

The ECIR 2022 study of CFGAN found its generator degenerates into an autoencoder, and a weak one;
tuned linear autoencoders such as EASE (Steck 2019) beat it. EASE-GAN starts from there and asks
whether adversarial training adds anything on top of the strongest simple model:

- **Generator**: EASE's shape, ``scores = c @ B`` with a zero diagonal (an item never explains
  itself), initialised at the EASE closed-form solution for ``l2``. ``B`` is (n_items, n_items),
  so the dense generator is meant for catalogues up to a few thousand items.
- **Low-rank generator** (``rank=r``): ``B = P Q^T - diag(rowdot(P, Q))`` with ``P``, ``Q``
  (n_items, r); the product is taken as ``(c @ P) @ Q^T - c * rowdot(P, Q)``, so neither ``B``
  nor anything else of n_items^2 entries is formed and memory is O(n_items * r) (Gowalla's 41k
  items: the dense ``B`` with its gradient and Adam state needs ~27 GB, ``r = 256`` about 0.3 GB).
  It starts without the dense EASE solve, at the ridge solution restricted to the top ``r``
  singular directions of the input ``X = U S V^T``: ``B0 = V_r diag(s^2 / (s^2 + l2)) V_r^T``,
  split evenly into ``P = Q = V_r diag(sqrt(s^2 / (s^2 + l2)))``. The diagonal only changes
  the scores of the user's own (excluded) items, so epoch 0 ranks like that ridge model, which
  is PureSVD's ``V_r V_r^T`` as ``l2`` goes to 0. The weight decay of the reconstruction term
  (below) then acts on ``P`` and ``Q``: ``||P||^2 + ||Q||^2`` bounds twice ``B``'s nuclear norm.
- **Condition noise**: the generator reads the user's row with inverted dropout (``dropout``), so it
  cannot fall back to the identity and must predict items from the others (a denoising linear
  autoencoder, as in Steck's EDLAE / DLAE).
- **Reconstruction** (G's main loss, the EASE objective on noisy input)::

      mean_u ||x_u - G(dropout(x_u))||^2  +  (l2 / n_users) * ||B||_F^2

- **Adversarial regulariser** (``adv_weight``): a CFGAN-style discriminator judges
  ``[r * mask, c]``, real rows ``r = x_u`` against ``G(c)``, where ``mask`` keeps the observed
  items plus a share ``s_neg`` of unobserved ones (resampled every batch); G gets
  ``adv_weight * loss_G`` on top of the reconstruction. ``adversarial=False`` drops D: the
  ablation that shows what the GAN part contributes.

**Action-conditional** (fitted with a target and auxiliary actions, ``fit(ds, target="buy",
aux={"cart": 1, "view": 1})``): the generator predicts the *target-action* vector ``y_u`` from the
condition ``c = dropout(y_u) + sum_a w_a a_u`` (the target history with inverted dropout, the
auxiliary histories intact: the platform knows what was viewed), through ``c @ B`` plus a learned
per-item weight ``D_a[i]`` for each auxiliary action the user took on item ``i`` itself (the
zero diagonal of ``B`` forbids that path). ``B`` starts at stacked EASE (with ``rank``, at the
low-rank ridge solution of the stacked input), ``D_a`` at the items' conversion rates
``P(target | a)`` (:class:`feedgan.rec.behaviour.SeenEASE`), so epoch 0 is that non-GAN model; D judges ``(target vector, condition)`` pairs. Without a target, ``y = c`` and
there are no ``D_a``: the model above.

Training runs on :class:`feedgan.gan.GANTrainer` (the ablation on
:class:`feedgan.gan.LossTrainer`, the same loop). With a validation part, NDCG@20 on it is
measured before training (epoch 0: plain EASE, or the low-rank ridge start) and every
``eval_every`` epochs; the best epoch is kept and reported by ``selected_params()``, so an
adversarial phase that does not help on validation shows up as a chosen epoch of 0, and the
refit is then the starting point itself (EASE, or the low-rank ridge solution).
"""
from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from ..gan import BestCheckpoint, GANConfig, GANTask, GANTrainer, LossTrainer
from ..optim import adam
from .base import Recommender, Validation
from .baselines import EASE
from .behaviour import conversion_rates
from .cfgan import mlp
from .selection import epoch_choice, validation_ndcg


SPARSE_BELOW = 0.1  # condition rows under this density (on CPU) go through a sparse product


def _times(c: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """``c @ W`` (B, k) for conditions ``c`` (B, n_items): sparse when ``c`` is (implicit feedback
    rows are a few percent non-zero)."""
    if c.device.type == "cpu" and c.count_nonzero() < SPARSE_BELOW * c.numel():
        return torch.sparse.mm(c.to_sparse(), W)
    return c @ W


class ItemItem(nn.Module):
    """``c @ B`` with B's diagonal left out.

    The output never depends on the diagonal, so it is read detached: autograd then builds no
    (n_items, n_items) gradient for it (the diagonal's gradient from ``c @ B`` is left to drift
    unused and is zeroed when training ends).
    """

    def __init__(self, B: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(B.clone())  # (n_items, n_items)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        W = self.weight
        return _times(c, W) - c * W.diagonal().detach()  # (B, n_items)

    def dense(self) -> torch.Tensor:
        """B (n_items, n_items) with its diagonal zeroed."""
        B = self.weight.detach().clone()
        return B.fill_diagonal_(0.0)


class LowRankItemItem(nn.Module):
    """``c @ B`` for ``B = P Q^T`` with its diagonal taken out, computed as
    ``(c @ P) @ Q^T - c * rowdot(P, Q)`` without forming ``B``. ``P``, ``Q``: (n_items, r)."""

    def __init__(self, P: torch.Tensor, Q: torch.Tensor):
        super().__init__()
        self.left = nn.Parameter(P.clone())  # (n_items, r)
        self.right = nn.Parameter(Q.clone())  # (n_items, r)

    def diagonal(self) -> torch.Tensor:
        return (self.left * self.right).sum(1)  # (n_items,): B's diagonal before it is removed

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        return _times(c, self.left) @ self.right.T - c * self.diagonal()  # (B, r) @ (r, n_items)


class ActionItemItem(nn.Module):
    """``c @ B`` (zero diagonal: :class:`ItemItem` or :class:`LowRankItemItem`) plus
    ``sum_a A_a * D_a``: a per-item weight for each auxiliary action the user took on the item
    itself. ``D`` is (n_aux, n_items)."""

    def __init__(self, items: nn.Module, D: torch.Tensor):
        super().__init__()
        self.items = items
        self.aux_weight = nn.Parameter(D.clone())  # (n_aux, n_items)

    def forward(self, c: torch.Tensor, aux: torch.Tensor | None = None) -> torch.Tensor:
        out = self.items(c)  # (B, n_items)
        if aux is not None and aux.shape[0]:
            out = out + torch.einsum("kbn,kn->bn", aux, self.aux_weight)  # aux: (n_aux, B, n_items)
        return out


def ridge_factors(X: sp.spmatrix, rank: int, l2: float, seed: int) -> torch.Tensor:
    """``F`` (n_items, rank) float32 with ``F F^T = V_r diag(s^2 / (s^2 + l2)) V_r^T``: the ridge
    solution ``(X^T X + l2 I)^-1 X^T X`` kept to the top ``rank`` singular directions of ``X``.
    A truncated sparse SVD; a dense one when ``rank`` reaches the matrix's smaller side (then
    directions past X's rank get weight 0)."""
    n_items = X.shape[1]
    if rank < min(X.shape):
        from scipy.sparse.linalg import svds

        rng = np.random.default_rng(seed)  # svds' start vector; the subspace does not depend on it
        _, s, vt = svds(sp.csr_matrix(X, dtype=np.float64), k=rank, v0=rng.random(min(X.shape)))
    else:
        _, s, vt = np.linalg.svd(sp.csr_matrix(X, dtype=np.float64).toarray(), full_matrices=True)
        s = np.concatenate([s, np.zeros(n_items - len(s))])[:rank]
        vt = vt[:rank]
    s2 = s ** 2
    shrink = np.divide(s2, s2 + l2, out=np.zeros_like(s2), where=s2 > 0)  # (rank,)
    return torch.from_numpy(np.ascontiguousarray((vt.T * np.sqrt(shrink)).astype(np.float32)))  # (n_items, rank)


class _Task(GANTask):
    """User rows as conditions (with dropout), masks for D, the EASE loss as G's extra term.

    ``Y`` (n_users, n_items) is the target, ``X`` the input (``Y`` plus weighted auxiliary rows;
    the same matrix without a target), ``A`` the auxiliary rows (n_users, n_items) by action; all
    sparse CSR, each batch's rows made dense when drawn (a dense copy of Gowalla's input alone
    would be 4.9 GB)."""

    def __init__(self, X: sp.csr_matrix, Y: sp.csr_matrix, A: list[sp.csr_matrix], dropout: float, s_neg: float,
                 steps_per_epoch: int):
        self.X, self.Y, self.A, self.dropout, self.s_neg = X, Y, A, dropout, s_neg
        self.steps_per_epoch = steps_per_epoch

    def real_batch(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        idx = torch.randint(self.X.shape[0], (n,), generator=generator).numpy()
        x, y = _dense_rows(self.X, idx), _dense_rows(self.Y, idx)  # (n, n_items)
        keep = torch.rand(x.shape, generator=generator) >= self.dropout
        # inverted dropout on the target part (the same expectation); auxiliary rows stay whole
        cond = y * keep / (1.0 - self.dropout) + (x - y)
        neg = (torch.rand(x.shape, generator=generator) < self.s_neg) & (y == 0)
        aux = _dense_stack([a[idx] for a in self.A], n, x.shape[1])  # (n_aux, n, n_items)
        return {"real": y, "cond": cond, "mask": y + neg.float(), "aux": aux.transpose(0, 1)}

    def fake(self, G, batch, generator):
        return G(batch["cond"], batch["aux"].transpose(0, 1))  # (n, n_items)

    def d_input(self, sample, batch):
        return torch.cat([sample * batch["mask"], batch["cond"]], 1)  # (n, 2 * n_items)

    def g_extra_loss(self, fake, batch):
        return (fake - batch["real"]).pow(2).sum(1).mean()  # the L2 term is Adam's weight decay


class _Reconstruction:
    """The ablation's updates for :class:`~feedgan.gan.LossTrainer`: the generator's EASE loss on
    a fresh batch of noisy conditions, without a discriminator."""

    def __init__(self, task: _Task, G: nn.Module, batch: int, gen: torch.Generator):
        self.task, self.G, self.batch, self.gen = task, G, batch, gen
        self.steps_per_epoch = task.steps_per_epoch

    def loss(self, step: int) -> torch.Tensor:
        batch = self.task.real_batch(self.batch, self.gen)
        return self.task.g_extra_loss(self.task.fake(self.G, batch, self.gen), batch)


def _dense_rows(M: sp.spmatrix, rows: np.ndarray) -> torch.Tensor:
    """(len(rows), n_items) float32 from the CSR rows ``rows`` of ``M``."""
    return torch.from_numpy(sp.csr_matrix(M)[rows].toarray().astype(np.float32))


def _dense_stack(mats: list[sp.spmatrix], n_rows: int, n_items: int) -> torch.Tensor:
    """(len(mats), n_rows, n_items) float32 from sparse rows (an empty first axis without any)."""
    if not mats:
        return torch.zeros(0, n_rows, n_items)
    return torch.stack([torch.from_numpy(sp.csr_matrix(m).toarray().astype(np.float32)) for m in mats])


class EASEGAN(Recommender):
    """Adversarially regularised denoising EASE; see the module docstring.

    ``rank``: None (default) for the dense (n_items, n_items) generator started at EASE; an
    integer ``r`` in [1, n_items] for the low-rank one, ``B = P Q^T`` minus its diagonal, started
    at the rank-``r`` ridge solution (no dense solve, memory O(n_items * r)).

    Learned state: ``B_`` (n_items, n_items) float32 with a zero diagonal (dense), or ``P_`` and
    ``Q_`` (n_items, r) float32 (low-rank); ``D_`` (n_aux, n_items), ``best_epoch_``,
    ``valid_history_`` ((epoch, NDCG@20) pairs, epoch 0 = the initialisation).
    """

    name = "easegan"
    fold_in = True
    uses_validation = True
    multi_channel = True

    def __init__(self, l2: float = 200.0, dropout: float = 0.25, adv_weight: float = 0.1, s_neg: float = 0.5,
                 d_hidden: tuple = (128,), loss: str = "nonsaturating", lr_g: float = 1e-4, lr_d: float = 1e-4,
                 batch_size: int = 64, epochs: int = 50, adversarial: bool = True, eval_every: int = 5,
                 patience: int | None = 4, rank: int | None = None, seed: int = 0, device: str = "cpu"):
        self.l2, self.dropout, self.adv_weight, self.s_neg = l2, dropout, adv_weight, s_neg
        self.d_hidden, self.loss, self.lr_g, self.lr_d = d_hidden, loss, lr_g, lr_d
        self.batch_size, self.epochs, self.adversarial = batch_size, epochs, adversarial
        self.eval_every, self.patience, self.rank = eval_every, patience, rank
        self.seed, self.device = seed, device

    def _check_params(self, n_items: int) -> None:
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"{self.name}: dropout must be in [0, 1), got {self.dropout}")
        r = self.rank
        if r is not None and (isinstance(r, bool) or not isinstance(r, (int, np.integer)) or not 1 <= r <= n_items):
            raise ValueError(f"{self.name}: rank must be None (the dense item-item generator) or an integer "
                             f"from 1 to the number of items ({n_items}), got {r!r}")

    def _item_generator(self, X: sp.csr_matrix, progress) -> nn.Module:
        """The item-item part at its starting point: EASE (dense) or the low-rank ridge solution."""
        if self.rank is None:
            ease = EASE(l2=self.l2)
            ease._fit(X, progress)  # on the weighted input itself (fit() would binarise a matrix)
            return ItemItem(torch.from_numpy(ease.B_.astype(np.float32)))  # (n_items, n_items)
        F = ridge_factors(X, int(self.rank), self.l2, self.seed)  # (n_items, r)
        return LowRankItemItem(F, F)

    def _fit(self, X: sp.csr_matrix, progress=None, valid: Validation | None = None) -> None:
        n_users, n_items = X.shape
        self._check_params(n_items)
        names = self._aux_names()
        channels = self._with_friends(getattr(self, "channels_", {}), np.arange(n_users))
        X = sp.csr_matrix(X, dtype=np.float32)
        Y = X if self.target_ is None else sp.csr_matrix(self.seen, dtype=np.float32)
        A = [sp.csr_matrix(channels[a], dtype=np.float32) for a in names]  # (n_users, n_items) each
        D0 = conversion_rates(self.seen, [channels[a] for a in names], shrink=10.0)  # (n_aux, n_items)
        G = ActionItemItem(self._item_generator(X, progress), torch.from_numpy(D0))
        steps = math.ceil(n_users / self.batch_size)
        task = _Task(X, Y, A, self.dropout, self.s_neg, steps)
        # (l2 / n_users) * ||B||^2 has the gradient (2 * l2 / n_users) * B: Adam's (coupled) weight decay
        # (on P and Q with a low rank)
        decay = 2.0 * self.l2 / n_users
        if self.adversarial and self.epochs >= 1:
            trainer = self._gan_trainer(G, task, decay, n_items)
        else:  # the ablation; with epochs=0, the starting point itself (what validation chose when training did not help)
            opt = adam(G.parameters(), lr=self.lr_g, weight_decay=decay)
            gen = torch.Generator().manual_seed(int(self.seed))
            trainer = LossTrainer(G, _Reconstruction(task, G, self.batch_size, gen), opt, max(0, self.epochs),
                                  name=f"{self.name} (no D)")
        best = None
        if valid is not None:
            @torch.no_grad()
            def metric(t) -> float:
                def score(u):  # from the rows each user is scored from (fold-in rows when held out)
                    A_u = _dense_stack([valid.channels[a][u] for a in names], len(u), n_items)
                    return t.eval_model(_dense_rows(valid.inputs, u), A_u).numpy()
                return validation_ndcg(score, valid)

            best = BestCheckpoint(metric, every=steps * max(1, self.eval_every), patience=self.patience,
                                  at_start=True, restore_on_end=True)
        trainer.fit(progress=progress, callbacks=[best] if best else [])
        G = trainer.eval_model.cpu()
        self.valid_history_, self.best_epoch_ = epoch_choice(best, steps, self.epochs) if best else ([], self.epochs)
        self._keep(G)

    def _keep(self, G: ActionItemItem) -> None:
        """The learned arrays of a trained generator (``B_``, or ``P_`` and ``Q_``; ``D_``)."""
        self._forget_generator()
        if isinstance(G.items, LowRankItemItem):  # row-major, as load() gives them back: the BLAS
            # products that score them then round the same way after a save and load
            self.P_ = np.ascontiguousarray(G.items.left.detach().numpy())  # (n_items, r)
            self.Q_ = np.ascontiguousarray(G.items.right.detach().numpy())  # (n_items, r)
        else:
            self.B_ = G.items.dense().numpy()  # (n_items, n_items)
        self.D_ = G.aux_weight.detach().clone().numpy()  # (n_aux, n_items)

    def _forget_generator(self) -> None:
        """Drop ``B_`` / ``P_`` / ``Q_``: a refit or load may switch between the dense and low-rank form."""
        for stale in ("B_", "P_", "Q_"):
            self.__dict__.pop(stale, None)

    def _aux_names(self) -> list[str]:
        return list(self.aux_) if self.target_ is not None else []

    def _gan_trainer(self, G: ActionItemItem, task: "_Task", decay: float, n_items: int) -> GANTrainer:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.seed))
            D = mlp(2 * n_items, tuple(self.d_hidden), 1, "leaky_relu", out_sigmoid=False)
        cfg = GANConfig(loss=self.loss, lr_g=self.lr_g, lr_d=self.lr_d, betas=(0.9, 0.999),
                        batch_size=self.batch_size, adv_weight=self.adv_weight, weight_decay_g=decay,
                        epochs=self.epochs, tick_every=task.steps_per_epoch, checkpoint_every=None, seed=self.seed,
                        device=self.device)
        return GANTrainer(G, D, task, cfg)

    def _score(self, users, inputs, seen, channels):
        out = self._item_scores(sp.csr_matrix(inputs, dtype=np.float32))  # (B, n_items)
        for j, a in enumerate(self._aux_names()):
            if a not in channels:  # an action left out of a history: no rows of it
                continue
            A = sp.csr_matrix(channels[a]).tocoo()
            np.add.at(out, (A.row, A.col), A.data * self.D_[j, A.col])
        return out

    def _item_scores(self, inputs: sp.csr_matrix) -> np.ndarray:
        """``inputs @ B`` (B, n_items) with the zero diagonal; through the factors when low-rank."""
        if "B_" in self.__dict__:
            return np.asarray(inputs @ self.B_, dtype=np.float32)
        out = np.asarray((inputs @ self.P_) @ self.Q_.T, dtype=np.float32)  # (B, r) @ (r, n_items)
        c = inputs.tocoo()
        diag = np.einsum("ir,ir->i", self.P_, self.Q_)  # (n_items,)
        np.subtract.at(out, (c.row, c.col), c.data * diag[c.col])
        return out

    def _state(self):
        keep = ("P_", "Q_") if "P_" in self.__dict__ else ("B_",)
        return {**{k: self.__dict__[k] for k in keep}, "D_": self.D_}

    def _set_state(self, state):
        self._forget_generator()
        for k in ("B_", "P_", "Q_"):
            if k in state:
                setattr(self, k, np.array(state[k], dtype=np.float32))
        n_items = (self.B_ if "B_" in self.__dict__ else self.P_).shape[0]
        self.D_ = np.array(state.get("D_", np.zeros((0, n_items))), dtype=np.float32)
        self.best_epoch_, self.valid_history_ = self.epochs, []
