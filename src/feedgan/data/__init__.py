"""Interaction logs in, split sparse matrices out."""
from .dataset import DataConfig, Dataset, IdMap, load_dataset, prepare
from .schema import ACTIONS, DataError, Interactions, validate

__all__ = ["ACTIONS", "DataConfig", "DataError", "Dataset", "IdMap", "Interactions", "load_dataset", "prepare",
           "validate"]
