"""The shared training loop: NaN / divergence guard on losses, gradients and weights, no host
reads between ticks, and every iterative recommender running through it."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from feedgan.data.dataset import DataConfig, prepare
from feedgan.data.schema import validate
from feedgan.gan import GANTrainer, NonFiniteLossError, TrainLoop
from feedgan.rec.base import NotFittedError
from feedgan.rec.bpr import BPR
from feedgan.rec.cfgan import CFGAN
from feedgan.rec.easegan import EASEGAN
from feedgan.rec.multvae import MultVAE
from test_gan_trainer import Gaussian1D, cfg, toy_models


def planted(seed: int = 0, split: str = "random"):
    """Three user groups, each liking 7 of its own 12 items (plus one random item)."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(3):
        for u in range(30):
            items = rng.choice(12, size=7, replace=False) + 12 * g
            rows += [(f"g{g}u{u}", int(i)) for i in items] + [(f"g{g}u{u}", int(rng.integers(36)))]
    inter = validate(pd.DataFrame(rows, columns=["user", "item"]))
    return prepare(inter, DataConfig(split=split, valid=0.2, test=0.2, seed=seed))


@pytest.fixture(scope="module")
def ds():
    return planted()


SMALL_GAN = dict(g_hidden=(16,), d_hidden=(8,), batch_g=16, batch_d=16, g_steps=1, d_steps=1, epochs=3)


# -- divergence and non-finite values ----------------------------------------------------------
@pytest.mark.parametrize("make", [
    lambda: CFGAN(mode="user", lr_g=1e30, lr_d=1e30, **SMALL_GAN),
    lambda: CFGAN(mode="item", lr_g=1e30, lr_d=1e30, **SMALL_GAN),
    lambda: CFGAN(mode="user", adversarial=False, lr_g=1e30, **SMALL_GAN),
    lambda: BPR(factors=8, lr=1e30, epochs=3),
    lambda: MultVAE(hidden=16, latent=4, epochs=3, lr=1e30),
], ids=["cfgan-user", "cfgan-item", "cfgan-ae", "bpr", "multvae"])
def test_a_huge_learning_rate_fails_clearly_and_leaves_nothing_to_save(make, ds, tmp_path):
    model = make()
    # weights of ~1e30 keep every loss finite (saturated sigmoids) or turn the scores NaN: either
    # way the run must not end as a "successful" model
    with pytest.raises(NonFiniteLossError, match=r"weights (diverged|are no longer finite) by step \d+") as err:
        model.fit(ds)
    assert isinstance(err.value, ValueError)  # boundaries that print bad settings as one line catch it
    assert "\n" not in str(err.value) and "learning rate" in str(err.value)
    with pytest.raises(NotFittedError):
        model.save(tmp_path / "m")
    assert not (tmp_path / "m").exists()


class InfiniteGradient(Gaussian1D):
    """A generator term whose value is 0 but whose gradient is infinite, on one chosen call."""

    def __init__(self, bad_call: int):
        super().__init__()
        self.bad_call = bad_call

    def g_extra_loss(self, fake, batch):
        self.extra_calls += 1
        if self.extra_calls != self.bad_call:
            return None
        return (fake - fake.detach()).abs().pow(0.5).sum()  # d sqrt(x) / dx at 0 is inf


def test_an_infinite_gradient_under_skip_is_dropped_and_weights_stay_finite():
    G, D = toy_models(0)
    trainer = GANTrainer(G, D, InfiniteGradient(bad_call=3), cfg(nan_policy="skip")).fit()
    assert trainer.step == 10 and trainer.skipped == 1
    assert all(torch.isfinite(p).all() for p in [*G.parameters(), *D.parameters()])


def test_an_infinite_gradient_under_stop_names_the_step_and_restores():
    G, D = toy_models(0)
    g0 = {k: v.clone() for k, v in G.state_dict().items()}
    trainer = GANTrainer(G, D, InfiniteGradient(bad_call=3), cfg())
    with pytest.raises(NonFiniteLossError, match=r"non-finite G gradient at step 3 .*weights of step 0"):
        trainer.fit()
    assert trainer.step == 0 and all(torch.equal(G.state_dict()[k], v) for k, v in g0.items())


def test_no_host_reads_between_ticks(monkeypatch):
    """Loss values, guard flags and skip decisions stay on the device inside a step."""
    inside = []

    def forbidden(name):
        original = getattr(torch.Tensor, name)

        def read(self, *a, **kw):
            if inside:
                raise AssertionError(f"Tensor.{name} called inside a training step")
            return original(self, *a, **kw)
        return read

    for name in ("item", "tolist", "__bool__", "__float__", "__int__"):
        monkeypatch.setattr(torch.Tensor, name, forbidden(name))
    step = GANTrainer._train_step

    def guarded(self, *args):
        inside.append(True)
        try:
            return step(self, *args)
        finally:
            inside.pop()

    monkeypatch.setattr(GANTrainer, "_train_step", guarded)
    for policy in ("stop", "skip"):
        trainer = GANTrainer(*toy_models(0), Gaussian1D(nan_real_call=5), cfg(nan_policy=policy, r1_gamma=1.0,
                                                                               ema_decay=0.9))
        if policy == "stop":
            with pytest.raises(NonFiniteLossError, match="D loss at step 3"):
                trainer.fit()
        else:
            assert trainer.fit().skipped == 1


# -- one loop for every iterative model --------------------------------------------------------
@pytest.mark.parametrize("make, loop", [
    (lambda: BPR(factors=4, epochs=2, eval_every=1), "LossTrainer"),
    (lambda: MultVAE(hidden=8, latent=4, epochs=2, eval_every=1), "LossTrainer"),
    (lambda: CFGAN(mode="user", adversarial=False, eval_every=1, **SMALL_GAN), "LossTrainer"),
    (lambda: CFGAN(mode="user", eval_every=1, **SMALL_GAN), "GANTrainer"),
    (lambda: EASEGAN(l2=20, epochs=2, eval_every=1, adversarial=False), "LossTrainer"),
    (lambda: EASEGAN(l2=20, epochs=2, eval_every=1), "GANTrainer"),
], ids=["bpr", "multvae", "cfgan-ae", "cfgan", "easegan-nod", "easegan"])
def test_every_iterative_model_trains_and_early_stops_through_the_shared_loop(make, loop, ds, monkeypatch):
    ran = []
    fit = TrainLoop.fit

    def spy(self, progress=None, callbacks=()):
        callbacks = list(callbacks)
        ran.append((type(self).__name__, [type(c).__name__ for c in callbacks]))
        return fit(self, progress, callbacks)

    monkeypatch.setattr(TrainLoop, "fit", spy)
    model = make().fit(ds)
    assert ran == [(loop, ["BestCheckpoint"])]
    assert model.best_epoch_ == max(model.valid_history_, key=lambda ev: ev[1])[0]
