"""Moderation: flag machine-made accounts and avatars, measured the way a trust-and-safety team would.

* :mod:`~feedgan.moderation.attacks`: :func:`~feedgan.moderation.attacks.inject` adds labelled fake
  profiles (random, average, bandwagon, segment shilling attacks; generator-made and
  discriminator-refined ones) to any interaction log.
* :mod:`~feedgan.moderation.adversarial`: the discriminator-refined (AUSH-style) attack.
* :mod:`~feedgan.moderation.bots`: scripted bot accounts in a simulated network.
* :mod:`~feedgan.moderation.detect`: profile features, PCA-VarSelect, anomaly scores, a supervised
  feature detector and detection metrics at a low false-positive rate.
* :mod:`~feedgan.moderation.discriminator`: an MLP discriminator trained on real vs injected profiles.
* :mod:`~feedgan.moderation.effect`: what an attack does to recommendations, before and after review.
* :mod:`~feedgan.moderation.scoring`: the account scorer behind the service's moderation endpoints.
* :mod:`~feedgan.moderation.avatars`: detectors of generated profile pictures.

Import the submodules directly; the package itself loads nothing heavy.
"""
