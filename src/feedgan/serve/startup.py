"""The service's first start: the active model's training rows copied into an empty store, in the
background, so that the service answers at once.

    imp = TrainImport(store, "00002-train-bpr", (user_ids, item_ids, X), report=ImportLog())
    imp.start()        # a thread; imp.run() does the same in the caller's thread
    imp.status         # "starting" -> "ok", or "failed" (imp.error says why)

While it runs, ``/health`` is a 503 ``{"status": "starting", "import": {"rows_done", "rows_total",
...}}`` and the endpoints that read or write the store answer 503 with ``Retry-After``
(:meth:`TrainImport.check`). The rows go in as one transaction (:meth:`Store.import_matrix`): an
import that fails, or is stopped with the service, leaves the store as it was -- empty -- and the
next start imports again.
"""
from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

from fastapi import HTTPException

RETRY_AFTER_S = 5  # the Retry-After of a 503 while the import runs


class ImportStopped(Exception):
    """The service stopped during the import: the transaction is rolled back."""


class TrainImport:
    """Copies the training rows of the registry entry ``model`` into ``store``: ``rows`` is
    ``(user_ids, item_ids, X)`` as :meth:`Store.import_matrix` takes them (None: nothing to import,
    the service is ready at once). ``report(self)`` is called when the import starts, as the rows go
    in, and once at the end; an exception from it fails the import (nothing stored)."""

    def __init__(self, store, model: str | None = None, rows: tuple | None = None,
                 report: Callable[[TrainImport], None] | None = None):
        self.store, self.model, self.rows, self.report = store, model, rows, report
        self.status = "ok" if rows is None else "starting"
        self.rows_done, self.rows_total = 0, None if rows is None else _count(rows[2])
        self.error: str | None = None
        self._t0: float | None = None
        self._seconds: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def seconds(self) -> float:
        """Seconds the import has run (or took)."""
        if self._seconds is not None:
            return self._seconds
        return 0.0 if self._t0 is None else time.perf_counter() - self._t0

    def start(self) -> None:
        """Run the import in a background thread (nothing to do when there is nothing to import)."""
        if self.status == "starting" and self._thread is None:
            self._thread = threading.Thread(target=self.run, name="feedgan-import", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop a running import (it rolls back at its next chunk) and wait for its thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def run(self) -> None:
        self._t0 = time.perf_counter()
        try:
            self._report()
            self.store.import_matrix(*self.rows, on_rows=self._advance)
        except ImportStopped:
            self._finish("failed", "the service stopped before the import finished")
        except Exception as e:  # noqa: BLE001 -- any failure is reported through /health and the console
            self._finish("failed", str(e) if isinstance(e, (ValueError, OSError)) else f"{type(e).__name__}: {e}")
        else:
            self._finish("ok", None)

    def _advance(self, done: int) -> None:
        self.rows_done = done
        if self._stop.is_set():
            raise ImportStopped
        self._report()

    def _finish(self, status: str, error: str | None) -> None:
        self._seconds = self.seconds
        if status == "failed":
            self.rows_done = 0  # rolled back: the store holds none of them
        self.error = error
        self.status = status  # last: a reader that sees the outcome sees its error too
        with contextlib.suppress(Exception):  # the outcome is kept even if the report cannot be printed
            self._report()

    def _report(self) -> None:
        if self.report is not None:
            self.report(self)

    def state(self) -> dict | None:
        """The import as ``/health`` shows it (None when nothing was imported at this start)."""
        if self.rows is None:
            return None
        out = {"model": self.model, "rows_done": self.rows_done, "rows_total": self.rows_total,
               "seconds": round(self.seconds, 1)}
        if self.error is not None:
            out["error"] = self.error
        return out

    def check(self) -> None:
        """Nothing when the store is ready; else the 503 an endpoint that needs the store answers."""
        if self.status == "ok":
            return
        if self.status == "starting":
            total = "?" if self.rows_total is None else f"{self.rows_total:,}"
            raise HTTPException(503, f"starting: {self.rows_done:,} of {total} training rows of model "
                                     f"{self.model} imported into the store; retry in a few seconds "
                                     "(GET /health says when it is ready)",
                                headers={"Retry-After": str(RETRY_AFTER_S)})
        raise HTTPException(503, f"the import of model {self.model}'s training rows failed ({self.error}); the "
                                 "store holds none of them: fix the cause and restart the service (it imports "
                                 "again), or start it with --no-import-train")


def _count(X) -> int:
    """The rows :meth:`Store.import_matrix` stores from ``X`` (a matrix, or action -> matrix)."""
    return sum(int(M.nnz) for M in (X.values() if isinstance(X, dict) else [X]))


class ImportLog:
    """Console lines for a :class:`TrainImport`: one when it starts (rows), one when it ends (rows,
    seconds), and progress between them (a bar on a terminal, a line every few seconds in a log)."""

    def __init__(self, print_line: Callable[[str], None] | None = None):
        from ..progress import console

        self.print_line = print_line or (lambda text: console.print(text, highlight=False, soft_wrap=True))
        self._bar = contextlib.ExitStack()
        self._prog = self._task = None
        self._started = False

    def __call__(self, imp: TrainImport) -> None:
        if imp.status == "starting" and not self._started:
            self._started = True
            self.print_line(f"importing the {imp.rows_total:,} training rows of model {imp.model} into the store "
                            "(one transaction; until it is done /health says \"starting\")")
            from ..progress import progress_bar

            self._prog = self._bar.enter_context(progress_bar())
            if self._prog is not None:
                self._task = self._prog.add_task("importing training rows", total=imp.rows_total)
        elif imp.status == "starting":
            if self._prog is not None:
                self._prog.update(self._task, completed=imp.rows_done)
        else:
            self._bar.close()
            if imp.status == "ok":
                self.print_line(f"imported {imp.rows_total:,} training rows in {imp.seconds:.1f} s: ready")
            else:
                self.print_line(f"error: the import of model {imp.model}'s training rows failed after "
                                f"{imp.seconds:.1f} s ({imp.error}); the store holds none of them")
