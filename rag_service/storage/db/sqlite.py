"""The embedded backend: SQLite files under the data dir, one writer at a time by ``flock``.

Each file is opened once in autocommit mode (explicit transactions), WAL so readers never block the writer,
foreign keys on, rows by name, usable from the server's worker threads.
"""

from __future__ import annotations

import fcntl
import math
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rag_service.errors import BusyError, UniqueViolationError
from rag_service.storage.db import AddColumn, Backend, Database, Dialect, Executor, Migration, Result, apply_migrations

DIALECT = Dialect("sqlite", tokens={
    "rowid": "rowid", "lock_row": "", "now": "((julianday('now') - 2440587.5) * 86400.0)", "skip_locked": "",
    "bool": "INTEGER", "true": "1", "blob": "BLOB", "double": "REAL", "rowid_column": "",
})
FILES = {"catalog": "catalog.sqlite3", "sessions": "sessions.sqlite3"}
WRITE_LOCK_POLL_S = 0.05


def connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA foreign_keys=ON")
    return db


class _Statements(Executor):
    dialect = DIALECT

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Result:
        try:
            cursor = self._db.execute(self.dialect.render(sql), args)
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" in str(exc) or "PRIMARY KEY" in str(exc):
                raise UniqueViolationError(str(exc)) from exc
            raise
        return Result(cursor.fetchall(), cursor.rowcount)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._db.executemany(self.dialect.render(sql), rows)


class SQLiteDatabase(_Statements, Database):
    def __init__(self, path: Path) -> None:
        super().__init__(connect(path))
        self.path = path
        self._writer = threading.RLock()  # one connection: one transaction at a time on it

    @contextmanager
    def transaction(self) -> Iterator[Executor]:
        with self._writer:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def stream(self, sql: str, args: Sequence[Any] = ()) -> Iterator[Any]:
        yield from self._db.execute(self.dialect.render(sql), args)

    def migrate(self, store: str, migrations: Sequence[Migration]) -> None:
        with self.transaction() as tx:  # BEGIN IMMEDIATE: processes starting together migrate one at a time
            apply_migrations(tx, store, migrations, _add_column)

    def close(self) -> None:
        self._db.close()


def _add_column(tx: Executor, step: AddColumn) -> None:
    """SQLite has no ADD COLUMN IF NOT EXISTS; files from before versioned migrations may have the column."""
    if step.column not in {r["name"] for r in tx.execute(f"PRAGMA table_info({step.table})")}:
        tx.execute(f"ALTER TABLE {step.table} ADD COLUMN {step.column} {step.decl}")


class SQLiteBackend(Backend):
    name = "sqlite"

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._open: dict[str, SQLiteDatabase] = {}
        self._lock = threading.Lock()

    def database(self, name: str) -> Database:
        with self._lock:
            if name not in self._open:
                self._open[name] = SQLiteDatabase(self.data_dir / FILES[name])
            return self._open[name]

    @contextmanager
    def write_lock(self, timeout: float | None) -> Iterator[None]:
        """``flock`` on ``data_dir/write.lock``: every process on this host that shares the data dir."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.data_dir / "write.lock", "w") as handle:
            if timeout is None:
                fcntl.flock(handle, fcntl.LOCK_EX)
            else:
                _flock_within(handle.fileno(), timeout)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def close(self) -> None:
        with self._lock:
            for db in self._open.values():
                db.close()
            self._open.clear()

    def describe(self) -> str:
        return f"sqlite ({self.data_dir})"


def _flock_within(fd: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise busy(timeout) from None
            time.sleep(WRITE_LOCK_POLL_S)


def busy(timeout: float) -> BusyError:
    return BusyError(f"another write (an ingest, a delete) is in progress; waited {timeout:g} s",
                     retry_after=max(1, math.ceil(timeout)))
