"""Differentially private training of the VAE generator (DP-SGD with Opacus): the budget spent, its
record, the optional dependency, and the non-private path left alone."""
import importlib.util
import json
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from feedgan.cli import app
from feedgan.data.readers import write_table
from feedgan.data.schema import DataError
from feedgan.data.simulate import SimulationConfig, simulate
from feedgan.synth import Profiles
from feedgan.synth.generators import Generator, VAEGenerator

needs_opacus = pytest.mark.skipif(importlib.util.find_spec("opacus") is None, reason="opacus is not installed")

TINY = {"epochs": 4, "hidden": 16, "latent": 4, "batch_size": 30, "anneal_epochs": 2}


@pytest.fixture(scope="module")
def sim():
    return simulate(SimulationConfig(n_users=200, n_items=120, seed=0)).interactions


@pytest.fixture(scope="module")
def train(sim):
    return Profiles.from_interactions(sim).split_users(seed=0)[0]


@pytest.fixture(scope="module")
def private(train):
    return {eps: VAEGenerator(**TINY, dp_epsilon=eps).fit(train, seed=0) for eps in (1.0, 8.0)}


@needs_opacus
def test_dp_spends_at_most_the_target_and_more_privacy_costs_more_noise(private, train):
    n = int((train.union().getnnz(1) > 0).sum())
    steps_per_epoch = -(-n // TINY["batch_size"])
    for eps, gen in private.items():
        b = gen.dp_
        assert 0.97 * eps <= b["epsilon_spent"] <= eps and gen.dp_epsilon_spent_ == b["epsilon_spent"]
        assert b["delta"] == pytest.approx(1.0 / n ** 1.1) and gen.dp_delta_ == b["delta"]
        assert b["steps"] == TINY["epochs"] * steps_per_epoch and b["sample_rate"] == pytest.approx(1 / steps_per_epoch)
        np.testing.assert_array_equal(gen.z_mean_, 0)  # the standard prior: nothing fitted outside DP-SGD
        np.testing.assert_array_equal(gen.z_chol_, np.eye(TINY["latent"]))
        s = gen.sample(300, seed=1)
        assert s.n_items == train.n_items and s.union().nnz > 0
    assert private[1.0].dp_["noise_multiplier"] > private[8.0].dp_["noise_multiplier"] > 0


@needs_opacus
def test_dp_fit_is_seeded_and_leaves_the_global_rng_alone(private, train):
    state = torch.get_rng_state()
    again = VAEGenerator(**TINY, dp_epsilon=8.0).fit(train, seed=0)
    assert torch.equal(state, torch.get_rng_state())
    a, b = private[8.0].net_.state_dict(), again.net_.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = VAEGenerator(**TINY, dp_epsilon=8.0).fit(train, seed=1).net_.state_dict()
    assert not torch.equal(a["dec_out.weight"], other["dec_out.weight"])
    assert not any(hasattr(p, "grad_sample") for p in again.net_.parameters())  # Opacus' hooks are gone


@needs_opacus
def test_the_dense_forward_is_the_networks_own(private, train):
    from feedgan.rec.multvae import _Batch
    from feedgan.synth.dp import _DenseVAE

    net = private[8.0].net_
    X = train.union()
    x = _Batch(X, np.arange(20), torch.device("cpu")).normalised()
    eps = torch.zeros(20, net.latent)
    with torch.no_grad():
        logits, mu, logvar = _DenseVAE(net)(x.to_dense(), eps)
        mu_sparse, logvar_sparse = net.encode(x)
        torch.testing.assert_close(mu, mu_sparse)
        torch.testing.assert_close(logvar, logvar_sparse)
        torch.testing.assert_close(logits, net.decode(mu_sparse))


@needs_opacus
@pytest.mark.filterwarnings("ignore::UserWarning")  # Opacus' notes on its RNG and hooks
def test_each_users_gradient_is_clipped_before_the_sum(train):
    """Opacus with no noise: the gradient it leaves is the sum over users of each user's own
    gradient (every layer) scaled down to norm at most C."""
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader, TensorDataset

    from feedgan.rec.multvae import _Batch, _VAENet
    from feedgan.synth.dp import _DenseVAE, _NegELBO

    X = train.union()
    net = _VAENet(X.shape[1], 8, 3).to_empty(device="cpu")
    net.init_weights(torch.Generator().manual_seed(0))
    x = _Batch(X, np.arange(12), torch.device("cpu"))
    inp, eps, C = x.normalised().to_dense(), torch.randn(12, 3, generator=torch.Generator().manual_seed(1)), 0.5

    def user_grad(u: int) -> torch.Tensor:  # (n_params,) user u's own gradient, plain autograd
        net.zero_grad()
        one = _Batch(X, np.array([u]), torch.device("cpu"))
        _NegELBO()(_DenseVAE(net)(inp[u:u + 1], eps[u:u + 1]), (one, 0.2)).backward()
        return torch.cat([p.grad.reshape(-1) for p in net.parameters()])

    grads = torch.stack([user_grad(u) for u in range(12)])  # (12, n_params)
    assert (grads.norm(dim=1) > C).all()  # every user is clipped
    want = (grads * (C / grads.norm(dim=1, keepdim=True)).clamp(max=1.0)).sum(0)
    model, opt, criterion, _ = PrivacyEngine(accountant="rdp").make_private(
        module=_DenseVAE(net), optimizer=torch.optim.SGD(net.parameters(), lr=0.0), criterion=_NegELBO(),
        data_loader=DataLoader(TensorDataset(torch.arange(12)), batch_size=12), noise_multiplier=0.0,
        max_grad_norm=C, loss_reduction="sum", grad_sample_mode="ghost", poisson_sampling=False)
    opt.zero_grad()
    criterion(model(inp, eps), (x, 0.2)).backward()
    got = torch.cat([p.grad.reshape(-1) for p in net.parameters()])
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


@needs_opacus
def test_save_and_load_keep_the_budget(private, tmp_path, monkeypatch):
    gen = private[1.0]
    gen.save(tmp_path / "g")
    monkeypatch.setitem(sys.modules, "opacus", None)  # a fitted private generator loads and samples without it
    back = Generator.load(tmp_path / "g")
    assert back.dp_ == gen.dp_ and back.dp_epsilon == 1.0
    assert (back.sample(100, seed=3).union() != gen.sample(100, seed=3).union()).nnz == 0


def test_without_opacus_dp_is_one_clear_error_and_plain_fit_never_needs_it(train, monkeypatch):
    monkeypatch.setitem(sys.modules, "opacus", None)  # `import opacus` now raises ImportError
    with pytest.raises(DataError, match=r"needs Opacus.*pip install opacus==1\.6\.0") as err:
        VAEGenerator(**TINY, dp_epsilon=8.0).fit(train, seed=0)
    assert "\n" not in str(err.value)
    plain = VAEGenerator(**TINY).fit(train, seed=0)  # would raise if the non-DP path imported opacus
    assert plain.dp_ is None and plain.dp_epsilon_spent_ is None
    assert plain.z_mean_.any()  # the aggregate prior, as before


def test_a_prior_fitted_outside_dp_and_bad_settings_are_refused(train):
    with pytest.raises(ValueError, match="prior='aggregate'.*void dp_epsilon"):
        VAEGenerator(**TINY, dp_epsilon=8.0, prior="aggregate").fit(train)
    for bad, says in (({"dp_epsilon": -1.0}, "dp_epsilon must be a positive"),
                      ({"dp_epsilon": 8.0, "dp_delta": 1.5}, r"dp_delta must be in \(0, 1\)"),
                      ({"dp_epsilon": 8.0, "dp_max_grad_norm": 0.0}, "dp_max_grad_norm must be a positive"),
                      ({"dp_epsilon": 8.0, "epochs": 0}, "DP training needs epochs >= 1")):
        with pytest.raises(ValueError, match=says):
            VAEGenerator(**{**TINY, **bad}).fit(train)


@needs_opacus
def test_cli_fit_with_dp_and_the_report_shows_the_budget(sim, tmp_path):
    runner = CliRunner()
    data, runs = tmp_path / "log.csv", tmp_path / "runs"
    write_table(sim, data)
    args = [f"{k}={v}" for k, v in TINY.items()]
    res = runner.invoke(app, ["synth", "fit", str(data), "--generator", "vae", "-p", "dp_epsilon=8",
                              *[x for a in args for x in ("-p", a)], "--runs-dir", str(runs), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "differential privacy (item-profile model): epsilon 7." in res.output and "spent of 8" in res.output
    (run,) = runs.iterdir()
    assert Generator.load(run / "generator").dp_["epsilon_spent"] <= 8.0
    res = runner.invoke(app, ["synth", "report", str(run), "--no-utility", "-n", "200"])
    assert res.exit_code == 0, res.output
    dp = json.loads((run / "report.json").read_text())["privacy"]["dp"]
    assert 7.7 <= dp["epsilon_spent"] <= 8.0 and dp["accountant"] == "rdp"
    assert "dp.epsilon_spent" in (run / "report.html").read_text()


@needs_opacus
@pytest.mark.filterwarnings("ignore::UserWarning")  # the accountant's note on its range of orders
def test_a_budget_too_small_to_reach_is_one_clear_error(train):
    with pytest.raises(ValueError, match=r"cannot reach dp_epsilon=0\.001 .*raise dp_epsilon or lower epochs"):
        VAEGenerator(**TINY, dp_epsilon=0.001).fit(train)
