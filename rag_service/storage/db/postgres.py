"""The server backend: PostgreSQL through psycopg 3 and a connection pool, for API replicas and ingest
workers on any number of hosts. Writers coordinate with an advisory lock held by one pooled connection: the
database releases it when that connection ends, so a writer killed mid-write never leaves it taken."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

from rag_service.errors import ConfigError, InvalidInputError, StoreError, UniqueViolationError
from rag_service.storage.db import Backend, Database, Dialect, Executor, Migration, Result, apply_migrations, redact
from rag_service.storage.db.sqlite import busy
from rag_service.storage.filters import glob_regex

# pg_advisory_lock keys (any two bigints of our own): the write lock, and the one that serialises migrations.
WRITE_LOCK_KEY = 0x7261675F77726974  # "rag_writ"
MIGRATION_LOCK_KEY = 0x7261675F6D696772  # "rag_migr"
WRITE_LOCK_POLL_S = 0.05


DIALECT = Dialect(
    "postgresql",
    tokens={"rowid": "seq", "lock_row": "FOR UPDATE", "now": "EXTRACT(EPOCH FROM clock_timestamp())::double precision",
            "skip_locked": "FOR UPDATE SKIP LOCKED", "bool": "BOOLEAN", "true": "TRUE", "blob": "BYTEA",
            "double": "DOUBLE PRECISION", "rowid_column": ", seq BIGINT GENERATED ALWAYS AS IDENTITY"},
    glob=lambda column: f"{column} ~ ?",
    glob_param=glob_regex,  # GLOB's meaning as a POSIX regex (rag_service.storage.filters)
    json_equals=lambda column, key, value: (f"({column})::jsonb -> ? = ?::jsonb", [key, _json(value)]),
)


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


def _placeholders(sql: str) -> str:
    return DIALECT.render(sql).replace("%", "%%").replace("?", "%s")


class Row(tuple[Any, ...]):
    """A row readable by position and by column name, like ``sqlite3.Row``."""

    names: dict[str, int]

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self.names[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self.names)


def _row_factory(cursor: Any) -> Any:
    names = {d.name: i for i, d in enumerate(cursor.description or ())}

    def make(values: Sequence[Any]) -> Row:
        row = Row(values)
        row.names = names
        return row

    return make


class _Statements(Executor):
    dialect = DIALECT

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Result:
        import psycopg

        try:
            cursor = self._conn.execute(_placeholders(sql), tuple(args))
        except psycopg.errors.UniqueViolation as exc:
            raise UniqueViolationError(str(exc)) from exc
        except psycopg.DataError as exc:
            raise _nul_refused(exc) from exc
        return Result(cursor.fetchall() if cursor.description else [], cursor.rowcount)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        import psycopg

        if rows:
            with self._conn.cursor() as cursor:
                try:
                    cursor.executemany(_placeholders(sql), [tuple(r) for r in rows])
                except psycopg.DataError as exc:
                    raise _nul_refused(exc) from exc


def _nul_refused(exc: Exception) -> Exception:
    """PostgreSQL text cannot hold U+0000 (SQLite can): a name, filter or text with one is the user's input to
    fix, the same 400 on both catalogs, not a server failure. Any other data error stays what it is."""
    if "NUL" in str(exc):
        return InvalidInputError("text with a NUL character (\\x00) cannot be stored or looked up")
    return exc


class PostgresDatabase(Database):
    """All store groups share one PostgreSQL database and pool."""

    dialect = DIALECT

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Result:
        with self._pool.connection() as conn:
            return _Statements(conn).execute(sql, args)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._pool.connection() as conn, conn.transaction():
            _Statements(conn).executemany(sql, rows)

    @contextmanager
    def transaction(self) -> Iterator[Executor]:
        with self._pool.connection() as conn, conn.transaction():
            yield _Statements(conn)

    def stream(self, sql: str, args: Sequence[Any] = ()) -> Iterator[Any]:
        with self._pool.connection() as conn, conn.transaction(), \
                conn.cursor(name=f"stream_{uuid.uuid4().hex[:12]}") as cursor:
            cursor.itersize = 5000
            cursor.execute(_placeholders(sql), tuple(args))
            yield from cursor

    def migrate(self, store: str, migrations: Sequence[Migration]) -> None:
        with self.transaction() as tx:
            tx.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK_KEY,))  # replicas starting together
            apply_migrations(tx, store, migrations, lambda t, step: t.execute(
                f"ALTER TABLE {step.table} ADD COLUMN IF NOT EXISTS {step.column} {step.decl}"))

    def close(self) -> None:
        pass  # the backend closes the pool


class PostgresBackend(Backend):
    """One pool per URL and process, shared by every thread's workspace (a pool per thread would multiply the
    connections), closed when the last user closes it."""

    name = "postgresql"
    _shared: ClassVar[dict[tuple[str, int], tuple[PostgresBackend, int]]] = {}
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def shared(cls, url: str, *, pool_size: int = 10) -> PostgresBackend:
        with cls._shared_lock:
            backend, users = cls._shared.get((url, pool_size)) or (None, 0)
            if backend is None:
                backend = cls(url, pool_size=pool_size)
            cls._shared[(url, pool_size)] = (backend, users + 1)
            return backend

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        from psycopg_pool import ConnectionPool

        self.url = url
        # check: a connection the server dropped (a restart, a failover) is replaced before use, not handed to a
        # request that would then fail.
        self._pool = ConnectionPool(url, min_size=1, max_size=pool_size, open=False, name="rag",
                                    kwargs={"autocommit": True, "row_factory": _row_factory}, timeout=30,
                                    check=ConnectionPool.check_connection)
        try:
            self._pool.open(wait=True, timeout=15)
        except Exception as exc:
            self._pool.close()
            raise StoreError(f"cannot connect to PostgreSQL at {redact(url)}: {exc}") from exc
        self._db = PostgresDatabase(self._pool)

    def database(self, name: str) -> Database:
        if name not in ("catalog", "sessions"):
            raise ConfigError(f"no database group {name!r}")
        return self._db

    @contextmanager
    def write_lock(self, timeout: float | None) -> Iterator[None]:
        """A session-level advisory lock on one pooled connection, for every process on this database."""
        with self._pool.connection() as conn:
            if timeout is None:
                conn.execute("SELECT pg_advisory_lock(%s)", (WRITE_LOCK_KEY,))
            else:
                deadline = time.monotonic() + timeout
                while not conn.execute("SELECT pg_try_advisory_lock(%s)", (WRITE_LOCK_KEY,)).fetchone()[0]:  # type: ignore[index]
                    if time.monotonic() >= deadline:
                        raise busy(timeout)
                    time.sleep(WRITE_LOCK_POLL_S)
            try:
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (WRITE_LOCK_KEY,))

    def close(self) -> None:
        with self._shared_lock:
            key = (self.url, self._pool.max_size)
            backend, users = self._shared.get(key, (None, 0))
            if backend is self:
                if users > 1:
                    self._shared[key] = (self, users - 1)
                    return
                del self._shared[key]
        self._pool.close()

    def describe(self) -> str:
        return f"postgresql ({redact(self.url)})"
