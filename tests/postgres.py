"""A real, throwaway PostgreSQL server for the tests.

Each session gets a brand-new cluster (initdb + pg_ctl) that listens only on a Unix socket in a private directory
(127.0.0.1 on a free port where sockets are impossible), with durability switched off because test data is disposable.
Binaries come from Debian's packages (/usr/lib/postgresql/<ver>/bin), else from the `pgserver` wheel; without either,
`start_postgres` raises `PostgresUnavailable` saying what to install, and the fixtures turn that into a skip.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

SUPERUSER = "postgres"  # the cluster's superuser role (initdb -U), whichever OS user runs the server
START_TIMEOUT = 30.0  # seconds; a healthy start takes ~1-2 s, the slack is for loaded CI machines
# Test data is disposable, so trade durability for speed; trust is only reachable locally (listen_addresses below).
SETTINGS: dict[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "log_checkpoints": "off",  # every CREATE DATABASE checkpoints; keep the log readable for failures
}
INSTALL_HINT = (
    "no PostgreSQL server binaries found: install Debian's server (`apt-get install -y postgresql`, which provides "
    "/usr/lib/postgresql/<version>/bin/initdb) or the self-contained wheel (`pip install pgserver`)"
)


class PostgresUnavailable(RuntimeError):
    """No usable PostgreSQL server on this machine; the message says what to install (the fixtures skip on it)."""


class PostgresStartError(RuntimeError):
    """initdb or the server itself failed; the message carries the command output and the server log's tail."""


@dataclass(frozen=True)
class PostgresBinaries:
    """Where initdb/pg_ctl/postgres live and which distribution they came from (shown in skips and reports)."""

    bindir: Path
    source: str

    def __str__(self) -> str:
        return f"{self.source} ({self.bindir})"


def _version_key(name: str) -> tuple[int, ...]:
    """'15' -> (15,), '9.6' -> (9, 6); names that are not versions sort first."""
    return tuple(int(p) for p in name.split(".")) if re.fullmatch(r"\d+(\.\d+)*", name) else (-1,)


def _complete(bindir: Path) -> bool:
    """A bin dir is usable only with all three programs (a half-removed package must not be picked)."""
    return all(os.access(bindir / exe, os.X_OK) for exe in ("initdb", "pg_ctl", "postgres"))


def find_postgres() -> PostgresBinaries:
    """Debian's newest packaged server first, then the `pgserver` wheel; else `PostgresUnavailable`.

    PATH is deliberately not searched: /usr/local/bin/initdb and pg_ctl on the reference machine are only symlinks
    into /usr/lib/postgresql/15/bin (found here anyway), and a PATH lookup can pair programs of different versions.
    """
    debian = sorted((d for d in Path("/usr/lib/postgresql").glob("*/bin") if _complete(d)),
                    key=lambda d: _version_key(d.parent.name))
    if debian:
        return PostgresBinaries(debian[-1], f"Debian PostgreSQL {debian[-1].parent.name}")
    spec = importlib.util.find_spec("pgserver")  # located without importing: its import has side effects
    if spec is not None and spec.origin is not None:
        bindir = Path(spec.origin).parent / "pginstall" / "bin"
        if _complete(bindir):
            return PostgresBinaries(bindir, "pgserver wheel")
    raise PostgresUnavailable(INSTALL_HINT)


@dataclass(frozen=True)
class _RunAs:
    """The OS account that owns and runs the cluster: PostgreSQL refuses to run as root."""

    user: str | None  # None: the current user
    uid: int
    gid: int

    @classmethod
    def choose(cls) -> _RunAs:
        """The current user, or as root the `postgres` system user (created as `pgserver` if there is none)."""
        if os.geteuid() != 0:
            return cls(None, os.getuid(), os.getgid())
        import pwd

        for name in ("postgres", "pgserver"):
            with contextlib.suppress(KeyError):
                entry = pwd.getpwnam(name)
                return cls(name, entry.pw_uid, entry.pw_gid)
        # Same account the pgserver wheel creates for itself when run as root.
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "pgserver"],
                       check=True, capture_output=True, text=True)
        entry = pwd.getpwnam("pgserver")
        return cls("pgserver", entry.pw_uid, entry.pw_gid)

    def run(self, cmd: list[str], *, cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
        """Run a server program as this account; output goes to a file, because pg_ctl's server child may keep
        inherited pipes open and make a captured run hang."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}  # no PGDATA/PGPORT/... leaking in
        env["LC_ALL"] = env["LC_MESSAGES"] = "C"  # messages in the log stay English and greppable
        with tempfile.TemporaryFile("w+") as out:
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, text=True,
                                  cwd=cwd, env=env, timeout=timeout, user=self.uid if self.user else None,
                                  group=self.gid if self.user else None, extra_groups=[] if self.user else None)
            out.seek(0)
            proc.stdout = out.read()
        return proc


def _make_traversable(bindir: Path, account: _RunAs) -> None:
    """As root, let the server's account execute the pgserver wheel's programs (e.g. in a venv under a 0700 home),
    as the wheel itself does: o+x on each parent, o+rx on its pginstall tree."""
    with contextlib.suppress(OSError):  # exec refused: PermissionError
        if account.run([str(bindir / "postgres"), "--version"], cwd=Path("/"), timeout=30).returncode == 0:
            return
    install = bindir.parent
    for parent in install.parents:
        if not parent.stat().st_mode & stat.S_IXOTH:
            parent.chmod(parent.stat().st_mode | stat.S_IXOTH)
    for dirpath, _dirs, files in os.walk(install):
        Path(dirpath).chmod(Path(dirpath).stat().st_mode | stat.S_IROTH | stat.S_IXOTH)
        for f in files:
            p = Path(dirpath, f)
            p.chmod(p.stat().st_mode | stat.S_IROTH | (stat.S_IXOTH if p.stat().st_mode & stat.S_IXUSR else 0))


def _free_port() -> int:
    """A loopback port that is free right now (only for the TCP fallback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _conf_value(value: str) -> str:
    """postgresql.conf string literal: single-quoted, quotes doubled (paths may hold anything)."""
    return "'" + value.replace("'", "''") + "'"


def _log_tail(log: Path, lines: int = 40) -> str:
    """The end of the server log, for error messages (the start of it is initdb/boot noise)."""
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no server log at {log}: {exc})"


class PostgresServer:
    """A running throwaway cluster: `.url` for the `postgres` database, `.new_database()` for an isolated one."""

    def __init__(self, binaries: PostgresBinaries, account: _RunAs, workdir: Path, base: Path,
                 private_dirs: list[Path], host: str, port: int) -> None:
        self.binaries = binaries
        self.account = account
        self.workdir = workdir  # holds data/, postgres.log and usually sock/
        self.base = base
        self._private_dirs = private_dirs  # made by us under /tmp (see start_postgres); removed by stop()
        self.host = host  # the socket directory, or 127.0.0.1
        self.port = port
        self.datadir = workdir / "data"
        self.log = workdir / "postgres.log"
        self._stopped = False

    @property
    def kept_log(self) -> Path:
        """Where the server log can be read after `stop()` (a private dir's log is copied into `base`)."""
        return self.base / "postgres.log" if self.workdir in self._private_dirs else self.log

    def url_for(self, dbname: str) -> str:
        """libpq URL of one database; the port is explicit so a developer's PGPORT cannot redirect it."""
        if self.host.startswith("/"):
            return f"postgresql://{SUPERUSER}@/{quote(dbname)}?host={quote(self.host, safe='/')}&port={self.port}"
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{quote(dbname)}"

    @property
    def url(self) -> str:
        """URL of the maintenance database `postgres` (use `new_database` for test data)."""
        return self.url_for("postgres")

    def new_database(self, name: str) -> str:
        """Create an empty database (a copy of template1) and return its URL: each test gets an isolated one."""
        if not name or len(name.encode()) > 63:
            raise ValueError(f"database name must be 1-63 bytes (PostgreSQL truncates longer ones): {name!r}")
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop a test database, closing connections a test leaked (each copy of template1 costs ~7 MB of disk)."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def stop(self) -> None:
        """Fast shutdown (open sessions are cut); removes only the private /tmp dirs it made (after copying the server
        log into `base` when it was in one of them). Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(ValueError):
            atexit.unregister(self.stop)
        try:
            if (self.datadir / "postmaster.pid").exists():
                pg_ctl = [str(self.binaries.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w",
                          "-t", "30", "stop"]
                try:
                    stopped = self.account.run(pg_ctl, cwd=self.workdir, timeout=40).returncode == 0
                except subprocess.TimeoutExpired:
                    stopped = False
                if not stopped:
                    self._kill_postmaster()
        finally:
            if self.workdir in self._private_dirs:
                with contextlib.suppress(OSError):
                    shutil.copyfile(self.log, self.base / "postgres.log")
            for d in self._private_dirs:
                shutil.rmtree(d, ignore_errors=True)

    def _kill_postmaster(self) -> None:
        """Last resort when pg_ctl cannot stop it: SIGQUIT (immediate shutdown) to the pid in postmaster.pid."""
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int((self.datadir / "postmaster.pid").read_text().splitlines()[0])
            os.kill(pid, signal.SIGQUIT)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                os.kill(pid, 0)  # raises once it is gone
                time.sleep(0.1)
            os.kill(pid, signal.SIGKILL)

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"PostgresServer({self.url!r}, {self.binaries})"


def database_name(hint: str) -> str:
    """A unique, valid database name that still says which test made it (for reading the server log)."""
    stem = re.sub(r"[^a-z0-9]+", "_", hint.lower()).strip("_")[:40]
    return f"t_{stem}_{uuid.uuid4().hex[:8]}"


def _tmp_root() -> str | None:
    """/tmp rather than $TMPDIR: it is world-traversable (the server's account must reach its dirs) and short
    (a socket path must fit in ~107 bytes)."""
    return "/tmp" if os.path.isdir("/tmp") else None


def start_postgres(base: Path, *, binaries: PostgresBinaries | None = None, tcp: bool | None = None) -> PostgresServer:
    """Initialise and start a brand-new cluster; raises `PostgresUnavailable` or `PostgresStartError` (with the log).

    As the current user the cluster lives in `base`; as root it lives in a private `mkdtemp` dir under /tmp owned by
    the `postgres` account (pytest's tmp dirs are 0700 root, which that account cannot enter), removed by `stop()`.
    `tcp=None` uses a Unix socket when the platform has them, else 127.0.0.1 on a free port.
    """
    binaries = binaries or find_postgres()
    account = _RunAs.choose()
    if account.user and binaries.source.startswith("pgserver"):
        _make_traversable(binaries.bindir, account)
    base = Path(base)
    base.mkdir(parents=True, exist_ok=True)
    use_tcp = not hasattr(socket, "AF_UNIX") if tcp is None else tcp

    private: list[Path] = []
    if account.user:
        workdir = Path(tempfile.mkdtemp(prefix="pg-test-", dir=_tmp_root()))  # mode 0700
        private.append(workdir)
    else:
        workdir = base / "postgres"
        workdir.mkdir()  # fails if a cluster is already there: this must be a brand-new one
    port = _free_port() if use_tcp else 5432  # the socket dir is private, so the default port cannot collide
    sockdir = workdir / "sock"
    if use_tcp:
        pass  # no socket at all: unix_socket_directories = ''
    elif len(str(sockdir / f".s.PGSQL.{port}.lock")) > 100:  # sun_path is 108 bytes on Linux, 104 on macOS
        sockdir = Path(tempfile.mkdtemp(prefix="pgs-", dir=_tmp_root()))  # too deep a `base`: a short dir instead
        private.append(sockdir)
    else:
        sockdir.mkdir(mode=0o700)
    if account.user:
        for d in (workdir, sockdir):
            if d.exists():  # no sock/ in TCP mode
                os.chown(d, account.uid, account.gid)
    server = PostgresServer(binaries, account, workdir, base, private, "127.0.0.1" if use_tcp else str(sockdir), port)
    atexit.register(server.stop)  # an interrupted session must not leave a server behind
    try:
        _initdb(server)
        _configure(server, use_tcp, sockdir)
        _start(server)
    except BaseException:
        server.stop()
        raise
    return server


def _initdb(server: PostgresServer) -> None:
    """A cluster with trust auth (initdb's pg_hba only has local-socket and loopback lines), UTF-8, no fsync."""
    locale = "C.UTF-8" if sys.platform.startswith("linux") else "C"
    cmd = [str(server.binaries.bindir / "initdb"), "-D", str(server.datadir), "-U", SUPERUSER, "--auth=trust",
           "--encoding=UTF8", f"--locale={locale}", "--no-sync"]
    proc = server.account.run(cmd, cwd=server.workdir, timeout=120)
    if proc.returncode != 0:
        raise PostgresStartError(f"initdb failed ({server.binaries}, exit {proc.returncode}):\n{proc.stdout}")


def _configure(server: PostgresServer, use_tcp: bool, sockdir: Path) -> None:
    """Append the test settings to postgresql.conf (appending keeps the file's owner; last setting wins)."""
    listen = {"listen_addresses": "'127.0.0.1'", "unix_socket_directories": "''"} if use_tcp else {
        "listen_addresses": "''", "unix_socket_directories": _conf_value(str(sockdir))}
    lines = [f"{k} = {v}" for k, v in {**listen, "port": str(server.port), **SETTINGS}.items()]
    with open(server.datadir / "postgresql.conf", "a", encoding="utf-8") as conf:
        conf.write("\n# tests/postgres.py: throwaway test server\n" + "\n".join(lines) + "\n")


def _start(server: PostgresServer) -> None:
    """pg_ctl start -w, then a real connection (pg_ctl's own check does not prove our URL works)."""
    cmd = [str(server.binaries.bindir / "pg_ctl"), "-D", str(server.datadir), "-l", str(server.log), "-w",
           "-t", str(int(START_TIMEOUT)), "start"]
    try:
        proc = server.account.run(cmd, cwd=server.workdir, timeout=START_TIMEOUT + 10)
    except subprocess.TimeoutExpired:
        raise PostgresStartError(f"pg_ctl start hung ({server.binaries}); server log (kept as {server.kept_log}):\n"
                                 f"{_log_tail(server.log)}") from None
    if proc.returncode != 0:
        raise PostgresStartError(f"PostgreSQL did not start ({server.binaries}, exit {proc.returncode}):\n"
                                 f"{proc.stdout}\nserver log (kept as {server.kept_log}):\n{_log_tail(server.log)}")
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            with psycopg.connect(server.url, connect_timeout=5) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise PostgresStartError(f"PostgreSQL started but refuses connections at {server.url}: {exc}\n"
                                         f"server log (kept as {server.kept_log}):\n{_log_tail(server.log)}") from exc
            time.sleep(0.1)
