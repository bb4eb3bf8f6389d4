"""Synthetic social-behaviour data: generators of whole users, and the report that proves how real,
how useful and how private they are.

* :mod:`~feedgan.synth.profiles`: :class:`Profiles`, the users-as-data every generator fits and samples.
"""
from .profiles import Profiles

__all__ = ["Profiles"]
