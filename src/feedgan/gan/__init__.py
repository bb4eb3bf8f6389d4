"""The adversarial core every GAN in feedgan shares.

* :mod:`~feedgan.gan.losses`: minimax, non-saturating, hinge and Wasserstein objectives as pure
  functions of logits; WGAN-GP, R1 and R2 penalties.
* :mod:`~feedgan.gan.loop`: the step loop every trained model runs on (:class:`TrainLoop`: epochs,
  ticks, progress, callbacks, early stop, the device-side NaN guard) and :class:`LossTrainer` for
  one-loss models.
* :mod:`~feedgan.gan.trainer`: :class:`GANTrainer` (alternating D/G steps, EMA of G,
  checkpoint/resume, stats, DDP) on that loop, its :class:`GANConfig` and the :class:`GANTask`
  contract.
* :mod:`~feedgan.gan.checkpoint`: checkpoint files (data only), :class:`BestCheckpoint` and the
  :class:`TimeLimit` it honours.
* :mod:`~feedgan.gan.ddp`: process-group helpers for ``torchrun``.

A model family supplies ``G``, ``D`` and a task; the trainer does the rest::

    trainer = GANTrainer(G, D, MyTask(data), GANConfig(loss="hinge", max_steps=5000), out_dir=run)
    trainer.fit(callbacks=[BestCheckpoint(lambda t: validate(t.G_eval), every=500)])
"""
from .checkpoint import BestCheckpoint, TimeLimit, latest_checkpoint
from .ddp import DistInfo, ReplicaDivergenceError
from .losses import GANLoss, get_loss, gradient_penalty, r1_penalty, r2_penalty
from .loop import LossTrainer, NonFiniteLossError, TrainLoop
from .trainer import GANConfig, GANTask, GANTrainer

__all__ = ["BestCheckpoint", "DistInfo", "GANConfig", "GANLoss", "GANTask", "GANTrainer", "LossTrainer",
           "NonFiniteLossError", "ReplicaDivergenceError", "TimeLimit", "TrainLoop", "get_loss", "gradient_penalty",
           "latest_checkpoint", "r1_penalty", "r2_penalty"]
