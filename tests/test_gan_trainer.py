"""GANTrainer on tiny models: learning, step ratios, EMA, NaN guard, exact resume, stats,
seeds, BestCheckpoint, and two task shapes (a CFGAN-style conditional vector GAN, an image GAN)."""
from __future__ import annotations

import io
import json
import math

import pytest
import torch
from torch import nn

from feedgan.gan import (BestCheckpoint, GANConfig, GANTask, GANTrainer, NonFiniteLossError, latest_checkpoint)
from feedgan.gan.checkpoint import load_state, save_state

from state_check import assert_same


# -- tasks and models --------------------------------------------------------------------------
class Gaussian1D(GANTask):
    """Real data N(3, 0.5^2); G maps 4-d noise to a scalar. Optional NaN injection by call count."""

    def __init__(self, nan_real_call: int | None = None, nan_extra_call: int | None = None):
        self.real_calls, self.extra_calls, self.sizes = 0, 0, []
        self.nan_real_call, self.nan_extra_call = nan_real_call, nan_extra_call

    def real_batch(self, n, generator):
        self.real_calls += 1
        self.sizes.append(n)
        x = 3.0 + 0.5 * torch.randn(n, 1, generator=generator)  # (n, 1)
        if self.real_calls == self.nan_real_call:
            x[0, 0] = float("nan")
        return {"real": x}

    def fake(self, G, batch, generator):
        z = torch.randn(batch["real"].shape[0], 4, generator=generator).to(batch["real"].device)  # (n, 4)
        return G(z)  # (n, 1)

    def g_extra_loss(self, fake, batch):
        if self.nan_extra_call is None:
            return None
        self.extra_calls += 1
        return torch.tensor(float("nan") if self.extra_calls == self.nan_extra_call else 0.0)


def toy_models(seed: int = 0, dropout: float = 0.0):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        G = nn.Sequential(nn.Linear(4, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))
        D = nn.Sequential(nn.Linear(1, 32), nn.LeakyReLU(0.2), nn.Dropout(dropout), nn.Linear(32, 1))
    return G, D


def cfg(**kw) -> GANConfig:
    base = dict(max_steps=10, batch_size=16, lr_g=2e-3, lr_d=2e-3, tick_every=5, checkpoint_every=None, device="cpu")
    base.update(kw)
    return GANConfig(**base)




def weights(m: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def read_stats(run) -> list[dict]:
    return [json.loads(ln) for ln in (run / "stats.jsonl").read_text().splitlines()]


# -- learning ----------------------------------------------------------------------------------
def test_generator_mean_moves_to_the_real_mean():
    G, D = toy_models(0)
    z = torch.randn(2000, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        start = G(z).mean().item()
    GANTrainer(G, D, Gaussian1D(), cfg(max_steps=300, batch_size=64, tick_every=100)).fit()
    with torch.no_grad():
        out = G(z)
    assert abs(start - 3.0) > 2.5
    assert abs(out.mean().item() - 3.0) < 0.25 * abs(start - 3.0)
    assert 0.15 < out.std().item() < 1.0  # spread, not a collapsed point


class PullToZero(Gaussian1D):
    """The Gaussian task with an extra generator term pulling every output to 0."""

    def g_extra_loss(self, fake, batch):
        return fake.pow(2).mean()


def test_adv_weight_scales_the_adversarial_term():
    z = torch.randn(2000, 4, generator=torch.Generator().manual_seed(1))
    means = {}
    for w in (0.0, 1.0):
        G, D = toy_models(0)
        GANTrainer(G, D, PullToZero(), cfg(max_steps=300, batch_size=64, adv_weight=w)).fit()
        with torch.no_grad():
            means[w] = G(z).mean().item()
    assert abs(means[0.0]) < 0.2  # D is ignored: only the pull to 0 acts
    assert means[1.0] > means[0.0] + 0.5  # D pulls the outputs towards the real mean (3)
    with pytest.raises(ValueError, match="adv_weight"):
        cfg(adv_weight=-1.0)


def test_weight_decay_shrinks_each_players_weights():
    norms = {}
    for wd in (0.0, 1.0):
        G, D = toy_models(0)
        GANTrainer(G, D, Gaussian1D(), cfg(max_steps=200, weight_decay_g=wd, weight_decay_d=wd)).fit()
        norms[wd] = [sum(p.detach().pow(2).sum().item() for p in m.parameters()) for m in (G, D)]
    assert norms[1.0][0] < 0.7 * norms[0.0][0]
    assert norms[1.0][1] < 0.7 * norms[0.0][1]
    with pytest.raises(ValueError, match="weight_decay_d"):
        cfg(weight_decay_d=-0.1)


def test_step_ratios_and_batch_sizes_are_honoured():
    G, D = toy_models(0)
    task = Gaussian1D()
    trainer = GANTrainer(G, D, task, cfg(max_steps=4, d_steps=3, g_steps=2, batch_size=8, g_batch_size=5))
    counts = {"d": 0, "g": 0}
    trainer.opt_d.register_step_post_hook(lambda *_: counts.__setitem__("d", counts["d"] + 1))
    trainer.opt_g.register_step_post_hook(lambda *_: counts.__setitem__("g", counts["g"] + 1))
    trainer.fit()
    assert trainer.step == 4
    assert counts == {"d": 12, "g": 8}
    assert task.sizes == [8, 8, 8, 5, 5] * 4


@pytest.mark.parametrize("warmup", [False, True])
def test_ema_follows_the_exact_formula(warmup):
    G, D = toy_models(0)
    trainer = GANTrainer(G, D, Gaussian1D(), cfg(max_steps=6, ema_decay=0.8, ema_warmup=warmup))
    expected = weights(G)  # the EMA starts as a copy of G
    seen = []

    class Track:
        def on_step(self, tr):
            seen.append(weights(tr.G))

    trainer.fit(callbacks=[Track()])
    for step, w in enumerate(seen):  # one G update per step: ema <- d * ema + (1 - d) * G
        d = min(0.8, (1 + (step + 1)) / (10 + (step + 1))) if warmup else 0.8  # step t = 1, 2, ...
        expected = {k: d * expected[k] + (1 - d) * w[k] for k in w}
    ema = weights(trainer.G_ema)
    assert trainer.G_eval is trainer.G_ema
    for k in ema:
        assert torch.allclose(ema[k], expected[k], atol=1e-6), k
        assert not torch.allclose(ema[k], seen[-1][k], atol=1e-4), f"EMA {k} equals the raw weights"


# -- NaN guard ---------------------------------------------------------------------------------
def test_nan_in_a_generator_term_stops_names_step_and_restores_the_checkpoint(tmp_path):
    G, D = toy_models(0)
    trainer = GANTrainer(G, D, Gaussian1D(nan_extra_call=7), cfg(checkpoint_every=5), out_dir=tmp_path)
    with pytest.raises(NonFiniteLossError) as err:
        trainer.fit()
    msg = str(err.value)
    ckpt = tmp_path / "checkpoints" / "ckpt-00000005.pt"
    assert "G loss at step 7" in msg and "g_extra=nan" in msg and str(ckpt) in msg
    assert trainer.step == 5
    saved = load_state(ckpt)
    assert_same(weights(trainer.G), saved["G"])
    assert_same(weights(trainer.D), saved["D"])
    assert all(torch.isfinite(p).all() for p in [*G.parameters(), *D.parameters()])


def test_nan_in_real_data_without_out_dir_restores_the_initial_weights():
    G, D = toy_models(0)
    g0, d0 = weights(G), weights(D)
    # two draws per step (one D, one G update): draw 5 is step 3's D batch
    trainer = GANTrainer(G, D, Gaussian1D(nan_real_call=5), cfg(checkpoint_every=100))
    with pytest.raises(NonFiniteLossError, match=r"D loss at step 3 \(d_adv=nan\).*weights of step 0.*from memory"):
        trainer.fit()
    assert trainer.step == 0
    assert_same(weights(G), g0)
    assert_same(weights(D), d0)


def test_skip_policy_drops_the_bad_update_and_continues(tmp_path):
    G, D = toy_models(0)
    trainer = GANTrainer(G, D, Gaussian1D(nan_real_call=5), cfg(nan_policy="skip"), out_dir=tmp_path).fit()
    assert trainer.step == 10 and trainer.skipped == 1
    assert all(torch.isfinite(p).all() for p in [*G.parameters(), *D.parameters()])
    assert [s["skipped"] for s in read_stats(tmp_path)] == [1, 1]


# -- checkpoint / resume -----------------------------------------------------------------------
class Interrupt(Exception):
    pass


def test_resume_reproduces_an_uninterrupted_run_bit_for_bit(tmp_path):
    config = cfg(max_steps=10, checkpoint_every=5, tick_every=3, ema_decay=0.9, r1_gamma=0.5)
    full = GANTrainer(*toy_models(0, dropout=0.3), Gaussian1D(), config, out_dir=tmp_path / "a").fit()

    class CrashAt7:
        def on_step(self, tr):
            if tr.step == 7:
                raise Interrupt

    with pytest.raises(Interrupt):
        GANTrainer(*toy_models(0, dropout=0.3), Gaussian1D(), config, out_dir=tmp_path / "b").fit(callbacks=[CrashAt7()])
    assert [s["step"] for s in read_stats(tmp_path / "b")] == [3, 6]
    # different initial weights: everything must come from the checkpoint
    resumed = GANTrainer(*toy_models(99, dropout=0.3), Gaussian1D(), config, out_dir=tmp_path / "b").resume()
    assert resumed.step == 5 and resumed.last_checkpoint.name == "ckpt-00000005.pt"
    resumed.fit()
    a, b = full.state_dict(), resumed.state_dict()
    for key in ("step", "G", "D", "G_ema", "opt_g", "opt_d", "rng"):
        assert_same(a[key], b[key], key)
    assert [s["step"] for s in read_stats(tmp_path / "b")] == [s["step"] for s in read_stats(tmp_path / "a")] == [3, 6, 9, 10]
    # and the checkpoints alone (G_ema included) are enough: a third trainer loads the final one
    third = GANTrainer(*toy_models(7), Gaussian1D(), config).resume(latest_checkpoint(tmp_path / "a"))
    assert_same(weights(third.G_ema), weights(full.G_ema))


def test_checkpoints_are_data_only_and_pruned(tmp_path):
    trainer = GANTrainer(*toy_models(0), Gaussian1D(), cfg(max_steps=8, checkpoint_every=2, keep_checkpoints=2),
                         out_dir=tmp_path).fit()
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["ckpt-00000006.pt", "ckpt-00000008.pt"]
    state = torch.load(tmp_path / "checkpoints" / names[-1], weights_only=True)
    assert state["step"] == 8 and state["config"]["max_steps"] == 8
    assert_same(state["G"], weights(trainer.G))
    # a file carrying an arbitrary object is refused, not unpickled
    save_state({"format": "feedgan.gan.checkpoint/1", "evil": Interrupt()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="not a readable feedgan GAN checkpoint"):
        trainer.resume(tmp_path / "evil.pt")
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume from"):
        GANTrainer(*toy_models(0), Gaussian1D(), cfg()).resume(tmp_path / "nothing-here")


def test_stats_jsonl_has_one_line_per_tick_with_the_right_keys(tmp_path):
    task = Gaussian1D()
    task.steps_per_epoch = 4
    GANTrainer(*toy_models(0), task, cfg(epochs=3, tick_every=5, gp_weight=1.0), out_dir=tmp_path).fit()
    stats = read_stats(tmp_path)
    assert [s["step"] for s in stats] == [5, 10, 12]  # 3 epochs x 4 steps; the last tick is partial
    assert [s["epoch"] for s in stats] == [1.25, 2.5, 3.0]
    for s in stats:
        assert set(s) == {"step", "epoch", "time", "samples_per_s", "d_loss", "d_adv", "gp", "d_real", "d_fake", "g_loss"}
        assert all(math.isfinite(s[k]) for k in s if k != "epoch")
        assert s["d_loss"] == pytest.approx(s["d_adv"] + s["gp"])
    assert stats[0]["time"] <= stats[1]["time"] <= stats[2]["time"] and stats[2]["samples_per_s"] > 0


def test_determinism_under_a_seed_and_the_callers_rng_is_untouched():
    caller_rng = torch.get_rng_state()
    runs = [GANTrainer(*toy_models(0, dropout=0.2), Gaussian1D(), cfg(seed=s)).fit() for s in (1, 1, 2)]
    assert torch.equal(torch.get_rng_state(), caller_rng)
    assert_same(weights(runs[0].G), weights(runs[1].G))
    assert_same(weights(runs[0].D), weights(runs[1].D))
    assert not torch.equal(runs[0].G[0].weight, runs[2].G[0].weight)


# -- callbacks, progress, tensorboard ----------------------------------------------------------
def scripted_metric(values):
    """A metric_fn returning ``values`` in turn and recording the generator it saw at each step."""
    seen = {}

    def metric(trainer):
        seen[trainer.step] = weights(trainer.G_eval)
        return values[len(seen) - 1]

    return metric, seen


def test_best_checkpoint_keeps_the_best_generator(tmp_path):
    metric, seen = scripted_metric([0.1, 0.5, float("nan"), 0.3, 0.2])
    best = BestCheckpoint(metric, every=2, mode="max")
    trainer = GANTrainer(*toy_models(0), Gaussian1D(), cfg(ema_decay=0.5), out_dir=tmp_path).fit(callbacks=[best])
    assert [s for s, _ in best.history] == [2, 4, 6, 8, 10]
    assert best.best_step == 4 and best.best == 0.5
    assert_same(best.best_state, seen[4])
    assert not torch.equal(best.best_state["0.weight"], trainer.G_ema.state_dict()["0.weight"])
    on_disk = BestCheckpoint.load(tmp_path / "best_generator.pt")
    assert on_disk["step"] == 4 and on_disk["metric"] == 0.5
    assert_same(on_disk["G"], seen[4])
    best.restore(trainer)
    assert_same(weights(trainer.G_ema), seen[4])


def test_best_checkpoint_min_mode_with_patience_stops_early():
    metric, seen = scripted_metric([0.4, 0.2, 0.3, 0.25, 0.1])
    best = BestCheckpoint(metric, every=2, mode="min", patience=2, restore_on_end=True)
    trainer = GANTrainer(*toy_models(0), Gaussian1D(), cfg(max_steps=20)).fit(callbacks=[best])
    assert best.best_step == 4 and best.best == 0.2
    assert trainer.step == 8 and "no improvement" in trainer.stop_reason  # 0.3 and 0.25 did not beat 0.2
    assert_same(weights(trainer.G), seen[4])  # restore_on_end (no EMA: G_eval is G)


def test_progress_task_shows_step_and_losses():
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(file=io.StringIO())) as progress:
        GANTrainer(*toy_models(0), Gaussian1D(), cfg(max_steps=6, tick_every=3)).fit(progress=progress)
        (task,) = progress.tasks
        assert task.completed == task.total == 6
        assert task.description.startswith("GAN step 6  D ") and " G " in task.description


def test_tensorboard_unavailable_gives_a_clear_message(tmp_path):
    try:
        import torch.utils.tensorboard  # noqa: F401
        pytest.skip("tensorboard is installed here")
    except ImportError:
        pass
    with pytest.warns(UserWarning, match="pip install tensorboard"):
        GANTrainer(*toy_models(0), Gaussian1D(), cfg(max_steps=2, tensorboard=True), out_dir=tmp_path).fit()
    assert (tmp_path / "stats.jsonl").exists()


# -- contract errors ---------------------------------------------------------------------------
def test_config_and_task_errors_are_clear():
    with pytest.raises(ValueError, match="unknown GAN loss 'lsgan'"):
        GANConfig(loss="lsgan")
    with pytest.raises(ValueError, match="nan_policy must be one of stop, skip"):
        GANConfig(nan_policy="ignore")
    with pytest.raises(ValueError, match="d_steps must be a positive integer"):
        GANConfig(d_steps=0)
    with pytest.raises(ValueError, match="ema_decay"):
        GANConfig(ema_decay=1.0)
    with pytest.raises(TypeError, match="lacks fake"):
        GANTrainer(*toy_models(0), object.__new__(type("NoFake", (), {"real_batch": lambda s, n, g: {}})))

    class NoReal(Gaussian1D):
        def real_batch(self, n, generator):
            return {"x": torch.zeros(n, 1)}

    with pytest.raises(TypeError, match="dict with a 'real' tensor"):
        GANTrainer(*toy_models(0), NoReal(), cfg()).fit()
    with pytest.raises(ValueError, match="steps_per_epoch"):
        GANTrainer(*toy_models(0), Gaussian1D(), cfg(epochs=2)).fit()


# -- the two task shapes the protocol must fit -------------------------------------------------
class CFGANTask(GANTask):
    """CFGAN-style (Chae et al. 2018): the condition is a user's interaction row ``c`` (n_items,),
    G outputs a score vector over items, D sees ``[output * mask, c]``. The mask keeps the user's
    items plus sampled negatives (partial masking); ``g_extra_loss`` is the zero-reconstruction
    term pushing sampled negatives towards 0."""

    def __init__(self, X: torch.Tensor, neg_rate: float = 0.3, alpha: float = 0.1, batch_size: int = 16):
        self.X, self.neg_rate, self.alpha = X, neg_rate, alpha  # X (n_users, n_items) binary
        self.steps_per_epoch = math.ceil(X.shape[0] / batch_size)

    def real_batch(self, n, generator):
        users = torch.randint(0, self.X.shape[0], (n,), generator=generator)
        x = self.X[users]  # (n, n_items)
        neg = ((torch.rand(x.shape, generator=generator) < self.neg_rate) & (x == 0)).float()  # (n, n_items)
        return {"real": x, "cond": x, "mask": (x + neg).clamp(max=1.0), "zr": neg}

    def fake(self, G, batch, generator):
        return G(batch["cond"])  # (n, n_items) in (0, 1)

    def d_input(self, sample, batch):
        return torch.cat([sample * batch["mask"], batch["cond"]], dim=1)  # (n, 2 * n_items)

    def g_extra_loss(self, fake, batch):
        return self.alpha * (fake * batch["zr"]).pow(2).sum(1).mean()


def test_cfgan_style_conditional_vector_task_trains(tmp_path):
    n_users, n_items = 40, 24
    X = (torch.rand(n_users, n_items, generator=torch.Generator().manual_seed(0)) < 0.2).float()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        G = nn.Sequential(nn.Linear(n_items, 16), nn.ReLU(), nn.Linear(16, n_items), nn.Sigmoid())
        D = nn.Sequential(nn.Linear(2 * n_items, 16), nn.ReLU(), nn.Linear(16, 1))
    config = cfg(loss="minimax", epochs=2, batch_size=16, gp_weight=1.0, ema_decay=0.9, tick_every=2)
    trainer = GANTrainer(G, D, CFGANTask(X), config, out_dir=tmp_path).fit()
    assert trainer.step == 6  # 2 epochs x ceil(40 / 16)
    stats = read_stats(tmp_path)
    assert stats[-1]["epoch"] == 2.0
    assert all(math.isfinite(s["g_extra"]) and math.isfinite(s["gp"]) for s in stats)
    assert all(s["g_loss"] == pytest.approx(s["g_adv"] + s["g_extra"]) for s in stats)
    with torch.no_grad():
        scores = trainer.G_eval(X)  # (n_users, n_items): what a recommender ranks
    assert scores.shape == (n_users, n_items) and ((scores > 0) & (scores < 1)).all()


class ImageTask(GANTask):
    def __init__(self):
        self.images = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1

    def real_batch(self, n, generator):
        return {"real": self.images[torch.randint(0, len(self.images), (n,), generator=generator)]}  # (n, 1, 8, 8)

    def fake(self, G, batch, generator):
        return G(torch.randn(batch["real"].shape[0], 8, generator=generator).to(batch["real"].device))


def test_lazy_penalties_run_every_k_updates_with_k_times_the_weight(tmp_path, monkeypatch):
    import feedgan.gan.trainer as trainer_mod

    monkeypatch.setattr(trainer_mod, "r1_penalty", lambda D, x: torch.tensor(2.0))
    G, D = toy_models(0)
    GANTrainer(G, D, Gaussian1D(), cfg(max_steps=7, tick_every=1, r1_gamma=0.5, penalty_every=3),
               out_dir=tmp_path).fit()
    stats = [json.loads(line) for line in (tmp_path / "stats.jsonl").read_text().splitlines()]
    assert [s["step"] for s in stats if "r1" in s] == [1, 4, 7]  # D updates 0, 3 and 6
    assert all(s["r1"] == pytest.approx(3 * 0.5 / 2 * 2.0) for s in stats if "r1" in s)
    with pytest.raises(ValueError, match="penalty_every"):
        cfg(penalty_every=0)


@pytest.mark.parametrize("options", [dict(loss="hinge", r1_gamma=1.0, r2_gamma=1.0, ema_decay=0.9, grad_clip=1.0),
                                     dict(loss="wasserstein", gp_weight=10.0, d_steps=2)])
def test_unconditional_image_task_trains(options):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        G = nn.Sequential(nn.Linear(8, 64), nn.Tanh(), nn.Unflatten(1, (1, 8, 8)))
        D = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(256, 1))
    g0 = weights(G)
    trainer = GANTrainer(G, D, ImageTask(), cfg(max_steps=3, batch_size=8, **options)).fit()
    assert trainer.step == 3
    assert all(torch.isfinite(p).all() for p in G.parameters())
    assert not torch.equal(g0["0.weight"], G[0].weight.detach())
    with torch.no_grad():
        assert trainer.G_eval(torch.randn(2, 8)).shape == (2, 1, 8, 8)


# -- the hot path computes what a plain loop computes ------------------------------------------
def test_fused_adam_step_is_optimizer_step_bit_for_bit():
    from feedgan.gan.loop import _fused_adam_step

    with torch.random.fork_rng():
        torch.manual_seed(0)
        a = nn.Sequential(nn.Linear(7, 5), nn.Tanh(), nn.Linear(5, 3))
    b = nn.Sequential(nn.Linear(7, 5), nn.Tanh(), nn.Linear(5, 3))
    b.load_state_dict(a.state_dict())
    opt_a = torch.optim.Adam(a.parameters(), lr=1e-2, weight_decay=0.1, fused=True)
    opt_b = torch.optim.Adam(b.parameters(), lr=1e-2, weight_decay=0.1, fused=True)
    gen = torch.Generator().manual_seed(1)
    for step in range(6):
        skip = torch.tensor(float(step == 3))  # the fourth update is flagged: neither applies it
        for pa, pb in zip(a.parameters(), b.parameters()):
            pa.grad = torch.randn(pa.shape, generator=gen)
            pb.grad = pa.grad.clone()
        opt_b.found_inf = skip
        opt_b.step()
        del opt_b.found_inf
        if step == 0:  # Adam creates its state on the first step
            assert not _fused_adam_step(opt_a, skip)
            opt_a.found_inf = skip
            opt_a.step()
            del opt_a.found_inf
        else:
            assert _fused_adam_step(opt_a, skip)
    assert_same(a.state_dict(), b.state_dict())
    assert_same(opt_a.state_dict(), opt_b.state_dict())  # moments and step counts (5 applied)
    assert float(opt_a.state_dict()["state"][0]["step"]) == 5.0
    amsgrad = torch.optim.Adam(a.parameters(), amsgrad=True, fused=True)
    assert not _fused_adam_step(amsgrad, skip)  # outside what it mirrors: the caller falls back to step()
    handle = opt_a.register_step_pre_hook(lambda *args: None)
    assert not _fused_adam_step(opt_a, skip)  # a hook must run: only step() runs it
    handle.remove()


def test_cfgan_steps_equal_a_plain_adam_loop_bit_for_bit():
    """GANTrainer on CFGAN's task against the same updates written out by hand (one D update on
    [x * mask, x] pairs, then G updates with the ZR term), Bernoulli masks drawn PM first."""
    import scipy.sparse as sp

    from feedgan.rec.cfgan import CFGANTask, mlp

    gen = torch.Generator().manual_seed(3)
    R = (torch.rand(30, 12, generator=gen) < 0.3).float()  # (rows, cols) conditions
    with torch.random.fork_rng():
        torch.manual_seed(0)
        G, D = mlp(12, (8,), 12, "sigmoid", True), mlp(24, (6,), 1, "sigmoid", False)
    G0, D0 = weights(G), weights(D)
    task = CFGANTask(sp.csr_matrix(R.numpy()), "ZP", s_zr=0.6, s_pm=0.4, alpha=0.05, noise_dim=0, steps_per_epoch=4)
    config = cfg(max_steps=4, d_steps=1, g_steps=2, batch_size=8, g_batch_size=5, betas=(0.9, 0.999), seed=7)
    trainer = GANTrainer(G, D, task, config).fit()
    trained = weights(trainer.G), weights(trainer.D)

    G.load_state_dict(G0), D.load_state_dict(D0)  # the same modules, back to their initial weights
    opt_g = torch.optim.Adam(G.parameters(), lr=config.lr_g, betas=config.betas, fused=True)
    opt_d = torch.optim.Adam(D.parameters(), lr=config.lr_d, betas=config.betas, fused=True)
    rng = torch.Generator().manual_seed(7)

    def draw(n):
        x = R[torch.randint(30, (n,), generator=rng)]
        pm = ((torch.rand(x.shape, generator=rng) < 0.4) & (x == 0)).float()
        zr = ((torch.rand(x.shape, generator=rng) < 0.6) & (x == 0)).float()
        return x, x + pm, zr

    def update(opt, loss):
        opt.zero_grad()
        loss.backward()
        opt.step()

    sp = torch.nn.functional.softplus
    for _ in range(4):
        x, mask, _zr = draw(8)
        with torch.no_grad():
            fake = G(x)
        update(opt_d, sp(-D(torch.cat([x * mask, x], 1))).mean() + sp(D(torch.cat([fake * mask, x], 1))).mean())
        for _ in range(2):
            x, mask, zr = draw(5)
            D.requires_grad_(False)
            fake = G(x)
            loss = 1.0 * sp(-D(torch.cat([fake * mask, x], 1))).mean() + 0.05 * (fake * zr).pow(2).sum(1).mean()
            D.requires_grad_(True)
            update(opt_g, loss)
    assert not torch.equal(G0["0.weight"], G.state_dict()["0.weight"])  # both runs moved the weights
    assert_same(trained, (weights(G), weights(D)))
