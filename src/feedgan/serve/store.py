"""The embedded interaction store behind the service: one SQLite file.

- **Schema and migrations.** ``PRAGMA user_version`` holds the schema version; :data:`MIGRATIONS`
  are applied in order, each in its own transaction, the first time a file is opened (a new file
  gets all of them). Add a migration by appending to the list, never by editing an old one.
- **Durability.** WAL journal with ``synchronous=FULL``: once :meth:`Store.add` returns, the rows
  are on disk, and a crash mid-write rolls the whole batch back (a batch is one transaction, so
  nothing is ever half-stored).
- **Concurrency.** Each thread has its own connection; readers never wait for the writer (WAL),
  writers take a lock in turn.
- **Ids.** Users and items are kept as the raw ids clients use. The store's id *type* (``int`` or
  ``str``) is fixed by its first data (an import, or the first batch) and recorded in ``meta``; an
  id of the other type is an :class:`IdTypeError`.
"""
from __future__ import annotations

import math
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

MIGRATIONS: list[str] = [
    # 1: the first schema
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE users (id TEXT PRIMARY KEY, first_seen REAL NOT NULL);
    CREATE TABLE items (id TEXT PRIMARY KEY, first_seen REAL NOT NULL);
    CREATE TABLE interactions (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        user TEXT NOT NULL REFERENCES users(id),
        item TEXT NOT NULL REFERENCES items(id),
        action TEXT NOT NULL,
        timestamp REAL,
        weight REAL NOT NULL,
        source TEXT NOT NULL
    );
    CREATE INDEX interactions_by_user ON interactions(user);
    CREATE TABLE social (src TEXT NOT NULL, dst TEXT NOT NULL, PRIMARY KEY (src, dst));
    """,
]


class IdTypeError(ValueError):
    """An id of the wrong type for this store (text where the store's ids are integers, ...)."""


@dataclass(frozen=True)
class Interaction:
    user: int | str
    item: int | str
    action: str = "view"
    timestamp: float | None = None
    weight: float = 1.0


class Store:
    """Interactions, users, items and the social graph in one SQLite file; see the module docstring."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._migrate()

    # -- connections and schema ---------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
        return conn

    @property
    def version(self) -> int:
        return int(self._conn().execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        conn = self._conn()
        with self._write_lock:
            for version, script in enumerate(MIGRATIONS, start=1):
                if self.version >= version:
                    continue
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for statement in filter(str.strip, script.split(";")):
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {version}")
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- meta -----------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self._conn().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        with self._write_lock:
            self._conn().execute("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                                 "value = excluded.value", (key, value))

    @property
    def id_type(self) -> str | None:
        """``"int"`` or ``"str"`` once the store has data, else None."""
        return self.get_meta("id_type")

    def canonical(self, raw, field: str = "id", id_type: str | None = None) -> str:
        """The stored text form of a raw id, checked against the store's id type."""
        id_type = id_type or self.id_type
        if isinstance(raw, bool) or not isinstance(raw, (int, str)):
            raise IdTypeError(f"{field}: ids are integers or strings, got {type(raw).__name__} {raw!r}")
        if id_type == "int":
            if isinstance(raw, int):
                return str(raw)
            text = raw.strip()
            if text.lstrip("-").isdigit() and (text == "0" or not text.lstrip("-").startswith("0")):
                return str(int(text))
            raise IdTypeError(f"{field}: ids in this store are integers, got {raw!r}")
        return str(raw)

    # -- writes -----------------------------------------------------------------------------------
    def add(self, rows: list[Interaction], source: str = "api") -> int:
        """Store a batch atomically: all rows or none. Returns the number stored."""
        if not rows:
            return 0
        with self._write_lock:
            id_type = self.id_type or ("int" if all(isinstance(r.user, int) and isinstance(r.item, int)
                                                      for r in rows) else "str")
            now = time.time()
            data = []
            for k, r in enumerate(rows):
                user = self.canonical(r.user, f"interactions[{k}].user", id_type)
                item = self.canonical(r.item, f"interactions[{k}].item", id_type)
                if not (isinstance(r.weight, (int, float)) and math.isfinite(r.weight)):
                    raise ValueError(f"interactions[{k}].weight: must be a finite number, got {r.weight!r}")
                data.append((user, item, r.action, r.timestamp, float(r.weight), source))
            self._write(data, now, id_type)
        return len(rows)

    def _write(self, data: list[tuple], now: float, id_type: str) -> None:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            if self.id_type is None:
                conn.execute("INSERT INTO meta(key, value) VALUES ('id_type', ?)", (id_type,))
            conn.executemany("INSERT OR IGNORE INTO users(id, first_seen) VALUES (?, ?)",
                             ((u, now) for u in {d[0] for d in data}))
            conn.executemany("INSERT OR IGNORE INTO items(id, first_seen) VALUES (?, ?)",
                             ((i, now) for i in {d[1] for d in data}))
            conn.executemany("INSERT INTO interactions(user, item, action, timestamp, weight, source) "
                             "VALUES (?, ?, ?, ?, ?, ?)", data)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def import_matrix(self, user_ids: np.ndarray, item_ids: np.ndarray, X: sp.csr_matrix | dict[str, sp.csr_matrix],
                      action: str = "train", source: str = "import") -> int:
        """Store every non-zero of ``X`` (rows = ``user_ids``, columns = ``item_ids``) as ``action``, in
        one transaction. ``X`` may also be a mapping action -> matrix: each matrix's non-zeros are
        stored under its own action name (``action`` is then unused), all in that one transaction."""
        id_type = "int" if user_ids.dtype.kind in "iu" and item_ids.dtype.kind in "iu" else "str"
        if self.id_type not in (None, id_type):
            raise IdTypeError(f"the store's ids are {self.id_type}s; this model's ids are {id_type}s")
        users, items = user_ids.astype(str), item_ids.astype(str)
        data = []
        for name, M in (X.items() if isinstance(X, dict) else [(action, X)]):
            coo = sp.coo_matrix(M)
            data += [(users[u], items[i], name, None, 1.0, source) for u, i in zip(coo.row, coo.col)]
        with self._write_lock:
            self._write(data, time.time(), id_type)
        return len(data)

    # -- reads ------------------------------------------------------------------------------------
    def count(self) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM interactions").fetchone()[0])

    def has_user(self, user: str) -> bool:
        return self._conn().execute("SELECT 1 FROM users WHERE id = ?", (user,)).fetchone() is not None

    def history(self, user: str, limit: int | None = None) -> list[dict]:
        """The user's interactions, oldest first (``limit``: the newest ``limit``)."""
        sql = "SELECT item, action, timestamp, weight, source FROM interactions WHERE user = ? ORDER BY seq"
        rows = self._conn().execute(sql, (user,)).fetchall()
        if limit is not None:
            rows = rows[-limit:]
        return [{"item": r[0], "action": r[1], "timestamp": r[2], "weight": r[3], "source": r[4]} for r in rows]

    def items_of(self, user: str) -> list[str]:
        """The distinct items the user interacted with."""
        return [r[0] for r in self._conn().execute("SELECT DISTINCT item FROM interactions WHERE user = ?", (user,))]

    def items_by_action(self, user: str) -> dict[str, list[str]]:
        """The distinct items the user took each action on: action -> items."""
        out: dict[str, list[str]] = {}
        sql = "SELECT DISTINCT action, item FROM interactions WHERE user = ?"
        for action, item in self._conn().execute(sql, (user,)):
            out.setdefault(action, []).append(item)
        return out
