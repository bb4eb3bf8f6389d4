"""Recommenders: one contract (``base.Recommender``), many models."""
from .base import Recommender, registry
from .baselines import EASE, ItemKNN, MostPopular, PureSVD, RP3beta
from .behaviour import SeenEASE, SeenFirst
from .bpr import BPR
from .cfgan import CFGAN
from .easegan import EASEGAN
from .ials import IALS
from .multvae import MultVAE
from .propensity import GBTPropensity, LogisticPropensity  # noqa: F401

__all__ = ["BPR", "CFGAN", "EASE", "EASEGAN", "IALS", "ItemKNN", "MostPopular", "MultVAE", "PureSVD", "RP3beta", "Recommender", "SeenEASE",
           "SeenFirst", "registry"]
