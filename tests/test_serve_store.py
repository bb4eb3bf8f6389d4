"""The store on its own: the id rule, concurrent creation, the O(1) count, and refusing to open a
damaged, foreign or silently shortened store (with the message the operator acts on)."""
import multiprocessing as mp
import os
import shutil
import signal
import sqlite3

import numpy as np
import pytest
import scipy.sparse as sp
from test_serve import Server, registry  # noqa: F401  (the module-scoped registry fixture)
from typer.testing import CliRunner

from feedgan.cli import app
from feedgan.serve.store import MIGRATIONS, IdTypeError, Interaction, Store, StoreError

INT64_MAX = 2**63 - 1


def int_store(path) -> Store:
    st = Store(path)
    st.add([Interaction(1, 2)])
    return st


# -- ids ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw,want", [("0", "0"), ("7", "7"), ("-5", "-5"), (str(INT64_MAX), str(INT64_MAX)),
                                      (str(-INT64_MAX - 1), str(-INT64_MAX - 1)), (12, "12"), (-3, "-3")])
def test_ascii_digit_ids_within_int64_are_ints(tmp_path, raw, want):
    assert int_store(tmp_path / "s.db").canonical(raw) == want


@pytest.mark.parametrize("raw", ["²", "①", "١٢٣", "۴", "𝟗", "--5", "-0", "007", "+5", " 12", "12 ", "1_000", "",
                                 "9" * 4301, str(INT64_MAX + 1), str(-INT64_MAX - 2), INT64_MAX + 1, -2**64, "\ud800"])
def test_everything_else_is_refused_in_an_int_store(tmp_path, raw):
    st = int_store(tmp_path / "s.db")
    with pytest.raises(IdTypeError, match="ASCII digits"):
        st.canonical(raw)
    with pytest.raises(IdTypeError, match=r"interactions\[0\]\.user"):
        st.add([Interaction(raw, 2)])
    assert st.count() == 1


def test_text_store_keeps_ids_as_text_but_refuses_unencodable_ones(tmp_path):
    st = Store(tmp_path / "s.db")
    st.add([Interaction("١٢٣", "a"), Interaction("123", "b")])
    assert st.items_of("١٢٣") == ["a"] and st.items_of("123") == ["b"]
    with pytest.raises(IdTypeError, match="UTF-8"):
        st.canonical("x\ud800")
    with pytest.raises(ValueError, match=r"interactions\[0\]\.action"):
        st.add([Interaction("u", "i", action="\udcff")])
    assert st.count() == 2


def test_a_first_batch_of_huge_ints_is_refused_whole(tmp_path):
    st = Store(tmp_path / "s.db")
    with pytest.raises(IdTypeError, match="int64"):
        st.add([Interaction(1, 2), Interaction(2**63, 3)])
    assert st.count() == 0 and st.id_type is None


# -- concurrent creation ----------------------------------------------------------------------------
def _open(path, barrier, out):
    barrier.wait()
    try:
        st = Store(path)
        out.put(("ok", st.version, st.count()))
    except Exception as e:  # reported to the parent, which fails the test with it
        out.put(("error", type(e).__name__, str(e)))


def test_four_processes_creating_one_new_store_at_once(tmp_path):
    ctx = mp.get_context("fork")
    for trial in range(3):
        path = tmp_path / f"new-{trial}.db"
        barrier, out = ctx.Barrier(4), ctx.Queue()
        procs = [ctx.Process(target=_open, args=(path, barrier, out)) for _ in range(4)]
        for p in procs:
            p.start()
        got = [out.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=60)
        assert got == [("ok", len(MIGRATIONS), 0)] * 4, got
        assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no creation leftovers


# -- counting -------------------------------------------------------------------------------------------
def test_count_is_a_counter_kept_in_the_write_transaction(tmp_path):
    st = Store(tmp_path / "s.db")
    st.import_matrix(np.array([10, 11]), np.array([5, 6]), sp.csr_matrix(np.ones((2, 2), np.float32)))
    st.add([Interaction(10, 5), Interaction(12, 6)])
    with pytest.raises(IdTypeError):
        st.add([Interaction(10, 5), Interaction("x", 6)])  # rolled back: the counter too
    statements = []
    st._conn().set_trace_callback(statements.append)
    assert st.count() == 6
    st._conn().set_trace_callback(None)
    assert statements and not any("from interactions" in s.lower() for s in statements), statements
    raw = sqlite3.connect(tmp_path / "s.db")
    assert raw.execute("SELECT COUNT(*) FROM interactions").fetchone()[0] == 6


def test_an_existing_version_1_store_is_migrated_with_its_count(tmp_path):
    db = tmp_path / "old.db"
    raw = sqlite3.connect(db)
    raw.executescript(MIGRATIONS[0] + "; PRAGMA user_version = 1;")
    raw.execute("INSERT INTO meta VALUES ('id_type', 'int')")
    raw.executemany("INSERT INTO users VALUES (?, 0)", [("1",), ("2",)])
    raw.executemany("INSERT INTO items VALUES (?, 0)", [("5",)])
    raw.executemany("INSERT INTO interactions(user, item, action, weight, source) VALUES (?, '5', 'view', 1, 'api')",
                    [("1",), ("2",), ("2",)])
    raw.commit()
    raw.close()
    st = Store(db)
    assert st.version == len(MIGRATIONS) and st.count() == 3
    st.add([Interaction(1, 5)])
    assert Store(db).count() == 4


def test_a_version_2_store_learns_the_actions_of_its_rows(tmp_path):
    db = tmp_path / "v2.db"
    raw = sqlite3.connect(db)
    raw.executescript(MIGRATIONS[0] + ";" + MIGRATIONS[1] + "; PRAGMA user_version = 2;")
    raw.execute("INSERT INTO meta VALUES ('id_type', 'int')")
    raw.executemany("INSERT INTO users VALUES (?, 0)", [("1",), ("2",)])
    raw.execute("INSERT INTO items VALUES ('5', 0)")
    raw.executemany("INSERT INTO interactions(user, item, action, weight, source) VALUES (?, '5', ?, 1, 'api')",
                    [("1", "view"), ("2", "bookmark"), ("2", "view")])
    raw.execute("UPDATE meta SET value = '3' WHERE key = 'interactions'")
    raw.commit()
    raw.close()
    st = Store(db)
    assert st.version == len(MIGRATIONS) and st.actions() == {"view", "bookmark"}
    st.add([Interaction(1, 5, "like")])
    assert Store(db).actions() == {"view", "bookmark", "like"}
    with pytest.raises(IdTypeError):
        st.add([Interaction(1, 5, "share"), Interaction("x", 5)])  # rolled back: the actions too
    assert Store(db).actions() == {"view", "bookmark", "like"}


# -- refusing damaged or foreign stores ----------------------------------------------------------------
def refused(path, *words):
    with pytest.raises(StoreError) as e:
        Store(path)
    msg = str(e.value)
    assert str(path) in msg and all(w in msg for w in words), msg
    assert "\n" not in msg
    return msg


def test_zero_byte_file_is_refused_not_treated_as_new(tmp_path):
    db = tmp_path / "feed.db"
    db.touch()
    refused(db, "0 bytes", "backup")
    assert db.stat().st_size == 0  # untouched


def test_newer_or_foreign_schema_is_refused(tmp_path):
    newer = tmp_path / "newer.db"
    Store(newer).close()
    sqlite3.connect(newer).execute("PRAGMA user_version = 99")
    refused(newer, "schema version 99", "newer")
    foreign = tmp_path / "foreign.db"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE photos (id INTEGER)")
    con.commit()
    refused(foreign, "not a feedgan store", "photos")
    other_app = tmp_path / "app.db"
    sqlite3.connect(other_app).execute("PRAGMA application_id = 1234")
    refused(other_app, "not a feedgan store")
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"certainly not sqlite" * 100)
    refused(garbage, "not a feedgan store")


def test_a_damaged_file_fails_the_integrity_check(tmp_path):
    db = tmp_path / "feed.db"
    st = Store(db)
    rng = np.random.default_rng(0)
    st.import_matrix(np.arange(300), np.arange(200), sp.random(300, 200, 0.2, format="csr", random_state=0))
    st.close()
    data = bytearray(db.read_bytes())
    page = 4096
    assert len(data) > 20 * page
    for p in range(len(data) // page // 2, len(data) // page // 2 + 3):  # a few pages in the middle
        data[p * page + 100:(p + 1) * page] = rng.integers(0, 256, page - 100, dtype=np.uint8).tobytes()
    db.write_bytes(bytes(data))
    refused(db, "damaged", "backup")


def _crash_copy(st: Store, src, dst):
    """The files as a crash would leave them now: the db, its -wal and the acknowledged-rows record."""
    dst.mkdir()
    for suffix in ("", "-wal", "-acked"):
        if os.path.exists(f"{src}{suffix}"):
            shutil.copyfile(f"{src}{suffix}", dst / f"{src.name}{suffix}")
    return dst / src.name


@pytest.fixture
def crashed(tmp_path):
    """A store whose last acknowledged batches live only in the -wal, copied as a crash leaves it."""
    db = tmp_path / "feed.db"
    st = Store(db)
    st.add([Interaction(u, 1) for u in range(50)])
    for k in range(5):
        st.add([Interaction(1000 + k, 2)])
    return lambda name: _crash_copy(st, db, tmp_path / name)


def test_missing_wal_after_a_crash_is_detected(crashed):
    db = crashed("no-wal")
    os.remove(f"{db}-wal")
    msg = refused(db, "holds 0 interactions", "55 were acknowledged", "-wal", "--accept-loss")
    assert "feed.db-wal" in msg
    st = Store(db, accept_loss=True)  # the operator accepts: go on with what is there, record it
    assert st.count() == 0
    st.close()
    assert Store(db).count() == 0


def test_truncated_wal_after_a_crash_is_detected(crashed):
    db = crashed("short-wal")
    wal = f"{db}-wal"
    os.truncate(wal, os.path.getsize(wal) - 1000)  # the last commit's frames torn
    refused(db, "55 were acknowledged", "missing or truncated")


def test_intact_crash_copy_opens_with_every_row(crashed):
    assert Store(crashed("intact")).count() == 55


def test_missing_db_with_acknowledged_rows_is_refused(crashed):
    db = crashed("no-db")
    os.remove(db)
    os.remove(f"{db}-wal")
    refused(db, "missing", "55 interactions were acknowledged")
    assert not db.exists()  # no empty store created in its place


def test_backup_is_a_consistent_copy_that_opens(tmp_path):
    st = Store(tmp_path / "feed.db")
    st.add([Interaction(u, 1) for u in range(10)])
    st.backup(tmp_path / "backup" / "copy.db")
    assert Store(tmp_path / "backup" / "copy.db").count() == 10


# -- the serve command -----------------------------------------------------------------------------------
def test_serve_refuses_a_damaged_store_in_one_line(registry, tmp_path):  # noqa: F811
    db = tmp_path / "feed.db"
    db.touch()
    res = CliRunner().invoke(app, ["serve", "--registry", str(registry), "--db", str(db)])
    assert res.exit_code == 2 and "0 bytes" in res.output and "feed.db" in res.output, res.output
    assert "Traceback" not in res.output


def test_serve_refuses_a_public_host_without_a_token(registry, tmp_path):  # noqa: F811
    res = CliRunner().invoke(app, ["serve", "--registry", str(registry), "--db", str(tmp_path / "f.db"),
                                   "--host", "0.0.0.0"], env={"FEEDGAN_TOKEN": ""})
    assert res.exit_code == 2 and "--token" in res.output and "FEEDGAN_TOKEN" in res.output, res.output
    assert not (tmp_path / "f.db").exists()


def test_token_from_env_then_kill_and_lost_wal_refused_over_http(registry, tmp_path):  # noqa: F811
    db = tmp_path / "feed.db"
    env = {"FEEDGAN_TOKEN": "env-token"}
    s = Server(registry, db, env=env)
    assert s.call("POST", "/interactions", {"user": 2001, "item": 501})[0] == 401
    for k in range(5):
        assert s.call("POST", "/interactions", {"user": 2000 + k, "item": 501}, token="env-token")[0] == 201
    n = s.call("GET", "/health")[1]["store"]["interactions"]
    s.proc.send_signal(signal.SIGKILL)
    s.proc.wait()
    os.remove(f"{db}-wal")
    with pytest.raises(RuntimeError) as e:
        Server(registry, db, env=env)
    assert f"{n} were acknowledged" in str(e.value) and str(db) in str(e.value) and "Traceback" not in str(e.value)
    s = Server(registry, db, env=env, args=["--accept-loss"])
    try:
        assert s.call("GET", "/health")[1]["store"]["interactions"] < n
    finally:
        s.stop()
