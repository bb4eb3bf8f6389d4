"""Synthetic social-behaviour data: generators of whole users, and the report that proves how real,
how useful and how private they are.

* :mod:`~feedgan.synth.profiles`: :class:`Profiles`, the users-as-data every generator fits and samples.
* :mod:`~feedgan.synth.generators`: ``copy``, ``independent``, ``simulator``, ``vae`` (optionally DP-SGD,
  :mod:`~feedgan.synth.dp`) and ``gan`` (:mod:`~feedgan.synth.gan`) on one contract (``fit(train)``,
  ``sample(n)``, ``save``/``load``), listed in ``GENERATORS``.
* :mod:`~feedgan.synth.fidelity`, :mod:`~feedgan.synth.detect`, :mod:`~feedgan.synth.privacy`,
  :mod:`~feedgan.synth.utility`: the figures; :mod:`~feedgan.synth.report` runs them all and writes
  report.html; :mod:`~feedgan.synth.quick` is the demo's small version. ``feedgan synth fit|sample|report``
  (:mod:`~feedgan.synth.cli`) on the command line.
"""
from .profiles import Profiles

__all__ = ["Profiles"]
