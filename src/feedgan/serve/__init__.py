"""The feedgan service: an HTTP API (FastAPI under uvicorn) over an embedded SQLite store and a
registry of trained runs. Start it with ``feedgan serve --registry runs --db feedgan.db``.

* :mod:`~feedgan.serve.store`: interactions, users, items, social graph; versioned migrations.
* :mod:`~feedgan.serve.registry`: saved models found under a runs folder, loaded as data.
* :mod:`~feedgan.serve.app`: the endpoints (:func:`create_app`).
* :mod:`~feedgan.serve.cache`: recommendation responses reused until the user's history changes.
* :mod:`~feedgan.serve.moderation`: account scores and the review queue (``/accounts/score``, ``/moderation/queue``).
* :mod:`~feedgan.serve.startup`: the first start's import of training rows, in the background.
* :mod:`~feedgan.serve.metrics`: request counts and latency, Prometheus text format.
"""
from .app import MAX_BATCH, MAX_N, create_app
from .store import Store

__all__ = ["MAX_BATCH", "MAX_N", "Store", "create_app"]
