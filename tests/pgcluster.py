"""A throw-away PostgreSQL cluster on a loopback port, for the tests and the benchmarks.

``make tools`` installs PostgreSQL from Debian packages when it is missing. The cluster lives in
a temporary folder owned by the ``postgres`` user (the server refuses to run as root), listens on
127.0.0.1 only and trusts local connections; it is removed when stopped. ``fsync`` stays on unless
asked otherwise: the durability tests kill it and count what survived.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def server_bin() -> Path | None:
    """The newest installed server's bin folder, or None when PostgreSQL is not installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self, fsync: bool = True, max_connections: int = 200) -> None:
        bindir = server_bin()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed (make tools installs it from Debian)")
        self.bin = bindir
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="loan-pg-"))
        self.data = self.root / "data"
        self.settings = {"fsync": "on" if fsync else "off", "max_connections": str(max_connections)}
        self._user = "postgres" if os.geteuid() == 0 else None
        if self._user:
            uid = pwd.getpwnam(self._user).pw_uid
            os.chown(self.root, uid, uid)
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(self.bin / args[0]), *args[1:]]
        if self._user:
            command = ["runuser", "-u", self._user, "--", *command]
        return subprocess.run(command, check=check, capture_output=True, text=True, cwd="/")

    def init(self) -> Cluster:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--locale=C.UTF-8")
        return self

    def start(self) -> Cluster:
        options = " ".join([f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root}",
                            *(f"-c {k}={v}" for k, v in self.settings.items())])
        result = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-o", options,
                           "-w", "-t", "30", "start", check=False)
        if result.returncode != 0:
            log = (self.root / "log").read_text() if (self.root / "log").exists() else ""
            raise RuntimeError(f"PostgreSQL did not start: {result.stderr}{log[-2000:]}")
        return self

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def kill(self) -> None:
        """SIGKILL the postmaster, as a crashed host would (no shutdown checkpoint)."""
        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        os.kill(pid, 9)
        time.sleep(0.2)
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop", check=False)

    def create_database(self, name: str) -> str:
        self._run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-q",
                  "-c", f'CREATE DATABASE "{name}"')
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
