"""The shared recommender contract over every registered model.

One contract class per model of :func:`feedgan.rec.base.registry` that feedgan defines, built
here from the registry itself, so a newly registered model is covered the moment it exists.
``SMALL`` holds settings that keep a contract run to about a second; a model missing from it runs
with its defaults (and ``seed=0`` when it has a seed). Variants of a model (another mode, no
discriminator, ...) keep their own contract classes next to their behaviour tests.
"""
from __future__ import annotations

import inspect

import pytest

import feedgan.rec  # noqa: F401  (defines every model class, filling the registry)
from feedgan.rec.base import registry
from rec_contract import RecommenderContract

SMALL: dict[str, dict] = {
    "itemknn": dict(k=10, shrink=5.0),
    "rp3beta": dict(k=10, alpha=0.8, beta=0.3),
    "puresvd": dict(factors=8),
    "ease": dict(l2=10.0),
    "ials": dict(factors=8, reg=0.01, unobserved=0.1, epochs=3, seed=0),
    "ease-seen": dict(l2=10.0, shrink=5.0, ease=0.1),
    "bpr": dict(factors=8, lr=0.01, epochs=5, batch_size=64, seed=3),
    "multvae": dict(hidden=32, latent=8, epochs=5, batch_size=16, seed=3),
    "cfgan": dict(mode="item", scheme="ZP", g_hidden=(16,), d_hidden=(8,), batch_g=16, batch_d=16, g_steps=1,
                  d_steps=1, epochs=3, eval_every=1, lr_g=1e-3, lr_d=1e-3, seed=0),
    "easegan": dict(l2=10.0, d_hidden=(8,), batch_size=16, epochs=3, eval_every=1, lr_g=1e-3, lr_d=1e-3, seed=0),
    "logreg-propensity": dict(C=1.0, seed=0),
    "gbt-propensity": dict(max_iter=15, max_leaf_nodes=7, min_samples_leaf=5, seed=0),
}
# models whose scores cannot depend on the social ("friends") channel, by design
NOT_INPUT_SENSITIVE = {"seen-first"}  # reads the user's own auxiliary rows and target popularity only


def shipped() -> dict[str, type]:
    """The registry's models that feedgan itself defines (test modules register helpers too)."""
    return {name: cls for name, cls in registry().items() if cls.__module__.startswith("feedgan.")}


def _settings(name: str, cls: type) -> dict:
    if name in SMALL:
        return SMALL[name]
    has_seed = "seed" in inspect.signature(cls.__init__).parameters
    return {"seed": 0} if has_seed else {}


def _contract_class(name: str, cls: type) -> type:
    settings = _settings(name, cls)
    return type(f"TestContract_{name.replace('-', '_')}", (RecommenderContract,), {
        "make_model": lambda self: cls(**settings),
        "input_sensitive": name not in NOT_INPUT_SENSITIVE,
        "__doc__": f"The shared contract for {cls.__name__}({settings})",
    })


for _name, _cls in shipped().items():
    _test = _contract_class(_name, _cls)
    globals()[_test.__name__] = _test


def test_every_registered_model_has_a_contract_class_here():
    here = {c.make_model(c()).name for c in globals().values()
            if isinstance(c, type) and issubclass(c, RecommenderContract) and c is not RecommenderContract}
    assert here == set(shipped())


@pytest.mark.parametrize("name", sorted(SMALL))
def test_small_settings_name_registered_models(name):
    assert name in shipped(), f"{name} is not a registered model: drop it from SMALL"
