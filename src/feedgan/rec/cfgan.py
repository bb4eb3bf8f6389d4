"""CFGAN: collaborative filtering with a vector-wise conditional GAN (Chae et al., CIKM 2018).

The generator reads a *condition*, a row's interaction vector ``c`` (a user's items in user-based
mode, an item's users in item-based mode), and writes a real-valued vector ``r_hat`` over the
other side. The discriminator judges ``[r * mask, c]`` pairs: real rows ``r = c`` against fakes
``r_hat * mask``. Without a mask the generator wins by outputting all ones, so CFGAN masks:

- ``PM`` (partial masking): the fake is masked with ``e + k``, the observed entries ``e`` plus a
  sample ``k`` of the *unobserved* entries (share ``s_pm``), so G must keep those near zero;
- ``ZR`` (zero reconstruction): G's loss also gets ``alpha * sum_j r_hat_j^2`` over a sample of
  unobserved entries (share ``s_zr``);
- ``ZP``: both. Negatives are drawn afresh for every mini-batch (Bernoulli with the share as the
  probability, vectorised), which matches the paper's per-epoch resampling in distribution.

Training runs on the shared engine :mod:`feedgan.gan` (the non-saturating loss by default: the
paper writes the minimax objective, but the widely used implementations train G on sigmoid
cross-entropy with label 1, which is the non-saturating form; on ML-100K validation it peaks at NDCG@20 0.215 after
60 epochs, against 0.177 after 80 with the minimax form), Adam,
sigmoid activations, one step = one D update and ``round(g_updates / d_updates)`` G updates, so
an epoch has the paper's ``d_steps`` / ``g_steps`` passes over all rows). When the dataset has a
validation part, NDCG@20 on it is measured every ``eval_every`` epochs and the best generator is
kept: the chosen epoch is reported by :meth:`selected_params`, and the refit on train + valid
trains exactly that many epochs.

``adversarial=False`` is the ablation the ECIR 2022 study points at: the same generator trained on
the masked reconstruction loss alone (observed -> 1, sampled unobserved -> 0), an autoencoder,
on the same loop (:class:`feedgan.gan.LossTrainer`) with the same validation schedule.
``noise_dim > 0`` appends Gaussian noise to the condition (zeros at scoring time). ``l2`` is an L2
penalty on every weight of G and D (the gradient of ``l2 / 2 * ||theta||^2``, as TensorFlow's
``l2_loss`` in the public configurations, which use 1e-3), applied by Adam as weight decay.
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
from .selection import check_can_score, epoch_choice, validation_ndcg

SCHEMES = ("ZR", "PM", "ZP")


def mlp(n_in: int, hidden: tuple[int, ...], n_out: int, activation: str, out_sigmoid: bool) -> nn.Sequential:
    """Fully connected net; ``activation`` between layers, an optional sigmoid on the output."""
    act = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "tanh": nn.Tanh, "leaky_relu": lambda: nn.LeakyReLU(0.2)}
    if activation not in act:
        raise ValueError(f"activation must be one of {sorted(act)}, got {activation!r}")
    layers, width = [], n_in
    for h in hidden:
        layers += [nn.Linear(width, h), act[activation]()]
        width = h
    layers.append(nn.Linear(width, n_out))
    if out_sigmoid:
        layers.append(nn.Sigmoid())
    return nn.Sequential(*layers)


DENSE_LIMIT = 50_000_000  # conditions kept as one dense tensor up to this many entries (200 MB)


def _rows(R: sp.csr_matrix | torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    if isinstance(R, torch.Tensor):
        return R[idx]  # (n, n_cols)
    return torch.from_numpy(R[idx.numpy()].toarray())  # (n, n_cols) dense 0/1, float32


class CFGANTask(GANTask):
    """Batches of conditions with their PM mask and ZR sample, for :class:`GANTrainer`."""

    def __init__(self, R: sp.csr_matrix, scheme: str, s_zr: float, s_pm: float, alpha: float,
                 noise_dim: int, steps_per_epoch: int):
        if R.shape[0] * R.shape[1] <= DENSE_LIMIT:  # row gathers from a tensor beat CSR slicing
            R = torch.from_numpy(R.toarray().astype(np.float32))
        self.R, self.scheme, self.s_zr, self.s_pm, self.alpha = R, scheme, s_zr, s_pm, alpha
        self.noise_dim, self.steps_per_epoch = noise_dim, steps_per_epoch

    def real_batch(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        x = _rows(self.R, torch.randint(self.R.shape[0], (n,), generator=generator))  # (n, n_cols)
        # one uniform draw per scheme, PM's first: the stream two separate draws would take
        shares = [s for s, on in ((self.s_pm, "P" in self.scheme), (self.s_zr, "Z" in self.scheme)) if on]
        u = torch.rand((len(shares), *x.shape), generator=generator)  # (k, n, n_cols)
        picked = (u < torch.tensor(shares, dtype=u.dtype).view(-1, 1, 1)).logical_and_(x == 0).float()  # (k, n, n_cols)
        pm = picked[0] if "P" in self.scheme else None
        zr = picked[-1] if "Z" in self.scheme else torch.zeros_like(x)
        return {"real": x, "cond": x, "mask": x + pm if pm is not None else x, "zr": zr}

    def g_input(self, cond: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if not self.noise_dim:
            return cond
        z = (torch.randn(cond.shape[0], self.noise_dim, generator=generator).to(cond.device) if generator
             is not None else torch.zeros(cond.shape[0], self.noise_dim, device=cond.device))
        return torch.cat([cond, z], 1)  # (n, n_cols + noise_dim)

    def fake(self, G, batch, generator):
        return G(self.g_input(batch["cond"], generator))  # (n, n_cols) in (0, 1)

    def d_input(self, sample, batch):
        return torch.cat([sample * batch["mask"], batch["cond"]], 1)  # (n, 2 * n_cols)

    def g_extra_loss(self, fake, batch):
        if self.scheme == "PM":
            return None
        return self.alpha * (fake * batch["zr"]).pow(2).sum(1).mean()

    def reconstruction_loss(self, fake, batch):
        """The autoencoder ablation: squared error on observed (-> 1) and sampled (-> 0) entries."""
        seen = batch["mask"].clamp(max=1) + batch["zr"]
        return ((fake - batch["real"]).pow(2) * seen.clamp(max=1)).sum(1).mean()


class _Reconstruction:
    """The autoencoder ablation's updates for :class:`~feedgan.gan.LossTrainer`: ``g_steps`` per
    step of the GAN schedule, each on a fresh batch of ``batch`` conditions."""

    def __init__(self, task: CFGANTask, G: nn.Module, batch: int, g_steps: int, gen: torch.Generator):
        self.task, self.G, self.batch, self.gen = task, G, batch, gen
        self.steps_per_epoch = task.steps_per_epoch * g_steps

    def loss(self, step: int) -> torch.Tensor:
        batch = self.task.real_batch(self.batch, self.gen)
        return self.task.reconstruction_loss(self.task.fake(self.G, batch, self.gen), batch)


class CFGAN(Recommender):
    """CFGAN with ZR / PM / ZP schemes, user- or item-based; see the module docstring.

    Defaults are the authors' ML-100K setting (item-based ZP). Learned state: ``generator_``
    (saved as its weight arrays), ``best_epoch_``, ``valid_history_`` ((epoch, NDCG@20) pairs).
    """

    name = "cfgan"
    uses_validation = True

    def __init__(self, mode: str = "item", scheme: str = "ZP", s_zr: float = 0.7, s_pm: float = 0.7,
                 alpha: float = 0.03, g_hidden: tuple = (400,), d_hidden: tuple = (125,), lr_g: float = 1e-4,
                 lr_d: float = 1e-4, batch_g: int = 32, batch_d: int = 64, g_steps: int = 4, d_steps: int = 2,
                 epochs: int = 400, loss: str = "nonsaturating", activation: str = "sigmoid", noise_dim: int = 0,
                 adversarial: bool = True, g_output: str = "sigmoid", l2: float = 0.0, eval_every: int = 10,
                 patience: int | None = None, seed: int = 0, device: str = "cpu"):
        self.mode, self.scheme, self.s_zr, self.s_pm, self.alpha = mode, scheme, s_zr, s_pm, alpha
        self.g_hidden, self.d_hidden, self.lr_g, self.lr_d = g_hidden, d_hidden, lr_g, lr_d
        self.batch_g, self.batch_d, self.g_steps, self.d_steps, self.epochs = batch_g, batch_d, g_steps, d_steps, epochs
        self.loss, self.activation, self.noise_dim, self.adversarial = loss, activation, noise_dim, adversarial
        self.g_output, self.l2 = g_output, l2
        self.eval_every, self.patience, self.seed, self.device = eval_every, patience, seed, device

    @property
    def fold_in(self) -> bool:  # user-based G reads a history row; item-based G needs each user's column
        return self.mode == "user"

    def _generator(self, n_cols: int) -> nn.Sequential:
        return mlp(n_cols + self.noise_dim, tuple(self.g_hidden), n_cols, self.activation,
                   out_sigmoid=self.g_output == "sigmoid")

    def _check(self) -> None:
        if self.g_output not in ("sigmoid", "linear"):
            raise ValueError(f"{self.name}: g_output must be 'sigmoid' or 'linear', got {self.g_output!r}")
        if self.mode not in ("user", "item"):
            raise ValueError(f"{self.name}: mode must be 'user' or 'item', got {self.mode!r}")
        if self.scheme not in SCHEMES:
            raise ValueError(f"{self.name}: scheme must be one of {SCHEMES}, got {self.scheme!r}")
        for k in ("s_zr", "s_pm"):
            if not 0 <= getattr(self, k) <= 1:
                raise ValueError(f"{self.name}: {k} must be in [0, 1], got {getattr(self, k)}")

    # -- training ---------------------------------------------------------------------------------
    def _fit(self, X: sp.csr_matrix, progress=None, valid: Validation | None = None) -> None:
        self._check()
        if valid is not None:
            check_can_score(self, valid)
        R = X if self.mode == "user" else X.T.tocsr()  # (n_rows, n_cols): conditions are rows of R
        n_rows, n_cols = R.shape
        d_updates = self.d_steps * math.ceil(n_rows / self.batch_d)  # per epoch, as in the paper
        g_updates = self.g_steps * math.ceil(n_rows / self.batch_g)
        task = CFGANTask(R, self.scheme, self.s_zr, self.s_pm, self.alpha, self.noise_dim, d_updates)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.seed))
            G = self._generator(n_cols)
            D = mlp(2 * n_cols, tuple(self.d_hidden), 1, self.activation, out_sigmoid=False)
        cfg = GANConfig(loss=self.loss, d_steps=1, g_steps=max(1, round(g_updates / d_updates)), lr_g=self.lr_g,
                        lr_d=self.lr_d, betas=(0.9, 0.999), batch_size=self.batch_d, g_batch_size=self.batch_g,
                        epochs=self.epochs, tick_every=max(1, d_updates), checkpoint_every=None, seed=self.seed,
                        device=self.device, weight_decay_g=self.l2, weight_decay_d=self.l2)
        trainer = GANTrainer(G, D, task, cfg) if self.adversarial else self._autoencoder(G, task, cfg)
        best = None
        if valid is not None:
            best = BestCheckpoint(lambda t: self._valid_ndcg(t.eval_model, task, X, valid), patience=self.patience,
                                  every=trainer.steps_per_epoch * max(1, self.eval_every), restore_on_end=True)
        trainer.fit(progress=progress, callbacks=[best] if best else [])
        self.generator_ = trainer.eval_model.cpu().eval()
        self.valid_history_, self.best_epoch_ = (epoch_choice(best, trainer.steps_per_epoch, self.epochs) if best
                                                 else ([], self.epochs))

    def _autoencoder(self, G: nn.Module, task: CFGANTask, cfg: GANConfig) -> LossTrainer:
        """Ablation: the generator alone on the masked reconstruction loss, ``g_steps`` updates per
        step of the GAN schedule (so epochs and evaluations fall where they would with D)."""
        gen = torch.Generator().manual_seed(int(self.seed))
        opt = adam(G.parameters(), lr=self.lr_g, betas=cfg.betas, weight_decay=self.l2)
        return LossTrainer(G, _Reconstruction(task, G, self.batch_g, cfg.g_steps, gen), opt, self.epochs,
                           name=f"{self.name} (no D)")

    # -- scoring ----------------------------------------------------------------------------------
    @torch.no_grad()
    def _generate(self, G: nn.Module, task: CFGANTask, cond: sp.csr_matrix, batch: int = 1024) -> np.ndarray:
        out = np.empty(cond.shape, dtype=np.float32)
        dev = next(G.parameters()).device
        was_training = G.training
        G.eval()
        for s in range(0, cond.shape[0], batch):
            c = torch.from_numpy(cond[s:s + batch].toarray()).to(dev)  # (b, n_cols)
            out[s:s + c.shape[0]] = G(task.g_input(c, None)).cpu().numpy()
        G.train(was_training)
        return out

    def _all_scores(self, G, task, X) -> np.ndarray:
        """(n_users, n_items) generator scores for every user of the training matrix ``X``."""
        if self.mode == "user":
            return self._generate(G, task, X)
        return self._generate(G, task, X.T.tocsr()).T  # item-based: rows are items

    def _valid_ndcg(self, G, task, X, valid: Validation) -> float:
        if self.mode == "user":  # G reads each user's row: the fold-in history of held-out users
            return validation_ndcg(lambda u: self._generate(G, task, valid.inputs[u]), valid)
        scores = self._all_scores(G, task, X)  # item-based: every user's scores come at once
        return validation_ndcg(lambda u: scores[u], valid)

    def _task(self) -> CFGANTask:
        return CFGANTask(sp.csr_matrix((0, 0)), self.scheme, self.s_zr, self.s_pm, self.alpha, self.noise_dim, 1)

    def _score(self, users, history):
        if self.mode == "user":
            return self._generate(self.generator_, self._task(), history)
        if not hasattr(self, "scores_"):  # item-based: every user's scores come from the item rows
            self.scores_ = np.ascontiguousarray(self._all_scores(self.generator_, self._task(), self.train_))
        return self.scores_[users]

    # -- persistence: generator weights as arrays --------------------------------------------------
    def _state(self):
        state = {f"G.{k}": v.detach().cpu().numpy() for k, v in self.generator_.state_dict().items()}
        state["best_epoch_"] = np.array([self.best_epoch_], dtype=np.int64)
        return state

    def _set_state(self, state):
        n_cols = self.n_items_ if self.mode == "user" else self.n_users_
        G = self._generator(n_cols)
        G.load_state_dict({k[2:]: torch.from_numpy(np.array(v)) for k, v in state.items() if k.startswith("G.")})
        self.generator_ = G.eval()
        self.best_epoch_ = int(state["best_epoch_"][0])
        self.valid_history_ = []
