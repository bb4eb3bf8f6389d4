"""The embedded interaction store behind the service: one SQLite file.

- **Schema and migrations.** ``PRAGMA user_version`` holds the schema version; :data:`MIGRATIONS`
  are applied in order, each in its own transaction that also re-reads the version, so processes
  opening one file at once apply each migration exactly once. A new file is built beside the target
  and linked into place whole, so a store file never exists half-made. Add a migration by
  appending to the list, never by editing an old one.
- **Refusing bad files.** Opening refuses, with one line naming the file and the fix
  (:class:`StoreError`): a 0-byte file, a file that is not SQLite, an SQLite file of another
  application or a newer schema, a file failing ``PRAGMA quick_check``, and a store holding fewer
  interactions than were acknowledged (see below). Nothing is changed in a refused file.
- **Durability.** WAL journal with ``synchronous=FULL``: once :meth:`Store.add` returns, the rows
  are on disk, and a crash mid-write rolls the whole batch back (a batch is one transaction, so
  nothing is ever half-stored). :meth:`close` checkpoints the WAL into the database file, so after
  a clean stop the ``.db`` file alone holds everything.
- **Acknowledged rows.** After each commit the store's row count goes to ``<db>-acked`` (outside
  the database and its WAL, fsynced). A later open that finds fewer rows -- the ``-wal`` lost or
  cut short after a crash, the file deleted or replaced by an older copy -- refuses to start
  rather than go on silently; ``accept_loss=True`` (``feedgan serve --accept-loss``) accepts what
  is there. The count itself is a ``meta`` row kept in each write's transaction: O(1) to read.
- **Concurrency.** Each thread has its own connection; readers never wait for the writer (WAL),
  writers take a lock in turn.
- **Ids.** Users and items are kept as the raw ids clients use. The store's id *type* (``int`` or
  ``str``) is fixed by its first data (an import, or the first batch) and recorded in ``meta``; an
  id of the other type is an :class:`IdTypeError`. In an ``int`` store an id is an int within
  int64, or a string of ASCII digits that spells one (``"-5"``; no ``+``, no leading zeros, no
  spaces, no other scripts' digits): anything else is refused, never coerced. Ids read back
  (:meth:`Store.history`, :meth:`Store.typed`) have the store's type: ints in an ``int`` store.
- **Actions.** The distinct actions of the stored rows are a ``meta`` row (:meth:`Store.actions`),
  kept in each write's transaction; which actions a write may carry is the service's rule.
"""
from __future__ import annotations

import json
import math
import os
import re
import sqlite3
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ..io import atomic_path

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
    # 2: the row count as a meta row (kept in each write's transaction); the file marked as a feedgan store
    """
    INSERT INTO meta(key, value) SELECT 'interactions', COUNT(*) FROM interactions;
    PRAGMA application_id = 1179076179
    """,
    # 3: the actions the stored rows carry, as a meta row (a JSON list, kept in each write's transaction)
    """
    INSERT INTO meta(key, value) SELECT 'actions', json_group_array(action) FROM
        (SELECT DISTINCT action FROM interactions ORDER BY action)
    """,
]
APPLICATION_ID = 1179076179  # "FGNS" in the SQLite header: this file is a feedgan store
TABLES = {"meta", "users", "items", "interactions", "social"}
INT64_MIN, INT64_MAX = -2**63, 2**63 - 1
INT_TEXT = re.compile(r"0|-?[1-9][0-9]{0,18}")  # ASCII only; at most 19 digits, so int() stays cheap
INT_RULE = "integers (ASCII digits, an optional '-', no leading zeros, within int64)"
WRITE_CHUNK = 10_000  # rows per executemany inside a write's one transaction (progress is reported per chunk)


class IdTypeError(ValueError):
    """An id of the wrong type for this store (text where the store's ids are integers, ...)."""


class StoreError(ValueError):
    """The store file cannot be used as it is (damaged, foreign, newer, or missing acknowledged rows)."""


@dataclass(frozen=True)
class Interaction:
    user: int | str
    item: int | str
    action: str = "view"
    timestamp: float | None = None
    weight: float = 1.0


class Store:
    """Interactions, users, items and the social graph in one SQLite file; see the module docstring.

    ``accept_loss``: open even when the file holds fewer interactions than were acknowledged (and
    record its count as the new baseline)."""

    def __init__(self, path: str | Path, accept_loss: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._generation = 0  # bumped by close(): every thread then opens a fresh connection
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._acked = Acknowledged(self.path)
        if not self.path.exists():
            self._check_rows(0, accept_loss, missing=True)
            self._create()
        self._check_file()
        try:
            _apply_migrations(self._conn())
            self._check_integrity()
        except sqlite3.DatabaseError as e:
            raise self._error(f"cannot be opened as a feedgan store ({e})", "restore it from a backup "
                              "(docs/serve.md, Backups), or point --db at a new file") from None
        self._check_rows(self.count(), accept_loss)

    # -- connections and schema ---------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        local = self._local
        if getattr(local, "generation", None) != self._generation:
            local.conn, local.generation = _connect(self.path), self._generation
            with self._conns_lock:
                self._conns.append(local.conn)
        return local.conn

    @property
    def version(self) -> int:
        return int(self._conn().execute("PRAGMA user_version").fetchone()[0])

    def _create(self) -> None:
        """Build the schema in a temporary file beside ``path``, then link it into place whole. The
        link fails if another process got there first: its store is then the one opened."""
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        os.close(fd)
        try:
            conn = _connect(Path(tmp))
            _apply_migrations(conn)
            conn.close()  # the last connection: the WAL is checkpointed into the file and removed
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                pass
            _fsync_dir(self.path.parent)
        finally:
            for leftover in (tmp, f"{tmp}-wal", f"{tmp}-shm"):
                if os.path.exists(leftover):
                    os.unlink(leftover)

    def _check_file(self) -> None:
        """Refuse a file that is empty, not SQLite, another application's, or of a newer schema --
        read with a plain connection, before anything (WAL mode, a migration) could change it."""
        if self.path.stat().st_size == 0:
            raise self._error("is an empty file (0 bytes), not a feedgan store", "restore it from a backup "
                              "(docs/serve.md, Backups), or delete it to start a new, empty store")
        fix = "point --db at a feedgan store, or at a new file name to start one"
        try:
            conn = sqlite3.connect(self.path, timeout=30.0)
            try:
                app_id = conn.execute("PRAGMA application_id").fetchone()[0]
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            finally:
                conn.close()
        except sqlite3.DatabaseError as e:
            raise self._error(f"is not a feedgan store (not an SQLite database: {e})", fix) from None
        if app_id not in (0, APPLICATION_ID) or (version >= 2 and app_id != APPLICATION_ID):
            raise self._error(f"is not a feedgan store (SQLite application id {app_id})", fix)
        if version > len(MIGRATIONS):
            raise self._error(f"has schema version {version}, newer than this feedgan knows ({len(MIGRATIONS)})",
                              "upgrade feedgan, or point --db at another file")
        user_tables = sorted(t for t in tables if not t.startswith("sqlite_"))
        if (version == 0 and user_tables) or (version > 0 and not TABLES <= tables):
            shown = ", ".join(user_tables[:5]) + (", ..." if len(user_tables) > 5 else "")
            raise self._error(f"is not a feedgan store (schema version {version}, tables: {shown or 'none'})", fix)

    def _check_integrity(self) -> None:
        problems = [r[0] for r in self._conn().execute("PRAGMA quick_check(3)")]
        if problems != ["ok"]:
            lines = [ln for p in problems for ln in p.splitlines() if ln and not ln.startswith("*** in database")]
            raise self._error(f"is damaged (quick_check: {'; '.join(lines[:3])})", "restore it from a backup "
                              "(docs/serve.md, Backups), or point --db at a new file")

    def _check_rows(self, rows: int, accept_loss: bool, missing: bool = False) -> None:
        """Refuse a store holding fewer rows than were acknowledged; then record its count."""
        acked = self._acked.read()
        if acked is not None and rows < acked and not accept_loss:
            if missing:
                raise self._error(f"is missing, but {acked:,} interactions were acknowledged ({self._acked.path})",
                                  f"restore {self.path.name} from a backup, or start with --accept-loss to "
                                  "begin a new, empty store")
            raise self._error(f"holds {rows:,} interactions but {acked:,} were acknowledged "
                              f"({self._acked.path}): its write-ahead log {self.path}-wal is missing or truncated, "
                              "or the file was replaced by an older copy",
                              f"restore {self.path.name} and {self.path.name}-wal as they were, or start with "
                              f"--accept-loss to go on with the {rows:,} it holds")
        if not missing and rows != acked:
            self._acked.write(rows)

    def _error(self, what: str, fix: str) -> StoreError:
        return StoreError(f"{self.path} {what}: {fix}")

    def close(self) -> None:
        """Checkpoint the WAL into the database file (truncating the ``-wal``) and close every connection."""
        with self._write_lock:
            with self._conns_lock:
                conns, self._conns = self._conns, []
                self._generation += 1
            checkpoint = _connect(self.path)  # its own connection: the others may belong to busy threads
            try:
                checkpoint.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                checkpoint.close()
            for conn in conns:
                conn.close()
            self._acked.close()

    def backup(self, dest: str | Path) -> Path:
        """A consistent copy of the store at ``dest`` through SQLite's online backup API (safe while
        the service runs and writes); written to a temporary file, then renamed."""
        dest = Path(dest)
        with atomic_path(dest) as tmp:
            target = sqlite3.connect(tmp)
            try:
                self._conn().backup(target)
            finally:
                target.close()
        return dest

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

    def typed(self, text: str, id_type: str | None = None):
        """A stored id (text) as clients see it: an int in an ``int`` store, else the text."""
        return int(text) if (id_type or self.id_type) == "int" else text

    def actions(self) -> set[str]:
        """The distinct actions of the stored rows (a meta row: O(1))."""
        return set(json.loads(self.get_meta("actions") or "[]"))

    def known_items(self, items: list[str]) -> int:
        """How many of ``items`` (stored text form, distinct) the store holds."""
        conn, n = self._conn(), 0
        for k in range(0, len(items), 500):
            chunk = items[k:k + 500]
            n += conn.execute(f"SELECT COUNT(*) FROM items WHERE id IN ({','.join('?' * len(chunk))})",
                              chunk).fetchone()[0]
        return n

    def canonical(self, raw, field: str = "id", id_type: str | None = None) -> str:
        """The stored text form of a raw id, checked against the store's id type (module docstring, Ids)."""
        id_type = id_type or self.id_type
        if isinstance(raw, bool) or not isinstance(raw, (int, str)):
            raise IdTypeError(f"{field}: ids are integers or strings, got {type(raw).__name__} {_show(raw)}")
        if id_type == "int":
            value = raw if isinstance(raw, int) else int(raw) if INT_TEXT.fullmatch(raw) else None
            if value is None or not INT64_MIN <= value <= INT64_MAX:
                raise IdTypeError(f"{field}: ids in this store are {INT_RULE}, got {_show(raw)}")
            return str(value)
        return _text(str(raw), field, IdTypeError)

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
                action = _text(r.action, f"interactions[{k}].action", ValueError)
                data.append((user, item, action, r.timestamp, float(r.weight), source))
            self._write(data, now, id_type)
        return len(rows)

    def _write(self, data: list[tuple], now: float, id_type: str, on_rows=None) -> None:
        """``data`` in one transaction; ``on_rows(done)`` after each :data:`WRITE_CHUNK` rows (an
        exception from it rolls the whole write back)."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            if self.id_type is None:
                conn.execute("INSERT INTO meta(key, value) VALUES ('id_type', ?)", (id_type,))
            conn.executemany("INSERT OR IGNORE INTO users(id, first_seen) VALUES (?, ?)",
                             ((u, now) for u in {d[0] for d in data}))
            conn.executemany("INSERT OR IGNORE INTO items(id, first_seen) VALUES (?, ?)",
                             ((i, now) for i in {d[1] for d in data}))
            for k in range(0, len(data), WRITE_CHUNK):
                conn.executemany("INSERT INTO interactions(user, item, action, timestamp, weight, source) "
                                 "VALUES (?, ?, ?, ?, ?, ?)", data[k:k + WRITE_CHUNK])
                if on_rows is not None:
                    on_rows(min(k + WRITE_CHUNK, len(data)))
            known, posted = self.actions(), {d[2] for d in data}
            if not posted <= known:
                conn.execute("UPDATE meta SET value = ? WHERE key = 'actions'", (json.dumps(sorted(known | posted)),))
            total = int(conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + ? WHERE key = 'interactions' "
                                     "RETURNING value", (len(data),)).fetchone()[0])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._acked.write(total)  # only now is the batch acknowledged

    def import_matrix(self, user_ids: np.ndarray, item_ids: np.ndarray, X: sp.csr_matrix | dict[str, sp.csr_matrix],
                      action: str = "train", source: str = "import", on_rows=None) -> int:
        """Store every non-zero of ``X`` (rows = ``user_ids``, columns = ``item_ids``) as ``action``, in
        one transaction. ``X`` may also be a mapping action -> matrix: each matrix's non-zeros are
        stored under its own action name (``action`` is then unused), all in that one transaction.
        ``on_rows(done)``: called as the rows go in (every :data:`WRITE_CHUNK`); an exception it
        raises rolls the whole import back, so a stopped import stores nothing."""
        id_type = "int" if user_ids.dtype.kind in "iu" and item_ids.dtype.kind in "iu" else "str"
        if self.id_type not in (None, id_type):
            raise IdTypeError(f"the store's ids are {self.id_type}s; this model's ids are {id_type}s")
        users, items = user_ids.astype(str), item_ids.astype(str)
        data = []
        for name, M in (X.items() if isinstance(X, dict) else [(action, X)]):
            coo = sp.coo_matrix(M)
            data += [(users[u], items[i], name, None, 1.0, source) for u, i in zip(coo.row, coo.col)]
        with self._write_lock:
            self._write(data, time.time(), id_type, on_rows)
        return len(data)

    def import_social(self, src: np.ndarray, dst: np.ndarray) -> int:
        """Store friend edges ``src[k] -> dst[k]`` (raw user ids, of the store's id type) in one
        transaction; edges already stored are kept once. Returns the number of new edges."""
        id_type = self.id_type or ("int" if src.dtype.kind in "iu" and dst.dtype.kind in "iu" else "str")
        edges = {(self.canonical(s, "social src", id_type), self.canonical(d, "social dst", id_type))
                 for s, d in zip(np.asarray(src).tolist(), np.asarray(dst).tolist())}
        with self._write_lock:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                if self.id_type is None:
                    conn.execute("INSERT INTO meta(key, value) VALUES ('id_type', ?)", (id_type,))
                before = conn.execute("SELECT COUNT(*) FROM social").fetchone()[0]
                conn.executemany("INSERT OR IGNORE INTO social(src, dst) VALUES (?, ?)", sorted(edges))
                added = conn.execute("SELECT COUNT(*) FROM social").fetchone()[0] - before
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return int(added)

    # -- reads ------------------------------------------------------------------------------------
    def social_count(self) -> int:
        """The number of stored friend edges."""
        return int(self._conn().execute("SELECT COUNT(*) FROM social").fetchone()[0])

    def unknown_users(self, users: list[str]) -> int:
        """How many of ``users`` (stored text form, distinct) have no stored interaction."""
        conn, n = self._conn(), 0
        for k in range(0, len(users), 500):
            chunk = users[k:k + 500]
            n += conn.execute(f"SELECT COUNT(*) FROM users WHERE id IN ({','.join('?' * len(chunk))})",
                              chunk).fetchone()[0]
        return len(users) - n

    def count(self) -> int:
        """The number of stored interactions: a meta row, O(1)."""
        return int(self.get_meta("interactions"))

    def last_seq(self, user: str) -> int | None:
        """The sequence number of the user's newest stored interaction (None: none stored): it
        changes with every write for that user, from any process (one index lookup)."""
        return self._conn().execute("SELECT MAX(seq) FROM interactions WHERE user = ?", (user,)).fetchone()[0]

    def has_user(self, user: str) -> bool:
        return self._conn().execute("SELECT 1 FROM users WHERE id = ?", (user,)).fetchone() is not None

    def history(self, user: str, limit: int | None = None) -> list[dict]:
        """The user's interactions, oldest first (``limit``: the newest ``limit``); items in the store's id type."""
        sql = "SELECT item, action, timestamp, weight, source FROM interactions WHERE user = ? ORDER BY seq"
        rows = self._conn().execute(sql, (user,)).fetchall()
        if limit is not None:
            rows = rows[-limit:]
        return [{"item": self.typed(r[0]), "action": r[1], "timestamp": r[2], "weight": r[3], "source": r[4]} for r in rows]

    def rows(self) -> list[tuple]:
        """Every interaction as ``(user, item, action, timestamp, weight)``, in stored order; ids in
        their stored text form, a missing timestamp None. One read: a consistent snapshot."""
        sql = "SELECT user, item, action, timestamp, weight FROM interactions ORDER BY seq"
        return self._conn().execute(sql).fetchall()

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


class Acknowledged:
    """The number of acknowledged interactions, in ``<db>-acked`` beside the store: 21 bytes
    (20 digits and a newline) rewritten in place and fsynced after each commit. It lives outside the
    database and its WAL, so losing either is noticed. Written after the commit, it never exceeds
    the committed count; a crash between the two leaves it lower, which only weakens the check."""

    def __init__(self, db: Path):
        self.path = db.with_name(db.name + "-acked")
        self._fd: int | None = None

    def read(self) -> int | None:
        """The recorded count, or None when there is no record (or one just being created: empty)."""
        try:
            text = self.path.read_bytes()
        except FileNotFoundError:
            return None
        if not text:
            return None
        if not re.fullmatch(rb"[0-9]{20}\n", text):
            raise StoreError(f"{self.path}: not a count of acknowledged interactions ({text[:40]!r}): delete it "
                             f"to trust {self.path.name.removesuffix('-acked')} as it is")
        return int(text)

    def write(self, n: int) -> None:
        if self._fd is None:
            created = not self.path.exists()
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if created:
                _fsync_dir(self.path.parent)
        os.pwrite(self._fd, b"%020d\n" % n, 0)
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def _apply_migrations(conn: sqlite3.Connection) -> None:
    """Apply the missing migrations, each in its own write transaction. The version is read inside
    that transaction: another process may have migrated the file since it was opened."""
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version < len(MIGRATIONS):
                for statement in filter(str.strip, MIGRATIONS[version].split(";")):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if version >= len(MIGRATIONS) - 1:
            return


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _text(value: str, field: str, error: type[ValueError]) -> str:
    """``value`` if SQLite can store it as text (UTF-8: no lone surrogates), else ``error``."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise error(f"{field}: not valid UTF-8 text (a lone surrogate), got {_show(value)}") from None
    return value


def _show(raw) -> str:
    """``repr(raw)``, cut short for huge ids."""
    text = repr(raw)
    return text if len(text) <= 60 else f"{text[:40]}... ({len(str(raw)):,} characters)"
