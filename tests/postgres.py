"""A throwaway PostgreSQL server for tests: Debian's binaries, a temporary data folder, a free local port.

PostgreSQL refuses to run as root; where the tests run as root the server runs as the ``postgres`` user
(``runuser -u postgres --``) on a folder that user owns. ``find_binaries`` says why there is no server
(tests skip with that reason); a server that does not start is a failure, with its log.
"""

from __future__ import annotations

from dataclasses import dataclass
import glob
import os
from pathlib import Path
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile

NEEDED = ("initdb", "pg_ctl", "postgres")
USER = "honed"  # the database superuser initdb creates; local connections are trusted


def find_binaries() -> tuple[Path | None, str]:
    """The folder with initdb, pg_ctl and postgres (HONED_PG_BIN, Debian's /usr/lib/postgresql/N/bin, or PATH),
    or None and the reason."""
    candidates = [os.environ.get("HONED_PG_BIN", "")]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True)
    which = shutil.which("initdb")
    candidates.append(str(Path(which).parent) if which else "")
    for folder in filter(None, candidates):
        if all((Path(folder) / name).is_file() for name in NEEDED):
            return Path(folder), ""
    return None, ("no PostgreSQL binaries (initdb, pg_ctl, postgres) in HONED_PG_BIN, /usr/lib/postgresql/*/bin or "
                  "PATH: install Debian's postgresql package (.ci/run does)")


def _as_server_user() -> tuple[list[str], str]:
    """The command prefix that runs the server's programs, and why it cannot ('' when it can)."""
    if os.geteuid() != 0:
        return [], ""
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return [], "the tests run as root and there is no 'postgres' user to run the server as"
    if not shutil.which("runuser"):
        return [], "the tests run as root and runuser is missing"
    return ["runuser", "-u", "postgres", "--"], ""


def unavailable() -> str:
    """Why no test server can start here ('' when one can)."""
    binaries, reason = find_binaries()
    return reason if binaries is None else _as_server_user()[1]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class PostgresServer:
    root: Path  # temporary folder: data/, the socket, the log
    port: int
    binaries: Path
    prefix: list[str]

    @classmethod
    def start(cls, *, fsync: bool = False) -> PostgresServer:
        """initdb and start a server; ``fsync`` off by default (tests), on for honest timings."""
        binaries, reason = find_binaries()
        prefix, why = _as_server_user()
        if binaries is None or why:
            raise RuntimeError(reason or why)
        root = Path(tempfile.mkdtemp(prefix="honed-pg-"))
        if prefix:
            os.chown(root, pwd.getpwnam("postgres").pw_uid, -1)
        server = cls(root, _free_port(), binaries, prefix)
        server._run("initdb", "-D", str(root / "data"), "-U", USER, "--auth=trust", "-E", "UTF8", "--no-sync")
        options = (f"-p {server.port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=60 "
                   f"-c fsync={'on' if fsync else 'off'}")
        try:
            server._run("pg_ctl", "-D", str(root / "data"), "-o", options, "-l", str(root / "log"), "-w", "-t", "60",
                        "start")
        except subprocess.CalledProcessError as error:
            log = (root / "log").read_text() if (root / "log").exists() else ""
            shutil.rmtree(root, ignore_errors=True)
            raise RuntimeError(f"PostgreSQL did not start: {error.stderr}\n{log[-2000:]}") from error
        return server

    def _run(self, program: str, *args: str) -> None:
        subprocess.run([*self.prefix, str(self.binaries / program), *args], check=True, capture_output=True,
                       text=True, timeout=120, cwd=self.root)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database on the server; its URL."""
        import psycopg

        name = "t" + secrets.token_hex(6)
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
