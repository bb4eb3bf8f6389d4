"""Moderation: flag machine-made accounts, measured the way a trust-and-safety team would.

* :mod:`~feedgan.moderation.attacks`: :func:`~feedgan.moderation.attacks.inject` adds labelled fake
  profiles (random, average, bandwagon, segment shilling attacks) to any interaction log.
* :mod:`~feedgan.moderation.detect`: profile features, PCA-VarSelect, anomaly scores, a supervised
  feature detector and detection metrics at a low false-positive rate.

Import the submodules directly; the package itself loads nothing heavy.
"""
