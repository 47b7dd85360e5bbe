"""A throwaway PostgreSQL 15 cluster on 127.0.0.1 for tests, benches and trying production Prefect.

``LocalPostgres`` runs Debian's ``initdb`` and ``pg_ctl`` (``/usr/lib/postgresql/15/bin``) on a
new data directory under the system temporary directory, listening only on 127.0.0.1 at a free
port (no Unix socket outside the data directory), with one database for Prefect. PostgreSQL
refuses to run as root, so when this process is root the cluster runs as an unprivileged user
(``postgres`` when the Debian package created it, else ``nobody``) through ``runuser -u USER --``,
and the data directory is handed to that user. ``stop`` stops the server (``pg_ctl stop -m fast``)
and removes the directory.

    with LocalPostgres() as pg:
        env = {"PREFECT_API_DATABASE_CONNECTION_URL": pg.prefect_url}

From the command line, ``python -m deployments.postgres.local_cluster`` starts one, prints its
Prefect connection URL and waits for Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from sandbox.http import free_port

PG_BIN = Path(os.environ.get("RELEASE_PROMOTION_PG_BIN", "/usr/lib/postgresql/15/bin"))
DATABASE = "prefect"
SUPERUSER = "prefect"


class PostgresUnavailable(RuntimeError):
    """PostgreSQL is not installed here or did not start; the message says which and why."""


def _unprivileged_user() -> str | None:
    """The user to run the cluster as: None when this process is not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise PostgresUnavailable("running as root and neither user 'postgres' nor 'nobody' exists")


class LocalPostgres:
    """An unprivileged PostgreSQL cluster in a temporary directory on 127.0.0.1.

    Args:
        port: the TCP port (default: a free one).
        startup_timeout: seconds to wait for ``pg_ctl start`` (it waits for the server itself).
        settings: extra ``postgres -c`` settings, for example ``{"max_connections": "200"}``.
    """

    def __init__(
        self,
        port: int | None = None,
        startup_timeout: float = 60.0,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.port = port or 0
        self.startup_timeout = startup_timeout
        self.settings = {"max_connections": "200", "fsync": "off", **(settings or {})}
        self.user = _unprivileged_user()
        self.directory: Path | None = None

    @property
    def data_dir(self) -> Path:
        if self.directory is None:
            raise PostgresUnavailable("the cluster is not started")
        return self.directory / "data"

    @property
    def log_path(self) -> Path:
        if self.directory is None:
            raise PostgresUnavailable("the cluster is not started")
        return self.directory / "postgres.log"

    @property
    def prefect_url(self) -> str:
        """``PREFECT_API_DATABASE_CONNECTION_URL`` for a Prefect server on this cluster."""
        return f"postgresql+asyncpg://{SUPERUSER}@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, *args: str, timeout: float = 120.0) -> str:
        command = [*args]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        # A neutral working directory: the unprivileged user may not be able to read the caller's.
        result = subprocess.run(
            command,
            cwd=self.directory,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"},
        )
        if result.returncode != 0:
            tail = ""
            if self.directory is not None and self.log_path.exists():
                tail = (
                    "\n--- postgres.log ---\n" + self.log_path.read_text(errors="replace")[-3000:]
                )
            raise PostgresUnavailable(
                f"{' '.join(args[:2])} failed (exit {result.returncode}): "
                f"{(result.stderr or result.stdout).strip()}{tail}"
            )
        return result.stdout

    def start(self) -> LocalPostgres:
        initdb, pg_ctl = PG_BIN / "initdb", PG_BIN / "pg_ctl"
        if not initdb.exists() or not pg_ctl.exists():
            raise PostgresUnavailable(
                f"PostgreSQL 15 is not installed ({initdb} missing): apt-get install postgresql"
            )
        if self.directory is not None:
            return self
        # Under the system temporary directory (world-traversable), not under a 0700 pytest
        # folder the unprivileged user could not enter.
        self.directory = Path(tempfile.mkdtemp(prefix="release-promotion-pg-"))
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.directory, entry.pw_uid, entry.pw_gid)
        self.port = self.port or free_port()
        try:
            self._run(
                str(initdb),
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            )
            options = " ".join(
                [
                    "-c listen_addresses=127.0.0.1",
                    f"-p {self.port}",
                    f"-c unix_socket_directories={self.data_dir}",
                    *(f"-c {key}={value}" for key, value in self.settings.items()),
                ]
            )
            self._run(
                str(pg_ctl),
                "start",
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_path),
                "-o",
                options,
                "-w",
                "-t",
                str(int(self.startup_timeout)),
                timeout=self.startup_timeout + 10,
            )
            self._run(
                str(PG_BIN / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                SUPERUSER,
                DATABASE,
            )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.directory is None:
            return
        if (self.data_dir / "postmaster.pid").exists():
            try:
                self._run(str(PG_BIN / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "fast")
            except (PostgresUnavailable, subprocess.TimeoutExpired):
                self._kill_postmaster()
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory = None

    def _kill_postmaster(self) -> None:
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
            os.kill(pid, signal.SIGQUIT)
        except (OSError, ValueError, IndexError):
            return
        time.sleep(1.0)

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main() -> None:
    with LocalPostgres() as pg:
        print(f"PREFECT_API_DATABASE_CONNECTION_URL={pg.prefect_url}", flush=True)
        print(f"data directory {pg.data_dir}; Ctrl-C stops and removes it", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    main()
