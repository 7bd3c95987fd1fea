"""Where the service keeps its state: a registry of database backends behind one small interface.

The stores (catalog, sessions, feedback, ingest jobs) are written once, in portable SQL with ``?`` parameters and
a few ``{tokens}`` for what differs between engines (see ``Dialect``). A backend supplies the connection handling,
the dialect, the cross-process write lock and the migration bookkeeping. Adding one (say MySQL) is one new module
with a ``Backend`` class plus an entry in ``BACKENDS``; no store changes.

- ``sqlite`` (default): files under ``data_dir`` (``catalog.sqlite3``, ``sessions.sqlite3``), ``flock`` on
  ``data_dir/write.lock``. One host.
- ``postgresql``: ``RAG_DATABASE_URL=postgresql://...``, psycopg 3 with a connection pool, advisory locks.
  Any number of API replicas and workers on any hosts.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from rag_service.errors import ConfigError

if TYPE_CHECKING:
    from rag_service.settings import Settings


class Row(Protocol):
    """A result row readable by column name or position (``sqlite3.Row`` and ``db.postgres.Row`` both are)."""

    def __getitem__(self, key: str | int) -> Any: ...
    def keys(self) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class Result:
    rows: list[Any]
    rowcount: int

    def fetchone(self) -> Any:
        return self.rows[0] if self.rows else None

    def __iter__(self) -> Iterator[Any]:
        return iter(self.rows)


@dataclass(eq=False)
class Dialect:
    """What differs between engines, as text the stores splice into their SQL.

    In statements: ``{rowid}`` (insertion order), ``{now}`` (the database clock in epoch seconds, so leases do not
    depend on the clocks of the hosts), ``{lock_row}`` (lock the rows read until the transaction ends),
    ``{skip_locked}`` (lock them, passing over rows other transactions hold; empty where a transaction already
    serialises writers). In schema text: ``{bool}``, ``{true}``, ``{blob}``, ``{double}``,
    ``{rowid_column}`` (an explicit insertion-order column where the engine has no rowid)."""

    name: str
    tokens: dict[str, str] = field(default_factory=dict)
    glob: Callable[[str], str] = lambda column: f"{column} GLOB ?"
    glob_param: Callable[[str], str] = lambda pattern: pattern
    json_equals: Callable[[str, str, Any], tuple[str, list[Any]]] = \
        lambda column, key, value: (f"json_extract({column}, ?) = ?", [f"$.{key}", value])

    _rendered: dict[str, str] = field(default_factory=dict, repr=False)

    def render(self, sql: str) -> str:
        """``sql`` with this engine's tokens filled in (cached: the stores' statements are a fixed set)."""
        done = self._rendered.get(sql)
        if done is None:
            done = sql
            for token, text in self.tokens.items():
                done = done.replace("{" + token + "}", text)
            self._rendered[sql] = done
        return done


@dataclass(frozen=True, slots=True)
class AddColumn:
    """A migration step that adds a column unless it is there (SQLite files from before versioned migrations
    may have it already)."""

    table: str
    column: str
    decl: str


# SQL (statements separated by ";"), an idempotent column addition, or Python run inside the migration's transaction
# (a backfill that needs code, such as detecting each document's language).
Step = str | AddColumn | Callable[["Executor"], None]


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    steps: tuple[Step, ...]


SCHEMA_MIGRATIONS = ("CREATE TABLE IF NOT EXISTS schema_migrations (store TEXT NOT NULL, version INTEGER NOT NULL, "
                     "description TEXT NOT NULL, applied TEXT NOT NULL, PRIMARY KEY (store, version))")


def apply_migrations(tx: Executor, store: str, migrations: Sequence[Migration],
                     add_column: Callable[[Executor, AddColumn], object]) -> None:
    """The store's migrations not yet recorded in ``schema_migrations``, in order, inside the caller's transaction
    (which each backend makes exclusive); ``add_column`` is the backend's idempotent ALTER TABLE."""
    tx.execute(SCHEMA_MIGRATIONS)
    done = {r[0] for r in tx.execute("SELECT version FROM schema_migrations WHERE store = ?", (store,))}
    for migration in sorted(migrations, key=lambda m: m.version):
        if migration.version in done:
            continue
        for step in migration.steps:
            if isinstance(step, AddColumn):
                add_column(tx, step)
            elif callable(step):
                step(tx)
            else:
                for statement in step.split(";"):
                    if statement.strip():
                        tx.execute(statement)
        tx.execute("INSERT INTO schema_migrations VALUES (?, ?, ?, ?)",
                   (store, migration.version, migration.description, now_text()))


class Executor(ABC):
    """Runs statements: a database outside a transaction (each statement commits), or one transaction."""

    dialect: Dialect

    @abstractmethod
    def execute(self, sql: str, args: Sequence[Any] = ()) -> Result: ...

    @abstractmethod
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...


class Database(Executor):
    """One logical database of a backend ("catalog", "sessions"): statements, transactions, streaming reads and
    versioned migrations."""

    @abstractmethod
    def transaction(self) -> AbstractContextManager[Executor]:
        """All or nothing; writers of the same rows wait for each other (SQLite: BEGIN IMMEDIATE)."""

    @abstractmethod
    def stream(self, sql: str, args: Sequence[Any] = ()) -> Iterator[Any]:
        """Rows of a large result without holding them all in memory."""

    @abstractmethod
    def migrate(self, store: str, migrations: Sequence[Migration]) -> None:
        """Apply the store's migrations not applied yet, in order, once even when processes start together."""

    @abstractmethod
    def close(self) -> None: ...


class Backend(ABC):
    """A database engine for every store of one deployment, and the lock that lets one writer at a time change
    the knowledge bases (an ingest, a delete, a re-tokenisation), across processes and hosts where it can."""

    name: str

    @abstractmethod
    def database(self, name: str) -> Database:
        """The database holding store group ``name``: "catalog" (knowledge bases, documents, chunks, change log,
        jobs) or "sessions" (chat sessions, feedback). Opened once, shared by threads."""

    @abstractmethod
    def write_lock(self, timeout: float | None) -> AbstractContextManager[None]:
        """Held by one writer at a time; BusyError after ``timeout`` seconds (None: wait as long as it takes)."""

    @abstractmethod
    def close(self) -> None: ...

    def describe(self) -> str:
        """Where the state lives, for logs and health (never a password)."""
        return self.name


def redact(url: str) -> str:
    """The URL without its password, for logs and health."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _sqlite(settings: Settings) -> Backend:
    from rag_service.storage.db.sqlite import SQLiteBackend

    return SQLiteBackend(settings.data_dir)


def _postgres(settings: Settings) -> Backend:
    from rag_service.storage.db.postgres import PostgresBackend

    assert settings.database_url is not None
    return PostgresBackend.shared(settings.database_url.get_secret_value(), pool_size=settings.database_pool_size)


# URL scheme -> backend. A third engine is one module plus one line here.
BACKENDS: dict[str, Callable[[Settings], Backend]] = {
    "sqlite": _sqlite,
    "postgresql": _postgres,
    "postgres": _postgres,
}


def open_backend(settings: Settings) -> Backend:
    """The backend ``settings.database_url`` names (unset: SQLite files under ``data_dir``)."""
    if settings.database_url is None:
        return BACKENDS["sqlite"](settings)
    url = settings.database_url.get_secret_value()
    scheme = re.split(r"[:+]", url, maxsplit=1)[0].lower()
    if scheme not in BACKENDS:
        raise ConfigError(f"database_url: unsupported scheme {scheme!r}; one of {', '.join(sorted(BACKENDS))}")
    return BACKENDS[scheme](settings)
