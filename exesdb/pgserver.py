"""A throw-away PostgreSQL server: :class:`PostgresServer` (``python -m exesdb
dev-cluster`` runs its nodes on one, and the tests use it).

It finds the server binaries (``/usr/lib/postgresql/<version>/bin``, else
``pg_config --bindir``), runs ``initdb`` and ``pg_ctl`` in a temporary folder, listening
on a free port of 127.0.0.1 only, with ``fsync=on`` (durability tests mean something)
and trust authentication for local connections. PostgreSQL refuses to run as root, so
when the tests run as root (CI does) every server command runs as the ``postgres`` OS
user (``runuser -u postgres --``) in a folder that user owns.

A missing PostgreSQL raises :class:`PostgresNotInstalled`, whose message says to
``apt-get install postgresql`` (the PostgreSQL tests fail, they are never skipped).

Use it as a context manager, or call :meth:`PostgresServer.start` and
:meth:`PostgresServer.stop` (which also removes the folder). :meth:`restart` takes
``pg_ctl``'s shutdown mode (``"immediate"`` is a crash: no checkpoint, recovery from the
WAL at the next start), :meth:`terminate` kills server backends the way
``pg_terminate_backend`` does, and :attr:`dsn` is the libpq connection string
(:attr:`uri` the same as a URI). Everything here blocks: it is for programs and tests,
not for use inside a running node.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import psycopg

__all__ = ["INSTALL_HINT", "PostgresNotInstalled", "PostgresServer", "find_bindir"]

INSTALL_HINT = "apt-get install postgresql"
START_TIMEOUT = 60
"""Seconds ``pg_ctl`` waits for the server to start or stop."""


class PostgresNotInstalled(RuntimeError):
    """PostgreSQL's server binaries (or the ``postgres`` OS user, when running as root)
    were not found."""


def _version_key(bindir: str) -> tuple[int, ...]:
    name = Path(bindir).parent.name
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def find_bindir() -> Path:
    """The folder holding ``initdb`` and ``pg_ctl``: the newest
    ``/usr/lib/postgresql/*/bin``, else ``pg_config --bindir``; raises
    :class:`PostgresNotInstalled` when neither has them."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                             check=True).stdout.strip()
        if out:
            candidates.append(out)
    for candidate in candidates:
        if all(os.access(Path(candidate, tool), os.X_OK) for tool in ("initdb", "pg_ctl")):
            return Path(candidate)
    raise PostgresNotInstalled(
        "PostgreSQL's server binaries (initdb, pg_ctl) were not found in "
        f"/usr/lib/postgresql/*/bin nor by pg_config: {INSTALL_HINT}"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One PostgreSQL server in a temporary folder (see the module docstring).

    ``dsn`` connects as the superuser ``postgres`` to the database ``postgres`` over TCP.
    The port stays the same across :meth:`restart`.
    """

    def __init__(self, *, settings: dict[str, str] | None = None) -> None:
        self.bindir = find_bindir()
        self._as_postgres: list[str] = []
        self._owner: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            try:
                self._owner = pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresNotInstalled(
                    "the tests run as root, and PostgreSQL refuses root: they run it as the "
                    f"'postgres' OS user, which does not exist: {INSTALL_HINT}"
                ) from None
            self._as_postgres = ["runuser", "-u", "postgres", "--"]
        self.settings = {
            "fsync": "on",
            "synchronous_commit": "on",
            "full_page_writes": "on",
            "max_connections": "200",
            "shared_buffers": "32MB",
            "log_min_messages": "warning",
        }
        self.settings.update(settings or {})
        self.folder: Path | None = None
        self.port = 0
        self.running = False

    @property
    def data(self) -> Path:
        """The server's data directory."""
        assert self.folder is not None, "the server was never started"
        return self.folder / "data"

    @property
    def log_file(self) -> Path:
        """The server's log (``pg_ctl -l``)."""
        assert self.folder is not None, "the server was never started"
        return self.folder / "server.log"

    @property
    def dsn(self) -> str:
        """A libpq connection string to the server's ``postgres`` database."""
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    @property
    def uri(self) -> str:
        """:attr:`dsn` as a ``postgresql://`` URI."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [*self._as_postgres, *(str(arg) for arg in args)]
        result = subprocess.run(command, capture_output=True, text=True, cwd=self.folder)
        if check and result.returncode != 0:
            log = ""
            with contextlib.suppress(OSError):
                log = self.log_file.read_text()[-4000:]
            raise RuntimeError(
                f"{' '.join(command)} failed with exit code {result.returncode}:\n"
                f"{result.stdout}{result.stderr}\n--- server log ---\n{log}"
            )
        return result

    def start(self) -> PostgresServer:
        """Create the cluster (first call only) and start the server; return self."""
        if self.running:
            return self
        if self.folder is None:
            self.folder = Path(tempfile.mkdtemp(prefix="exesdb-pg-"))
            if self._owner is not None:
                os.chown(self.folder, self._owner.pw_uid, self._owner.pw_gid)
            self._run(self.bindir / "initdb", "-D", self.data, "-U", "postgres",
                      "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync")
            self.port = _free_port()
            lines = [f"port = {self.port}", "listen_addresses = '127.0.0.1'",
                     f"unix_socket_directories = '{self.folder}'"]
            lines += [f"{key} = '{value}'" for key, value in self.settings.items()]
            with open(self.data / "postgresql.conf", "a") as conf:
                conf.write("\n# tests/pg_server.py\n" + "\n".join(lines) + "\n")
        self._pg_ctl("start", "-l", self.log_file)
        self.running = True
        return self

    def _pg_ctl(self, action: str, *args: str | Path) -> None:
        self._run(self.bindir / "pg_ctl", action, "-D", self.data, "-w", "-t",
                  str(START_TIMEOUT), *args)

    def restart(self, mode: str = "fast") -> None:
        """``pg_ctl restart -m mode``: ``"smart"``, ``"fast"`` or ``"immediate"`` (a crash:
        the server recovers from its WAL when it starts again)."""
        self._pg_ctl("restart", "-m", mode, "-l", self.log_file)
        self.running = True

    def stop_server(self, mode: str = "fast") -> None:
        """Stop the server (``pg_ctl stop -m mode``) but keep its folder: :meth:`start`
        runs it again on the same port."""
        if self.running:
            self._pg_ctl("stop", "-m", mode)
            self.running = False

    def stop(self) -> None:
        """Stop the server (immediately: the data is thrown away) and remove its folder."""
        try:
            if self.running:
                self._pg_ctl("stop", "-m", "immediate")
                self.running = False
        finally:
            if self.folder is not None:
                shutil.rmtree(self.folder, ignore_errors=True)
                self.folder = None

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        """A new autocommit connection as the superuser (close it when done)."""
        kwargs.setdefault("autocommit", True)
        return psycopg.connect(self.dsn, **kwargs)

    def execute(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Run one statement on a new connection; return its rows (none for a command)."""
        with self.connect() as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description is not None else []

    def terminate(self, application_name_like: str = "%") -> int:
        """``pg_terminate_backend`` every client connection whose ``application_name`` is
        LIKE the pattern (not this call's own), waiting (up to 10 s each) until they are
        gone; return how many were killed."""
        rows = self.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 10000)) "
            "FROM pg_stat_activity "
            "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() "
            "AND application_name LIKE %s",
            (application_name_like,),
        )
        return int(rows[0][0])

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
