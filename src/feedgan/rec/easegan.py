"""EASE-GAN: a linear item-to-item generator, denoising reconstruction, adversarial regulariser.

The ECIR 2022 study of CFGAN found its generator degenerates into an autoencoder, and a weak one;
tuned linear autoencoders such as EASE (Steck 2019) beat it. EASE-GAN starts from there and asks
whether adversarial training adds anything on top of the strongest simple model:

- **Generator**: EASE's shape, ``scores = c @ B`` with a zero diagonal (an item never explains
  itself), initialised at the EASE closed-form solution for ``l2``. ``B`` is (n_items, n_items),
  so the model is meant for catalogues up to a few thousand items.
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
zero diagonal of ``B`` forbids that path). ``B`` starts at stacked EASE, ``D_a`` at the items'
conversion rates ``P(target | a)`` (:class:`feedgan.rec.behaviour.SeenEASE`), so epoch 0 is that
non-GAN model; D judges ``(target vector, condition)`` pairs. Without a target, ``y = c`` and
there are no ``D_a``: the model above.

Training runs on :class:`feedgan.gan.GANTrainer` (the ablation on
:class:`feedgan.gan.LossTrainer`, the same loop). With a validation part, NDCG@20 on it is
measured before training (epoch 0: plain EASE) and every ``eval_every`` epochs; the best epoch
is kept and reported by ``selected_params()``, so an adversarial phase that does not help on
validation shows up as a chosen epoch of 0, and the refit is then EASE itself.
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


class ItemItem(nn.Module):
    """``c @ B`` with B's diagonal left out.

    The output never depends on the diagonal, so it is read detached: autograd then builds no
    (n_items, n_items) gradient for it (the diagonal's gradient from ``c @ B`` is left to drift
    unused and is zeroed when training ends). Sparse conditions (under ``SPARSE_BELOW`` density,
    on CPU) go through a sparse product: implicit feedback rows are a few percent non-zero.
    """

    SPARSE_BELOW = 0.1

    def __init__(self, B: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(B.clone())  # (n_items, n_items)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        W = self.weight
        if c.device.type == "cpu" and c.count_nonzero() < self.SPARSE_BELOW * c.numel():
            out = torch.sparse.mm(c.to_sparse(), W)
        else:
            out = c @ W
        return out - c * W.diagonal().detach()  # (B, n_items)


class ActionItemItem(nn.Module):
    """``c @ B`` (zero diagonal, :class:`ItemItem`) plus ``sum_a A_a * D_a``: a per-item weight for
    each auxiliary action the user took on the item itself. ``D`` is (n_aux, n_items)."""

    def __init__(self, B: torch.Tensor, D: torch.Tensor):
        super().__init__()
        self.items = ItemItem(B)
        self.aux_weight = nn.Parameter(D.clone())  # (n_aux, n_items)

    def forward(self, c: torch.Tensor, aux: torch.Tensor | None = None) -> torch.Tensor:
        out = self.items(c)  # (B, n_items)
        if aux is not None and aux.shape[0]:
            out = out + torch.einsum("kbn,kn->bn", aux, self.aux_weight)  # aux: (n_aux, B, n_items)
        return out


class _Task(GANTask):
    """User rows as conditions (with dropout), masks for D, the EASE loss as G's extra term.

    ``Y`` (n_users, n_items) is the target, ``X`` the input (``Y`` plus weighted auxiliary rows;
    the same tensor without a target), ``A`` (n_aux, n_users, n_items) the auxiliary rows."""

    def __init__(self, X: torch.Tensor, Y: torch.Tensor, A: torch.Tensor, dropout: float, s_neg: float,
                 steps_per_epoch: int):
        self.X, self.Y, self.A, self.dropout, self.s_neg = X, Y, A, dropout, s_neg
        self.steps_per_epoch = steps_per_epoch

    def real_batch(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        idx = torch.randint(self.X.shape[0], (n,), generator=generator)
        x, y = self.X[idx], self.Y[idx]  # (n, n_items)
        keep = torch.rand(x.shape, generator=generator) >= self.dropout
        # inverted dropout on the target part (the same expectation); auxiliary rows stay whole
        cond = y * keep / (1.0 - self.dropout) + (x - y)
        neg = (torch.rand(x.shape, generator=generator) < self.s_neg) & (y == 0)
        return {"real": y, "cond": cond, "mask": y + neg.float(), "aux": self.A[:, idx].transpose(0, 1)}

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


def _dense_stack(mats: list[sp.spmatrix], n_rows: int, n_items: int) -> torch.Tensor:
    """(len(mats), n_rows, n_items) float32 from sparse rows (an empty first axis without any)."""
    if not mats:
        return torch.zeros(0, n_rows, n_items)
    return torch.stack([torch.from_numpy(sp.csr_matrix(m).toarray().astype(np.float32)) for m in mats])


class EASEGAN(Recommender):
    """Adversarially regularised denoising EASE; see the module docstring.

    Learned state: ``B_`` (n_items, n_items) float32 with a zero diagonal, ``best_epoch_``,
    ``valid_history_`` ((epoch, NDCG@20) pairs, epoch 0 = the EASE initialisation).
    """

    name = "easegan"
    fold_in = True
    uses_validation = True
    multi_channel = True

    def __init__(self, l2: float = 200.0, dropout: float = 0.25, adv_weight: float = 0.1, s_neg: float = 0.5,
                 d_hidden: tuple = (128,), loss: str = "nonsaturating", lr_g: float = 1e-4, lr_d: float = 1e-4,
                 batch_size: int = 64, epochs: int = 50, adversarial: bool = True, eval_every: int = 5,
                 patience: int | None = 4, seed: int = 0, device: str = "cpu"):
        self.l2, self.dropout, self.adv_weight, self.s_neg = l2, dropout, adv_weight, s_neg
        self.d_hidden, self.loss, self.lr_g, self.lr_d = d_hidden, loss, lr_g, lr_d
        self.batch_size, self.epochs, self.adversarial = batch_size, epochs, adversarial
        self.eval_every, self.patience, self.seed, self.device = eval_every, patience, seed, device

    def _fit(self, X: sp.csr_matrix, progress=None, valid: Validation | None = None) -> None:
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"{self.name}: dropout must be in [0, 1), got {self.dropout}")
        n_users, n_items = X.shape
        ease = EASE(l2=self.l2)
        ease._fit(X, progress)  # on the weighted input itself (fit() would binarise a matrix)
        B0 = torch.from_numpy(ease.B_.astype(np.float32))  # (n_items, n_items)
        names = self._aux_names()
        channels = self._with_friends(getattr(self, "channels_", {}), np.arange(n_users))
        Xt = torch.from_numpy(X.toarray().astype(np.float32))
        Yt = Xt if self.target_ is None else torch.from_numpy(self.seen.toarray().astype(np.float32))
        A = _dense_stack([channels[a] for a in names], n_users, n_items)  # (n_aux, n_users, n_items)
        D0 = conversion_rates(self.seen, [channels[a] for a in names], shrink=10.0)  # (n_aux, n_items)
        G = ActionItemItem(B0, torch.from_numpy(D0))
        steps = math.ceil(n_users / self.batch_size)
        task = _Task(Xt, Yt, A, self.dropout, self.s_neg, steps)
        # (l2 / n_users) * ||B||^2 has the gradient (2 * l2 / n_users) * B: Adam's (coupled) weight decay
        decay = 2.0 * self.l2 / n_users
        if self.adversarial and self.epochs >= 1:
            trainer = self._gan_trainer(G, task, decay)
        else:  # the ablation; with epochs=0, EASE itself (what validation chose when training did not help)
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
                    return t.eval_model(torch.from_numpy(valid.inputs[u].toarray()), A_u).numpy()
                return validation_ndcg(score, valid)

            best = BestCheckpoint(metric, every=steps * max(1, self.eval_every), patience=self.patience,
                                  at_start=True, restore_on_end=True)
        trainer.fit(progress=progress, callbacks=[best] if best else [])
        G = trainer.eval_model.cpu()
        self.valid_history_, self.best_epoch_ = epoch_choice(best, steps, self.epochs) if best else ([], self.epochs)
        B = G.items.weight.detach().clone()
        B.fill_diagonal_(0.0)
        self.B_ = B.numpy()
        self.D_ = G.aux_weight.detach().clone().numpy()  # (n_aux, n_items)

    def _aux_names(self) -> list[str]:
        return list(self.aux_) if self.target_ is not None else []

    def _gan_trainer(self, G: ActionItemItem, task: "_Task", decay: float) -> GANTrainer:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.seed))
            D = mlp(2 * G.items.weight.shape[0], tuple(self.d_hidden), 1, "leaky_relu", out_sigmoid=False)
        cfg = GANConfig(loss=self.loss, lr_g=self.lr_g, lr_d=self.lr_d, betas=(0.9, 0.999),
                        batch_size=self.batch_size, adv_weight=self.adv_weight, weight_decay_g=decay,
                        epochs=self.epochs, tick_every=task.steps_per_epoch, checkpoint_every=None, seed=self.seed,
                        device=self.device)
        return GANTrainer(G, D, task, cfg)

    def _score(self, users, inputs, seen, channels):
        out = np.asarray(inputs @ self.B_, dtype=np.float32)  # (B, n_items)
        for j, a in enumerate(self._aux_names()):
            if a not in channels:  # an action left out of a history: no rows of it
                continue
            A = sp.csr_matrix(channels[a]).tocoo()
            np.add.at(out, (A.row, A.col), A.data * self.D_[j, A.col])
        return out

    def _state(self):
        return {"B_": self.B_, "D_": self.D_}

    def _set_state(self, state):
        self.B_ = np.array(state["B_"], dtype=np.float32)
        self.D_ = np.array(state.get("D_", np.zeros((0, self.B_.shape[0]))), dtype=np.float32)
        self.best_epoch_, self.valid_history_ = self.epochs, []
