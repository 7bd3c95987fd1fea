"""The throwaway PostgreSQL server the database tests rely on: real, isolated per test, reachable only locally."""

from __future__ import annotations

import psycopg
from psycopg.conninfo import conninfo_to_dict

from tests.postgres import PostgresServer, database_name


def test_server_answers_and_databases_are_isolated(postgres_server: PostgresServer, postgres_url: str) -> None:
    """Each test's database is its own: a table made in one must not show up in another."""
    with psycopg.connect(postgres_url) as conn:
        version = conn.execute("SELECT version()").fetchone()
        assert version is not None and str(version[0]).startswith("PostgreSQL ")
        assert conn.execute("SHOW fsync").fetchone() == ("off",)  # the speed settings are in force
        conn.execute("CREATE TABLE only_here (id int PRIMARY KEY)")
        conn.execute("INSERT INTO only_here VALUES (1)")

    other_name = database_name("isolation-check")
    other_url = postgres_server.new_database(other_name)
    try:
        assert other_url != postgres_url
        with psycopg.connect(other_url) as conn:
            assert conn.execute("SELECT to_regclass('only_here')").fetchone() == (None,)
            conn.execute("CREATE TABLE only_here (id int PRIMARY KEY)")  # same name, no clash
            assert conn.execute("SELECT count(*) FROM only_here").fetchone() == (0,)
        with psycopg.connect(postgres_url) as conn:
            assert conn.execute("SELECT count(*) FROM only_here").fetchone() == (1,)
    finally:
        postgres_server.drop_database(other_name)


def test_listens_only_locally(postgres_server: PostgresServer, postgres_url: str) -> None:
    """The server trusts every local client, so it must not be reachable from the network."""
    host = conninfo_to_dict(postgres_url)["host"]
    assert isinstance(host, str) and (host.startswith("/") or host == "127.0.0.1"), host
    with psycopg.connect(postgres_url) as conn:
        listen = conn.execute("SHOW listen_addresses").fetchone()
        assert listen is not None and listen[0] in ("", "127.0.0.1"), listen
        if host.startswith("/"):
            assert conn.execute("SELECT inet_server_addr()").fetchone() == (None,)  # None: a Unix-socket session
